"""Parsing certificates once, into the fields the inventory keeps."""

import base64
import binascii
import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

_PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*(?P<body>[A-Za-z0-9+/=\s]*?)\s*-----END CERTIFICATE-----"
)


class CertificateParseError(ValueError):
    """The input is not a certificate we can read; the message says why."""


@dataclass(frozen=True, slots=True)
class ParsedCertificate:
    der: bytes
    sha256: str
    sha1: str
    serial_number: str
    issuer: str
    subject: str
    common_name: str
    sans: list[str]
    not_before: dt.datetime
    not_after: dt.datetime
    key_algorithm: str
    key_size: int | None
    signature_algorithm: str
    is_ca: bool
    self_signed: bool


def sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def pem_to_der(pem: str) -> bytes:
    """The DER of a single PEM CERTIFICATE block; raises CertificateParseError."""
    if not isinstance(pem, str):
        raise CertificateParseError("a certificate must be a PEM string")
    match = _PEM_BLOCK.search(pem)
    if match is None:
        raise CertificateParseError("no PEM CERTIFICATE block found")
    try:
        der = base64.b64decode("".join(match.group("body").split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertificateParseError("the PEM block is not valid base64") from exc
    if not der:
        raise CertificateParseError("the PEM block is empty")
    return der


def pem_blocks_to_der(text: str) -> list[bytes]:
    """Every CERTIFICATE block in a PEM text, in order."""
    return [pem_to_der(m.group(0)) for m in _PEM_BLOCK.finditer(text)]


def _key_description(certificate: x509.Certificate) -> tuple[str, int | None]:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return "Other", None


def _sans(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[str] = []
    for name in extension.value:
        if isinstance(name, x509.DNSName):
            names.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            names.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            names.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            names.append(f"URI:{name.value}")
    return names


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _storable(text: str) -> str:
    """Certificates may carry NULs (null-prefix attacks); no database column takes them."""
    return text.replace("\x00", "\\x00")


def certificate_parse(der: bytes) -> ParsedCertificate:
    """Every field the inventory keeps, from one DER certificate."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        subject = certificate.subject.rfc4514_string()
        issuer = certificate.issuer.rfc4514_string()
        common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(common_names[0].value) if common_names else ""
        key_algorithm, key_size = _key_description(certificate)
        signature_oid = certificate.signature_algorithm_oid
        sans = _sans(certificate)
        is_ca = _is_ca(certificate)
    except ValueError as exc:
        raise CertificateParseError(f"not a valid X.509 certificate ({exc})") from exc
    return ParsedCertificate(
        der=der,
        sha256=sha256_hex(der),
        sha1=hashlib.sha1(der, usedforsecurity=False).hexdigest(),
        serial_number=format(certificate.serial_number, "x"),
        issuer=_storable(issuer),
        subject=_storable(subject),
        common_name=_storable(common_name)[:255],
        sans=[_storable(name) for name in sans],
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        key_algorithm=key_algorithm,
        key_size=key_size,
        signature_algorithm=getattr(signature_oid, "_name", None) or signature_oid.dotted_string,
        is_ca=is_ca,
        self_signed=certificate.issuer == certificate.subject,
    )


_UNSAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def certificate_file_stem(*, common_name: str, sha256: str) -> str:
    """A download file name from a certificate: its CN in safe characters, else its fingerprint.

    A CN is whatever the certificate says (newlines, quotes, slashes): never put it in
    a header as it is.
    """
    return _UNSAFE_FILE_NAME.sub("_", common_name).strip("._")[:100] or sha256[:16]


def der_to_pem(der: bytes) -> str:
    body = base64.b64encode(der).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"
