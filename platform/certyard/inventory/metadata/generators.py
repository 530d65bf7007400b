"""Metadata generators at work: once for each new certificate, and over the whole inventory.

Both run the same batch (:func:`_batch_generate`, then :func:`_batch_record`): up to
:data:`BATCH_SIZE` certificates in id order, through every chosen generator registration
in its order, each registration's values written with its name as their source.

- **New certificates.** :class:`MetadataGeneratorCursor` holds the highest certificate id
  done. A batch moves it forward in the same transaction as the batch's values and run
  records, by a compare-and-set on its old value: a batch is recorded once or not at all,
  so a worker killed mid-batch leaves nothing behind and the next task does that batch
  again, and two tasks racing cannot both record it. An inventory commit that placed
  certificates queues a task (one at a time: ``queued_at``); a schedule every minute is
  the safety net.
- **Backfill.** :class:`MetadataBackfill` is the same walk from id 0 to the highest id
  when it started, with its own cursor. Its task works ~20 s, then queues its next slice;
  the schedule queues it again when its heartbeat is older than
  ``CERTYARD_BACKFILL_STALE_SECONDS`` (the worker was killed), and it carries on after
  its cursor: no certificate is done twice, none is skipped.

Generators run outside any transaction (they may take a while; SQLite has one writer);
only the writes are inside. Each batch and registration is one :class:`HandlerRun`
(kind ``metadata``, subject ``certificates <first>-<last>``), written with the values:
one row per 2,000 certificates and generator, not one per certificate. A generator that
raises for one certificate costs that certificate (recorded among the run's errors);
one whose class is missing or broken fails its run, and the others go on.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F, Max, Min, Q, QuerySet, Subquery
from django.utils import timezone
from django_q.tasks import async_task

from certyard.errors import Conflict, ServiceError
from certyard.inventory.metadata.services import (
    FieldRule,
    MetadataValueError,
    field_rules,
    metadata_rows_write,
)
from certyard.inventory.models import (
    Certificate,
    CertificateMetadata,
    MetadataBackfill,
    MetadataField,
    MetadataGeneratorCursor,
)
from certyard.precompiled import PrecompiledQuery
from certyard.workflows.invoke import (
    Invocation,
    Outcome,
    classify,
    error_text,
    invoke,
    run_end,
    run_new,
    runs_save,
)
from certyard.workflows.models import HandlerRegistration, HandlerRun
from certyard.workflows.services import event_emit
from handlers.base import (
    CertificateInfo,
    EventKind,
    HandlerError,
    HandlerKind,
    MetadataGenerator,
)

logger = logging.getLogger(__name__)

BATCH_SIZE = 2_000
# A task works this long, then queues its next slice: no task runs for an hour, and a
# worker's restart costs at most one slice.
SLICE_SECONDS = 20.0
ERRORS_KEPT = 20
# A queued new-certificate task not started after this long was lost: queue another.
_QUEUED_STALE_SECONDS = 300
# PostgreSQL hands out ids before commit: a certificate inserted a moment ago may still
# sit behind a lower id that commits later. Its cursor waits this long for stragglers.
_SETTLE_SECONDS_POSTGRES = 10
_TASK_TIMEOUT_CEILING = 3_000
_CURSOR_PK = 1
_TEXT_LIMIT = 16 * 1024

_INFO_COLUMNS = (
    "pk",
    "sha256",
    "subject",
    "issuer",
    "common_name",
    "sans",
    "serial_number",
    "not_before",
    "not_after",
    "key_algorithm",
    "key_size",
    "signature_algorithm",
    "is_ca",
    "self_signed",
)


# --- One batch ------------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """What one registration did with one batch, before it is recorded."""

    registration: HandlerRegistration
    started_at: dt.datetime
    succeeded: bool = True
    message: str = ""
    error: str = ""
    traceback: str = ""
    rows: list[tuple[int, int, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    error_count: int = 0
    seconds: float = 0.0
    values_set: int = 0
    # How the door's call ended, and the batch's outcome (a call that succeeded may
    # still fail the batch: every certificate raised).
    invocation: Invocation | None = None
    outcome: Outcome = Outcome.OK

    def problem(self, sha256: str, field_name: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append({"sha256": sha256, "field": field_name, "message": message[:500]})

    def fail(self, error: str, trace: str = "", outcome: Outcome = Outcome.RETRYABLE_ERROR) -> _Run:
        self.succeeded = False
        self.outcome = outcome
        self.error = error[:_TEXT_LIMIT]
        self.traceback = trace[-_TEXT_LIMIT:]
        return self


@dataclass(slots=True)
class BatchOutcome:
    """A recorded batch: which certificates, and what the generators did with them."""

    count: int
    first_id: int
    last_id: int
    values_set: int
    error_count: int
    errors: list[dict[str, str]]


def _count(number: int, noun: str) -> str:
    """``1 value``, ``80 values``: a run's message is read by people."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _certificate_rows(*, after_id: int, upper_id: int | None, limit: int) -> list[tuple[Any, ...]]:
    """The next certificates after ``after_id`` (up to ``upper_id``), as plain tuples."""
    certificates = Certificate.objects.filter(pk__gt=after_id)
    if upper_id is not None:
        certificates = certificates.filter(pk__lte=upper_id)
    return list(certificates.order_by("pk").values_list(*_INFO_COLUMNS)[:limit])


