"""The console's PKI and enrollment pages: certificate authorities, CA gateways, enrolling,
requests and their approval, and revoking or renewing a certificate.

As everywhere in the console: a login for every page, the model's view permission for every
read, its add or change permission for every action (POST only, with CSRF). One exception:
a person who may enroll sees their own requests (and downloads what they were issued)
without the permission to see everyone's.

A private key is never rendered: a CA's stays in the database, encrypted; a key the
platform makes for a PFX enrollment leaves only inside the PKCS#12 handed over once.

Every form that issues or changes something answers with a redirect to a page that says
what happened (post/redirect/get): reloading it repeats nothing. A PKCS#12 goes to its
hand-over page, which offers the download once (the file is kept encrypted until then, a
few minutes at most): the enrollment form is never shown again with its passwords.
Enrollment and renewal forms carry a hidden idempotency key, new on each rendering, so a
double-clicked or resent submission answers with the first request instead of issuing
again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from certyard.console import pki_forms as forms
from certyard.console import selectors
from certyard.console.pagination import slice_page
from certyard.enrollment import selectors as enrollment_selectors
from certyard.enrollment import services as enrollment_services
from certyard.enrollment.gateways import gateway_ping
from certyard.enrollment.models import EnrollmentRequest, GatewaySync, Template
from certyard.enrollment.services import EnrollmentRefused
from certyard.enrollment.sync import gateway_sync_start
from certyard.errors import ServiceError
from certyard.inventory.models import Certificate
from certyard.pki import crypto
from certyard.pki import selectors as pki_selectors
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.selectors import class_status
from certyard.x509 import certificate_file_stem
from handlers.registry import handler_class

ISSUED_PER_PAGE = 50
REQUESTS_PER_PAGE = 50
RECENT_SYNCS_SHOWN = 10

State = EnrollmentRequest.State
VIEW_REQUESTS = "enrollment.view_enrollmentrequest"
ADD_REQUESTS = "enrollment.add_enrollmentrequest"
APPROVE_REQUESTS = "enrollment.approve_enrollmentrequest"


def _page_number(request: HttpRequest) -> int:
    raw = request.GET.get("page", "")
    return int(raw) if raw.isdigit() and 0 < int(raw) <= 100_000 else 1


def _download(body: bytes | str, *, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def _pfx_download(pfx: bytes, enrollment: EnrollmentRequest) -> HttpResponse:
    stem = certificate_file_stem(common_name=_common_name(enrollment), sha256=enrollment.pk.hex)
    return _download(pfx, filename=f"{stem}.p12", content_type="application/x-pkcs12")


def _common_name(enrollment: EnrollmentRequest) -> str:
    return crypto.common_name(enrollment.subject)


# --- Certificate authorities ---------------------------------------------------------------


@login_required
@require_GET
@permission_required("pki.view_certificateauthority", raise_exception=True)
def ca_list(request: HttpRequest) -> HttpResponse:
    cas = pki_selectors.ca_list()
    return render(request, "console/pki/ca_list.html", {"cas": cas})


def _chain_rows(chain_pem: str) -> list[dict[str, Any]]:
    """The issuers above a CA, nearest first, as the page lists them."""
    if not chain_pem.strip():
        return []
    try:
        certificates = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError:
        return [{"subject": "(the stored chain cannot be read)", "not_after": None}]
    return [
        {"subject": c.subject.rfc4514_string(), "not_after": c.not_valid_after_utc}
        for c in certificates
    ]


@login_required
@require_GET
@permission_required("pki.view_certificateauthority", raise_exception=True)
def ca_detail(request: HttpRequest, pk: int) -> HttpResponse:
    ca = get_object_or_404(pki_selectors.ca_list(), pk=pk)
    issued = pki_selectors.issued_certificate_list(ca=ca)
    page = slice_page(issued, number=_page_number(request), size=ISSUED_PER_PAGE)
    in_inventory = selectors.certificate_ids_by_sha256(sha256s=[i.sha256 for i in page.object_list])
    for row in page.object_list:
        row.inventory_pk = in_inventory.get(row.sha256)  # type: ignore[attr-defined]
    can_sign_cas, path_length = forms.ca_path_length(ca.certificate_pem)
    context: dict[str, Any] = {
        "ca": ca,
        "urls": pki_services.ca_urls(ca),
        "chain": _chain_rows(ca.chain_pem),
        "page": page,
        "children": list(pki_selectors.ca_children(ca=ca)),
        "path_length": path_length,
        "can_sign_cas": can_sign_cas and ca.enabled,
    }
    if request.user.has_perm("enrollment.view_template"):
        context["templates"] = list(enrollment_selectors.template_list(ca=ca))
    return render(request, "console/pki/ca_detail.html", context)


def _ca_service_error(form: Any, exc: ServiceError) -> None:
    # A name already taken is refused with code "conflict" and no field: it is the name's.
    forms.service_error_to_form(form, exc, default="name" if exc.code == "conflict" else None)


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("pki.add_certificateauthority", raise_exception=True)
def ca_create(request: HttpRequest) -> HttpResponse:
    """A new root CA, or an intermediate signed by a built-in CA."""
    if request.method == "POST":
        form = forms.CaCreateForm(request.POST)
    else:
        form = forms.CaCreateForm(initial={"parent": request.GET.get("parent", "")[:20]})
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            ca = pki_services.ca_create(
                name=data["name"],
                common_name=data["common_name"],
                organization=data["organization"],
                country=data["country"],
                key_algorithm=data["key_algorithm"],
                validity_days=data["validity_days"],
                parent=data["parent"],
                path_length=data["path_length"],
                actor=request.user,
            )
        except ServiceError as exc:
            _ca_service_error(form, exc)
        else:
            kind = "Intermediate" if ca.parent_id else "Root"
            messages.success(request, f"{kind} CA {ca.name} created.")
            return redirect("console:ca-detail", pk=ca.pk)
    return render(request, "console/pki/ca_create.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("pki.add_certificateauthority", raise_exception=True)
def ca_import(request: HttpRequest) -> HttpResponse:
    """Import an existing CA: PEM certificate and key, or a PKCS#12 file."""
    pem_form = forms.CaImportPemForm(prefix="pem")
    pkcs12_form = forms.CaImportPkcs12Form(prefix="pkcs12")
    active = "pkcs12" if request.GET.get("from") == "pkcs12" else "pem"
    if request.method == "POST":
        active = "pkcs12" if request.POST.get("kind") == "pkcs12" else "pem"
        ca: CertificateAuthority | None = None
        form: Any
        try:
            if active == "pkcs12":
                form = pkcs12_form = forms.CaImportPkcs12Form(
                    request.POST, request.FILES, prefix="pkcs12"
                )
                if form.is_valid():
                    ca = pki_services.ca_import_pkcs12(
                        name=form.cleaned_data["name"],
                        data=form.cleaned_data["pkcs12"],
                        password=form.cleaned_data["password"],
                        actor=request.user,
                    )
            else:
                form = pem_form = forms.CaImportPemForm(request.POST, prefix="pem")
                if form.is_valid():
                    ca = pki_services.ca_import(
                        name=form.cleaned_data["name"],
                        certificate_pem=form.cleaned_data["certificate_pem"],
                        private_key_pem=form.cleaned_data["private_key_pem"],
                        key_password=form.cleaned_data["key_password"],
                        chain_pem=form.cleaned_data["chain_pem"],
                        actor=request.user,
                    )
        except ServiceError as exc:
            _ca_service_error(form, exc)
        if ca is not None:
            messages.success(request, f"CA {ca.name} imported.")
            return redirect("console:ca-detail", pk=ca.pk)
    return render(
        request,
        "console/pki/ca_import.html",
        {"pem_form": pem_form, "pkcs12_form": pkcs12_form, "active": active},
    )


