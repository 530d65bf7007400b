from django.contrib import admin
from django.http import HttpRequest

from certyard.pki.models import CertificateAuthority


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(admin.ModelAdmin):
    """The platform's own CAs; their private keys are never shown (not even encrypted)."""

    list_display = ["name", "purpose", "created_at"]
    search_fields = ["name"]
    fields = ["name", "purpose", "certificate_pem", "created_at"]
    readonly_fields = ["name", "purpose", "certificate_pem", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the platform creates its CAs itself
