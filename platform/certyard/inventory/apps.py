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

        # The built-in store types follow this release's declarations after every migrate
        # (a data migration made them; a release that changes one needs no new migration).
        from django.db.models.signals import post_migrate

        from certyard.inventory.declarations import builtin_sync_after_migrate

        post_migrate.connect(
            builtin_sync_after_migrate, sender=self, dispatch_uid="inventory-builtin-store-types"
        )
