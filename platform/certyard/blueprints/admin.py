"""Django admin for blueprints: names, descriptions and store templates, never a password.

Blueprints are saved from an orchestrator in the console or the API; here their
templates can be read and corrected. Applying one goes through the console or the API.
"""

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from certyard.blueprints.models import Blueprint, BlueprintStore


class BlueprintStoreInline(admin.TabularInline):
    model = BlueprintStore
    extra = 0
    # The password is left out of the form: it is never shown, and only saving from an
    # orchestrator sets it.
    fields = [
        "store_type",
        "client_machine",
        "store_path",
        "properties",
        "inventory_interval_minutes",
        "has_password",
    ]
    readonly_fields = ["has_password"]

    @admin.display(boolean=True, description="Password")
    def has_password(self, template: BlueprintStore) -> bool:
        return bool(template.password)


@admin.register(Blueprint)
class BlueprintAdmin(admin.ModelAdmin):
    list_display = ["name", "source_orchestrator", "store_count", "created_by", "created_at"]
    search_fields = ["name", "description", "source_orchestrator"]
    readonly_fields = ["source_orchestrator", "created_by", "created_at", "updated_at"]
    inlines = [BlueprintStoreInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Blueprint]:
        return (
            super()
            .get_queryset(request)
            .select_related("created_by")
            .annotate(store_count=Count("stores"))
        )

    @admin.display(description="Stores", ordering="store_count")
    def store_count(self, blueprint: Blueprint) -> int:
        return blueprint.store_count  # type: ignore[attr-defined]  # annotated above

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # saved from an orchestrator's stores, in the console or the API
