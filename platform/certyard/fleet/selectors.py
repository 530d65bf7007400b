"""Reads of the fleet app."""

from django.db.models import QuerySet

from certyard.fleet.models import Job, Orchestrator
from certyard.inventory.models import CertificateStoreType
from orchestrators.protocol import capability_name


def orchestrator_can(
    *, orchestrator: Orchestrator, store_type: CertificateStoreType, operation: str
) -> bool:
    """Whether the orchestrator advertised this operation on this store type."""
    wanted = capability_name(store_type.short_name, operation).lower()
    return any(str(c).lower() == wanted for c in orchestrator.capabilities)


def orchestrators_waiting() -> QuerySet[Orchestrator]:
    return Orchestrator.objects.filter(status=Orchestrator.Status.NEW).exclude(public_key_sha256="")


def job_list() -> QuerySet[Job]:
    return Job.objects.select_related("store", "store__store_type", "orchestrator")


def job_get_for_orchestrator(*, orchestrator: Orchestrator, job_id: str) -> Job | None:
    """The job if it is this orchestrator's; another's job is as good as absent."""
    return (
        Job.objects.select_related("store", "store__store_type")
        .filter(pk=job_id, orchestrator=orchestrator)
        .first()
    )
