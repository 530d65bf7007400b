"""Writes of the fleet app: registration, identity, approval, and the job lifecycle."""

import base64
import binascii
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from certyard.errors import Conflict, NotFound, ServiceError
from certyard.fleet.models import Job, JobHistory, Orchestrator, RegistrationToken
from certyard.inventory.models import CertificateStore
from certyard.inventory.services import InventoryOutcome, inventory_apply, inventory_prepare
from certyard.pki.services import ca_issue_client_certificate, orchestrator_ca_get_or_create
from orchestrators.protocol import (
    SESSION_ASSERTION_MAX_SKEW_SECONDS,
    JobOutcome,
    JobType,
    session_signing_input,
)

_SESSION_SALT = "certyard.orchestrator-session.v1"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- Registration tokens ----------------------------------------------------------


def registration_token_create(
    *,
    description: str,
    valid_for: dt.timedelta,
    reusable: bool = False,
    approve_on_register: bool = False,
    created_by: Any = None,
) -> tuple[RegistrationToken, str]:
    """A new registration token and its secret value, which is shown only this once."""
    if valid_for <= dt.timedelta(0):
        raise ServiceError("a registration token must be valid for some time")
    value = f"cyreg_{secrets.token_urlsafe(32)}"
    token = RegistrationToken.objects.create(
        description=description,
        token_hash=_token_hash(value),
        token_prefix=value[:8],
        reusable=reusable,
        approve_on_register=approve_on_register,
        expires_at=timezone.now() + valid_for,
        created_by=created_by,
    )
    return token, value


def registration_token_revoke(*, token: RegistrationToken) -> RegistrationToken:
    token.revoked = True
    token.save(update_fields=["revoked"])
    return token


def _registration_token_check(value: str) -> RegistrationToken:
    """The token if it may be used now; raises the reason it may not."""
    token = RegistrationToken.objects.filter(token_hash=_token_hash(value)).first()
    refused = "the registration token is not valid"
    if token is None or token.revoked:
        raise ServiceError(refused, code="token_invalid", http_status=401)
    if token.expires_at <= timezone.now():
        raise ServiceError(
            "the registration token has expired", code="token_expired", http_status=401
        )
    if not token.reusable and token.use_count:
        raise _token_used()
    return token


def _token_used() -> ServiceError:
    return ServiceError(
        "the registration token has already been used", code="token_used", http_status=401
    )


def _registration_token_spend(value: str) -> RegistrationToken:
    """Check and spend a token atomically; the caller holds the transaction."""
    token = _registration_token_check(value)
    spent = RegistrationToken.objects.filter(pk=token.pk)
    if not token.reusable:
        spent = spent.filter(use_count=0)
    if not spent.update(use_count=F("use_count") + 1, last_used_at=timezone.now()):
        raise _token_used()  # spent by a registration at the same moment
    return token


# --- Registration and identity -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    orchestrator: Orchestrator
    certificate_pem: str
    ca_chain: list[str]


