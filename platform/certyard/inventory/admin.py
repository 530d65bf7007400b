from django.contrib import admin
from django.http import HttpRequest

from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateStore,
    CertificateStoreType,
)


@admin.register(CertificateStoreType)
class CertificateStoreTypeAdmin(admin.ModelAdmin):
    list_display = ["short_name", "name", "supports_inventory", "supports_add", "private_key"]
    search_fields = ["short_name", "name"]


@admin.register(CertificateStore)
class CertificateStoreAdmin(admin.ModelAdmin):
    list_display = [
        "store_type",
        "client_machine",
        "store_path",
        "orchestrator",
        "inventory_interval_minutes",
        "last_inventory_at",
    ]
    list_filter = ["store_type", "approved"]
    search_fields = ["client_machine", "store_path"]
    list_select_related = ["store_type", "orchestrator"]
    autocomplete_fields = ["orchestrator"]


class LocationInline(admin.TabularInline):
    model = CertificateLocation
    extra = 0
    readonly_fields = ["store", "alias", "has_private_key", "first_seen", "last_seen"]
    can_delete = False


@admin.register(Certificate)
class CertificateAdmin(admin.ModelAdmin):
    list_display = ["common_name", "issuer", "not_after", "key_algorithm", "key_size", "sha256"]
    list_filter = ["key_algorithm", "is_ca", "self_signed"]
    search_fields = ["common_name", "sans_text", "serial_number", "sha256", "sha1"]
    show_full_result_count = False  # counting a large inventory on every page is slow
    exclude = ["der"]
    readonly_fields = [
        "sha256",
        "sha1",
        "serial_number",
        "issuer",
        "subject",
        "common_name",
        "sans",
        "not_before",
        "not_after",
        "key_algorithm",
        "key_size",
        "signature_algorithm",
        "is_ca",
        "self_signed",
        "issuer_certificate",
        "first_seen",
        "sans_text",
    ]
    inlines = [LocationInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # certificates arrive by inventory, enrollment or upload


@admin.register(CertificateLocation)
class CertificateLocationAdmin(admin.ModelAdmin):
    list_display = ["alias", "store", "certificate", "has_private_key", "last_seen"]
    list_select_related = ["store__store_type", "certificate"]
    search_fields = ["alias"]
    raw_id_fields = ["store", "certificate"]
