"""The platform's scheduled work, by name, so that anyone allowed can run it now.

Each app that owns scheduled work (the expiry scan, the metadata generators, CRL refresh,
gateway syncs, the job and handler-run upkeep) registers a :class:`ScheduledTask` here in
its ``AppConfig.ready``: workflows, the bottom app, imports none of them, so they come to
it. A task names the django-q2 ``Schedule`` that runs it on its own (created by the owning
app's migration), the function, and the events it can cause.

Three doors run the same function the schedule runs, at once:

- ``manage.py certyard_task run <name>`` (:func:`scheduled_task_run`, in the process);
- ``POST /api/v1/scheduled-tasks/<name>/run/`` and the console's *Scheduled tasks* page
  (:func:`scheduled_task_enqueue`, handed to the django-q2 cluster like the schedule's own
  runs; the answer is the task id).

Whoever ran it (the *actor*: a user name, or who ran the command) is logged and kept in the
result. Running a task now does not move its schedule: the next scheduled run stays when
it was. Every task is safe to run at any time, also while its schedule runs it: each one
already had to be, since two workers of a cluster may overlap.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from certyard.errors import NotFound, ServiceError

logger = logging.getLogger(__name__)

# The permission that lets a staff member run scheduled work now (superusers have it).
RUN_PERMISSION = "workflows.run_scheduled_task"
# django-q2 groups the tasks of a run-now under this prefix and the task's name, the way
# it groups a schedule's tasks under the schedule's name: the last result of either is
# found by its group.
RUN_NOW_GROUP_PREFIX = "run now: "
# The django-q2 task name and group are at most 100 characters.
_Q_NAME_MAX = 100
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
# The cluster's default task timeout (Q_CLUSTER["timeout"]); a task may ask for longer.
DEFAULT_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class ScheduledTask:
    """A piece of scheduled platform work, registered by the app that owns it.

    - ``name``: the slug people type (``expiry-scan``); lowercase letters, digits, dashes.
    - ``label``, ``description``: what the console and the API show.
    - ``func``: the function, or its dotted path. Called without arguments, unless
      ``takes_actor``: then with ``actor=`` the user who ran it (``None`` from the command).
      It returns something JSON-compatible (counts, ids): the result people read.
    - ``schedule_name``: the name of the django-q2 ``Schedule`` that runs this work on its
      own ("" for work that only runs when asked, like a metadata backfill). Two tasks may
      name the same schedule when it does both (handler-run upkeep and retention).
    - ``events``: the event kinds running it can emit (``certificate.expiring``).
    - ``timeout_seconds``: the django-q2 timeout of a run handed to the cluster.
    """

    name: str
    label: str
    description: str
    func: str | Callable[..., Any]
    schedule_name: str = ""
    events: tuple[str, ...] = ()
    takes_actor: bool = False
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"scheduled task name {self.name!r}: lowercase letters and digits, "
                "words joined by '-'"
            )

    def function(self) -> Callable[..., Any]:
        return import_string(self.func) if isinstance(self.func, str) else self.func


class ScheduledTaskResult(TypedDict):
    """What one run did (JSON-compatible: the command prints it, django-q2 keeps it)."""

    task: str
    actor: str
    started_at: str
    finished_at: str
    seconds: float
    result: Any


class ScheduledTaskUnknown(NotFound):
    """No scheduled task has this name (404 on the API, exit code 1 on the command)."""

    def __init__(self, name: str) -> None:
        known = ", ".join(sorted(_tasks)) or "none"
        super().__init__(f"no scheduled task is named {name!r}; the tasks are: {known}")
        self.name = name


_tasks: dict[str, ScheduledTask] = {}


def scheduled_task_register(task: ScheduledTask) -> None:
    """Register ``task`` (from an ``AppConfig.ready``). Registering a name again replaces
    it (``ready`` may run twice in tests); the list keeps the first registration's place."""
    _tasks[task.name] = task


def scheduled_tasks() -> list[ScheduledTask]:
    """Every registered task, in registration order (the apps' order in INSTALLED_APPS)."""
    return list(_tasks.values())


def scheduled_task_get(name: str) -> ScheduledTask:
    """The task named ``name``; :class:`ScheduledTaskUnknown` when there is none."""
    task = _tasks.get(name)
    if task is None:
        raise ScheduledTaskUnknown(name)
    return task