def csr_load(pem: str) -> x509.CertificateSigningRequest:
    """A CSR whose signature verifies and whose key is one agents may use (EC P-256/384)."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError as exc:
        raise ServiceError(f"csr: not a valid PEM certificate signing request ({exc})") from exc
    if not csr.is_signature_valid:
        raise ServiceError("csr: the signature does not match its public key")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
    ):
        raise ServiceError("csr: the agent key must be an EC P-256 or P-384 key")
    return csr


def _spki_sha256(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def orchestrator_register(
    *,
    token: str,
    name: str,
    client_machine: str,
    agent_version: str,
    capabilities: list[str],
    client_parameters: dict[str, str],
    csr_pem: str,
    source_address: str | None,
) -> Registration:
    """Record an agent and certify its key; it starts New unless its token pre-approves it.

    An orchestrator of the same name on the same machine may register again only
    after an admin reset it (its stores and history are kept).
    """
    csr = csr_load(csr_pem)
    # Refuse a bad token before doing any signing for its bearer.
    _registration_token_check(token)
    public_key = csr.public_key()
    ca = orchestrator_ca_get_or_create()
    certificate = ca_issue_client_certificate(
        ca=ca, csr=csr, common_name=name, days=settings.CERTYARD_AGENT_CERT_DAYS
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    identity = {
        "public_key_sha256": _spki_sha256(public_key),
        "public_key_pem": public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "certificate_pem": certificate_pem,
        "certificate_not_after": certificate.not_valid_after_utc,
        "last_assertion_at": 0,
    }
    now = timezone.now()
    with transaction.atomic():
        registration_token = _registration_token_spend(token)
        status = (
            Orchestrator.Status.APPROVED
            if registration_token.approve_on_register
            else Orchestrator.Status.NEW
        )
        fields = {
            "agent_version": agent_version,
            "capabilities": capabilities,
            "client_parameters": client_parameters,
            "source_address": source_address,
            "registration_token": registration_token,
            "status": status,
            "status_changed_at": now,
            "status_changed_by": None,
            "last_seen": now,
            "last_error": "",
            **identity,
        }
        existing = (
            Orchestrator.objects.select_for_update()
            .filter(name=name, client_machine=client_machine)
            .first()
        )
        if existing is not None and existing.has_identity:
            raise Conflict(
                f"an orchestrator named {name} on {client_machine} is already registered; "
                "an administrator must reset it before it can register again",
                code="already_registered",
            )
        if existing is None:
            orchestrator = Orchestrator.objects.create(
                name=name, client_machine=client_machine, **fields
            )
        else:
            for key, value in fields.items():
                setattr(existing, key, value)
            existing.save()
            orchestrator = existing
    return Registration(orchestrator, certificate_pem, [ca.certificate_pem])


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    expires_in: int
    orchestrator: Orchestrator


def orchestrator_session_open(
    *, orchestrator_id: str, issued_at: int, nonce: str, signature_b64: str
) -> Session:
    """A short-lived bearer token for an agent that proved it holds its certified key."""
    refused = ServiceError(
        "the assertion does not prove possession of a registered orchestrator key",
        code="identity_rejected",
        http_status=401,
    )
    orchestrator = Orchestrator.objects.filter(pk=orchestrator_id).first()
    if orchestrator is None or not orchestrator.has_identity:
        raise refused
    now = int(timezone.now().timestamp())
    if abs(now - issued_at) > SESSION_ASSERTION_MAX_SKEW_SECONDS:
        raise ServiceError(
            "the assertion's issued_at is too far from the platform's clock; "
            "check the agent's time",
            code="clock_skew",
            http_status=401,
        )
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key = serialization.load_pem_public_key(orchestrator.public_key_pem.encode())
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise refused
        public_key.verify(
            signature,
            session_signing_input(
                orchestrator_id=str(orchestrator.pk), issued_at=issued_at, nonce=nonce
            ),
            ec.ECDSA(hashes.SHA256()),
        )
    except (binascii.Error, ValueError, InvalidSignature) as exc:
        raise refused from exc
    # Each assertion is good once: issued_at must move forward.
    if not Orchestrator.objects.filter(pk=orchestrator.pk, last_assertion_at__lt=issued_at).update(
        last_assertion_at=issued_at, last_seen=timezone.now()
    ):
        raise ServiceError(
            "this assertion was already used; sign a new one", code="replayed", http_status=401
        )
    token = signing.dumps(
        {"o": str(orchestrator.pk), "c": _identity_fingerprint(orchestrator)}, salt=_SESSION_SALT
    )
    return Session(token, settings.CERTYARD_SESSION_SECONDS, orchestrator)


def orchestrator_from_session_token(token: str) -> Orchestrator | None:
    """The orchestrator a valid, unexpired session token belongs to, if its key still stands."""
    try:
        claims = signing.loads(token, salt=_SESSION_SALT, max_age=settings.CERTYARD_SESSION_SECONDS)
    except signing.BadSignature:
        return None
    orchestrator = Orchestrator.objects.filter(pk=claims.get("o")).first()
    if orchestrator is None or not orchestrator.has_identity:
        return None
    if _identity_fingerprint(orchestrator) != claims.get("c"):
        return None  # reset or registered again since: a new certificate, a new identity
    return orchestrator


def _identity_fingerprint(orchestrator: Orchestrator) -> str:
    """Names the current registration: every registration issues a new certificate."""
    return hashlib.sha256(orchestrator.certificate_pem.encode()).hexdigest()[:32]


_SEEN_WRITE_INTERVAL = dt.timedelta(seconds=30)


def orchestrator_seen(*, orchestrator: Orchestrator) -> None:
    """Note the agent is alive, without writing on every request."""
    now = timezone.now()
    if orchestrator.last_seen is None or now - orchestrator.last_seen > _SEEN_WRITE_INTERVAL:
        Orchestrator.objects.filter(pk=orchestrator.pk).update(last_seen=now)
        orchestrator.last_seen = now


# --- Approval ---------------------------------------------------------------------


def _status_set(*, orchestrator: Orchestrator, status: str, actor: Any) -> Orchestrator:
    orchestrator.status = status
    orchestrator.status_changed_at = timezone.now()
    orchestrator.status_changed_by = actor
    orchestrator.save(update_fields=["status", "status_changed_at", "status_changed_by"])
    return orchestrator


def orchestrator_approve(*, orchestrator: Orchestrator, actor: Any) -> Orchestrator:
    if not orchestrator.has_identity:
        raise ServiceError(
            "this orchestrator was reset; it must register again before it can be approved",
            code="not_registered",
        )
    return _status_set(orchestrator=orchestrator, status=Orchestrator.Status.APPROVED, actor=actor)


def orchestrator_disapprove(*, orchestrator: Orchestrator, actor: Any) -> Orchestrator:
    """Refuse the agent all work; jobs it held go back to the queue for later."""
    with transaction.atomic():
        _status_set(orchestrator=orchestrator, status=Orchestrator.Status.DISAPPROVED, actor=actor)
        _release_leases(orchestrator)
    return orchestrator


def orchestrator_reset(*, orchestrator: Orchestrator, actor: Any) -> Orchestrator:
    """Forget the agent's key: it can do nothing until it registers again (stores are kept)."""
    with transaction.atomic():
        orchestrator.public_key_sha256 = ""
        orchestrator.public_key_pem = ""
        orchestrator.certificate_pem = ""
        orchestrator.certificate_not_after = None
        orchestrator.last_assertion_at = 0
        orchestrator.save(
            update_fields=[
                "public_key_sha256",
                "public_key_pem",
                "certificate_pem",
                "certificate_not_after",
                "last_assertion_at",
            ]
        )
        _status_set(orchestrator=orchestrator, status=Orchestrator.Status.NEW, actor=actor)
        _release_leases(orchestrator)
    return orchestrator


