"""What people see of a certificate: its extensions in words, and a safe file name."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from certyard.x509.extensions import decode_extension
from certyard.x509.oids import (
    OID_AIA,
    OID_BASIC_CONSTRAINTS,
    OID_CRL_DP,
    OID_EKU,
    OID_KEY_USAGE,
    OID_POLICIES,
    OID_SAN,
    SAN_GROUPS,
    oid_label,
)
from certyard.x509.parse import MAX_WARNINGS, certificate_parse, raw_extensions, split_certificate
from certyard.x509.text import storable


@dataclass(frozen=True, slots=True)
class CertificateDetails:
    """What the certificate page shows: the parsed fields and the main extensions, in words."""

    version: int | None
    serial_number: str
    signature_algorithm: str
    subject: str
    issuer: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    key_algorithm: str
    key_size: int | None
    sans: dict[str, list[str]]
    key_usage: list[str]
    extended_key_usage: list[str]
    basic_constraints: str | None
    policies: list[str]
    authority_information_access: list[str]
    crl_distribution_points: list[str]
    other_extensions: list[str]
    warnings: list[str]


_SHOWN_EXTENSIONS = frozenset(
    {
        OID_SAN,
        OID_KEY_USAGE,
        OID_EKU,
        OID_BASIC_CONSTRAINTS,
        OID_POLICIES,
        OID_AIA,
        OID_CRL_DP,
    }
)


def _basic_constraints_text(ca: bool, path_length: int | None) -> str:
    if not ca:
        return "not a CA"
    return "CA, no path length limit" if path_length is None else f"CA, path length {path_length}"


def certificate_details(der: bytes) -> CertificateDetails:
    """The certificate page's view: parsed fields plus the main extensions, in words.

    The extensions are decoded from the DER, so they show even when cryptography
    refuses the extension list; what cannot be decoded is listed in ``warnings``.
    Raises CertificateParseError (only) for bytes that are no certificate.
    """
    parsed = certificate_parse(der)
    warnings = list(parsed.parse_warnings)

    def warn(message: str) -> None:
        if message not in warnings and len(warnings) < MAX_WARNINGS:
            warnings.append(message)

    sans: dict[str, list[str]] = {}
    found: dict[str, object] = {}
    other_extensions: list[str] = []
    try:
        extensions = raw_extensions(split_certificate(parsed.der), warn)
    except Exception:
        warn("the extensions cannot be read")
        extensions = []
    for extension in extensions:
        if extension.oid in found:
            continue
        if extension.oid not in _SHOWN_EXTENSIONS:
            label = oid_label(extension.oid)
            other_extensions.append(f"{label} (critical)" if extension.critical else label)
        found[extension.oid] = decode_extension(extension, warn)
    for name in found.get(OID_SAN) or []:
        kind, _, value = str(name).partition(":")
        sans.setdefault(SAN_GROUPS.get(kind, kind), []).append(storable(value))
    basic_constraints = found.get(OID_BASIC_CONSTRAINTS)

    def texts(oid: str) -> list[str]:
        value = found.get(oid)
        return [storable(str(item)) for item in value] if isinstance(value, list) else []

    return CertificateDetails(
        version=parsed.version,
        serial_number=parsed.serial_number,
        signature_algorithm=parsed.signature_algorithm,
        subject=parsed.subject,
        issuer=parsed.issuer,
        not_before=parsed.not_before,
        not_after=parsed.not_after,
        key_algorithm=parsed.key_algorithm,
        key_size=parsed.key_size,
        sans=sans,
        key_usage=texts(OID_KEY_USAGE),
        extended_key_usage=texts(OID_EKU),
        basic_constraints=(
            _basic_constraints_text(*basic_constraints)
            if isinstance(basic_constraints, tuple)
            else None
        ),
        policies=texts(OID_POLICIES),
        authority_information_access=texts(OID_AIA),
        crl_distribution_points=texts(OID_CRL_DP),
        other_extensions=[storable(label) for label in other_extensions],
        warnings=[storable(message) for message in warnings],
    )


_UNSAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def certificate_file_stem(*, common_name: str, sha256: str) -> str:
    """A download file name from a certificate: its CN in safe characters, else its fingerprint.

    A CN is whatever the certificate says (newlines, quotes, slashes): never put it in
    a header as it is.
    """
    return _UNSAFE_FILE_NAME.sub("_", common_name).strip("._")[:100] or sha256[:16]
