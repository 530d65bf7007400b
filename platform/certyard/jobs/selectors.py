"""Reads of the jobs app."""

from django.db.models import QuerySet

from certyard.fleet.models import Orchestrator
from certyard.jobs.models import Job


def job_list() -> QuerySet[Job]:
    return Job.objects.select_related("store", "store__store_type", "orchestrator")


def job_get_for_orchestrator(*, orchestrator: Orchestrator, job_id: str) -> Job | None:
    """The job if it is this orchestrator's; another's job is as good as absent."""
    return (
        Job.objects.select_related("store", "store__store_type")
        .filter(pk=job_id, orchestrator=orchestrator)
        .first()
    )
