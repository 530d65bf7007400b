"""The admin console: thin views over the same services and selectors as the API.

Every page needs a login; every read needs the model's view permission (as the
API does) and every action its change or add permission. Actions are POST only,
with CSRF; under htmx they answer with the one table row they changed.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from certyard.accounts import selectors as accounts_selectors
from certyard.accounts import services as accounts_services
from certyard.console import selectors
from certyard.console.forms import (
    ApiTokenForm,
    CertificateSearchForm,
    EndpointFilterForm,
    JobFilterForm,
    RegistrationTokenForm,
    StoreCreateForm,
    StoreEditForm,
    StoreScheduleForm,
    StoreStatusFilterForm,
    service_error_to_form,
)
from certyard.console.metadata_forms import MetadataFilterForm
from certyard.console.orchestrator_forms import OrchestratorMetadataForm
from certyard.console.pagination import slice_page
from certyard.errors import ServiceError
from certyard.fleet import selectors as fleet_selectors
from certyard.fleet import services as fleet_services
from certyard.fleet.models import Orchestrator
from certyard.inventory import selectors as inventory_selectors
from certyard.inventory import services as inventory_services
from certyard.inventory.metadata import selectors as metadata_selectors
from certyard.jobs import selectors as job_selectors
from certyard.jobs import services as job_services
from certyard.jobs.models import Job
from certyard.pki.models import RevocationReason
from certyard.pki.services import issued_is_revoked
from certyard.x509 import certificate_file_stem, der_to_pem

CERTIFICATES_PER_PAGE = 50
JOBS_SHOWN = 100
RECENT_JOBS_SHOWN = 10
STORES_PER_PAGE = 50
DASHBOARD_ROWS_SHOWN = 10


# --- Dashboard ---------------------------------------------------------------------


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    context: dict[str, Any] = {}
    if user.has_perm("inventory.view_certificate"):
        context["counts"] = inventory_selectors.certificate_state_counts()
    if user.has_perm("fleet.view_orchestrator"):
        context["status_counts"] = selectors.orchestrator_status_counts()
        context["waiting"] = fleet_selectors.orchestrators_waiting()
    if user.has_perm("inventory.view_certificatestore"):
        context["failing_stores"] = inventory_selectors.stores_failing()[:DASHBOARD_ROWS_SHOWN]
    if user.has_perm("jobs.view_job"):
        context["recent_jobs"] = job_selectors.job_list()[:RECENT_JOBS_SHOWN]
        context["failed_jobs"] = selectors.jobs_failed_recent()[:DASHBOARD_ROWS_SHOWN]
    return render(request, "console/dashboard.html", context)


# --- Orchestrators ------------------------------------------------------------------


@login_required
@require_GET
@permission_required("fleet.view_orchestrator", raise_exception=True)
def orchestrator_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "console/orchestrators/list.html",
        {"orchestrators": selectors.orchestrator_list()},
    )


@login_required
@require_GET
@permission_required("fleet.view_orchestrator", raise_exception=True)
def orchestrator_detail(request: HttpRequest, pk: str) -> HttpResponse:
    orchestrator = get_object_or_404(selectors.orchestrator_list(), pk=pk)
    return _orchestrator_detail_render(request, orchestrator)


def _orchestrator_detail_render(
    request: HttpRequest,
    orchestrator: Orchestrator,
    *,
    metadata_form: OrchestratorMetadataForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """The orchestrator's page; ``metadata_form`` bound to a refused edit shows its errors."""
    user = request.user
    context: dict[str, Any] = {"o": orchestrator}
    if user.has_perm("fleet.change_orchestrator"):
        context["metadata_form"] = metadata_form or OrchestratorMetadataForm.for_metadata(
            orchestrator.metadata
        )
    if orchestrator.has_identity:
        context["certificate_revoked"] = issued_is_revoked(
            certificate_pem=orchestrator.certificate_pem
        )
        if user.has_perm("fleet.change_orchestrator"):
            context["revocation_reasons"] = [
                (value, label)
                for value, label in RevocationReason.choices
                if value != RevocationReason.REMOVE_FROM_CRL
            ]
    if user.has_perm("inventory.view_certificatestore"):
        stores = inventory_selectors.store_list(orchestrator_id=orchestrator.pk)
        shown = list(stores[: STORES_PER_PAGE + 1])
        context["stores"] = shown[:STORES_PER_PAGE]
        context["more_stores"] = len(shown) > STORES_PER_PAGE
    if user.has_perm("inventory.view_certificate"):
        context["expiry"] = inventory_selectors.orchestrator_expiry_counts(
            orchestrator_id=orchestrator.pk
        )
    if user.has_perm("jobs.view_job"):
        context["recent_jobs"] = selectors.orchestrator_jobs_recent(
            orchestrator_id=orchestrator.pk
        )[:RECENT_JOBS_SHOWN]
    return render(request, "console/orchestrators/detail.html", context, status=status)


