"""Django admin for jobs: read-only, since the platform writes jobs and their attempts.
Cancel and retry are in the console and the API."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html_join

from certyard.jobs.models import Job, JobHistory

_HISTORY_FIELDS = [
    "attempt",
    "orchestrator",
    "started_at",
    "finished_at",
    "outcome",
    "message",
    "report_errors",
]


class JobHistoryInline(admin.TabularInline):
    model = JobHistory
    extra = 0
    can_delete = False
    fields = _HISTORY_FIELDS
    readonly_fields = _HISTORY_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
        "source",
        "source_detail",
        "created_at",
    ]
    list_filter = ["state", "type", "outcome", "source"]
    search_fields = ["id", "message", "store__store_path", "orchestrator__name", "source_detail"]
    list_select_related = ["store__store_type", "orchestrator"]
    raw_id_fields = ["store", "orchestrator", "requested_by", "source_registration", "retry_of"]
    readonly_fields = ["retries_list"]
    inlines = [JobHistoryInline]

    @admin.display(description="Retries")
    def retries_list(self, obj: Job) -> str:
        """The jobs that retry or follow this one (``retry_of``), oldest first, linked."""
        retries = obj.retries.order_by("created_at")
        if not retries:
            return "-"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:jobs_job_change", args=[job.pk]), f"{job.pk} ({job.state})")
                for job in retries
            ),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs come from schedules, the console and the API

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a job's state is the platform's; cancel or retry it in the console


@admin.register(JobHistory)
class JobHistoryAdmin(admin.ModelAdmin):
    """Attempts are written by the platform; the admin reads them."""

    list_display = ["job", "attempt", "orchestrator", "started_at", "finished_at", "outcome"]
    list_filter = ["outcome"]
    search_fields = ["message", "job__id", "orchestrator__name"]
    list_select_related = ["job", "orchestrator"]
    raw_id_fields = ["job", "orchestrator"]
    readonly_fields = ["report_errors"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
