"""Real keys, certificates and CSRs for tests, made with cryptography."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from orchestrators.protocol import session_signing_input


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue(
    common_name: str,
    *,
    issuer: Issued | None = None,
    days: int = 30,
    sans: tuple[str, ...] = (),
    ca: bool = False,
    rsa_bits: int | None = None,
) -> Issued:
    """A certificate valid from a year before its expiry, ``days`` from now (negative: expired)."""
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        if rsa_bits
        else ec.generate_private_key(ec.SECP256R1())
    )
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.certificate.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - dt.timedelta(days=365))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    certificate = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return Issued(certificate, key)


def agent_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, common_name: str) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(common_name))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def session_assertion(
    key: ec.EllipticCurvePrivateKey,
    orchestrator_id: str,
    issued_at: int,
    nonce: str = "nonce-123456",
) -> dict[str, object]:
    signature = key.sign(
        session_signing_input(orchestrator_id=orchestrator_id, issued_at=issued_at, nonce=nonce),
        ec.ECDSA(hashes.SHA256()),
    )
    return {
        "orchestrator_id": orchestrator_id,
        "issued_at": issued_at,
        "nonce": nonce,
        "signature": base64.b64encode(signature).decode(),
    }