@login_required
@require_POST
@permission_required("fleet.change_orchestrator", raise_exception=True)
def orchestrator_metadata(request: HttpRequest, pk: str) -> HttpResponse:
    """Replace the orchestrator's metadata; a refusal shows the page again with the errors."""
    orchestrator = get_object_or_404(selectors.orchestrator_list(), pk=pk)
    form = OrchestratorMetadataForm(request.POST)
    if form.is_valid():
        try:
            fleet_services.orchestrator_metadata_set(
                orchestrator=orchestrator,
                metadata=form.cleaned_data["metadata"],
                actor=request.user,
            )
        except ServiceError as exc:
            service_error_to_form(form, exc)
    if form.errors:
        orchestrator.refresh_from_db()
        return _orchestrator_detail_render(request, orchestrator, metadata_form=form, status=400)
    messages.success(request, f"{orchestrator.name}: metadata saved.")
    return redirect("console:orchestrator-detail", pk=orchestrator.pk)


def _orchestrator_action(
    request: HttpRequest, pk: str, service: Callable[..., Orchestrator], done: str
) -> HttpResponse:
    orchestrator = get_object_or_404(selectors.orchestrator_list(), pk=pk)
    error = ""
    try:
        orchestrator = service(orchestrator=orchestrator, actor=request.user)
    except ServiceError as exc:
        error = exc.message
        orchestrator.refresh_from_db()
    from_detail = request.POST.get("return_to") == "detail"
    if request.htmx and not from_detail:
        return render(
            request,
            "console/orchestrators/list.html#orchestrator-row",
            {"o": orchestrator, "row_error": error, "row_message": "" if error else done},
        )
    if error:
        messages.error(request, f"{orchestrator.name}: {error}")
    else:
        messages.success(request, f"{orchestrator.name}: {done}")
    if from_detail:
        url = reverse("console:orchestrator-detail", args=[orchestrator.pk])
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    return redirect("console:orchestrator-list")


@login_required
@require_POST
@permission_required("fleet.change_orchestrator", raise_exception=True)
def orchestrator_approve(request: HttpRequest, pk: str) -> HttpResponse:
    return _orchestrator_action(request, pk, fleet_services.orchestrator_approve, "approved.")


@login_required
@require_POST
@permission_required("fleet.change_orchestrator", raise_exception=True)
def orchestrator_disapprove(request: HttpRequest, pk: str) -> HttpResponse:
    return _orchestrator_action(request, pk, fleet_services.orchestrator_disapprove, "disapproved.")


@login_required
@require_POST
@permission_required("fleet.change_orchestrator", raise_exception=True)
def orchestrator_reset(request: HttpRequest, pk: str) -> HttpResponse:
    return _orchestrator_action(
        request, pk, fleet_services.orchestrator_reset, "reset; it must register again."
    )


@login_required
@require_POST
@permission_required("fleet.change_orchestrator", raise_exception=True)
def orchestrator_revoke_certificate(request: HttpRequest, pk: str) -> HttpResponse:
    raw_reason = request.POST.get("reason", "0")

    def revoke(*, orchestrator: Orchestrator, actor: Any) -> Orchestrator:
        try:
            reason = int(raw_reason)
        except ValueError:
            raise ServiceError(f"{raw_reason!r} is not a revocation reason") from None
        return fleet_services.orchestrator_certificate_revoke(
            orchestrator=orchestrator, reason=reason, actor=actor
        )

    return _orchestrator_action(
        request,
        pk,
        revoke,
        "certificate revoked; its agent is locked out until it registers again.",
    )


