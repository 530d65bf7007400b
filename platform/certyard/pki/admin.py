from django.contrib import admin

from certyard.pki.models import CertificateAuthority


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(admin.ModelAdmin):
    list_display = ["name", "purpose", "created_at"]
    readonly_fields = ["name", "purpose", "certificate_pem", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False  # the platform creates its CAs itself
