from django.apps import AppConfig


class EnrollmentConfig(AppConfig):
    """Templates, enrollment with approval, renewal, revocation, and the CA gateways.

    Sits above inventory (issued and synchronized certificates enter the inventory through
    its ingestion path) and below the console. The built-in CAs live in ``pki``, below.
    """

    name = "certyard.enrollment"
    label = "enrollment"
    verbose_name = "Enrollment"
