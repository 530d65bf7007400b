from django.urls import path

from certyard.fleet.api import agent_views as views

app_name = "agent-api"

urlpatterns = [
    path("register", views.RegisterView.as_view(), name="register"),
    path("session", views.SessionView.as_view(), name="session"),
    path("heartbeat", views.HeartbeatView.as_view(), name="heartbeat"),
    path("jobs/next", views.NextJobView.as_view(), name="job-next"),
    path("jobs/<uuid:job_id>/config", views.JobConfigView.as_view(), name="job-config"),
    path("jobs/<uuid:job_id>/inventory", views.InventoryView.as_view(), name="job-inventory"),
    path("jobs/<uuid:job_id>/complete", views.CompleteView.as_view(), name="job-complete"),
]
