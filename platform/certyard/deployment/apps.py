from django.apps import AppConfig


class DeploymentConfig(AppConfig):
    """Delivering certificates into stores, removing them, renew-and-replace, discovery.

    Sits above enrollment (it issues through enrollment's services and is told when a
    request is issued) and below the console. It asks the jobs app for management jobs
    and registers, in ``ready``, how their payloads are resolved and what their results do.
    """

    name = "certyard.deployment"
    label = "deployment"
    verbose_name = "Deployment"

    def ready(self) -> None:
        from certyard.deployment.services import delivery, renewal, targets
        from certyard.enrollment.services import certificate_issued_hook_register
        from certyard.workflows.services import action_applier_register

        delivery.register_hooks()
        # Deliveries that wait for an issuance (target stores, approval) are sent by this.
        certificate_issued_hook_register(targets.enrollment_issued_hook)
        # Handlers ask for it as data (self.platform.renew_and_replace); workflows, at the
        # bottom, carries it out through what we register here.
        action_applier_register(
            "renew_and_replace", renewal.certificate_renew_and_replace_for_handler
        )
