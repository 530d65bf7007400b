from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from certyard.api.serializers import ModelSerializer, Serializer
from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory import metadata, selectors, services
from certyard.inventory.metadata import selectors as metadata_selectors
from certyard.inventory.metadata.selectors import MetadataFilter
from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateStatus,
    CertificateStore,
    CertificateStoreType,
    MetadataBackfill,
    MetadataField,
    TlsEndpoint,
)
from certyard.inventory.properties import properties_public, specs_of
from certyard.inventory.selectors import CertificateFilters
from certyard.x509 import der_to_pem
from orchestrators.scan import endpoint_alias
from orchestrators.secret_refs import is_reference


class StoreTypeSerializer(ModelSerializer):
    short_name = serializers.CharField(
        max_length=40,
        trim_whitespace=False,
        help_text="Matches the agent's extension, e.g. PEM: letters, digits, _ and -.",
    )

    class Meta:
        model = CertificateStoreType
        fields = "__all__"
        # Recorded by the platform when a declaration and the type disagree.
        read_only_fields = ["declaration_warning", "declaration_warning_at"]

    def validate_short_name(self, value: str) -> str:
        if not services.STORE_TYPE_SHORT_NAME.fullmatch(value):
            raise serializers.ValidationError(
                "use a letter or digit, then letters, digits, _ or - (at most 40 characters)"
            )
        current = self.instance
        if current is not None and current.builtin and value != current.short_name:
            raise serializers.ValidationError(
                f"{current.short_name} is a built-in store type and cannot be renamed"
            )
        clash = CertificateStoreType.objects.filter(short_name=value)
        if current is not None:
            clash = clash.exclude(pk=current.pk)
        if clash.exists():
            raise serializers.ValidationError(f"a store type {value} already exists")
        return value

    def validate_properties(self, value: Any) -> list[dict[str, Any]]:
        return _declarations(value)

    def validate_entry_parameters(self, value: Any) -> list[dict[str, Any]]:
        return _declarations(value)


def _declarations(value: Any) -> list[dict[str, Any]]:
    try:
        return services.store_type_properties_check(value)
    except ServiceError as exc:
        raise serializers.ValidationError(exc.message) from exc


class StoreSerializer(ModelSerializer):
    store_type = serializers.SlugRelatedField(slug_field="short_name", read_only=True)
    orchestrator_name = serializers.CharField(source="orchestrator.name", read_only=True)
    has_password = serializers.SerializerMethodField()
    password_reference = serializers.SerializerMethodField(
        help_text="The reference the store password is, when it is one: ref+agent:... (the "
        "agent resolves it) or ref+platform:... (the platform does); null otherwise."
    )
    location_count = serializers.IntegerField(read_only=True, default=None)
    properties = serializers.SerializerMethodField(
        help_text='The store\'s properties; a secret one shows only "set" or "not set".'
    )
    property_problems = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Values a change of the store type no longer allows (kept, not emptied): "
        "fix them with an edit.",
    )

    class Meta:
        model = CertificateStore
        fields = [
            "id",
            "store_type",
            "client_machine",
            "store_path",
            "orchestrator",
            "orchestrator_name",
            "properties",
            "property_problems",
            "has_password",
            "password_reference",
            "endpoint_host",
            "endpoint_port",
            "endpoint_sni",
            "approved",
            "inventory_interval_minutes",
            "inventory_next_run",
            "last_inventory_at",
            "inventory_status",
            "inventory_message",
            "inventory_checked_at",
            "location_count",
            "created_at",
        ]
        read_only_fields = fields

    def get_has_password(self, store: CertificateStore) -> bool:
        return bool(store.password)

    def get_password_reference(self, store: CertificateStore) -> str | None:
        # A reference is no secret: it names where the agent finds one.
        return store.password if is_reference(store.password) else None

    @extend_schema_field(serializers.DictField())
    def get_properties(self, store: CertificateStore) -> dict[str, Any]:
        return properties_public(specs_of(store.store_type.properties), store.properties)


