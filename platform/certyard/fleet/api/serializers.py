from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from certyard.api.serializers import ModelSerializer, Serializer
from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.fleet.services import (
    ORCHESTRATOR_METADATA_MAX_BYTES,
    ORCHESTRATOR_METADATA_MAX_KEYS,
    orchestrator_metadata_check,
)
from certyard.pki.models import RevocationReason


class RegistrationTokenSerializer(ModelSerializer):
    class Meta:
        model = RegistrationToken
        fields = [
            "id",
            "description",
            "token_prefix",
            "reusable",
            "approve_on_register",
            "labels",
            "machine_pattern",
            "blueprint",
            "expires_at",
            "revoked",
            "use_count",
            "last_used_at",
            "created_at",
        ]
        read_only_fields = fields


class RegistrationTokenCreateSerializer(Serializer):
    description = serializers.CharField(max_length=200)
    valid_hours = serializers.IntegerField(min_value=1, max_value=24 * 365, default=24)
    reusable = serializers.BooleanField(default=False)
    approve_on_register = serializers.BooleanField(default=False)
    labels = serializers.ListField(
        child=serializers.CharField(max_length=64),
        max_length=20,
        default=list,
        help_text="Labels registration rules can trust (token_labels): letters, digits and "
        ". _ : = / -. The agent cannot choose them.",
    )
    machine_pattern = serializers.CharField(
        max_length=255,
        allow_blank=True,
        default="",
        help_text="Only client machines matching this glob may register with the token, e.g. "
        "*.prod.example.com (ignoring case); empty for any.",
    )
    blueprint = serializers.CharField(
        max_length=200,
        allow_blank=True,
        default="",
        help_text="The only blueprint (by name) an approval through this token may apply; "
        "empty for any.",
    )


class RegistrationTokenCreatedSerializer(RegistrationTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown only in this answer.")

    class Meta(RegistrationTokenSerializer.Meta):
        fields = [*RegistrationTokenSerializer.Meta.fields, "token"]


_METADATA_RULES = (
    "Keys: a letter, then letters, digits, _, - or . (at most 64 characters); values: a "
    f"string, a number or a boolean; at most {ORCHESTRATOR_METADATA_MAX_KEYS} keys and "
    f"{ORCHESTRATOR_METADATA_MAX_BYTES} bytes of compact JSON."
)
_METADATA_VALUE = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}


# As read: what a registration handler recorded may predate or exceed the rules a person's
# edit is held to (a handler's values are kept as text), so only the value types are said.
@extend_schema_field({"type": "object", "additionalProperties": _METADATA_VALUE})
class OrchestratorMetadataField(serializers.Field):
    """An orchestrator's metadata: checked by ``orchestrator_metadata_check``; each
    problem is one of the field's errors."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        try:
            return orchestrator_metadata_check(data)
        except ServiceError as exc:
            raise serializers.ValidationError(exc.fields.get("metadata") or exc.message) from None

    def to_representation(self, value: Any) -> dict[str, Any]:
        return dict(value or {})


class OrchestratorSerializer(ModelSerializer):
    has_identity = serializers.BooleanField(read_only=True)
    metadata = OrchestratorMetadataField(
        read_only=True,
        help_text="Key/values a registration handler recorded (as text) or a person set.",
    )
    metadata_changed_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Who last set the metadata; null when a registration handler did.",
    )

    class Meta:
        model = Orchestrator
        fields = [
            "id",
            "name",
            "client_machine",
            "agent_version",
            "status",
            "capabilities",
            "client_parameters",
            "metadata",
            "metadata_changed_at",
            "metadata_changed_by",
            "source_address",
            "has_identity",
            "certificate_not_after",
            "registered_at",
            "status_changed_at",
            "last_seen",
            "last_error",
            "store_roots",
            "max_file_bytes",
            "limits_reported_at",
        ]
        read_only_fields = fields


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": ORCHESTRATOR_METADATA_MAX_KEYS,
        "additionalProperties": _METADATA_VALUE,
    }
)
class OrchestratorMetadataInputField(OrchestratorMetadataField):
    """The metadata a person sends: the rules' limit on keys is in the schema too."""


class OrchestratorUpdateSerializer(Serializer):
    """What a person may change on an orchestrator (``PATCH``): only the fields sent."""

    metadata = OrchestratorMetadataInputField(
        required=False,
        help_text="Replaces the whole metadata (send every key to keep; {} empties it). "
        + _METADATA_RULES,
    )


class CertificateRevokeSerializer(Serializer):
    reason = serializers.ChoiceField(
        choices=[
            choice
            for choice in RevocationReason.choices
            if choice[0] != RevocationReason.REMOVE_FROM_CRL
        ],
        default=RevocationReason.UNSPECIFIED,
        help_text="The RFC 5280 CRLReason code written into the CRL (default 0, unspecified).",
    )
