"""Discovery's routes in the people's API, included in /api/v1/ by the deployment app's
``api/urls.py``."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from certyard.deployment.api import discovery_views

router = SimpleRouter(trailing_slash=True)
router.register(
    "discovery-candidates",
    discovery_views.DiscoveryCandidateViewSet,
    basename="discovery-candidate",
)

urlpatterns = [
    path(
        "orchestrators/<uuid:pk>/discovery/",
        discovery_views.OrchestratorDiscoveryView.as_view(),
        name="orchestrator-discovery",
    ),
    *router.urls,
]
