"""The daily expiration scan: warn once per threshold a certificate at a location crosses.

A location (a certificate installed in a store under an alias) *crosses* a threshold of
``T`` days when its certificate's ``not_after`` is at most ``T`` days away
(``CERTYARD_EXPIRY_THRESHOLDS``, e.g. 90, 30, 7, 1), and the built-in threshold 0 when the
certificate has expired. Each scan gives every location one ``certificate.expiring`` event
for the *smallest* threshold it has crossed and not been warned of, and records an
:class:`~certyard.jobs.models.ExpiryNotice` for that threshold and for every larger one. So:

- a certificate first seen with 5 days left gets the 7-day warning only, never the 90- or
  30-day one afterwards, then the 1-day one and the expired one when their time comes;
- an expired certificate gets one ``days=0`` event, however long ago it expired: a stale
  certificate found in a store today is worth one warning, and only one (its notice keeps
  it out of every later scan);
- a renewed certificate at the same location is another certificate, warned afresh.

The notices are the scan's progress. A scan that stops halfway (a timeout, a restart)
loses at most the batch it was in, and the next one carries on where it stopped.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import (
    Case,
    Exists,
    OuterRef,
    PositiveSmallIntegerField,
    QuerySet,
    Value,
    When,
)
from django.utils import timezone

from certyard.inventory.models import CertificateLocation
from certyard.jobs.models import ExpiryNotice
from certyard.workflows.services import EventSpec, events_emit
from handlers.base import EventKind

logger = logging.getLogger(__name__)

EXPIRED = 0  # the threshold of a certificate whose not_after has passed
# A batch is tried again when its notices collide with another scan's (see _batch_notify).
_BATCH_ATTEMPTS = 3
_FIELDS = (
    "pk",
    "alias",
    "store_id",
    "store__store_type__short_name",
    "store__orchestrator_id",
    "store__client_machine",
    "store__store_path",
    "certificate_id",
    "certificate__not_after",
    "certificate__sha256",
    "certificate__common_name",
    "certificate__subject",
    "due_days",
)


@dataclass
class ExpiryScanResult:
    """What one scan did: ``by_threshold`` counts events per threshold (0: expired)."""

    locations_examined: int = 0
    events_emitted: int = 0
    by_threshold: dict[int, int] = field(default_factory=dict)
    batches: int = 0
    orphans_deleted: int = 0


def expiry_scan(*, now: dt.datetime | None = None, batch_size: int = 2000) -> ExpiryScanResult:
    """Emit the expiration events that are due at ``now`` (default: the current time).

    Walks the due locations by id (keyset pagination), ``batch_size`` at a time, each batch
    in its own transaction: its notices and its events are written together or not at all.
    Running it again emits nothing new; two scans at once never warn twice (the notices'
    unique constraint, see :func:`_batch_notify`).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or timezone.now()
    thresholds = expiry_thresholds()
    result = ExpiryScanResult(by_threshold=dict.fromkeys(thresholds, 0))
    result.orphans_deleted = notices_orphaned_delete()
    due = _due_locations(now=now, thresholds=thresholds)
    after = 0
    while True:
        examined, last_pk, emitted = _batch_notify(
            due=due, after=after, now=now, thresholds=thresholds, batch_size=batch_size
        )
        if not examined:
            break
        result.batches += 1
        result.locations_examined += examined
        for threshold in emitted:
            result.by_threshold[threshold] += 1
        result.events_emitted += len(emitted)
        after = last_pk
        if examined < batch_size:
            break
    if result.events_emitted:
        logger.info(
            "expiry scan: %d event(s) for %d location(s) in %d batch(es): %s",
            result.events_emitted,
            result.locations_examined,
            result.batches,
            {days: count for days, count in result.by_threshold.items() if count},
        )
    return result


def notices_orphaned_delete() -> int:
    """Delete the notices of locations that are gone (removed by an inventory)."""
    orphaned = ExpiryNotice.objects.filter(
        ~Exists(CertificateLocation.objects.filter(pk=OuterRef("location_id")))
    )
    return orphaned.delete()[0]


def expiry_thresholds() -> tuple[int, ...]:
    """The thresholds in days, ascending, with 0 (expired) first.

    Read at each scan, not at import, so a changed setting (or a test's) takes effect.
    """
    configured = {int(days) for days in settings.CERTYARD_EXPIRY_THRESHOLDS}
    if any(days < 1 for days in configured):
        raise ValueError("CERTYARD_EXPIRY_THRESHOLDS must hold whole numbers of days above 0")
    return (EXPIRED, *sorted(configured))


