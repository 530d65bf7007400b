"""PEM framing: certificate blocks in text to DER, and DER back to a PEM block."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator

from certyard.x509 import der as derlib
from certyard.x509.der import DerError
from certyard.x509.errors import CertificateParseError

_PEM_BEGIN = re.compile(r"-----BEGIN (CERTIFICATE|X509 CERTIFICATE|TRUSTED CERTIFICATE)-----")


def _pem_bodies(text: str) -> Iterator[str]:
    """The body of each certificate PEM block, in order; linear in the text's length."""
    position = 0
    labels_without_end: set[str] = set()
    while match := _PEM_BEGIN.search(text, position):
        label = match[1]
        position = match.end()
        if label in labels_without_end:
            continue
        end_marker = f"-----END {label}-----"
        end = text.find(end_marker, position)
        if end < 0:
            labels_without_end.add(label)
            continue
        # BEGIN twice before one END: the block is the last BEGIN's.
        inner = text.rfind(match[0], position, end)
        yield text[position if inner < 0 else inner + len(match[0]) : end]
        position = end + len(end_marker)


def _outer_element(der: bytes) -> bytes:
    """``der`` cut after its first element, when that element's header is readable."""
    try:
        end = derlib.read_element(der).end
    except DerError:
        return der
    return der[:end] if end < len(der) else der


def _pem_body_der(body: str) -> bytes:
    if ":" in body:  # RFC 1421 headers ("Proc-Type: ..."): base64 never holds a colon
        body = "\n".join(line for line in body.splitlines() if ":" not in line)
    compact = "".join(body.split())
    if not compact:
        raise CertificateParseError("the PEM block is empty")
    if len(compact) % 4 in (2, 3) and not compact.endswith("="):
        compact += "=" * (-len(compact) % 4)
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertificateParseError("the PEM block is not valid base64") from exc
    if not der:
        raise CertificateParseError("the PEM block is empty")
    return _outer_element(der)


def pem_to_der(pem: str) -> bytes:
    """The DER of the first certificate PEM block in ``pem``; raises CertificateParseError.

    Takes CERTIFICATE, X509 CERTIFICATE and TRUSTED CERTIFICATE blocks, with text
    around them and any line endings. The DER is cut after the certificate's outer
    element (a TRUSTED CERTIFICATE carries trust data after it), so its hash is
    the fingerprint ``certificate_parse`` computes.
    """
    if not isinstance(pem, str):
        raise CertificateParseError("a certificate must be a PEM string")
    body = next(_pem_bodies(pem), None)
    if body is None:
        raise CertificateParseError("no PEM certificate block found")
    return _pem_body_der(body)


def pem_blocks_to_der(text: str) -> list[bytes]:
    """Every certificate block in a PEM text, in order; raises CertificateParseError."""
    if not isinstance(text, str):
        raise CertificateParseError("a certificate must be a PEM string")
    return [_pem_body_der(body) for body in _pem_bodies(text)]


def der_to_pem(der: bytes) -> str:
    """A DER certificate as one CERTIFICATE PEM block (64-character lines)."""
    body = base64.b64encode(der).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"
