from django.apps import AppConfig


class BlueprintsConfig(AppConfig):
    """An orchestrator's stores and schedules saved under a name, applied to others."""

    name = "certyard.blueprints"
    label = "blueprints"
    verbose_name = "Blueprints"

    def ready(self) -> None:
        # fleet sits below us: when a registration handler names a blueprint for an
        # orchestrator it approves, fleet calls what we register here.
        from certyard.blueprints.services import blueprint_apply_by_name, blueprint_name_check
        from certyard.fleet.services import (
            orchestrator_blueprint_applier_register,
            registration_token_blueprint_check_register,
        )

        orchestrator_blueprint_applier_register(blueprint_apply_by_name)
        # A registration token restricted to a blueprint names one that exists.
        registration_token_blueprint_check_register(blueprint_name_check)
