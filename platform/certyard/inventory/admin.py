"""Django admin for the inventory: stores go through the same services as the console and API."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from certyard.display import VisibleText, VisibleTextAdmin
from certyard.errors import ServiceError
from certyard.inventory import declarations, metadata, services
from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateMetadata,
    CertificateStore,
    CertificateStoreType,
    MetadataBackfill,
    MetadataField,
)


@admin.register(CertificateStoreType)
class CertificateStoreTypeAdmin(admin.ModelAdmin):
    list_display = [
        "short_name",
        "name",
        "supports_inventory",
        "supports_add",
        "supports_remove",
        "private_key",
        "password_supported",
        "schema_version",
        "builtin",
        "declaration_status",
    ]
    list_filter = ["supports_inventory", "supports_add", "password_supported", "builtin"]
    search_fields = ["short_name", "name"]
    # What a declaration sets beyond the columns is shown, not edited. The columns can be
    # edited, but a declaration with a greater schema_version replaces the edit, and one of
    # the same version leaves it and records a warning (inventory.declarations).
    readonly_fields = [
        "builtin",
        "schema_version",
        "declared_by",
        "declared_at",
        "declaration_warning_display",
        "declaration_warning_at",
        "declaration_display",
        "description",
    ]
    exclude = ["declaration", "declaration_warning"]

    @admin.display(description="Declaration")
    def declaration_display(self, obj: CertificateStoreType) -> str:
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.declaration or {}, indent=2, sort_keys=True)
        )

    @admin.display(description="Declaration warning")
    def declaration_warning_display(self, obj: CertificateStoreType) -> str:
        return obj.declaration_warning or "none: the type agrees with its declaration"

    @admin.display(description="Declaration", ordering="declaration_warning")
    def declaration_status(self, obj: CertificateStoreType) -> str:
        if obj.declaration_warning:
            return format_html(
                '<span class="declaration-warning" title="{}">⚠ disagrees</span>',
                obj.declaration_warning,
            )
        return "declared" if obj.declaration else "by hand"

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "GET":
            store_type = self.get_object(request, object_id)
            if store_type is not None and store_type.declaration_warning:
                messages.warning(
                    request, f"{store_type.short_name}: {store_type.declaration_warning}"
                )
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(
        self, request: HttpRequest, obj: CertificateStoreType, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            return
        # An edit of what the declaration set: agents of the same schema version no longer
        # agree with the record, and a later schema version will replace it. Say so.
        changed = declarations.store_type_hand_changes(obj)
        if changed:
            warning = declarations.store_type_hand_changes_warning(
                changed, schema_version=obj.schema_version
            )
            declarations.store_type_warning_set(obj, warning)
            messages.warning(request, f"{obj.short_name}: {warning}")
        elif obj.declaration_warning.startswith(declarations.CHANGED_BY_HAND):
            declarations.store_type_warning_set(obj, "")  # the edit was undone


class _DryRun(Exception):
    """Raised inside a transaction to undo a service call made only to check its rules."""


class CertificateStoreAdminForm(forms.ModelForm):
    """The admin's store form: the services' rules, and a password that is never shown.

    ``clean`` runs ``store_create`` / ``store_update`` in a transaction it then rolls
    back, so any refusal (wrong machine, unknown property, duplicate, ...) is a form
    error; ``CertificateStoreAdmin.save_form`` then makes the same call for real.
    """

    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown. Leave empty to keep the current one.",
    )
    clear_password = forms.BooleanField(
        required=False, help_text="Remove the stored password (ignored when adding a store)."
    )

    class Meta:
        model = CertificateStore
        fields = [
            "store_type",
            "orchestrator",
            "client_machine",
            "store_path",
            "properties",
            "password",
            "inventory_interval_minutes",
            "groups",
        ]
        help_texts = {
            "client_machine": "Leave empty for the orchestrator's own machine.",
            "properties": "A JSON object of the store type's declared properties.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "client_machine" in self.fields:
            self.fields["client_machine"].required = False
        if "properties" in self.fields:
            self.fields["properties"].required = False

    @property
    def _adding(self) -> bool:
        return self.instance._state.adding

    def clean_properties(self) -> dict[str, Any]:
        value = self.cleaned_data.get("properties")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Properties must be a JSON object, like {"key": "value"}.')
        return value

    def service_call(self) -> CertificateStore:
        """Create or change the store through its service; raises ServiceError."""
        data = self.cleaned_data
        if self._adding:
            return services.store_create(
                store_type=data["store_type"],
                orchestrator=data["orchestrator"],
                client_machine=data.get("client_machine") or "",
                store_path=data["store_path"],
                properties=data.get("properties") or {},
                password=data.get("password") or "",
                inventory_interval_minutes=data.get("inventory_interval_minutes"),
            )
        changes: dict[str, Any] = {
            "store_path": data["store_path"],
            "properties": data.get("properties") or {},
        }
        if data.get("clear_password"):
            changes["password"] = ""
        elif data.get("password"):
            changes["password"] = data["password"]
        if "inventory_interval_minutes" in self.changed_data:
            changes["inventory_interval_minutes"] = data.get("inventory_interval_minutes")
        # A fresh copy: the service changes the instance it is given.
        store = CertificateStore.objects.select_related("store_type").get(pk=self.instance.pk)
        return services.store_update(store=store, **changes)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            with transaction.atomic():
                self.service_call()
                raise _DryRun
        except _DryRun:
            pass
        except ServiceError as exc:
            field = next((name for name in exc.fields if name in self.fields), None)
            self.add_error(field, exc.message)
        return cleaned


@admin.register(CertificateStore)
class CertificateStoreAdmin(VisibleTextAdmin):
    # The list shows them escaped; the change page's own get_* keep them as form fields.
    untrusted_fields = ("client_machine", "store_path")
    form = CertificateStoreAdminForm
    list_display = [
        "store_type",
        "client_machine",
        "store_path",
        "orchestrator",
        "inventory_status",
        "inventory_checked_at",
        "inventory_interval_minutes",
        "last_inventory_at",
    ]
    list_filter = ["inventory_status", "store_type", "approved"]
    search_fields = ["client_machine", "store_path", "orchestrator__name", "inventory_message"]
    list_select_related = ["store_type", "orchestrator"]
    autocomplete_fields = ["orchestrator"]
    filter_horizontal = ["groups"]
    _status_fields = [
        "approved",
        "inventory_status",
        "inventory_message",
        "inventory_checked_at",
        "last_inventory_at",
        "inventory_next_run",
        "created_at",
    ]

    def get_fields(self, request: HttpRequest, obj: CertificateStore | None = None) -> list[str]:
        editable = list(CertificateStoreAdminForm.Meta.fields)
        if obj is None:
            return editable
        return [*editable[:6], "clear_password", *editable[6:], *self._status_fields]

    def get_readonly_fields(
        self, request: HttpRequest, obj: CertificateStore | None = None
    ) -> list[str]:
        if obj is None:
            return []
        # Type, orchestrator and machine are fixed: a different one is a new store.
        return ["store_type", "orchestrator", "client_machine", *self._status_fields]

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> CertificateStore:
        # The form's clean checked this call's rules; make it for real.
        form.saved_store = form.service_call()
        if not change:
            form.saved_store.created_by = request.user
            form.saved_store.save(update_fields=["created_by"])
        return form.saved_store

    def save_model(
        self, request: HttpRequest, obj: CertificateStore, form: Any, change: bool
    ) -> None:
        pass  # saved by the service in save_form

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # No inlines; the groups (who may act on the store) are its one many-to-many.
        form.saved_store.groups.set(form.cleaned_data.get("groups") or [])

    def delete_model(self, request: HttpRequest, obj: CertificateStore) -> None:
        services.store_delete(store=obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for store in queryset:
            services.store_delete(store=store)


class LocationInline(VisibleText, admin.TabularInline):
    model = CertificateLocation
    extra = 0
    untrusted_fields = ("alias",)
    readonly_fields = ["store", "alias", "has_private_key", "first_seen", "last_seen"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # locations arrive by inventory


@admin.register(Certificate)
class CertificateAdmin(VisibleTextAdmin):
    # Read from certificates found anywhere: shown escaped (U+202E, CR/LF, ...).
    untrusted_fields = ("issuer", "subject", "common_name", "sans", "sans_text")
    list_display = [
        "common_name",
        "issuer",
        "not_after",
        "key_algorithm",
        "key_size",
        "conformant",
        "sha256",
    ]
    list_filter = ["conformant", "key_algorithm", "is_ca", "self_signed"]
    search_fields = ["common_name", "sans_text", "serial_number", "sha256", "sha1"]
    show_full_result_count = False  # counting a large inventory on every page is slow
    exclude = ["der"]
    readonly_fields = [
        "sha256",
        "sha1",
        "serial_number",
        "version",
        "issuer",
        "subject",
        "common_name",
        "sans",
        "not_before",
        "not_after",
        "key_algorithm",
        "key_size",
        "signature_algorithm",
        "is_ca",
        "self_signed",
        "issuer_certificate",
        "conformant",
        "parse_warnings",
        "first_seen",
        "sans_text",
    ]
    inlines = [LocationInline]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("der")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # certificates arrive by inventory, enrollment or upload


@admin.register(CertificateLocation)
class CertificateLocationAdmin(VisibleTextAdmin):
    untrusted_fields = ("alias",)
    list_display = ["alias", "store", "certificate", "has_private_key", "last_seen"]
    list_select_related = ["store__store_type", "certificate"]
    search_fields = ["alias", "store__store_path", "certificate__common_name"]
    raw_id_fields = ["store", "certificate"]
    readonly_fields = ["first_seen", "last_seen"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # locations arrive by inventory


# --- Metadata ---------------------------------------------------------------------------


class MetadataFieldAdminForm(forms.ModelForm):
    """The model's own checks (name, pattern, choices), and the service's rule that a
    field's type is fixed once certificates have values for it."""

    class Meta:
        model = MetadataField
        fields = list(metadata.METADATA_FIELD_ATTRIBUTES)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        field = self.instance
        if (
            field.pk
            and "type" in self.changed_data
            and CertificateMetadata.objects.filter(field_id=field.pk).exists()
        ):
            self.add_error(
                "type", "certificates have values for this field: its type cannot change"
            )
        return data


