"""An orchestrator's session: opened by proof of its own key, read back from its token, and
when it was last seen.
"""

import base64
import binascii
import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core import signing
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.pki.services import (
    issued_is_revoked,
)
from certyard.precompiled import PrecompiledQuery
from orchestrators.protocol import SESSION_ASSERTION_MAX_SKEW_SECONDS, session_signing_input

_SESSION_SALT = "certyard.orchestrator-session.v1"


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    expires_in: int
    orchestrator: Orchestrator


def certificate_revoked_error() -> ServiceError:
    return ServiceError(
        "this orchestrator's certificate was revoked",
        code="identity_rejected",
        http_status=401,
        # For agents: register again; no retry with the same key can succeed.
        details={"reason": "certificate_revoked"},
    )


def orchestrator_session_open(
    *, orchestrator_id: str, issued_at: int, nonce: str, signature_b64: str
) -> Session:
    """A short-lived bearer token for an agent that proved it holds its certified key.

    Refused when the orchestrator's current certificate was revoked.
    """
    refused = ServiceError(
        "the assertion does not prove possession of a registered orchestrator key",
        code="identity_rejected",
        http_status=401,
    )
    orchestrator = Orchestrator.objects.filter(pk=orchestrator_id).first()
    if orchestrator is None or not orchestrator.has_identity:
        raise refused
    now = int(timezone.now().timestamp())
    if abs(now - issued_at) > SESSION_ASSERTION_MAX_SKEW_SECONDS:
        raise ServiceError(
            "the assertion's issued_at is too far from the platform's clock; "
            "check the agent's time",
            code="clock_skew",
            http_status=401,
        )
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key = serialization.load_pem_public_key(orchestrator.public_key_pem.encode())
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise refused
        public_key.verify(
            signature,
            session_signing_input(
                orchestrator_id=str(orchestrator.pk), issued_at=issued_at, nonce=nonce
            ),
            ec.ECDSA(hashes.SHA256()),
        )
    except (binascii.Error, ValueError, InvalidSignature) as exc:
        raise refused from exc
    # Only the key's holder learns that its certificate was revoked.
    if issued_is_revoked(certificate_pem=orchestrator.certificate_pem):
        raise certificate_revoked_error()
    # Each assertion is good once: issued_at must move forward.
    if not Orchestrator.objects.filter(pk=orchestrator.pk, last_assertion_at__lt=issued_at).update(
        last_assertion_at=issued_at, last_seen=timezone.now()
    ):
        raise ServiceError(
            "this assertion was already used; sign a new one", code="replayed", http_status=401
        )
    token = signing.dumps(
        {"o": str(orchestrator.pk), "c": identity_fingerprint(orchestrator)}, salt=_SESSION_SALT
    )
    return Session(token, settings.CERTYARD_SESSION_SECONDS, orchestrator)


# The orchestrator a session names: on every request an agent makes.
_orchestrator_by_pk = PrecompiledQuery(lambda pk: Orchestrator.objects.filter(pk=pk), pk=uuid.UUID)


def orchestrator_from_session_token(token: str) -> Orchestrator | None:
    """The orchestrator a valid, unexpired session token belongs to, if its key still stands.

    Raises ``identity_rejected`` (401) when its certificate was revoked since: the agent
    is locked out at once, and told why.
    """
    try:
        claims = signing.loads(token, salt=_SESSION_SALT, max_age=settings.CERTYARD_SESSION_SECONDS)
    except signing.BadSignature:
        return None
    try:
        orchestrator_id = uuid.UUID(claims.get("o"))
    except (TypeError, ValueError):
        return None  # not a session this platform signed
    found = _orchestrator_by_pk(pk=orchestrator_id)
    orchestrator = found[0] if found else None
    if orchestrator is None or not orchestrator.has_identity:
        return None
    if identity_fingerprint(orchestrator) != claims.get("c"):
        return None  # reset, renewed or registered again since: a new certificate
    if issued_is_revoked(certificate_pem=orchestrator.certificate_pem):  # one indexed query
        raise certificate_revoked_error()
    return orchestrator


def identity_fingerprint(orchestrator: Orchestrator) -> str:
    """Names the current certificate: every registration and renewal issues a new one."""
    return hashlib.sha256(orchestrator.certificate_pem.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class CertificateTimes:
    not_after: dt.datetime | None
    renew_after: dt.datetime | None


def orchestrator_certificate_times(orchestrator: Orchestrator) -> CertificateTimes:
    """When the orchestrator's certificate expires, and from when its agent should renew it:
    once less than ``CERTYARD_AGENT_RENEW_FRACTION`` of its lifetime is left."""
    if not orchestrator.certificate_pem:
        return CertificateTimes(orchestrator.certificate_not_after, None)
    try:
        certificate = x509.load_pem_x509_certificate(orchestrator.certificate_pem.encode())
    except ValueError:
        return CertificateTimes(orchestrator.certificate_not_after, None)
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    fraction = min(max(float(settings.CERTYARD_AGENT_RENEW_FRACTION), 0.0), 1.0)
    return CertificateTimes(not_after, not_after - (not_after - not_before) * fraction)


# Longer than a long poll (30 s at most): an agent that only polls writes every other poll.
_SEEN_WRITE_INTERVAL = dt.timedelta(seconds=60)


def orchestrator_seen(*, orchestrator: Orchestrator) -> None:
    """Note the agent is alive, without writing on every request."""
    now = timezone.now()
    if orchestrator.last_seen is None or now - orchestrator.last_seen > _SEEN_WRITE_INTERVAL:
        Orchestrator.objects.filter(pk=orchestrator.pk).update(last_seen=now)
        orchestrator.last_seen = now
