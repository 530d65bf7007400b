"""Shapes of the built-in CAs' API."""

from __future__ import annotations

from rest_framework import serializers

from certyard.api.serializers import ModelSerializer, Serializer
from certyard.pki.crypto import name_value_error
from certyard.pki.models import CertificateAuthority, KeyAlgorithm


class CertificateAuthoritySerializer(ModelSerializer):
    urls = serializers.SerializerMethodField()

    class Meta:
        model = CertificateAuthority
        fields = [
            "id",
            "name",
            "origin",
            "parent",
            "purpose",
            "key_algorithm",
            "subject",
            "not_after",
            "enabled",
            "certificate_pem",
            "chain_pem",
            "crl_number",
            "crl_next_update",
            "urls",
            "created_at",
        ]
        read_only_fields = fields

    def get_urls(self, ca: CertificateAuthority) -> dict[str, str]:
        from certyard.pki.services import ca_urls

        return ca_urls(ca)


def _name_value(short: str, value: str) -> str:
    """A subject attribute within its X.520 bound, counted in UTF-8 bytes as cryptography
    counts it (a character count lets 40 "é", 80 bytes, through to a 500)."""
    problem = name_value_error(short, value)
    if problem is not None:
        raise serializers.ValidationError(problem[:1].upper() + problem[1:] + ".")
    return value


class CertificateAuthorityCreateSerializer(Serializer):
    name = serializers.CharField(max_length=200)
    common_name = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        help_text="At most 64 bytes in UTF-8; empty: the name.",
    )
    organization = serializers.CharField(
        max_length=64, required=False, allow_blank=True, help_text="At most 64 bytes in UTF-8."
    )
    # A RegexField so that the schema says "two letters" too (the pattern).
    country = serializers.RegexField(
        r"^([A-Za-z]{2})?$",
        max_length=2,
        required=False,
        allow_blank=True,
        help_text="Two letters (ISO 3166).",
    )
    key_algorithm = serializers.ChoiceField(KeyAlgorithm.choices, default=KeyAlgorithm.EC_P384)
    validity_days = serializers.IntegerField(min_value=1, max_value=36500, default=3650)
    parent = serializers.PrimaryKeyRelatedField(
        queryset=CertificateAuthority.objects.all(), required=False, allow_null=True
    )
    path_length = serializers.IntegerField(min_value=0, max_value=10, default=0, allow_null=True)

    def validate_common_name(self, value: str) -> str:
        return _name_value("CN", value) if value else value

    def validate_organization(self, value: str) -> str:
        return _name_value("O", value) if value else value

    def validate_country(self, value: str) -> str:
        return _name_value("C", value) if value else value

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("common_name"):  # the name becomes the common name
            problem = name_value_error("CN", attrs["name"].strip())
            if problem is not None:
                message = f"Give a common name: the name is used otherwise, and {problem}."
                raise serializers.ValidationError({"common_name": message})
        return attrs


class CertificateAuthorityImportSerializer(Serializer):
    """Either PEM (certificate_pem + private_key_pem) or a base64 PKCS#12."""

    name = serializers.CharField(max_length=200)
    certificate_pem = serializers.CharField(required=False, allow_blank=True, max_length=65536)
    private_key_pem = serializers.CharField(
        required=False, allow_blank=True, max_length=65536, trim_whitespace=False
    )
    key_password = serializers.CharField(
        required=False, allow_blank=True, max_length=1024, trim_whitespace=False
    )
    chain_pem = serializers.CharField(required=False, allow_blank=True, max_length=262144)
    pkcs12 = serializers.CharField(
        required=False, allow_blank=True, max_length=262144, help_text="Base64."
    )
    password = serializers.CharField(
        required=False, allow_blank=True, max_length=1024, trim_whitespace=False
    )

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("pkcs12")) == bool(attrs.get("certificate_pem")):
            raise serializers.ValidationError(
                "give either pkcs12 (base64), or certificate_pem and private_key_pem"
            )
        if attrs.get("certificate_pem") and not attrs.get("private_key_pem"):
            raise serializers.ValidationError({"private_key_pem": "the CA's private key"})
        return attrs