def _infos(
    rows: Sequence[tuple[Any, ...]], metadata: Mapping[int, dict[str, str]]
) -> list[CertificateInfo]:
    """The batch as generators see it. Each certificate's ``metadata`` is the very dict in
    ``metadata``: the batch updates it after each registration, so the next generator
    sees the values set before it without building every object again."""
    return [
        CertificateInfo(
            sha256=sha256,
            subject=subject,
            issuer=issuer,
            common_name=common_name,
            sans=tuple(sans or ()),
            serial_number=serial_number,
            not_before=_iso(not_before),
            not_after=_iso(not_after),
            key_algorithm=key_algorithm,
            key_size=key_size,
            signature_algorithm=signature_algorithm,
            is_ca=is_ca,
            self_signed=self_signed,
            metadata=metadata[pk],
        )
        for (
            pk,
            sha256,
            subject,
            issuer,
            common_name,
            sans,
            serial_number,
            not_before,
            not_after,
            key_algorithm,
            key_size,
            signature_algorithm,
            is_ca,
            self_signed,
        ) in rows
    ]


def _metadata_of(ids: Sequence[int], names: Mapping[int, str]) -> dict[int, dict[str, str]]:
    """The values the batch's certificates already have: by certificate id, by field name.

    A batch is every certificate with an id from its first to its last: one range scan.
    """
    found: dict[int, dict[str, str]] = {pk: {} for pk in ids}
    values = CertificateMetadata.objects.filter(
        certificate_id__gte=ids[0], certificate_id__lte=ids[-1]
    ).values_list("certificate_id", "field_id", "value")
    for certificate_id, field_id, value in values:
        if certificate_id in found:
            found[certificate_id][names[field_id]] = value
    return found


def _each(generator: MetadataGenerator, infos: list[CertificateInfo]) -> list[tuple[Any, Any]]:
    """``generate`` per certificate: one that raises costs that certificate only."""
    results: list[tuple[Any, Any]] = []
    for info in infos:
        try:
            results.append((generator.generate(info), None))
        except Exception as exc:  # a generator's bug or refusal, for this certificate
            results.append((None, exc))
    return results


def _generate_all(
    generator: MetadataGenerator, infos: list[CertificateInfo]
) -> list[tuple[Any, Any]]:
    """Each certificate's ``(values, exception)``, through ``generate_many`` if overridden."""
    if type(generator).generate_many is MetadataGenerator.generate_many:
        return _each(generator, infos)
    try:
        results = generator.generate_many(infos)
    except Exception:
        # Find out which certificate it cannot take: one at a time.
        return _each(generator, infos)
    if not isinstance(results, list | tuple) or len(results) != len(infos):
        count = len(results) if isinstance(results, list | tuple) else type(results).__name__
        raise HandlerError(
            f"generate_many returned {count} results for {len(infos)} certificates",
            permanent=True,
        )
    return [(result, None) for result in results]


