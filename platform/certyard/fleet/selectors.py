"""Reads of the fleet app."""

from django.db.models import QuerySet

from certyard.fleet.models import Orchestrator
from orchestrators.protocol import capability_name


def orchestrator_can(*, orchestrator: Orchestrator, store_type_name: str, operation: str) -> bool:
    """Whether the orchestrator advertised this operation on the store type so named."""
    wanted = capability_name(store_type_name, operation).lower()
    return any(str(c).lower() == wanted for c in orchestrator.capabilities)


def orchestrators_waiting() -> QuerySet[Orchestrator]:
    return Orchestrator.objects.filter(status=Orchestrator.Status.NEW).exclude(public_key_sha256="")