def _release_leases(orchestrator: Orchestrator) -> None:
    """Put the orchestrator's leased jobs back in the queue, closing their open attempts."""
    now = timezone.now()
    leased = list(
        Job.objects.filter(orchestrator=orchestrator, state=Job.State.LEASED).values_list(
            "pk", "attempts"
        )
    )
    for pk, attempt in leased:
        if Job.objects.filter(pk=pk, state=Job.State.LEASED).update(
            state=Job.State.PENDING, lease_expires_at=None, available_at=now
        ):
            JobHistory.objects.filter(job_id=pk, attempt=attempt, finished_at=None).update(
                finished_at=now,
                outcome=JobHistory.Outcome.RELEASED,
                message="the orchestrator was disapproved or reset while it held the job",
            )


# --- Jobs -------------------------------------------------------------------------


def job_inventory_request(
    *, store: CertificateStore, source: str, requested_by: Any = None
) -> tuple[Job, bool]:
    """An inventory job for the store, or the one already open: ``(job, created)``."""
    if store.orchestrator.status != Orchestrator.Status.APPROVED:
        raise ServiceError(
            f"orchestrator {store.orchestrator.name} is not approved: it cannot run jobs",
            code="not_approved",
            http_status=409,
        )
    open_job = Job.objects.filter(
        store=store, type=JobType.INVENTORY, state__in=Job.OPEN_STATES
    ).first()
    if open_job is not None:
        return open_job, False
    try:
        with transaction.atomic():
            job = Job.objects.create(
                type=JobType.INVENTORY,
                store=store,
                orchestrator_id=store.orchestrator_id,
                source=source,
                requested_by=requested_by,
                max_attempts=settings.CERTYARD_JOB_MAX_ATTEMPTS,
                available_at=timezone.now(),
            )
    except IntegrityError:  # another request opened one at the same moment
        open_job = Job.objects.filter(
            store=store, type=JobType.INVENTORY, state__in=Job.OPEN_STATES
        ).first()
        if open_job is None:
            raise
        return open_job, False
    return job, True


