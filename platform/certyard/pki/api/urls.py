"""The built-in CAs' API routes, included in /api/v1/ by ``certyard.urls``."""

from rest_framework.routers import SimpleRouter

from certyard.pki.api.views import CertificateAuthorityViewSet

router = SimpleRouter(trailing_slash=True)
router.register("cas", CertificateAuthorityViewSet, basename="ca")

urlpatterns = router.urls