class _EndpointFields(Serializer):
    """The TLS endpoint served from a store; the agent checks it after a write."""

    endpoint_host = serializers.CharField(
        max_length=253,
        allow_blank=True,
        required=False,
        help_text="A DNS name or an IP address, with endpoint_port; empty: no endpoint.",
    )
    endpoint_port = serializers.IntegerField(
        min_value=1, max_value=65535, required=False, allow_null=True
    )
    endpoint_sni = serializers.CharField(
        max_length=253,
        allow_blank=True,
        required=False,
        help_text="The server name to ask for; empty: the host.",
    )


class StoreCreateSerializer(_EndpointFields):
    store_type = serializers.SlugRelatedField(
        slug_field="short_name", queryset=CertificateStoreType.objects.all()
    )
    client_machine = serializers.CharField(
        max_length=255,
        allow_blank=True,
        default="",
        help_text="Empty for the orchestrator's own machine, the only one it can reach.",
    )
    store_path = serializers.CharField(max_length=1024)
    orchestrator = serializers.PrimaryKeyRelatedField(queryset=Orchestrator.objects.all())
    properties = serializers.DictField(default=dict)
    password = serializers.CharField(
        default="", allow_blank=True, write_only=True, style={"input_type": "password"}
    )
    inventory_interval_minutes = serializers.IntegerField(
        min_value=1, max_value=525_600, required=False, allow_null=True
    )


class StoreUpdateSerializer(_EndpointFields):
    """A store's changeable fields; each one optional. Its type, orchestrator and machine
    are fixed."""

    store_path = serializers.CharField(max_length=1024, required=False)
    properties = serializers.DictField(required=False)
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        style={"input_type": "password"},
        help_text='The new store password; "" clears it. Never returned.',
    )
    inventory_interval_minutes = serializers.IntegerField(
        min_value=1,
        max_value=525_600,
        required=False,
        allow_null=True,
        help_text="null stops the schedule; a number schedules inventory, the first run now.",
    )

    def changes(self) -> dict[str, Any]:
        """``store_update``'s keyword arguments: only the fields sent."""
        return dict(self.validated_data)


class ScheduleSerializer(Serializer):
    interval_minutes = serializers.IntegerField(min_value=1, max_value=525_600, allow_null=True)


class LocationSerializer(ModelSerializer):
    store_id = serializers.UUIDField(source="store.id")
    store_type = serializers.CharField(source="store.store_type.short_name")
    client_machine = serializers.CharField(source="store.client_machine")
    store_path = serializers.CharField(source="store.store_path")

    class Meta:
        model = CertificateLocation
        fields = [
            "store_id",
            "store_type",
            "client_machine",
            "store_path",
            "alias",
            "has_private_key",
            "first_seen",
            "last_seen",
        ]


class TlsEndpointSerializer(ModelSerializer):
    alias = serializers.SerializerMethodField(help_text="The endpoint's location alias.")
    certificate_sha256 = serializers.CharField(
        source="certificate.sha256", read_only=True, allow_null=True, default=None
    )
    certificate_common_name = serializers.CharField(
        source="certificate.common_name", read_only=True, allow_null=True, default=None
    )
    not_after = serializers.DateTimeField(
        source="certificate.not_after", read_only=True, allow_null=True, default=None
    )
    certificate_status = serializers.SerializerMethodField(
        help_text="The served leaf's status (valid, expiring, expired, ...); null if none."
    )
    self_signed = serializers.SerializerMethodField(
        help_text="Whether the served leaf signs itself; null if none was served."
    )
    name_matches = serializers.SerializerMethodField(
        help_text="Whether the served leaf is valid for the name asked for (SNI, else host)."
    )

    class Meta:
        model = TlsEndpoint
        fields = [
            "host",
            "port",
            "sni",
            "alias",
            "status",
            "reason",
            "tls_version",
            "cipher",
            "certificate",
            "certificate_sha256",
            "certificate_common_name",
            "not_after",
            "certificate_status",
            "self_signed",
            "name_matches",
            "chain",
            "first_seen",
            "scanned_at",
            "last_ok_at",
        ]
        read_only_fields = fields

    def get_alias(self, endpoint: TlsEndpoint) -> str:
        return endpoint_alias(endpoint.host, endpoint.port, endpoint.sni or None)

    @extend_schema_field(
        serializers.ChoiceField(choices=CertificateStatus.choices, allow_null=True)
    )
    def get_certificate_status(self, endpoint: TlsEndpoint) -> str | None:
        if endpoint.certificate is None:
            return None
        return str(selectors.certificate_status(endpoint.certificate))

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_self_signed(self, endpoint: TlsEndpoint) -> bool | None:
        return None if endpoint.certificate is None else endpoint.certificate.self_signed

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_name_matches(self, endpoint: TlsEndpoint) -> bool | None:
        return selectors.endpoint_name_matches(endpoint)


