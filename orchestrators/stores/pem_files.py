"""Reading certificate files by content: PEM, DER, PKCS#7 and PKCS#12.

The ``PEM`` store's readers, shared by its writer (``pem_write``) and discovery; the formats
are described in ``orchestrators.stores.pem``.
"""

from __future__ import annotations

import binascii
import fnmatch
import hashlib
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7, pkcs12

# der_to_pem lives with the public helpers for store types; imported here for the
# callers that know it from this module.
from orchestrators.helpers import der_to_pem
from orchestrators.sdk import (
    InventoryEntry,
)

DEFAULT_FILE_PATTERNS = "*.pem,*.crt,*.cer,*.der,*.p7b,*.p7c,*.p12,*.pfx"
# The suffixes of the default patterns.
CERTIFICATE_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".der", ".p7b", ".p7c", ".p12", ".pfx"})
# No certificate file comes near this; a bigger file matching the patterns is not read.
MAX_FILE_BYTES = 16 * 1024 * 1024
OUTSIDE_ROOTS = "is a link to a place outside the orchestrator's store roots; not read"

_BEGIN_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_END_CERTIFICATE = "-----END CERTIFICATE-----"
_CERTIFICATE_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"})
# A block's body never holds "-": a BEGIN without its END does not swallow the next block.
_PEM_BLOCK = re.compile(r"-----BEGIN ([^\n-]+)-----([^-]*)-----END \1-----")
_PEM_BEGIN = re.compile(r"-----BEGIN ([^\n-]+)-----")
_PRIVATE_KEY_BEGIN = re.compile(r"-----BEGIN [^\n-]*PRIVATE KEY-----")

NOT_CERTIFICATE_DATA = "is not PEM, DER, PKCS#7 or PKCS#12 data"


@dataclass(frozen=True, slots=True)
class FoundCertificate:
    """One certificate found in a file.

    Attributes:
        pem: What is sent to the platform: a ``-----BEGIN CERTIFICATE-----`` block.
        der: Its DER, or None when the PEM body is not base64 (then ``pem`` is the block as
            found, passed through for the platform to judge).
        parsed: The certificate, when ``cryptography`` already loaded it (PKCS#7, PKCS#12).
    """

    pem: str
    der: bytes | None
    parsed: x509.Certificate | None = field(default=None, compare=False, repr=False)

    @property
    def fingerprint(self) -> str | None:
        """Lowercase hex SHA-256 of the DER, or None without DER."""
        return hashlib.sha256(self.der).hexdigest() if self.der else None

    def load(self) -> x509.Certificate | None:
        """The certificate as ``cryptography`` reads it, or None when it cannot."""
        if self.parsed is not None or self.der is None:
            return self.parsed
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. a negative serial: not ours to judge
                return x509.load_der_x509_certificate(self.der)
        except Exception:  # an odd certificate: the platform judges it, not the agent
            return None


@dataclass(frozen=True, slots=True)
class FileContents:
    """What a file holds: its certificates in file order, or why it holds none usable."""

    certificates: tuple[FoundCertificate, ...] = ()
    private_key: bool = False
    error: str | None = None


# -- PEM and DER helpers (public: kept for existing callers) -----------------------------------


def certificate_blocks(text: str) -> list[str]:
    """The certificates of the PEM ``text`` in order, as ``-----BEGIN CERTIFICATE-----``
    blocks with ``\\n`` line endings (``X509 CERTIFICATE``, ``TRUSTED CERTIFICATE`` and
    certificates in ``PKCS7`` blocks included)."""
    return [found.pem for found in _read_pem(_normalise(text)).certificates]


def has_private_key(text: str) -> bool:
    """Whether ``text`` holds a private key block of any kind (RSA, EC, ENCRYPTED, PKCS#8)."""
    return _PRIVATE_KEY_BEGIN.search(text) is not None


def block_fingerprint(block: str) -> str | None:
    """Lowercase hex SHA-256 of the block's DER, or None when its body is not base64."""
    match = _PEM_BLOCK.search(_normalise(block))
    der = _base64_body(match.group(2)) if match else None
    return hashlib.sha256(der).hexdigest() if der else None


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _base64_body(body: str) -> bytes | None:
    try:
        return binascii.a2b_base64("".join(body.split()), strict_mode=True) or None
    except (binascii.Error, ValueError):
        return None


def _tlv(data: bytes, offset: int) -> tuple[int, int | None] | None:
    """(header length, content length; None when indefinite) of the DER element at
    ``offset``, or None when no element starts there."""
    if offset + 2 > len(data) or data[offset] & 0x1F == 0x1F:
        return None
    first = data[offset + 1]
    if first < 0x80:
        return 2, first
    if first == 0x80:
        return 2, None
    count = first & 0x7F
    if count > 4 or offset + 2 + count > len(data):
        return None
    return 2 + count, int.from_bytes(data[offset + 2 : offset + 2 + count], "big")