def scheduled_task_may_run(user: Any) -> bool:
    """Whether ``user`` may see and run scheduled work: a superuser, or an active staff
    member with ``workflows.run_scheduled_task``. A run-now can start as much work as the
    schedules do (a backfill over the whole inventory), hence staff only."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_superuser or (user.is_staff and user.has_perm(RUN_PERMISSION)))


def actor_label(actor: str | AbstractBaseUser | None) -> str:
    """Who ran it, as logs and results name them: a user's user name, or the text given."""
    if actor is None:
        return "unknown"
    if isinstance(actor, str):
        return actor or "unknown"
    return actor.get_username()


def _json_ready(value: Any) -> Any:
    """The function's return value as JSON (dates as ISO text, tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def _execute(
    task: ScheduledTask, *, label: str, user: AbstractBaseUser | None
) -> ScheduledTaskResult:
    started, clock = timezone.now(), time.monotonic()
    logger.info("scheduled task %s: run now by %s", task.name, label)
    function = task.function()
    try:
        value = function(actor=user) if task.takes_actor else function()
    except ServiceError as refused:  # a refusal (a backfill already runs): no traceback
        logger.warning("scheduled task %s: run now by %s refused: %s", task.name, label, refused)
        raise
    except Exception:
        logger.exception("scheduled task %s: run now by %s failed", task.name, label)
        raise
    seconds = round(time.monotonic() - clock, 3)
    result: ScheduledTaskResult = {
        "task": task.name,
        "actor": label,
        "started_at": started.isoformat(),
        "finished_at": timezone.now().isoformat(),
        "seconds": seconds,
        "result": _json_ready(value),
    }
    logger.info(
        "scheduled task %s: run now by %s done in %.3f s: %s",
        task.name,
        label,
        seconds,
        result["result"],
    )
    return result


def scheduled_task_run(
    name: str, *, actor: str | AbstractBaseUser | None = None
) -> ScheduledTaskResult:
    """Run the task named ``name`` now, in this process, and return what it did.

    ``actor`` is who asked: a user (a task that ``takes_actor`` acts as them, e.g. a
    backfill is started by them) or a text (``"manage.py certyard_task (root)"``). Raises
    :class:`ScheduledTaskUnknown` for an unknown name, and whatever the task raises
    (a :class:`~certyard.errors.ServiceError` when it refuses, e.g. a backfill while one
    runs), after logging it with the actor.
    """
    task = scheduled_task_get(name)
    user = actor if isinstance(actor, AbstractBaseUser) else None
    return _execute(task, label=actor_label(actor), user=user)


def scheduled_task_enqueue(name: str, *, actor: str | AbstractBaseUser | None = None) -> str:
    """Hand the task named ``name`` to the django-q2 cluster now; returns the task id.

    The worker runs it as :func:`scheduled_task_run` would (the result, with the actor, is
    the django-q2 task's result; a refusal or an error makes it a failed task). Raises
    :class:`ScheduledTaskUnknown` for an unknown name.
    """
    task = scheduled_task_get(name)
    label = actor_label(actor)
    user_id = actor.pk if isinstance(actor, AbstractBaseUser) else None
    task_id = async_task(
        "certyard.workflows.scheduled.scheduled_task_execute",
        task.name,
        label,
        user_id,
        task_name=f"run now: {task.name} by {label}"[:_Q_NAME_MAX],
        group=f"{RUN_NOW_GROUP_PREFIX}{task.name}"[:_Q_NAME_MAX],
        timeout=task.timeout_seconds,
    )
    logger.info("scheduled task %s: queued by %s as task %s", task.name, label, task_id)
    return str(task_id)


def scheduled_task_execute(name: str, actor: str, user_id: Any = None) -> ScheduledTaskResult:
    """The worker's side of :func:`scheduled_task_enqueue` (not for direct use)."""
    task = scheduled_task_get(name)
    user = None
    if user_id is not None:
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        if user is None:
            raise ServiceError(f"the user who asked for {name} (id {user_id}) is gone")
    return _execute(task, label=actor, user=user)


# --- What the console and the API show ---------------------------------------------------


@dataclass
class TaskRunSummary:
    """One finished django-q2 task of a scheduled task: its schedule's or a run-now's."""

    task_id: str
    via: str  # "schedule" or "run now"
    name: str
    started_at: dt.datetime | None
    stopped_at: dt.datetime | None
    success: bool
    result: Any = None  # the JSON-compatible result of a success (the task's own)
    error: str = ""  # the last line of a failure
    actor: str = ""  # who ran it: a run-now's actor, or "schedule"

    @property
    def result_text(self) -> str:
        """The result as one line of JSON, for a page to show."""
        return "" if self.result is None else json.dumps(self.result, sort_keys=True)


@dataclass
class ScheduledTaskState:
    """A registered task with its schedule (``None`` when it only runs when asked), the
    schedule's next run, and the last finished runs found (django-q2 keeps a limited number
    of successes, ``Q_CLUSTER["save_limit"]``, and every failure)."""

    task: ScheduledTask
    schedule_type: str = ""  # "I" (every N minutes), "H", "D", …; "" without a schedule
    schedule_label: str = ""  # "every 1 minute", "hourly", "daily", "on demand only"
    next_run: dt.datetime | None = None
    last_scheduled: TaskRunSummary | None = None
    last_run_now: TaskRunSummary | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def last_run(self) -> TaskRunSummary | None:
        """The later of the last scheduled run and the last run-now."""
        runs = [run for run in (self.last_scheduled, self.last_run_now) if run is not None]
        return max(runs, key=lambda run: run.stopped_at or timezone.now(), default=None)


def _schedule_label(schedule: Schedule) -> str:
    if schedule.schedule_type == Schedule.MINUTES:
        minutes = schedule.minutes or 1
        return f"every {minutes} minute{'s' if minutes != 1 else ''}"
    if schedule.schedule_type == Schedule.CRON:
        return f"cron {schedule.cron}"
    return str(schedule.get_schedule_type_display()).lower()


def _summary(task: Task, via: str) -> TaskRunSummary:
    result, error = None, ""
    actor = "schedule" if via == "schedule" else ""
    if task.success:
        try:
            result = _json_ready(task.result)
        except (TypeError, ValueError):
            result = str(task.result)
        # A run-now's result is a ScheduledTaskResult: show the task's own result and actor.
        if via != "schedule" and isinstance(result, dict) and {"actor", "result"} <= set(result):
            actor, result = str(result["actor"]), result["result"]
    else:
        lines = [line for line in str(task.result or "").splitlines() if line.strip()]
        error = lines[-1].strip()[:500] if lines else "failed"
    return TaskRunSummary(
        task_id=task.id,
        via=via,
        name=task.name,
        started_at=task.started,
        stopped_at=task.stopped,
        success=bool(task.success),
        result=result,
        error=error,
        actor=actor or _run_now_actor(task.name),
    )


def _run_now_actor(task_name: str) -> str:
    """The actor named in a run-now's django-q2 task name ("run now: <task> by <actor>")."""
    return task_name.split(" by ", 1)[1] if " by " in task_name else ""


def scheduled_task_states() -> list[ScheduledTaskState]:
    """Every registered task with its schedule and last runs (three queries)."""
    tasks = scheduled_tasks()
    schedules = {
        schedule.name: schedule
        for schedule in Schedule.objects.filter(
            name__in=[task.schedule_name for task in tasks if task.schedule_name]
        )
    }
    last_ids = {schedule.task for schedule in schedules.values() if schedule.task}
    groups = [f"{RUN_NOW_GROUP_PREFIX}{task.name}"[:_Q_NAME_MAX] for task in tasks]
    finished = {q_task.id: q_task for q_task in Task.objects.filter(id__in=last_ids)}
    last_now: dict[str, Task] = {}
    # The newest run-now of each task: few rows (a run-now is a person's click).
    for q_task in Task.objects.filter(group__in=groups).order_by("-stopped")[:500]:
        last_now.setdefault(q_task.group, q_task)
    states = []
    for task in tasks:
        state = ScheduledTaskState(task=task, schedule_label="on demand only")
        schedule = schedules.get(task.schedule_name) if task.schedule_name else None
        if schedule is not None:
            state.schedule_type = schedule.schedule_type
            state.schedule_label = _schedule_label(schedule)
            state.next_run = schedule.next_run
            if schedule.task in finished:
                state.last_scheduled = _summary(finished[schedule.task], "schedule")
        elif task.schedule_name:
            state.schedule_label = "schedule missing"
        now_task = last_now.get(f"{RUN_NOW_GROUP_PREFIX}{task.name}"[:_Q_NAME_MAX])
        if now_task is not None:
            state.last_run_now = _summary(now_task, "run now")
        states.append(state)
    return states


__all__ = [
    "RUN_PERMISSION",
    "ScheduledTask",
    "ScheduledTaskResult",
    "ScheduledTaskState",
    "ScheduledTaskUnknown",
    "TaskRunSummary",
    "actor_label",
    "scheduled_task_enqueue",
    "scheduled_task_execute",
    "scheduled_task_get",
    "scheduled_task_may_run",
    "scheduled_task_register",
    "scheduled_task_run",
    "scheduled_task_states",
    "scheduled_tasks",
]
