"""Writes of the jobs app: opening, leasing, reporting and finishing orchestrators' jobs."""

import contextlib
import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from certyard.errors import Conflict, NotFound, ServiceError
from certyard.fleet.models import Orchestrator
from certyard.fleet.selectors import orchestrator_can
from certyard.inventory.authorization import store_act_require
from certyard.inventory.ingest import (
    ChunkOutcome,
    inventory_chunk_stage,
    inventory_upload_commit,
    inventory_upload_discard,
)
from certyard.inventory.models import CertificateStore, InventoryStatus
from certyard.inventory.properties import properties_for_agent, specs_of
from certyard.inventory.services import store_inventory_status_record
from certyard.jobs.hooks import (
    job_finished_notify,
    job_payload_resolved,
)
from certyard.jobs.models import AgentPoll, Job, JobHistory
from certyard.jobs.selectors import job_provenance
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.services import event_emit
from handlers.base import EventKind
from orchestrators.protocol import JobOutcome, JobType, StoreOperation

logger = logging.getLogger(__name__)


# --- Provenance ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Asker:
    detail: str
    registration_id: int | None


_asker: ContextVar[_Asker | None] = ContextVar("certyard_job_asker", default=None)


@contextlib.contextmanager
def job_source_context(*, detail: str, registration_id: int | None = None) -> Iterator[None]:
    """Jobs opened inside this block record ``detail`` (and the handler registration) as
    their ``source_detail`` when their caller names none.

    For work done on someone's behalf through other apps' services, which know nothing of
    provenance: a handler's ``renew_and_replace`` queues jobs deep in deployment.
    """
    token = _asker.set(_Asker(str(detail), registration_id))
    try:
        yield
    finally:
        _asker.reset(token)


def job_source_detail(actor: Any = None, given: str = "") -> str:
    """Who asked for a job, as recorded in ``Job.source_detail`` (at most 200 characters).

    ``given`` when not empty; else the enclosing ``job_source_context``; else, for a person
    calling through the API with a token, the token's name and prefix and its user
    (``ApiTokenAuthentication`` leaves the token on the user as ``api_token``); else the
    person's user name; else empty.
    """
    if not given and (asker := _asker.get()) is not None:
        given = asker.detail
    if not given and getattr(actor, "pk", None) is not None:
        name = actor.get_username()
        token = getattr(actor, "api_token", None)
        given = f"token {token.name} ({token.token_key}…) of {name}" if token is not None else name
    return str(given or "")[:200]


def _source_registration_id(given: Any) -> int | None:
    if given is None and (asker := _asker.get()) is not None:
        given = asker.registration_id
    if given is None:
        return None
    registration = HandlerRegistration.objects.filter(pk=given).values_list("pk", flat=True)
    return registration.first()


# --- Management jobs -----------------------------------------------------------------------

# What a stored payload may not hold: ``Job.payload`` is shown in the API, the console and
# the admin, and kept for ever; secrets are added by the type's resolver at fetch time.
_SECRET_KEY_WORDS = ("password", "passphrase", "secret", "private_key_pem", "pfx", "pkcs12")
_PAYLOAD_MAX_BYTES = 64 * 1024
_STORE_JOB_TYPES = (JobType.ADD, JobType.REMOVE, JobType.CREATE, JobType.REENROLLMENT)


