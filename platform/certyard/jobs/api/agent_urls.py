"""The jobs part of the agent API, included in /api/orchestrator/v1/ by ``certyard.urls``."""

from django.urls import path

from certyard.jobs.api import agent_views

urlpatterns = [
    path("jobs/next", agent_views.next_job, name="job-next"),
    path("jobs/<uuid:job_id>/config", agent_views.JobConfigView.as_view(), name="job-config"),
    path("jobs/<uuid:job_id>/inventory", agent_views.InventoryView.as_view(), name="job-inventory"),
    path(
        "jobs/<uuid:job_id>/inventory/chunks",
        agent_views.InventoryChunkView.as_view(),
        name="job-inventory-chunk",
    ),
    path(
        "jobs/<uuid:job_id>/inventory/commit",
        agent_views.InventoryCommitView.as_view(),
        name="job-inventory-commit",
    ),
    path("jobs/<uuid:job_id>/complete", agent_views.CompleteView.as_view(), name="job-complete"),
]
