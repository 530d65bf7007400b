"""Reads of certificate metadata: fields, a certificate's values, backfill progress."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.inventory.metadata.services import metadata_value_canonical
from certyard.inventory.models import (
    METADATA_FIELD_NAME,
    Certificate,
    CertificateMetadata,
    MetadataBackfill,
    MetadataField,
)
from certyard.workflows.invoke import registration_config
from certyard.workflows.models import HandlerRegistration, HandlerRun
from handlers.base import HandlerKind, MetadataGenerator
from handlers.registry import handler_class

_FIELD_NAME = re.compile(METADATA_FIELD_NAME)


def metadata_fields() -> QuerySet[MetadataField]:
    """Every field, in display order."""
    return MetadataField.objects.order_by("order", "name")


def metadata_field_has_values(*, field: MetadataField) -> bool:
    """Whether any certificate has a value for the field (its type is then fixed)."""
    return CertificateMetadata.objects.filter(field_id=field.pk).exists()


@dataclass(frozen=True, slots=True)
class MetadataEntry:
    """One field as a certificate has it: its value (None: none yet) and who set it."""

    field: MetadataField
    value: str | None
    source: str = ""
    updated_at: dt.datetime | None = None

    @property
    def set_by_user(self) -> bool:
        return self.source.startswith("user:")

    @property
    def setter(self) -> str:
        """The source as a person reads it: a username, or a generator's name."""
        return self.source.removeprefix("user:")


def certificate_metadata(*, certificate: Certificate) -> list[MetadataEntry]:
    """Every field, in display order, with the certificate's value where it has one."""
    values = {
        value.field_id: value
        for value in CertificateMetadata.objects.filter(certificate=certificate)
    }
    entries = []
    for field in metadata_fields():
        value = values.get(field.pk)
        if value is None:
            entries.append(MetadataEntry(field=field, value=None))
        else:
            entries.append(MetadataEntry(field, value.value, value.source, value.updated_at))
    return entries


def certificate_metadata_map(*, certificate: Certificate) -> dict[str, dict[str, object]]:
    """The certificate's values by field name: ``{value, source, updated_at}`` each."""
    values = (
        CertificateMetadata.objects.filter(certificate=certificate)
        .select_related("field")
        .order_by("field__order", "field__name")
    )
    return {
        value.field.name: {
            "value": value.value,
            "source": value.source,
            "updated_at": value.updated_at,
        }
        for value in values
    }


@dataclass(frozen=True, slots=True)
class MetadataFilter:
    """A certificate list filter on one field, its value already in canonical form."""

    field: MetadataField
    value: str | None
    empty: bool


def metadata_filter_resolve(
    *, field_name: str, value: str | None, empty: bool = False
) -> MetadataFilter:
    """The field named ``field_name`` and ``value`` as that field stores it, so ``07``
    finds ``7`` and ``Yes`` finds ``true``. ServiceError (``details["fields"]``) when the
    field does not exist or could never hold the value."""
    field = (
        MetadataField.objects.filter(name=field_name).first()
        if _FIELD_NAME.fullmatch(field_name)
        else None
    )
    if field is None:
        raise ServiceError(
            f"there is no metadata field named {field_name[:60]!r}",
            details={"fields": {"metadata_field": ["no such metadata field"]}},
        )
    if empty or value is None:
        return MetadataFilter(field=field, value=None, empty=empty)
    try:
        canonical = metadata_value_canonical(field=field, value=value)
    except ServiceError as exc:
        message = exc.message.split(": ", 1)[-1]
        raise ServiceError(
            f"metadata_value: {message}",
            details={"fields": {"metadata_value": [message]}},
        ) from exc
    if canonical is None:  # blank text: "no value"
        return MetadataFilter(field=field, value=None, empty=True)
    return MetadataFilter(field=field, value=canonical, empty=False)


# --- Generators and backfills -----------------------------------------------------------


def generator_registrations() -> QuerySet[HandlerRegistration]:
    """The metadata generator registrations, enabled or not, in the order they run."""
    return HandlerRegistration.objects.filter(kind=HandlerKind.METADATA).order_by("order", "pk")


@dataclass(frozen=True, slots=True)
class GeneratorFields:
    """A generator registration and the fields its class declares it fills."""

    registration: HandlerRegistration
    label: str
    doc: str
    declared: tuple[str, ...]
    missing: tuple[str, ...]


def generator_registrations_with_fields() -> list[GeneratorFields]:
    """Each generator registration with its class's label, description and declared
    fields, and which of those do not exist (deleted since, or registered before
    generators declared their fields: saving the registration again creates them)."""
    registrations = list(generator_registrations())
    declared_by: dict[int, tuple[str, ...]] = {}
    infos = {}
    for registration in registrations:
        info = handler_class(registration.handler)
        infos[registration.pk] = info
        names: tuple[str, ...] = ()
        if info is not None and info.cls is not None and issubclass(info.cls, MetadataGenerator):
            try:
                declarations = info.cls.declared_fields(registration_config(registration))
                names = tuple(declaration.name for declaration in declarations)
            except Exception:
                names = ()
        declared_by[registration.pk] = names
    wanted = {name for names in declared_by.values() for name in names}
    existing = set(MetadataField.objects.filter(name__in=wanted).values_list("name", flat=True))
    return [
        GeneratorFields(
            registration=registration,
            label=infos[registration.pk].label if infos[registration.pk] else registration.handler,
            doc=infos[registration.pk].doc if infos[registration.pk] else "",
            declared=declared_by[registration.pk],
            missing=tuple(n for n in declared_by[registration.pk] if n not in existing),
        )
        for registration in registrations
    ]


def generator_runs_recent(*, limit: int = 10) -> list[HandlerRun]:
    """The latest batches the generators ran (new certificates and backfills alike)."""
    return list(HandlerRun.objects.filter(kind=HandlerKind.METADATA).order_by("-pk")[:limit])


def backfill_current() -> MetadataBackfill | None:
    """The queued or running backfill, else the latest one (None: there never was one)."""
    active = (
        MetadataBackfill.objects.filter(state__in=MetadataBackfill.ACTIVE_STATES)
        .order_by("-pk")
        .first()
    )
    return active or MetadataBackfill.objects.order_by("-pk").first()


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """What the console shows of a backfill: how far, how fast, how long still."""

    backfill: MetadataBackfill
    elapsed_seconds: float
    rate: float  # certificates per second, over its whole run so far
    remaining_seconds: float | None
    stalled: bool  # running, and no batch recorded for a while: its worker may be gone

    @property
    def percent(self) -> int:
        return self.backfill.percent


def backfill_progress(
    *, backfill: MetadataBackfill, stale_seconds: float, now: dt.datetime | None = None
) -> BackfillProgress:
    now = now or timezone.now()
    started = backfill.started_at
    end = backfill.finished_at or now
    elapsed = max((end - started).total_seconds(), 0.0) if started else 0.0
    rate = backfill.processed / elapsed if elapsed > 0 else 0.0
    left = max(backfill.total - backfill.processed, 0)
    remaining = left / rate if rate > 0 and backfill.is_active else None
    stalled = (
        backfill.state == MetadataBackfill.State.RUNNING
        and backfill.heartbeat_at is not None
        and (now - backfill.heartbeat_at).total_seconds() > stale_seconds
    )
    return BackfillProgress(backfill, elapsed, rate, remaining, stalled)
