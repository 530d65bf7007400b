"""Django admin for handlers: registering classes, and reading their runs and events.

Adding a registration takes two steps: choose one of the installed classes, then fill in
the form built for it (its docstring, its events, the filters of its kind, one field per
declared parameter). Saving goes through ``registration_save``, which checks the values
against the class and encrypts the secrets; no page ever shows a secret back.

Runs and events are the platform's log: read-only here, as in the console.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from certyard.workflows import selectors
from certyard.workflows.forms import (
    HandlerClassChoiceForm,
    UnavailableClassForm,
    registration_form_class,
)
from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
from certyard.workflows.services import registration_save

_UNAVAILABLE_READONLY = [
    "handler",
    "kind",
    "events",
    "job_types",
    "store_types",
    "orchestrators",
    "templates",
    "stored_parameters",
    "stored_secrets",
    "timeout_seconds",
    "max_attempts",
    "retry_backoff_seconds",
]
_RECORD_FIELDS = ["created_by", "created_at", "updated_at"]


def _pretty_json(value: Any) -> SafeString:
    """JSON indented in a <pre>, escaped (it holds whatever a handler returned)."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html("<pre>{}</pre>", text)


def _pre(text: str) -> SafeString | str:
    return format_html("<pre>{}</pre>", text) if text else "-"


def _runs_url(**filters: Any) -> str:
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    return f"{reverse('admin:workflows_handlerrun_changelist')}?{query}"


