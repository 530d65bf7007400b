"""The enrollment API's routes, included in /api/v1/ by ``certyard.urls``."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from certyard.enrollment.api import views

router = SimpleRouter(trailing_slash=True)
router.register("templates", views.TemplateViewSet, basename="template")
router.register("enrollments", views.EnrollmentViewSet, basename="enrollment")
router.register("gateways", views.GatewayViewSet, basename="gateway")
router.register("gateway-syncs", views.GatewaySyncViewSet, basename="gateway-sync")

urlpatterns = [
    path(
        "certificates/<int:pk>/revoke/",
        views.CertificateRevokeView.as_view(),
        name="certificate-revoke",
    ),
    path(
        "certificates/<int:pk>/renew/",
        views.CertificateRenewView.as_view(),
        name="certificate-renew",
    ),
    *router.urls,
]
