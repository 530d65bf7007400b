"""The agent renews its own client certificate before it expires, without re-approval.

The platform says, in its session and heartbeat answers, from when to renew
(``renew_after``). From then on the agent:

1. makes a new EC P-256 key and keeps it as ``key.next.pem`` (mode 0600) *before*
   asking, so that a lost answer never loses the key the platform now knows;
2. sends ``POST certificate`` with a CSR for it, over its current session;
3. writes the new certificate, then renames ``key.next.pem`` over ``key.pem``;
4. signs its next session with the new key (the platform ended the old session when
   it replaced the certificate).

A renewal that fails is logged and tried again later, backing off; the current key
keeps working until its certificate expires. A renewal whose answer was lost is
recovered when the platform refuses the old key: the pending key is tried, and kept
if the platform accepts it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrators.agent.client import (
    IdentityRejected,
    PlatformClient,
    PlatformError,
    PlatformUnavailable,
)
from orchestrators.agent.config import (
    AgentConfig,
    ConfigError,
    generate_private_key,
    promote_pending_key,
    save_pending_key,
    write_private_file,
)

logger = logging.getLogger(__name__)

# After a failed try: wait this long, doubling up to the maximum.
RETRY_FIRST_SECONDS = 60.0
RETRY_MAX_SECONDS = 3600.0
# After a renewal, never renew again sooner, whatever the platform says (a platform that
# asks for renewal at once, e.g. a renew fraction of 1, must not make the agent loop).
MIN_INTERVAL_SECONDS = 300.0


def csr_for(private_key: ec.EllipticCurvePrivateKey, name: str) -> str:
    """A PEM CSR for ``private_key`` (the platform decides the certificate's subject)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64] or "agent")]))
        .sign(private_key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


class CertificateRenewer:
    """Renews the agent's client certificate when the platform says it is time."""

    def __init__(
        self,
        client: PlatformClient,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._config = config
        self._clock = clock
        self._monotonic = monotonic
        self._failures = 0
        self._not_before = 0.0  # monotonic time before which no renewal is tried

    def due(self) -> bool:
        """Whether the platform asks for a renewal now and no back-off holds it."""
        renew_after = self._client.renew_after
        if renew_after is None or self._monotonic() < self._not_before:
            return False
        return self._clock() >= renew_after.timestamp()

    def renew_if_due(self) -> bool:
        """Renew when due; True when it did. Never raises for a failed renewal (it is logged
        and tried again later), except :class:`IdentityRejected`: the platform no longer
        accepts this orchestrator at all."""
        if not self.due():
            return False
        try:
            self.renew()
        except IdentityRejected:
            raise
        except (PlatformError, PlatformUnavailable, ConfigError, OSError, ValueError) as exc:
            self._failures += 1
            delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (self._failures - 1))
            self._not_before = self._monotonic() + delay
            logger.warning(
                "client certificate renewal failed (%s); the current certificate keeps "
                "working until %s; trying again in %.0f s",
                exc,
                _when(self._client.certificate_not_after),
                delay,
            )
            return False
        self._failures = 0
        self._not_before = self._monotonic() + MIN_INTERVAL_SECONDS
        return True

    def renew(self) -> None:
        """One renewal (see the module); raises what went wrong."""
        # The key of a renewal that got no answer is asked for again: the platform may
        # have certified it already, and a CSR for the current key is accepted.
        key = self._config.pending_key()
        if key is None:
            key = generate_private_key()
            save_pending_key(self._config, key)
        answer = self._client.renew_certificate(csr_for(key, self._config.name))
        certificate = str(answer["certificate"])
        if _spki(x509.load_pem_x509_certificate(certificate.encode()).public_key()) != _spki(
            key.public_key()
        ):
            raise ValueError("the renewed certificate is not for the key the agent sent")
        promote_pending_key(self._config, certificate=certificate)
        ca_chain = _pem_text(answer.get("ca_chain"))
        if ca_chain:
            write_private_file(self._config.ca_path, ca_chain.encode())
        self._client.use_key(key)
        logger.info(
            "client certificate renewed for a new key; valid until %s; the next session is "
            "signed with the new key",
            _when(self._client.certificate_not_after),
        )

    def recover_pending_key(self) -> bool:
        """After the platform refused the agent's key: try the key of an unfinished renewal.

        True when the platform accepts it (it certified it, and the answer was lost): it
        becomes the agent's key. False when there is none, or the platform refuses it too.
        Raises :class:`IdentityRejected` when that key's certificate was revoked, and
        :class:`PlatformUnavailable` (the agent's key unchanged) when the platform cannot
        be asked now.
        """
        try:
            key = self._config.pending_key()
        except ConfigError as exc:
            logger.warning("the key of an unfinished renewal cannot be read: %s", exc)
            return False
        if key is None:
            return False
        current = self._config.private_key()
        self._client.use_key(key)
        try:
            self._client.open_session()
        except IdentityRejected as exc:
            self._client.use_key(current)
            if exc.revoked:
                raise
            return False
        except BaseException:
            self._client.use_key(current)
            raise
        # The certificate came with the lost answer: ask for one for this same key.
        promote_pending_key(self._config, certificate=None)
        logger.warning(
            "the platform had renewed this orchestrator's certificate for a new key, but the "
            "answer was lost; the agent now uses that key"
        )
        try:
            answer = self._client.renew_certificate(csr_for(key, self._config.name))
            write_private_file(self._config.cert_path, str(answer["certificate"]).encode())
            self._client.use_key(key)  # that renewal ended the session too
        except IdentityRejected:
            raise
        except (PlatformError, PlatformUnavailable, OSError) as exc:
            logger.warning("the new key's certificate could not be fetched (%s)", exc)
        return True


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _when(moment: dt.datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "its expiry"


def _pem_text(value: object) -> str | None:
    """A PEM answer field as text: the platform may send one string or a list of them."""
    if not value:
        return None
    if isinstance(value, list):
        return "".join(str(i) if str(i).endswith("\n") else f"{i}\n" for i in value)
    return str(value)
