"""Writes of enrollment: submit, approve, deny, issue, renew, revoke, and templates.

Every request is recorded before anything is checked, so a refused one stays visible
with its reason (state ``failed``); nothing is issued for it. A gateway is never called
inside a database transaction: the request is saved, the CA is asked, the answer saved.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.db import transaction
from django.utils import timezone

from certyard.bulk import instances_insert
from certyard.enrollment import policy
from certyard.enrollment.authorization import (
    archived_key_reuse_require,
    request_act_require,
    request_decide_require,
)
from certyard.enrollment.gateways import GatewayFailed, gateway_call
from certyard.enrollment.models import EnrollmentRequest, GatewayRecord, Template
from certyard.errors import ServiceError
from certyard.inventory.authorization import certificate_act_require
from certyard.inventory.ingest import certificates_record
from certyard.inventory.metadata import metadata_values_check, metadata_values_set, user_source
from certyard.inventory.models import Certificate, MetadataField
from certyard.inventory.parsing import der_to_pem
from certyard.pki import crypto
from certyard.pki import services as pki_services
from certyard.pki.models import IssuedCertificate, KeyAlgorithm, RevocationReason
from certyard.workflows.services import EventSpec, event_emit, events_emit
from handlers.base import EventKind
from handlers.gateways import (
    CARecord,
    EnrollmentType,
    GatewayEnrollment,
    GatewayRevocation,
    RecordStatus,
)
from handlers.gateways import RevocationReason as GatewayReason

State = EnrollmentRequest.State
_PFX_PASSWORD_MIN = 8
ENROLLMENT_SOURCE = "enrollment"


class EnrollmentRefused(ServiceError):
    """A request was refused and recorded as failed; ``details`` names it."""


# --- Recording and refusing ---------------------------------------------------------------


def _fail(
    request: EnrollmentRequest,
    reason: str,
    *,
    code: str = "enrollment_refused",
    status: int = 400,
    field: str = "",
) -> NoReturn:
    """Record the request as failed (inserted if it was never saved, or rolled back);
    ``field`` names the input at fault, for the API's and the console's error."""
    request.state = State.FAILED
    request.failure_reason = reason
    request.private_key_pem = ""  # a refused request keeps no key
    exists = not request._state.adding and (
        EnrollmentRequest.objects.filter(pk=request.pk).exists()
    )
    request._state.adding = not exists
    request.save(force_insert=not exists)
    details = {"enrollment_id": str(request.pk), **({"field": field} if field else {})}
    raise EnrollmentRefused(reason, code=code, http_status=status, details=details)


def _actor(user: Any) -> Any:
    return user if getattr(user, "pk", None) else None


def _required_metadata(template: Template) -> list[str]:
    required = set(template.required_metadata)
    required.update(
        MetadataField.objects.filter(required_at_enrollment=True).values_list("name", flat=True)
    )
    return sorted(required)


def _metadata_check(template: Template, values: Any) -> dict[str, Any]:
    if values in (None, ""):
        values = {}
    if not isinstance(values, Mapping):
        raise policy.PolicyError("metadata must be an object of field names and values")
    missing = [
        name for name in _required_metadata(template) if str(values.get(name, "")).strip() == ""
    ]
    if missing:
        raise policy.PolicyError(
            f"metadata required at enrollment is missing: {', '.join(missing)}"
        )
    try:
        metadata_values_check(values)
    except ServiceError as exc:
        raise policy.PolicyError(f"metadata: {exc.message}") from exc
    return dict(values)


def _event_spec(kind: EventKind, request: EnrollmentRequest, **data: Any) -> EventSpec:
    return EventSpec(
        kind=kind,
        subject_type="enrollment",
        subject_id=str(request.pk),
        subject_label=request.subject[:300],
        data={
            "enrollment_id": str(request.pk),
            "template": request.template_name,
            "type": request.type,
            "subject": request.subject,
            # The CN is one of the names a rule must judge, beside the SANs.
            "common_name": crypto.common_name(request.subject),
            "sans": list(request.sans),
            "requested_by": request.requested_by.get_username() if request.requested_by else "",
            **data,
        },
    )


def _event(kind: EventKind, request: EnrollmentRequest, **data: Any) -> None:
    events_emit([_event_spec(kind, request, **data)])


def _certificate_event_spec(request: EnrollmentRequest, certificate: x509.Certificate) -> EventSpec:
    kind = (
        EventKind.CERTIFICATE_RENEWED
        if request.type == EnrollmentRequest.Type.RENEW
        else EventKind.CERTIFICATE_ISSUED
    )
    sha256 = certificate.fingerprint(hashes.SHA256()).hex()
    return EventSpec(
        kind=kind,
        subject_type="certificate",
        subject_id=sha256,
        subject_label=request.subject[:300],
        data={
            "sha256": sha256,
            "enrollment_id": str(request.pk),
            "template": request.template_name,
            "serial_number": request.serial_number,
            "subject": request.subject,
            "sans": list(request.sans),
            "not_after": certificate.not_valid_after_utc.isoformat(),
            "renewal_of": request.renewal_of.sha256 if request.renewal_of else "",
            "requested_by": request.requested_by.get_username() if request.requested_by else "",
        },
    )


def _certificate_event(request: EnrollmentRequest, certificate: x509.Certificate) -> None:
    events_emit([_certificate_event_spec(request, certificate)])


# --- Submitting ----------------------------------------------------------------------------


def _template_find(request: EnrollmentRequest, name: Any) -> Template:
    template = Template.objects.select_related("ca", "gateway").filter(name=str(name)).first()
    if template is None:
        known = ", ".join(Template.objects.filter(enabled=True).values_list("name", flat=True))
        _fail(request, f"there is no template named {name!r} (templates: {known or 'none'})")
    if not template.enabled:
        _fail(request, f"the template {template.name!r} is disabled", status=409)
    request.template = template
    return template


def _new_request(
    *,
    template_name: Any,
    actor: Any,
    method: str,
    type: str = EnrollmentRequest.Type.NEW,
    renewal_of: Certificate | None = None,
) -> EnrollmentRequest:
    """A request in memory: saved once, issued or refused, so one commit records it."""
    return EnrollmentRequest(
        template_name=str(template_name or "")[:100],
        state=State.APPROVED,  # provisional; set for real once checked
        method=method,
        type=type,
        renewal_of=renewal_of,
        requested_by=_actor(actor),
    )


def _checked(
    request: EnrollmentRequest, template: Template, csr_pem: str, metadata: Any
) -> policy.CheckedRequest:
    try:
        csr = policy.csr_parse(csr_pem)
        checked = policy.request_check(template, csr)
        request.metadata = _metadata_check(template, metadata)
    except policy.PolicyError as exc:
        _fail(request, str(exc))
    request.csr_pem = csr_pem.strip()
    request.subject = checked.subject_text
    request.sans = list(checked.san_texts)
    request.key_algorithm = checked.key_algorithm
    return checked


@dataclass(frozen=True, slots=True)
class Submitted:
    request: EnrollmentRequest
    pfx: bytes | None = None  # PKCS#12 handed over once, when issued at once


def _proceed(
    request: EnrollmentRequest, template: Template, checked: policy.CheckedRequest
) -> None:
    """Wait for approval, or issue now."""
    if template.require_approval:
        with transaction.atomic():
            request.state = State.PENDING
            request.save()
            _event(EventKind.ENROLLMENT_PENDING, request)
        return
    _issue(request, template, checked)


def enrollment_submit_csr(
    *,
    template_name: Any,
    csr_pem: Any,
    metadata: Any = None,
    actor: Any = None,
    type: str = EnrollmentRequest.Type.NEW,
    renewal_of: Certificate | None = None,
) -> EnrollmentRequest:
    """Enroll a CSR under a template. Refusals raise EnrollmentRefused, recorded as failed."""
    request = _new_request(
        template_name=template_name,
        actor=actor,
        method=EnrollmentRequest.Method.CSR,
        type=type,
        renewal_of=renewal_of,
    )
    template = _template_find(request, template_name)
    checked = _checked(request, template, csr_pem if isinstance(csr_pem, str) else "", metadata)
    _proceed(request, template, checked)
    return request


BATCH_MAX = 1000


def enrollments_submit_csr_batch(
    *, template_name: Any, csr_pems: list[Any], metadata: Any = None, actor: Any = None
) -> list[EnrollmentRequest]:
    """Enroll many CSRs under one built-in-CA template at once (bulk issuance).

    Each CSR is checked exactly as :func:`enrollment_submit_csr` checks it and gets a
    request of its own; refused ones are recorded as failed with their reason, the others
    are issued (or left pending approval) together, in one transaction with one insert per
    table. A template that issues through a gateway takes the CSRs one by one.
    """
    if not isinstance(csr_pems, list) or not 1 <= len(csr_pems) <= BATCH_MAX:
        raise ServiceError(f"send 1 to {BATCH_MAX:,} CSRs", details={"field": "csrs"})
    template = Template.objects.select_related("ca").filter(name=str(template_name)).first()
    if template is not None and template.gateway_id is not None and template.enabled:
        return [_submit_catching(template_name, pem, metadata, actor) for pem in csr_pems]
    common_error = ""
    values: dict[str, Any] = {}
    if template is None:
        common_error = f"there is no template named {template_name!r}"
    elif not template.enabled:
        common_error = f"the template {template.name!r} is disabled"
    else:
        try:
            values = _metadata_check(template, metadata)
        except policy.PolicyError as exc:
            common_error = str(exc)
    actor = _actor(actor)
    requests: list[EnrollmentRequest] = []
    accepted: list[tuple[EnrollmentRequest, policy.CheckedRequest]] = []
    for pem in csr_pems:
        request = EnrollmentRequest(
            template=template,
            template_name=str(template_name or "")[:100],
            method=EnrollmentRequest.Method.CSR,
            requested_by=actor,
            state=State.FAILED,
        )
        requests.append(request)
        if common_error:
            request.failure_reason = common_error
            continue
        try:
            checked = policy.request_check(template, policy.csr_parse(pem))  # type: ignore[arg-type]
        except policy.PolicyError as exc:
            request.failure_reason = str(exc)
            continue
        request.csr_pem = pem.strip()
        request.subject = checked.subject_text
        request.sans = list(checked.san_texts)
        request.key_algorithm = checked.key_algorithm
        request.metadata = values
        accepted.append((request, checked))
    with transaction.atomic():
        if accepted and template is not None and template.require_approval:
            for request, _ in accepted:
                request.state = State.PENDING
            instances_insert(EnrollmentRequest, requests)
            events_emit(_event_spec(EventKind.ENROLLMENT_PENDING, r) for r, _ in accepted)
            return requests
        signed = _batch_issue(template, accepted, values) if accepted else []  # type: ignore[arg-type]
        instances_insert(EnrollmentRequest, requests)
        events_emit(
            _certificate_event_spec(request, certificate) for request, certificate in signed
        )
    return requests


def _batch_issue(
    template: Template,
    accepted: list[tuple[EnrollmentRequest, policy.CheckedRequest]],
    values: dict[str, Any],
) -> list[tuple[EnrollmentRequest, x509.Certificate]]:
    """Sign the accepted requests; what was issued, for the events."""
    try:
        issued = pki_services.certificates_issue(
            ca=template.ca,  # type: ignore[arg-type]
            requests=[
                (checked.csr.public_key(), _profile(template, checked))  # type: ignore[misc]
                for _, checked in accepted
            ],
        )
    except ServiceError as exc:
        for request, _ in accepted:
            request.failure_reason = exc.message
        return []
    chain = _chain_ders(issued[0].chain_pem) if issued else []
    recorded = certificates_record(
        [[one.certificate.public_bytes(serialization.Encoding.DER), *chain] for one in issued]
    )
    now = timezone.now()
    for (request, _), one in zip(accepted, issued, strict=True):
        request.certificate_id = recorded.ids[one.record.sha256]
        request.certificate_pem = one.pem
        request.chain_pem = one.chain_pem
        request.serial_number = one.record.serial_number
        request.ca_request_id = one.record.serial_number
        request.state = State.ISSUED
        request.issued_at = now
    if values:
        source = (
            user_source(accepted[0][0].requested_by)
            if accepted[0][0].requested_by
            else ENROLLMENT_SOURCE
        )
        metadata_values_set(
            certificate_ids=[r.certificate_id for r, _ in accepted], values=values, source=source
        )
    return [(request, one.certificate) for (request, _), one in zip(accepted, issued, strict=True)]


def _submit_catching(template_name: Any, pem: Any, metadata: Any, actor: Any) -> EnrollmentRequest:
    try:
        return enrollment_submit_csr(
            template_name=template_name, csr_pem=pem, metadata=metadata, actor=actor
        )
    except EnrollmentRefused as exc:
        return EnrollmentRequest.objects.get(pk=exc.details["enrollment_id"])


def _pfx_password_check(request: EnrollmentRequest, password: Any) -> str:
    if not isinstance(password, str) or len(password) < _PFX_PASSWORD_MIN:
        _fail(request, f"give a PKCS#12 password of at least {_PFX_PASSWORD_MIN} characters")
    return password


def _csr_for(key: crypto.PrivateKey, subject: x509.Name, sans: list[x509.GeneralName]) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, crypto.signing_hash(key))  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _general_names(texts: list[str]) -> list[x509.GeneralName]:
    import ipaddress

    names: list[x509.GeneralName] = []
    for text in texts:
        kind, _, value = str(text).partition(":")
        if not value:
            kind, value = "DNS", kind
        value = value.strip()
        if kind.upper() == "IP":
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(value)))
            except ValueError as exc:
                raise policy.PolicyError(f"{value!r} is not an IP address") from exc
        elif kind.upper() == "DNS":
            try:
                names.append(x509.DNSName(value))
            except ValueError as exc:
                raise policy.PolicyError(f"{value!r} is not a DNS name") from exc
        else:
            raise policy.PolicyError(f"{text!r}: names are DNS:… or IP:…")
    return names


def _pfx(request: EnrollmentRequest, password: str) -> bytes:
    key = serialization.load_pem_private_key(request.private_key_pem.encode(), password=None)
    certificate = x509.load_pem_x509_certificate(request.certificate_pem.encode())
    chain = x509.load_pem_x509_certificates(request.chain_pem.encode()) if request.chain_pem else []
    return pkcs12.serialize_key_and_certificates(
        request.subject.encode()[:64] or b"certyard",
        key,  # type: ignore[arg-type]
        certificate,
        chain or None,
        serialization.BestAvailableEncryption(password.encode()),
    )


def _pfx_hand_over(request: EnrollmentRequest, template: Template | None, password: str) -> bytes:
    """The PKCS#12, once: marked collected, the key dropped unless the template archives."""
    pfx = _pfx(request, password)
    request.pfx_collected_at = timezone.now()
    if template is None or not template.archive_keys:
        request.private_key_pem = ""
    request.save(update_fields=["pfx_collected_at", "private_key_pem", "updated_at"])
    return pfx


