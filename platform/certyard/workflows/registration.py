"""Registration handlers: run in order inside an agent's registration, within a budget.

Unlike event handlers they run synchronously, because their answer decides the
registration. Each one is recorded as a run, with the orchestrator as its subject once
the caller knows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings

from certyard.workflows.invoke import (
    BadAnswer,
    Budget,
    invoke,
    run_end,
    run_new,
    runs_save,
)
from certyard.workflows.models import HandlerRegistration, HandlerRun
from handlers.base import (
    HandlerKind,
    RegistrationDecision,
    RegistrationHandler,
    RegistrationRequest,
    Verdict,
)


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


def _is_verdict(value: object) -> bool:
    try:
        Verdict(value)
    except ValueError:
        return False
    return True


def _decision_check(value: object) -> RegistrationDecision:
    """The handler's answer, if it is a valid decision; anything else counts as defer."""
    if not isinstance(value, RegistrationDecision):
        problem = f"returned {type(value).__name__}, not a RegistrationDecision"
    elif not _is_verdict(value.verdict):
        problem = f"returned the verdict {value.verdict!r}"
    elif value.blueprint is not None and not isinstance(value.blueprint, str):
        problem = "named a blueprint that is not a text"
    else:
        return value
    raise BadAnswer(f"{problem}: counted as defer")


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
    budget = Budget(
        time.monotonic() + settings.CERTYARD_REGISTRATION_HANDLERS_SECONDS,
        "not asked: the registration handlers' time budget was spent",
    )
    inputs = _inputs(request)
    for registration in registrations:
        run = run_new(registration, subject_type="orchestrator", inputs=inputs)
        outcome.runs.append(run)
        invocation = invoke(
            registration,
            RegistrationHandler,
            lambda handler: handler.decide(request),
            budget=budget,
            answer=_decision_check,
        )
        if not invocation.ok:
            run_end(run, invocation)
            continue
        decision: RegistrationDecision = invocation.value
        verdict = Verdict(decision.verdict)
        run_end(
            run,
            invocation,
            message=f"{verdict.value}: {decision.reason}".rstrip(": ")[:1000],
            output={
                "verdict": verdict.value,
                "reason": decision.reason,
                "blueprint": decision.blueprint,
                "metadata": dict(decision.metadata),
                "issue_certificate": decision.issue_certificate,
            },
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
    runs_save(outcome.runs)
