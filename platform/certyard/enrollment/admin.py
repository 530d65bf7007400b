"""Django admin for enrollment: templates (checked by the service), and read-only records.

CA gateways themselves are handler registrations (kind *CA gateway*) in *Handler
registrations*; this module adds a *Test connection* action there.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from certyard.display import VisibleText
from certyard.enrollment import policy
from certyard.enrollment.gateways import GatewayFailed, gateway_ping
from certyard.enrollment.models import EnrollmentRequest, GatewayRecord, GatewaySync, Template
from certyard.workflows.models import HandlerRegistration
from handlers.base import HandlerKind


class _ListField(forms.CharField):
    """A list of names, one per line (or comma-separated)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        if isinstance(value, str) and value.startswith("["):
            try:
                return "\n".join(json.loads(value))
            except (ValueError, TypeError):
                return value
        return value

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value) or ""
        return [
            part.strip() for line in text.splitlines() for part in line.split(",") if part.strip()
        ]


_LIST_FIELDS = (
    "key_usage",
    "extended_key_usage",
    "allowed_key_types",
    "allowed_domains",
    "required_metadata",
)


class _SubjectAttributesField(forms.CharField):
    """Subject attribute rules, one per line: ``O: required``, ``OU: allowed``,
    ``C: fixed DE``; stored as ``{"O": {"rule": "required"}, …}`` and checked by
    ``template_errors`` (what each rule means is policy's)."""

    widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("{"):
            try:
                value = json.loads(value)
            except ValueError:
                return value
        if isinstance(value, dict):
            lines = []
            for short, rule in value.items():
                rule = rule if isinstance(rule, dict) else {}
                fixed = f" {rule.get('value', '')}" if rule.get("rule") == "fixed" else ""
                lines.append(f"{short}: {rule.get('rule', '')}{fixed}")
            return "\n".join(lines)
        return value

    def to_python(self, value: Any) -> dict[str, dict[str, str]]:
        text = super().to_python(value) or ""
        rules: dict[str, dict[str, str]] = {}
        problems: list[str] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            short, colon, rest = line.partition(":")
            short, rest = short.strip(), rest.strip()
            kind, _, fixed = rest.partition(" ")
            if not colon or not short or not kind:
                problems.append(
                    f"Line {number}: write ATTRIBUTE: allowed, required, or fixed VALUE."
                )
            elif short in rules:
                problems.append(f"Line {number}: {short} is already given a rule.")
            else:
                rules[short] = {"rule": kind, **({"value": fixed.strip()} if fixed else {})}
        if problems:
            raise forms.ValidationError(" ".join(problems))
        return rules


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = [
            "name",
            "description",
            "enabled",
            "ca",
            "gateway",
            "product_id",
            "product_parameters",
            "validity_days",
            "key_usage",
            "extended_key_usage",
            "allowed_key_types",
            "allowed_domains",
            "allow_wildcards",
            "allow_ip_addresses",
            "san_pattern",
            "max_sans",
            "allow_non_dns_common_name",
            "subject_attributes",
            "required_metadata",
            "require_approval",
            "archive_keys",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        helps = {
            "key_usage": "One per line: "
            + ", ".join(
                ("digital_signature", "key_encipherment", "key_agreement", "content_commitment")
            ),
            "extended_key_usage": "One per line: server_auth, client_auth, code_signing, "
            "email_protection, time_stamping, ocsp_signing.",
            "allowed_key_types": "One per line: RSA-2048, RSA-3072, RSA-4096, EC-P256, "
            "EC-P384, Ed25519.",
        }
        for name in _LIST_FIELDS:
            model_field = self.fields[name]
            self.fields[name] = _ListField(
                required=name == "allowed_key_types",
                label=model_field.label,
                help_text=helps.get(name, model_field.help_text),
                initial=model_field.initial,
            )
        self.fields["subject_attributes"] = _SubjectAttributesField(
            required=False,
            label="Subject attributes",
            help_text="Besides CN, which attributes a request may carry, one per line: "
            "O: required, OU: allowed, C: fixed DE (written into every certificate; a "
            "request asking for another value is refused). Attributes: "
            + ", ".join(policy.SUBJECT_FIELDS)
            + ". Any attribute not listed is refused.",
        )

    # The template's rules are checked by Template.clean() (``template_errors``), which
    # ModelForm validation calls: one checker for admin, the console and the API.


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = [
        "name",
        "issuer",
        "validity_days",
        "require_approval",
        "archive_keys",
        "enabled",
    ]
    list_filter = ["enabled", "require_approval"]
    search_fields = ["name", "description"]
    fieldsets = [
        (None, {"fields": ["name", "description", "enabled"]}),
        ("Issuer", {"fields": ["ca", "gateway", "product_id", "product_parameters"]}),
        ("Certificate", {"fields": ["validity_days", "key_usage", "extended_key_usage"]}),
        (
            "What a request may ask for",
            {
                "fields": [
                    "allowed_key_types",
                    "allowed_domains",
                    "allow_wildcards",
                    "allow_ip_addresses",
                    "san_pattern",
                    "max_sans",
                    "allow_non_dns_common_name",
                    "subject_attributes",
                    "required_metadata",
                ]
            },
        ),
        ("Workflow", {"fields": ["require_approval", "archive_keys"]}),
        # Who may act on this template's requests and certificates besides their requester
        # (certyard.accounts.authorization).
        ("Who may act", {"fields": ["groups"]}),
    ]
    filter_horizontal = ["groups"]

    @admin.display(description="Issuer")
    def issuer(self, obj: Template) -> str:
        return str(obj.ca or obj.gateway)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Django admin runs this view in a transaction; the form asks the CA about the
        # product (up to the gateway's timeout), and no network call may hold a
        # transaction open (on SQLite it holds the write lock). Saving a template is one
        # row, which needs no transaction around the whole view.
        return self._changeform_view(request, object_id, form_url, extra_context)


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(EnrollmentRequest)
class EnrollmentRequestAdmin(VisibleText, _ReadOnly):
    """Requests are made and decided in the console or the API, never edited here."""

    # Read from the requester's CSR: shown escaped (U+202E, CR/LF, ...).
    untrusted_fields = ("subject", "sans", "metadata")

    list_display = ["created_at", "template_name", "subject", "type", "state", "requested_by"]
    list_filter = ["state", "type", "method"]
    search_fields = ["subject", "template_name", "serial_number"]
    exclude = ["private_key_pem"]


@admin.register(GatewayRecord)
class GatewayRecordAdmin(_ReadOnly):
    list_display = ["ca_request_id", "gateway", "status", "serial_number", "revoked_at"]
    list_filter = ["gateway", "status"]
    search_fields = ["ca_request_id", "serial_number"]


@admin.register(GatewaySync)
class GatewaySyncAdmin(_ReadOnly):
    list_display = ["gateway", "started_at", "state", "full", "processed", "added"]
    list_filter = ["gateway", "state"]


@admin.action(description="Test the connection of the selected CA gateways")
def test_connection(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[HandlerRegistration]
) -> None:
    for registration in queryset:
        if registration.kind != HandlerKind.GATEWAY:
            modeladmin.message_user(
                request, f"{registration.name}: not a CA gateway", messages.WARNING
            )
            continue
        try:
            gateway_ping(registration)
        except GatewayFailed as exc:
            modeladmin.message_user(request, exc.message, messages.ERROR)
        else:
            modeladmin.message_user(
                request, f"{registration.name}: the CA answered", messages.SUCCESS
            )


# Handler registrations are the workflows app's, below us: add the gateway action to them.
_registration_admin = admin.site._registry.get(HandlerRegistration)
if _registration_admin is not None:
    _registration_admin.actions = [*(_registration_admin.actions or []), test_connection]
