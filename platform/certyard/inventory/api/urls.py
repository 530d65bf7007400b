"""The inventory API's metadata routes, included in /api/v1/ by ``certyard.api.urls``."""

from rest_framework.routers import SimpleRouter

from certyard.inventory.api.views import MetadataBackfillViewSet, MetadataFieldViewSet

router = SimpleRouter(trailing_slash=True)
router.register("metadata-fields", MetadataFieldViewSet, basename="metadata-field")
router.register("metadata/backfills", MetadataBackfillViewSet, basename="metadata-backfill")

urlpatterns = router.urls