# --- Registration tokens -------------------------------------------------------------


def _token_page(
    request: HttpRequest, form: RegistrationTokenForm, created: tuple | None = None
) -> HttpResponse:
    return render(
        request,
        "console/orchestrators/tokens.html",
        {
            "form": form,
            "tokens": selectors.registration_token_list(),
            "created": created,
        },
    )


@login_required
@require_GET
@permission_required("fleet.view_registrationtoken", raise_exception=True)
def registration_token_list(request: HttpRequest) -> HttpResponse:
    return _token_page(request, RegistrationTokenForm())


@login_required
@require_POST
@permission_required("fleet.add_registrationtoken", raise_exception=True)
def registration_token_create(request: HttpRequest) -> HttpResponse:
    """Answer with the page itself, not a redirect: the value must not be kept anywhere."""
    form = RegistrationTokenForm(request.POST)
    if not form.is_valid():
        return _token_page(request, form)
    try:
        token, value = fleet_services.registration_token_create(
            description=form.cleaned_data["description"],
            valid_for=form.valid_for,
            reusable=form.cleaned_data["reusable"],
            approve_on_register=form.cleaned_data["approve_on_register"],
            labels=form.cleaned_data["labels"],
            machine_pattern=form.cleaned_data["machine_pattern"],
            blueprint=form.cleaned_data["blueprint"],
            created_by=request.user,
        )
    except ServiceError as exc:
        service_error_to_form(form, exc)
        return _token_page(request, form)
    response = _token_page(request, RegistrationTokenForm(), created=(token, value))
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
@permission_required("fleet.change_registrationtoken", raise_exception=True)
def registration_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(selectors.registration_token_list(), pk=pk)
    fleet_services.registration_token_revoke(token=token)
    messages.success(request, f"Token {token.token_prefix}… ({token.description}) revoked.")
    return redirect("console:registration-token-list")


# --- API tokens (each person's own) -------------------------------------------------


def _api_token_form(data: Any = None) -> ApiTokenForm:
    return ApiTokenForm(data, default_days=accounts_services.api_token_default_expiry().days)


def _api_token_page(
    request: HttpRequest, form: ApiTokenForm, created: tuple | None = None
) -> HttpResponse:
    return render(
        request,
        "console/api_tokens.html",
        {
            "form": form,
            "tokens": accounts_selectors.api_token_list(user=request.user),
            "created": created,
        },
    )


@login_required
@require_GET
def api_token_list(request: HttpRequest) -> HttpResponse:
    """The signed-in person's API tokens (never their values) and a form for a new one."""
    return _api_token_page(request, _api_token_form())


