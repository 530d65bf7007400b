"""Opening jobs: management jobs (add, remove, create, re-enrollment), inventories, handler
requests and the inventory schedules.
"""

import datetime as dt
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.fleet.selectors import orchestrator_can
from certyard.inventory.authorization import store_act_require
from certyard.inventory.models import CertificateStore
from certyard.jobs.models import Job
from certyard.jobs.services.provenance import job_source_detail, registration_id_of
from orchestrators.protocol import JobType, StoreOperation

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


def orchestrator_require_runnable(orchestrator: Orchestrator) -> None:
    """A person (or a handler) asks for a job: refused 409 ``not_approved`` unless the
    orchestrator is approved (the agent's own refusal is ``orchestrator_require_approved``,
    403)."""
    if orchestrator.status != Orchestrator.Status.APPROVED:
        raise ServiceError(
            f"orchestrator {orchestrator.name} is not approved: it cannot run jobs",
            code="not_approved",
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
    orchestrator_require_runnable(orchestrator)
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
        source_registration_id=registration_id_of(None),
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
    orchestrator_require_runnable(store.orchestrator)
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
                source_registration_id=registration_id_of(source_registration_id),
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