@admin.register(MetadataField)
class MetadataFieldAdmin(admin.ModelAdmin):
    form = MetadataFieldAdminForm
    list_display = ["name", "label", "type", "required_at_enrollment", "order"]
    list_filter = ["type", "required_at_enrollment"]
    search_fields = ["name", "label", "description"]

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, ...]:
        # Django would list every certificate's value on the confirmation page (100,000s
        # of lines); say how many instead. The values are part of their field.
        fields = list(objs)
        count = CertificateMetadata.objects.filter(field__in=fields).count()
        listed: list[Any] = [str(field) for field in fields]
        if count:
            noun = "value" if count == 1 else "values"
            owner = "the field above" if len(fields) == 1 else "the fields above"
            listed.append(f"{count:,} certificate {noun} of {owner}")
        model_count = {
            MetadataField._meta.verbose_name_plural: len(fields),
            CertificateMetadata._meta.verbose_name_plural: count,
        }
        perms_needed = set()
        if not self.has_delete_permission(request):
            perms_needed.add(MetadataField._meta.verbose_name)
        return listed, model_count, perms_needed, []

    def delete_model(self, request: HttpRequest, obj: MetadataField) -> None:
        metadata.metadata_field_delete(field=obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for field in queryset:
            metadata.metadata_field_delete(field=field)


@admin.register(MetadataBackfill)
class MetadataBackfillAdmin(admin.ModelAdmin):
    """Backfills are started from the console or the API; admin shows them."""

    list_display = ["pk", "state", "processed", "total", "error_count", "started_by", "created_at"]
    list_filter = ["state"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
