"""The jobs API's routes, included in /api/v1/ by ``certyard.urls``."""

from django.urls import path
from rest_framework.routers import SimpleRouter
from rest_framework.urlpatterns import format_suffix_patterns

from certyard.jobs.api.views import JobViewSet, StoreInventoryNowView

# Listed in /api/v1/'s index (``certyard.urls``), so these answer ``.json`` suffixes too.
router = SimpleRouter(trailing_slash=True)
router.register("jobs", JobViewSet, basename="job")

urlpatterns = [
    # Stores live in inventory; opening a job for one is the jobs app's, which sits above.
    path(
        "stores/<uuid:id>/inventory-now/",
        StoreInventoryNowView.as_view(),
        name="store-inventory-now",
    ),
    *format_suffix_patterns(router.urls),
]
