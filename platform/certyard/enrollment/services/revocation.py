"""Revocation, at whichever CA issued the certificate, and what the platform knows of it."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from certyard.enrollment.gateways import gateway_call
from certyard.enrollment.models import GatewayRecord
from certyard.errors import ServiceError
from certyard.inventory.authorization import certificate_act_require
from certyard.inventory.models import Certificate
from certyard.inventory.services import certificate_revocation_record
from certyard.pki import services as pki_services
from certyard.pki.models import IssuedCertificate, RevocationReason
from certyard.workflows.services import event_emit
from certyard.x509 import der_to_pem
from handlers.base import EventKind
from handlers.gateways import CARecord, GatewayRevocation, RecordStatus
from handlers.gateways import RevocationReason as GatewayReason


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
            field="reason",
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
        certificate_revocation_record(
            certificate=certificate, reason=int(reason), revoked_at=record.revoked_at
        )
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
