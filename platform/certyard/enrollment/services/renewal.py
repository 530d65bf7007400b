"""Renewal of a certificate Certyard issued, under the template it was issued with."""

from __future__ import annotations

from typing import Any

from certyard.enrollment.authorization import archived_key_reuse_require
from certyard.enrollment.models import EnrollmentRequest
from certyard.enrollment.services.pfx import enrollment_submit_pfx
from certyard.enrollment.services.recording import State
from certyard.enrollment.services.submit import Submitted, enrollment_submit_csr
from certyard.errors import ServiceError
from certyard.inventory.authorization import certificate_act_require
from certyard.inventory.models import Certificate
from certyard.pki import crypto
from certyard.workflows.services import event_emit
from handlers.base import EventKind


def certificate_renew(
    *,
    certificate: Certificate,
    actor: Any,
    csr_pem: str = "",
    reuse_key: bool = False,
    password: str = "",
    idempotency_key: Any = None,
    keep_for: Any = None,
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
        # A repeated renewal form (a double click) answers with the first renewal.
        "idempotency_key": idempotency_key,
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
            field="csr",
        )
    reuse_key_pem = ""
    if reuse_key:
        if not original.private_key_pem:
            raise ServiceError(
                "the key was not archived, so it cannot be reused: renew with a new key",
                field="reuse_key",
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
        keep_for=keep_for,
        **renew,
    )
    if reuse_key_pem and not submitted.request.replayed:
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
