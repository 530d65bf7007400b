"""The deployment API's request and answer shapes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from certyard.api.serializers import ModelSerializer, Serializer
from certyard.deployment.models import Deployment, DeploymentBatch
from certyard.deployment.services.delivery import STORE_FILTER_KEYS
from certyard.jobs.models import Job


class StoreFilterSerializer(Serializer):
    store_type = serializers.CharField(max_length=40, required=False, help_text="Short name.")
    orchestrator = serializers.UUIDField(required=False)
    client_machine = serializers.CharField(max_length=255, required=False)
    path_contains = serializers.CharField(max_length=1024, required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # A typo in a key must not widen the filter: unknown keys are refused.
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(STORE_FILTER_KEYS))
            if unknown:
                raise serializers.ValidationError(
                    f"unknown filter keys: {', '.join(map(str, unknown))[:200]}"
                )
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError(
                f"give at least one of {', '.join(STORE_FILTER_KEYS)}"
            )
        return {key: str(value) for key, value in attrs.items()}


class DeployRequestSerializer(Serializer):
    stores = serializers.ListField(
        child=serializers.UUIDField(), required=False, min_length=1, max_length=1000
    )
    store_filter = StoreFilterSerializer(required=False)
    alias = serializers.CharField(max_length=512, required=False, allow_blank=True, default="")
    overwrite = serializers.BooleanField(default=False)
    include_private_key = serializers.BooleanField(default=True)
    entry_parameters = serializers.DictField(required=False, default=dict)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("stores" in attrs) == ("store_filter" in attrs):
            raise serializers.ValidationError("give either stores (ids) or store_filter")
        return attrs


class RemovalRequestSerializer(Serializer):
    stores = serializers.ListField(
        child=serializers.UUIDField(), required=False, min_length=1, max_length=1000
    )
    all = serializers.BooleanField(required=False, default=False, help_text="Every location.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("stores")) == bool(attrs.get("all")):
            raise serializers.ValidationError('give either stores (ids) or "all": true')
        return attrs


class RenewReplaceRequestSerializer(Serializer):
    template = serializers.CharField(max_length=100, help_text="The template's name.")


class DeploymentSerializer(ModelSerializer):
    state = serializers.SerializerMethodField()
    job = serializers.UUIDField(source="job_id", allow_null=True)
    store = serializers.UUIDField(source="store_id")
    batch = serializers.UUIDField(source="batch_id")
    certificate = serializers.IntegerField(source="certificate_id", allow_null=True)
    enrollment = serializers.UUIDField(source="enrollment_id", allow_null=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "batch",
            "certificate",
            "store",
            "action",
            "alias",
            "job",
            "state",
            "key_origin",
            "enrollment",
            "overwrite",
            "entry_parameters",
            "message",
            "evidence",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_state(self, deployment: Deployment) -> str:
        """``running`` while an agent holds the job's lease."""
        job = deployment.job
        if (
            deployment.state == Deployment.State.PENDING
            and job is not None
            and job.state == Job.State.LEASED
        ):
            return Deployment.State.RUNNING
        return deployment.state


class DeploymentBatchSerializer(ModelSerializer):
    certificate = serializers.IntegerField(source="certificate_id", allow_null=True)
    new_certificate = serializers.IntegerField(source="new_certificate_id", allow_null=True)
    template = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    deployments = DeploymentSerializer(many=True, read_only=True)

    class Meta:
        model = DeploymentBatch
        fields = [
            "id",
            "kind",
            "certificate",
            "new_certificate",
            "template",
            "created_at",
            "message",
            "progress",
            "deployments",
        ]
        read_only_fields = fields

    def get_template(self, batch: DeploymentBatch) -> str | None:
        return batch.template.name if batch.template else None

    def get_progress(self, batch: DeploymentBatch) -> dict[str, int]:
        """How many deployments are in each state (its progress is theirs)."""
        counts: dict[str, int] = {}
        for deployment in batch.deployments.all():
            state = DeploymentSerializer().get_state(deployment)
            counts[state] = counts.get(state, 0) + 1
        return counts


class StoreCreateAnswerSerializer(Serializer):
    job = serializers.UUIDField()
    state = serializers.CharField()


# The schema says what the serializers' own checks refuse (drf-spectacular cannot read them
# from the fields), so a body it calls valid is not refused for its shape and one it calls
# invalid always is: the three below add that to the fields' schema.


class _StoreFilterSchema(OpenApiSerializerExtension):
    """Closed (unknown keys are refused: a typo must not widen the filter), not empty."""

    target_class = StoreFilterSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "minProperties": 1, "additionalProperties": False}


class _DeployRequestSchema(OpenApiSerializerExtension):
    """Exactly one of ``stores`` and ``store_filter``."""

    target_class = DeployRequestSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "oneOf": [{"required": ["stores"]}, {"required": ["store_filter"]}]}


class _RemovalRequestSchema(OpenApiSerializerExtension):
    """Exactly one of ``stores`` (at least one) and ``"all": true``."""

    target_class = RemovalRequestSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        # allOf, not a bare enum: drf-spectacular would make a bare one a component.
        every = {"required": ["all"], "properties": {"all": {"allOf": [{"enum": [True]}]}}}
        # Both given match both, so oneOf refuses them too, as the serializer does.
        return {**schema, "oneOf": [{"required": ["stores"]}, every]}