def enrollment_submit_pfx(
    *,
    template_name: Any,
    common_name: Any,
    sans: Any = (),
    key_algorithm: Any = KeyAlgorithm.EC_P256,
    password: Any = "",
    metadata: Any = None,
    actor: Any = None,
    type: str = EnrollmentRequest.Type.NEW,
    renewal_of: Certificate | None = None,
    reuse_key_pem: str = "",
    hold: bool = False,
) -> Submitted:
    """The platform makes the key and returns it with the certificate as a PKCS#12, once.

    The key is held encrypted only while the request waits for approval (and kept only if
    the template archives keys). When approval is needed, or ``hold`` is set (a renewal a
    handler asked for), the requester collects the PKCS#12 with
    :func:`enrollment_pfx_collect` once it is issued.
    """
    request = _new_request(
        template_name=template_name,
        actor=actor,
        method=EnrollmentRequest.Method.PFX,
        type=type,
        renewal_of=renewal_of,
    )
    template = _template_find(request, template_name)
    if not hold:
        password = _pfx_password_check(request, password)
    if not reuse_key_pem and key_algorithm not in KeyAlgorithm.values:
        _fail(request, f"unknown key type {key_algorithm!r} ({', '.join(KeyAlgorithm.values)})")
    # The platform writes this CSR itself: a name cryptography would refuse (over 64
    # bytes in UTF-8, though 64 characters or fewer) is refused and recorded here, and
    # the CSR then goes through the same name policy as a requester's.
    problem = crypto.name_value_error("CN", common_name)
    if problem is not None:
        _fail(request, problem, field="common_name")
    if isinstance(sans, str):
        sans = [s for s in re.split(r"[\s,]+", sans) if s]
    try:
        names = _general_names(list(sans or []))
    except policy.PolicyError as exc:
        _fail(request, str(exc), field="sans")
    if reuse_key_pem:
        key = serialization.load_pem_private_key(reuse_key_pem.encode(), password=None)
    else:
        if key_algorithm not in template.allowed_key_types:
            _fail(
                request,
                f"template {template.name!r} does not allow {key_algorithm} keys "
                f"(it allows {', '.join(template.allowed_key_types) or 'none'})",
            )
        key = crypto.key_generate(str(key_algorithm))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr_pem = _csr_for(key, subject, names)  # type: ignore[arg-type]
    request.private_key_pem = crypto.key_pem(key)  # type: ignore[arg-type]
    request.key_archived = template.archive_keys
    checked = _checked(request, template, csr_pem, metadata)
    _proceed(request, template, checked)
    if request.state == State.ISSUED and not hold:
        return Submitted(request, _pfx_hand_over(request, template, password))
    return Submitted(request)