def _generate(
    registration: HandlerRegistration,
    ids: Sequence[int],
    infos: list[CertificateInfo],
    rules: Mapping[str, FieldRule],
) -> _Run:
    """Run one registration over one batch; never raises."""
    run = _Run(registration=registration, started_at=timezone.now())
    started = time.monotonic()
    try:
        return _generate_into(run, ids, infos, rules)
    finally:
        run.seconds = time.monotonic() - started


def _generate_into(
    run: _Run, ids: Sequence[int], infos: list[CertificateInfo], rules: Mapping[str, FieldRule]
) -> _Run:
    invocation = invoke(
        run.registration,
        MetadataGenerator,
        lambda generator: _generate_all(generator, infos),
        timeout_text=(
            "the batch timed out after {seconds:g} s "
            "(the registration's timeout applies to each batch)"
        ),
    )
    run.invocation = invocation
    if not invocation.ok:
        return run.fail(invocation.message, invocation.traceback, invocation.outcome)
    first_raised: BaseException | None = None
    raised = 0
    for certificate_id, certificate, (values, exc) in zip(
        ids, infos, invocation.value, strict=True
    ):
        if exc is not None:
            raised += 1
            first_raised = first_raised or exc
            run.problem(certificate.sha256, "", error_text(exc))
            continue
        if values is None:
            continue
        if not isinstance(values, Mapping):
            run.problem(certificate.sha256, "", f"returned {type(values).__name__}, not a mapping")
            continue
        for name, raw in values.items():
            if raw is None:
                continue  # "no value" from a generator means it cannot tell: nothing changes
            rule = rules.get(name) if isinstance(name, str) else None
            if rule is None:
                run.problem(certificate.sha256, str(name)[:100], "there is no such metadata field")
                continue
            try:
                value = rule.clean(raw)
            except MetadataValueError as exc:
                run.problem(certificate.sha256, name, str(exc))
                continue
            if value is not None:
                run.rows.append((certificate_id, rule.field_id, value))
    if infos and raised == len(infos):
        first = run.errors[0]["message"] if run.errors else "every certificate failed"
        return run.fail(
            f"it failed for every certificate of the batch: {first}",
            outcome=classify(first_raised),
        )
    return run


def _batch_generate(
    registrations: Sequence[HandlerRegistration], rows: Sequence[tuple[Any, ...]]
) -> list[_Run]:
    """Every registration over one batch, in order; each sees the values set before it."""
    fields = list(MetadataField.objects.all())
    rules = field_rules(fields)
    names = {field.pk: field.name for field in fields}
    ids = [row[0] for row in rows]
    metadata = _metadata_of(ids, names)
    infos = _infos(rows, metadata)
    runs: list[_Run] = []
    for registration in registrations:
        run = _generate(registration, ids, infos, rules)
        runs.append(run)
        if run.succeeded:
            for certificate_id, field_id, value in run.rows:
                metadata[certificate_id][names[field_id]] = value
    return runs


