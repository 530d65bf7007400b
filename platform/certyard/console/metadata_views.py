"""The console's metadata pages: a certificate's values (and editing them), and the
Metadata page with the whole-inventory backfill. (The certificate list's metadata filter
is part of the list, in views.py.)

As everywhere in the console: a login for every page, the model's view permission for
every read, its change or add permission for every action (POST only, with CSRF).
Fields are defined here too (the same checks as Django admin); generators are
registered in Django admin, and registering one creates the fields it declares.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from certyard.console import selectors
from certyard.console.forms import service_error_to_form
from certyard.console.metadata_forms import CertificateMetadataForm, MetadataFieldForm
from certyard.errors import ServiceError
from certyard.inventory.metadata import (
    certificate_metadata_update,
    metadata_field_create,
    metadata_field_update,
)
from certyard.inventory.metadata import selectors as metadata_selectors
from certyard.inventory.metadata.generators import (
    metadata_backfill_cancel,
    metadata_backfill_start,
)
from certyard.inventory.metadata.services import generator_registration_fields_create
from certyard.inventory.models import Certificate, MetadataBackfill, MetadataField

GENERATOR_RUNS_SHOWN = 10


# --- Certificates ---------------------------------------------------------------------


def _panel(
    request: HttpRequest, certificate: Certificate, *, form: CertificateMetadataForm | None = None
) -> HttpResponse:
    entries = metadata_selectors.certificate_metadata(certificate=certificate)
    context = {
        "certificate": certificate,
        "entries": entries,
        "form": form or CertificateMetadataForm(entries=entries),
        "editing": form is not None,
    }
    return render(request, "console/metadata/_panel.html", context)


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("inventory.view_certificate", raise_exception=True)
@permission_required("inventory.change_certificatemetadata", raise_exception=True)
def certificate_metadata_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit a certificate's values. Under htmx the panel is swapped in place; without
    scripts this is a page of its own. A value a field refuses is shown beside it."""
    certificate = get_object_or_404(selectors.certificate_detail_queryset(), pk=pk)
    entries = metadata_selectors.certificate_metadata(certificate=certificate)
    template = "console/metadata/_panel.html" if request.htmx else "console/metadata/edit.html"
    if request.method == "GET":
        form = CertificateMetadataForm(entries=entries)
    else:
        form = CertificateMetadataForm(request.POST, entries=entries)
        if form.is_valid():
            try:
                changed = certificate_metadata_update(
                    certificate=certificate, values=form.changed_values(), actor=request.user
                )
            except ServiceError as exc:
                if exc.http_status == 403:  # not theirs: as without the permission
                    raise PermissionDenied(exc.message) from exc
                service_error_to_form(form, exc)
            else:
                noun = "value" if changed == 1 else "values"
                message = f"Metadata saved ({changed} {noun} changed)."
                if request.htmx:
                    return _panel(request, certificate)
                messages.success(request, message)
                return redirect("console:certificate-detail", pk=certificate.pk)
    context = {"certificate": certificate, "entries": entries, "form": form, "editing": True}
    return render(request, template, context)


# --- The Metadata page ------------------------------------------------------------------


def _admin_url(name: str, *args: Any) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def _progress(backfill: MetadataBackfill | None) -> Any:
    if backfill is None:
        return None
    return metadata_selectors.backfill_progress(
        backfill=backfill, stale_seconds=settings.CERTYARD_BACKFILL_STALE_SECONDS
    )


@login_required
@require_GET
@permission_required("inventory.view_metadatafield", raise_exception=True)
def metadata_overview(request: HttpRequest) -> HttpResponse:
    """The fields, the generators, and the current (or last) backfill."""
    context = {
        "fields": list(metadata_selectors.metadata_fields()),
        "generators": metadata_selectors.generator_registrations_with_fields(),
        "registrations_url": _admin_url("admin:workflows_handlerregistration_changelist"),
        "progress": _progress(metadata_selectors.backfill_current()),
        "runs": metadata_selectors.generator_runs_recent(limit=GENERATOR_RUNS_SHOWN),
    }
    return render(request, "console/metadata/overview.html", context)


@login_required
@require_GET
@permission_required("inventory.view_metadatabackfill", raise_exception=True)
def metadata_backfill_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The backfill's progress card: htmx asks for it every 2 s while it runs."""
    backfill = get_object_or_404(selectors.metadata_backfill_detail_queryset(), pk=pk)
    return render(request, "console/metadata/_backfill.html", {"progress": _progress(backfill)})


@login_required
@require_POST
@permission_required("inventory.add_metadatabackfill", raise_exception=True)
def metadata_backfill_create(request: HttpRequest) -> HttpResponse:
    """Run every enabled generator over the whole inventory."""
    try:
        backfill = metadata_backfill_start(actor=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Backfill {backfill.pk} started over {backfill.total:,} certificates."
        )
    return redirect("console:metadata")


@login_required
@require_POST
@permission_required("inventory.change_metadatabackfill", raise_exception=True)
def metadata_backfill_stop(request: HttpRequest, pk: int) -> HttpResponse:
    backfill = get_object_or_404(selectors.metadata_backfill_detail_queryset(), pk=pk)
    try:
        metadata_backfill_cancel(backfill=backfill)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Backfill {backfill.pk} cancelled after its current batch.")
    return redirect("console:metadata")


@login_required
@require_POST
@permission_required("inventory.add_metadatafield", raise_exception=True)
def metadata_generator_fields_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Create the fields a generator registration declares that are missing."""
    registration = get_object_or_404(metadata_selectors.generator_registrations(), pk=pk)
    try:
        created = generator_registration_fields_create(registration=registration)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        names = ", ".join(field.name for field in created)
        messages.success(
            request,
            f"Created for {registration.name}: {names}."
            if created
            else f"{registration.name}: every field it fills exists already.",
        )
    return redirect("console:metadata")


# --- Fields ----------------------------------------------------------------------------


def _field_form_page(
    request: HttpRequest, form: MetadataFieldForm, field: MetadataField | None
) -> HttpResponse:
    return render(request, "console/metadata/field_form.html", {"form": form, "field": field})


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("inventory.add_metadatafield", raise_exception=True)
def metadata_field_add(request: HttpRequest) -> HttpResponse:
    """Define a field: a name, a type and its rules; people and generators fill it."""
    form = MetadataFieldForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            field = metadata_field_create(**form.values())
        except ServiceError as exc:
            service_error_to_form(form, exc)
        else:
            messages.success(request, f"Metadata field {field.name} created.")
            return redirect("console:metadata")
    return _field_form_page(request, form, None)


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("inventory.change_metadatafield", raise_exception=True)
def metadata_field_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a field's label, rules or order (its type only while it has no values)."""
    field = get_object_or_404(metadata_selectors.metadata_fields(), pk=pk)
    form = MetadataFieldForm(request.POST or None, instance=field)
    if request.method == "POST" and form.is_valid():
        changes = {k: v for k, v in form.values().items() if k != "name"}
        try:
            # A fresh row: the form's instance already holds the submitted values.
            saved = metadata_field_update(field=MetadataField.objects.get(pk=pk), **changes)
        except ServiceError as exc:
            service_error_to_form(form, exc)
        else:
            messages.success(request, f"Metadata field {saved.name} saved.")
            return redirect("console:metadata")
    return _field_form_page(request, form, field)
