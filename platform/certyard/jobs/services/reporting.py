"""What agents report: inventory (chunked or whole) and a job's completion."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.ingest import (
    ChunkOutcome,
    inventory_chunk_stage,
    inventory_upload_commit,
    inventory_upload_discard,
)
from certyard.jobs.hooks import (
    job_finished_notify,
)
from certyard.jobs.models import Job, JobHistory
from certyard.jobs.services.attempts import (
    job_completed_emit,
    job_report_errors_record,
    store_status_note,
)
from certyard.jobs.services.leasing import (
    attempt_require_current,
    job_for_orchestrator,
    job_require_leased,
    orchestrator_require_approved,
)
from orchestrators.protocol import JobOutcome


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
    orchestrator_require_approved(orchestrator)
    job = job_for_orchestrator(orchestrator, job_id)
    # Inventory jobs report the store; so do management jobs, re-reading it after a write.
    if job.store is None:
        raise ServiceError(
            f"job {job.pk} is a {job.type} job without a store: it has no inventory to report",
            code="no_store",
        )
    attempt_require_current(job, attempt)
    return job


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
    job_require_leased(job)
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
    job_require_leased(job)
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
    job = job_for_orchestrator(orchestrator, job_id)
    attempt_require_current(job, attempt)
    if job.is_finished:
        return job, True
    orchestrator_require_approved(orchestrator)
    job_require_leased(job)
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
            attempt_require_current(job, attempt)  # offered again meanwhile: refused
            return job, True
        JobHistory.objects.filter(job=job, attempt=job.attempts).update(
            finished_at=now, outcome=outcome, message=message, result=result or {}
        )
        if outcome == JobOutcome.FAILURE:
            Orchestrator.objects.filter(pk=orchestrator.pk).update(last_error=message)
        store_status_note(job, outcome, message, now)
        # Chunks of a report that was never committed (the agent gave up): forget them.
        inventory_upload_discard(upload_prefix=f"job:{job.pk}:")
        job.refresh_from_db()
        job_completed_emit(job, orchestrator)
        job_finished_notify(job)
    return job, False
