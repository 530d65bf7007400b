from django.apps import AppConfig


class PkiConfig(AppConfig):
    name = "certyard.pki"
    label = "pki"
    verbose_name = "PKI"

    def ready(self) -> None:
        # The CRL refresh, runnable now (workflows, below, keeps the list of scheduled work).
        from certyard.pki.tasks import SCHEDULED_TASKS
        from certyard.workflows.scheduled import scheduled_task_register

        for task in SCHEDULED_TASKS:
            scheduled_task_register(task)
