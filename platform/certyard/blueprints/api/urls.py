"""The blueprints API's routes, included in /api/v1/ by ``certyard.urls``."""

from rest_framework.routers import SimpleRouter

from certyard.blueprints.api.views import BlueprintViewSet

router = SimpleRouter(trailing_slash=True)
router.register("blueprints", BlueprintViewSet, basename="blueprint")

urlpatterns = router.urls
