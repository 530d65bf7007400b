"""Issuing: by a built-in CA, or through a CA gateway (never inside a transaction), and
asking the CA again about a request it had not issued yet."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.db import transaction
from django.utils import timezone

from certyard.enrollment import policy
from certyard.enrollment.authorization import request_act_require
from certyard.enrollment.gateways import GatewayFailed, gateway_call
from certyard.enrollment.models import EnrollmentRequest, GatewayRecord, Template
from certyard.enrollment.services.recording import (
    ENROLLMENT_SOURCE,
    State,
    _certificate_event,
    _fail,
)
from certyard.errors import ServiceError
from certyard.inventory.ingest import certificates_record
from certyard.inventory.metadata import metadata_values_set, user_source
from certyard.inventory.models import Certificate
from certyard.inventory.services import certificate_supersession_record
from certyard.pki import crypto
from certyard.pki import services as pki_services
from certyard.x509 import der_to_pem
from handlers.gateways import CARecord, EnrollmentType, GatewayEnrollment, RecordStatus

logger = logging.getLogger(__name__)


CertificateIssuedHook = Callable[[EnrollmentRequest], None]
_issued_hooks: list[CertificateIssuedHook] = []


def certificate_issued_hook_register(hook: CertificateIssuedHook) -> None:
    """Register ``hook(enrollment)``, called when a request becomes issued, or is denied.

    Contract: called once the transaction that recorded the issuance commits (built-in
    CA or gateway, at submission, after approval or after a refresh), or the denial, with
    the request as saved (read its ``state``); never for a batch issuance. A hook that
    raises is logged and the others still run: the issuance stands. Registering the same
    function again is a no-op (apps register in ``AppConfig.ready``; the deployment app
    delivers to target stores).
    """
    if hook not in _issued_hooks:
        _issued_hooks.append(hook)


def issued_notify(request: EnrollmentRequest) -> None:
    """Run the issued hooks for ``request`` (its issuance or denial has committed)."""
    for hook in list(_issued_hooks):
        try:
            hook(request)
        except Exception:
            logger.exception("certificate issued hook %r failed for %s", hook, request.pk)


def _issue(request: EnrollmentRequest, template: Template, checked: policy.CheckedRequest) -> None:
    if template.ca_id is not None:
        _issue_builtin(request, template, checked)
    else:
        _issue_through_gateway(request, template, csr=checked.csr)


def _issue_builtin(
    request: EnrollmentRequest, template: Template, checked: policy.CheckedRequest
) -> None:
    try:
        # One transaction; the request is written once, issued (nothing issued refers to
        # it before then).
        with transaction.atomic():
            issued = pki_services.certificate_issue(
                ca=template.ca,  # type: ignore[arg-type]
                public_key=checked.csr.public_key(),  # type: ignore[arg-type]
                profile=_profile(template, checked),
            )
            _issued_record(
                request,
                certificate=issued.certificate,
                pem=issued.pem,
                chain_pem=issued.chain_pem,
                chain_ders=_chain_ders(issued.chain_pem),
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
    pem: str,
    chain_pem: str,
    chain_ders: list[bytes],
    ca_request_id: str,
) -> None:
    """Within the caller's transaction: the request issued, the certificate in the
    inventory with its metadata, and the events.

    The certificate arrives read once, with its PEM and its chain's DER: the inventory
    takes the parsed object instead of reading the DER again.
    """
    der = certificate.public_bytes(serialization.Encoding.DER)
    sha256 = certificate.fingerprint(hashes.SHA256()).hex()
    recorded = certificates_record([[der, *chain_ders]], loaded={sha256: certificate})
    request.certificate_id = recorded.ids[sha256]
    request.certificate_pem = pem
    request.chain_pem = chain_pem
    request.serial_number = format(certificate.serial_number, "x")
    request.ca_request_id = ca_request_id[:500]
    request.state = State.ISSUED
    request.issued_at = timezone.now()
    request.failure_reason = ""
    request.save()
    if request.renewal_of_id is not None:
        # The renewed certificate is superseded by this one, linked both ways.
        certificate_supersession_record(
            old=request.renewal_of,  # type: ignore[arg-type]
            new=Certificate.objects.only("pk", "superseded_by").get(pk=request.certificate_id),
        )
    if request.metadata:
        source = user_source(request.requested_by) if request.requested_by else ENROLLMENT_SOURCE
        metadata_values_set(
            certificate_ids=[request.certificate_id], values=request.metadata, source=source
        )
    _certificate_event(request, certificate)
    transaction.on_commit(lambda: issued_notify(request))


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


def _issue_through_gateway(
    request: EnrollmentRequest,
    template: Template,
    *,
    csr: x509.CertificateSigningRequest | None = None,
) -> None:
    """Ask the template's CA gateway; ``csr`` is the request's CSR as the policy read it."""
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
    _record_apply(request, template, record, csr=csr)


def _record_apply(
    request: EnrollmentRequest,
    template: Template,
    record: CARecord,
    *,
    csr: x509.CertificateSigningRequest | None = None,
) -> None:
    """What the CA answered, for this request: issued, waiting, or failed.

    ``csr``: the request's CSR already parsed (when issuing right after the policy check);
    read from the request otherwise (a refresh).
    """
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
        chain_ders = _chain_ders(chain)
    except ValueError:
        _fail(request, "the CA gateway returned no readable certificate", status=502)
    requested_key = (csr or policy.csr_parse(request.csr_pem)).public_key()
    if _spki(certificate.public_key()) != _spki(requested_key):
        _fail(request, "the CA returned a certificate for another key; it was not kept", status=502)
    with transaction.atomic():
        _issued_record(
            request,
            certificate=certificate,
            pem=crypto.certificate_pem(certificate),
            chain_pem=chain,
            chain_ders=chain_ders,
            ca_request_id=record.ca_request_id,
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