# --- CA gateways -------------------------------------------------------------------------------


def _supports_sync(registration: HandlerRegistration) -> bool:
    info = handler_class(registration.handler)
    return bool(info is not None and info.cls is not None and getattr(info.cls, "supports_sync", 0))


def _with_class(registration: HandlerRegistration) -> HandlerRegistration:
    registration.class_status = class_status(registration.handler)  # type: ignore[attr-defined]
    registration.supports_sync = _supports_sync(registration)  # type: ignore[attr-defined]
    return registration


@login_required
@require_GET
@permission_required("workflows.view_handlerregistration", raise_exception=True)
def gateway_list(request: HttpRequest) -> HttpResponse:
    gateways = [_with_class(registration) for registration in enrollment_selectors.gateway_list()]
    return render(
        request,
        "console/pki/gateway_list.html",
        {"gateways": gateways, "sync_form": forms.GatewaySyncForm()},
    )


def sync_progress(sync: GatewaySync) -> dict[str, Any]:
    stale_after = dt.timedelta(seconds=settings.CERTYARD_SYNC_STALE_SECONDS)
    stalled = (
        sync.state == GatewaySync.State.RUNNING
        and sync.heartbeat_at is not None
        and timezone.now() - sync.heartbeat_at > stale_after
    )
    return {"sync": sync, "stalled": stalled}


