"""Reads of the deployment app."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Prefetch, QuerySet

from certyard.deployment.models import Deployment, DeploymentBatch


def batch_with_deployments(batch_id: Any) -> DeploymentBatch:
    return (
        DeploymentBatch.objects.select_related("template")
        .prefetch_related(
            Prefetch("deployments", queryset=Deployment.objects.select_related("job"))
        )
        .get(pk=batch_id)
    )


def deployments_filtered(
    *, certificate: Any = None, store: Any = None, state: Any = None
) -> QuerySet[Deployment]:
    """Deployments newest first; ValueError names a filter that is not well formed."""
    queryset = Deployment.objects.select_related("job").order_by("-created_at", "id")
    if certificate not in (None, ""):
        if not str(certificate).isdigit():
            raise ValueError("certificate: an id (an integer)")
        queryset = queryset.filter(certificate_id=int(certificate))
    if store not in (None, ""):
        try:
            queryset = queryset.filter(store_id=uuid.UUID(str(store)))
        except ValueError:
            raise ValueError("store: an id (a UUID)") from None
    if state not in (None, ""):
        if state not in Deployment.State.values:
            raise ValueError(f"state must be one of {', '.join(Deployment.State.values)}")
        queryset = queryset.filter(state=state)
    return queryset


def batch_deployments(batch: DeploymentBatch) -> QuerySet[Deployment]:
    return batch.deployments.select_related("store", "job").order_by("created_at", "id")
