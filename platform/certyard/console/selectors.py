"""Reads the console needs that the apps' own selectors do not offer (reads only)."""

from django.db.models import Count, QuerySet

from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.inventory.models import Certificate, CertificateStore
from certyard.jobs.models import Job
from certyard.jobs.selectors import job_list


def orchestrator_status_counts() -> list[tuple[str, str, int]]:
    """``(status, label, count)`` for every orchestrator status, zeros included."""
    counts = dict(
        Orchestrator.objects.order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return [(value, label, counts.get(value, 0)) for value, label in Orchestrator.Status.choices]


def orchestrators_approved() -> QuerySet[Orchestrator]:
    """The orchestrators a new store may be given to."""
    return Orchestrator.objects.filter(status=Orchestrator.Status.APPROVED)


def registration_token_list() -> QuerySet[RegistrationToken]:
    return RegistrationToken.objects.select_related("created_by")


def inventory_is_empty() -> bool:
    return not Certificate.objects.exists()


def store_choices() -> QuerySet[CertificateStore]:
    """Stores to narrow the certificate list by, labelled with their type."""
    return CertificateStore.objects.select_related("store_type")


def job_detail_queryset() -> QuerySet[Job]:
    """Jobs with their attempts, for the detail page."""
    return job_list().select_related("requested_by").prefetch_related("history__orchestrator")


def jobs_failed_recent() -> QuerySet[Job]:
    """Jobs that ended failed, the most recent first."""
    return job_list().filter(state=Job.State.FAILED).order_by("-completed_at", "-created_at")


def orchestrator_jobs_recent(*, orchestrator_id: object) -> QuerySet[Job]:
    return job_list().filter(orchestrator_id=orchestrator_id)
