"""Registering a handler and running it through the platform's single door, in a test.

What the ``certyard_register`` and ``certyard_invoke`` fixtures do, as functions (they
need Django set up and a database: pytest-django's ``db``). Each kind of handler is
called along the path the platform itself takes, so what a test sees is what a run in
production records:

- **Event and job complete handlers**: the event is emitted with
  :func:`certyard.workflows.services.events_emit` (the registration's events and filters
  decide whether it runs, as they do in production), and its run is executed by the
  worker's own :func:`certyard.workflows.runner.run_execute`. The one substitution: the
  handler's platform facade is a :class:`~certyard.testing.RecordingPlatform`, whose
  requests are recorded on the run and, unless ``apply_actions`` is set, not carried out
  (the store or enrollment they name exists only in the test).
- **Registration handlers**: :func:`certyard.workflows.registration.registration_handlers_run`,
  the registration service's own loop (every enabled registration handler, in order,
  within the shared budget); the runs are saved.
- **Metadata generators**: one batch as the background task runs it (``generate_many``
  or ``generate``, the registration's timeout, each value checked by its metadata field),
  recorded as one run; nothing is written on certificates.
- **CA gateways**: :func:`certyard.enrollment.gateways.gateway_call`, as enrollment
  (``enroll``) and revocation (``revoke``) call it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from certyard.testing.fakes import InvokeResult, RecordingPlatform
from handlers.base import (
    CertificateInfo,
    EventContext,
    Handler,
    HandlerKind,
    JobCompleteContext,
    RegistrationDecision,
    RegistrationRequest,
    Verdict,
)
from handlers.gateways import GatewayEnrollment, GatewayRevocation

__all__ = ["handler_invoke", "handler_register"]


def _entry_point_name(name_or_class: str | type[Handler]) -> str:
    from handlers.base import ENTRY_POINT_GROUP
    from handlers.registry import handler_classes

    if isinstance(name_or_class, str):
        return name_or_class
    found = [name for name, info in handler_classes().items() if info.cls is name_or_class]
    if not found:
        qualified = f"{name_or_class.__module__}:{name_or_class.__qualname__}"
        raise LookupError(
            f"{qualified} is not declared as an entry point of an installed package: the "
            f"platform finds handlers only that way. Declare it in your pyproject.toml under "
            f'[project.entry-points."{ENTRY_POINT_GROUP}"] (e.g. "acme.my_handler" = '
            f'"{qualified}") and install the package (pip install -e .), or test the class '
            f"without the platform with handler_make()."
        )
    return found[0]


def handler_register(
    name_or_class: str | type[Handler],
    *,
    name: str | None = None,
    options: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    **values: Any,
) -> Any:
    """A :class:`~certyard.workflows.models.HandlerRegistration` saved as Django admin saves
    one (:func:`~certyard.workflows.services.registration_save`: values checked, secrets
    encrypted, a generator's declared fields created).

    Args:
        name_or_class: The handler's entry-point name (``"acme.ticket"``), or its class
            (which must be declared as an entry point of an installed package).
        name: The registration's name (default: the entry-point name, numbered when taken).
        options: Other fields of the registration: ``events``, ``order``, ``job_types``,
            ``store_types``, ``orchestrators``, ``templates``, ``enabled``,
            ``timeout_seconds``, ``max_attempts``, ``retry_backoff_seconds``, ``description``.
        parameters, values: The parameter values (``parameters`` for a parameter whose name
            is taken by an argument here, e.g. ``name``).

    Raises ``ParameterError`` (a message per parameter) or ``ServiceError`` as the admin
    form would show them, and ``LookupError`` for a class no installed package declares.
    """
    from certyard.workflows.models import HandlerRegistration
    from certyard.workflows.services import registration_save
    from handlers.registry import handler_class

    entry = _entry_point_name(name_or_class)
    info = handler_class(entry)
    if info is None:
        raise LookupError(f"no installed package declares a handler named {entry!r}")
    if info.cls is None:
        raise LookupError(f"the handler {entry} cannot be used: {info.error}")
    if name is None:
        name, number = entry, 1
        while HandlerRegistration.objects.filter(name=name).exists():
            number += 1
            name = f"{entry} {number}"
    registration = HandlerRegistration(name=name, handler=entry, **dict(options or {}))
    saved = registration_save(
        registration=registration, values={**dict(parameters or {}), **values}
    )
    return saved if isinstance(saved, HandlerRegistration) else registration


def handler_invoke(
    registration: Any,
    context: Any,
    *,
    platform: RecordingPlatform | None = None,
    apply_actions: bool = False,
) -> InvokeResult:
    """Run ``registration``'s handler on ``context`` the way the platform does.

    ``context`` says what is run: an :class:`~handlers.base.EventContext` (an event
    handler), a :class:`~handlers.base.JobCompleteContext` (a job complete handler), a
    :class:`~handlers.base.RegistrationRequest` (registration handlers), one
    :class:`~handlers.base.CertificateInfo` or a list of them (a metadata generator's
    batch), a :class:`~handlers.gateways.GatewayEnrollment` or
    :class:`~handlers.gateways.GatewayRevocation` (a CA gateway's ``enroll`` or ``revoke``).

    ``platform``: the facade an event or job complete handler gets (a new
    :class:`RecordingPlatform` if None); its ``actions`` and ``mails`` grow by what this
    run asked. ``apply_actions``: carry the requests out through the platform's appliers,
    as production does (they then need the real objects they name: a store, a pending
    enrollment); a request the platform refuses fails the run.
    """
    registration.refresh_from_db()
    if isinstance(context, EventContext | JobCompleteContext):
        return _event_invoke(registration, context, platform, apply_actions)
    if isinstance(context, RegistrationRequest):
        return _registration_invoke(registration, context)
    if isinstance(context, CertificateInfo):
        return _metadata_invoke(registration, [context])
    if isinstance(context, Sequence) and all(isinstance(c, CertificateInfo) for c in context):
        return _metadata_invoke(registration, list(context))
    if isinstance(context, GatewayEnrollment | GatewayRevocation):
        return _gateway_invoke(registration, context)
    raise TypeError(
        f"cannot run a handler on a {type(context).__name__}: give an EventContext, a "
        "JobCompleteContext, a RegistrationRequest, CertificateInfo (or a list of them), a "
        "GatewayEnrollment or a GatewayRevocation (see certyard.testing's builders)"
    )


def _kind_require(registration: Any, *kinds: HandlerKind) -> None:
    if registration.kind not in {kind.value for kind in kinds}:
        wanted = " or ".join(kind.label.lower() for kind in kinds)  # type: ignore[attr-defined]
        raise TypeError(
            f"the registration {registration.name} is a {registration.kind} handler: this "
            f"context is for a {wanted}"
        )


def _outcome(run: Any) -> str:
    if run.state == run.State.SUCCEEDED:
        return "ok"
    return str(run.output.get("outcome") or "retryable_error")


# --- Event and job complete handlers ----------------------------------------------------


def _job_completed_spec(job: JobCompleteContext) -> Any:
    """The ``job.completed`` event the jobs app emits for this report (the runner builds
    the handler's context back from it)."""
    from certyard.workflows.services import EventSpec
    from handlers.base import EventKind

    store = dict(job.store) if job.store is not None else None
    data: dict[str, Any] = {
        "job_type": job.job_type,
        "store_type": store.get("store_type", "") if store else "",
        "orchestrator_id": str(job.orchestrator.get("id", "")),
        "job": {
            "id": job.job_id,
            "type": job.job_type,
            "attempt": job.attempt,
            "outcome": job.outcome,
            "message": job.message,
            "final": job.final,
            "result": dict(job.result),
        },
        "orchestrator": dict(job.orchestrator),
        "store": store,
    }
    if hasattr(job, "source"):  # the job's provenance, where the contract carries it
        data["provenance"] = {
            "source": getattr(job, "source", ""),
            "source_detail": getattr(job, "source_detail", ""),
            "retry_of": getattr(job, "retry_of", None),
            "chain": [dict(link) for link in getattr(job, "chain", ())],
        }
    where = f" {store.get('store_type', '')} {store.get('client_machine', '')}:" if store else ""
    where += store.get("store_path", "") if store else ""
    return EventSpec(
        kind=EventKind.JOB_COMPLETED,
        subject_type="job",
        subject_id=job.job_id,
        subject_label=f"{job.job_type}{where}".strip(),
        data=data,
    )


def _requests_kept(actions: list[dict[str, Any]]) -> None:
    """Leave a run's requests recorded, not carried out: what they name may exist only in
    the test (``certyard_invoke(..., apply_actions=False)``)."""


def _event_invoke(
    registration: Any,
    context: EventContext | JobCompleteContext,
    platform: RecordingPlatform | None,
    apply_actions: bool,
) -> InvokeResult:
    from certyard.workflows import runner
    from certyard.workflows.actions import PlatformRequests
    from certyard.workflows.models import HandlerRun
    from certyard.workflows.services import EventSpec, events_emit

    if isinstance(context, JobCompleteContext):
        _kind_require(registration, HandlerKind.JOB_COMPLETE)
        spec, handed_context, attempt = _job_completed_spec(context), {}, 1
    else:
        _kind_require(registration, HandlerKind.EVENT, HandlerKind.JOB_COMPLETE)
        spec = EventSpec(
            kind=context.kind,
            subject_type=context.subject_type,
            subject_id=str(context.subject_id),
            subject_label=context.subject_label,
            data=dict(context.data),
        )
        handed_context, attempt = dict(context.context), context.attempt
    event = events_emit([spec])[0]
    run = HandlerRun.objects.filter(event=event, registration=registration).first()
    if run is None:
        raise LookupError(
            f"the registration {registration.name} does not run on this {spec.kind} event: "
            f"it is disabled, or its events ({registration.events or 'those its class handles'}"
            f"), job types, store types, orchestrators or templates leave it out"
        )
    if attempt != 1:
        HandlerRun.objects.filter(pk=run.pk).update(attempt=attempt)
    platform = platform if platform is not None else RecordingPlatform()
    earlier = platform.actions
    platform.actions = []

    def facade(*args: Any, **kwargs: Any) -> RecordingPlatform:
        # The runner makes one facade per run, naming who asks (the registration): this
        # one takes on what the runner gives, whatever the facade keeps of it.
        made = PlatformRequests(*args, **kwargs)
        for name, value in vars(made).items():
            if name != "actions":
                setattr(platform, name, value)
        return platform

    try:
        value = runner.run_execute(
            run.pk,
            context=handed_context,
            facade=facade,
            carry_out=runner.actions_apply if apply_actions else _requests_kept,
        )
    finally:
        asked, platform.actions = platform.actions, earlier + platform.actions
    run.refresh_from_db()
    return InvokeResult(
        outcome=_outcome(run),
        result=value,
        run=run,
        actions=list(run.output.get("actions") or asked),
        platform=platform,
        event=event,
    )


# --- Registration handlers ------------------------------------------------------------


def _registration_invoke(registration: Any, request: RegistrationRequest) -> InvokeResult:
    from certyard.workflows.registration import (
        registration_handlers_run,
        registration_runs_record,
    )

    _kind_require(registration, HandlerKind.REGISTRATION)
    outcome = registration_handlers_run(request)
    registration_runs_record(outcome, orchestrator_id="", orchestrator_label=request.name)
    run = next((r for r in outcome.runs if r.registration_id == registration.pk), None)
    if run is None:
        asked = ", ".join(r.registration_name for r in outcome.runs) or "none"
        raise LookupError(
            f"the registration {registration.name} was not asked: it is disabled, or a "
            f"registration handler before it decided (asked: {asked})"
        )
    run.refresh_from_db()
    decision = None
    if run.state == run.State.SUCCEEDED:
        output = run.output
        decision = RegistrationDecision(
            Verdict(output["verdict"]),
            reason=output.get("reason", ""),
            blueprint=output.get("blueprint"),
            metadata=dict(output.get("metadata") or {}),
            issue_certificate=bool(output.get("issue_certificate", True)),
        )
    return InvokeResult(outcome=_outcome(run), result=decision, run=run)


# --- Metadata generators --------------------------------------------------------------


def _metadata_invoke(registration: Any, infos: list[CertificateInfo]) -> InvokeResult:
    # The batch's own steps (the door, generate_many or generate, each value checked by
    # its field): certyard.testing ships with the platform, so it may use them.
    from certyard.inventory.metadata.generators import _generate
    from certyard.inventory.metadata.services import field_rules
    from certyard.inventory.models import MetadataField
    from certyard.workflows.invoke import Invocation, run_end, run_new

    _kind_require(registration, HandlerKind.METADATA)
    if not infos:
        raise ValueError("give at least one CertificateInfo")
    fields = list(MetadataField.objects.all())
    names = {field.pk: field.name for field in fields}
    ids = list(range(1, len(infos) + 1))
    batch = _generate(registration, ids, infos, field_rules(fields))
    values: list[dict[str, str]] = [{} for _ in infos]
    if batch.succeeded:
        for certificate_id, field_id, value in batch.rows:
            values[certificate_id - 1][names[field_id]] = value
        batch.values_set = len(batch.rows)
        batch.message = f"{batch.values_set} values set on {len(infos)} certificates" + (
            f", {batch.error_count} errors" if batch.error_count else ""
        )
    run = run_new(
        registration,
        subject_type="certificates",
        subject_id=f"1-{len(infos)}",
        subject_label=f"certificates 1\N{EN DASH}{len(infos)}",
        inputs={"count": len(infos), "first_id": 1, "last_id": len(infos)},
        started_at=batch.started_at,
    )
    run_end(
        run,
        batch.invocation or Invocation(batch.outcome, message=batch.error),
        message=batch.message,
        output={
            "values_set": batch.values_set,
            "error_count": batch.error_count,
            "errors": batch.errors,
        },
        error=batch.error,
        outcome=batch.outcome,
        duration_ms=int(batch.seconds * 1000),
        save=True,
    )
    run.refresh_from_db()
    return InvokeResult(
        outcome=_outcome(run),
        result=values if batch.succeeded else None,
        run=run,
        errors=list(batch.errors),
    )


# --- CA gateways ------------------------------------------------------------------------


def _gateway_invoke(registration: Any, request: GatewayEnrollment | GatewayRevocation) -> Any:
    from certyard.enrollment.gateways import GatewayFailed, gateway_call
    from certyard.workflows.models import HandlerRun
    from handlers.gateways import CARecord

    _kind_require(registration, HandlerKind.GATEWAY)
    if isinstance(request, GatewayEnrollment):
        operation, call = "enroll", (lambda gateway: gateway.enroll(request))
    else:
        operation, call = "revoke", (lambda gateway: gateway.revoke(request))
    latest = HandlerRun.objects.filter(registration=registration).order_by("-pk").first()
    try:
        record = gateway_call(registration, operation, call, expect=CARecord)
    except GatewayFailed:
        record = None
    runs = HandlerRun.objects.filter(registration=registration).order_by("-pk")
    if latest is not None:
        runs = runs.filter(pk__gt=latest.pk)
    run = runs.first()
    return InvokeResult(
        outcome=_outcome(run) if run is not None else "missing_class",
        result=record,
        run=run,
    )
