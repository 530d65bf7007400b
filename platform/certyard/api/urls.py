"""The people's API, /api/v1/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from certyard.fleet.api.views import OrchestratorViewSet, RegistrationTokenViewSet
from certyard.inventory.api.views import CertificateViewSet, StoreTypeViewSet, StoreViewSet
from certyard.jobs.api.views import JobViewSet, StoreInventoryNowView

router = DefaultRouter(trailing_slash=True)
router.register("registration-tokens", RegistrationTokenViewSet, basename="registration-token")
router.register("orchestrators", OrchestratorViewSet, basename="orchestrator")
router.register("store-types", StoreTypeViewSet, basename="store-type")
router.register("stores", StoreViewSet, basename="store")
router.register("certificates", CertificateViewSet, basename="certificate")
router.register("jobs", JobViewSet, basename="job")

urlpatterns = [
    # Stores live in inventory; opening a job for one is the jobs app's, which sits above.
    path(
        "stores/<uuid:id>/inventory-now/",
        StoreInventoryNowView.as_view(),
        name="store-inventory-now",
    ),
    *router.urls,
    path("", include("certyard.blueprints.api.urls")),
    path("", include("certyard.inventory.api.urls")),
    path("", include("certyard.workflows.api.urls")),
    path("", include("certyard.enrollment.api.urls")),
]
