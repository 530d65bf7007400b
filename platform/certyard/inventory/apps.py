from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "certyard.inventory"
    label = "inventory"

    def ready(self) -> None:
        # Job complete handlers ask for metadata as data (platform.set_metadata); the
        # inventory, which owns certificates, carries it out.
        from certyard.inventory.metadata import metadata_set_for_handler
        from certyard.workflows.services import action_applier_register

        action_applier_register("set_metadata", metadata_set_for_handler)