def _der_kind(der: bytes) -> str:
    """``"pkcs7"``, ``"pkcs12"``, ``"key"`` or ``"certificate"``, by the first element
    inside the outer SEQUENCE: an OID starts a PKCS#7 ContentInfo, version 3 a PKCS#12 PFX,
    another version a private key; anything else is taken for a certificate."""
    header = _tlv(der, 0)
    if header is None:
        return "certificate"
    inner = der[header[0] : header[0] + 3]
    if inner[:1] == b"\x06":
        return "pkcs7"
    if inner[:1] == b"\x02":
        return "pkcs12" if inner == b"\x02\x01\x03" else "key"
    return "certificate"


def _der_elements(data: bytes) -> list[bytes]:
    """The SEQUENCEs of ``data`` one after the other (trailing whitespace allowed), or
    ``[data]`` when it is not exactly that: passed through whole for the platform to judge."""
    elements, offset = [], 0
    while offset < len(data) and data[offset:].strip():
        header = _tlv(data, offset)
        if data[offset] != 0x30 or header is None or header[1] is None:
            return [data]
        end = offset + header[0] + header[1]
        if end > len(data):
            return [data]
        elements.append(data[offset:end])
        offset = end
    return elements or [data]


# -- reading a file ----------------------------------------------------------------------------


def read_certificates(data: bytes, *, password: str | None) -> FileContents:
    """The certificates in ``data`` (the bytes of one file), whatever its format."""
    if not data.strip():
        return FileContents(error="is empty")
    if b"-----BEGIN " in data:
        # PEM is ASCII; latin-1 never fails on whatever surrounds the blocks.
        return _read_pem(_normalise(data.decode("latin-1")))
    if data[0] == 0x30:
        return _read_der(data, password=password)
    return FileContents(error=NOT_CERTIFICATE_DATA)


def _read_pem(text: str) -> FileContents:
    found: list[FoundCertificate] = []
    problems: list[str] = []
    other_labels: list[str] = []
    for match in _PEM_BLOCK.finditer(text):
        label, body = match.group(1), match.group(2)
        if label in _CERTIFICATE_LABELS:
            der = _base64_body(body)
            if der is None:  # passed through as found, under the certificate label
                pem = match.group(0)
                if label != "CERTIFICATE":
                    pem = pem.replace(f"-----BEGIN {label}-----", _BEGIN_CERTIFICATE)
                    pem = pem.replace(f"-----END {label}-----", _END_CERTIFICATE)
                found.append(FoundCertificate(pem, None))
                continue
            if der[0] == 0x30 and _der_kind(der) == "pkcs7":  # a PKCS#7 under a cert label
                label = "PKCS7"
            else:
                if label == "TRUSTED CERTIFICATE":
                    der = _der_elements(der)[0]  # the certificate, without its trust settings
                found.append(FoundCertificate(der_to_pem(der), der))
                continue
        if label == "PKCS7":
            contents = _read_pkcs7(_base64_body(body) or b"")
            found.extend(contents.certificates)
            if contents.error:
                problems.append(contents.error)
        elif not label.endswith("PRIVATE KEY"):
            other_labels.append(label)
    private_key = has_private_key(text)
    if found:
        return FileContents(tuple(found), private_key)
    if problems:
        return FileContents(private_key=private_key, error=problems[0])
    if other_labels:
        kinds = ", ".join(sorted(set(other_labels)))
        return FileContents(error=f"holds no certificate (only PEM blocks of type {kinds})")
    if private_key:
        return FileContents(private_key=True, error="holds no certificate (a private key only)")
    if _PEM_BEGIN.search(text):
        return FileContents(error="holds no certificate (a PEM block without its END line)")
    return FileContents(error=NOT_CERTIFICATE_DATA)


def _read_der(data: bytes, *, password: str | None) -> FileContents:
    elements = _der_elements(data)
    kind = _der_kind(elements[0])
    if kind == "pkcs7":
        return _read_pkcs7(data)
    if kind == "pkcs12":
        return _read_pkcs12(data, password=password)
    if kind == "key":
        return FileContents(error="holds no certificate (DER data that looks like a private key)")
    return FileContents(tuple(FoundCertificate(der_to_pem(der), der) for der in elements))


def _loaded(certificates: Iterable[x509.Certificate]) -> tuple[FoundCertificate, ...]:
    found = []
    for certificate in certificates:
        der = certificate.public_bytes(Encoding.DER)
        found.append(FoundCertificate(der_to_pem(der), der, certificate))
    return tuple(found)


def _read_pkcs7(der: bytes) -> FileContents:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "parsed as BER": read all the same
            certificates = pkcs7.load_der_pkcs7_certificates(der)
    except UnsupportedAlgorithm:
        return FileContents(
            error="is a PKCS#7 file that is not a certificate bundle (not signed data)"
        )
    except Exception as exc:
        return FileContents(error=f"is a PKCS#7 file the agent cannot read ({exc})")
    if not certificates:
        return FileContents(error="holds no certificate (an empty PKCS#7 bundle)")
    return FileContents(_loaded(certificates))