def enrollment_pfx_collect(*, request: EnrollmentRequest, password: Any, actor: Any) -> bytes:
    """The PKCS#12 of an approved PFX request, once, for its requester."""
    if not isinstance(password, str) or len(password) < _PFX_PASSWORD_MIN:
        raise ServiceError(
            f"give a PKCS#12 password of at least {_PFX_PASSWORD_MIN} characters",
            details={"field": "password"},
        )
    with transaction.atomic():
        locked = (
            EnrollmentRequest.objects.select_for_update(of=("self",))
            .select_related("template")
            .get(pk=request.pk)
        )
        if locked.method != EnrollmentRequest.Method.PFX:
            raise ServiceError("this request was enrolled with a CSR: there is no PKCS#12")
        if locked.requested_by_id is None or locked.requested_by_id != getattr(actor, "pk", None):
            raise ServiceError(
                "only the requester can collect the PKCS#12",
                code="not_requester",
                http_status=403,
            )
        if locked.state != State.ISSUED:
            raise ServiceError(
                f"the request is {locked.get_state_display().lower()}, not issued",
                code="not_issued",
                http_status=409,
            )
        if locked.pfx_collected_at is not None or not locked.private_key_pem:
            raise ServiceError(
                "the PKCS#12 was already collected; it is handed out once",
                code="already_collected",
                http_status=410,
            )
        return _pfx_hand_over(locked, locked.template, password)