def _batch_record(
    runs: Sequence[_Run], rows: Sequence[tuple[Any, ...]], *, backfill_id: int | None
) -> BatchOutcome:
    """Write the batch's values, its run records and its event. Inside the caller's
    transaction, after it has moved its cursor."""
    first_id, last_id = rows[0][0], rows[-1][0]
    label = f"certificates {first_id}\N{EN DASH}{last_id}"
    inputs = {"count": len(rows), "first_id": first_id, "last_id": last_id}
    if backfill_id is not None:
        inputs["backfill"] = backfill_id
    records: list[HandlerRun] = []
    for run in runs:
        started = time.monotonic()
        if run.succeeded:
            run.values_set = metadata_rows_write(
                run.rows,
                source=run.registration.name,
                now=timezone.now(),
                protect_user_values=True,
            )
            run.message = (
                f"{_count(run.values_set, 'value')} set on {_count(len(rows), 'certificate')}"
                + (f", {_count(run.error_count, 'error')}" if run.error_count else "")
            )
        seconds = run.seconds + time.monotonic() - started
        record = run_new(
            run.registration,
            subject_type="certificates",
            subject_id=f"{first_id}-{last_id}",
            subject_label=label,
            inputs=inputs,
            started_at=run.started_at,
        )
        invocation = run.invocation or Invocation(run.outcome, message=run.error)
        run_end(
            record,
            invocation,
            message=run.message,
            output={
                "values_set": run.values_set,
                "error_count": run.error_count,
                "errors": run.errors,
            },
            error=run.error,
            outcome=run.outcome,
            duration_ms=int(seconds * 1000),
        )
        records.append(record)
    runs_save(records)
    values_set = sum(run.values_set for run in runs)
    errors = [error for run in runs for error in run.errors][:ERRORS_KEPT]
    error_count = sum(run.error_count for run in runs)
    event_emit(
        kind=EventKind.METADATA_GENERATED,
        subject_type="certificates",
        subject_id=f"{first_id}-{last_id}",
        subject_label=label,
        data={
            **inputs,
            "values_set": values_set,
            "error_count": error_count,
            "registrations": [run.registration.name for run in runs],
            "failed": [run.registration.name for run in runs if not run.succeeded],
        },
    )
    return BatchOutcome(len(rows), first_id, last_id, values_set, error_count, errors)


def _enabled_generators() -> QuerySet[HandlerRegistration]:
    return HandlerRegistration.objects.filter(enabled=True, kind=HandlerKind.METADATA).order_by(
        "order", "pk"
    )


# Asked after every certificate recorded (the cursor moves on when there is none).
_all_enabled_generators = PrecompiledQuery(_enabled_generators)


def _registrations(ids: Sequence[int] | None = None) -> list[HandlerRegistration]:
    """The enabled generator registrations (those of ``ids`` only, if given), in order."""
    if not ids:
        return _all_enabled_generators()
    return list(_enabled_generators().filter(pk__in=list(ids)))


def _task_timeout(registrations: Sequence[HandlerRegistration]) -> int:
    """django-q2 kills a task past its timeout: a slice, plus one batch's worst case."""
    worst_batch = sum(registration.timeout_seconds for registration in registrations)
    return int(min(SLICE_SECONDS + worst_batch + 120, _TASK_TIMEOUT_CEILING))


# --- New certificates -----------------------------------------------------------------


def _cursor() -> MetadataGeneratorCursor:
    cursor, _ = MetadataGeneratorCursor.objects.get_or_create(pk=_CURSOR_PK)
    return cursor


def _settled_upper_id(after_id: int, settle_seconds: float | None) -> int | None:
    """The highest id the new-certificate cursor may reach now (None: no limit)."""
    if settle_seconds is None:
        # SQLite has one writer: ids become visible in the order they are given.
        settle_seconds = _SETTLE_SECONDS_POSTGRES if connection.vendor == "postgresql" else 0
    if settle_seconds <= 0:
        return None
    recent = timezone.now() - dt.timedelta(seconds=settle_seconds)
    youngest = Certificate.objects.filter(pk__gt=after_id, first_seen__gt=recent).aggregate(
        first=Min("pk")
    )["first"]
    return None if youngest is None else youngest - 1


