"""Parsing certificates once, into the fields the inventory keeps.

Real certificates bend the rules (duplicate extensions, invalid versions, names
in the wrong string type, keys no library supports), and an inventory must still
list them. So each field is read on its own: first by cryptography (the fast path,
for the common well-formed certificate), and, only where cryptography refuses, by
our own DER reader (``der.py``). A field neither can read is stored as unknown,
and the certificate carries parse warnings that say, in words, what was odd.
Only bytes that are no certificate at all raise ``CertificateParseError``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.x509.oid import NameOID

from certyard.x509 import der as derlib
from certyard.x509.der import DerError, Element
from certyard.x509.errors import CertificateParseError
from certyard.x509.extensions import (
    UNSUPPORTED_NAME_PREFIXES,
    Extension,
    decode_extension,
    other_name_value,
)
from certyard.x509.names import format_name
from certyard.x509.oids import (
    FIXED_KEY_SIZES,
    KEY_ALGORITHMS,
    OID_BASIC_CONSTRAINTS,
    OID_PRIME_FIELD,
    OID_SAN,
    PARAMETERLESS_SIGNATURES,
    extension_label,
    oid_label,
)
from certyard.x509.text import storable

_T = TypeVar("_T")

_NOT_A_CERTIFICATE = "the data is not an X.509 certificate: "
MAX_WARNINGS = 50


@dataclass(frozen=True, slots=True)
class ParsedCertificate:
    """The fields the inventory keeps; unknown text is "", unknown values None."""

    der: bytes
    sha256: str
    sha1: str
    serial_number: str
    issuer: str
    subject: str
    common_name: str
    sans: list[str]
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    key_algorithm: str
    key_size: int | None
    signature_algorithm: str
    is_ca: bool
    self_signed: bool
    version: int | None
    parse_warnings: list[str]


def sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _serial_text(serial: int, warn: Callable[[str], None]) -> str:
    if serial < 0:
        warn("the serial number is negative")
        return "-" + format(-serial, "x")
    if serial == 0:
        warn("the serial number is zero")
    elif serial.bit_length() // 8 + 1 > 20:
        warn("the serial number is longer than the 20 bytes RFC 5280 allows")
    return format(serial, "x")


# --- The certificate's skeleton, from the DER --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RawCertificate:
    """The elements of a certificate, found without decoding them."""

    version: Element | None
    serial: Element
    inner_algorithm: Element
    issuer: Element
    validity: Element
    subject: Element
    spki: Element
    extensions: Element | None
    outer_algorithm: Element
    warnings: list[str]


def _refuse(reason: str) -> CertificateParseError:
    return CertificateParseError(_NOT_A_CERTIFICATE + reason)


def _is_sequence(element: Element) -> bool:
    return element.is_universal(derlib.SEQUENCE) and element.constructed


def split_certificate(der: bytes) -> _RawCertificate:
    """The certificate's elements; CertificateParseError for bytes without a certificate's shape."""
    try:
        outer = derlib.read_element(der)
    except DerError as exc:
        raise _refuse("its outer header is malformed") from exc
    if not _is_sequence(outer):
        raise _refuse("it does not start with a DER SEQUENCE")
    parts, broken = derlib.readable_children(outer)
    if len(parts) < 3:
        if broken:
            raise _refuse("its contents are not readable DER (they may be truncated or corrupt)")
        raise _refuse(
            "it does not hold the three parts of a certificate "
            "(a body, a signature algorithm and a signature)"
        )
    body, algorithm, signature = parts[:3]
    if not (
        _is_sequence(body) and _is_sequence(algorithm) and signature.is_universal(derlib.BIT_STRING)
    ):
        raise _refuse(
            "its parts are not those of a certificate "
            "(a body, a signature algorithm and a signature)"
        )
    warnings = []
    if broken or len(parts) > 3:
        warnings.append("the certificate holds unexpected data after its signature; it was ignored")
    fields, broken = derlib.readable_children(body)
    start = 1 if fields and fields[0].is_context(0) else 0
    required = fields[start : start + 6]
    if len(required) < 6 and broken:
        raise _refuse("its body is not readable DER (it may be truncated or corrupt)")
    if len(required) < 6 or not all(_is_sequence(field) for field in required[1:]):
        raise _refuse(
            "its body does not have the fields of a certificate (serial number, signature "
            "algorithm, issuer, validity, subject and public key); it may be a certificate "
            "request, a CRL or another signed structure"
        )
    extensions = None
    unexpected = 0
    for field in fields[start + 6 :]:
        if field.is_context(3) and extensions is None:
            extensions = field
        elif not (field.is_context(1) or field.is_context(2)):
            unexpected += 1
    if unexpected:
        warnings.append("the certificate body holds unexpected fields after the public key")
    if broken:
        warnings.append(
            "the certificate body is corrupt after the public key; "
            "what follows it (such as extensions) is not shown"
        )
    serial, inner_algorithm, issuer, validity, subject, spki = required
    return _RawCertificate(
        fields[0] if start else None,
        serial,
        inner_algorithm,
        issuer,
        validity,
        subject,
        spki,
        extensions,
        algorithm,
        warnings,
    )


def _raw_extension(item: Element, warn: Callable[[str], None]) -> Extension:
    fields = derlib.expect(item, derlib.SEQUENCE).children()
    if len(fields) not in (2, 3):
        raise DerError("an extension does not hold an identifier, a criticality and a value")
    dotted = derlib.oid(fields[0])
    critical = False
    if len(fields) == 3:
        critical = derlib.boolean(fields[1])
        if not critical:
            warn(
                f"the {extension_label(dotted)} extension says 'not critical' explicitly, "
                "which DER forbids"
            )
    return Extension(dotted, critical, derlib.expect(fields[-1], derlib.OCTET_STRING).content)


def raw_extensions(raw: _RawCertificate, warn: Callable[[str], None]) -> list[Extension]:
    """Every readable extension in order, duplicates included (with a warning)."""
    if raw.extensions is None:
        return []
    try:
        container = derlib.expect(raw.extensions.only_child(), derlib.SEQUENCE)
    except DerError:
        warn("the extension list is malformed; no extension is shown")
        return []
    items, broken = derlib.readable_children(container)
    extensions: list[Extension] = []
    counts: dict[str, int] = {}
    for item in items:
        try:
            extension = _raw_extension(item, warn)
        except DerError:
            warn("an extension is malformed and is not shown")
            continue
        counts[extension.oid] = counts.get(extension.oid, 0) + 1
        extensions.append(extension)
    if broken:
        warn(f"the extension list is corrupt after {len(items)} extensions; the rest are not shown")
    for dotted, count in counts.items():
        if count > 1:
            times = "twice" if count == 2 else f"{count} times"
            warn(f"the {extension_label(dotted)} extension appears {times}")
    return extensions


# --- Reading each field: cryptography first, the DER where it refuses -----------------------


def _attribute_text(value: str | bytes) -> str:
    return value if isinstance(value, str) else "#" + value.hex()


def _general_name_text(name: x509.GeneralName) -> str:
    """A GeneralName as cryptography decoded it, in the same form as ``_general_name``."""
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"DirName:{name.value.rfc4514_string()}"
    if isinstance(name, x509.RegisteredID):
        return f"RID:{name.value.dotted_string}"
    if isinstance(name, x509.OtherName):
        dotted = name.type_id.dotted_string
        return f"othername:{dotted}:{other_name_value(dotted, name.value)}"
    raise TypeError(f"unknown general name {type(name).__name__}")


def _key_from_object(key: object) -> tuple[str, int | None] | None:
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
    if isinstance(key, x25519.X25519PublicKey):
        return "X25519", 256
    if isinstance(key, x448.X448PublicKey):
        return "X448", 448
    if isinstance(key, dh.DHPublicKey):
        return "DH", key.key_size
    return None


def _attempt(read: Callable[[], _T]) -> _T | None:
    """``read()``, or None if it raises: where cryptography refuses a field, we read the DER."""
    try:
        return read()
    except Exception:
        return None


_GENERIC_LENIENT = "the certificate is not strictly DER-encoded; it was read leniently"


class _Reader:
    """Reads the fields of one certificate and collects its warnings.

    ``certificate`` is cryptography's view (None when it refused the whole
    certificate); ``raw`` our own, made the first time a field needs it.
    """

    __slots__ = ("_certificate", "_der", "_raw", "_raw_tried", "warnings")

    def __init__(
        self,
        der: bytes,
        certificate: x509.Certificate | None,
        raw: _RawCertificate | None,
        warnings: list[str],
    ) -> None:
        self._der = der
        self._certificate = certificate
        self._raw = raw
        self._raw_tried = raw is not None
        self.warnings = warnings
        if raw is not None:
            for message in raw.warnings:
                self.warn(message)

    def warn(self, message: str) -> None:
        if message in self.warnings:
            return
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("more problems were found; they are not listed")

    def raw(self) -> _RawCertificate | None:
        if not self._raw_tried:
            self._raw_tried = True
            try:
                self._raw = split_certificate(self._der)
            except Exception:
                self._raw = None
            if self._raw is not None:
                for message in self._raw.warnings:
                    self.warn(message)
        return self._raw

    def _from_der(self, label: str, read: Callable[[_RawCertificate], _T], default: _T) -> _T:
        raw = self.raw()
        if raw is None:
            self.warn(f"the {label} cannot be read")
            return default
        try:
            return read(raw)
        except DerError as exc:
            self.warn(f"the {label} is malformed ({exc})")
        except Exception:
            self.warn(f"the {label} cannot be read")
        return default

    # Each field: cryptography's reading if it gives one, else ours.

    def version(self) -> int | None:
        certificate = self._certificate
        if (
            certificate is not None
            and (version := _attempt(lambda: certificate.version)) is not None
        ):
            return version.value + 1
        return self._from_der("version", self._version_from_der, None)

    def _version_from_der(self, raw: _RawCertificate) -> int | None:
        if raw.version is None:
            return 1
        value = derlib.integer(raw.version.only_child())
        if value in (0, 1, 2):
            return value + 1
        if abs(value).bit_length() > 32:
            self.warn("the version number is impossibly large")
        else:
            self.warn(f"version {value + 1} is not a valid X.509 version")
        return None

    def serial_number(self) -> str:
        certificate = self._certificate
        if (
            certificate is not None
            and (serial := _attempt(lambda: certificate.serial_number)) is not None
        ):
            return _serial_text(serial, self.warn)
        return self._from_der(
            "serial number", lambda raw: _serial_text(derlib.integer(raw.serial), self.warn), ""
        )

    def names(self) -> tuple[str, str, str, bool]:
        """Issuer, subject, the subject's first common name, and whether issuer is subject."""
        certificate = self._certificate
        subject = issuer = common_name = None
        subject_name = issuer_name = None
        if certificate is not None:
            try:
                subject_name = certificate.subject
                subject = subject_name.rfc4514_string()
                common_names = subject_name.get_attributes_for_oid(NameOID.COMMON_NAME)
                common_name = _attribute_text(common_names[0].value) if common_names else ""
            except Exception:
                subject = subject_name = None
            try:
                issuer_name = certificate.issuer
                issuer = issuer_name.rfc4514_string()
            except Exception:
                issuer = issuer_name = None
        if subject is None:
            subject, common_names = self._from_der(
                "subject", lambda raw: self._name_from_der(raw.subject, "subject"), ("", [])
            )
            common_name = common_names[0] if common_names else ""
        if issuer is None:
            issuer, _ = self._from_der(
                "issuer", lambda raw: self._name_from_der(raw.issuer, "issuer"), ("", [])
            )
        self_signed = False
        try:
            if subject_name is not None and issuer_name is not None:
                self_signed = issuer_name == subject_name
            elif (raw := self.raw()) is not None:
                self_signed = raw.issuer.encoded == raw.subject.encoded
        except Exception:
            self.warn("whether the certificate is self-signed cannot be told")
        return issuer, subject, common_name or "", self_signed

    def _name_from_der(self, name: Element, label: str) -> tuple[str, list[str]]:
        text, common_names, problems = format_name(name)
        for problem in problems:
            self.warn(f"the {label} contains {problem}")
        if not problems and self._certificate is not None:
            self.warn(f"the {label} is not encoded as DER requires; it was read leniently")
        return text, common_names

    def validity(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        not_before = not_after = None
        certificate = self._certificate
        if certificate is not None:
            not_before = _attempt(lambda: certificate.not_valid_before_utc)
            not_after = _attempt(lambda: certificate.not_valid_after_utc)
        if not_before is None:
            label = "validity start (notBefore)"
            not_before = self._from_der(label, lambda raw: self._time(raw, 0, label), None)
        if not_after is None:
            label = "validity end (notAfter)"
            not_after = self._from_der(label, lambda raw: self._time(raw, 1, label), None)
        return not_before, not_after

    def _time(self, raw: _RawCertificate, index: int, label: str) -> dt.datetime:
        times = derlib.expect(raw.validity, derlib.SEQUENCE).children()
        if len(times) != 2:
            raise DerError(f"the validity holds {len(times)} times instead of 2")
        moment, strict = derlib.time(times[index])
        if not strict:
            phrase = derlib.time_phrase(times[index].content)
            self.warn(f"the {label} {phrase} is not in the form DER requires")
        return moment

    def key(self) -> tuple[str, int | None]:
        certificate = self._certificate
        if certificate is not None and (key := _attempt(certificate.public_key)) is not None:
            described = _key_from_object(key)
            if described is not None:
                return described
            # A key type cryptography knows and we do not: name it, no warning.
            algorithm = _attempt(lambda: certificate.public_key_algorithm_oid.dotted_string)
            if algorithm is not None:
                return KEY_ALGORITHMS.get(algorithm, algorithm), getattr(key, "key_size", None)
        return self._from_der("public key", self._key_from_der, ("unknown", None))

    def _key_from_der(self, raw: _RawCertificate) -> tuple[str, int | None]:
        fields = derlib.expect(raw.spki, derlib.SEQUENCE).children()
        if len(fields) != 2:
            raise DerError("the public key info does not hold an algorithm and a key")
        algorithm = derlib.expect(fields[0], derlib.SEQUENCE).children()
        if not algorithm:
            raise DerError("the public key algorithm is empty")
        dotted = derlib.oid(algorithm[0])
        parameters = algorithm[1] if len(algorithm) > 1 else None
        name = KEY_ALGORITHMS.get(dotted)
        if name is None:
            self.warn(f"public key algorithm {dotted} is not supported; key size unknown")
            return dotted, None
        refused = self._certificate is not None  # cryptography could not load this key
        size: int | None = FIXED_KEY_SIZES.get(name)
        if name == "RSA":
            key_bits, _ = derlib.bit_string(fields[1])
            numbers = derlib.expect(derlib.read_one(key_bits), derlib.SEQUENCE).children()
            modulus = derlib.expect(numbers[0], derlib.INTEGER).content
            if modulus[:1] >= b"\x80":
                self.warn("the RSA modulus is encoded as a negative number")
            size = int.from_bytes(modulus, "big").bit_length()
        elif name == "EC":
            size = self._curve_size(parameters)
        elif name in ("DSA", "DH"):
            if parameters is None or not _is_sequence(parameters):
                self.warn(
                    f"the {name} public key inherits its parameters from the issuer; "
                    "key size unknown"
                )
                return name, None
            size = abs(derlib.integer(parameters.children()[0])).bit_length()
        elif size is None:
            self.warn(f"public key algorithm {dotted} ({name}) is not supported; key size unknown")
            return name, None
        if refused:
            self.warn(f"the {name} public key is malformed or unusual; strict parsers refuse it")
        return name, size

    def _curve_size(self, parameters: Element | None) -> int | None:
        if parameters is not None and _is_sequence(parameters):
            # Explicit curve parameters: the size is the prime field's.
            field = derlib.expect(parameters.children()[1], derlib.SEQUENCE).children()
            if derlib.oid(field[0]) != OID_PRIME_FIELD:
                self.warn("the EC public key uses a curve over a binary field; key size unknown")
                return None
            return abs(derlib.integer(field[1])).bit_length()
        if parameters is None or not parameters.is_universal(derlib.OBJECT_IDENTIFIER):
            self.warn("the EC public key does not name its curve; key size unknown")
            return None
        curve = derlib.oid(parameters)
        try:
            return ec.get_curve_for_oid(x509.ObjectIdentifier(curve)).key_size
        except Exception:
            self.warn(
                f"the EC public key uses curve {curve}, which is not supported; key size unknown"
            )
            return None

    def signature_algorithm(self) -> str:
        certificate = self._certificate
        if certificate is not None and (
            algorithm := _attempt(lambda: certificate.signature_algorithm_oid)
        ):
            return oid_label(algorithm)
        return self._from_der("signature algorithm", self._signature_from_der, "")

    def _signature_from_der(self, raw: _RawCertificate) -> str:
        if raw.inner_algorithm.encoded != raw.outer_algorithm.encoded:
            self.warn(
                "the signature algorithm inside the certificate body "
                "differs from the one of its signature"
            )
        for algorithm in (raw.inner_algorithm, raw.outer_algorithm):
            fields = algorithm.children()
            if len(fields) > 1 and derlib.oid(fields[0]) in PARAMETERLESS_SIGNATURES:
                self.warn("the signature algorithm has parameters it must not have")
        fields = raw.outer_algorithm.children()
        if not fields:
            raise DerError("the signature algorithm is empty")
        return oid_label(derlib.oid(fields[0]))

    def extensions(self) -> tuple[list[str], bool]:
        """The subject alternative names and whether the certificate is a CA."""
        certificate = self._certificate
        if certificate is not None and (
            found := _attempt(lambda: self._extensions_from(certificate.extensions))
        ):
            return found
        return self._from_der("extension list", self._extensions_from_der, ([], False))

    @staticmethod
    def _extensions_from(extensions: x509.Extensions) -> tuple[list[str], bool]:
        sans: list[str] | None = None
        is_ca = False
        for extension in extensions:
            if extension.oid == x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME:
                sans = [_general_name_text(name) for name in extension.value]
            elif extension.oid == x509.ExtensionOID.BASIC_CONSTRAINTS:
                is_ca = bool(extension.value.ca)
        return sans or [], is_ca

    def _extensions_from_der(self, raw: _RawCertificate) -> tuple[list[str], bool]:
        before = len(self.warnings)
        sans: list[str] = []
        is_ca = False
        decoded: set[str] = set()
        for extension in raw_extensions(raw, self.warn):
            if extension.oid in decoded:
                continue
            decoded.add(extension.oid)
            result = decode_extension(extension, self.warn)
            if extension.oid == OID_SAN and isinstance(result, list):
                sans = result
            elif extension.oid == OID_BASIC_CONSTRAINTS and isinstance(result, tuple):
                is_ca = result[0]
        unsupported_names = any(name.startswith(UNSUPPORTED_NAME_PREFIXES) for name in sans)
        if self._certificate is not None and len(self.warnings) == before and not unsupported_names:
            self.warn("an extension is not encoded as the standard requires; it was read leniently")
        return sans, is_ca


# --- The public functions ---------------------------------------------------------------------


def _certificate_bytes(der: object) -> tuple[bytes, list[str]]:
    """The certificate's outer element, and a warning if bytes follow it; or a refusal."""
    if isinstance(der, bytearray | memoryview):
        der = bytes(der)
    if not isinstance(der, bytes):
        raise CertificateParseError("a certificate must be given as bytes")
    if not der:
        raise _refuse("it is empty")
    if der[0] != 0x30:
        raise _refuse("it does not start with a DER SEQUENCE")
    try:
        outer = derlib.read_element(der)
    except derlib.DerTruncatedError as exc:
        if exc.needed and exc.available:
            raise _refuse(
                f"it is truncated (it says it holds {exc.needed} bytes, "
                f"only {exc.available} are there)"
            ) from exc
        raise _refuse("it is truncated") from exc
    except derlib.DerIndefiniteLengthError as exc:
        raise _refuse("it uses an indefinite length (BER), which DER does not allow") from exc
    except DerError as exc:
        raise _refuse(f"its first header is malformed ({exc})") from exc
    if outer.end == len(der):
        return der, []
    extra = len(der) - outer.end
    return der[: outer.end], [
        f"{extra} byte{'' if extra == 1 else 's'} after the certificate were ignored"
    ]


_SAN = x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME
_BASIC_CONSTRAINTS = x509.ExtensionOID.BASIC_CONSTRAINTS


def _parse_fast(
    der: bytes, certificate: x509.Certificate, warnings: list[str]
) -> ParsedCertificate | None:
    """Every field from cryptography in one go, or None if it refuses any of them.

    The common certificate takes this path only; the per-field reader (slower,
    by a few function calls per field) is for the certificates that need it.
    """
    found: list[str] = []
    try:
        version = certificate.version.value + 1
        serial_number = _serial_text(certificate.serial_number, found.append)
        subject_name = certificate.subject
        subject = subject_name.rfc4514_string()
        common_names = subject_name.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = _attribute_text(common_names[0].value) if common_names else ""
        issuer_name = certificate.issuer
        issuer = issuer_name.rfc4514_string()
        not_before = certificate.not_valid_before_utc
        not_after = certificate.not_valid_after_utc
        key = _key_from_object(certificate.public_key())
        if key is None:
            return None
        signature_algorithm = oid_label(certificate.signature_algorithm_oid)
        sans: list[str] = []
        is_ca = False
        for extension in certificate.extensions:
            if extension.oid == _SAN:
                sans = [storable(_general_name_text(name)) for name in extension.value]
            elif extension.oid == _BASIC_CONSTRAINTS:
                is_ca = bool(extension.value.ca)
        self_signed = issuer_name == subject_name
    except Exception:
        return None
    warnings.extend(found)
    return ParsedCertificate(
        der=der,
        sha256=sha256_hex(der),
        sha1=hashlib.sha1(der, usedforsecurity=False).hexdigest(),
        serial_number=serial_number,
        issuer=storable(issuer),
        subject=storable(subject),
        common_name=storable(common_name)[:255],
        sans=sans,
        not_before=not_before,
        not_after=not_after,
        key_algorithm=key[0],
        key_size=key[1],
        signature_algorithm=storable(signature_algorithm),
        is_ca=is_ca,
        self_signed=self_signed,
        version=version,
        parse_warnings=warnings,
    )


def _parse(der: bytes, warnings: list[str]) -> ParsedCertificate:
    try:
        certificate: x509.Certificate | None = x509.load_der_x509_certificate(der)
        raw = None
    except Exception:
        certificate = None
        raw = split_certificate(der)  # refuses what is no certificate
    if certificate is not None and (parsed := _parse_fast(der, certificate, warnings)):
        return parsed
    reader = _Reader(der, certificate, raw, warnings)
    before = len(warnings)
    version = reader.version()
    serial_number = reader.serial_number()
    issuer, subject, common_name, self_signed = reader.names()
    not_before, not_after = reader.validity()
    key_algorithm, key_size = reader.key()
    signature_algorithm = reader.signature_algorithm()
    sans, is_ca = reader.extensions()
    if certificate is None and len(warnings) == before:
        reader.warn(_GENERIC_LENIENT)
    return ParsedCertificate(
        der=der,
        sha256=sha256_hex(der),
        sha1=hashlib.sha1(der, usedforsecurity=False).hexdigest(),
        serial_number=serial_number,
        issuer=storable(issuer),
        subject=storable(subject),
        common_name=storable(common_name)[:255],
        sans=[storable(name) for name in sans],
        not_before=not_before,
        not_after=not_after,
        key_algorithm=storable(key_algorithm),
        key_size=key_size,
        signature_algorithm=storable(signature_algorithm),
        is_ca=is_ca,
        self_signed=self_signed,
        version=version,
        parse_warnings=[storable(message) for message in warnings],
    )


def certificate_parse(
    der: bytes, *, certificate: x509.Certificate | None = None
) -> ParsedCertificate:
    """Every field the inventory keeps, from one DER certificate.

    A field that cannot be decoded is unknown ("" or None) and a parse warning says
    why; bytes after the certificate are ignored with a warning. Raises
    CertificateParseError, and nothing else, only for bytes that are no certificate.
    ``certificate``: the same DER already loaded by the caller, so it is not loaded again.
    """
    if type(der) is bytes:
        # The common case first: cryptography reads it whole (it refuses trailing bytes).
        if certificate is None:
            certificate = _attempt(lambda: x509.load_der_x509_certificate(der))
        if certificate is not None and (parsed := _parse_fast(der, certificate, [])):
            return parsed
    certificate_der, warnings = _certificate_bytes(der)
    try:
        return _parse(certificate_der, warnings)
    except CertificateParseError:
        raise
    except Exception as exc:  # every field guards itself: this is a bug, not the input
        raise CertificateParseError(
            f"the certificate could not be read (internal error {type(exc).__name__})"
        ) from exc
