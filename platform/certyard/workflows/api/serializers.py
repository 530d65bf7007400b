"""The shapes of handler registrations and runs on the API. No secret is among them."""

from rest_framework import serializers

from certyard.api.serializers import ModelSerializer
from certyard.workflows.models import HandlerRegistration, HandlerRun
from certyard.workflows.services import registration_secret_names


class HandlerRegistrationSerializer(ModelSerializer):
    secrets_set = serializers.SerializerMethodField(
        help_text="The names of the secret parameters that hold a value (never the value)."
    )

    class Meta:
        model = HandlerRegistration
        fields = [
            "id",
            "name",
            "handler",
            "kind",
            "description",
            "enabled",
            "order",
            "events",
            "job_types",
            "store_types",
            "orchestrators",
            "templates",
            "parameters",
            "secrets_set",
            "timeout_seconds",
            "max_attempts",
            "retry_backoff_seconds",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_secrets_set(self, registration: HandlerRegistration) -> list[str]:
        return registration_secret_names(registration)


class HandlerRunSerializer(ModelSerializer):
    event_kind = serializers.CharField(source="event.kind", read_only=True, allow_null=True)

    class Meta:
        model = HandlerRun
        fields = [
            "id",
            "registration",
            "registration_name",
            "handler",
            "kind",
            "event",
            "event_kind",
            "subject_type",
            "subject_id",
            "subject_label",
            "attempt",
            "state",
            "message",
            "error",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_ms",
        ]
        read_only_fields = fields


class HandlerRunDetailSerializer(HandlerRunSerializer):
    class Meta(HandlerRunSerializer.Meta):
        fields = [*HandlerRunSerializer.Meta.fields, "inputs", "output", "traceback"]
        read_only_fields = fields
