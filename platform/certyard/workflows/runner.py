"""Running one handler: claim the run, call the class with its timeout, record everything.

Whatever the handler does (returns garbage, raises, hangs), the run ends recorded and
nothing propagates to the caller: the flow that emitted the event has long moved on.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.workflows.actions import PlatformRequests, actions_apply
from certyard.workflows.invoke import (
    BadAnswer,
    HandlerTimedOut,
    Invocation,
    Outcome,
    Refused,
    handler_call,
    handler_instance,
    json_bounded,
    run_end,
)
from certyard.workflows.models import HandlerRegistration, HandlerRun
from handlers.base import (
    EventContext,
    EventHandler,
    Handler,
    HandlerResult,
    JobCompleteContext,
    JobCompleteHandler,
)

logger = logging.getLogger(__name__)

# Kept importable from here: they moved to the door (workflows.invoke) and the actions.
__all__ = [
    "HandlerTimedOut",
    "PlatformRequests",
    "event_runs_execute",
    "json_bounded",
    "retry_schedule",
    "run_execute",
    "runs_stuck_fail",
]


def _claim(run_id: int) -> bool:
    now = timezone.now()
    return bool(
        HandlerRun.objects.filter(
            pk=run_id, state=HandlerRun.State.QUEUED, not_before__lte=now
        ).update(state=HandlerRun.State.RUNNING, started_at=now)
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
    handler: Handler,
    run: HandlerRun,
    context: Mapping[str, Any],
    facade: Callable[[str, int | None], PlatformRequests] = PlatformRequests,
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
    registration = run.registration
    # Who asks, recorded with the actions: the provenance of the jobs a handler starts.
    platform = facade(
        registration.name if registration else run.handler,
        registration.pk if registration else None,
    )
    if isinstance(handler, JobCompleteHandler):
        job = event.data.get("job") or {}
        # Events emitted before provenance existed have none: the defaults stand.
        provenance = event.data.get("provenance") or {}
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
            source=str(provenance.get("source") or ""),
            source_detail=str(provenance.get("source_detail") or ""),
            retry_of=provenance.get("retry_of") or None,
            chain=tuple(dict(link) for link in provenance.get("chain") or ()),
        )
        inputs["job"] = {"id": job_context.job_id, "type": job_context.job_type}
        return (lambda: handler.handle(job_context, platform)), inputs, platform
    if isinstance(handler, EventHandler):
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


def _invocation_failed(outcome: Outcome, message: str, started: float) -> Invocation:
    """The ending of a run that failed before its handler was called."""
    return Invocation(outcome, message=message, seconds=time.monotonic() - started)


def _result_check(value: Any) -> HandlerResult:
    result = value if value is not None else HandlerResult()
    if not isinstance(result, HandlerResult):
        raise BadAnswer(f"returned {type(result).__name__}, not a HandlerResult or None")
    return result


def run_execute(
    run_id: int,
    *,
    context: Mapping[str, Any] | None = None,
    facade: Callable[[str, int | None], PlatformRequests] = PlatformRequests,
    carry_out: Callable[[list[dict[str, Any]]], Any] = actions_apply,
) -> HandlerResult | None:
    """Run one queued handler run to its end and record it; never raises.

    Returns the handler's result when it succeeded, so the caller can pass its context
    updates to the handlers that run after it for the same event. ``facade`` makes the
    :class:`handlers.base.Platform` the handler gets (from the asking registration's name
    and id) and ``carry_out`` applies its recorded requests: ``certyard.testing`` passes a
    recording facade, and may leave the requests unapplied.
    """
    if not _claim(run_id):
        return None  # another worker has it, or it already ran
    run = HandlerRun.objects.select_related("registration", "event").get(pk=run_id)
    registration = run.registration
    started = time.monotonic()

    def end(invocation: Invocation, **recorded: Any) -> None:
        outcome = recorded.get("outcome") or invocation.outcome
        duration_ms = int((time.monotonic() - started) * 1000)
        run_end(run, invocation, duration_ms=duration_ms, save=True, **recorded)
        if outcome.retryable:
            retry_schedule(run, registration)

    if registration is None:
        end(
            _invocation_failed(
                Outcome.MISSING_CLASS, "its registration was deleted before it ran", started
            )
        )
        return None
    try:
        handler = handler_instance(registration, (EventHandler, JobCompleteHandler))
    except Refused as refused:
        end(_invocation_failed(refused.outcome, refused.message, started))
        return None
    if context is None:  # a retry, or a run handed over alone: what ran before it asked
        context = _context_before(run, registration)
    try:
        call, inputs, platform = _invocation(handler, run, context, facade)
    except (ServiceError, ValueError) as exc:
        end(_invocation_failed(Outcome.PERMANENT_ERROR, f"cannot be started: {exc}", started))
        return None
    run.inputs = json_bounded(inputs)
    run.save(update_fields=["inputs"])
    invocation = handler_call(
        call,
        timeout=registration.timeout_seconds,
        name=registration.name,
        answer=_result_check,
    )
    if not invocation.ok:
        end(invocation)
        return None
    result: HandlerResult = invocation.value
    output = dict(result.output)
    if platform is not None and platform.actions:
        output["actions"] = platform.actions
        try:
            carry_out(platform.actions)
        except Exception as exc:  # an action's own validation, or a bug: recorded
            end(
                invocation,
                output=output,
                outcome=Outcome.PERMANENT_ERROR,
                error=f"its requests could not be carried out: {exc}",
            )
            return None
    if result.context_updates:
        output["context_updates"] = dict(result.context_updates)
    end(invocation, message=result.message, output=output)
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
