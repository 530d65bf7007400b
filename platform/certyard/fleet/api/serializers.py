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


class RegistrationTokenCreateSerializer(serializers.Serializer):
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
            "store_roots",
            "max_file_bytes",
            "limits_reported_at",
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