class TlsEndpointParamsSerializer(Serializer):
    status = serializers.ChoiceField(
        choices=TlsEndpoint.Status.choices, required=False, help_text="Only endpoints in it."
    )


_STATUS_CHOICES = [value for value, _ in CertificateStatus.choices]


class CertificateSerializer(ModelSerializer):
    status = serializers.SerializerMethodField(
        help_text="valid, expiring (within 30 days), expired, revoked, superseded (renewed: "
        "see superseded_by) or unknown (its validity could not be read)."
    )
    revoked_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When its CA revoked it; null if not."
    )
    revocation_reason = serializers.CharField(
        read_only=True, help_text="The RFC 5280 reason name, e.g. keyCompromise; empty if not."
    )
    superseded_by = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The id of the certificate that renewed it."
    )
    supersedes = serializers.SerializerMethodField(
        help_text="The ids of the certificates it renewed."
    )

    class Meta:
        model = Certificate
        exclude = ["der", "sans_text"]

    @extend_schema_field(serializers.ChoiceField(choices=CertificateStatus.choices))
    def get_status(self, certificate: Certificate) -> str:
        return str(selectors.certificate_status(certificate))

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_supersedes(self, certificate: Certificate) -> list[int]:
        # Prefetched by the views (certificate_state_prefetch): no query per row.
        return sorted(c.pk for c in certificate.supersedes.all())


class CertificateDetailsSerializer(Serializer):
    """The certificate's SANs by type and its main extensions, in words."""

    sans = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Names by type: "DNS names", "IP addresses", "Directory names", ...',
    )
    key_usage = serializers.ListField(child=serializers.CharField())
    extended_key_usage = serializers.ListField(child=serializers.CharField())
    basic_constraints = serializers.CharField(allow_null=True)
    policies = serializers.ListField(child=serializers.CharField())
    authority_information_access = serializers.ListField(child=serializers.CharField())
    crl_distribution_points = serializers.ListField(child=serializers.CharField())
    other_extensions = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField())


class MetadataValueSerializer(Serializer):
    """One certificate's value for one field, and who set it when."""

    value = serializers.CharField(
        help_text="Canonical text: integers in decimal, dates YYYY-MM-DD, booleans true/false."
    )
    source = serializers.CharField(
        help_text="The generator registration that set it, user:<username>, or handler."
    )
    updated_at = serializers.DateTimeField()


class CertificateDetailSerializer(CertificateSerializer):
    locations = LocationSerializer(many=True, read_only=True)
    pem = serializers.SerializerMethodField()
    details = serializers.SerializerMethodField()
    metadata = serializers.SerializerMethodField()

    def get_pem(self, certificate: Certificate) -> str:
        return der_to_pem(bytes(certificate.der))

    @extend_schema_field(CertificateDetailsSerializer(allow_null=True))
    def get_details(self, certificate: Certificate) -> dict[str, Any] | None:
        details = selectors.certificate_details(certificate=certificate)
        return None if details is None else CertificateDetailsSerializer(details).data

    @extend_schema_field(serializers.DictField(child=MetadataValueSerializer()))
    def get_metadata(self, certificate: Certificate) -> dict[str, Any]:
        """The certificate's metadata values, by field name (fields without one left out)."""
        values = metadata_selectors.certificate_metadata_map(certificate=certificate)
        return {name: MetadataValueSerializer(value).data for name, value in values.items()}


