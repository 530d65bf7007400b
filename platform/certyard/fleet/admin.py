"""Django admin for the fleet. Status changes go through the console or the API, whose
services also release an orchestrator's jobs; here they are read-only."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from certyard.display import VisibleTextAdmin
from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.fleet.services import orchestrator_metadata_check, orchestrator_metadata_set


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(admin.ModelAdmin):
    """Tokens are created in the console or the API, where their value is shown once."""

    list_display = ["description", "token_prefix", "reusable", "expires_at", "revoked", "use_count"]
    list_filter = ["revoked", "reusable", "approve_on_register"]
    search_fields = ["description", "token_prefix"]
    # What a token vouches for is fixed when it is made: rules trust it.
    readonly_fields = [
        "token_prefix",
        "labels",
        "machine_pattern",
        "blueprint",
        "use_count",
        "last_used_at",
        "created_by",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class OrchestratorAdminForm(forms.ModelForm):
    """Metadata held to the rules the console and the API apply."""

    class Meta:
        model = Orchestrator
        fields = ["metadata"]  # the admin adds the others it shows

    def clean_metadata(self) -> dict[str, Any]:
        try:
            return orchestrator_metadata_check(self.cleaned_data.get("metadata") or {})
        except ServiceError as exc:
            raise forms.ValidationError(exc.fields.get("metadata") or [exc.message]) from None


@admin.register(Orchestrator)
class OrchestratorAdmin(VisibleTextAdmin):
    form = OrchestratorAdminForm
    # What the agent reported about itself: shown escaped (U+202E, CR/LF, ...).
    untrusted_fields = ("name", "client_machine", "last_error")
    list_display = ["name", "client_machine", "status", "agent_version", "last_seen"]
    list_filter = ["status"]
    search_fields = ["name", "client_machine", "source_address"]
    readonly_fields = [
        "status",
        "status_changed_at",
        "status_changed_by",
        "registration_token",
        "public_key_sha256",
        "public_key_pem",
        "certificate_pem",
        "certificate_not_after",
        "last_assertion_at",
        "registered_at",
        "last_seen",
        "last_error",
        "source_address",
        # What the agent reported (POST limits): its word, not an admin's to change.
        "store_roots",
        "max_file_bytes",
        "limits_reported_at",
        "metadata_changed_at",
        "metadata_changed_by",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # orchestrators register themselves with a token

    def save_model(self, request: HttpRequest, obj: Orchestrator, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if "metadata" in form.changed_data:
            # Through the service: who changed it and when are recorded, as elsewhere.
            orchestrator_metadata_set(orchestrator=obj, metadata=obj.metadata, actor=request.user)
