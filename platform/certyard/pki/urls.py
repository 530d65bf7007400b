"""/pki/: the public CA endpoints written into issued certificates."""

from django.urls import path

from certyard.pki import views

urlpatterns = [
    path("<int:ca_id>/ca.crt", views.ca_certificate, name="pki-ca-certificate"),
    path("<int:ca_id>/crl", views.crl, name="pki-crl"),
    path("<int:ca_id>/ocsp", views.ocsp, name="pki-ocsp"),
    path("<int:ca_id>/ocsp/<path:encoded>", views.ocsp, name="pki-ocsp-get"),
]
