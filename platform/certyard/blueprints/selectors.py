"""Reads of the blueprints app."""

from django.db.models import Count, QuerySet

from certyard.blueprints.models import Blueprint, BlueprintStore


def blueprint_list() -> QuerySet[Blueprint]:
    """Blueprints by name, each with ``store_count`` and its author."""
    # Explicit order: Meta.ordering does not apply to a query grouped for the count.
    return (
        Blueprint.objects.select_related("created_by")
        .annotate(store_count=Count("stores"))
        .order_by("name", "pk")
    )


def blueprint_stores(*, blueprint: Blueprint) -> QuerySet[BlueprintStore]:
    """The blueprint's store templates, by type, machine and path."""
    return BlueprintStore.objects.filter(blueprint=blueprint).select_related("store_type")


def blueprint_choices() -> QuerySet[Blueprint]:
    """What a person may choose from to apply: names only, in order."""
    return Blueprint.objects.only("pk", "name").order_by("name")
