from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Events, handler registrations and their runs. The bottom app: it imports no other."""

    name = "certyard.workflows"
    label = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        # Our own scheduled work, runnable now (certyard.workflows.scheduled); the apps
        # above register theirs in their own ready.
        from certyard.workflows.scheduled import scheduled_task_register
        from certyard.workflows.tasks import SCHEDULED_TASKS

        for task in SCHEDULED_TASKS:
            scheduled_task_register(task)