def _payload_require_references(value: Any, path: str = "payload") -> None:
    """Refuse a payload that carries a secret: references only (ids, aliases, fingerprints).

    A key named like a secret (password, passphrase, secret, ...) may hold only an empty
    value, a boolean or a reference-free null; ``private_key`` may hold null or a boolean;
    no string anywhere may be a PEM private key.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key).lower()
            where = f"{path}.{key}"
            if name == "private_key" and item is not None and not isinstance(item, bool):
                raise ServiceError(
                    f"{where}: a job's payload holds references only, never a private key "
                    "(the key is sealed for the agent when it fetches the job)",
                    code="secret_in_payload",
                )
            if (
                any(word in name for word in _SECRET_KEY_WORDS)
                and item not in (None, "", {}, [])
                and not isinstance(item, bool)
            ):
                raise ServiceError(
                    f"{where}: a job's payload holds references only, never a secret "
                    "(the job's payload resolver adds secrets when the agent fetches it)",
                    code="secret_in_payload",
                )
            _payload_require_references(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _payload_require_references(item, f"{path}[{index}]")
    elif isinstance(value, str) and "PRIVATE KEY-----" in value:
        raise ServiceError(
            f"{path}: a job's payload holds references only, never a private key",
            code="secret_in_payload",
        )


def _orchestrator_require_capability(
    orchestrator: Orchestrator, store_type_name: str | None, operation: str
) -> None:
    if store_type_name is None:  # discovery: not tied to a store type
        suffix = "." + StoreOperation(operation).value
        if any(str(c).lower().endswith(suffix) for c in orchestrator.capabilities):
            return
        wanted = f"<type>.{operation.capitalize()}"
    else:
        if orchestrator_can(
            orchestrator=orchestrator, store_type_name=store_type_name, operation=operation
        ):
            return
        wanted = f"{store_type_name}.{operation.capitalize()}"
    raise ServiceError(
        f"orchestrator {orchestrator.name} does not offer {wanted}: it cannot run "
        f"{operation} jobs (its agent must advertise the capability)",
        code="capability_missing",
        http_status=409,
    )


def job_request(
    *,
    orchestrator: Orchestrator,
    store: CertificateStore | None,
    type: str,  # the wire's name for it, as on Job
    payload: dict[str, Any],
    actor: Any = None,
    source: str,
    deployment_id: Any = None,
    max_attempts: int | None = None,
    source_detail: str = "",
    retry_of: Job | None = None,
) -> Job:
    """Queue a management job (add, remove, create, reenrollment, discovery) for the agent.

    ``store`` is the store the job acts on; ``None`` for discovery (and only for it).
    ``payload`` is what the job's payload resolver (``job_payload_resolver_register``)
    turns into the agent's configuration: references only, never a private key or a
    secret (``ServiceError`` ``secret_in_payload`` otherwise). ``deployment_id``, when
    given, is recorded in the payload as ``deployment_id``. Authorization is the caller's:
    this checks only that the job can run. Provenance: ``source`` and ``source_detail``
    (see ``job_source_detail``; derived from ``actor`` when empty), ``retry_of`` the job
    this one retries.

    Refusals (``ServiceError``): ``invalid_job_type``, ``store_required`` /
    ``store_not_allowed``, ``wrong_orchestrator`` (the store is another orchestrator's),
    ``not_approved`` (the orchestrator), ``operation_unsupported`` (the store type does
    not support it), ``capability_missing`` (the agent does not advertise it),
    ``invalid_payload``, ``secret_in_payload``.
    """
    try:
        job_type = JobType(str(type))
    except ValueError:
        raise ServiceError(f"there is no job type {type!r}", code="invalid_job_type") from None
    if job_type == JobType.INVENTORY:
        raise ServiceError(
            "inventory jobs are requested with job_inventory_request (one open per store)",
            code="invalid_job_type",
        )
    if job_type == JobType.DISCOVERY and store is not None:
        raise ServiceError("a discovery job has no store", code="store_not_allowed")
    if job_type in _STORE_JOB_TYPES and store is None:
        raise ServiceError(f"a {job_type} job needs a store", code="store_required")
    if store is not None and store.orchestrator_id != orchestrator.pk:
        raise ServiceError(
            f"store {store.store_path} belongs to another orchestrator, not {orchestrator.name}",
            code="wrong_orchestrator",
            http_status=409,
        )
    if orchestrator.status != Orchestrator.Status.APPROVED:
        raise ServiceError(
            f"orchestrator {orchestrator.name} is not approved: it cannot run jobs",
            code="not_approved",
            http_status=409,
        )
    if store is not None and not store.store_type.supports(job_type):
        raise ServiceError(
            f"store type {store.store_type.short_name} does not support {job_type} jobs",
            code="operation_unsupported",
            http_status=409,
        )
    _orchestrator_require_capability(
        orchestrator, store.store_type.short_name if store is not None else None, job_type
    )
    if not isinstance(payload, dict):
        raise ServiceError("a job's payload is a JSON object", code="invalid_payload")
    payload = dict(payload)
    if deployment_id is not None:
        payload["deployment_id"] = str(deployment_id)
    try:
        size = len(json.dumps(payload, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:
        raise ServiceError(f"a job's payload must be JSON: {exc}", code="invalid_payload") from None
    if size > _PAYLOAD_MAX_BYTES:
        raise ServiceError(
            f"the job's payload is {size} bytes; the limit is {_PAYLOAD_MAX_BYTES}",
            code="invalid_payload",
        )
    _payload_require_references(payload)
    return Job.objects.create(
        type=job_type,
        store=store,
        orchestrator=orchestrator,
        payload=payload,
        source=source,
        source_detail=job_source_detail(actor, source_detail),
        source_registration_id=_source_registration_id(None),
        retry_of=retry_of,
        requested_by=actor if getattr(actor, "pk", None) else None,
        max_attempts=max_attempts or settings.CERTYARD_JOB_MAX_ATTEMPTS,
        available_at=timezone.now(),
    )


def store_inventory_now(*, store: CertificateStore, actor: Any, source: str) -> tuple[Job, bool]:
    """A person asks for the store's inventory now: only one who may act on the store
    (``certyard.inventory.authorization``). ``(job, created)`` as below."""
    store_act_require(actor, store)
    return job_inventory_request(store=store, source=source, requested_by=actor)


def job_inventory_request(
    *,
    store: CertificateStore,
    source: str,
    requested_by: Any = None,
    source_detail: str = "",
    source_registration_id: int | None = None,
    retry_of: Job | None = None,
    job_id: Any = None,
) -> tuple[Job, bool]:
    """An inventory job for the store, or the one already open: ``(job, created)``.

    The open one stands as it is (its provenance too). A new one records ``source``,
    ``source_detail`` (see ``job_source_detail``), the handler registration that asked,
    ``retry_of``, and is created with ``job_id`` when given (an id handed out earlier).
    """
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
                **({"id": job_id} if job_id is not None else {}),
                type=JobType.INVENTORY,
                store=store,
                orchestrator_id=store.orchestrator_id,
                source=source,
                source_detail=job_source_detail(requested_by, source_detail),
                source_registration_id=_source_registration_id(source_registration_id),
                retry_of=retry_of,
                requested_by=requested_by if getattr(requested_by, "pk", None) else None,
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


def _job_find(job_id: Any) -> Job | None:
    try:
        return Job.objects.filter(pk=job_id).first()
    except (ValueError, DjangoValidationError):  # not a UUID
        return None


def job_request_for_handler(
    *,
    store_id: str,
    job_type: str,
    delay_seconds: int = 0,
    job_id: str | None = None,
    retry_of: str | None = None,
    by: str = "",
    registration_id: int | None = None,
) -> dict[str, str] | None:
    """Carry out a handler's ``platform.schedule_job`` request (registered in ``ready``).

    The job is created with ``job_id``, the id ``schedule_job`` returned to the handler,
    with source ``handler``, ``by`` (the registration's name) as its detail, the
    registration, and ``retry_of``. When the store already has an open inventory job,
    that one stands and no job is created: the answer, ``{"existing_job_id": id}``, is
    added to the run's recorded action.
    """
    if job_type != JobType.INVENTORY:
        raise ServiceError(f"handlers can schedule inventory jobs only, not {job_type!r}")
    store = CertificateStore.objects.select_related("orchestrator").filter(pk=store_id).first()
    if store is None:
        raise ServiceError(f"there is no store {store_id}")
    retried = None
    if retry_of:
        retried = _job_find(retry_of)
        if retried is None:
            raise ServiceError(f"there is no job {retry_of} to retry")
    job, created = job_inventory_request(
        store=store,
        source=Job.Source.HANDLER,
        source_detail=by,
        source_registration_id=registration_id,
        retry_of=retried,
        job_id=job_id,
    )
    if not created:
        return {"existing_job_id": str(job.pk)}
    if delay_seconds > 0:
        Job.objects.filter(pk=job.pk).update(
            available_at=timezone.now() + dt.timedelta(seconds=min(delay_seconds, 86_400))
        )
    return None


def inventory_schedules_run(*, schedule_name: str = "inventory schedules") -> int:
    """Open an inventory job for every store whose schedule is due; returns how many.

    ``schedule_name``, the django-q2 schedule (or task) running this, is recorded as the
    jobs' ``source_detail`` with the store's interval.
    """
    now = timezone.now()
    created = 0
    due = CertificateStore.objects.filter(
        inventory_interval_minutes__isnull=False, inventory_next_run__lte=now, approved=True
    ).select_related("orchestrator")
    for store in due:
        if store.orchestrator.status == Orchestrator.Status.APPROVED:
            _job, was_created = job_inventory_request(
                store=store,
                source=Job.Source.SCHEDULE,
                source_detail=f"{schedule_name}: every {store.inventory_interval_minutes} min",
            )
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
        if job.picked_up_at is None:
            count += _job_pickup_missed(job, now)
            continue
        out_of_attempts = job.attempts - job.missed_pickups >= job.max_attempts
        message = _lapse_message(job)
        with transaction.atomic():
            changes: dict[str, Any] = {"lease_expires_at": None, "message": message}
            if out_of_attempts:
                changes.update(state=Job.State.FAILED, outcome=JobOutcome.FAILURE, completed_at=now)
            else:
                changes.update(state=Job.State.PENDING, available_at=now)
            if not Job.objects.filter(
                pk=job.pk, state=Job.State.LEASED, attempts=job.attempts
            ).update(**changes):
                continue  # reported meanwhile
            JobHistory.objects.filter(job=job, attempt=job.attempts).update(
                finished_at=now, outcome=JobHistory.Outcome.LEASE_EXPIRED, message=message
            )
            inventory_upload_discard(upload_prefix=f"job:{job.pk}:")
            _store_status_note(job, JobOutcome.FAILURE, message, now)
            # The attempt ended without a report: job complete handlers hear of it too.
            job.refresh_from_db()
            _job_completed_emit(job, job.orchestrator)
            job_finished_notify(job)
        count += 1
    return count


def _job_pickup_missed(job: Job, now: dt.datetime) -> int:
    """The agent never fetched the job it was handed (its poll had gone): offer it again
    at once, without counting an attempt against it. Returns 1 if released."""
    message = (
        f"attempt {job.attempts}: the orchestrator did not pick the job up within "
        f"{settings.CERTYARD_JOB_PICKUP_SECONDS} s (it had gone); offered again"
    )
    with transaction.atomic():
        if not Job.objects.filter(
            pk=job.pk, state=Job.State.LEASED, attempts=job.attempts, picked_up_at__isnull=True
        ).update(
            state=Job.State.PENDING,
            available_at=now,
            lease_expires_at=None,
            missed_pickups=F("missed_pickups") + 1,
        ):
            return 0  # picked up meanwhile
        JobHistory.objects.filter(job=job, attempt=job.attempts).update(
            finished_at=now, outcome=JobHistory.Outcome.NOT_PICKED_UP, message=message
        )
    return 1


def _lapse_message(job: Job) -> str:
    """Why the lease lapsed, naming the platform when it refused or failed the reports."""
    where = f"the lease lapsed on attempt {job.attempts} of {job.max_attempts}"
    history = JobHistory.objects.filter(job=job, attempt=job.attempts).first()
    errors = history.report_errors if history is not None else []
    if errors:
        return (
            f"{where} after {len(errors)} failed report "
            f"submission{'' if len(errors) == 1 else 's'}: the platform could "
            f"not take the orchestrator's result (last: {errors[-1].get('error', '')})"
        )
    return f"{where}: the orchestrator did not report a result in time"


def _store_status_note(job: Job, outcome: str, message: str, at: dt.datetime) -> None:
    """An inventory job's end is its store's status, shown on the Stores page.

    A management job's end is not (a refused add says nothing of reading the store); its
    re-read of the store after the write, when applied, is a successful inventory.
    """
    if job.store_id is None:
        return
    if job.type != JobType.INVENTORY:
        if job.report_received_at is not None:
            store_inventory_status_record(
                store_id=job.store_id,
                status=InventoryStatus.OK,
                message=f"read again after the {job.type} job",
                at=at,
            )
        return
    status = {
        JobOutcome.SUCCESS: InventoryStatus.OK,
        JobOutcome.WARNING: InventoryStatus.WARNING,
    }.get(outcome, InventoryStatus.FAILING)
    store_inventory_status_record(store_id=job.store_id, status=status, message=message, at=at)


def _orchestrator_require_approved(orchestrator: Orchestrator) -> None:
    if orchestrator.status != Orchestrator.Status.APPROVED:
        raise ServiceError(
            f"this orchestrator is {orchestrator.get_status_display().lower()}: "
            "an administrator must approve it before it gets jobs",
            code="not_approved",
            http_status=403,
        )


def job_lease_next(*, orchestrator: Orchestrator, poll_id: Any = None) -> Job | None:
    """Lease the oldest available job of this orchestrator to it, if any.

    The lease is short (``CERTYARD_JOB_PICKUP_SECONDS``) until the agent fetches the job's
    configuration, which proves it received the job. With ``poll_id``, nothing is leased
    unless that poll is still the orchestrator's newest (an older one lost its agent).
    """
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
    if (
        candidates
        and poll_id is not None
        and not agent_poll_is_current(orchestrator=orchestrator, poll_id=poll_id)
    ):
        return None
    pickup = dt.timedelta(seconds=settings.CERTYARD_JOB_PICKUP_SECONDS)
    for pk in candidates:
        with transaction.atomic():
            # Compare-and-set: whoever flips it from pending owns this attempt.
            if not Job.objects.filter(pk=pk, state=Job.State.PENDING).update(
                state=Job.State.LEASED,
                attempts=F("attempts") + 1,
                leased_at=now,
                lease_expires_at=now + pickup,
                picked_up_at=None,
                report_received_at=None,  # each attempt reports afresh
            ):
                continue
            inventory_upload_discard(upload_prefix=f"job:{pk}:")  # earlier attempts' chunks
            job = Job.objects.select_related("store", "store__store_type").get(pk=pk)
            if job.type != JobType.INVENTORY and job.result:
                # An earlier attempt's result (kept on its history) is not this attempt's.
                job.result = {}
                Job.objects.filter(pk=pk).update(result={})
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


def _job_picked_up(job: Job) -> None:
    """The agent has the job in hand: the short pickup lease becomes a whole lease."""
    if job.picked_up_at is not None:
        return
    now = timezone.now()
    expires = now + dt.timedelta(seconds=settings.CERTYARD_JOB_LEASE_SECONDS)
    if Job.objects.filter(
        pk=job.pk, state=Job.State.LEASED, attempts=job.attempts, picked_up_at__isnull=True
    ).update(picked_up_at=now, lease_expires_at=expires):
        job.picked_up_at, job.lease_expires_at = now, expires
    else:
        job.refresh_from_db()
        _job_require_leased(job)


# --- Long polls ----------------------------------------------------------------------


def agent_poll_open(*, orchestrator: Orchestrator) -> uuid.UUID:
    """Record a new long poll as the orchestrator's only one; any older poll ends.

    One short write per poll (an UPDATE, an INSERT the first time): thousands of agents
    poll, and on SQLite every write waits its turn.
    """
    poll_id = uuid.uuid4()
    now = timezone.now()
    if not AgentPoll.objects.filter(orchestrator=orchestrator).update(
        poll_id=poll_id, opened_at=now
    ):
        try:
            with transaction.atomic():
                AgentPoll.objects.create(orchestrator=orchestrator, poll_id=poll_id, opened_at=now)
        except IntegrityError:  # its other poll got there first: this one is the newer
            AgentPoll.objects.filter(orchestrator=orchestrator).update(
                poll_id=poll_id, opened_at=now
            )
    return poll_id


def agent_poll_is_current(*, orchestrator: Orchestrator, poll_id: Any) -> bool:
    return AgentPoll.objects.filter(orchestrator=orchestrator, poll_id=poll_id).exists()


def job_configuration(*, orchestrator: Orchestrator, job_id: Any) -> dict[str, Any]:
    """What the agent needs to run the job, secrets included, while it may run it."""
    _orchestrator_require_approved(orchestrator)
    job = _job_for(orchestrator, job_id)
    _job_require_leased(job)
    _job_picked_up(job)
    store = job.store
    # The type's resolver turns stored references into what the agent needs (a sealed
    # key, entry passwords); its ServiceError refuses the fetch with its message.
    try:
        payload = job_payload_resolved(job, orchestrator)
    except ServiceError as refusal:
        # Kept on the attempt: if the agent never ends it, the lapse names the cause.
        job_report_errors_record(
            job=job,
            errors=[
                {
                    "at": timezone.now().isoformat(),
                    "error": f"the job's configuration was refused: {refusal.message}",
                }
            ],
        )
        raise
    return {
        "job_id": str(job.pk),
        "type": job.type,
        "attempt": job.attempts,
        "lease_expires_at": job.lease_expires_at.isoformat() if job.lease_expires_at else None,
        "payload": payload,
        "store": None
        if store is None
        else {
            "id": str(store.pk),
            "store_type": store.store_type.short_name,
            "client_machine": store.client_machine,
            "store_path": store.store_path,
            # Secret properties are stored encrypted; the lease holder gets them opened.
            "properties": properties_for_agent(
                specs_of(store.store_type.properties), store.properties
            ),
            "password": store.password or None,
            "endpoint": _store_endpoint(store),
        },
    }


def _store_endpoint(store: CertificateStore) -> dict[str, Any] | None:
    """The TLS endpoint served from the store, for the agent's check; None when unset."""
    host = getattr(store, "endpoint_host", "") or ""
    port = getattr(store, "endpoint_port", None)
    if not host or not port:
        return None
    return {"host": host, "port": int(port), "sni": getattr(store, "endpoint_sni", "") or None}


@dataclass(frozen=True, slots=True)
class InventoryReport:
    """The answer to a committed report (or to a repeat of one)."""

    job: Job
    summary: dict[str, Any]
    duplicate: bool = False  # a repeat of a report already applied: not applied again

    @property
    def recorded(self) -> bool:
        return self.duplicate or bool(self.summary.get("recorded", True))

    @property
    def rejected_count(self) -> int:
        return int(self.summary.get("rejected_count", 0))

    @property
    def rejection_message(self) -> str | None:
        """What to tell the sender when entries were rejected (None when none were, or
        for a repeat): shared by every answer to a report, API or console."""
        rejected = self.rejected_count
        if self.duplicate or not rejected:
            return None
        entries = int(self.summary.get("entries", rejected))
        if not self.recorded:
            return f"all {rejected} entries were rejected; nothing was recorded"
        return (
            f"{rejected} of {entries} entries were rejected; "
            f"the other {entries - rejected} were recorded"
        )


def _upload_name(job: Job) -> str:
    """Each attempt's report is its own: a later attempt never mixes with an earlier one."""
    return f"job:{job.pk}:{job.attempts}"


def _inventory_job_for(orchestrator: Orchestrator, job_id: Any, attempt: int | None) -> Job:
    _orchestrator_require_approved(orchestrator)
    job = _job_for(orchestrator, job_id)
    # Inventory jobs report the store; so do management jobs, re-reading it after a write.
    if job.store is None:
        raise ServiceError(
            f"job {job.pk} is a {job.type} job without a store: it has no inventory to report",
            code="no_store",
        )
    _attempt_require_current(job, attempt)
    return job


def _attempt_require_current(job: Job, attempt: int | None) -> None:
    """A report names its attempt; an earlier attempt's report is refused (not applied to a
    later attempt, nor acknowledged as a repeat). ``None``: an agent that does not say."""
    if attempt is not None and attempt != job.attempts:
        raise Conflict(
            f"this report is for attempt {attempt}, but the job is on attempt {job.attempts}: "
            "an earlier lease lapsed and the job was offered again",
            code="stale_attempt",
        )


def job_inventory_chunk(
    *,
    orchestrator: Orchestrator,
    job_id: Any,
    attempt: int | None,
    sequence: int,
    first_index: int,
    entries: list[Any],
) -> ChunkOutcome | InventoryReport:
    """Stage one chunk of the job's report; a repeat after the commit is a duplicate.

    A chunk is proof the agent is at work: the lease is renewed, so a store that takes
    longer than one lease to report is not offered to another attempt meanwhile.
    """
    job = _inventory_job_for(orchestrator, job_id, attempt)
    if job.report_received_at is not None:
        return InventoryReport(job, job.result.get("inventory", {}), duplicate=True)
    _job_require_leased(job)
    staged = inventory_chunk_stage(
        store=job.store,
        upload=_upload_name(job),
        sequence=sequence,
        first_index=first_index,
        entries=entries,
    )
    renewed = timezone.now() + dt.timedelta(seconds=settings.CERTYARD_JOB_LEASE_SECONDS)
    Job.objects.filter(pk=job.pk, state=Job.State.LEASED, attempts=job.attempts).update(
        lease_expires_at=renewed
    )
    staged.lease_expires_at = renewed
    return staged


def job_inventory_commit(
    *,
    orchestrator: Orchestrator,
    job_id: Any,
    attempt: int | None,
    chunks: int,
    new_certificates: int = 0,
    submission_errors: list[dict[str, str]] | None = None,
) -> InventoryReport:
    """Apply the staged report of the job's current attempt once; a repeat is a duplicate.

    ``submission_errors`` are the agent's failed tries at sending this report (kept on
    the attempt's history, so a job that fails names its cause).
    """
    job = _inventory_job_for(orchestrator, job_id, attempt)
    if submission_errors:
        job_report_errors_record(job=job, errors=submission_errors)
    if job.report_received_at is not None:
        return InventoryReport(job, job.result.get("inventory", {}), duplicate=True)
    _job_require_leased(job)
    now = timezone.now()
    upload = _upload_name(job)
    with transaction.atomic():
        # Compare-and-set: one commit per attempt, however many arrive at once.
        if not Job.objects.filter(
            pk=job.pk, state=Job.State.LEASED, attempts=job.attempts, report_received_at=None
        ).update(report_received_at=now):
            job.refresh_from_db()
            return InventoryReport(job, job.result.get("inventory", {}), duplicate=True)
        outcome = inventory_upload_commit(
            store=job.store, upload=upload, chunks=chunks, seen_at=now
        )
        outcome.new_certificates = new_certificates
        summary = outcome.summary()
        if not outcome.recorded:
            # Nothing recorded: the job stays open for a corrected report.
            Job.objects.filter(pk=job.pk).update(report_received_at=None)
            return InventoryReport(job, summary)
        job.result = {**job.result, "inventory": summary}
        job.report_received_at = now
        job.save(update_fields=["result", "updated_at"])
    return InventoryReport(job, summary)


def job_inventory_report(
    *, orchestrator: Orchestrator, job_id: Any, entries: list[Any], attempt: int | None = None
) -> InventoryReport:
    """A whole report in one request: one chunk, committed at once."""
    staged = job_inventory_chunk(
        orchestrator=orchestrator,
        job_id=job_id,
        attempt=attempt,
        sequence=0,
        first_index=0,
        entries=entries,
    )
    if isinstance(staged, InventoryReport):
        return staged
    return job_inventory_commit(
        orchestrator=orchestrator,
        job_id=job_id,
        attempt=attempt,
        chunks=1,
        new_certificates=staged.new_certificates,
    )


_REPORT_ERRORS_KEPT = 20


def job_report_errors_record_by_id(
    *, orchestrator: Orchestrator, job_id: Any, errors: list[dict[str, str]]
) -> None:
    """As ``job_report_errors_record``, for a job named by id (from a failed request)."""
    job = Job.objects.filter(pk=job_id, orchestrator=orchestrator).first()
    if job is not None:
        job_report_errors_record(job=job, errors=errors)


def job_report_errors_record(*, job: Job, errors: list[dict[str, str]]) -> None:
    """Keep failed report submissions on the attempt's history (the last few)."""
    history = JobHistory.objects.filter(job=job, attempt=job.attempts).first()
    if history is None:
        return
    cleaned = [
        {"at": str(e.get("at", ""))[:40], "error": str(e.get("error", ""))[:500]}
        for e in errors
        if isinstance(e, dict)
    ]
    history.report_errors = [*history.report_errors, *cleaned][-_REPORT_ERRORS_KEPT:]
    history.save(update_fields=["report_errors"])


_MESSAGE_LIMIT = 10_000


def job_complete(
    *,
    orchestrator: Orchestrator,
    job_id: Any,
    outcome: JobOutcome,
    message: str,
    attempt: int | None = None,
    result: dict[str, Any] | None = None,
    final: bool = False,
) -> tuple[Job, bool]:
    """Record how the job ended: ``(job, duplicate)``.

    A failure is retried, after a delay, while attempts remain, unless the agent says it
    is ``final`` (the store or the job's own content refused it: another attempt would
    meet the same refusal; an administrator can still retry the job). With ``attempt``, the
    result of an earlier attempt is refused (``stale_attempt``): an agent whose lease
    lapsed cannot end the attempt that replaced it. ``result`` (the agent's, checked by
    the caller: a JSON object of bounded size) becomes ``Job.result`` and the attempt's
    history's; the attempt's inventory summary, if it reported one, is kept beside it.
    The finished hooks are called in the same transaction.
    """
    job = _job_for(orchestrator, job_id)
    _attempt_require_current(job, attempt)
    if job.is_finished:
        return job, True
    _orchestrator_require_approved(orchestrator)
    _job_require_leased(job)
    now = timezone.now()
    message = message[:_MESSAGE_LIMIT]
    changes: dict[str, Any] = {"message": message, "lease_expires_at": None, "outcome": outcome}
    if result is not None:
        # The agent cannot overwrite the platform's own summary of this attempt's report.
        kept = job.result.get("inventory") if job.report_received_at is not None else None
        changes["result"] = {**result, **({"inventory": kept} if kept is not None else {})}
    if outcome == JobOutcome.FAILURE and job.attempts < job.max_attempts and not final:
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
        # Compare-and-set on the attempt too: a result never lands on a later attempt.
        if not Job.objects.filter(pk=job.pk, state=Job.State.LEASED, attempts=job.attempts).update(
            **changes
        ):
            job.refresh_from_db()
            _attempt_require_current(job, attempt)  # offered again meanwhile: refused
            return job, True
        JobHistory.objects.filter(job=job, attempt=job.attempts).update(
            finished_at=now, outcome=outcome, message=message, result=result or {}
        )
        if outcome == JobOutcome.FAILURE:
            Orchestrator.objects.filter(pk=orchestrator.pk).update(last_error=message)
        _store_status_note(job, outcome, message, now)
        # Chunks of a report that was never committed (the agent gave up): forget them.
        inventory_upload_discard(upload_prefix=f"job:{job.pk}:")
        job.refresh_from_db()
        _job_completed_emit(job, orchestrator)
        job_finished_notify(job)
    return job, False


def _job_completed_emit(job: Job, orchestrator: Orchestrator) -> None:
    """The job-complete handlers' event: every attempt that ended, retried or not."""
    store = job.store
    store_data = None
    if store is not None:
        store_data = {
            "id": str(store.pk),
            "store_type": store.store_type.short_name,
            "client_machine": store.client_machine,
            "store_path": store.store_path,
        }
    event_emit(
        kind=EventKind.JOB_COMPLETED,
        subject_type="job",
        subject_id=job.pk,
        subject_label=f"{job.get_type_display()} {store or ''}".strip(),
        data={
            "job_type": job.type,
            "store_type": store_data["store_type"] if store_data else "",
            "orchestrator_id": str(orchestrator.pk),
            "job": {
                "id": str(job.pk),
                "type": job.type,
                "attempt": job.attempts,
                "outcome": job.outcome,
                "message": job.message[:2000],
                "final": job.is_finished,
                "result": job.result,
            },
            "orchestrator": {
                "id": str(orchestrator.pk),
                "name": orchestrator.name,
                "client_machine": orchestrator.client_machine,
            },
            "store": store_data,
            "provenance": job_provenance(job),
        },
    )


def job_cancel(*, job: Job, actor: Any) -> Job:
    """Stop an open job: a running attempt's report is refused from now on.

    A store's job is an action on the store: ``actor`` must be allowed to act on it.
    """
    if job.store_id is not None:
        store_act_require(actor, job.store)  # type: ignore[arg-type]
    if job.is_finished:
        raise Conflict(f"the job is already {job.get_state_display().lower()}")
    now = timezone.now()
    message = f"cancelled by {actor}"
    with transaction.atomic():
        if Job.objects.filter(pk=job.pk, state__in=Job.OPEN_STATES).update(
            state=Job.State.CANCELLED, completed_at=now, lease_expires_at=None, message=message
        ):
            JobHistory.objects.filter(job=job, finished_at=None).update(
                finished_at=now, outcome=JobHistory.Outcome.RELEASED, message=message
            )
            inventory_upload_discard(upload_prefix=f"job:{job.pk}:")
            job.refresh_from_db()
            job_finished_notify(job)
    job.refresh_from_db()
    return job


def job_retry(*, job: Job, actor: Any, source: str = Job.Source.ADMIN) -> tuple[Job, bool]:
    """Run a finished job again, as a new job: ``(job, created)``.

    The finished job keeps its history; the new one records it as ``retry_of``, and
    ``source`` (admin from the console, api from the API) with ``actor`` as its detail.
    For an inventory, an open job of the same store is answered instead of a second one
    (its provenance unchanged). A store's job is an action on the store: ``actor`` must
    be allowed to act on it.
    """
    if job.store_id is not None:
        store_act_require(actor, job.store)  # type: ignore[arg-type]
    if not job.is_finished:
        raise Conflict(
            f"the job is {job.get_state_display().lower()}; only a finished job can be retried",
            code="not_finished",
        )
    if job.type == JobType.INVENTORY and job.store is not None:
        return job_inventory_request(
            store=job.store, source=source, requested_by=actor, retry_of=job
        )
    if job.type != JobType.INVENTORY:
        # Checked again as a new request: the agent or the store type may have changed.
        retried = job_request(
            orchestrator=job.orchestrator,
            store=job.store,
            type=job.type,
            payload=job.payload,
            actor=actor,
            source=source,
            retry_of=job,
        )
        return retried, True
    if job.orchestrator.status != Orchestrator.Status.APPROVED:
        raise ServiceError(
            f"orchestrator {job.orchestrator.name} is not approved: it cannot run jobs",
            code="not_approved",
            http_status=409,
        )
    retried = Job.objects.create(
        type=job.type,
        store=job.store,
        orchestrator=job.orchestrator,
        payload=job.payload,
        source=source,
        source_detail=job_source_detail(actor),
        retry_of=job,
        requested_by=actor if getattr(actor, "pk", None) else None,
        max_attempts=settings.CERTYARD_JOB_MAX_ATTEMPTS,
        available_at=timezone.now(),
    )
    return retried, True


def jobs_release_for_orchestrator(orchestrator: Orchestrator) -> None:
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
                message=(
                    "the orchestrator was disapproved, reset or locked out while it held the job"
                ),
            )


def job_reported(
    *, orchestrator: Orchestrator, job_id: Any, attempt: int | None, job_type: str
) -> Job:
    """The orchestrator's job ``job_id`` of ``job_type`` at its current ``attempt``, for a
    report another app takes (discovery results, re-enrollment CSRs): refused exactly as an
    inventory report is (403 not approved, 404 another orchestrator's job, 409 another
    type or a stale attempt). Whether it is leased is the caller's check
    (``job_require_leased``): a repeat of an applied report may come after the attempt ended.
    """
    _orchestrator_require_approved(orchestrator)
    job = _job_for(orchestrator, job_id)
    if job.type != job_type:
        raise Conflict(
            f"job {job.pk} is a {job.type} job, not a {job_type} job", code="wrong_job_type"
        )
    _attempt_require_current(job, attempt)
    return job


def job_require_leased(job: Job) -> None:
    """409 ``not_leased`` unless the job is leased (to its orchestrator) right now."""
    _job_require_leased(job)