@login_required
@require_GET
@permission_required("workflows.view_handlerregistration", raise_exception=True)
def gateway_detail(request: HttpRequest, pk: int) -> HttpResponse:
    registration = _with_class(get_object_or_404(enrollment_selectors.gateway_list(), pk=pk))
    syncs = list(enrollment_selectors.gateway_sync_list(gateway=registration)[:RECENT_SYNCS_SHOWN])
    current = next((s for s in syncs if s.state == GatewaySync.State.RUNNING), None)
    shown = current or (syncs[0] if syncs else None)
    return render(
        request,
        "console/pki/gateway_detail.html",
        {
            "gateway": registration,
            "templates": list(registration.issuing_templates.all()),
            "syncs": syncs,
            "progress": sync_progress(shown) if shown is not None else None,
            "sync_form": forms.GatewaySyncForm(),
        },
    )


def _back_to_gateway(request: HttpRequest, registration: HandlerRegistration) -> HttpResponse:
    if request.POST.get("return_to") == "list":
        return redirect("console:gateway-list")
    return redirect("console:gateway-detail", pk=registration.pk)


@login_required
@require_POST
@permission_required("workflows.change_handlerregistration", raise_exception=True)
def gateway_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask the CA to answer with the registration's parameters."""
    registration = get_object_or_404(enrollment_selectors.gateway_registrations(), pk=pk)
    try:
        gateway_ping(registration)
    except ServiceError as exc:
        messages.error(request, f"{registration.name}: {exc.message}")
    else:
        messages.success(request, f"{registration.name}: the CA answered.")
    return _back_to_gateway(request, registration)


@login_required
@require_POST
@permission_required("workflows.change_handlerregistration", raise_exception=True)
def gateway_sync(request: HttpRequest, pk: int) -> HttpResponse:
    """Start synchronizing what the CA issued into the inventory (in the background)."""
    registration = get_object_or_404(enrollment_selectors.gateway_registrations(), pk=pk)
    form = forms.GatewaySyncForm(request.POST)
    full = form.is_valid() and form.cleaned_data["full"]
    try:
        gateway_sync_start(registration=registration, full=full, actor=request.user)
    except ServiceError as exc:
        messages.error(request, f"{registration.name}: {exc.message}")
        return _back_to_gateway(request, registration)
    kind = "Full synchronization" if full else "Synchronization"
    messages.success(request, f"{registration.name}: {kind} started.")
    return redirect("console:gateway-detail", pk=registration.pk)


@login_required
@require_GET
@permission_required("workflows.view_handlerregistration", raise_exception=True)
def gateway_sync_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """A sync's progress card: htmx asks for it every 2 s while it runs."""
    sync = get_object_or_404(enrollment_selectors.gateway_sync_list(), pk=pk)
    return render(request, "console/pki/_sync.html", {"progress": sync_progress(sync)})