def metadata_generate_new(
    *,
    batch_size: int = BATCH_SIZE,
    time_budget: float | None = SLICE_SECONDS,
    settle_seconds: float | None = None,
) -> int:
    """Run the enabled generators over the certificates added since the last run.

    Works in batches for about ``time_budget`` seconds (None: until done), then queues
    itself again if certificates remain. Returns how many certificates it processed.
    ``settle_seconds`` leaves certificates younger than that for a later run (default:
    10 s on PostgreSQL, whose ids may commit out of order; none on SQLite).
    """
    cursor = _cursor()
    # From here on, a new inventory commit queues another task: none is missed.
    MetadataGeneratorCursor.objects.filter(pk=cursor.pk).update(queued_at=None)
    registrations = _registrations()
    started = time.monotonic()
    processed = 0
    while True:
        last_id = MetadataGeneratorCursor.objects.values_list("last_certificate_id", flat=True).get(
            pk=cursor.pk
        )
        if not registrations:
            # Nothing to run: the certificates so far are done, as far as generators go.
            top = Certificate.objects.aggregate(top=Max("pk"))["top"] or 0
            if top > last_id:
                MetadataGeneratorCursor.objects.filter(
                    pk=cursor.pk, last_certificate_id=last_id
                ).update(last_certificate_id=top, updated_at=timezone.now())
            return processed
        rows = _certificate_rows(
            after_id=last_id,
            upper_id=_settled_upper_id(last_id, settle_seconds),
            limit=batch_size,
        )
        if not rows:
            return processed
        runs = _batch_generate(registrations, rows)
        with transaction.atomic():
            moved = MetadataGeneratorCursor.objects.filter(
                pk=cursor.pk, last_certificate_id=last_id
            ).update(last_certificate_id=rows[-1][0], updated_at=timezone.now())
            if not moved:
                logger.info("metadata: another worker processed certificates after %d", last_id)
                return processed
            _batch_record(runs, rows, backfill_id=None)
        processed += len(rows)
        if time_budget is not None and time.monotonic() - started > time_budget:
            metadata_generate_new_enqueue(force=True)
            return processed


def metadata_generate_new_enqueue(*, force: bool = False) -> bool:
    """Queue :func:`metadata_generate_new` if certificates wait for it and no task is
    queued already (``force``: queue one anyway). Whether a task was queued.

    Cheap enough for every inventory commit: three indexed reads, and one write when it
    queues. With no generator registered, it moves the cursor itself, without a task: one
    read and one write.
    """
    registrations = _registrations()
    now = timezone.now()
    if not registrations:
        _cursor_to_newest(now)
        return False
    cursor = _cursor()
    if not Certificate.objects.filter(pk__gt=cursor.last_certificate_id).exists():
        return False
    waiting = MetadataGeneratorCursor.objects.filter(pk=cursor.pk)
    if not force:
        stale = now - dt.timedelta(seconds=_QUEUED_STALE_SECONDS)
        waiting = waiting.filter(Q(queued_at__isnull=True) | Q(queued_at__lt=stale))
    if not waiting.update(queued_at=now):
        return False
    async_task(
        "certyard.inventory.tasks.metadata_generate_new",
        task_name="metadata for new certificates",
        timeout=_task_timeout(registrations),
    )
    return True


def _cursor_to_newest(now: dt.datetime) -> None:
    """The new-certificate cursor moved to the newest certificate (no generator is
    registered: the certificates so far are done, as far as generators go)."""
    newest = Subquery(Certificate.objects.order_by("-pk").values("pk")[:1])
    moved = MetadataGeneratorCursor.objects.filter(
        pk=_CURSOR_PK, last_certificate_id__lt=newest
    ).update(last_certificate_id=newest, updated_at=now)
    if not moved:
        # Already there, or no cursor yet: made now, so that a generator registered later
        # starts after today's certificates (a backfill is for those).
        cursor = _cursor()
        top = Certificate.objects.aggregate(top=Max("pk"))["top"] or 0
        if top > cursor.last_certificate_id:
            MetadataGeneratorCursor.objects.filter(
                pk=cursor.pk, last_certificate_id=cursor.last_certificate_id
            ).update(last_certificate_id=top, updated_at=now)


def metadata_new_certificates_recorded() -> None:
    """Called inside the transaction that recorded certificates new to the inventory.

    With generators registered, they are queued once it commits
    (:func:`metadata_generate_new_after_commit`). With none, the cursor moves past the
    new certificates: on SQLite within this transaction, since its writers go one at a
    time anyway and a second write after the commit waited for SQLite's lock again (with
    8 clients enrolling, a third of the request threads' time); on PostgreSQL after the
    commit, since holding the cursor's row to the end of the transaction would make
    concurrent inventories wait for each other.
    """
    if connection.vendor == "sqlite" and not _registrations():
        try:
            with transaction.atomic():
                _cursor_to_newest(timezone.now())
        except Exception:  # the certificates are recorded whatever becomes of the cursor
            logger.exception("metadata: could not move the new-certificate cursor")
        return
    transaction.on_commit(metadata_generate_new_after_commit)


