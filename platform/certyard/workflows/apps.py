from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Events, handler registrations and their runs. The bottom app: it imports no other."""

    name = "certyard.workflows"
    label = "workflows"
    verbose_name = "Workflows"