def _due_locations(*, now: dt.datetime, thresholds: Sequence[int]) -> QuerySet[CertificateLocation]:
    """Locations whose smallest crossed threshold (``due_days``) has no notice yet.

    Computed in the database, so a daily scan reads only the locations that need an event,
    not every certificate in the window again. Notices always cover a threshold and every
    larger one, so "the smallest crossed one is noticed" means "nothing left to say".
    """
    crossed = [
        When(certificate__not_after__lte=now + dt.timedelta(days=days), then=Value(days))
        for days in thresholds  # ascending: the first that matches is the smallest
    ]
    noticed = ExpiryNotice.objects.filter(
        location=OuterRef("pk"),
        certificate=OuterRef("certificate_id"),
        threshold_days=OuterRef("due_days"),
    )
    return (
        CertificateLocation.objects.filter(
            certificate__not_after__lte=now + dt.timedelta(days=max(thresholds))
        )
        .annotate(due_days=Case(*crossed, output_field=PositiveSmallIntegerField()))
        .filter(~Exists(noticed))
        .order_by("pk")
    )


def _batch_notify(
    *,
    due: QuerySet[CertificateLocation],
    after: int,
    now: dt.datetime,
    thresholds: Sequence[int],
    batch_size: int,
) -> tuple[int, int, list[int]]:
    """Warn the next ``batch_size`` due locations after id ``after``, in one transaction.

    Returns ``(locations read, last location id, threshold of each event emitted)``.

    Why no lock: the notices' unique constraint already makes a second warning impossible,
    whatever runs at once (two clusters, an admin's manual run). On SQLite, transactions
    are IMMEDIATE, so a second scan waits for the first one's batch and then reads its
    notices. On PostgreSQL, the second scan's insert of the same notice waits for the first
    to commit and then fails; its whole batch, events included, rolls back and is read
    again, now without what the first scan did. (``ignore_conflicts`` would not do: it
    cannot say which notices were ours, so both scans would emit the events.)
    """
    attempt = 1
    while True:
        try:
            with transaction.atomic():
                return _batch_write(
                    due=due, after=after, now=now, thresholds=thresholds, batch_size=batch_size
                )
        except IntegrityError:
            if attempt >= _BATCH_ATTEMPTS:
                raise
            attempt += 1
            logger.info(
                "expiry scan: the batch after location %d met another scan's notices; "
                "reading it again (attempt %d)",
                after,
                attempt,
            )


def _batch_write(
    *,
    due: QuerySet[CertificateLocation],
    after: int,
    now: dt.datetime,
    thresholds: Sequence[int],
    batch_size: int,
) -> tuple[int, int, list[int]]:
    """One batch's notices and events; the caller holds the transaction."""
    rows = list(due.filter(pk__gt=after).values(*_FIELDS)[:batch_size])
    if not rows:
        return 0, after, []
    noticed = set(
        ExpiryNotice.objects.filter(location_id__in=[row["pk"] for row in rows]).values_list(
            "location_id", "certificate_id", "threshold_days"
        )
    )
    emitted_at = timezone.now()
    notices: list[ExpiryNotice] = []
    specs: list[EventSpec] = []
    for row in rows:
        days = row["due_days"]
        # This threshold and every larger one: a certificate first seen with 5 days left
        # is never warned of 30 or 90 days afterwards.
        notices.extend(
            ExpiryNotice(
                location_id=row["pk"],
                certificate_id=row["certificate_id"],
                not_after=row["certificate__not_after"],
                threshold_days=threshold,
                emitted_at=emitted_at,
            )
            for threshold in thresholds
            if threshold >= days and (row["pk"], row["certificate_id"], threshold) not in noticed
        )
        specs.append(_event_spec(row=row, days=days, now=now))
    ExpiryNotice.objects.bulk_create(notices)
    events_emit(specs)
    return len(rows), rows[-1]["pk"], [row["due_days"] for row in rows]


def _event_spec(*, row: dict[str, Any], days: int, now: dt.datetime) -> EventSpec:
    """The ``certificate.expiring`` event of one location, with what handlers filter on
    (``store_type``, ``orchestrator_id``) and what their messages show."""
    not_after: dt.datetime = row["certificate__not_after"]
    store_type = row["store__store_type__short_name"]
    label = row["certificate__common_name"] or row["certificate__subject"]
    data = {
        "days": days,
        "days_left": (not_after - now).days,  # negative once expired
        "expired": days == EXPIRED,
        "not_after": not_after.isoformat(),
        "sha256": row["certificate__sha256"],
        "common_name": row["certificate__common_name"],
        "subject": row["certificate__subject"],
        "certificate_id": row["certificate_id"],
        "location_id": row["pk"],
        "store_id": str(row["store_id"]),
        "store_type": store_type,
        "orchestrator_id": str(row["store__orchestrator_id"]),
        "client_machine": row["store__client_machine"],
        "store_path": row["store__store_path"],
        # What the built-in email's default text names the store by.
        "store": f"{store_type} {row['store__client_machine']}:{row['store__store_path']}",
        "alias": row["alias"],
    }
    return EventSpec(
        kind=EventKind.CERTIFICATE_EXPIRING,
        subject_type="certificate",
        subject_id=str(row["certificate_id"]),
        subject_label=label or row["certificate__sha256"],
        data=data,
    )