# --- Approval ------------------------------------------------------------------------------


def _pending_lock(request: EnrollmentRequest) -> EnrollmentRequest:
    locked = (
        EnrollmentRequest.objects.select_for_update(of=("self",))
        .select_related("template", "requested_by")
        .get(pk=request.pk)
    )
    if locked.state != State.PENDING:
        raise ServiceError(
            f"the request is {locked.get_state_display().lower()}, not pending",
            code="not_pending",
            http_status=409,
        )
    return locked


def _decider(actor: Any, handler: str) -> str:
    return actor.get_username() if actor is not None else f"handler:{handler}"


def enrollment_approve(
    *, request: EnrollmentRequest, actor: Any, comment: str = "", handler: str = ""
) -> EnrollmentRequest:
    """Approve a pending request, then issue it.

    ``actor`` is the approving person, who cannot be the requester; a handler's rule
    approves with ``actor=None`` and its registration's name as ``handler``.
    """
    if actor is None and not handler:
        raise ServiceError("an approval names who approves")
    with transaction.atomic():
        locked = _pending_lock(request)
        if actor is not None and locked.requested_by_id == actor.pk:
            raise ServiceError(
                "you cannot approve your own request; another approver must",
                code="self_approval",
                http_status=403,
            )
        request_decide_require(actor, locked)
        locked.state = State.APPROVED
        locked.decided_by = actor
        locked.decided_by_handler = "" if actor is not None else handler[:200]
        locked.decided_at = timezone.now()
        locked.decision_comment = (comment or "").strip()[:2000]
        locked.save()
        _event(
            EventKind.ENROLLMENT_APPROVED,
            locked,
            decided_by=_decider(actor, handler),
            comment=locked.decision_comment,
        )
    template = locked.template
    if template is None:
        _fail(locked, "the template was deleted while the request waited")
    try:
        checked = policy.request_check(template, policy.csr_parse(locked.csr_pem))
    except policy.PolicyError as exc:  # the template changed while it waited
        _fail(locked, f"no longer allowed by the template: {exc}")
    _issue(locked, template, checked)
    return locked


