from django.contrib import admin
from django.http import HttpRequest

from certyard.pki.models import CertificateAuthority


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(admin.ModelAdmin):
    list_display = ["name", "purpose", "created_at"]
    readonly_fields = ["name", "purpose", "certificate_pem", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the platform creates its CAs itself
