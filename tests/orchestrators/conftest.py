"""Fixtures for the agent's tests: real keys and certificates made with cryptography."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Issued:
    """A certificate with its key, as PEM text."""

    certificate: str
    key: str
    der: bytes


def _issue(
    common_name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return certificate, key


def _as_issued(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    return Issued(
        certificate=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        der=certificate.public_bytes(serialization.Encoding.DER),
    )


@pytest.fixture(scope="session")
def ca() -> tuple[Issued, x509.Name, ec.EllipticCurvePrivateKey]:
    certificate, key = _issue("Test Root CA", None, ca=True)
    return _as_issued(certificate, key), certificate.subject, key


@pytest.fixture
def issue(ca: tuple[Issued, x509.Name, ec.EllipticCurvePrivateKey]) -> Callable[[str], Issued]:
    """Issue a leaf certificate for a common name, signed by the test CA."""
    _, ca_name, ca_key = ca

    def make(common_name: str) -> Issued:
        return _as_issued(*_issue(common_name, (ca_name, ca_key), ca=False))

    return make


@pytest.fixture
def ca_certificate(ca: tuple[Issued, x509.Name, ec.EllipticCurvePrivateKey]) -> Issued:
    return ca[0]


@pytest.fixture
def agent_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())
