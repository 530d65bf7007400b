"""Emitting events and keeping handler registrations: the writes of the workflows app.

Every event of the platform goes through :func:`events_emit` (or :func:`event_emit`), in
the emitting service's transaction. The event row and one queued run per matching
registration are written with it; the runs are handed to the worker after commit, and a
sweep hands over again whatever a crash left behind, so nothing is lost between the two.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.precompiled import PrecompiledQuery
from certyard.workflows.actions import action_applier_register, actions_apply
from certyard.workflows.invoke import registration_config
from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
from certyard.workflows.outbox import enqueue_event_runs
from handlers.base import EventKind, Handler, HandlerKind
from handlers.parameters import Parameter, ParameterError, parameters_check
from handlers.registry import handler_class

logger = logging.getLogger(__name__)

# The keys of an event's data that registrations filter on, by registration field.
_FILTERS = (
    ("job_types", "job_type"),
    ("store_types", "store_type"),
    ("orchestrators", "orchestrator_id"),
    ("templates", "template"),
)


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event to emit: what happened, to what, and its details (JSON-compatible)."""

    kind: EventKind | str
    subject_type: str
    subject_id: str
    subject_label: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


# --- Registrations ------------------------------------------------------------------

# What a registration of some kind needs besides its own row, carried out by the app that
# owns it (the inventory creates the fields a metadata generator declares): hook(cls,
# config, apply). With apply False it only checks, raising ServiceError (a form shows it
# before anything is written); with apply True it writes, in the registration's own
# transaction. It may return warnings (sentences): what it found that does not stop the
# save but that an administrator should know (a declared field that exists with another
# label). Registered in AppConfig.ready, since workflows imports no app above it.
RegistrationHook = Callable[[type[Handler], Mapping[str, Any], bool], Iterable[str] | None]
_registration_hooks: dict[str, list[RegistrationHook]] = {}


def registration_hook_register(kind: HandlerKind, hook: RegistrationHook) -> None:
    """Run ``hook`` whenever a registration of ``kind`` is checked or saved (once per hook)."""
    hooks = _registration_hooks.setdefault(kind.value, [])
    if hook not in hooks:
        hooks.append(hook)


def _registration_hooks_run(
    registration: HandlerRegistration, config: Mapping[str, Any], *, apply: bool
) -> list[str]:
    """Run the hooks of the registration's kind; the warnings they returned, in order."""
    info = handler_class(registration.handler)
    if info is None or info.cls is None:
        return []
    warnings: list[str] = []
    for hook in _registration_hooks.get(info.cls.kind.value, []):
        warnings.extend(hook(info.cls, config, apply) or ())
    return warnings


def registration_secret_names(registration: HandlerRegistration) -> list[str]:
    """The names of the secret parameters that hold a value; never the values."""
    return sorted(json.loads(registration.secrets)) if registration.secrets else []