def enrollment_deny(
    *, request: EnrollmentRequest, actor: Any, comment: str, handler: str = ""
) -> EnrollmentRequest:
    """Deny a pending request, with a comment saying why (a person, or a handler's rule)."""
    comment = (comment or "").strip()
    if not comment:
        raise ServiceError("say why the request is denied", details={"field": "comment"})
    if actor is None and not handler:
        raise ServiceError("a denial names who denies")
    with transaction.atomic():
        locked = _pending_lock(request)
        request_decide_require(actor, locked)
        locked.state = State.DENIED
        locked.decided_by = actor
        locked.decided_by_handler = "" if actor is not None else handler[:200]
        locked.decided_at = timezone.now()
        locked.decision_comment = comment[:2000]
        locked.private_key_pem = ""
        locked.save()
        _event(
            EventKind.ENROLLMENT_DENIED,
            locked,
            decided_by=_decider(actor, handler),
            comment=comment,
        )
    return locked


# --- What handlers ask for (Platform.approve_enrollment, ...) ------------------------------


def _pending_for_handler(enrollment_id: str) -> EnrollmentRequest:
    request = EnrollmentRequest.objects.filter(pk=enrollment_id).first()
    if request is None:
        raise ServiceError(f"there is no enrollment request {enrollment_id}")
    if request.state != State.PENDING:
        raise ServiceError(
            f"enrollment request {enrollment_id} is {request.get_state_display().lower()}, "
            "not pending"
        )
    return request


def enrollment_approve_for_handler(*, enrollment_id: str, comment: str = "", by: str) -> None:
    """Carry out a handler's ``approve_enrollment`` after its run's transaction commits
    (issuing may ask a CA, never inside a transaction); a refused issuance is recorded
    on the request."""
    request = _pending_for_handler(enrollment_id)

    def approve() -> None:
        # A refusal is recorded on the request (failed, with its reason), or it was
        # decided meanwhile.
        with contextlib.suppress(ServiceError):
            enrollment_approve(request=request, actor=None, comment=comment, handler=by)

    transaction.on_commit(approve)


def enrollment_deny_for_handler(*, enrollment_id: str, comment: str, by: str) -> None:
    enrollment_deny(
        request=_pending_for_handler(enrollment_id), actor=None, comment=comment, handler=by
    )


