from rest_framework import serializers

from certyard.fleet.models import Orchestrator
from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateStore,
    CertificateStoreType,
)
from certyard.inventory.parsing import der_to_pem
from certyard.inventory.selectors import CertificateFilters


class StoreTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = CertificateStoreType
        fields = "__all__"


class StoreSerializer(serializers.ModelSerializer):
    store_type = serializers.SlugRelatedField(slug_field="short_name", read_only=True)
    orchestrator_name = serializers.CharField(source="orchestrator.name", read_only=True)
    has_password = serializers.SerializerMethodField()
    location_count = serializers.IntegerField(read_only=True, default=None)

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
            "has_password",
            "approved",
            "inventory_interval_minutes",
            "inventory_next_run",
            "last_inventory_at",
            "location_count",
            "created_at",
        ]
        read_only_fields = fields

    def get_has_password(self, store: CertificateStore) -> bool:
        return bool(store.password)


class StoreCreateSerializer(serializers.Serializer):
    store_type = serializers.SlugRelatedField(
        slug_field="short_name", queryset=CertificateStoreType.objects.all()
    )
    client_machine = serializers.CharField(max_length=255)
    store_path = serializers.CharField(max_length=1024)
    orchestrator = serializers.PrimaryKeyRelatedField(queryset=Orchestrator.objects.all())
    properties = serializers.DictField(default=dict)
    password = serializers.CharField(
        default="", allow_blank=True, write_only=True, style={"input_type": "password"}
    )
    inventory_interval_minutes = serializers.IntegerField(
        min_value=1, max_value=525_600, required=False, allow_null=True
    )


class ScheduleSerializer(serializers.Serializer):
    interval_minutes = serializers.IntegerField(min_value=1, max_value=525_600, allow_null=True)


class LocationSerializer(serializers.ModelSerializer):
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


class CertificateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Certificate
        exclude = ["der", "sans_text"]


class CertificateDetailSerializer(CertificateSerializer):
    locations = LocationSerializer(many=True, read_only=True)
    pem = serializers.SerializerMethodField()

    def get_pem(self, certificate: Certificate) -> str:
        return der_to_pem(bytes(certificate.der))


class CertificateListParamsSerializer(serializers.Serializer):
    """The certificate list's query parameters."""

    search = serializers.CharField(required=False, allow_blank=True, max_length=200)
    expires_within_days = serializers.IntegerField(required=False, min_value=0, max_value=36_500)
    expired = serializers.BooleanField(required=False, allow_null=True, default=None)
    store = serializers.UUIDField(required=False)
    key_algorithm = serializers.CharField(required=False, allow_blank=True, max_length=20)

    def to_filters(self) -> CertificateFilters:
        data = self.validated_data
        return CertificateFilters(
            search=data.get("search", ""),
            expires_within_days=data.get("expires_within_days"),
            expired=data.get("expired"),
            store_id=str(data["store"]) if data.get("store") else None,
            key_algorithm=data.get("key_algorithm", ""),
        )
