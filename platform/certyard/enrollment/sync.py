"""Synchronizing a CA gateway's records into the inventory, resumably.

A sync walks the gateway's :meth:`~handlers.gateways.CAGateway.synchronize` stream in
batches; after each batch it stores the last record's cursor, its counts and a heartbeat,
in one transaction with the certificates. A worker that dies mid-way leaves a running sync
with a stale heartbeat; the every-minute schedule hands it to a worker again, which starts
after the stored cursor, so no record is stored twice and none is skipped.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_q.tasks import async_task

from certyard.enrollment.gateways import GatewayFailed, gateway_instance
from certyard.enrollment.models import GatewayRecord, GatewaySync
from certyard.errors import ServiceError
from certyard.inventory.ingest import certificates_record
from certyard.inventory.models import Certificate
from certyard.inventory.services import certificate_revocation_record
from certyard.workflows.models import HandlerRegistration
from handlers.base import HandlerError
from handlers.gateways import CARecord, RecordStatus

logger = logging.getLogger(__name__)

SYNC_BATCH = 200
# A task may run this long; below Q_CLUSTER["retry"], so the broker never runs it twice.
_SYNC_TASK_TIMEOUT = 3000


def gateway_sync_start(
    *, registration: HandlerRegistration, full: bool = False, actor: Any = None
) -> GatewaySync:
    """Start synchronizing a gateway (incremental from the last finished sync, or full)."""
    gateway = gateway_instance(registration)
    if not type(gateway).supports_sync:
        raise ServiceError(
            f"{registration.name}'s CA cannot list what it issued, so it cannot be synchronized",
            code="sync_unsupported",
            http_status=409,
        )
    previous = (
        GatewaySync.objects.filter(gateway=registration, state=GatewaySync.State.FINISHED)
        .exclude(cursor="")
        .order_by("-finished_at")
        .first()
    )
    try:
        with transaction.atomic():
            sync = GatewaySync.objects.create(
                gateway=registration,
                full=full,
                start_cursor="" if full or previous is None else previous.cursor,
                heartbeat_at=timezone.now(),
                started_by=actor if getattr(actor, "pk", None) else None,
            )
    except IntegrityError as exc:
        raise ServiceError(
            f"{registration.name} is already being synchronized",
            code="sync_running",
            http_status=409,
        ) from exc
    transaction.on_commit(lambda: _enqueue(sync.pk))
    return sync


def _enqueue(sync_id: int) -> None:
    async_task(
        "certyard.enrollment.tasks.gateway_sync_run",
        sync_id,
        timeout=_SYNC_TASK_TIMEOUT,
        task_name=f"gateway sync {sync_id}",
    )


def _chain(record: CARecord) -> list[bytes] | None:
    try:
        certificate = x509.load_pem_x509_certificate((record.certificate_pem or "").encode())
    except ValueError:
        return None
    chain = [certificate.public_bytes(serialization.Encoding.DER)]
    for pem in record.chain_pem:
        try:
            chain.append(
                x509.load_pem_x509_certificate(pem.encode()).public_bytes(
                    serialization.Encoding.DER
                )
            )
        except ValueError:
            continue
    return chain


def _when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return timezone.now()
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _batch_store(sync: GatewaySync, batch: list[CARecord]) -> None:
    with_certificates = [(record, _chain(record)) for record in batch]
    chains = [chain for _, chain in with_certificates if chain]
    recorded = certificates_record(chains)
    position = 0
    for record, chain in with_certificates:
        certificate_id = None
        if chain:
            if position not in recorded.rejected:
                sha = x509.load_der_x509_certificate(chain[0]).fingerprint(hashes.SHA256()).hex()
                certificate_id = recorded.ids.get(sha)
            position += 1
        reason = int(record.revocation_reason) if record.revocation_reason is not None else None
        GatewayRecord.objects.update_or_create(
            gateway_id=sync.gateway_id,
            ca_request_id=record.ca_request_id[:500],
            defaults={
                "status": str(record.status),
                "serial_number": (record.serial_number or "")[:64],
                "product_id": record.product_id[:200],
                "certificate_id": certificate_id,
                "revoked_at": (
                    _when(record.revoked_at) if record.status == RecordStatus.REVOKED else None
                ),
                "revocation_reason": reason if record.status == RecordStatus.REVOKED else None,
            },
        )
        if record.status == RecordStatus.REVOKED and certificate_id is not None:
            # The CA says it is revoked: the inventory's certificate shows it.
            certificate_revocation_record(
                certificate=Certificate(pk=certificate_id),
                reason=reason if reason is not None else 0,
                revoked_at=_when(record.revoked_at),
            )
    sync.processed += len(batch)
    sync.added += len(recorded.new)
    sync.cursor = (batch[-1].sync_cursor or sync.cursor or "")[:500]
    sync.heartbeat_at = timezone.now()
    sync.save(update_fields=["processed", "added", "cursor", "heartbeat_at"])


def gateway_sync_run(sync_id: int) -> int:
    """Run (or resume) one sync; returns how many records it stored this time."""
    sync = GatewaySync.objects.select_related("gateway").filter(pk=sync_id).first()
    if sync is None or sync.state != GatewaySync.State.RUNNING:
        return 0
    stored = 0
    try:
        gateway = gateway_instance(sync.gateway)
        cursor = sync.cursor or sync.start_cursor or None
        # A full sync that already stored some records resumes after them.
        full = sync.full and not sync.cursor
        records = gateway.synchronize(cursor=cursor, full=full)
        while True:
            batch = list(itertools.islice(records, SYNC_BATCH))
            if not batch:
                break
            bad = next((r for r in batch if not isinstance(r, CARecord)), None)
            if bad is not None:
                raise HandlerError(f"yielded {type(bad).__name__}, not a CARecord")
            with transaction.atomic():
                _batch_store(sync, batch)
            stored += len(batch)
    except (HandlerError, GatewayFailed) as exc:
        _sync_end(sync, GatewaySync.State.FAILED, f"the gateway failed: {exc.message}")
        return stored
    except Exception as exc:  # a third party's bug: recorded on the sync, not lost in logs
        logger.exception("gateway sync %s failed", sync_id)
        _sync_end(sync, GatewaySync.State.FAILED, f"{type(exc).__name__}: {exc}")
        return stored
    _sync_end(sync, GatewaySync.State.FINISHED, "")
    return stored


def _sync_end(sync: GatewaySync, state: str, error: str) -> None:
    GatewaySync.objects.filter(pk=sync.pk, state=GatewaySync.State.RUNNING).update(
        state=state, error=error[:4000], finished_at=timezone.now(), heartbeat_at=timezone.now()
    )


def gateway_syncs_resume(now: dt.datetime | None = None) -> int:
    """Hand running syncs whose worker went quiet to a worker again (every minute)."""
    now = now or timezone.now()
    stale = now - dt.timedelta(seconds=settings.CERTYARD_SYNC_STALE_SECONDS)
    count = 0
    for sync_id in GatewaySync.objects.filter(
        state=GatewaySync.State.RUNNING, heartbeat_at__lt=stale
    ).values_list("pk", flat=True):
        # Claim by moving the heartbeat: of two schedulers, one wins.
        if GatewaySync.objects.filter(pk=sync_id, heartbeat_at__lt=stale).update(heartbeat_at=now):
            _enqueue(sync_id)
            count += 1
    return count
