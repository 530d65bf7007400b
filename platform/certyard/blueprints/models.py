"""Blueprints: an orchestrator's stores and inventory schedules, saved under a name."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from certyard.encryption import EncryptedTextField

# The placeholders a store's machine and path may hold; applying a blueprint replaces
# them with the target orchestrator's client machine and name.
PLACEHOLDER_CLIENT_MACHINE = "{client_machine}"
PLACEHOLDER_ORCHESTRATOR = "{orchestrator}"


class Blueprint(models.Model):
    """A named set of store templates, taken from one orchestrator, applied to others."""

    name = models.CharField(
        max_length=200, help_text="Unique, whatever the case; registration handlers use it."
    )
    description = models.TextField(blank=True)
    source_orchestrator = models.CharField(
        max_length=200,
        blank=True,
        help_text="The name of the orchestrator it was saved from (kept as text).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # "Web" and "web" would be one blueprint to the person choosing it.
            models.UniqueConstraint(Lower("name"), name="blueprint_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


class BlueprintStore(models.Model):
    """One store of a blueprint: machine and path are templates (see the placeholders)."""

    blueprint = models.ForeignKey(Blueprint, on_delete=models.CASCADE, related_name="stores")
    store_type = models.ForeignKey("inventory.CertificateStoreType", on_delete=models.PROTECT)
    client_machine = models.CharField(
        max_length=255,
        blank=True,
        help_text=f"{PLACEHOLDER_CLIENT_MACHINE} stands for the target orchestrator's machine; "
        "empty means the same.",
    )
    store_path = models.CharField(
        max_length=1024,
        help_text=f"May hold {PLACEHOLDER_CLIENT_MACHINE} and {PLACEHOLDER_ORCHESTRATOR}.",
    )
    properties = models.JSONField(default=dict, blank=True)
    password = EncryptedTextField(blank=True, default="")
    inventory_interval_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Run inventory this often; empty for no schedule."
    )

    class Meta:
        ordering = ["blueprint", "store_type", "client_machine", "store_path"]
        constraints = [
            models.UniqueConstraint(
                fields=["blueprint", "store_type", "client_machine", "store_path"],
                name="blueprint_store_unique_path",
            )
        ]

    def __str__(self) -> str:
        return f"{self.store_type.short_name} {self.client_machine}:{self.store_path}"