def _read_pkcs12(data: bytes, *, password: str | None) -> FileContents:
    # The store password first; then none, for a file written without one.
    attempts: list[bytes | None] = [password.encode()] if password else []
    attempts += [None, b""]
    unsupported: Exception | None = None
    for attempt in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "parsed as BER": read all the same
                bundle = pkcs12.load_pkcs12(data, attempt)
        except UnsupportedAlgorithm as exc:
            unsupported = exc
            continue
        except (ValueError, TypeError):
            continue
        certificates = [bundle.cert] if bundle.cert else []
        certificates += bundle.additional_certs
        private_key = bundle.key is not None
        if certificates:
            found = _loaded(certificate.certificate for certificate in certificates)
            return FileContents(found, private_key)
        if private_key:
            return FileContents(private_key=True, error="holds no certificate (a private key only)")
        return FileContents(error="holds no certificate (an empty PKCS#12 file)")
    if unsupported is not None:
        return FileContents(error=f"is a PKCS#12 file the agent cannot open ({unsupported})")
    if password:
        return FileContents(error="is a PKCS#12 file and the store password does not open it")
    return FileContents(error="is a PKCS#12 file and the store has no password to open it")


def read_file(
    path: str, *, password: str | None, max_bytes: int = MAX_FILE_BYTES
) -> FileContents | None:
    """The contents of the file at ``path``; None when it vanished since it was listed."""
    try:
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    except PermissionError:
        return FileContents(error="cannot be read: permission denied")
    except OSError as exc:
        return FileContents(error=f"cannot be read: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return FileContents(error=f"is larger than the agent's limit ({max_bytes} bytes); not read")
    return read_certificates(data, password=password)


def _issuer_and_subject(der: bytes | None) -> tuple[bytes, bytes] | None:
    """The raw DER of a certificate's issuer and subject Names, read from the structure
    alone (no parsing of the certificate), or None when it is not laid out as one."""
    if not der:
        return None
    outer = _tlv(der, 0)
    if outer is None or outer[1] is None:
        return None
    offset = outer[0]  # the tbsCertificate
    tbs = _tlv(der, offset)
    if tbs is None or tbs[1] is None:
        return None
    offset += tbs[0]
    elements = []
    while len(elements) < 6 and offset < len(der):
        header = _tlv(der, offset)
        if header is None or header[1] is None:
            return None
        elements.append(der[offset : offset + header[0] + header[1]])
        offset += header[0] + header[1]
    if elements and elements[0][:1] == b"\xa0":  # the optional [0] version
        elements.pop(0)
    if len(elements) < 5:
        return None
    return elements[2], elements[4]  # serial, signature, issuer, validity, subject


def _one_chain(certificates: Iterable[FoundCertificate]) -> bool:
    """Whether each certificate's issuer is the next one's subject.

    The raw Names are compared first (cheap, and what a chain usually has); names that
    differ in their bytes are compared again as ``cryptography`` reads them, which is
    False when it cannot load one of the two.
    """
    previous: FoundCertificate | None = None
    for found in certificates:
        if previous is not None:
            names, next_names = _issuer_and_subject(previous.der), _issuer_and_subject(found.der)
            if names is None or next_names is None or names[0] != next_names[1]:
                issuer, subject = previous.load(), found.load()
                if issuer is None or subject is None:
                    return False
                if issuer.issuer.public_bytes() != subject.subject.public_bytes():
                    return False
        previous = found
    return True


def file_entries(alias: str, contents: FileContents) -> list[InventoryEntry]:
    """The directory-store entries of one file (see the module docstring)."""
    if contents.error is not None:
        return [InventoryEntry(alias, False, [], error=contents.error)]
    certificates = list({found.pem: found for found in contents.certificates}.values())
    if len(certificates) == 1 or _one_chain(certificates):
        return [InventoryEntry(alias, contents.private_key, [found.pem for found in certificates])]
    return [
        InventoryEntry(
            f"{alias}#{found.fingerprint or f'entry-{index}'}",
            contents.private_key and index == 0,
            [found.pem],
        )
        for index, found in enumerate(certificates)
    ]


# -- the store type ----------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    # Store properties may arrive as booleans or as the strings an admin typed.
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def file_name_matcher(patterns: Any) -> Callable[[str], bool]:
    """A test of file names against ``patterns`` (the ``file_patterns`` property: a
    comma-separated string or a list of globs; empty for :data:`DEFAULT_FILE_PATTERNS`),
    in any case."""
    if isinstance(patterns, list | tuple):
        items = [str(pattern) for pattern in patterns]
    else:
        items = str(patterns or "").split(",")
    globs = [item.strip().lower() for item in items if item.strip()]
    if not globs:
        globs = DEFAULT_FILE_PATTERNS.split(",")
    regex = re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))
    return lambda name: regex.match(name.lower()) is not None
