"""What an ended attempt leaves behind: the store's status, the job-complete event, and the
failed report submissions kept on its history.
"""

import datetime as dt
from typing import Any

from certyard.fleet.models import Orchestrator
from certyard.inventory.models import InventoryStatus
from certyard.inventory.services import store_inventory_status_record
from certyard.jobs.models import Job, JobHistory
from certyard.jobs.selectors import job_provenance
from certyard.workflows.services import event_emit
from handlers.base import EventKind
from orchestrators.protocol import JobOutcome, JobType


def store_status_note(job: Job, outcome: str, message: str, at: dt.datetime) -> None:
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


def job_completed_emit(job: Job, orchestrator: Orchestrator) -> None:
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
