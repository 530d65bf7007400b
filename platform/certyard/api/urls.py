"""The people's API, /api/v1/."""

from rest_framework.routers import DefaultRouter

from certyard.fleet.api.views import JobViewSet, OrchestratorViewSet, RegistrationTokenViewSet
from certyard.inventory.api.views import CertificateViewSet, StoreTypeViewSet, StoreViewSet

router = DefaultRouter(trailing_slash=True)
router.register("registration-tokens", RegistrationTokenViewSet, basename="registration-token")
router.register("orchestrators", OrchestratorViewSet, basename="orchestrator")
router.register("store-types", StoreTypeViewSet, basename="store-type")
router.register("stores", StoreViewSet, basename="store")
router.register("certificates", CertificateViewSet, basename="certificate")
router.register("jobs", JobViewSet, basename="job")

urlpatterns = router.urls
