"""Real keys, certificates and CSRs for tests, made with cryptography."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from orchestrators.protocol import session_signing_input

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
KeyKind = Literal["ec", "ec384", "ec521", "rsa", "rsa1024", "ed25519"]


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: PrivateKey

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


def private_key(kind: KeyKind = "ec") -> PrivateKey:
    """A fresh private key: ``ec`` is P-256, ``rsa`` is 2048 bits; the others say their size.

    ``rsa1024`` exists only so tests can prove such weak keys are refused.
    """
    match kind:
        case "ec":
            return ec.generate_private_key(ec.SECP256R1())
        case "ec384":
            return ec.generate_private_key(ec.SECP384R1())
        case "ec521":
            return ec.generate_private_key(ec.SECP521R1())
        case "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        case "rsa1024":
            return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        case "ed25519":
            return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}")


def build_csr(
    common_name: str | None,
    *dns_names: str,
    key: PrivateKey | None = None,
    ips: Sequence[str] = (),
    subject: x509.Name | None = None,
    subject_extra: Sequence[x509.NameAttribute] = (),
) -> x509.CertificateSigningRequest:
    """A signed CSR (a new P-256 key unless ``key`` is given).

    The subject is ``subject`` if given, else ``subject_extra`` followed by the common name
    (none when ``common_name`` is None). DNS names then ``ips`` go into a subjectAltName,
    which is left out when there are none. Ed25519 keys sign without a separate hash.
    """
    key = key or private_key()
    if subject is None:
        attributes = list(subject_extra)
        if common_name is not None:
            attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        subject = x509.Name(attributes)
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def csr(
    common_name: str | None,
    *dns_names: str,
    key: PrivateKey | None = None,
    ips: Sequence[str] = (),
    subject: x509.Name | None = None,
    subject_extra: Sequence[x509.NameAttribute] = (),
) -> str:
    """:func:`build_csr` as PEM text, the way people paste it."""
    request = build_csr(
        common_name, *dns_names, key=key, ips=ips, subject=subject, subject_extra=subject_extra
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


def csr_for(
    *dns_names: str,
    key: PrivateKey | None = None,
    ips: Sequence[str] = (),
    subject: x509.Name | None = None,
) -> str:
    """A PEM CSR for a server: the first DNS name is also the common name (unless
    ``subject`` replaces the whole subject); all names and ``ips`` are subjectAltNames."""
    return csr(dns_names[0], *dns_names, key=key, ips=ips, subject=subject)


def csr_der(common_name: str | None, *dns_names: str, key: PrivateKey | None = None) -> bytes:
    """:func:`build_csr` as DER bytes, the way a ``.der`` upload carries it."""
    return build_csr(common_name, *dns_names, key=key).public_bytes(serialization.Encoding.DER)


def csr_pem(key: PrivateKey, common_name: str) -> str:
    """A PEM CSR for ``key`` with only a common name (no subjectAltName)."""
    return csr(common_name, key=key)


def ca_material(
    common_name: str,
    *,
    ca: bool = True,
    key_usage: bool = True,
    key: PrivateKey | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed certificate (valid from yesterday for a year) and its key (a new P-256
    one unless given), as another PKI would hand them over; ``ca=False`` makes a leaf,
    ``key_usage=False`` leaves the keyUsage extension out."""
    key = key or private_key()
    name = _name(common_name)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(key, hashes.SHA256()), key


def certificate_pem(certificate: x509.Certificate) -> str:
    """The certificate as PEM text."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(
    key: PrivateKey,
    password: bytes | None = None,
    *,
    private_format: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
) -> str:
    """The private key as PEM text: PKCS#8 unless told otherwise, encrypted if ``password``."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, private_format, encryption).decode()


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
