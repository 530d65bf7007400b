from django.contrib import admin
from django.http import HttpRequest

from certyard.pki.models import CertificateAuthority, IssuedCertificate


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(admin.ModelAdmin):
    """The built-in CAs; their private keys are never shown (not even encrypted).

    CAs are created and imported in the console (*PKI → Certificate authorities*), where
    the key is generated or checked against its certificate; here only ``enabled`` changes.
    """

    list_display = ["name", "origin", "key_algorithm", "not_after", "enabled", "purpose"]
    list_filter = ["origin", "enabled"]
    search_fields = ["name", "subject"]
    fields = [
        "name",
        "purpose",
        "origin",
        "parent",
        "key_algorithm",
        "subject",
        "not_after",
        "enabled",
        "crl_number",
        "crl_this_update",
        "crl_next_update",
        "certificate_pem",
        "created_at",
    ]
    readonly_fields = [f for f in fields if f != "enabled"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created or imported through the services, which check keys


@admin.register(IssuedCertificate)
class IssuedCertificateAdmin(admin.ModelAdmin):
    """What the built-in CAs signed; revoke from the console, which regenerates the CRL."""

    list_display = ["common_name", "serial_number", "ca", "not_after", "revoked_at"]
    list_filter = ["ca", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["common_name", "serial_number", "sha256"]
    list_select_related = ["ca"]

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [field.name for field in IssuedCertificate._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
