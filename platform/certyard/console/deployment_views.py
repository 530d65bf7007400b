"""The console's store management pages: a store's page, delivering/removing/renewing a
certificate, the certificate list's bulk actions, discovery, and a batch's progress.

Thin views: every write is a ``certyard.deployment`` service (its refusal becomes a form
error, a refusal of who may act a 403 page); reads are selectors. What an agent or a
certificate says is attacker-written: templates show it with ``|visible``, never ``|safe``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from certyard.console import selectors
from certyard.console.deployment_forms import (
    CANDIDATE_KIND_LABELS,
    BulkActionForm,
    CandidateApproveForm,
    DeployForm,
    DiscoveryForm,
    KindApproveForm,
    RenewReplaceForm,
    UndeployForm,
)
from certyard.console.forms import CertificateSearchForm, service_error_to_form
from certyard.console.metadata_forms import MetadataFilterForm
from certyard.console.pagination import slice_page
from certyard.deployment import selectors as deployment_selectors
from certyard.deployment import services as deployment_services
from certyard.deployment.discovery_selectors import discovery_candidate_list
from certyard.deployment.models import Deployment, DeploymentBatch, DiscoveryCandidate
from certyard.deployment.services import discovery as discovery_services
from certyard.deployment.services.delivery import platform_key_enrollment
from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory import selectors as inventory_selectors
from certyard.inventory.authorization import may_act_on_certificate
from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateStore,
    CertificateStoreType,
)
from certyard.jobs.models import Job, JobHistory
from orchestrators.secret_refs import is_reference

ENTRIES_PER_PAGE = 50
JOBS_PER_PAGE = 25
HISTORY_SHOWN = 50
CANDIDATES_PER_PAGE = 100
DEPLOY = "deployment.add_deployment"
ADD_STORE = "inventory.add_certificatestore"
SOURCE = Job.Source.ADMIN
# The job types that read or write a store: its inventory history.
STORE_JOB_TYPES = ("inventory", "add", "remove", "create", "reenrollment")


def _forbidden_raise(exc: ServiceError) -> None:
    """A refusal of who may act (``not_yours``) is a 403 page, as elsewhere in the console."""
    if exc.http_status == 403:
        raise PermissionDenied(exc.message) from exc


def _page_number(request: HttpRequest, name: str) -> int:
    raw = request.GET.get(name, "")
    return int(raw) if raw.isdigit() and 0 < int(raw) <= 100_000 else 1


# --- A store's page ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PropertyRow:
    name: str
    label: str
    value: Any
    secret: bool
    is_set: bool


def _property_rows(store: CertificateStore) -> list[PropertyRow]:
    """The store's properties in the order its type declares them; secrets only as set or
    not set. Values the type does not declare (left by an older declaration) follow."""
    values = store.properties if isinstance(store.properties, dict) else {}
    rows = []
    declared = store.store_type.properties if isinstance(store.store_type.properties, list) else []
    seen = set()
    for spec in declared:
        if not isinstance(spec, dict) or "name" not in spec:
            continue
        name = str(spec["name"])
        seen.add(name)
        secret = spec.get("type") == "secret"
        value = values.get(name, spec.get("default"))
        rows.append(
            PropertyRow(
                name=name,
                label=str(spec.get("display_name") or name),
                value=None if secret else value,
                secret=secret,
                is_set=value not in (None, ""),
            )
        )
    for name, value in values.items():
        if name not in seen:
            rows.append(PropertyRow(name, name, value, False, value not in (None, "")))
    return rows


@login_required
@require_GET
@permission_required("inventory.view_certificatestore", raise_exception=True)
def store_detail(request: HttpRequest, pk: str) -> HttpResponse:
    store = get_object_or_404(inventory_selectors.store_list(), pk=pk)
    user = request.user
    context: dict[str, Any] = {
        "store": store,
        "property_rows": _property_rows(store),
        "problems": store.property_problems if isinstance(store.property_problems, list) else [],
        "password_set": bool(store.password),
        # A reference is shown (it names where the agent finds the password), never a value.
        "password_reference": store.password if is_reference(store.password) else "",
    }
    if user.has_perm("inventory.view_certificate"):
        entries = (
            CertificateLocation.objects.filter(store=store)
            .select_related("certificate")
            .order_by("alias", "pk")
        )
        context["entries"] = slice_page(
            entries, number=_page_number(request, "entries"), size=ENTRIES_PER_PAGE
        )
        if store.store_type.store_path_type == CertificateStoreType.PathType.TARGETS:
            endpoints = slice_page(
                inventory_selectors.store_endpoints(store=store),
                number=_page_number(request, "endpoints"),
                size=ENTRIES_PER_PAGE,
            )
            context["endpoints"] = endpoints
            context["endpoint_rows"] = [
                (endpoint, inventory_selectors.endpoint_name_matches(endpoint))
                for endpoint in endpoints.object_list
            ]
    if user.has_perm("jobs.view_job"):
        jobs = Job.objects.filter(store=store).order_by("-created_at", "pk")
        context["jobs"] = slice_page(jobs, number=_page_number(request, "jobs"), size=JOBS_PER_PAGE)
        context["history"] = list(
            JobHistory.objects.filter(job__store=store, job__type__in=STORE_JOB_TYPES)
            .select_related("job")
            .order_by("-started_at", "-pk")[:HISTORY_SHOWN]
        )
    return render(request, "console/stores/detail.html", context)


@login_required
@require_POST
@permission_required(DEPLOY, raise_exception=True)
def store_create_job(request: HttpRequest, pk: str) -> HttpResponse:
    """Queue a ``create`` job: the agent makes the empty store at its path."""
    store = get_object_or_404(inventory_selectors.store_list(), pk=pk)
    if not store.store_type.supports_create:
        messages.error(request, f"Store type {store.store_type.short_name} cannot create stores.")
        return redirect("console:store-detail", store.pk)
    try:
        deployment_services.store_create_request(store=store, actor=request.user, source=SOURCE)
    except ServiceError as exc:
        _forbidden_raise(exc)
        messages.error(request, f"Not queued: {exc.message}")
    else:
        messages.success(request, "Create-store job queued.")
    return redirect("console:store-detail", store.pk)


# --- A certificate's delivery, removal, renew-and-replace ----------------------------


def certificate_panel_context(certificate: Certificate, user: Any) -> dict[str, Any]:
    """What the certificate page's store-management panel shows (the template tag's)."""
    location_stores = _location_stores(certificate)
    context: dict[str, Any] = {
        "certificate": certificate,
        "may_deploy": user.has_perm(DEPLOY),
        "may_renew": user.has_perm(DEPLOY) and user.has_perm("enrollment.add_enrollmentrequest"),
        "has_locations": location_stores.exists(),
    }
    if context["may_deploy"]:
        deploy_form = DeployForm(actor=user)
        # Only whether the platform holds the key (a PFX enrollment's), never the key.
        context["platform_holds_key"] = platform_key_enrollment(certificate) is not None
        if not context["platform_holds_key"]:
            del deploy_form.fields["include_private_key"]
        context["deploy_form"] = deploy_form
        context["undeploy_form"] = UndeployForm(location_stores=location_stores)
    if context["may_renew"]:
        context["renew_form"] = RenewReplaceForm()
    if user.has_perm("deployment.view_deployment"):
        context["deployments"] = list(
            Deployment.objects.filter(certificate=certificate)
            .select_related("store", "store__store_type", "batch")
            .order_by("-created_at", "pk")[:20]
        )
    return context


def _location_stores(certificate: Certificate) -> QuerySet[CertificateStore]:
    return (
        CertificateStore.objects.filter(locations__certificate=certificate)
        .select_related("store_type")
        .distinct()
        .order_by("client_machine", "store_path", "pk")
    )


def _certificate_action_page(
    request: HttpRequest, certificate: Certificate, form: Any, action: str
) -> HttpResponse:
    """The refused form again, on a page of its own, with the service's or the form's error."""
    return render(
        request,
        "console/deployment/certificate_action.html",
        {"certificate": certificate, "form": form, "action": action},
    )


def _certificate(pk: int) -> Certificate:
    return get_object_or_404(selectors.certificate_detail_queryset(), pk=pk)


def _deploy_stores(form: DeployForm | BulkActionForm, actor: Any) -> list[CertificateStore]:
    """The chosen stores, or those the filter selects (a ServiceError when none)."""
    if form.cleaned_data.get("stores"):
        return list(form.cleaned_data["stores"])
    stores = deployment_services.stores_matching(actor=actor, filter=form.store_filter())
    if not stores:
        raise ServiceError("no store you may act on matches the filter", field="filter_store_type")
    return stores


@login_required
@require_POST
@permission_required(DEPLOY, raise_exception=True)
def certificate_deploy(request: HttpRequest, pk: int) -> HttpResponse:
    certificate = _certificate(pk)
    # Who may act on the certificate first: the store choices offer only the person's own
    # stores, so a refusal there would read as "not a valid choice" rather than "not yours".
    if not may_act_on_certificate(request.user, certificate):
        raise PermissionDenied("you may not act on this certificate")
    form = DeployForm(request.POST, actor=request.user)
    if form.is_valid():
        try:
            batch = deployment_services.certificate_deploy(
                certificate=certificate,
                stores=_deploy_stores(form, request.user),
                actor=request.user,
                alias=form.cleaned_data["alias"] or None,
                overwrite=form.cleaned_data["overwrite"],
                include_private_key=form.cleaned_data.get("include_private_key", False),
                entry_parameters=form.entry_parameters(),
                source=SOURCE,
            )
        except ServiceError as exc:
            _forbidden_raise(exc)
            service_error_to_form(form, exc, default="stores")
        else:
            return redirect("console:deployment-batch", batch.pk)
    return _certificate_action_page(request, certificate, form, "deploy")


@login_required
@require_POST
@permission_required(DEPLOY, raise_exception=True)
def certificate_undeploy(request: HttpRequest, pk: int) -> HttpResponse:
    certificate = _certificate(pk)
    form = UndeployForm(request.POST, location_stores=_location_stores(certificate))
    if form.is_valid():
        stores = None if form.cleaned_data["everywhere"] else list(form.cleaned_data["stores"])
        try:
            batch = deployment_services.certificate_undeploy(
                certificate=certificate, stores=stores, actor=request.user, source=SOURCE
            )
        except ServiceError as exc:
            _forbidden_raise(exc)
            service_error_to_form(form, exc, default="stores")
        else:
            return redirect("console:deployment-batch", batch.pk)
    return _certificate_action_page(request, certificate, form, "undeploy")


@login_required
@require_POST
@permission_required(DEPLOY, raise_exception=True)
@permission_required("enrollment.add_enrollmentrequest", raise_exception=True)
def certificate_renew_replace(request: HttpRequest, pk: int) -> HttpResponse:
    certificate = _certificate(pk)
    form = RenewReplaceForm(request.POST)
    if form.is_valid():
        try:
            batch = deployment_services.certificate_renew_and_replace(
                certificate=certificate,
                template=form.cleaned_data["template"],
                actor=request.user,
                source=SOURCE,
            )
        except ServiceError as exc:
            _forbidden_raise(exc)
            service_error_to_form(form, exc, default="template")
        else:
            return redirect("console:deployment-batch", batch.pk)
    return _certificate_action_page(request, certificate, form, "renew_replace")


# --- The certificate list's bulk actions ---------------------------------------------


def _certificates_chosen(form: BulkActionForm) -> tuple[QuerySet[Certificate] | None, str]:
    """The certificates a bulk action is for, or (None, why not)."""
    if form.cleaned_data["scope"] == BulkActionForm.SCOPE_SELECTED:
        ids = form.cleaned_data["selected"]
        return Certificate.objects.filter(pk__in=ids).order_by("pk"), ""
    query = QueryDict(form.cleaned_data.get("query") or "")
    search = CertificateSearchForm(query)
    metadata = MetadataFilterForm(query)
    if not (search.is_valid() and metadata.is_valid()):
        return None, "The list's filter cannot be used: go back to the list and correct it."
    filters = search.filters()
    if (chosen := metadata.filter) is not None:
        filters = dataclasses.replace(
            filters,
            metadata_field_id=chosen.field.pk,
            metadata_value=chosen.value,
            metadata_empty=chosen.empty,
        )
    return inventory_selectors.certificate_list(filters=filters), ""


def _bulk_one(form: BulkActionForm, certificate: Certificate, actor: Any) -> DeploymentBatch:
    action = form.cleaned_data["action"]
    if action == BulkActionForm.ACTION_ADD:
        return deployment_services.certificate_deploy(
            certificate=certificate,
            stores=_deploy_stores(form, actor),
            actor=actor,
            alias=form.cleaned_data["alias"] or None,
            overwrite=form.cleaned_data["overwrite"],
            include_private_key=form.cleaned_data.get("include_private_key", False),
            entry_parameters=form.entry_parameters(),
            source=SOURCE,
        )
    if action == BulkActionForm.ACTION_RENEW:
        if not actor.has_perm("enrollment.add_enrollmentrequest"):
            raise ServiceError("you may not request certificates", http_status=403)
        return deployment_services.certificate_renew_and_replace(
            certificate=certificate,
            template=form.cleaned_data["template"],
            actor=actor,
            source=SOURCE,
        )
    return deployment_services.certificate_undeploy(
        certificate=certificate, stores=None, actor=actor, source=SOURCE
    )


@login_required
@require_POST
@permission_required(DEPLOY, raise_exception=True)
def certificate_bulk(request: HttpRequest) -> HttpResponse:
    """Step one (from the list): show how many certificates the action affects and ask for
    its options; step two (``confirmed``): run it, one batch per certificate.

    Each certificate is its own batch: one refused (not yours, no location) is reported
    beside the others, which go ahead — the admin asked for all of them, and one odd
    certificate must not hold back the rest.
    """
    form = BulkActionForm(request.POST, actor=request.user)
    context: dict[str, Any] = {"form": form, "limit": BulkActionForm.MAX_CERTIFICATES}
    valid = form.is_valid()
    # An error in the options (stores, template) shows the confirmation again with it;
    # one in what to act on shows only the error.
    if any(name in form.errors for name in ("action", "scope", "selected", "query")):
        return render(request, "console/deployment/bulk.html", context)
    certificates, why = _certificates_chosen(form)
    if certificates is None:
        form.add_error(None, why)
        return render(request, "console/deployment/bulk.html", context)
    chosen = list(certificates[: BulkActionForm.MAX_CERTIFICATES + 1])
    context["count"] = len(chosen)
    context["sample"] = chosen[:10]
    if not chosen:
        form.add_error(None, "No certificate is chosen: nothing to do.")
        return render(request, "console/deployment/bulk.html", context)
    if len(chosen) > BulkActionForm.MAX_CERTIFICATES:
        form.add_error(
            None,
            f"More than {BulkActionForm.MAX_CERTIFICATES} certificates match: narrow the filter.",
        )
        return render(request, "console/deployment/bulk.html", context)
    if not valid or not form.cleaned_data.get("confirmed"):
        return render(request, "console/deployment/bulk.html", context)
    batches: list[DeploymentBatch] = []
    failures: list[tuple[Certificate, str]] = []
    for certificate in chosen:
        try:
            batches.append(_bulk_one(form, certificate, request.user))
        except ServiceError as exc:
            failures.append((certificate, exc.message))
    context.update({"done": True, "batches": batches, "failures": failures})
    return render(request, "console/deployment/bulk.html", context)


# --- Discovery -----------------------------------------------------------------------


def _orchestrator(pk: str) -> Orchestrator:
    return get_object_or_404(selectors.orchestrator_list(), pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
@permission_required(ADD_STORE, raise_exception=True)
def orchestrator_discover(request: HttpRequest, pk: str) -> HttpResponse:
    orchestrator = _orchestrator(pk)
    form = DiscoveryForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            discovery_services.discovery_request(
                orchestrator=orchestrator,
                actor=request.user,
                source=SOURCE,
                **form.request_kwargs(),
            )
        except ServiceError as exc:
            _forbidden_raise(exc)
            service_error_to_form(form, exc, default="directories")
        else:
            messages.success(
                request, "Discovery job queued: its candidates appear here when the agent reports."
            )
            return redirect("console:discovery-results", orchestrator.pk)
    return render(request, "console/deployment/discover.html", {"o": orchestrator, "form": form})


def _discovery_page(
    request: HttpRequest,
    orchestrator: Orchestrator,
    *,
    approve_error: tuple[int, CandidateApproveForm] | None = None,
    kind_form: KindApproveForm | None = None,
    outcome: Any = None,
) -> HttpResponse:
    state = request.GET.get("state", "")
    if state not in DiscoveryCandidate.State.values:
        state = ""
    candidates = discovery_candidate_list(orchestrator=orchestrator, state=state or None)
    page = slice_page(candidates, number=_page_number(request, "page"), size=CANDIDATES_PER_PAGE)
    new_kinds = [
        (row["kind"], CANDIDATE_KIND_LABELS.get(row["kind"], row["kind"]), row["n"])
        for row in discovery_candidate_list(
            orchestrator=orchestrator, state=DiscoveryCandidate.State.NEW
        )
        .order_by()
        .values("kind")
        .annotate(n=Count("pk"))
        .order_by("kind")
    ]
    counts = {
        row["state"]: row["n"]
        for row in discovery_candidate_list(orchestrator=orchestrator)
        .order_by()
        .values("state")
        .annotate(n=Count("pk"))
    }
    return render(
        request,
        "console/deployment/discovery.html",
        {
            "o": orchestrator,
            "page": page,
            "state": state,
            "states": DiscoveryCandidate.State.choices,
            "counts": counts,
            "new_kinds": new_kinds,
            "approve_form": CandidateApproveForm(),
            "approve_error": approve_error,
            "kind_form": kind_form or KindApproveForm(),
            "outcome": outcome,
            "kind_labels": CANDIDATE_KIND_LABELS,
        },
    )


@login_required
@require_GET
@permission_required("inventory.view_certificatestore", raise_exception=True)
def discovery_results(request: HttpRequest, pk: str) -> HttpResponse:
    return _discovery_page(request, _orchestrator(pk))


@login_required
@require_POST
@permission_required(ADD_STORE, raise_exception=True)
def discovery_candidate_approve(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = get_object_or_404(discovery_candidate_list(), pk=pk)
    form = CandidateApproveForm(request.POST)
    if form.is_valid():
        try:
            approved = discovery_services.discovery_candidate_approve(
                candidate=candidate,
                actor=request.user,
                store_type=form.cleaned_data["store_type"] or None,
                password=form.cleaned_data["password"],
                source=SOURCE,
            )
        except ServiceError as exc:
            _forbidden_raise(exc)
            service_error_to_form(form, exc, default="store_type")
        else:
            messages.success(request, f"Store added for {approved.path}; its inventory is queued.")
            return redirect("console:discovery-results", candidate.orchestrator_id)
    return _discovery_page(request, candidate.orchestrator, approve_error=(candidate.pk, form))


@login_required
@require_POST
@permission_required(ADD_STORE, raise_exception=True)
def discovery_approve_kind(request: HttpRequest, pk: str) -> HttpResponse:
    orchestrator = _orchestrator(pk)
    form = KindApproveForm(request.POST)
    if not form.is_valid():
        return _discovery_page(request, orchestrator, kind_form=form)
    try:
        outcome = discovery_services.discovery_candidates_approve_kind(
            orchestrator=orchestrator,
            kind=form.cleaned_data["kind"],
            actor=request.user,
            password=form.cleaned_data["password"],
            source=SOURCE,
        )
    except ServiceError as exc:
        _forbidden_raise(exc)
        service_error_to_form(form, exc, default="kind")
        return _discovery_page(request, orchestrator, kind_form=form)
    # A fresh form: the password is never put back on the page.
    return _discovery_page(request, orchestrator, outcome=outcome)


# --- A batch's progress --------------------------------------------------------------


@login_required
@require_GET
@permission_required("deployment.view_deployment", raise_exception=True)
def deployment_batch(request: HttpRequest, pk: str, rows_only: bool = False) -> HttpResponse:
    """A batch and its per-location rows; ``rows_only`` answers the htmx poll (the table
    body), which stops polling once every row has finished."""
    batch = get_object_or_404(DeploymentBatch.objects.select_related("certificate"), pk=pk)
    rows = list(deployment_selectors.batch_deployments(batch).select_related("store__store_type"))
    open_states = set(Deployment.OPEN_STATES)
    context = {
        "batch": batch,
        "rows": rows,
        "any_open": any(row.state in open_states for row in rows),
        "finished_count": sum(row.state not in open_states for row in rows),
    }
    template = "console/deployment/batch.html"
    return render(request, f"{template}#batch-rows" if rows_only else template, context)
