"""The deployment part of the agent API, included in /api/orchestrator/v1/ by
``certyard.urls``."""

from django.urls import path

from certyard.deployment.api import agent_views

urlpatterns = [
    path(
        "jobs/<uuid:job_id>/discovery",
        agent_views.DiscoveryReportView.as_view(),
        name="job-discovery",
    ),
    path("jobs/<uuid:job_id>/csr", agent_views.CsrView.as_view(), name="job-csr"),
]