def certificate_renew_for_handler(
    *, certificate_sha256: str, new_key: bool = True, by: str
) -> None:
    """Carry out a handler's ``renew_certificate``: once per certificate (several
    expiry warnings, one per location, ask for one renewal)."""
    certificate = Certificate.objects.filter(sha256=str(certificate_sha256).lower()).first()
    if certificate is None:
        raise ServiceError(f"the inventory holds no certificate {certificate_sha256}")
    under_way = certificate.renewal_requests.exclude(state__in=[State.FAILED, State.DENIED])
    if under_way.exists():
        return
    original = (
        EnrollmentRequest.objects.filter(certificate=certificate, state=State.ISSUED)
        .order_by("-issued_at")
        .first()
    )
    if original is None:
        raise ServiceError(f"Certyard did not issue {certificate}: it cannot renew it")
    if original.method != EnrollmentRequest.Method.PFX:
        raise ServiceError(
            f"{certificate} was enrolled with a CSR: its key is not the platform's, so its "
            "holder must send a new CSR"
        )
    if not new_key and not original.private_key_pem:
        raise ServiceError(f"the key of {certificate} was not archived: renew with a new key")

    def renew() -> None:
        with contextlib.suppress(ServiceError):  # a refused renewal is recorded on its request
            certificate_renew(certificate=certificate, actor=None, reuse_key=not new_key)

    transaction.on_commit(renew)


# --- Issuing -------------------------------------------------------------------------------


def _issue(request: EnrollmentRequest, template: Template, checked: policy.CheckedRequest) -> None:
    if template.ca_id is not None:
        _issue_builtin(request, template, checked)
    else:
        _issue_through_gateway(request, template)


def _issue_builtin(
    request: EnrollmentRequest, template: Template, checked: policy.CheckedRequest
) -> None:
    try:
        with transaction.atomic():
            request.save()
            issued = pki_services.certificate_issue(
                ca=template.ca,  # type: ignore[arg-type]
                public_key=checked.csr.public_key(),  # type: ignore[arg-type]
                profile=_profile(template, checked),
            )
            _issued_record(
                request,
                certificate=issued.certificate,
                chain_pem=issued.chain_pem,
                ca_request_id=issued.record.serial_number,
            )
    except ServiceError as exc:
        _fail(request, exc.message, code=exc.code, status=exc.http_status)


def _profile(template: Template, checked: policy.CheckedRequest) -> crypto.Profile:
    return crypto.Profile(
        subject=checked.subject,
        validity=dt.timedelta(days=template.validity_days),
        sans=checked.sans,
        key_usage=tuple(template.key_usage),
        extended_key_usage=tuple(template.extended_key_usage),
    )


def _chain_ders(chain_pem: str) -> list[bytes]:
    if not chain_pem.strip():
        return []
    return [
        c.public_bytes(serialization.Encoding.DER)
        for c in x509.load_pem_x509_certificates(chain_pem.encode())
    ]