# --- Enrollment ------------------------------------------------------------------------------


def _submitted_message(enrollment: EnrollmentRequest) -> str:
    if enrollment.replayed:
        return (
            "This form was already submitted: here is the request it made (nothing was "
            f"issued again; it is {enrollment.get_state_display().lower()})."
        )
    if enrollment.state == State.ISSUED:
        return "Certificate issued."
    if enrollment.state == State.PENDING:
        return "Request recorded: it waits for an approver (someone other than you)."
    if enrollment.state == State.AWAITING_CA:
        return "Request sent: the CA has not issued it yet."
    return f"Request {enrollment.get_state_display().lower()}."


@login_required
@require_http_methods(["GET", "POST"])
@permission_required(ADD_REQUESTS, raise_exception=True)
def enroll(request: HttpRequest) -> HttpResponse:
    """Choose a template; then a CSR, or a key the platform makes (PFX), and the metadata."""
    data = request.POST if request.method == "POST" else request.GET
    name = data.get("template", "")
    method = "pfx" if data.get("method") == "pfx" else "csr"
    templates = enrollment_selectors.template_list(enabled=True)
    template = None
    if name and len(name) <= 100 and "\x00" not in name:
        template = enrollment_selectors.template_enrollable_get(name=name)
    if template is None:
        error = ""
        if name or request.method == "POST":
            error = (
                "There is no enabled template of that name (it was deleted or disabled): "
                "choose one of these."
            )
        return render(
            request, "console/enrollment/enroll.html", {"templates": templates, "error": error}
        )
    form_class = forms.PfxEnrollForm if method == "pfx" else forms.CsrEnrollForm
    form: Any
    refused = ""
    if request.method == "POST":
        form = form_class(request.POST, request.FILES, template=template)
        if form.is_valid():
            try:
                answer = _submit(request, template, method, form)
            except EnrollmentRefused as exc:
                form.add_error(None, forms.sentence(exc.message))
                refused = str(exc.details.get("enrollment_id", ""))
            except ServiceError as exc:
                _submission_error_to_form(form, exc)
            else:
                return answer
        forms.idempotency_key_renew(form)
    else:
        form = form_class(template=template)
    return render(
        request,
        "console/enrollment/enroll_form.html",
        {"template": template, "method": method, "form": form, "refused": refused},
    )


def _submission_error_to_form(form: Any, exc: ServiceError) -> None:
    """A refusal on the form; one about the hidden idempotency key goes on top (a hidden
    field shows no error)."""
    if "idempotency_key" in exc.fields:
        form.add_error(None, forms.sentence(exc.message))
    else:
        forms.service_error_to_form(form, exc)


def _submit(request: HttpRequest, template: Template, method: str, form: Any) -> HttpResponse:
    data = form.cleaned_data
    if method == "csr":
        enrollment = enrollment_services.enrollment_submit_csr(
            template_name=template.name,
            csr_pem=data["csr_pem"],
            metadata=form.metadata(),
            actor=request.user,
            idempotency_key=data.get("idempotency_key") or None,
        )
        messages.success(request, _submitted_message(enrollment))
        return redirect("console:enrollment-request-detail", pk=enrollment.pk)
    submitted = enrollment_services.enrollment_submit_pfx(
        template_name=template.name,
        common_name=data["common_name"],
        sans=data["sans"],
        key_algorithm=data["key_algorithm"],
        password=data["password"],
        metadata=form.metadata(),
        actor=request.user,
        idempotency_key=data.get("idempotency_key") or None,
        keep_for=request.user,
    )
    return _submitted_answer(request, submitted)


