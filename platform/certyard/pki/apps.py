from django.apps import AppConfig


class PkiConfig(AppConfig):
    name = "certyard.pki"
    label = "pki"
    verbose_name = "PKI"
