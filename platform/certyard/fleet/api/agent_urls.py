"""Fleet's part of the agent API, included in /api/orchestrator/v1/ by ``certyard.urls``:
the agent's identity calls (register, session, heartbeat, limits, certificate renewal)."""

from django.urls import path

from certyard.fleet.api import agent_views

urlpatterns = [
    path("register", agent_views.RegisterView.as_view(), name="register"),
    path("session", agent_views.SessionView.as_view(), name="session"),
    path("heartbeat", agent_views.HeartbeatView.as_view(), name="heartbeat"),
    path("limits", agent_views.LimitsView.as_view(), name="limits"),
    path("certificate", agent_views.CertificateView.as_view(), name="certificate"),
]
