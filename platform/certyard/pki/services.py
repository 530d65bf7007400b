"""Writes of the PKI app: creating the platform's CAs and issuing from them."""

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.db import IntegrityError, transaction

from certyard.pki.models import CertificateAuthority

ORCHESTRATOR_CA_NAME = "Certyard Orchestrator CA"
_CA_LIFETIME = dt.timedelta(days=3650)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ca_create(*, name: str, purpose: str) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Certyard"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return CertificateAuthority.objects.create(
        name=name,
        purpose=purpose,
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        private_key_pem=key_pem,
    )


def orchestrator_ca_get_or_create() -> CertificateAuthority:
    """The CA that certifies orchestrator keys, created on first use."""
    purpose = CertificateAuthority.Purpose.ORCHESTRATORS
    ca = CertificateAuthority.objects.filter(purpose=purpose).first()
    if ca is not None:
        return ca
    try:
        with transaction.atomic():
            return _ca_create(name=ORCHESTRATOR_CA_NAME, purpose=purpose)
    except IntegrityError:  # another process created it first
        return CertificateAuthority.objects.get(purpose=purpose)


def ca_issue_client_certificate(
    *,
    ca: CertificateAuthority,
    csr: x509.CertificateSigningRequest,
    common_name: str,
    days: int,
) -> x509.Certificate:
    """Issue a TLS client certificate for the CSR's key, with a subject we choose.

    The CSR's requested subject and extensions are ignored on purpose: the platform,
    not the requester, decides what the certificate says.
    """
    ca_certificate = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.encode(), password=None)
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Certyard orchestrators"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
                ]
            )
        )
        .issuer_name(ca_certificate.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_certificate.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA384())
    )
