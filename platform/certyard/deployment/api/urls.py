"""The deployment API's routes, included in /api/v1/ by ``certyard.urls`` (discovery's
come from ``discovery_urls``)."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from certyard.deployment.api import views

router = SimpleRouter(trailing_slash=True)
router.register("deployment-batches", views.DeploymentBatchViewSet, basename="deployment-batch")
router.register("deployments", views.DeploymentViewSet, basename="deployment")

urlpatterns = [
    path(
        "certificates/<int:pk>/deployments/",
        views.CertificateDeploymentsView.as_view(),
        name="certificate-deployments",
    ),
    path(
        "certificates/<int:pk>/removals/",
        views.CertificateRemovalsView.as_view(),
        name="certificate-removals",
    ),
    path(
        "certificates/<int:pk>/renew-and-replace/",
        views.CertificateRenewReplaceView.as_view(),
        name="certificate-renew-and-replace",
    ),
    path("stores/<uuid:pk>/create/", views.StoreCreateView.as_view(), name="store-create"),
    *router.urls,
    path("", include("certyard.deployment.api.discovery_urls")),
]
