"""Running one handler: claim the run, call the class with its timeout, record everything.

Whatever the handler does (returns garbage, raises, hangs), the run ends recorded and
nothing propagates to the caller: the flow that emitted the event has long moved on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.workflows.models import HandlerRegistration, HandlerRun
from certyard.workflows.services import actions_apply, registration_config
from handlers.base import (
    EventContext,
    EventHandler,
    Handler,
    HandlerError,
    HandlerResult,
    JobCompleteContext,
    JobCompleteHandler,
)
from handlers.parameters import ParameterError, parameters_check
from handlers.registry import handler_class

logger = logging.getLogger(__name__)

_OUTPUT_LIMIT = 64 * 1024
_TEXT_LIMIT = 16 * 1024


class HandlerTimedOut(Exception):
    pass


@dataclass(slots=True)
class Outcome:
    """How one call ended: a value, or an error with its traceback."""

    value: Any = None
    error: BaseException | None = None
    traceback: str = ""


def call_with_timeout(func: Callable[[], Any], timeout: float, *, name: str) -> Outcome:
    """Call ``func`` in a thread and wait at most ``timeout`` seconds.

    A handler that hangs cannot be stopped from outside in Python: its thread is left
    behind (daemon, so it never holds the worker's exit) and the run is recorded as
    timed out. Scripts run as processes and are killed on their own timeout.
    """
    outcome = Outcome()

    def target() -> None:
        try:
            outcome.value = func()
        except BaseException as exc:  # a handler's SystemExit must not end the worker
            outcome.error = exc
            outcome.traceback = traceback.format_exc()
        finally:
            close_old_connections()

    thread = threading.Thread(target=target, name=f"handler:{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return Outcome(error=HandlerTimedOut(f"timed out after {timeout:g} s"))
    return outcome


def json_bounded(value: Any, limit: int = _OUTPUT_LIMIT) -> dict[str, Any]:
    """A handler's output as JSON the database accepts, cut to a bounded size."""
    try:
        text = json.dumps(value if isinstance(value, Mapping) else {"value": value}, default=str)
    except (TypeError, ValueError) as exc:
        return {"unserializable": f"{type(value).__name__}: {exc}"[:1000]}
    text = text.replace("\\u0000", "")
    if len(text) > limit:
        return {"truncated": text[:limit]}
    return json.loads(text)


class PlatformRequests:
    """The :class:`handlers.base.Platform` handlers get: it records actions, which the
    apps that own them carry out after the run succeeds (``action_applier_register``)."""

    def __init__(self, source: str = "") -> None:
        self.actions: list[dict[str, Any]] = []
        # Who asked: recorded with the decisions a handler makes for people.
        self.source = source

    def schedule_job(self, *, store_id: str, job_type: str, delay_seconds: int = 0) -> None:
        self.actions.append(
            {
                "action": "schedule_job",
                "store_id": str(store_id),
                "job_type": str(job_type),
                "delay_seconds": int(delay_seconds),
            }
        )

    def set_metadata(self, *, certificate_sha256: str, values: Mapping[str, Any]) -> None:
        self.actions.append(
            {
                "action": "set_metadata",
                "certificate_sha256": str(certificate_sha256),
                "values": dict(values),
            }
        )

    def approve_enrollment(self, *, enrollment_id: str, comment: str = "") -> None:
        self.actions.append(
            {
                "action": "approve_enrollment",
                "enrollment_id": str(enrollment_id),
                "comment": str(comment),
                "by": self.source,
            }
        )

    def deny_enrollment(self, *, enrollment_id: str, comment: str) -> None:
        self.actions.append(
            {
                "action": "deny_enrollment",
                "enrollment_id": str(enrollment_id),
                "comment": str(comment),
                "by": self.source,
            }
        )

    def renew_certificate(self, *, certificate_sha256: str, new_key: bool = True) -> None:
        self.actions.append(
            {
                "action": "renew_certificate",
                "certificate_sha256": str(certificate_sha256),
                "new_key": bool(new_key),
                "by": self.source,
            }
        )


def _claim(run_id: int) -> bool:
    now = timezone.now()
    return bool(
        HandlerRun.objects.filter(
            pk=run_id, state=HandlerRun.State.QUEUED, not_before__lte=now
        ).update(state=HandlerRun.State.RUNNING, started_at=now)
    )


def _finish(
    run: HandlerRun,
    *,
    succeeded: bool,
    message: str = "",
    output: Any = None,
    error: str = "",
    trace: str = "",
    started: float,
) -> None:
    run.state = HandlerRun.State.SUCCEEDED if succeeded else HandlerRun.State.FAILED
    run.message = message[:_TEXT_LIMIT]
    run.output = json_bounded(output or {})
    run.error = error[:_TEXT_LIMIT]
    run.traceback = trace[-_TEXT_LIMIT:]
    run.finished_at = timezone.now()
    run.duration_ms = int((time.monotonic() - started) * 1000)
    run.save(
        update_fields=[
            "state",
            "message",
            "output",
            "error",
            "traceback",
            "finished_at",
            "duration_ms",
        ]
    )


def retry_schedule(run: HandlerRun, registration: HandlerRegistration | None) -> HandlerRun | None:
    """Queue the next attempt of a failed run, if its registration allows one more."""
    if registration is None or not registration.enabled or run.attempt >= registration.max_attempts:
        return None
    delay = registration.retry_backoff_seconds * 2 ** (run.attempt - 1)
    now = timezone.now()
    return HandlerRun.objects.create(
        registration=registration,
        registration_name=run.registration_name,
        handler=run.handler,
        kind=run.kind,
        event=run.event,
        subject_type=run.subject_type,
        subject_id=run.subject_id,
        subject_label=run.subject_label,
        attempt=run.attempt + 1,
        queued_at=now,
        not_before=now + dt.timedelta(seconds=delay),
    )


def _invocation(
    handler: Handler, run: HandlerRun, context: Mapping[str, Any]
) -> tuple[Callable[[], Any], dict[str, Any], PlatformRequests | None]:
    """What to call for this run, what to record as its inputs, and the facade if any."""
    event = run.event
    if event is None:
        raise ServiceError("the run has no event")
    event_context = EventContext(
        event_id=event.pk,
        kind=event.kind,
        occurred_at=event.occurred_at.isoformat(),
        subject_type=event.subject_type,
        subject_id=event.subject_id,
        subject_label=event.subject_label,
        data=event.data,
        attempt=run.attempt,
        context=dict(context),
    )
    inputs = {"event": event.kind, "subject": event.subject_label or event.subject_id}
    if isinstance(handler, JobCompleteHandler):
        job = event.data.get("job") or {}
        job_context = JobCompleteContext(
            job_id=str(job.get("id", event.subject_id)),
            job_type=str(job.get("type", "")),
            attempt=int(job.get("attempt", 1)),
            outcome=str(job.get("outcome", "")),
            message=str(job.get("message", "")),
            final=bool(job.get("final", True)),
            result=job.get("result") or {},
            orchestrator=event.data.get("orchestrator") or {},
            store=event.data.get("store"),
        )
        platform = PlatformRequests()
        inputs["job"] = {"id": job_context.job_id, "type": job_context.job_type}
        return (lambda: handler.handle(job_context, platform)), inputs, platform
    if isinstance(handler, EventHandler):
        platform = PlatformRequests(run.registration.name if run.registration else run.handler)
        handler.platform = platform
        return (lambda: handler.handle(event_context)), inputs, platform
    raise ServiceError(f"a {handler.kind} handler does not run on events")


def _context_before(run: HandlerRun, registration: HandlerRegistration) -> dict[str, Any]:
    """The context updates of the event's runs that succeeded ahead of this one, in order."""
    context: dict[str, Any] = {}
    if run.event_id is None:
        return context
    earlier = (
        HandlerRun.objects.filter(event_id=run.event_id, state=HandlerRun.State.SUCCEEDED)
        .filter(registration__order__lte=registration.order)
        .exclude(registration=registration)
        .order_by("registration__order", "pk")
        .values_list("output", flat=True)
    )
    for output in earlier:
        updates = (output or {}).get("context_updates")
        if isinstance(updates, dict):
            context.update(updates)
    return context


def run_execute(run_id: int, *, context: Mapping[str, Any] | None = None) -> HandlerResult | None:
    """Run one queued handler run to its end and record it; never raises.

    Returns the handler's result when it succeeded, so the caller can pass its context
    updates to the handlers that run after it for the same event.
    """
    if not _claim(run_id):
        return None  # another worker has it, or it already ran
    run = HandlerRun.objects.select_related("registration", "event").get(pk=run_id)
    registration = run.registration
    started = time.monotonic()

    def fail(error: str, *, trace: str = "", output: Any = None, permanent: bool = False) -> None:
        _finish(run, succeeded=False, error=error, trace=trace, output=output, started=started)
        if not permanent:
            retry_schedule(run, registration)

    if registration is None:
        fail("its registration was deleted before it ran", permanent=True)
        return None
    info = handler_class(run.handler)
    if info is None or info.cls is None:
        reason = info.error if info else "no installed package declares it (uninstalled?)"
        fail(f"handler {run.handler} is missing: {reason}", permanent=True)
        return None
    if context is None:  # a retry, or a run handed over alone: what ran before it asked
        context = _context_before(run, registration)
    try:
        config = parameters_check(info.cls.parameters, registration_config(registration))
        handler = info.cls(config)
        call, inputs, platform = _invocation(handler, run, context)
    except (ParameterError, ServiceError, ValueError) as exc:
        fail(f"cannot be started: {exc}", permanent=True)
        return None
    run.inputs = json_bounded(inputs)
    run.save(update_fields=["inputs"])
    outcome = call_with_timeout(call, registration.timeout_seconds, name=registration.name)
    error = outcome.error
    if error is not None:
        permanent = isinstance(error, HandlerError) and error.permanent
        message = error.message if isinstance(error, HandlerError) else str(error)
        if not isinstance(error, HandlerError | HandlerTimedOut):
            message = f"{type(error).__name__}: {message}"
        fail(
            message or type(error).__name__,
            trace=outcome.traceback,
            output=getattr(error, "output", None),
            permanent=permanent,
        )
        return None
    result = outcome.value if outcome.value is not None else HandlerResult()
    if not isinstance(result, HandlerResult):
        fail(f"returned {type(result).__name__}, not a HandlerResult or None", permanent=True)
        return None
    output = dict(result.output)
    if platform is not None and platform.actions:
        output["actions"] = platform.actions
        try:
            actions_apply(platform.actions)
        except Exception as exc:  # an action's own validation, or a bug: recorded
            fail(f"its requests could not be carried out: {exc}", output=output, permanent=True)
            return None
    if result.context_updates:
        output["context_updates"] = dict(result.context_updates)
    _finish(run, succeeded=True, message=result.message, output=output, started=started)
    return result


def event_runs_execute(event_id: int) -> int:
    """Run an event's queued first attempts in their registrations' order; the count run."""
    run_ids = list(
        HandlerRun.objects.filter(event_id=event_id, state=HandlerRun.State.QUEUED, attempt=1)
        .order_by("registration__order", "pk")
        .values_list("pk", flat=True)
    )
    context: dict[str, Any] = {}
    for run_id in run_ids:
        result = run_execute(run_id, context=context)
        if result is not None:
            context.update(result.context_updates)
    return len(run_ids)


def runs_stuck_fail(now: dt.datetime | None = None) -> int:
    """Record as failed the runs whose worker died under them (killed, task time limit)."""
    now = now or timezone.now()
    grace = dt.timedelta(seconds=settings.CERTYARD_HANDLER_GRACE_SECONDS)
    failed = 0
    running = HandlerRun.objects.filter(state=HandlerRun.State.RUNNING).select_related(
        "registration"
    )
    for run in running.iterator():
        timeout = run.registration.timeout_seconds if run.registration else 3600
        if run.started_at and run.started_at + dt.timedelta(seconds=timeout) + grace < now:
            updated = HandlerRun.objects.filter(pk=run.pk, state=HandlerRun.State.RUNNING).update(
                state=HandlerRun.State.FAILED,
                error="the worker running it stopped before it finished (killed or restarted)",
                finished_at=now,
            )
            if updated:
                failed += 1
                retry_schedule(run, run.registration)
    return failed