def _issued_record(
    request: EnrollmentRequest,
    *,
    certificate: x509.Certificate,
    chain_pem: str,
    ca_request_id: str,
) -> None:
    """Within the caller's transaction: the request issued, the certificate in the
    inventory with its metadata, and the events."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    recorded = certificates_record([[der, *_chain_ders(chain_pem)]])
    sha256 = certificate.fingerprint(hashes.SHA256()).hex()
    request.certificate_id = recorded.ids[sha256]
    request.certificate_pem = crypto.certificate_pem(certificate)
    request.chain_pem = chain_pem
    request.serial_number = format(certificate.serial_number, "x")
    request.ca_request_id = ca_request_id[:500]
    request.state = State.ISSUED
    request.issued_at = timezone.now()
    request.failure_reason = ""
    request.save()
    if request.metadata:
        source = user_source(request.requested_by) if request.requested_by else ENROLLMENT_SOURCE
        metadata_values_set(
            certificate_ids=[request.certificate_id], values=request.metadata, source=source
        )
    _certificate_event(request, certificate)


def _gateway_enrollment(request: EnrollmentRequest, template: Template) -> GatewayEnrollment:
    prior = _prior_record(request.renewal_of) if request.renewal_of else None
    return GatewayEnrollment(
        request_id=str(request.pk),
        type=EnrollmentType(request.type),
        product_id=template.product_id,
        csr_pem=request.csr_pem,
        subject=request.subject,
        sans=tuple(request.sans),
        validity_days=template.validity_days,
        product_parameters=dict(template.product_parameters),
        prior_ca_request_id=prior.ca_request_id if prior else None,
        prior_certificate_pem=(
            der_to_pem(bytes(request.renewal_of.der)) if request.renewal_of and prior else None
        ),
    )


def _prior_record(certificate: Certificate | None) -> GatewayRecord | None:
    if certificate is None:
        return None
    return GatewayRecord.objects.filter(certificate=certificate).first()


def _issue_through_gateway(request: EnrollmentRequest, template: Template) -> None:
    registration = template.gateway
    assert registration is not None
    request.save()  # visible (approved, issuing) while the CA is asked
    enrollment = _gateway_enrollment(request, template)
    try:
        record = gateway_call(
            registration, "enroll", lambda g: g.enroll(enrollment), expect=CARecord
        )
    except GatewayFailed as exc:
        _fail(request, exc.message, code=exc.code, status=exc.http_status)
    _record_apply(request, template, record)


def _record_apply(request: EnrollmentRequest, template: Template, record: CARecord) -> None:
    """What the CA answered, for this request: issued, waiting, or failed."""
    registration = template.gateway
    assert registration is not None
    if record.status == RecordStatus.FAILED:
        _fail(request, f"the CA refused the request: {record.message or 'no reason given'}")
    if record.status == RecordStatus.PENDING:
        request.state = State.AWAITING_CA
        request.ca_request_id = record.ca_request_id[:500]
        request.failure_reason = record.message
        request.save()
        return
    try:
        certificate = x509.load_pem_x509_certificate((record.certificate_pem or "").encode())
        chain = "".join(record.chain_pem)
        _chain_ders(chain)
    except ValueError:
        _fail(request, "the CA gateway returned no readable certificate", status=502)
    requested_key = policy.csr_parse(request.csr_pem).public_key()
    if _spki(certificate.public_key()) != _spki(requested_key):
        _fail(request, "the CA returned a certificate for another key; it was not kept", status=502)
    with transaction.atomic():
        _issued_record(
            request, certificate=certificate, chain_pem=chain, ca_request_id=record.ca_request_id
        )
        GatewayRecord.objects.update_or_create(
            gateway=registration,
            ca_request_id=record.ca_request_id[:500],
            defaults={
                "status": RecordStatus.ISSUED,
                "serial_number": request.serial_number,
                "product_id": record.product_id or template.product_id,
                "certificate_id": request.certificate_id,
            },
        )


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def enrollment_refresh(*, request: EnrollmentRequest, actor: Any = None) -> EnrollmentRequest:
    """Ask the CA again about a request it had not issued yet (``actor``: its requester,
    its template's groups, or ``manage_any_enrollmentrequest``)."""
    request_act_require(actor, request)
    if request.state != State.AWAITING_CA:
        raise ServiceError("only a request waiting for its CA can be refreshed", http_status=409)
    template = request.template
    if template is None or template.gateway is None:
        _fail(request, "the request's template or gateway is gone")
    try:
        record = gateway_call(
            template.gateway,
            "fetch a record",
            lambda g: g.fetch(request.ca_request_id),
            expect=CARecord,
        )
    except GatewayFailed as exc:
        if exc.permanent:
            _fail(request, exc.message, code=exc.code, status=exc.http_status)
        raise
    _record_apply(request, template, record)
    return request


# --- Renewal -------------------------------------------------------------------------------


def certificate_renew(
    *,
    certificate: Certificate,
    actor: Any,
    csr_pem: str = "",
    reuse_key: bool = False,
    password: str = "",
) -> Submitted:
    """Renew a certificate Certyard issued, under the template it was issued with.

    With a CSR, the new certificate is for the CSR's key (the same key or a new one). A
    certificate enrolled as PFX is renewed as PFX: with a new key, or with the same one
    when its template archived it (``reuse_key``).
    """
    original = (
        EnrollmentRequest.objects.filter(certificate=certificate, state=State.ISSUED)
        .select_related("template")
        .order_by("-issued_at")
        .first()
    )
    if original is None:
        raise ServiceError(
            "Certyard did not issue this certificate: enroll a new one under a template",
            code="not_issued_here",
            http_status=409,
        )
    # Who may renew: whoever may act on the certificate (its enrollee, its template's or
    # stores' groups, inventory.manage_any_certificate); a handler (actor None) acts on
    # the enrollee's behalf.
    certificate_act_require(actor, certificate)
    # A handler renews on the original requester's behalf: they collect the new PKCS#12.
    held = actor is None
    renew = {
        "type": EnrollmentRequest.Type.RENEW,
        "renewal_of": certificate,
        "actor": actor if actor is not None else original.requested_by,
    }
    if csr_pem:
        request = enrollment_submit_csr(
            template_name=original.template_name,
            csr_pem=csr_pem,
            metadata=original.metadata,
            **renew,
        )
        return Submitted(request)
    if original.method != EnrollmentRequest.Method.PFX:
        raise ServiceError(
            "this certificate was enrolled with a CSR: send a CSR for the renewal "
            "(for the same key or a new one)",
            details={"field": "csr"},
        )
    reuse_key_pem = ""
    if reuse_key:
        if not original.private_key_pem:
            raise ServiceError(
                "the key was not archived, so it cannot be reused: renew with a new key",
                details={"field": "reuse_key"},
            )
        # The key is its enrollee's: anyone else needs the key-recovery permission, and
        # is refused before anything is written.
        archived_key_reuse_require(actor, original)
        reuse_key_pem = original.private_key_pem
    submitted = enrollment_submit_pfx(
        template_name=original.template_name,
        common_name=crypto.common_name(original.subject),
        sans=list(original.sans),
        key_algorithm=original.key_algorithm,
        password=password,
        metadata=original.metadata,
        reuse_key_pem=reuse_key_pem,
        hold=held,
        **renew,
    )
    if reuse_key_pem:
        _key_reuse_audit(certificate, original, submitted.request, actor)
    return submitted


def _key_reuse_audit(
    certificate: Certificate,
    original: EnrollmentRequest,
    renewal: EnrollmentRequest,
    actor: Any,
) -> None:
    """Who reused whose archived key, for which certificate: in the event log, never the
    key itself."""
    enrollee = original.requested_by.get_username() if original.requested_by else ""
    reused_by = actor.get_username() if actor is not None else "handler"
    event_emit(
        kind=EventKind.ARCHIVED_KEY_REUSED,
        subject_type="certificate",
        subject_id=certificate.sha256,
        subject_label=(certificate.common_name or certificate.subject)[:300],
        data={
            "sha256": certificate.sha256,
            "enrollment_id": str(renewal.pk),
            "key_enrollment_id": str(original.pk),
            "template": original.template_name,
            "reused_by": reused_by,
            "key_enrollee": enrollee,
            "recovery": actor is not None and actor.pk != original.requested_by_id,
        },
    )


# --- Revocation ----------------------------------------------------------------------------


def certificate_revoke(
    *, certificate: Certificate, reason: Any = RevocationReason.UNSPECIFIED, actor: Any = None
) -> None:
    """Revoke at whichever CA issued it: a built-in CA, or through its gateway.

    ``actor`` must be allowed to act on the certificate (``certificate_act_require``).
    """
    certificate_act_require(actor, certificate)
    try:
        reason = RevocationReason(int(reason))
    except (TypeError, ValueError) as exc:
        raise ServiceError(
            f"{reason!r} is not an RFC 5280 revocation reason (0-6, 8-10)",
            details={"field": "reason"},
        ) from exc
    issued = IssuedCertificate.objects.filter(sha256=certificate.sha256).first()
    if issued is not None:
        pki_services.certificate_revoke(issued=issued, reason=reason, actor=actor)
        return
    record = GatewayRecord.objects.select_related("gateway").filter(certificate=certificate).first()
    if record is None:
        raise ServiceError(
            "Certyard did not issue this certificate and no CA gateway reported it: revoke it "
            "at the CA that issued it",
            code="not_issued_here",
            http_status=409,
        )
    if record.revoked_at is not None:
        raise ServiceError(
            "this certificate is already revoked", code="already_revoked", http_status=409
        )
    revocation = GatewayRevocation(
        ca_request_id=record.ca_request_id,
        certificate_pem=der_to_pem(bytes(certificate.der)),
        serial_number=certificate.serial_number.lower(),
        reason=GatewayReason(int(reason)),
    )
    gateway_call(record.gateway, "revoke", lambda g: g.revoke(revocation), expect=CARecord)
    with transaction.atomic():
        record.status = RecordStatus.REVOKED
        record.revoked_at = timezone.now()
        record.revocation_reason = int(reason)
        record.save()
        event_emit(
            kind=EventKind.CERTIFICATE_REVOKED,
            subject_type="certificate",
            subject_id=certificate.sha256,
            subject_label=certificate.common_name or certificate.subject,
            data={
                "sha256": certificate.sha256,
                "serial_number": certificate.serial_number.lower(),
                "ca": record.gateway.name,
                "reason": reason.label,
                "reason_code": int(reason),
                "revoked_by": getattr(actor, "username", "") or "",
            },
        )


def certificate_revocation_status(certificate: Certificate) -> dict[str, Any] | None:
    """How the platform knows this certificate's revocation, if it issued or synced it."""
    issued = (
        IssuedCertificate.objects.filter(sha256=certificate.sha256).select_related("ca").first()
    )
    if issued is not None:
        return {
            "issuer": issued.ca.name,
            "revoked_at": issued.revoked_at,
            "reason": issued.get_revocation_reason_display() if issued.revoked_at else "",
        }
    record = GatewayRecord.objects.filter(certificate=certificate).select_related("gateway").first()
    if record is not None:
        return {
            "issuer": record.gateway.name,
            "revoked_at": record.revoked_at,
            "reason": record.get_revocation_reason_display() if record.revoked_at else "",
        }
    return None
