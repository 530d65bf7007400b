"""An orchestrator renews or revokes its own client certificate."""

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.conf import settings
from django.db import transaction

from certyard.errors import Conflict, ServiceError
from certyard.fleet.models import Orchestrator
from certyard.fleet.services.hooks import lockout_hooks_run
from certyard.fleet.services.registration import csr_load, identity_fields
from certyard.fleet.services.sessions import (
    CertificateTimes,
    certificate_revoked_error,
    identity_fingerprint,
    orchestrator_certificate_times,
)
from certyard.pki.models import IssuedCertificate, RevocationReason
from certyard.pki.services import (
    ca_issue_client_certificate,
    certificate_revoke,
    issued_is_revoked,
    orchestrator_ca_get_or_create,
)


@dataclass(frozen=True, slots=True)
class Renewal:
    orchestrator: Orchestrator
    certificate_pem: str
    ca_chain: list[str]
    times: CertificateTimes


def orchestrator_certificate_renew(*, orchestrator: Orchestrator, csr_pem: str) -> Renewal:
    """A new client certificate for the agent, named as before; its status does not change.

    The agent renews before its certificate expires, without an administrator. The CSR is
    normally for a new key, but one for the current key is accepted too (an agent that
    lost the answer to a renewal asks again for the key it then kept). The previous
    certificate is not revoked: it is superseded and expires on its own. Sessions are
    bound to the certificate they were opened with, so the agent's session ends here: it
    opens a new one, signed by the key of the new certificate.

    A disapproved orchestrator may not renew; a new one may (it is waiting for approval,
    and its certificate should not lapse meanwhile).
    """
    csr = csr_load(csr_pem)
    public_key = csr.public_key()
    ca = orchestrator_ca_get_or_create()
    with transaction.atomic():
        locked = Orchestrator.objects.select_for_update().filter(pk=orchestrator.pk).first()
        if locked is None or not locked.has_identity:
            raise ServiceError(
                "this orchestrator was reset or deleted; it must register again",
                code="identity_rejected",
                http_status=401,
            )
        if locked.status == Orchestrator.Status.DISAPPROVED:
            raise ServiceError(
                "this orchestrator is disapproved: it may not renew its certificate",
                code="disapproved",
                http_status=403,
            )
        if identity_fingerprint(locked) != identity_fingerprint(orchestrator):
            raise Conflict(
                "the certificate was renewed by another request meanwhile; open a new session "
                "with the key of the current certificate",
                code="renewed_meanwhile",
            )
        if issued_is_revoked(certificate_pem=locked.certificate_pem):
            raise certificate_revoked_error()
        certificate = ca_issue_client_certificate(
            ca=ca, csr=csr, common_name=locked.name, days=settings.CERTYARD_AGENT_CERT_DAYS
        )
        fields = identity_fields(public_key, certificate)
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save(update_fields=list(fields))
    return Renewal(
        locked, locked.certificate_pem, [ca.certificate_pem], orchestrator_certificate_times(locked)
    )


def orchestrator_certificate_revoke(
    *, orchestrator: Orchestrator, reason: int = RevocationReason.UNSPECIFIED, actor: Any = None
) -> Orchestrator:
    """Revoke the orchestrator's current client certificate: its agent is locked out at once.

    Its open sessions and any new one are refused, jobs it held go back to the queue, and
    the certificate is listed on the orchestrator CA's CRL. The orchestrator keeps its
    status, stores and history; its agent can work again only by registering again (no
    reset needed). ``reason`` is an RFC 5280 CRLReason code.
    """
    with transaction.atomic():
        locked = Orchestrator.objects.select_for_update().get(pk=orchestrator.pk)
        if not locked.has_identity:
            raise Conflict(
                "this orchestrator has no certificate (it was reset): there is nothing to revoke",
                code="not_registered",
            )
        try:
            certificate = x509.load_pem_x509_certificate(locked.certificate_pem.encode())
        except ValueError as exc:
            raise Conflict(
                "this orchestrator's certificate cannot be read; reset the orchestrator instead",
                code="certificate_unreadable",
            ) from exc
        sha256 = certificate.fingerprint(hashes.SHA256()).hex()
        issued = IssuedCertificate.objects.filter(sha256=sha256).first()
        if issued is None:
            raise Conflict(
                "this orchestrator's certificate is not among those the platform's CAs record "
                "(it was issued before they were kept); reset the orchestrator to lock it out",
                code="certificate_unknown",
            )
        revoked = certificate_revoke(issued=issued, reason=reason, actor=actor)
        who = getattr(actor, "username", "") or "the platform"
        locked.last_error = (
            f"client certificate (serial {revoked.serial_number}) revoked by {who} on "
            f"{revoked.revoked_at:%Y-%m-%d %H:%M %Z}, reason: "
            f"{RevocationReason(revoked.revocation_reason).label}; "
            "the agent must register again"
        )
        locked.save(update_fields=["last_error"])
        lockout_hooks_run(locked)
    return locked