def _submitted_answer(request: HttpRequest, submitted: Any) -> HttpResponse:
    """A redirect: to the PKCS#12's hand-over page when it was issued at once (kept for
    the requester by the service) or when this repeats a PFX submission that was; to the
    request's page otherwise."""
    enrollment = submitted.request
    if submitted.pfx is not None:
        messages.success(request, "Certificate issued: download its PKCS#12 below, once.")
        return redirect("console:enrollment-request-pkcs12", pk=enrollment.pk)
    if (
        enrollment.replayed
        and enrollment.method == EnrollmentRequest.Method.PFX
        and (enrollment.state == State.APPROVED or enrollment.pfx_collected_at is not None)
    ):
        messages.info(request, _submitted_message(enrollment))
        return redirect("console:enrollment-request-pkcs12", pk=enrollment.pk)
    message = _submitted_message(enrollment)
    if enrollment.method == EnrollmentRequest.Method.PFX and enrollment.state != State.ISSUED:
        message += " Collect the PKCS#12 on this page once it is issued."
    messages.success(request, message)
    return redirect("console:enrollment-request-detail", pk=enrollment.pk)


@login_required
@require_GET
@permission_required(VIEW_REQUESTS, raise_exception=True)
def request_list(request: HttpRequest) -> HttpResponse:
    data = request.GET.copy()
    if not data.get("state"):
        data["state"] = "pending" if request.user.has_perm(APPROVE_REQUESTS) else "all"
    form = forms.RequestFilterForm(data)
    context: dict[str, Any] = {"form": form, "page": None, "tabs": forms.RequestFilterForm.TABS}
    if form.is_valid():
        tab = form.cleaned_data["state"]
        requests = enrollment_selectors.enrollment_request_list(
            states=forms.RequestFilterForm.STATES.get(tab)
        )
        context["tab"] = tab
        context["page"] = slice_page(requests, number=form.page_number, size=REQUESTS_PER_PAGE)
    return render(request, "console/enrollment/request_list.html", context)


def _not_yours_raise(exc: ServiceError) -> None:
    """Not this person's to act on (``certyard.accounts.authorization``): a 403 page, as
    without the permission."""
    if exc.code in ("not_yours", "permission_denied", "not_requester"):
        raise PermissionDenied(exc.message) from exc


def _visible_request(request: HttpRequest, pk: Any) -> EnrollmentRequest:
    """The request, for someone who may see them all, or for its own requester."""
    user = request.user
    if user.has_perm(VIEW_REQUESTS):
        return get_object_or_404(enrollment_selectors.enrollment_request_detail_queryset(), pk=pk)
    if user.has_perm(ADD_REQUESTS):
        own = enrollment_selectors.enrollment_request_detail_queryset(requested_by=user.pk)
        return get_object_or_404(own, pk=pk)
    raise PermissionDenied


def _request_page(
    request: HttpRequest, enrollment: EnrollmentRequest, **forms_given: Any
) -> HttpResponse:
    user = request.user
    is_requester = enrollment.requested_by_id is not None and enrollment.requested_by_id == user.pk
    context: dict[str, Any] = {
        "r": enrollment,
        "is_requester": is_requester,
        "approve_form": forms_given.get("approve_form") or forms.DecisionForm(prefix="approve"),
        "deny_form": forms_given.get("deny_form") or forms.DenyForm(),
        "collect_form": forms_given.get("collect_form") or forms.PfxCollectForm(),
        "can_decide": user.has_perm(APPROVE_REQUESTS) and enrollment.state == State.PENDING,
        "can_collect": enrollment.pfx_available and is_requester,
    }
    return render(request, "console/enrollment/request_detail.html", context)


@login_required
@require_GET
def request_detail(request: HttpRequest, pk: str) -> HttpResponse:
    return _request_page(request, _visible_request(request, pk))


