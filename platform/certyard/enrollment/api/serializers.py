"""Shapes of the enrollment API (the CAs' are in ``certyard.pki.api.serializers``)."""

from __future__ import annotations

from rest_framework import serializers

from certyard.api.serializers import ModelSerializer, Serializer
from certyard.enrollment.models import EnrollmentRequest, GatewaySync, Template
from certyard.pki.models import KeyAlgorithm, RevocationReason
from certyard.workflows.models import HandlerRegistration


class TemplateSerializer(ModelSerializer):
    issuer = serializers.SerializerMethodField()

    class Meta:
        model = Template
        fields = [
            "id",
            "name",
            "description",
            "enabled",
            "issuer",
            "ca",
            "gateway",
            "product_id",
            "validity_days",
            "key_usage",
            "extended_key_usage",
            "allowed_key_types",
            "allowed_domains",
            "allow_wildcards",
            "allow_ip_addresses",
            "san_pattern",
            "max_sans",
            "allow_non_dns_common_name",
            "subject_attributes",
            "required_metadata",
            "require_approval",
            "archive_keys",
        ]
        read_only_fields = fields

    def get_issuer(self, template: Template) -> str:
        return str(template.ca or template.gateway)


class EnrollmentSerializer(ModelSerializer):
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    decided_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    pfx_available = serializers.BooleanField(read_only=True)

    class Meta:
        model = EnrollmentRequest
        fields = [
            "id",
            "template_name",
            "template",
            "type",
            "method",
            "state",
            "requested_by",
            "decided_by",
            "decided_by_handler",
            "decided_at",
            "decision_comment",
            "subject",
            "sans",
            "key_algorithm",
            "metadata",
            "renewal_of",
            "failure_reason",
            "ca_request_id",
            "certificate",
            "serial_number",
            "certificate_pem",
            "chain_pem",
            "key_archived",
            "pfx_available",
            "created_at",
            "issued_at",
        ]
        read_only_fields = fields


class EnrollmentCsrSerializer(Serializer):
    template = serializers.CharField(max_length=100, help_text="The template's name.")
    csr = serializers.CharField(max_length=65536, help_text="PEM.")
    metadata = serializers.DictField(required=False, default=dict)
    target_stores = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        default=list,
        max_length=100,
        help_text="Store ids: the certificate is delivered there once issued (with its key "
        "for a PFX enrollment).",
    )


class EnrollmentBatchSerializer(Serializer):
    template = serializers.CharField(max_length=100, help_text="The template's name.")
    csrs = serializers.ListField(
        child=serializers.CharField(max_length=65536),
        min_length=1,
        max_length=1000,
        help_text="PEM CSRs, up to 1,000; each gets a request of its own.",
    )
    metadata = serializers.DictField(required=False, default=dict)


class EnrollmentBatchResultSerializer(Serializer):
    issued = serializers.IntegerField()
    pending = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = EnrollmentSerializer(many=True)


class EnrollmentPfxSerializer(Serializer):
    template = serializers.CharField(max_length=100)
    # Only a size bound here: the name policy (at most 64 bytes in UTF-8, one of the
    # template's names) is the service's, which records a refused request as failed.
    common_name = serializers.CharField(
        max_length=1024,
        trim_whitespace=False,
        help_text="At most 64 bytes in UTF-8; a DNS name the template allows, unless it "
        "allows other common names.",
    )
    sans = serializers.ListField(
        child=serializers.CharField(max_length=255), required=False, default=list, max_length=1000
    )
    key_algorithm = serializers.ChoiceField(KeyAlgorithm.choices, default=KeyAlgorithm.EC_P256)
    password = serializers.CharField(min_length=8, max_length=1024, trim_whitespace=False)
    metadata = serializers.DictField(required=False, default=dict)
    target_stores = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        default=list,
        max_length=100,
        help_text="Store ids: the certificate is delivered there once issued (with its key "
        "for a PFX enrollment).",
    )


class EnrollmentPfxResultSerializer(Serializer):
    enrollment = EnrollmentSerializer()
    pkcs12 = serializers.CharField(
        allow_null=True, help_text="Base64 PKCS#12, handed out once; null while pending."
    )


class DecisionSerializer(Serializer):
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class DenialSerializer(Serializer):
    """A denial says why: the requester reads it (the schema marks it required, as it is)."""

    comment = serializers.CharField(
        max_length=2000,
        error_messages={
            "required": "say why the request is denied",
            "blank": "say why the request is denied",
        },
    )


class CollectSerializer(Serializer):
    password = serializers.CharField(min_length=8, max_length=1024, trim_whitespace=False)


class RevokeSerializer(Serializer):
    reason = serializers.ChoiceField(
        [c for c in RevocationReason.choices if c[0] != RevocationReason.REMOVE_FROM_CRL],
        default=RevocationReason.UNSPECIFIED,
        help_text="RFC 5280 reason code.",
    )


class RenewSerializer(Serializer):
    csr = serializers.CharField(
        max_length=65536,
        required=False,
        allow_blank=True,
        default="",
        help_text="For a CSR-enrolled certificate: PEM, for the same key or a new one.",
    )
    reuse_key = serializers.BooleanField(
        default=False, help_text="PFX-enrolled: reuse the archived key instead of a new one."
    )
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=1024,
        trim_whitespace=False,
        help_text="PFX-enrolled: the new PKCS#12's password.",
    )


class GatewaySerializer(ModelSerializer):
    supports_sync = serializers.SerializerMethodField()

    class Meta:
        model = HandlerRegistration
        fields = [
            "id",
            "name",
            "handler",
            "description",
            "enabled",
            "timeout_seconds",
            "supports_sync",
        ]
        read_only_fields = fields

    def get_supports_sync(self, registration: HandlerRegistration) -> bool:
        from handlers.registry import handler_class

        info = handler_class(registration.handler)
        return bool(info and info.cls and getattr(info.cls, "supports_sync", False))


class GatewayProductSerializer(Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()


class GatewaySyncStartSerializer(Serializer):
    full = serializers.BooleanField(default=False)


class GatewaySyncSerializer(ModelSerializer):
    class Meta:
        model = GatewaySync
        fields = [
            "id",
            "gateway",
            "full",
            "state",
            "cursor",
            "processed",
            "added",
            "error",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields
