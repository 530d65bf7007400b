"""What a person does to a job: cancel it, or retry it as a new job."""

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from certyard.errors import Conflict
from certyard.inventory.authorization import store_act_require
from certyard.inventory.ingest import (
    inventory_upload_discard,
)
from certyard.jobs.hooks import (
    job_finished_notify,
)
from certyard.jobs.models import Job, JobHistory
from certyard.jobs.services.opening import (
    job_inventory_request,
    job_request,
    orchestrator_require_runnable,
)
from certyard.jobs.services.provenance import job_source_detail
from orchestrators.protocol import JobType


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
    orchestrator_require_runnable(job.orchestrator)
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