@login_required
@require_POST
@permission_required(APPROVE_REQUESTS, raise_exception=True)
def request_approve(request: HttpRequest, pk: str) -> HttpResponse:
    enrollment = get_object_or_404(enrollment_selectors.enrollment_request_detail_queryset(), pk=pk)
    form = forms.DecisionForm(request.POST, prefix="approve")
    if not form.is_valid():
        return _request_page(request, enrollment, approve_form=form)
    try:
        enrollment = enrollment_services.enrollment_approve(
            request=enrollment, actor=request.user, comment=form.cleaned_data["comment"]
        )
    except EnrollmentRefused as exc:
        messages.error(request, f"Approved, but the certificate was not issued: {exc.message}.")
    except ServiceError as exc:
        _not_yours_raise(exc)
        messages.error(request, f"Not approved: {exc.message}.")
    else:
        messages.success(request, f"Request approved. {_submitted_message(enrollment)}")
    return redirect("console:enrollment-request-detail", pk=pk)


@login_required
@require_POST
@permission_required(APPROVE_REQUESTS, raise_exception=True)
def request_deny(request: HttpRequest, pk: str) -> HttpResponse:
    enrollment = get_object_or_404(enrollment_selectors.enrollment_request_detail_queryset(), pk=pk)
    form = forms.DenyForm(request.POST)
    if form.is_valid():
        try:
            enrollment_services.enrollment_deny(
                request=enrollment, actor=request.user, comment=form.cleaned_data["comment"]
            )
        except ServiceError as exc:
            _not_yours_raise(exc)
            if "comment" not in exc.fields:
                messages.error(request, f"Not denied: {exc.message}.")
                return redirect("console:enrollment-request-detail", pk=pk)
            forms.service_error_to_form(form, exc)
        else:
            messages.success(request, "Request denied.")
            return redirect("console:enrollment-request-detail", pk=pk)
    return _request_page(request, enrollment, deny_form=form)


@login_required
@require_POST
@permission_required(ADD_REQUESTS, raise_exception=True)
def request_collect(request: HttpRequest, pk: str) -> HttpResponse:
    """The PKCS#12 of an issued PFX request, once, for its requester."""
    enrollment = _visible_request(request, pk)
    form = forms.PfxCollectForm(request.POST)
    if form.is_valid():
        try:
            enrollment_services.enrollment_pfx_collect(
                request=enrollment,
                password=form.cleaned_data["password"],
                actor=request.user,
                keep=True,
            )
        except ServiceError as exc:
            _not_yours_raise(exc)
            if "password" in exc.fields:
                forms.service_error_to_form(form, exc)
            else:
                messages.error(request, f"Not collected: {exc.message}.")
                return redirect("console:enrollment-request-detail", pk=pk)
        else:
            messages.success(request, "PKCS#12 made: download it below, once.")
            return redirect("console:enrollment-request-pkcs12", pk=pk)
    return _request_page(request, enrollment, collect_form=form)


def _own_request(request: HttpRequest, pk: Any) -> EnrollmentRequest:
    enrollment = _visible_request(request, pk)
    if enrollment.requested_by_id is None or enrollment.requested_by_id != request.user.pk:
        raise PermissionDenied("only the requester receives the PKCS#12")
    return enrollment


