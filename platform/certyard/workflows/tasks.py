"""Background work of the workflows app, run by the django-q2 cluster."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from certyard.workflows.models import Event, HandlerRun
from certyard.workflows.outbox import TASK_TIMEOUT_CEILING as _TASK_TIMEOUT_CEILING
from certyard.workflows.outbox import enqueue_event_runs
from certyard.workflows.runner import event_runs_execute, run_execute, runs_stuck_fail
from certyard.workflows.scheduled import ScheduledTask

logger = logging.getLogger(__name__)

MAINTENANCE_SCHEDULE_NAME = "certyard: handler runs (retries, lost runs, retention)"
_PRUNE_BATCH = 5_000

__all__ = [
    "MAINTENANCE_SCHEDULE_NAME",
    "enqueue_event_runs",  # moved to workflows.outbox; kept importable from here
    "event_runs",
    "history_prune",
    "maintenance",
    "retention",
    "run",
    "runs_due_enqueue",
]


def event_runs(event_ids: list[int] | int) -> int:
    """Run the queued runs of each event, event after event; how many ran."""
    if isinstance(event_ids, int):
        event_ids = [event_ids]
    return sum(event_runs_execute(event_id) for event_id in event_ids)


def run(run_id: int) -> None:
    run_execute(run_id)


def runs_due_enqueue(now: dt.datetime | None = None) -> int:
    """Hand over the runs that are due: retries whose wait is over, and lost hand-overs."""
    now = now or timezone.now()
    lost_before = now - dt.timedelta(seconds=settings.CERTYARD_HANDLER_REQUEUE_SECONDS)
    due = HandlerRun.objects.filter(state=HandlerRun.State.QUEUED, not_before__lte=now).filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=lost_before)
    )
    count = 0
    for run_id, timeout in due.values_list("pk", "registration__timeout_seconds")[:1000]:
        if HandlerRun.objects.filter(pk=run_id, state=HandlerRun.State.QUEUED).update(
            enqueued_at=now
        ):
            async_task(
                "certyard.workflows.tasks.run",
                run_id,
                timeout=min((timeout or 60) + 60, _TASK_TIMEOUT_CEILING),
                task_name=f"handler run {run_id}",
            )
            count += 1
    return count


def history_prune(now: dt.datetime | None = None) -> int:
    """Delete finished runs and events older than the retention setting, in batches."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.CERTYARD_RUN_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(
            HandlerRun.objects.filter(
                state__in=[HandlerRun.State.SUCCEEDED, HandlerRun.State.FAILED],
                queued_at__lt=cutoff,
            ).values_list("pk", flat=True)[:_PRUNE_BATCH]
        )
        if not ids:
            break
        deleted += HandlerRun.objects.filter(pk__in=ids).delete()[0]
    while True:
        ids = list(
            Event.objects.filter(occurred_at__lt=cutoff)
            .exclude(runs__state__in=[HandlerRun.State.QUEUED, HandlerRun.State.RUNNING])
            .values_list("pk", flat=True)[:_PRUNE_BATCH]
        )
        if not ids:
            break
        deleted += Event.objects.filter(pk__in=ids).delete()[0]
    return deleted


def maintenance() -> dict[str, int]:
    """Fail the runs whose worker died, hand over due runs, prune old history."""
    stuck = runs_stuck_fail()
    enqueued = runs_due_enqueue()
    pruned = history_prune()
    if stuck or enqueued or pruned:
        logger.info(
            "workflows maintenance: %d run(s) lost, %d handed over, %d row(s) pruned",
            stuck,
            enqueued,
            pruned,
        )
    return {"runs_lost": stuck, "runs_enqueued": enqueued, "rows_pruned": pruned}


def retention() -> dict[str, int]:
    """Only the pruning part of :func:`maintenance` (the *retention* scheduled task)."""
    return {"rows_pruned": history_prune()}


# Registered in WorkflowsConfig.ready (certyard.workflows.scheduled).
SCHEDULED_TASKS = (
    ScheduledTask(
        name="handler-runs",
        label="Handler runs upkeep",
        description="Fail the handler runs whose worker died, hand over the runs that are "
        "due (retries whose wait is over, lost hand-overs), and prune old history.",
        func=maintenance,
        schedule_name=MAINTENANCE_SCHEDULE_NAME,
    ),
    ScheduledTask(
        name="retention",
        label="Retention",
        description="Delete the finished handler runs and the events older than "
        "CERTYARD_RUN_RETENTION_DAYS (the handler-runs schedule does this every minute).",
        func=retention,
        schedule_name=MAINTENANCE_SCHEDULE_NAME,
    ),
)
