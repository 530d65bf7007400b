"""Registration handlers: run in order inside an agent's registration, within a budget.

Unlike event handlers they run synchronously, because their answer decides the
registration. Each one is recorded as a run, with the orchestrator as its subject once
the caller knows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from certyard.workflows.models import HandlerRegistration, HandlerRun
from certyard.workflows.runner import HandlerTimedOut, call_with_timeout, json_bounded
from certyard.workflows.services import registration_config
from handlers.base import (
    HandlerError,
    HandlerKind,
    RegistrationDecision,
    RegistrationRequest,
    Verdict,
)
from handlers.parameters import ParameterError, parameters_check
from handlers.registry import handler_class


@dataclass(slots=True)
class RegistrationOutcome:
    """The deciding answer (None: every handler deferred) and the runs to record."""

    decision: RegistrationDecision | None = None
    decided_by: str = ""
    runs: list[HandlerRun] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        return self.decision.verdict if self.decision else Verdict.DEFER


def _inputs(request: RegistrationRequest) -> dict[str, object]:
    return {
        "name": request.name,
        "client_machine": request.client_machine,
        "agent_version": request.agent_version,
        "capabilities": list(request.capabilities),
        "client_parameters": dict(request.client_parameters),
        "source_address": request.source_address,
        # What the platform verified, apart from the claims above.
        "token_id": request.token_id,
        "token_labels": list(request.token_labels),
        "token_machine_pattern": request.token_machine_pattern,
        "token_blueprint": request.token_blueprint,
        "public_key_sha256": request.public_key_sha256,
    }


def _decision_check(value: object) -> RegistrationDecision:
    if not isinstance(value, RegistrationDecision):
        raise TypeError(f"returned {type(value).__name__}, not a RegistrationDecision")
    if not isinstance(value.verdict, Verdict):
        try:
            Verdict(value.verdict)
        except ValueError:
            raise TypeError(f"returned the verdict {value.verdict!r}") from None
    if value.blueprint is not None and not isinstance(value.blueprint, str):
        raise TypeError("named a blueprint that is not a text")
    return value


def registration_handlers_run(request: RegistrationRequest) -> RegistrationOutcome:
    """Ask the enabled registration handlers, in order, until one allows or denies.

    A handler that raises, runs past its timeout or the total budget, or answers
    anything but a valid decision counts as deferring, and its run is recorded failed.
    The runs are returned unsaved: :func:`registration_runs_record` saves them once the
    orchestrator exists.
    """
    outcome = RegistrationOutcome()
    registrations = HandlerRegistration.objects.filter(
        enabled=True, kind=HandlerKind.REGISTRATION
    ).order_by("order", "pk")
    deadline = time.monotonic() + settings.CERTYARD_REGISTRATION_HANDLERS_SECONDS
    inputs = _inputs(request)
    for registration in registrations:
        now = timezone.now()
        run = HandlerRun(
            registration=registration,
            registration_name=registration.name,
            handler=registration.handler,
            kind=registration.kind,
            subject_type="orchestrator",
            inputs=json_bounded(inputs),
            state=HandlerRun.State.FAILED,
            queued_at=now,
            not_before=now,
            started_at=now,
        )
        outcome.runs.append(run)
        started = time.monotonic()
        remaining = deadline - started
        if remaining <= 0:
            run.error = "not asked: the registration handlers' time budget was spent"
            run.finished_at, run.duration_ms = now, 0
            continue
        decision, error, trace = None, "", ""
        info = handler_class(registration.handler)
        if info is None or info.cls is None:
            error = f"handler {registration.handler} is missing: " + (
                info.error if info else "no installed package declares it"
            )
        else:
            try:
                config = parameters_check(info.cls.parameters, registration_config(registration))
                handler = info.cls(config)
            except (ParameterError, ValueError) as exc:
                error = f"cannot be started: {exc}"
            else:
                timeout = min(float(registration.timeout_seconds), remaining)
                result = call_with_timeout(
                    lambda h=handler: h.decide(request), timeout, name=registration.name
                )
                if result.error is None:
                    try:
                        decision = _decision_check(result.value)
                    except TypeError as exc:
                        error = f"{exc}: counted as defer"
                elif isinstance(result.error, HandlerError | HandlerTimedOut):
                    error = str(result.error)
                else:
                    error = f"{type(result.error).__name__}: {result.error}"
                trace = result.traceback
        run.finished_at = timezone.now()
        run.duration_ms = int((time.monotonic() - started) * 1000)
        if decision is None:
            run.error, run.traceback = error, trace
            continue
        run.state = HandlerRun.State.SUCCEEDED
        verdict = Verdict(decision.verdict)
        run.message = f"{verdict.value}: {decision.reason}".rstrip(": ")[:1000]
        run.output = json_bounded(
            {
                "verdict": verdict.value,
                "reason": decision.reason,
                "blueprint": decision.blueprint,
                "metadata": dict(decision.metadata),
                "issue_certificate": decision.issue_certificate,
            }
        )
        if verdict != Verdict.DEFER:
            outcome.decision = decision
            outcome.decided_by = registration.name
            break
    return outcome


def registration_runs_record(
    outcome: RegistrationOutcome, *, orchestrator_id: str, orchestrator_label: str
) -> None:
    """Save the runs of a registration, now that the orchestrator they decided exists."""
    for run in outcome.runs:
        run.subject_id = orchestrator_id
        run.subject_label = orchestrator_label[:300]
    HandlerRun.objects.bulk_create(outcome.runs)
