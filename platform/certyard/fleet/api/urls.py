"""The fleet API's routes, included in /api/v1/ by ``certyard.urls``."""

from rest_framework.routers import SimpleRouter
from rest_framework.urlpatterns import format_suffix_patterns

from certyard.fleet.api.views import OrchestratorViewSet, RegistrationTokenViewSet

# Listed in /api/v1/'s index (``certyard.urls``), so these answer ``.json`` suffixes too.
router = SimpleRouter(trailing_slash=True)
router.register("registration-tokens", RegistrationTokenViewSet, basename="registration-token")
router.register("orchestrators", OrchestratorViewSet, basename="orchestrator")

urlpatterns = format_suffix_patterns(router.urls)
