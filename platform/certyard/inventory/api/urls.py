"""The inventory API's routes, included in /api/v1/ by ``certyard.urls``."""

from rest_framework.routers import SimpleRouter
from rest_framework.urlpatterns import format_suffix_patterns

from certyard.inventory.api.views import (
    CertificateViewSet,
    MetadataBackfillViewSet,
    MetadataFieldViewSet,
    StoreTypeViewSet,
    StoreViewSet,
)

# Listed in /api/v1/'s index (``certyard.urls``), so these answer ``.json`` suffixes too.
router = SimpleRouter(trailing_slash=True)
router.register("store-types", StoreTypeViewSet, basename="store-type")
router.register("stores", StoreViewSet, basename="store")
router.register("certificates", CertificateViewSet, basename="certificate")

metadata_router = SimpleRouter(trailing_slash=True)
metadata_router.register("metadata-fields", MetadataFieldViewSet, basename="metadata-field")
metadata_router.register(
    "metadata/backfills", MetadataBackfillViewSet, basename="metadata-backfill"
)

urlpatterns = [*format_suffix_patterns(router.urls), *metadata_router.urls]
