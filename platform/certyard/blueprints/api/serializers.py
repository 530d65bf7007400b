"""The blueprints API's shapes. A store password is never among them."""

from rest_framework import serializers

from certyard.api.serializers import ModelSerializer, Serializer
from certyard.blueprints.models import Blueprint, BlueprintStore
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStore


class BlueprintStoreSerializer(ModelSerializer):
    store_type = serializers.SlugRelatedField(slug_field="short_name", read_only=True)
    has_password = serializers.SerializerMethodField()

    class Meta:
        model = BlueprintStore
        fields = [
            "id",
            "store_type",
            "client_machine",
            "store_path",
            "properties",
            "has_password",
            "inventory_interval_minutes",
        ]
        read_only_fields = fields

    def get_has_password(self, template: BlueprintStore) -> bool:
        return bool(template.password)


class BlueprintSerializer(ModelSerializer):
    created_by = serializers.CharField(
        source="created_by.get_username", read_only=True, allow_null=True
    )
    store_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Blueprint
        fields = [
            "id",
            "name",
            "description",
            "source_orchestrator",
            "store_count",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class BlueprintDetailSerializer(BlueprintSerializer):
    stores = BlueprintStoreSerializer(many=True, read_only=True)

    class Meta(BlueprintSerializer.Meta):
        fields = [*BlueprintSerializer.Meta.fields, "stores"]
        read_only_fields = fields


class BlueprintCreateSerializer(Serializer):
    orchestrator = serializers.PrimaryKeyRelatedField(
        queryset=Orchestrator.objects.all(), help_text="The orchestrator whose stores to save."
    )
    name = serializers.CharField(max_length=200, help_text="Unique, whatever the case.")
    description = serializers.CharField(
        max_length=2000, allow_blank=True, default="", required=False
    )


class BlueprintApplySerializer(Serializer):
    orchestrator = serializers.PrimaryKeyRelatedField(
        queryset=Orchestrator.objects.all(),
        help_text="An approved orchestrator to create the blueprint's stores on.",
    )


class AppliedStoreSerializer(ModelSerializer):
    store_type = serializers.SlugRelatedField(slug_field="short_name", read_only=True)

    class Meta:
        model = CertificateStore
        fields = [
            "id",
            "store_type",
            "client_machine",
            "store_path",
            "inventory_interval_minutes",
        ]
        read_only_fields = fields


class StoreRefusalSerializer(Serializer):
    store_type = serializers.CharField()
    client_machine = serializers.CharField()
    store_path = serializers.CharField()
    code = serializers.CharField(help_text="The refusal's stable code, e.g. capability_missing.")
    reason = serializers.CharField()


class BlueprintApplicationSerializer(Serializer):
    """What applying a blueprint did."""

    blueprint = serializers.IntegerField(source="blueprint.pk")
    orchestrator = serializers.UUIDField(source="orchestrator.pk")
    created = AppliedStoreSerializer(many=True, help_text="Stores created, each with its job.")
    skipped = AppliedStoreSerializer(
        many=True, help_text="Stores this orchestrator already had (same type, machine, path)."
    )
    refused = StoreRefusalSerializer(many=True, help_text="Stores not created, and why.")
    jobs_queued = serializers.IntegerField(help_text="Inventory jobs opened for new stores.")
    message = serializers.CharField(source="summary", help_text="The same, in one sentence.")