class CertificateListParamsSerializer(Serializer):
    """The certificate list's query parameters."""

    search = serializers.CharField(required=False, allow_blank=True, max_length=200)
    expires_within_days = serializers.IntegerField(required=False, min_value=0, max_value=36_500)
    expired = serializers.BooleanField(required=False, default=None)
    store = serializers.UUIDField(required=False)
    key_algorithm = serializers.CharField(required=False, allow_blank=True, max_length=20)
    conformant = serializers.BooleanField(required=False, default=None)
    metadata_field = serializers.CharField(required=False, max_length=60)
    metadata_value = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=10_000
    )
    metadata_empty = serializers.BooleanField(required=False, default=False)
    status = serializers.ChoiceField(
        required=False, choices=[*_STATUS_CHOICES, selectors.STATUS_IN_USE]
    )
    is_ca = serializers.BooleanField(required=False, default=None)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        name = data.get("metadata_field")
        if name is None:
            if "metadata_value" in data or data.get("metadata_empty"):
                raise serializers.ValidationError(
                    {"metadata_field": ["name the metadata field to filter on"]}
                )
            return data
        try:
            data["metadata"] = metadata_selectors.metadata_filter_resolve(
                field_name=name,
                value=data.get("metadata_value"),
                empty=data.get("metadata_empty", False),
            )
        except ServiceError as exc:
            raise serializers.ValidationError(exc.fields or exc.message) from exc
        return data

    def to_filters(self) -> CertificateFilters:
        data = self.validated_data
        metadata: MetadataFilter | None = data.get("metadata")
        return CertificateFilters(
            search=data.get("search", ""),
            expires_within_days=data.get("expires_within_days"),
            expired=data.get("expired"),
            store_id=str(data["store"]) if data.get("store") else None,
            key_algorithm=data.get("key_algorithm", ""),
            conformant=data.get("conformant"),
            metadata_field_id=metadata.field.pk if metadata else None,
            metadata_value=metadata.value if metadata else None,
            metadata_empty=metadata.empty if metadata else False,
            status=data.get("status", ""),
            is_ca=data.get("is_ca"),
        )


# --- Metadata -----------------------------------------------------------------------


def _inline_choices(
    choices: list[tuple[str, str]], description: str, **options: Any
) -> serializers.ChoiceField:
    """A choice field whose enum stays inline in the schema (inside ``allOf``, which
    drf-spectacular's enum naming leaves alone): as a named component, our ``type`` and
    ``state`` would clash with the jobs' enums of the same names and rename them."""

    @extend_schema_field({"type": "string", "allOf": [{"enum": [value for value, _ in choices]}]})
    class InlineChoiceField(serializers.ChoiceField):
        pass

    return InlineChoiceField(choices=choices, help_text=description, **options)


class MetadataFieldSerializer(ModelSerializer):
    """A metadata field's definition; written through the metadata services."""

    choices = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=1000,
        help_text="The allowed values of a choice field.",
    )
    type = _inline_choices(
        MetadataField.Type.choices,
        "What kind of value the field holds (default: string).",
        required=False,
        default=MetadataField.Type.STRING,
    )

    class Meta:
        model = MetadataField
        fields = [
            "id",
            *metadata.METADATA_FIELD_ATTRIBUTES,
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"order": {"max_value": 1_000_000}}


class MetadataBackfillSerializer(ModelSerializer):
    """A backfill's progress: ``processed`` of ``total`` certificates, and what it found."""

    state = _inline_choices(
        MetadataBackfill.State.choices, "Where the backfill is.", read_only=True
    )
    started_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    percent = serializers.IntegerField(read_only=True)
    rate = serializers.SerializerMethodField(help_text="Certificates per second so far.")

    class Meta:
        model = MetadataBackfill
        fields = [
            "id",
            "state",
            "registration_ids",
            "registration_names",
            "total",
            "processed",
            "percent",
            "rate",
            "cursor",
            "upper_id",
            "values_set",
            "error_count",
            "errors",
            "error",
            "started_by",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_rate(self, backfill: MetadataBackfill) -> float:
        progress = metadata_selectors.backfill_progress(
            backfill=backfill, stale_seconds=settings.CERTYARD_BACKFILL_STALE_SECONDS
        )
        return round(progress.rate, 1)


class MetadataBackfillStartSerializer(Serializer):
    registrations = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31),
        required=False,
        default=list,
        max_length=100,
        help_text="Generator registration ids; empty or left out: every enabled generator.",
    )
