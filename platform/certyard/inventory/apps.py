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

        # The metadata generators' scheduled work, runnable now (certyard.workflows.scheduled).
        from certyard.inventory.tasks import SCHEDULED_TASKS
        from certyard.workflows.scheduled import scheduled_task_register

        for task in SCHEDULED_TASKS:
            scheduled_task_register(task)

        # A built-in CA's revocation (pki, below the inventory) is recorded on the
        # certificate it revoked, whichever path revoked it (enrollment, orchestrators).
        from certyard.inventory.services import certificate_revoked_by_builtin_ca
        from certyard.pki.services import certificate_revoked_hook_register

        certificate_revoked_hook_register(certificate_revoked_by_builtin_ca)

        # Registering a metadata generator creates the fields it declares (workflows,
        # below, cannot see the fields; it runs the hook the inventory gives it).
        from certyard.inventory.metadata.services import generator_fields_hook
        from certyard.workflows.services import registration_hook_register
        from handlers.base import HandlerKind

        registration_hook_register(HandlerKind.METADATA, generator_fields_hook)

        # The built-in store types follow this release's declarations after every migrate
        # (a data migration made them; a release that changes one needs no new migration).
        from django.db.models.signals import post_migrate

        from certyard.inventory.declarations import builtin_sync_after_migrate

        post_migrate.connect(
            builtin_sync_after_migrate, sender=self, dispatch_uid="inventory-builtin-store-types"
        )
