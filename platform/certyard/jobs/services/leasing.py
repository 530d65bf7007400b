"""Leasing jobs to orchestrators: the long poll's lease, pickup, lapses and releases, the
guards every agent report passes, and the configuration an agent fetches.
"""

import datetime as dt
import uuid
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from certyard.errors import Conflict, NotFound, ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.ingest import (
    inventory_upload_discard,
)
from certyard.inventory.models import CertificateStore
from certyard.inventory.properties import properties_for_agent, specs_of
from certyard.jobs.hooks import (
    job_finished_notify,
    job_payload_resolved,
)
from certyard.jobs.models import AgentPoll, Job, JobHistory
from certyard.jobs.services.attempts import (
    job_completed_emit,
    job_report_errors_record,
    store_status_note,
)
from certyard.secret_references import SecretUnavailable, platform_secret, platform_secrets
from orchestrators.declarations import PropertyType
from orchestrators.protocol import JobOutcome, JobType


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
            store_status_note(job, JobOutcome.FAILURE, message, now)
            # The attempt ended without a report: job complete handlers hear of it too.
            job.refresh_from_db()
            job_completed_emit(job, job.orchestrator)
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


def orchestrator_require_approved(orchestrator: Orchestrator) -> None:
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
    orchestrator_require_approved(orchestrator)
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


def job_for_orchestrator(orchestrator: Orchestrator, job_id: Any) -> Job:
    job = (
        Job.objects.select_related("store", "store__store_type")
        .filter(pk=job_id, orchestrator=orchestrator)
        .first()
    )
    if job is None:
        raise NotFound("no such job for this orchestrator")
    return job


def job_require_leased(job: Job) -> None:
    """409 ``not_leased`` unless the job is leased (to its orchestrator) right now."""
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
        job_require_leased(job)


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
    orchestrator_require_approved(orchestrator)
    job = job_for_orchestrator(orchestrator, job_id)
    job_require_leased(job)
    _job_picked_up(job)
    store = job.store
    # The type's resolver turns stored references into what the agent needs (a sealed
    # key, entry passwords); its ServiceError refuses the fetch with its message.
    try:
        payload = job_payload_resolved(job, orchestrator)
        password, properties = _store_secrets(store)
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
            "properties": properties,
            "password": password or None,
            "endpoint": _store_endpoint(store),
        },
    }


def _store_secrets(store: CertificateStore | None) -> tuple[str, dict[str, Any]]:
    """The store password and properties as the agent receives them: secrets opened, and
    ``ref+platform:`` references resolved here (``ref+agent:`` ones go as they are, for
    the agent to resolve). An unresolvable reference refuses the fetch, naming it."""
    if store is None:
        return "", {}
    specs = specs_of(store.store_type.properties)
    properties = properties_for_agent(specs, store.properties)
    secret_names = {spec.name for spec in specs if spec.type is PropertyType.SECRET}
    try:
        password = platform_secret(store.password, "store password")
        properties = platform_secrets(properties, secret_names, "store property")
    except SecretUnavailable as exc:
        raise ServiceError(str(exc), code="secret_unavailable", http_status=409) from None
    return password, properties


def _store_endpoint(store: CertificateStore) -> dict[str, Any] | None:
    """The TLS endpoint served from the store, for the agent's check; None when unset."""
    host = getattr(store, "endpoint_host", "") or ""
    port = getattr(store, "endpoint_port", None)
    if not host or not port:
        return None
    return {"host": host, "port": int(port), "sni": getattr(store, "endpoint_sni", "") or None}


def attempt_require_current(job: Job, attempt: int | None) -> None:
    """A report names its attempt; an earlier attempt's report is refused (not applied to a
    later attempt, nor acknowledged as a repeat). ``None``: an agent that does not say."""
    if attempt is not None and attempt != job.attempts:
        raise Conflict(
            f"this report is for attempt {attempt}, but the job is on attempt {job.attempts}: "
            "an earlier lease lapsed and the job was offered again",
            code="stale_attempt",
        )


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
    orchestrator_require_approved(orchestrator)
    job = job_for_orchestrator(orchestrator, job_id)
    if job.type != job_type:
        raise Conflict(
            f"job {job.pk} is a {job.type} job, not a {job_type} job", code="wrong_job_type"
        )
    attempt_require_current(job, attempt)
    return job
