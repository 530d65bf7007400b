"""Reads of discovery: the candidates the orchestrators' discovery jobs found."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from certyard.deployment.models import DiscoveryCandidate


def discovery_candidate_list(
    *, orchestrator: Any = None, state: str | None = None, kind: str | None = None
) -> QuerySet[DiscoveryCandidate]:
    """Candidates, newest evidence first within an orchestrator's paths; filters optional."""
    candidates = DiscoveryCandidate.objects.select_related("orchestrator", "store")
    if orchestrator is not None:
        candidates = candidates.filter(orchestrator=orchestrator)
    if state:
        candidates = candidates.filter(state=state)
    if kind:
        candidates = candidates.filter(kind=kind)
    return candidates.order_by("orchestrator__name", "path", "pk")
