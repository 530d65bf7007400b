"""Reads of the workflows app: registrations with their class and last run, and the run log.

Django admin and the console both show these; neither ever shows a secret value, so
nothing here returns one (a registration's summary says only whether each secret is set).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from django.db.models import OuterRef, Q, QuerySet, Subquery

from certyard.workflows.models import HandlerRegistration, HandlerRun
from handlers import registry
from handlers.parameters import ParameterType, json_text, mapping_text, value_check
from handlers.registry import HandlerClass

# The subjects events name (EventContext.subject_type), for the run filters.
SUBJECT_TYPES = ("orchestrator", "certificate", "job", "store", "enrollment")


# --- Classes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClassStatus:
    """Whether a registration's class can run: ``ok``, ``missing`` or ``broken``.

    ``problem`` is the sentence admin and the console show when it cannot.
    """

    name: str
    info: HandlerClass | None
    status: str
    problem: str

    @property
    def usable(self) -> bool:
        return self.status == "ok"


def class_status(handler: str) -> ClassStatus:
    """The installed class behind an entry point name, or why there is none."""
    info = registry.handler_class(handler)
    if info is None:
        return ClassStatus(
            handler,
            None,
            "missing",
            f"The class {handler} is not installed — this registration is skipped: its runs "
            "fail until a package declaring it is installed again.",
        )
    if info.cls is None:
        return ClassStatus(
            handler,
            info,
            "broken",
            f"The class {handler} cannot be loaded ({info.error}) — this registration is skipped: "
            "its runs fail until the package is repaired.",
        )
    return ClassStatus(handler, info, "ok", "")


def handler_classes_by_availability() -> tuple[list[HandlerClass], list[HandlerClass]]:
    """``(usable, unavailable)`` installed classes, usable ones by kind then label."""
    classes = list(registry.handler_classes().values())
    usable = sorted(
        (info for info in classes if info.cls is not None),
        key=lambda info: (str(info.kind), info.label.lower(), info.name),
    )
    unavailable = [info for info in classes if info.cls is None]
    return usable, unavailable


# --- Registrations ------------------------------------------------------------------


def registrations_with_last_run() -> QuerySet[HandlerRegistration]:
    """Registrations annotated with ``last_run_state`` and ``last_run_at`` (None if never).

    One correlated subquery per column, served by the (registration, -queued_at) index.
    """
    latest = HandlerRun.objects.filter(registration=OuterRef("pk")).order_by("-queued_at", "-id")
    return HandlerRegistration.objects.annotate(
        last_run_state=Subquery(latest.values("state")[:1]),
        last_run_at=Subquery(latest.values("queued_at")[:1]),
    )


def registration_choices() -> QuerySet[HandlerRegistration]:
    """Registrations to narrow the run list by, by name."""
    return HandlerRegistration.objects.order_by("name").only("pk", "name")


@dataclass(frozen=True, slots=True)
class ParameterShown:
    """One parameter of a registration as a page shows it: a secret is only ever "set"."""

    name: str
    title: str
    help: str
    secret: bool
    value: Any = None
    is_set: bool = False
    type: str = ""  # its ParameterType's value ("" when the class is gone)

    @property
    def is_list(self) -> bool:
        return self.type != ParameterType.JSON and isinstance(self.value, list | tuple)

    @property
    def is_mapping(self) -> bool:
        return self.type == ParameterType.MAPPING and isinstance(self.value, dict)

    @property
    def is_json(self) -> bool:
        """A JSON parameter's value, or a stored object whose class is gone: shown indented."""
        return self.type == ParameterType.JSON or (not self.type and isinstance(self.value, dict))

    @property
    def text(self) -> str:
        """The value as a page shows a mapping (``key=value`` lines) or JSON (indented)."""
        if self.is_mapping:
            return mapping_text(self.value)
        return json_text(self.value)


@dataclass(frozen=True, slots=True)
class RegistrationSummary:
    registration: HandlerRegistration
    status: ClassStatus
    parameters: list[ParameterShown]


def _secret_names(registration: HandlerRegistration) -> set[str]:
    """The names of the stored secrets; their values are dropped at once."""
    if not registration.secrets:
        return set()
    try:
        stored = json.loads(registration.secrets)
    except ValueError:
        return set()
    return set(stored) if isinstance(stored, dict) else set()


def registration_summary(registration: HandlerRegistration) -> RegistrationSummary:
    """What a registration is configured with, by its class's declarations, secrets hidden.

    When the class is gone, the stored non-secret values are listed as they are, and
    the secrets by name only.
    """
    status = class_status(registration.handler)
    secret_names = _secret_names(registration)
    shown: list[ParameterShown] = []
    if status.info is not None and status.info.cls is not None:
        for parameter in status.info.cls.parameters:
            if parameter.secret:
                shown.append(
                    ParameterShown(
                        parameter.name,
                        parameter.title,
                        parameter.help,
                        secret=True,
                        is_set=parameter.name in secret_names,
                    )
                )
                continue
            value = registration.parameters.get(parameter.name, parameter.default)
            if (
                parameter.name not in registration.parameters
                and value is not None
                and parameter.type in (ParameterType.MAPPING, ParameterType.JSON)
            ):
                # A default may be written as text (key=value lines, JSON): as it applies.
                with contextlib.suppress(ValueError):
                    value = value_check(parameter, value)
            shown.append(
                ParameterShown(
                    parameter.name,
                    parameter.title,
                    parameter.help,
                    secret=False,
                    value=value,
                    is_set=parameter.name in registration.parameters,
                    type=parameter.type.value,
                )
            )
    else:
        for name, value in sorted(registration.parameters.items()):
            shown.append(ParameterShown(name, name, "", secret=False, value=value, is_set=True))
        for name in sorted(secret_names):
            shown.append(ParameterShown(name, name, "", secret=True, is_set=True))
    return RegistrationSummary(registration, status, shown)


# --- Runs ---------------------------------------------------------------------------


def runs_filtered(
    *,
    state: str = "",
    kind: str = "",
    registration_id: int | None = None,
    subject_type: str = "",
    subject_id: str = "",
    subject: str = "",
) -> QuerySet[HandlerRun]:
    """The run log, newest first, narrowed by whichever filters are given.

    ``subject`` matches the subject's label (contains, any case) or its exact id.
    """
    runs = HandlerRun.objects.order_by("-queued_at", "-id")
    if state:
        runs = runs.filter(state=state)
    if kind:
        runs = runs.filter(kind=kind)
    if registration_id is not None:
        runs = runs.filter(registration_id=registration_id)
    if subject_type:
        runs = runs.filter(subject_type=subject_type)
    if subject_id:
        runs = runs.filter(subject_id=subject_id)
    if subject:
        runs = runs.filter(Q(subject_label__icontains=subject) | Q(subject_id=subject))
    return runs


def runs_for_subject(*, subject_type: str, subject_id: str, limit: int) -> list[HandlerRun]:
    """The newest runs about one subject, at most ``limit`` + 1 (one more tells "there are
    more")."""
    return list(
        HandlerRun.objects.filter(subject_type=subject_type, subject_id=str(subject_id)).order_by(
            "-queued_at", "-id"
        )[: limit + 1]
    )


def run_detail_queryset() -> QuerySet[HandlerRun]:
    """Runs with their registration and event, for a run's page."""
    return HandlerRun.objects.select_related("registration", "event")
