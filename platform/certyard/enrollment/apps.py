from django.apps import AppConfig


class EnrollmentConfig(AppConfig):
    """Templates, enrollment with approval, renewal, revocation, and the CA gateways.

    Sits above inventory (issued and synchronized certificates enter the inventory through
    its ingestion path) and below the console. The built-in CAs live in ``pki``, below.
    """

    name = "certyard.enrollment"
    label = "enrollment"
    verbose_name = "Enrollment"

    def ready(self) -> None:
        # Handlers ask for these as data (self.platform.approve_enrollment, ...);
        # workflows, at the bottom, carries them out through what we register here.
        from certyard.enrollment import services
        from certyard.enrollment.authorization import certificate_enrollment_holders
        from certyard.inventory.authorization import certificate_holders_source_register
        from certyard.workflows.services import action_applier_register

        # Who may act on a certificate: the inventory asks us who enrolled it.
        certificate_holders_source_register(certificate_enrollment_holders)

        # Template.clean() checks with the service's checker (one for admin, console, API).
        from certyard.enrollment.models import Template

        Template.checker = services.template_errors

        action_applier_register("approve_enrollment", services.enrollment_approve_for_handler)
        action_applier_register("deny_enrollment", services.enrollment_deny_for_handler)
        action_applier_register("renew_certificate", services.certificate_renew_for_handler)

        # Gateway syncs and their upkeep, runnable now (certyard.workflows.scheduled).
        from certyard.enrollment.tasks import SCHEDULED_TASKS
        from certyard.workflows.scheduled import scheduled_task_register

        for task in SCHEDULED_TASKS:
            scheduled_task_register(task)