def inventory_schedules_run() -> int:
    """Open an inventory job for every store whose schedule is due; returns how many."""
    now = timezone.now()
    created = 0
    due = CertificateStore.objects.filter(
        inventory_interval_minutes__isnull=False, inventory_next_run__lte=now, approved=True
    ).select_related("orchestrator")
    for store in due:
        if store.orchestrator.status == Orchestrator.Status.APPROVED:
            _job, was_created = job_inventory_request(store=store, source=Job.Source.SCHEDULE)
            created += was_created
        next_run = now + dt.timedelta(minutes=store.inventory_interval_minutes or 0)
        CertificateStore.objects.filter(pk=store.pk).update(inventory_next_run=next_run)
    return created


def jobs_release_lapsed(*, orchestrator: Orchestrator | None = None) -> int:
    """Offer again the jobs whose lease lapsed; fail those out of attempts. Returns count."""
    now = timezone.now()
    lapsed = Job.objects.filter(state=Job.State.LEASED, lease_expires_at__lt=now)
    if orchestrator is not None:
        lapsed = lapsed.filter(orchestrator=orchestrator)
    count = 0
    for job in lapsed:
        out_of_attempts = job.attempts >= job.max_attempts
        message = (
            f"the lease lapsed on attempt {job.attempts} of {job.max_attempts}: "
            "the orchestrator did not report a result in time"
        )
        with transaction.atomic():
            changes: dict[str, Any] = {"lease_expires_at": None, "message": message}
            if out_of_attempts:
                changes.update(state=Job.State.FAILED, outcome=JobOutcome.FAILURE, completed_at=now)
            else:
                changes.update(state=Job.State.PENDING, available_at=now)
            if not Job.objects.filter(pk=job.pk, state=Job.State.LEASED).update(**changes):
                continue  # reported meanwhile
            JobHistory.objects.filter(job=job, attempt=job.attempts).update(
                finished_at=now, outcome=JobHistory.Outcome.LEASE_EXPIRED, message=message
            )
        count += 1
    return count


def _orchestrator_require_approved(orchestrator: Orchestrator) -> None:
    if orchestrator.status != Orchestrator.Status.APPROVED:
        raise ServiceError(
            f"this orchestrator is {orchestrator.get_status_display().lower()}: "
            "an administrator must approve it before it gets jobs",
            code="not_approved",
            http_status=403,
        )


def job_lease_next(*, orchestrator: Orchestrator) -> Job | None:
    """Lease the oldest available job of this orchestrator to it, if any."""
    _orchestrator_require_approved(orchestrator)
    jobs_release_lapsed(orchestrator=orchestrator)
    now = timezone.now()
    candidates = list(
        Job.objects.filter(
            orchestrator=orchestrator, state=Job.State.PENDING, available_at__lte=now
        )
        .order_by("available_at", "created_at")
        .values_list("pk", flat=True)[:10]
    )
    lease = dt.timedelta(seconds=settings.CERTYARD_JOB_LEASE_SECONDS)
    for pk in candidates:
        with transaction.atomic():
            # Compare-and-set: whoever flips it from pending owns this attempt.
            if not Job.objects.filter(pk=pk, state=Job.State.PENDING).update(
                state=Job.State.LEASED,
                attempts=F("attempts") + 1,
                leased_at=now,
                lease_expires_at=now + lease,
            ):
                continue
            job = Job.objects.select_related("store", "store__store_type").get(pk=pk)
            JobHistory.objects.create(
                job=job, attempt=job.attempts, orchestrator=orchestrator, started_at=now
            )
        return job
    return None


def _job_for(orchestrator: Orchestrator, job_id: Any) -> Job:
    job = (
        Job.objects.select_related("store", "store__store_type")
        .filter(pk=job_id, orchestrator=orchestrator)
        .first()
    )
    if job is None:
        raise NotFound("no such job for this orchestrator")
    return job


def _job_require_leased(job: Job) -> None:
    if job.state != Job.State.LEASED:
        raise Conflict(
            f"the job is {job.get_state_display().lower()}, not leased to you "
            "(a lapsed lease is offered again)",
            code="not_leased",
        )


