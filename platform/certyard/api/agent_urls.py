"""The agent API, /api/orchestrator/v1/: fleet's identity calls and the jobs calls."""

from django.urls import path

from certyard.fleet.api import agent_views as fleet_views
from certyard.jobs.api import agent_views as job_views

app_name = "agent-api"

urlpatterns = [
    path("register", fleet_views.RegisterView.as_view(), name="register"),
    path("session", fleet_views.SessionView.as_view(), name="session"),
    path("heartbeat", fleet_views.HeartbeatView.as_view(), name="heartbeat"),
    path("certificate", fleet_views.CertificateView.as_view(), name="certificate"),
    path("jobs/next", job_views.next_job, name="job-next"),
    path("jobs/<uuid:job_id>/config", job_views.JobConfigView.as_view(), name="job-config"),
    path("jobs/<uuid:job_id>/inventory", job_views.InventoryView.as_view(), name="job-inventory"),
    path(
        "jobs/<uuid:job_id>/inventory/chunks",
        job_views.InventoryChunkView.as_view(),
        name="job-inventory-chunk",
    ),
    path(
        "jobs/<uuid:job_id>/inventory/commit",
        job_views.InventoryCommitView.as_view(),
        name="job-inventory-commit",
    ),
    path("jobs/<uuid:job_id>/complete", job_views.CompleteView.as_view(), name="job-complete"),
]