def registration_parameters_check(
    *, handler: str, values: Mapping[str, Any], keep: HandlerRegistration | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(parameters, secrets)`` for a class, checked; raise ``ParameterError``.

    An empty secret with ``keep`` given means "unchanged": the stored one is kept, since
    no form ever shows a secret back.
    """
    info = handler_class(handler)
    if info is None or info.cls is None:
        reason = info.error if info else "no installed package declares it"
        raise ParameterError({"handler": f"handler {handler} cannot be used: {reason}"})
    declared: tuple[Parameter, ...] = info.cls.parameters
    values = dict(values)
    if keep is not None:
        stored = registration_config(keep)
        for parameter in declared:
            if parameter.secret and not values.get(parameter.name) and parameter.name in stored:
                values[parameter.name] = stored[parameter.name]
    checked = parameters_check(declared, values)
    info.cls.config_check(checked)
    secret_names = {parameter.name for parameter in declared if parameter.secret}
    parameters = {name: value for name, value in checked.items() if name not in secret_names}
    secrets = {name: value for name, value in checked.items() if name in secret_names}
    return parameters, secrets


def registration_save(
    *, registration: HandlerRegistration, values: Mapping[str, Any]
) -> HandlerRegistration:
    """Check the parameter values against the class, encrypt the secrets, and save.

    Raises ``ParameterError`` (one message per parameter) or ``ServiceError``. What does
    not stop the save but disagrees with the class's declarations (a metadata field the
    generator declares exists with another label, choices or a compatible other type) is
    returned as sentences in ``registration.warnings`` (a list, empty when all agree);
    Django admin shows them as warnings.
    """
    with transaction.atomic():
        registration_prepare(registration=registration, values=values)
        registration.save()
        # What the class needs besides its row (a generator's fields), written with it:
        # a refusal here saves nothing.
        warnings = _registration_hooks_run(
            registration, registration_config(registration), apply=True
        )
    registration.warnings = warnings
    return registration


def registration_prepare(
    *, registration: HandlerRegistration, values: Mapping[str, Any]
) -> HandlerRegistration:
    """Everything :func:`registration_save` checks and sets, without saving: a form
    shows the refusals before anything is written."""
    info = handler_class(registration.handler)
    if info is None or info.cls is None:
        raise ServiceError(f"handler {registration.handler} is not installed or is broken")
    keep = None
    if registration.pk:
        keep = HandlerRegistration.objects.filter(pk=registration.pk).first()
    parameters, secrets = registration_parameters_check(
        handler=registration.handler, values=values, keep=keep
    )
    events = list(registration.events or [])
    understood = set(getattr(info.cls, "events", ()) or [kind.value for kind in EventKind])
    if info.cls.kind == HandlerKind.EVENT:
        unknown = sorted(set(events) - understood)
        if unknown:
            raise ServiceError(
                f"{info.label} does not handle the events {', '.join(unknown)} "
                f"(it handles: {', '.join(sorted(understood))})"
            )
    registration.kind = info.cls.kind.value
    registration.parameters = parameters
    registration.secrets = json.dumps(secrets) if secrets else ""
    registration.warnings = _registration_hooks_run(
        registration, {**parameters, **secrets}, apply=False
    )
    return registration


def _applies(registration: HandlerRegistration, spec: EventSpec) -> bool:
    if registration.kind == HandlerKind.JOB_COMPLETE:
        if spec.kind != EventKind.JOB_COMPLETED:
            return False
    elif registration.kind == HandlerKind.EVENT:
        # No events chosen: every event the class handles (any, if it declares none).
        info = handler_class(registration.handler)
        handled = registration.events or (
            getattr(info.cls, "events", ()) if info and info.cls else ()
        )
        if handled and spec.kind not in handled:
            return False
    else:
        return False  # registration handlers and generators are not event-driven
    for registration_field, data_key in _FILTERS:
        allowed = getattr(registration, registration_field)
        if allowed and str(spec.data.get(data_key, "")) not in {str(v) for v in allowed}:
            return False
    return True


# --- Events -------------------------------------------------------------------------


def event_emit(
    *,
    kind: EventKind | str,
    subject_type: str,
    subject_id: Any,
    subject_label: str = "",
    data: Mapping[str, Any] | None = None,
) -> Event:
    """Record one event and queue the runs of the registrations it matches."""
    spec = EventSpec(kind, subject_type, str(subject_id), subject_label, data or {})
    return events_emit([spec])[0]


# Asked with every event written (an issued certificate, a finished job).
_event_registrations = PrecompiledQuery(
    lambda: HandlerRegistration.objects.filter(
        enabled=True, kind__in=[HandlerKind.EVENT, HandlerKind.JOB_COMPLETE]
    ).order_by("order", "pk")
)


def events_emit(specs: Iterable[EventSpec]) -> list[Event]:
    """Record events in bulk (the expiry scan emits thousands); see :func:`event_emit`.

    Call it inside the transaction that made the change the events describe: they are
    written with it or not at all, and their runs start only after it commits.
    """
    specs = list(specs)
    if not specs:
        return []
    now = timezone.now()
    events = Event.objects.bulk_create(
        [
            Event(
                kind=str(spec.kind),
                subject_type=spec.subject_type,
                subject_id=spec.subject_id[:64],
                subject_label=spec.subject_label[:300],
                data=dict(spec.data),
                occurred_at=now,
            )
            for spec in specs
        ]
    )
    registrations = _event_registrations()
    runs = [
        HandlerRun(
            registration=registration,
            registration_name=registration.name,
            handler=registration.handler,
            kind=registration.kind,
            event=event,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            subject_label=event.subject_label,
            queued_at=now,
            not_before=now,
        )
        for event, spec in zip(events, specs, strict=True)
        for registration in registrations
        if _applies(registration, spec)
    ]
    if runs:
        HandlerRun.objects.bulk_create(runs)
        event_ids = sorted({run.event_id for run in runs if run.event_id is not None})
        transaction.on_commit(lambda: enqueue_event_runs(event_ids))
    return events


# Kept importable from here: the apps register their appliers through the services
# (``registration_config`` moved to the door, the actions to ``workflows.actions``).
__all__ = [
    "EventSpec",
    "action_applier_register",
    "actions_apply",
    "event_emit",
    "events_emit",
    "registration_config",
    "registration_hook_register",
    "registration_parameters_check",
    "registration_prepare",
    "registration_save",
    "registration_secret_names",
]