def metadata_generate_new_after_commit() -> None:
    """For ``transaction.on_commit`` after an inventory commit: never raises, since the
    inventory is already recorded and the schedule will catch up."""
    try:
        metadata_generate_new_enqueue()
    except Exception:
        logger.exception("metadata: could not queue the generators for new certificates")


# --- Backfill -------------------------------------------------------------------------


def metadata_backfill_start(
    *, actor: AbstractBaseUser | None, registration_ids: Sequence[int] | None = None
) -> MetadataBackfill:
    """Run the generators (those of ``registration_ids``; all enabled ones if empty) over
    every certificate the inventory holds now, in the background.

    Conflict while another backfill is queued or running.
    """
    ids = sorted({int(pk) for pk in registration_ids or []})
    registrations = _registrations(ids)
    if ids:
        unusable = sorted(set(ids) - {registration.pk for registration in registrations})
        if unusable:
            listed = ", ".join(str(pk) for pk in unusable)
            raise ServiceError(
                f"no enabled metadata generator registration has the id {listed}",
                details={"fields": {"registrations": [f"not an enabled generator: {listed}"]}},
            )
    if not registrations:
        raise ServiceError(
            "no metadata generator is registered and enabled: register one in Django admin "
            "(Handler registrations) first"
        )
    with transaction.atomic():
        # The cursor row doubles as a lock, so two starts on PostgreSQL cannot both pass
        # the check below (SQLite's immediate transactions already take turns).
        MetadataGeneratorCursor.objects.select_for_update().get(pk=_cursor().pk)
        running = MetadataBackfill.objects.filter(state__in=MetadataBackfill.ACTIVE_STATES).first()
        if running is not None:
            raise Conflict(
                f"backfill {running.pk} is {running.state} ({running.processed:,} of "
                f"{running.total:,} certificates done): wait for it, or cancel it first",
                code="backfill_running",
            )
        upper_id = Certificate.objects.aggregate(top=Max("pk"))["top"] or 0
        backfill = MetadataBackfill.objects.create(
            registration_ids=ids,
            registration_names=[registration.name for registration in registrations],
            total=Certificate.objects.filter(pk__lte=upper_id).count(),
            upper_id=upper_id,
            started_by=actor if actor is not None and actor.is_authenticated else None,
            heartbeat_at=timezone.now(),
        )
        backfill_id = backfill.pk
        transaction.on_commit(lambda: _backfill_enqueue(backfill_id, registrations))
    return backfill


def _backfill_enqueue(backfill_id: int, registrations: Sequence[HandlerRegistration]) -> None:
    async_task(
        "certyard.inventory.tasks.metadata_backfill",
        backfill_id,
        task_name=f"metadata backfill {backfill_id}",
        timeout=_task_timeout(registrations),
    )


def metadata_backfill_cancel(*, backfill: MetadataBackfill) -> MetadataBackfill:
    """Stop a queued or running backfill after its current batch (kept: it is recorded)."""
    now = timezone.now()
    stopped = MetadataBackfill.objects.filter(
        pk=backfill.pk, state__in=MetadataBackfill.ACTIVE_STATES
    ).update(state=MetadataBackfill.State.CANCELLED, finished_at=now)
    backfill.refresh_from_db()
    if not stopped:
        raise Conflict(f"backfill {backfill.pk} has already ended ({backfill.state})")
    return backfill