@login_required
@require_POST
def api_token_create(request: HttpRequest) -> HttpResponse:
    """Answer with the page itself, not a redirect: the value is shown once, kept nowhere."""
    form = _api_token_form(request.POST)
    if not form.is_valid():
        return _api_token_page(request, form)
    try:
        token, value = accounts_services.api_token_create(
            user=request.user, name=form.cleaned_data["name"], expires_in=form.expires_in
        )
    except ServiceError as exc:
        service_error_to_form(form, exc)
        return _api_token_page(request, form)
    response = _api_token_page(request, _api_token_form(), created=(token, value))
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke one of the person's own tokens; anyone else's is a 404."""
    token = get_object_or_404(accounts_selectors.api_token_list(user=request.user), pk=pk)
    accounts_services.api_token_revoke(token=token)
    messages.success(request, f"API token {token.token_key}… ({token.name}) revoked.")
    return redirect("console:api-token-list")


def _forbidden_raise(exc: ServiceError) -> None:
    """A refusal of who may act on the object (``not_yours``) is a 403 page, like a
    missing permission, not a message beside the row."""
    if exc.http_status == 403:
        raise PermissionDenied(exc.message) from exc


# --- Stores --------------------------------------------------------------------------


def _store_page(request: HttpRequest) -> HttpResponse:
    filters = StoreStatusFilterForm(request.GET)
    page = None
    if filters.is_valid():
        stores = inventory_selectors.store_list(
            status=filters.cleaned_data["status"],
            orchestrator_id=filters.cleaned_data["orchestrator"],
        )
        page = slice_page(stores, number=filters.page_number, size=STORES_PER_PAGE)
    return render(
        request,
        "console/stores/list.html",
        {"page": page, "filters": filters},
    )


@login_required
@require_GET
@permission_required("inventory.view_certificatestore", raise_exception=True)
def store_list(request: HttpRequest) -> HttpResponse:
    return _store_page(request)


ENDPOINTS_PER_PAGE = 50


@login_required
@require_GET
@permission_required("inventory.view_certificatestore", raise_exception=True)
@permission_required("inventory.view_certificate", raise_exception=True)
def endpoint_list(request: HttpRequest) -> HttpResponse:
    """Every TLS scan store's endpoints: what each serves, or why it serves nothing."""
    filters = EndpointFilterForm(request.GET)
    page = rows = None
    if filters.is_valid():
        endpoints = inventory_selectors.endpoint_list(
            status=filters.cleaned_data["status"],
            problem=filters.cleaned_data["problem"],
            host=filters.cleaned_data["host"].strip(),
        )
        page = slice_page(endpoints, number=filters.page_number, size=ENDPOINTS_PER_PAGE)
        rows = [(e, inventory_selectors.endpoint_name_matches(e)) for e in page.object_list]
    return render(
        request,
        "console/stores/endpoints.html",
        {
            "page": page,
            "rows": rows,
            "filters": filters,
            "counts": inventory_selectors.endpoint_counts(),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("inventory.add_certificatestore", raise_exception=True)
def store_create(request: HttpRequest) -> HttpResponse:
    # Its own page: the orchestrator choice lists the whole approved fleet, which the
    # store list (read far more often) should not render on every visit.
    # ?orchestrator= (from an orchestrator's page) preselects it; the form checks it.
    initial = {"orchestrator": request.GET.get("orchestrator", "")[:64]}
    form = StoreCreateForm(request.POST if request.method == "POST" else None, initial=initial)
    if form.is_bound and form.is_valid():
        try:
            store = inventory_services.store_create(**form.cleaned_data, created_by=request.user)
        except ServiceError as exc:
            service_error_to_form(form, exc)
        else:
            messages.success(request, f"Store {store} added.")
            return redirect("console:store-list")
    return render(request, "console/stores/add.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("inventory.change_certificatestore", raise_exception=True)
def store_edit(request: HttpRequest, pk: str) -> HttpResponse:
    store = get_object_or_404(inventory_selectors.store_list(), pk=pk)
    form = StoreEditForm.for_store(store, request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            inventory_services.store_update(store=store, **form.changes(), actor=request.user)
        except ServiceError as exc:
            _forbidden_raise(exc)
            service_error_to_form(form, exc)
        else:
            messages.success(request, f"Store {store} saved.")
            return redirect("console:store-list")
    return render(request, "console/stores/edit.html", {"store": store, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("inventory.delete_certificatestore", raise_exception=True)
def store_delete(request: HttpRequest, pk: str) -> HttpResponse:
    """GET asks for confirmation; POST deletes."""
    store = get_object_or_404(inventory_selectors.store_list(), pk=pk)
    if request.method == "GET":
        return render(request, "console/stores/delete.html", {"store": store})
    name = str(store)
    try:
        inventory_services.store_delete(store=store, actor=request.user)
    except ServiceError as exc:
        _forbidden_raise(exc)
        messages.error(request, f"Not deleted: {exc.message}.")
        return redirect("console:store-list")
    messages.success(
        request, f"Store {name} deleted, with its locations and jobs; its certificates stay."
    )
    return redirect("console:store-list")


def _store_answer(
    request: HttpRequest, store_pk: Any, *, message: str = "", error: str = ""
) -> HttpResponse:
    """The store's row under htmx; otherwise a message and back to the list."""
    if request.htmx:
        store = inventory_selectors.store_list().get(pk=store_pk)
        return render(
            request,
            "console/stores/list.html#store-row",
            {"s": store, "row_message": message, "row_error": error},
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, message)
    return redirect("console:store-list")


@login_required
@require_POST
@permission_required("inventory.change_certificatestore", raise_exception=True)
def store_schedule(request: HttpRequest, pk: str) -> HttpResponse:
    store = get_object_or_404(inventory_selectors.store_list(), pk=pk)
    form = StoreScheduleForm(request.POST)
    if not form.is_valid():
        error = "; ".join(e for errors in form.errors.values() for e in errors)
        return _store_answer(request, store.pk, error=f"Schedule not changed: {error}")
    interval = form.cleaned_data["interval_minutes"]
    try:
        inventory_services.store_schedule_inventory(
            store=store, interval_minutes=interval, actor=request.user
        )
    except ServiceError as exc:
        _forbidden_raise(exc)
        return _store_answer(request, store.pk, error=exc.message)
    message = (
        f"Inventory scheduled every {interval} minute{'' if interval == 1 else 's'}; "
        "the first run is due now."
        if interval
        else "Inventory schedule stopped."
    )
    return _store_answer(request, store.pk, message=message)


@login_required
@require_POST
@permission_required("inventory.change_certificatestore", raise_exception=True)
def store_inventory_now(request: HttpRequest, pk: str) -> HttpResponse:
    store = get_object_or_404(inventory_selectors.store_list(), pk=pk)
    try:
        job, created = job_services.store_inventory_now(
            store=store, source=Job.Source.ADMIN, actor=request.user
        )
    except ServiceError as exc:
        _forbidden_raise(exc)
        return _store_answer(request, store.pk, error=exc.message)
    if created:
        message = "Inventory job queued."
    else:
        message = f"An inventory job is already open ({job.get_state_display().lower()})."
    return _store_answer(request, store.pk, message=message)


# --- Certificates --------------------------------------------------------------------


@login_required
@require_GET
@permission_required("inventory.view_certificate", raise_exception=True)
def certificate_list(request: HttpRequest) -> HttpResponse:
    """The certificate list, with its metadata filter (field, and a value or "has none")."""
    form = CertificateSearchForm(request.GET)
    metadata_form = MetadataFilterForm(request.GET)
    context: dict[str, Any] = {"form": form, "metadata_form": metadata_form, "page": None}
    context["metadata_filter_offered"] = metadata_selectors.metadata_fields().exists()
    if form.is_valid() and metadata_form.is_valid():
        filters = form.filters()
        if (chosen := metadata_form.filter) is not None:
            filters = dataclasses.replace(
                filters,
                metadata_field_id=chosen.field.pk,
                metadata_value=chosen.value,
                metadata_empty=chosen.empty,
            )
        queryset = inventory_selectors.certificate_list(filters=filters)
        page = slice_page(queryset, number=form.page_number, size=CERTIFICATES_PER_PAGE)
        context["page"] = page
        # Each row's status badge: one definition (certificate_status), one "now" per page.
        now = timezone.now()
        context["rows"] = [
            (c, inventory_selectors.certificate_status(c, now=now)) for c in page.object_list
        ]
        if not page.object_list and not page.has_previous:
            context["inventory_empty"] = selectors.inventory_is_empty()
    return render(request, "console/certificates/list.html", context)


@login_required
@require_GET
@permission_required("inventory.view_certificate", raise_exception=True)
def certificate_detail(request: HttpRequest, pk: int) -> HttpResponse:
    certificate = get_object_or_404(selectors.certificate_detail_queryset(), pk=pk)
    pki = selectors.certificate_pki_facts(certificate=certificate)
    return render(
        request,
        "console/certificates/detail.html",
        {
            "certificate": certificate,
            "pki": pki,
            "state": inventory_selectors.certificate_state(certificate),
            "actions": selectors.certificate_header_actions(
                certificate=certificate, user=request.user, pki=pki
            ),
            "details": inventory_selectors.certificate_details(certificate=certificate),
            "chain": inventory_selectors.certificate_chain(certificate=certificate),
            "locations": inventory_selectors.certificate_locations(certificate=certificate),
        },
    )


@login_required
@require_GET
@permission_required("inventory.view_certificate", raise_exception=True)
def certificate_download(request: HttpRequest, pk: int, chain: bool = False) -> HttpResponse:
    certificate = get_object_or_404(selectors.certificate_detail_queryset(), pk=pk)
    certificates = (
        inventory_selectors.certificate_chain(certificate=certificate) if chain else [certificate]
    )
    body = "".join(der_to_pem(bytes(c.der)) for c in certificates)
    name = certificate_file_stem(common_name=certificate.common_name, sha256=certificate.sha256)
    suffix = "-chain" if chain else ""
    response = HttpResponse(body, content_type="application/x-pem-file")
    response["Content-Disposition"] = f'attachment; filename="{name}{suffix}.pem"'
    return response


# --- Jobs ----------------------------------------------------------------------------


@login_required
@require_GET
@permission_required("jobs.view_job", raise_exception=True)
def job_list(request: HttpRequest, rows_only: bool = False) -> HttpResponse:
    """The newest jobs; ``rows_only`` answers the table body htmx polls."""
    form = JobFilterForm(request.GET)
    if form.is_valid():
        jobs = selectors.job_list_in_state(state=form.cleaned_data["state"])
    else:
        jobs = job_selectors.job_list().none()
    template = "console/jobs/list.html#job-rows" if rows_only else "console/jobs/list.html"
    return render(
        request, template, {"form": form, "jobs": jobs[:JOBS_SHOWN], "jobs_shown": JOBS_SHOWN}
    )


@login_required
@require_GET
@permission_required("jobs.view_job", raise_exception=True)
def job_detail(request: HttpRequest, pk: str) -> HttpResponse:
    job = get_object_or_404(selectors.job_detail_queryset(), pk=pk)
    result = job.result if isinstance(job.result, dict) else {}
    # What the agent said of a management job (written, verified, removed...): its own
    # words, shown escaped; the inventory summary is the platform's.
    reported = {key: value for key, value in result.items() if key != "inventory"}
    # Provenance: the jobs that retry or follow this one (its own ``retry_of`` is linked).
    retries = list(job.retries.order_by("created_at")[:50])
    return render(
        request,
        "console/jobs/detail.html",
        {
            "job": job,
            "inventory": result.get("inventory"),
            "reported": reported,
            "retries": retries,
        },
    )


def _job_answer(
    request: HttpRequest, job: Job, *, message: str = "", error: str = "", other: Job | None = None
) -> HttpResponse:
    """The job's row for the list's htmx; otherwise a message and the job's page (``other``'s
    when a retry opened or found another job)."""
    from_detail = request.POST.get("return_to") == "detail"
    if request.htmx and not from_detail:
        return render(
            request,
            "console/jobs/list.html#job-row",
            {
                "job": job_selectors.job_list().get(pk=job.pk),
                "row_message": message,
                "row_error": error,
                "other_job": other,
            },
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, message)
    url = reverse("console:job-detail", args=[(other or job).pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_POST
@permission_required("jobs.change_job", raise_exception=True)
def job_cancel(request: HttpRequest, pk: str) -> HttpResponse:
    job = get_object_or_404(job_selectors.job_list(), pk=pk)
    try:
        job = job_services.job_cancel(job=job, actor=request.user)
    except ServiceError as exc:
        _forbidden_raise(exc)
        return _job_answer(request, job, error=f"Not cancelled: {exc.message}.")
    return _job_answer(request, job, message="Job cancelled.")


@login_required
@require_POST
@permission_required("jobs.change_job", raise_exception=True)
def job_retry(request: HttpRequest, pk: str) -> HttpResponse:
    job = get_object_or_404(job_selectors.job_list(), pk=pk)
    try:
        retried, created = job_services.job_retry(job=job, actor=request.user)
    except ServiceError as exc:
        _forbidden_raise(exc)
        return _job_answer(request, job, error=f"Not retried: {exc.message}.")
    if created:
        message = "Retried as a new job."
    else:
        message = (
            f"Not retried: an inventory job of this store is already open "
            f"({retried.get_state_display().lower()})."
        )
    return _job_answer(request, job, message=message, other=retried)