@login_required
@require_GET
@permission_required(ADD_REQUESTS, raise_exception=True)
def request_pkcs12(request: HttpRequest, pk: str) -> HttpResponse:
    """The PKCS#12 hand-over page: the download, offered once to the requester; after it
    (or once it expired) the page says so and offers nothing."""
    enrollment = _own_request(request, pk)
    ready = enrollment_selectors.pfx_hand_over_ready(request=enrollment, owner=request.user)
    # A repeated submission (a double click) lands here while the first may still be
    # issuing: the page then asks again every second (htmx) rather than holding this
    # worker's thread until it has finished.
    context = {
        "r": enrollment,
        "ready": ready,
        "minutes": enrollment_services.PFX_HAND_OVER_SECONDS // 60,
    }
    response = render(request, "console/enrollment/pkcs12_hand_over.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
@permission_required(ADD_REQUESTS, raise_exception=True)
def request_pkcs12_download(request: HttpRequest, pk: str) -> HttpResponse:
    """The kept PKCS#12, once: deleted as it is sent."""
    enrollment = _own_request(request, pk)
    pfx = enrollment_services.pfx_hand_over_take(request=enrollment, owner=request.user)
    if pfx is None:
        messages.error(
            request, "This PKCS#12 was already downloaded, or it expired: it is handed out once."
        )
        return redirect("console:enrollment-request-pkcs12", pk=pk)
    return _pfx_download(pfx, enrollment)


@login_required
@require_GET
def request_certificate(request: HttpRequest, pk: str, chain: bool = False) -> HttpResponse:
    """The issued certificate (PEM), or its chain: the certificate and its issuers."""
    enrollment = _visible_request(request, pk)
    if not enrollment.certificate_pem:
        raise Http404("nothing was issued for this request")
    body = enrollment.certificate_pem + (enrollment.chain_pem if chain else "")
    stem = certificate_file_stem(common_name=_common_name(enrollment), sha256=enrollment.pk.hex)
    suffix = "-chain" if chain else ""
    return _download(body, filename=f"{stem}{suffix}.pem", content_type="application/x-pem-file")


# --- A certificate: revoke and renew ----------------------------------------------------------


def issued_request(certificate: Certificate) -> EnrollmentRequest | None:
    """The latest request that issued this certificate (what a renewal repeats), if any."""
    return enrollment_selectors.enrollment_request_issued(certificate=certificate)


def renew_form_for(original: EnrollmentRequest | None, data: Any = None) -> Any:
    if original is not None and original.method == EnrollmentRequest.Method.PFX:
        return forms.RenewPfxForm(data, key_archived=bool(original.private_key_pem))
    return forms.RenewCsrForm(data)


@login_required
@require_http_methods(["GET", "POST"])
@permission_required(
    ["inventory.view_certificate", "enrollment.change_enrollmentrequest"], raise_exception=True
)
def certificate_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for the reason and confirmation; POST revokes at the CA that issued it."""
    certificate = get_object_or_404(selectors.certificate_detail_queryset(), pk=pk)
    status = enrollment_services.certificate_revocation_status(certificate)
    form = forms.RevokeForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            enrollment_services.certificate_revoke(
                certificate=certificate, reason=form.cleaned_data["reason"], actor=request.user
            )
        except ServiceError as exc:
            forms.service_error_to_form(form, exc)
        else:
            messages.success(request, "Certificate revoked; the CRL and OCSP say so at once.")
            return redirect("console:certificate-detail", pk=certificate.pk)
    return render(
        request,
        "console/pki/certificate_revoke.html",
        {"certificate": certificate, "status": status, "form": form},
    )


@login_required
@require_http_methods(["GET", "POST"])
@permission_required(["inventory.view_certificate", ADD_REQUESTS], raise_exception=True)
def certificate_renew(request: HttpRequest, pk: int) -> HttpResponse:
    """Renew under the template it was issued with: with a CSR, or as PFX when it was
    enrolled as PFX (a new key, or the archived one)."""
    certificate = get_object_or_404(selectors.certificate_detail_queryset(), pk=pk)
    original = issued_request(certificate)
    form = renew_form_for(original, request.POST if request.method == "POST" else None)
    refused = ""
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            submitted = enrollment_services.certificate_renew(
                certificate=certificate,
                actor=request.user,
                csr_pem=data.get("csr", ""),
                reuse_key=bool(data.get("reuse_key")),
                password=data.get("password", ""),
                idempotency_key=data.get("idempotency_key") or None,
                keep_for=request.user,
            )
        except EnrollmentRefused as exc:
            form.add_error(None, forms.sentence(exc.message))
            refused = str(exc.details.get("enrollment_id", ""))
        except ServiceError as exc:
            _submission_error_to_form(form, exc)
        else:
            return _submitted_answer(request, submitted)
    if form.is_bound:
        forms.idempotency_key_renew(form)
    return render(
        request,
        "console/pki/certificate_renew.html",
        {"certificate": certificate, "original": original, "form": form, "refused": refused},
    )