@admin.register(HandlerRegistration)
class HandlerRegistrationAdmin(admin.ModelAdmin):
    change_form_template = "admin/workflows/handlerregistration/change_form.html"
    choose_class_template = "admin/workflows/handlerregistration/choose_class.html"
    list_display = [
        "name",
        "kind",
        "handler",
        "enabled",
        "order",
        "class_status",
        "last_run",
        "runs_link",
    ]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "handler", "description"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[HandlerRegistration]:
        return selectors.registrations_with_last_run()

    # --- The changelist's columns ----------------------------------------------------

    @admin.display(description="Class status")
    def class_status(self, obj: HandlerRegistration) -> str:
        return selectors.class_status(obj.handler).status

    @admin.display(description="Last run", ordering="last_run_at")
    def last_run(self, obj: HandlerRegistration) -> str:
        state = getattr(obj, "last_run_state", None)
        at = getattr(obj, "last_run_at", None)
        if not state or at is None:
            return "never"
        return f"{state}, {at:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="Runs")
    def runs_link(self, obj: HandlerRegistration) -> SafeString:
        return format_html('<a href="{}">Runs</a>', _runs_url(registration__id__exact=obj.pk))

    # --- Read-only displays for a registration whose class is gone ---------------------

    @admin.display(description="Parameters (stored)")
    def stored_parameters(self, obj: HandlerRegistration) -> SafeString:
        return _pretty_json(obj.parameters or {})

    @admin.display(description="Secrets")
    def stored_secrets(self, obj: HandlerRegistration) -> str:
        return "stored, never shown" if obj.secrets else "none"

    # --- Which class, which form -------------------------------------------------------

    def _class_status(
        self, request: HttpRequest, obj: HandlerRegistration | None
    ) -> selectors.ClassStatus:
        name = obj.handler if obj is not None else request.GET.get("handler", "")
        return selectors.class_status(name)

    def get_fieldsets(
        self, request: HttpRequest, obj: HandlerRegistration | None = None
    ) -> list[tuple[str | None, dict[str, Any]]]:
        status = self._class_status(request, obj)
        record = [("Record", {"fields": _RECORD_FIELDS})] if obj is not None else []
        if not status.usable or status.info is None:
            return [
                (None, {"fields": list(UnavailableClassForm.Meta.fields)}),
                ("Stored configuration (read-only)", {"fields": _UNAVAILABLE_READONLY}),
                *record,
            ]
        form_class = registration_form_class(status.info, adding=obj is None)
        return [*form_class.fieldsets(), *record]

    def get_readonly_fields(
        self, request: HttpRequest, obj: HandlerRegistration | None = None
    ) -> list[str]:
        if obj is None:
            return []
        if not self._class_status(request, obj).usable:
            return [*_UNAVAILABLE_READONLY, *_RECORD_FIELDS]
        return list(_RECORD_FIELDS)

    def get_form(
        self,
        request: HttpRequest,
        obj: HandlerRegistration | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        status = self._class_status(request, obj)
        if status.usable and status.info is not None:
            kwargs["form"] = registration_form_class(status.info, adding=obj is None)
        else:
            kwargs["form"] = UnavailableClassForm
        return super().get_form(request, obj, change, **kwargs)

    # --- Adding: choose the class first ------------------------------------------------

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if "handler" in request.GET:
            usable, unavailable = selectors.handler_classes_by_availability()
            choice = HandlerClassChoiceForm(
                {"handler": request.GET["handler"]}, usable=usable, unavailable=unavailable
            )
            if choice.is_valid():
                return super().add_view(request, form_url, extra_context)
            return self._choose_class(request, choice)
        return self._choose_class(request, None)

    def _choose_class(
        self, request: HttpRequest, form: HandlerClassChoiceForm | None
    ) -> TemplateResponse:
        usable, unavailable = selectors.handler_classes_by_availability()
        if form is None:
            form = HandlerClassChoiceForm(usable=usable, unavailable=unavailable)
        context = {
            **self.admin_site.each_context(request),
            "title": "Add handler registration: choose a class",
            "subtitle": None,
            "opts": self.opts,
            "form": form,
            "usable": usable,
            "unavailable": unavailable,
            "has_view_permission": self.has_view_permission(request),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.choose_class_template, context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: HandlerRegistration | None = None,
    ) -> HttpResponse:
        status = self._class_status(request, obj)
        context["handler_status"] = status
        context["handler_info"] = status.info if status.usable else None
        if obj is not None:
            context["runs_url"] = _runs_url(registration__id__exact=obj.pk)
        context["choose_class_url"] = reverse("admin:workflows_handlerregistration_add")
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- Saving through the service -----------------------------------------------------

    def save_model(
        self, request: HttpRequest, obj: HandlerRegistration, form: Any, change: bool
    ) -> None:
        if isinstance(form, UnavailableClassForm):
            # No class to check parameters against, and none change here: the service
            # refuses a class it cannot load, so only these plain fields are written.
            obj.save(update_fields=[*UnavailableClassForm.Meta.fields, "updated_at"])
            return
        if not change:
            obj.created_by = request.user
        # The form's validation made this same call in a rolled-back transaction.
        registration_save(registration=obj, values=form.parameter_values())
        # Saved, but something the class declares disagrees with what exists (a metadata
        # field with another label or type): the administrator decides, so say it.
        for warning in getattr(obj, "warnings", None) or ():
            messages.warning(request, warning)


@admin.register(HandlerRun)
class HandlerRunAdmin(admin.ModelAdmin):
    """The run log: written by the platform, read here."""

    list_display = [
        "id",
        "registration_name",
        "kind",
        "state",
        "subject",
        "attempt",
        "queued_at",
        "duration_ms",
        "short_message",
    ]
    list_filter = ["state", "kind", "registration"]
    search_fields = ["subject_label", "registration_name"]
    show_full_result_count = False
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "registration_link",
                    "handler",
                    "kind",
                    "state",
                    "attempt",
                    "event_link",
                    "subject",
                ]
            },
        ),
        (
            "Timing",
            {
                "fields": [
                    "queued_at",
                    "not_before",
                    "enqueued_at",
                    "started_at",
                    "finished_at",
                    "duration_ms",
                ]
            },
        ),
        (
            "What it was given and what it did",
            {"fields": ["inputs_json", "output_json", "message", "error_text", "traceback_text"]},
        ),
    ]
    readonly_fields = [
        "registration_link",
        "event_link",
        "subject",
        "inputs_json",
        "output_json",
        "error_text",
        "traceback_text",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # pruned by the platform after CERTYARD_RUN_RETENTION_DAYS

    @admin.display(description="Subject")
    def subject(self, obj: HandlerRun) -> str:
        return f"{obj.subject_type} {obj.subject_label or obj.subject_id}"

    @admin.display(description="Message")
    def short_message(self, obj: HandlerRun) -> str:
        text = obj.error or obj.message
        return text if len(text) <= 100 else text[:99] + "…"

    @admin.display(description="Registration")
    def registration_link(self, obj: HandlerRun) -> SafeString | str:
        if obj.registration_id is None:
            return f"{obj.registration_name} (deleted)"
        url = reverse("admin:workflows_handlerregistration_change", args=[obj.registration_id])
        return format_html('<a href="{}">{}</a>', url, obj.registration_name)

    @admin.display(description="Event")
    def event_link(self, obj: HandlerRun) -> SafeString | str:
        if obj.event_id is None:
            return "-"
        url = reverse("admin:workflows_event_change", args=[obj.event_id])
        return format_html('<a href="{}">{} #{}</a>', url, obj.event.kind, obj.event_id)

    @admin.display(description="Inputs")
    def inputs_json(self, obj: HandlerRun) -> SafeString:
        return _pretty_json(obj.inputs)

    @admin.display(description="Output")
    def output_json(self, obj: HandlerRun) -> SafeString:
        return _pretty_json(obj.output)

    @admin.display(description="Error")
    def error_text(self, obj: HandlerRun) -> SafeString | str:
        return _pre(obj.error)

    @admin.display(description="Traceback")
    def traceback_text(self, obj: HandlerRun) -> SafeString | str:
        return _pre(obj.traceback)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """What happened, as emitted: read-only."""

    list_display = ["kind", "subject_type", "subject_label", "subject_id", "occurred_at", "runs"]
    list_filter = ["kind", "subject_type"]
    search_fields = ["subject_label", "subject_id"]
    show_full_result_count = False
    fields = [
        "kind",
        "subject_type",
        "subject_id",
        "subject_label",
        "occurred_at",
        "data_json",
        "runs",
    ]
    readonly_fields = ["data_json", "runs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # pruned with its runs by the platform

    @admin.display(description="Data")
    def data_json(self, obj: Event) -> SafeString:
        return _pretty_json(obj.data)

    @admin.display(description="Runs")
    def runs(self, obj: Event) -> SafeString:
        return format_html('<a href="{}">Runs</a>', _runs_url(event__id__exact=obj.pk))
