from rest_framework import serializers

from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.pki.models import RevocationReason


class RegistrationTokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = RegistrationToken
        fields = [
            "id",
            "description",
            "token_prefix",
            "reusable",
            "approve_on_register",
            "expires_at",
            "revoked",
            "use_count",
            "last_used_at",
            "created_at",
        ]
        read_only_fields = fields


class RegistrationTokenCreateSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=200)
    valid_hours = serializers.IntegerField(min_value=1, max_value=24 * 365, default=24)
    reusable = serializers.BooleanField(default=False)
    approve_on_register = serializers.BooleanField(default=False)


class RegistrationTokenCreatedSerializer(RegistrationTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown only in this answer.")

    class Meta(RegistrationTokenSerializer.Meta):
        fields = [*RegistrationTokenSerializer.Meta.fields, "token"]


class OrchestratorSerializer(serializers.ModelSerializer):
    has_identity = serializers.BooleanField(read_only=True)

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
            "source_address",
            "has_identity",
            "certificate_not_after",
            "registered_at",
            "status_changed_at",
            "last_seen",
            "last_error",
        ]
        read_only_fields = fields


class CertificateRevokeSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(
        choices=[
            choice
            for choice in RevocationReason.choices
            if choice[0] != RevocationReason.REMOVE_FROM_CRL
        ],
        default=RevocationReason.UNSPECIFIED,
        help_text="The RFC 5280 CRLReason code written into the CRL (default 0, unspecified).",
    )