def metadata_backfill_run(
    backfill_id: int, *, batch_size: int = BATCH_SIZE, time_budget: float | None = SLICE_SECONDS
) -> int:
    """One slice of a backfill: batches for about ``time_budget`` seconds from its cursor,
    then its next slice is queued. Returns how many certificates this slice processed."""
    now = timezone.now()
    MetadataBackfill.objects.filter(pk=backfill_id, state=MetadataBackfill.State.QUEUED).update(
        state=MetadataBackfill.State.RUNNING, started_at=now, heartbeat_at=now
    )
    backfill = MetadataBackfill.objects.filter(pk=backfill_id).first()
    if backfill is None or backfill.state != MetadataBackfill.State.RUNNING:
        return 0
    registrations = _registrations(backfill.registration_ids)
    if not registrations:
        _backfill_fail(backfill, "its generator registrations were disabled or deleted")
        return 0
    started = time.monotonic()
    processed = 0
    try:
        while True:
            rows = _certificate_rows(
                after_id=backfill.cursor, upper_id=backfill.upper_id, limit=batch_size
            )
            if not rows:
                now = timezone.now()
                MetadataBackfill.objects.filter(
                    pk=backfill.pk, state=MetadataBackfill.State.RUNNING, cursor=backfill.cursor
                ).update(state=MetadataBackfill.State.SUCCEEDED, finished_at=now, heartbeat_at=now)
                return processed
            runs = _batch_generate(registrations, rows)
            if not _backfill_batch_record(backfill, runs, rows):
                return processed  # cancelled, or another worker holds this backfill
            processed += len(rows)
            if time_budget is not None and time.monotonic() - started > time_budget:
                MetadataBackfill.objects.filter(pk=backfill.pk).update(heartbeat_at=timezone.now())
                _backfill_enqueue(backfill.pk, registrations)
                return processed
    except Exception as exc:  # a bug or a database failure: recorded, never re-raised
        logger.exception("metadata backfill %s failed", backfill.pk)
        _backfill_fail(backfill, f"{type(exc).__name__}: {exc}")
        return processed


def _backfill_batch_record(
    backfill: MetadataBackfill, runs: Sequence[_Run], rows: Sequence[tuple[Any, ...]]
) -> bool:
    """Move the backfill's cursor and record the batch, in one transaction; False when
    the backfill is no longer this task's to move (cancelled, or done by another)."""
    with transaction.atomic():
        moved = MetadataBackfill.objects.filter(
            pk=backfill.pk, state=MetadataBackfill.State.RUNNING, cursor=backfill.cursor
        ).update(cursor=rows[-1][0], heartbeat_at=timezone.now())
        if not moved:
            return False
        outcome = _batch_record(runs, rows, backfill_id=backfill.pk)
        errors = (backfill.errors + outcome.errors)[:ERRORS_KEPT]
        MetadataBackfill.objects.filter(pk=backfill.pk).update(
            processed=F("processed") + outcome.count,
            values_set=F("values_set") + outcome.values_set,
            error_count=F("error_count") + outcome.error_count,
            errors=errors,
        )
    backfill.cursor = outcome.last_id
    backfill.errors = errors
    return True


def _backfill_fail(backfill: MetadataBackfill, error: str) -> None:
    MetadataBackfill.objects.filter(pk=backfill.pk, state=MetadataBackfill.State.RUNNING).update(
        state=MetadataBackfill.State.FAILED, error=error[:_TEXT_LIMIT], finished_at=timezone.now()
    )


def metadata_backfills_resume(*, now: dt.datetime | None = None) -> int:
    """Queue again the backfills whose worker stopped (heartbeat older than
    ``CERTYARD_BACKFILL_STALE_SECONDS``); how many. Each carries on after its cursor."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.CERTYARD_BACKFILL_STALE_SECONDS)
    stalled = MetadataBackfill.objects.filter(state__in=MetadataBackfill.ACTIVE_STATES).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    )
    resumed = 0
    for backfill in stalled:
        # Compare-and-set on the heartbeat: two schedules never queue it twice.
        if MetadataBackfill.objects.filter(
            pk=backfill.pk, state=backfill.state, heartbeat_at=backfill.heartbeat_at
        ).update(heartbeat_at=now):
            logger.warning(
                "metadata backfill %s stalled at certificate %d (%d of %d): resuming",
                backfill.pk,
                backfill.cursor,
                backfill.processed,
                backfill.total,
            )
            _backfill_enqueue(backfill.pk, _registrations(backfill.registration_ids))
            resumed += 1
    return resumed
