from django.contrib import admin
from django.http import HttpRequest

from certyard.fleet.models import Job, JobHistory, Orchestrator, RegistrationToken


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(admin.ModelAdmin):
    """Tokens are created in the console or the API, where their value is shown once."""

    list_display = ["description", "token_prefix", "reusable", "expires_at", "revoked", "use_count"]
    readonly_fields = ["token_prefix", "use_count", "last_used_at", "created_by", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Orchestrator)
class OrchestratorAdmin(admin.ModelAdmin):
    list_display = ["name", "client_machine", "status", "agent_version", "last_seen"]
    list_filter = ["status"]
    search_fields = ["name", "client_machine"]
    readonly_fields = [
        "public_key_sha256",
        "public_key_pem",
        "certificate_pem",
        "certificate_not_after",
        "last_assertion_at",
        "registered_at",
        "last_seen",
        "source_address",
    ]


class JobHistoryInline(admin.TabularInline):
    model = JobHistory
    extra = 0
    can_delete = False
    readonly_fields = ["attempt", "orchestrator", "started_at", "finished_at", "outcome", "message"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "type",
        "state",
        "outcome",
        "store",
        "orchestrator",
        "attempts",
        "created_at",
    ]
    list_filter = ["state", "type", "outcome"]
    list_select_related = ["store__store_type", "orchestrator"]
    raw_id_fields = ["store", "orchestrator", "requested_by"]
    inlines = [JobHistoryInline]


@admin.register(JobHistory)
class JobHistoryAdmin(admin.ModelAdmin):
    """Attempts are written by the platform; the admin reads them."""

    list_display = ["job", "attempt", "orchestrator", "started_at", "finished_at", "outcome"]
    list_filter = ["outcome"]
    list_select_related = ["job", "orchestrator"]
    raw_id_fields = ["job", "orchestrator"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
