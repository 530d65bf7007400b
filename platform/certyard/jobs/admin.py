from django.contrib import admin
from django.http import HttpRequest

from certyard.jobs.models import Job, JobHistory


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
