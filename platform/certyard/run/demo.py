"""Demo material for `make run`: a small CA and a few certificates in a PEM folder."""

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# (file name, common name, days until expiry) - spread over the dashboard's windows.
DEMO_CERTIFICATES = [
    ("www.pem", "www.demo.certyard.test", 5),
    ("api.pem", "api.demo.certyard.test", 25),
    ("mail.crt", "mail.demo.certyard.test", 80),
    ("intranet.cer", "intranet.demo.certyard.test", 300),
    ("legacy.pem", "legacy.demo.certyard.test", -3),
]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Certyard demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def demo_pem_folder_seed(*, folder: Path) -> list[Path]:
    """Write the demo certificates (each with its CA in the chain) unless already there."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return sorted(folder.iterdir())
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Certyard Demo CA"))
        .issuer_name(_name("Certyard Demo CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    written = []
    for file_name, common_name, days in DEMO_CERTIFICATES:
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=days) - dt.timedelta(days=365))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        path = folder / file_name
        path.write_bytes(_pem(leaf) + _pem(ca))
        written.append(path)
    return written