def job_configuration(*, orchestrator: Orchestrator, job_id: Any) -> dict[str, Any]:
    """What the agent needs to run the job, secrets included, while it may run it."""
    _orchestrator_require_approved(orchestrator)
    job = _job_for(orchestrator, job_id)
    _job_require_leased(job)
    store = job.store
    return {
        "job_id": str(job.pk),
        "type": job.type,
        "attempt": job.attempts,
        "payload": job.payload,
        "store": None
        if store is None
        else {
            "id": str(store.pk),
            "store_type": store.store_type.short_name,
            "client_machine": store.client_machine,
            "store_path": store.store_path,
            "properties": store.properties,
            "password": store.password or None,
        },
    }


@dataclass(frozen=True, slots=True)
class InventoryReport:
    job: Job
    summary: dict[str, Any]
    duplicate: bool = False  # a repeat of a report already applied: not applied again


def job_inventory_report(
    *, orchestrator: Orchestrator, job_id: Any, entries: list[Any]
) -> InventoryReport:
    """Apply an inventory report for a job once; a repeat is acknowledged, not applied."""
    _orchestrator_require_approved(orchestrator)
    job = _job_for(orchestrator, job_id)
    if job.type != JobType.INVENTORY or job.store is None:
        raise ServiceError(f"job {job.pk} is a {job.type} job, not an inventory job")
    if job.report_received_at is not None:
        return InventoryReport(job, job.result.get("inventory", {}), duplicate=True)
    _job_require_leased(job)
    prepared = inventory_prepare(entries=entries)  # parsing happens outside the transaction
    if prepared.all_rejected:
        # Recording it would only delete what we know. The job stays open for a
        # corrected report.
        return InventoryReport(job, InventoryOutcome(rejected=prepared.rejected).summary())
    now = timezone.now()
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, report_received_at__isnull=True).update(
            report_received_at=now
        ):
            job.refresh_from_db()
            return InventoryReport(job, job.result.get("inventory", {}), duplicate=True)
        outcome = inventory_apply(store=job.store, prepared=prepared, seen_at=now)
        summary = outcome.summary()
        job.result = {**job.result, "inventory": summary}
        job.report_received_at = now
        job.save(update_fields=["result", "updated_at"])
    return InventoryReport(job, summary)


_MESSAGE_LIMIT = 10_000


def job_complete(
    *, orchestrator: Orchestrator, job_id: Any, outcome: JobOutcome, message: str
) -> tuple[Job, bool]:
    """Record how the job ended: ``(job, duplicate)``.

    A failure is retried, after a delay, while attempts remain.
    """
    job = _job_for(orchestrator, job_id)
    if job.is_finished:
        return job, True
    _orchestrator_require_approved(orchestrator)
    _job_require_leased(job)
    now = timezone.now()
    message = message[:_MESSAGE_LIMIT]
    changes: dict[str, Any] = {"message": message, "lease_expires_at": None, "outcome": outcome}
    if outcome == JobOutcome.FAILURE and job.attempts < job.max_attempts:
        delay = settings.CERTYARD_JOB_RETRY_DELAY_SECONDS * max(job.attempts, 1)
        changes.update(
            state=Job.State.PENDING,
            available_at=now + dt.timedelta(seconds=delay),
            report_received_at=None,
        )
    elif outcome == JobOutcome.FAILURE:
        changes.update(state=Job.State.FAILED, completed_at=now)
    else:
        changes.update(state=Job.State.SUCCEEDED, completed_at=now)
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, state=Job.State.LEASED).update(**changes):
            job.refresh_from_db()
            return job, True
        JobHistory.objects.filter(job=job, attempt=job.attempts).update(
            finished_at=now, outcome=outcome, message=message
        )
        if outcome == JobOutcome.FAILURE:
            Orchestrator.objects.filter(pk=orchestrator.pk).update(last_error=message)
    job.refresh_from_db()
    return job, False


def job_cancel(*, job: Job, actor: Any) -> Job:
    if job.is_finished:
        raise Conflict(f"the job is already {job.get_state_display().lower()}")
    Job.objects.filter(pk=job.pk, state__in=Job.OPEN_STATES).update(
        state=Job.State.CANCELLED,
        completed_at=timezone.now(),
        lease_expires_at=None,
        message=f"cancelled by {actor}",
    )
    job.refresh_from_db()
    return job
