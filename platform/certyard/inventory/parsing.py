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

import base64
import binascii
import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.x509.oid import NameOID

from certyard.inventory import der as derlib
from certyard.inventory.der import DerError, Element

_T = TypeVar("_T")

_NOT_A_CERTIFICATE = "the data is not an X.509 certificate: "
_MAX_WARNINGS = 50

_OID_SAN = "2.5.29.17"
_OID_IAN = "2.5.29.18"
_OID_BASIC_CONSTRAINTS = "2.5.29.19"
_OID_KEY_USAGE = "2.5.29.15"
_OID_EKU = "2.5.29.37"
_OID_POLICIES = "2.5.29.32"
_OID_CRL_DP = "2.5.29.31"
_OID_NAME_CONSTRAINTS = "2.5.29.30"
_OID_INHIBIT_ANY_POLICY = "2.5.29.54"
_OID_AIA = "1.3.6.1.5.5.7.1.1"
_OID_SIA = "1.3.6.1.5.5.7.1.11"
_OID_SCTS = "1.3.6.1.4.1.11129.2.4.2"
_OID_UPN = "1.3.6.1.4.1.311.20.2.3"
_OID_CPS = "1.3.6.1.5.5.7.2.1"
_OID_USER_NOTICE = "1.3.6.1.5.5.7.2.2"
_OID_COMMON_NAME = "2.5.4.3"
_OID_COUNTRY = "2.5.4.6"

# How extensions are named in warnings.
_EXTENSION_LABELS = {
    _OID_SAN: "subject alternative name",
    _OID_IAN: "issuer alternative name",
    _OID_BASIC_CONSTRAINTS: "basicConstraints",
    _OID_KEY_USAGE: "keyUsage",
    _OID_EKU: "extendedKeyUsage",
    _OID_POLICIES: "certificatePolicies",
    _OID_CRL_DP: "cRLDistributionPoints",
    _OID_NAME_CONSTRAINTS: "nameConstraints",
    _OID_INHIBIT_ANY_POLICY: "inhibitAnyPolicy",
    _OID_AIA: "authorityInfoAccess",
    _OID_SIA: "subjectInfoAccess",
    _OID_SCTS: "signed certificate timestamps",
}
# The attribute keys cryptography's rfc4514_string() uses; other types are dotted.
_NAME_KEYS = {
    _OID_COMMON_NAME: "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    _OID_COUNTRY: "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_RSA_OIDS = frozenset({"1.2.840.113549.1.1.1", "1.2.840.113549.1.1.10"})
_OID_EC = "1.2.840.10045.2.1"
_OID_DSA = "1.2.840.10040.4.1"
_OID_PRIME_FIELD = "1.2.840.10045.1.1"
_KEY_ALGORITHMS = {
    "1.2.840.113549.1.1.1": "RSA",
    "1.2.840.113549.1.1.10": "RSA",
    _OID_EC: "EC",
    _OID_DSA: "DSA",
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
    "1.3.101.110": "X25519",
    "1.3.101.111": "X448",
    "1.2.840.10046.2.1": "DH",
    "1.2.840.113549.1.3.1": "DH",
    "1.2.643.2.2.19": "GOST R 34.10-2001",
    "1.2.643.2.2.20": "GOST R 34.10-94",
    "1.2.643.7.1.1.1.1": "GOST R 34.10-2012",
    "1.2.643.7.1.1.1.2": "GOST R 34.10-2012",
    "1.2.156.10197.1.301": "SM2",
    "2.16.840.1.101.3.4.3.17": "ML-DSA-44",
    "2.16.840.1.101.3.4.3.18": "ML-DSA-65",
    "2.16.840.1.101.3.4.3.19": "ML-DSA-87",
}
_FIXED_KEY_SIZES = {"Ed25519": 256, "Ed448": 456, "X25519": 256, "X448": 448}
# Signature algorithms whose AlgorithmIdentifier must have no parameters.
_PARAMETERLESS_SIGNATURES = frozenset(
    {
        "1.2.840.10045.4.1",
        "1.2.840.10045.4.3.1",
        "1.2.840.10045.4.3.2",
        "1.2.840.10045.4.3.3",
        "1.2.840.10045.4.3.4",
        "1.2.840.10040.4.3",
        "2.16.840.1.101.3.4.3.1",
        "2.16.840.1.101.3.4.3.2",
        "1.3.101.112",
        "1.3.101.113",
    }
)
_KEY_USAGES = (
    "Digital signature",
    "Non-repudiation",
    "Key encipherment",
    "Data encipherment",
    "Key agreement",
    "Certificate signing",
    "CRL signing",
    "Encipher only",
    "Decipher only",
)
_EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "TLS Web Server Authentication",
    "1.3.6.1.5.5.7.3.2": "TLS Web Client Authentication",
    "1.3.6.1.5.5.7.3.3": "Code Signing",
    "1.3.6.1.5.5.7.3.4": "E-mail Protection",
    "1.3.6.1.5.5.7.3.5": "IPSec End System",
    "1.3.6.1.5.5.7.3.6": "IPSec Tunnel",
    "1.3.6.1.5.5.7.3.7": "IPSec User",
    "1.3.6.1.5.5.7.3.8": "Time Stamping",
    "1.3.6.1.5.5.7.3.9": "OCSP Signing",
    "1.3.6.1.5.5.7.3.17": "IPSec IKE",
    "2.5.29.37.0": "Any Extended Key Usage",
    "1.3.6.1.4.1.311.20.2.2": "Microsoft Smartcard Logon",
    "1.3.6.1.4.1.311.10.3.4": "Microsoft Encrypted File System",
    "1.3.6.1.5.2.3.5": "Kerberos KDC",
}
_POLICY_NAMES = {
    "2.5.29.32.0": "anyPolicy",
    "2.23.140.1.1": "CA/B Forum Extended Validation",
    "2.23.140.1.2.1": "CA/B Forum Domain Validated",
    "2.23.140.1.2.2": "CA/B Forum Organization Validated",
    "2.23.140.1.2.3": "CA/B Forum Individual Validated",
}
_ACCESS_METHODS = {
    "1.3.6.1.5.5.7.48.1": "OCSP",
    "1.3.6.1.5.5.7.48.2": "CA Issuers",
    "1.3.6.1.5.5.7.48.3": "Time Stamping",
    "1.3.6.1.5.5.7.48.5": "CA Repository",
}
_SAN_GROUPS = {
    "DNS": "DNS names",
    "IP": "IP addresses",
    "email": "Email addresses",
    "URI": "URIs",
    "DirName": "Directory names",
    "othername": "Other names",
    "RID": "Registered IDs",
    "X400Address": "X.400 addresses",
    "EdiPartyName": "EDI party names",
}
# GeneralName's context tags, in the order RFC 5280 numbers them.
_GENERAL_NAME_KINDS = (
    "othername",
    "email",
    "DNS",
    "X400Address",
    "DirName",
    "EdiPartyName",
    "URI",
    "IP",
    "RID",
)

_PEM_BEGIN = re.compile(r"-----BEGIN (CERTIFICATE|X509 CERTIFICATE|TRUSTED CERTIFICATE)-----")


class CertificateParseError(ValueError):
    """The input is not a certificate we can read; the message says why."""


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


def sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


# --- PEM ------------------------------------------------------------------------------


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


# --- Small helpers ----------------------------------------------------------------------


def text_is_storable(text: str) -> bool:
    """Whether every database we support can hold this text (no NUL, no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable(text: str) -> str:
    """Text any database column takes: no NUL (null-prefix attacks), no lone surrogate."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _oid_label(oid: x509.ObjectIdentifier | str) -> str:
    """cryptography's name for an OID (``sha256WithRSAEncryption``), else its dotted form."""
    try:
        known = oid if isinstance(oid, x509.ObjectIdentifier) else x509.ObjectIdentifier(oid)
        name = known._name
        dotted = known.dotted_string
    except Exception:
        return str(oid)
    return dotted if not name or name == "Unknown OID" else name


def _named_oid(dotted: str, names: dict[str, str]) -> str:
    name = names.get(dotted)
    return f"{name} ({dotted})" if name else dotted


def _extension_label(dotted: str) -> str:
    return _EXTENSION_LABELS.get(dotted) or _oid_label(dotted)


def _serial_text(serial: int, warn: Callable[[str], None]) -> str:
    if serial < 0:
        warn("the serial number is negative")
        return "-" + format(-serial, "x")
    if serial == 0:
        warn("the serial number is zero")
    elif serial.bit_length() // 8 + 1 > 20:
        warn("the serial number is longer than the 20 bytes RFC 5280 allows")
    return format(serial, "x")


def _escape_dn_value(value: str) -> str:
    """RFC 4514 escaping, as cryptography's ``rfc4514_string()`` does it."""
    if not value:
        return ""
    for special in ("\\", '"', "+", ",", ";", "<", ">"):
        value = value.replace(special, "\\" + special)
    value = value.replace("\0", "\\00")
    if value[0] in ("#", " "):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def _children(element: Element) -> tuple[list[Element], bool]:
    """The elements inside ``element`` up to the first unreadable one, and whether one was."""
    found: list[Element] = []
    position = element.content_start
    while position < element.end:
        try:
            child = derlib.read_element(element.data, position, element.end)
        except DerError:
            return found, True
        found.append(child)
        position = child.end
    return found, False


def _sequence_of(value: bytes) -> list[Element]:
    """The items of the SEQUENCE that an extension's value holds."""
    return derlib.expect(derlib.read_one(value), derlib.SEQUENCE).children()


# --- Names -------------------------------------------------------------------------------


def _attribute_value(element: Element) -> tuple[str, str, str]:
    """An attribute value's text, its RFC 4514 form, and what is odd about it."""
    if element.tag_class == derlib.UNIVERSAL and element.number in derlib.STRING_TAGS:
        text, problem = derlib.text(element, marked=True)
        if not problem:
            return text, _escape_dn_value(text), problem
        return (
            derlib.show_undecodable(text),
            derlib.show_undecodable(_escape_dn_value(text)),
            problem,
        )
    if element.is_universal(derlib.BIT_STRING):
        # x500UniqueIdentifier: shown with its unused-bits byte, as cryptography does.
        shown = "#" + element.content.hex()
        return shown, shown, ""
    shown = "#" + element.encoded.hex()
    return shown, shown, f"an attribute value of unexpected type ({element.describe()})"


def _format_attributes(attributes: list[Element]) -> tuple[str, list[str], list[str]]:
    """One RDN's attributes as RFC 4514 text, its common names, and its oddities."""
    parts = []
    common_names: list[str] = []
    problems: list[str] = []
    for attribute in attributes:
        fields = derlib.expect(attribute, derlib.SEQUENCE).children()
        if len(fields) != 2:
            raise DerError("a name attribute does not hold a type and a value")
        dotted = derlib.oid(fields[0])
        value, shown, problem = _attribute_value(fields[1])
        if problem:
            problems.append(problem)
        if dotted == _OID_COMMON_NAME:
            common_names.append(value)
        elif dotted == _OID_COUNTRY and len(value) != 2:
            problems.append("a country name that is not two letters")
        parts.append(f"{_NAME_KEYS.get(dotted, dotted)}={shown}")
    return "+".join(parts), common_names, problems


def _format_name(name: Element) -> tuple[str, list[str], list[str]]:
    """A Name as cryptography's ``rfc4514_string()`` shows it, its common names, its oddities."""
    relative_names: list[str] = []
    common_names: list[str] = []
    problems: list[str] = []
    for relative_name in derlib.expect(name, derlib.SEQUENCE).children():
        text, found, odd = _format_attributes(derlib.expect(relative_name, derlib.SET).children())
        relative_names.append(text)
        common_names += found
        problems += odd
    return ",".join(reversed(relative_names)), common_names, problems


# --- General names and extensions ------------------------------------------------------------

_IA5_NAME_PHRASES = {"DNS": "a DNS name", "email": "an email address", "URI": "a URI"}
_GENERAL_NAME_PHRASES = {
    "othername": "other name",
    "email": "email address",
    "DNS": "DNS name",
    "X400Address": "X.400 address",
    "DirName": "directory name",
    "EdiPartyName": "EDI party name",
    "URI": "URI",
    "IP": "IP address",
    "RID": "registered ID",
}
# Valid names that cryptography does not support: no reason to warn.
_UNSUPPORTED_NAME_PREFIXES = ("X400Address:", "EdiPartyName:")


def _other_name_value(dotted: str, value: bytes) -> str:
    """An otherName's value: a UPN's text when it is a UTF8String, else the DER in hex."""
    if dotted == _OID_UPN:
        try:
            element = derlib.read_one(value)
            if element.is_universal(derlib.UTF8_STRING):
                text, problem = derlib.text(element)
                if not problem:
                    return text
        except DerError:
            pass
    return value.hex()


def _general_name(element: Element, where: str, warn: Callable[[str], None]) -> str | None:
    """One GeneralName as ``KIND:value``; None (with a warning) for an entry that is no name."""
    if element.tag_class != derlib.CONTEXT or element.number >= len(_GENERAL_NAME_KINDS):
        warn(f"the {where} holds an entry that is no name ({element.describe()}); it is not shown")
        return None
    kind = _GENERAL_NAME_KINDS[element.number]
    content = element.content
    if kind in _IA5_NAME_PHRASES:
        text, problem = derlib.decode_text(content, derlib.IA5_STRING)
        if problem:
            warn(f"the {where} holds {_IA5_NAME_PHRASES[kind]} with non-ASCII characters")
        return f"{kind}:{text}"
    if kind == "IP":
        if len(content) in (4, 16):
            return f"IP:{ipaddress.ip_address(content)}"
        warn(
            f"the {where} holds an IP address of {len(content)} bytes (4 or 16 expected); "
            "it is shown in hex"
        )
        return f"IP:{content.hex()}"
    if kind == "DirName":
        text, _, problems = _format_name(element.only_child())
        for problem in problems:
            warn(f"the {where} holds a directory name that contains {problem}")
        return f"DirName:{text}"
    if kind == "othername":
        fields = element.children()
        if len(fields) != 2 or not fields[1].is_context(0):
            raise DerError("an other name does not hold a type and a value")
        dotted = derlib.oid(fields[0])
        return f"othername:{dotted}:{_other_name_value(dotted, fields[1].only_child().encoded)}"
    if kind == "RID":
        return f"RID:{derlib.decode_oid(content)}"
    return f"{kind}:{element.encoded.hex()}"  # X400Address, EdiPartyName: their DER


def _general_names(container: Element, where: str, warn: Callable[[str], None]) -> list[str]:
    """The GeneralNames inside ``container``; a malformed one is skipped with a warning."""
    items, broken = _children(container)
    names = []
    for item in items:
        try:
            name = _general_name(item, where, warn)
        except DerError:
            kind = _GENERAL_NAME_KINDS[min(item.number, len(_GENERAL_NAME_KINDS) - 1)]
            warn(f"the {where} holds a malformed {_GENERAL_NAME_PHRASES[kind]}; it is not shown")
            continue
        if name is not None:
            names.append(name)
    if broken:
        warn(f"the {where} is corrupt after {len(items)} names; the rest are not shown")
    return names


def _decode_alt_names(value: bytes, where: str, warn: Callable[[str], None]) -> list[str]:
    container = derlib.expect(derlib.read_one(value), derlib.SEQUENCE)
    names = _general_names(container, where, warn)
    if container.end == container.content_start:
        warn(f"the {where} is empty")
    return names


def _decode_basic_constraints(value: bytes, warn: Callable[[str], None]) -> tuple[bool, int | None]:
    fields = _sequence_of(value)
    ca, path_length, index = False, None, 0
    if fields and fields[0].is_universal(derlib.BOOLEAN):
        ca, index = derlib.boolean(fields[0]), 1
    if index < len(fields):
        path_length = derlib.integer(fields[index])
        index += 1
    if index < len(fields):
        raise DerError("the extension holds unexpected fields")
    if path_length is not None:
        if not ca:
            warn(
                "the basicConstraints extension gives a path length "
                "to a certificate that is not a CA"
            )
        if path_length < 0 or path_length.bit_length() > 31:
            warn("the basicConstraints extension has an impossible path length")
            path_length = None
    return ca, path_length


def _decode_key_usage(value: bytes, warn: Callable[[str], None]) -> list[str]:
    bits, unused = derlib.bit_string(derlib.read_one(value))
    count = len(bits) * 8 - unused
    usages = [
        _KEY_USAGES[bit]
        for bit in range(min(count, len(_KEY_USAGES)))
        if bits[bit // 8] & (0x80 >> (bit % 8))
    ]
    if any(bits[bit // 8] & (0x80 >> (bit % 8)) for bit in range(len(_KEY_USAGES), count)):
        warn("the keyUsage extension sets bits that mean nothing")
    if not usages:
        warn("the keyUsage extension allows no usage")
    return usages


def _decode_extended_key_usage(value: bytes, warn: Callable[[str], None]) -> list[str]:
    usages = [_named_oid(derlib.oid(item), _EKU_NAMES) for item in _sequence_of(value)]
    if not usages:
        warn("the extendedKeyUsage extension is empty")
    return usages


def _check_policy_qualifier(qualifier: Element, warn: Callable[[str], None]) -> None:
    fields = derlib.expect(qualifier, derlib.SEQUENCE).children()
    if not fields:
        raise DerError("a policy qualifier is empty")
    dotted = derlib.oid(fields[0])
    value = fields[1] if len(fields) > 1 else None
    if dotted == _OID_CPS:
        if value is None or not value.is_universal(derlib.IA5_STRING):
            warn("the certificatePolicies extension has a CPS qualifier that is not a URI")
        elif derlib.text(value)[1]:
            warn("the certificatePolicies extension has a CPS URI with non-ASCII characters")
    elif dotted == _OID_USER_NOTICE:
        if value is None or not value.is_universal(derlib.SEQUENCE):
            warn(
                "the certificatePolicies extension has a user notice qualifier "
                "that is not a user notice"
            )
            return
        for part in value.children():
            texts = part.children()[:1] if part.is_universal(derlib.SEQUENCE) else [part]
            for element in texts:
                problem = derlib.text(element)[1]
                if problem:
                    warn(f"the certificatePolicies extension has a user notice with {problem}")


def _decode_policies(value: bytes, warn: Callable[[str], None]) -> list[str]:
    policies = []
    items = _sequence_of(value)
    if not items:
        warn("the certificatePolicies extension is empty")
    for item in items:
        fields = derlib.expect(item, derlib.SEQUENCE).children()
        if not fields:
            raise DerError("a policy is empty")
        policies.append(_named_oid(derlib.oid(fields[0]), _POLICY_NAMES))
        if len(fields) > 1:
            for qualifier in derlib.expect(fields[1], derlib.SEQUENCE).children():
                _check_policy_qualifier(qualifier, warn)
    return policies


def _without_uri_prefix(name: str) -> str:
    return name[4:] if name.startswith("URI:") else name


def _decode_access(value: bytes, where: str, warn: Callable[[str], None]) -> list[str]:
    entries = []
    for item in _sequence_of(value):
        fields = derlib.expect(item, derlib.SEQUENCE).children()
        if len(fields) != 2:
            raise DerError("an access description does not hold a method and a location")
        method = derlib.oid(fields[0])
        location = _general_name(fields[1], where, warn)
        if location is not None:
            entries.append(
                f"{_ACCESS_METHODS.get(method, method)}: {_without_uri_prefix(location)}"
            )
    return entries


def _decode_crl_points(value: bytes, warn: Callable[[str], None]) -> list[str]:
    where = "cRLDistributionPoints extension"
    points: list[str] = []
    for item in _sequence_of(value):
        for field in derlib.expect(item, derlib.SEQUENCE).children():
            if field.is_context(0):
                name = field.only_child()
                if name.is_context(0):
                    points.extend(_without_uri_prefix(n) for n in _general_names(name, where, warn))
                elif name.is_context(1):
                    text, _, problems = _format_attributes(name.children())
                    points.append(f"relative name: {text}")
                    for problem in problems:
                        warn(f"the {where} holds a name that contains {problem}")
            elif field.is_context(2):
                points.extend(f"CRL issuer: {n}" for n in _general_names(field, where, warn))
    return points


def _check_name_constraints(value: bytes, warn: Callable[[str], None]) -> None:
    where = "nameConstraints extension"
    for subtrees in _sequence_of(value):
        for subtree in subtrees.children():
            fields = derlib.expect(subtree, derlib.SEQUENCE).children()
            if not fields:
                raise DerError("a name constraint is empty")
            base = fields[0]
            if not base.is_context(7):
                _general_name(base, where, warn)
                continue
            content = base.content
            if len(content) not in (8, 32):
                warn(f"the {where} has an IP range of {len(content)} bytes (8 or 32 expected)")
                continue
            half = len(content) // 2
            hosts = ~int.from_bytes(content[half:], "big") & ((1 << (half * 8)) - 1)
            if hosts & (hosts + 1):
                warn(f"the {where} has an IP range whose netmask is not contiguous")


def _check_inhibit_any_policy(value: bytes, warn: Callable[[str], None]) -> None:
    if derlib.integer(derlib.read_one(value)) < 0:
        warn("the inhibitAnyPolicy extension has a negative number of certificates")


def _check_timestamps(value: bytes, warn: Callable[[str], None]) -> None:
    """Signed certificate timestamps (RFC 6962): a TLS-encoded list in an OCTET STRING."""
    data = derlib.expect(derlib.read_one(value), derlib.OCTET_STRING).content
    where = "the signed certificate timestamps extension"
    malformed = f"{where} is malformed (a length does not match its content)"
    if len(data) < 2 or int.from_bytes(data[:2], "big") != len(data) - 2:
        warn(malformed)
        return
    position = 2
    while position < len(data):
        size = int.from_bytes(data[position : position + 2], "big")
        timestamp = data[position + 2 : position + 2 + size]
        position += 2 + size
        if len(timestamp) != size or size < 47:
            warn(malformed)
            return
        if timestamp[0] != 0:
            warn(f"{where} holds a timestamp of unknown version {timestamp[0]}")
            continue
        offset = 43 + int.from_bytes(timestamp[41:43], "big")
        if (
            offset + 4 > size
            or offset + 4 + int.from_bytes(timestamp[offset + 2 : offset + 4], "big") != size
        ):
            warn(malformed)
            return
        if not 1 <= timestamp[offset] <= 6:
            warn(f"{where} holds a timestamp with an unknown hash algorithm ({timestamp[offset]})")
        if timestamp[offset + 1] not in (1, 2, 3):
            warn(
                f"{where} holds a timestamp with an unknown signature algorithm "
                f"({timestamp[offset + 1]})"
            )


_DECODERS: dict[str, Callable[[bytes, Callable[[str], None]], object]] = {
    _OID_SAN: lambda value, warn: _decode_alt_names(
        value, "subject alternative name extension", warn
    ),
    _OID_IAN: lambda value, warn: _decode_alt_names(
        value, "issuer alternative name extension", warn
    ),
    _OID_BASIC_CONSTRAINTS: _decode_basic_constraints,
    _OID_KEY_USAGE: _decode_key_usage,
    _OID_EKU: _decode_extended_key_usage,
    _OID_POLICIES: _decode_policies,
    _OID_AIA: lambda value, warn: _decode_access(value, "authorityInfoAccess extension", warn),
    _OID_SIA: lambda value, warn: _decode_access(value, "subjectInfoAccess extension", warn),
    _OID_CRL_DP: _decode_crl_points,
    _OID_NAME_CONSTRAINTS: _check_name_constraints,
    _OID_INHIBIT_ANY_POLICY: _check_inhibit_any_policy,
    _OID_SCTS: _check_timestamps,
}


@dataclass(frozen=True, slots=True)
class _Extension:
    oid: str
    critical: bool
    value: bytes


def _decode_extension(extension: _Extension, warn: Callable[[str], None]) -> object | None:
    """What the extension says (for the ones we know), or None with a warning if malformed."""
    decoder = _DECODERS.get(extension.oid)
    if decoder is None:
        return None
    try:
        return decoder(extension.value, warn)
    except Exception:  # DerError, or any surprise: this extension only is unknown
        label = _extension_label(extension.oid)
        if extension.oid == _OID_SAN:
            warn("the subject alternative name extension is malformed; its names are not shown")
        elif extension.oid == _OID_BASIC_CONSTRAINTS:
            warn(
                "the basicConstraints extension is malformed; the certificate is taken as not a CA"
            )
        else:
            warn(f"the {label} extension is malformed; it is not shown")
        return None


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


def _split(der: bytes) -> _RawCertificate:
    """The certificate's elements; CertificateParseError for bytes without a certificate's shape."""
    try:
        outer = derlib.read_element(der)
    except DerError as exc:
        raise _refuse("its outer header is malformed") from exc
    if not _is_sequence(outer):
        raise _refuse("it does not start with a DER SEQUENCE")
    parts, broken = _children(outer)
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
    fields, broken = _children(body)
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


def _raw_extension(item: Element, warn: Callable[[str], None]) -> _Extension:
    fields = derlib.expect(item, derlib.SEQUENCE).children()
    if len(fields) not in (2, 3):
        raise DerError("an extension does not hold an identifier, a criticality and a value")
    dotted = derlib.oid(fields[0])
    critical = False
    if len(fields) == 3:
        critical = derlib.boolean(fields[1])
        if not critical:
            warn(
                f"the {_extension_label(dotted)} extension says 'not critical' explicitly, "
                "which DER forbids"
            )
    return _Extension(dotted, critical, derlib.expect(fields[-1], derlib.OCTET_STRING).content)


def _raw_extensions(raw: _RawCertificate, warn: Callable[[str], None]) -> list[_Extension]:
    """Every readable extension in order, duplicates included (with a warning)."""
    if raw.extensions is None:
        return []
    try:
        container = derlib.expect(raw.extensions.only_child(), derlib.SEQUENCE)
    except DerError:
        warn("the extension list is malformed; no extension is shown")
        return []
    items, broken = _children(container)
    extensions: list[_Extension] = []
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
            warn(f"the {_extension_label(dotted)} extension appears {times}")
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
        return f"othername:{dotted}:{_other_name_value(dotted, name.value)}"
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
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == _MAX_WARNINGS:
            self.warnings.append("more problems were found; they are not listed")

    def raw(self) -> _RawCertificate | None:
        if not self._raw_tried:
            self._raw_tried = True
            try:
                self._raw = _split(self._der)
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
        text, common_names, problems = _format_name(name)
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
                return _KEY_ALGORITHMS.get(algorithm, algorithm), getattr(key, "key_size", None)
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
        name = _KEY_ALGORITHMS.get(dotted)
        if name is None:
            self.warn(f"public key algorithm {dotted} is not supported; key size unknown")
            return dotted, None
        refused = self._certificate is not None  # cryptography could not load this key
        size: int | None = _FIXED_KEY_SIZES.get(name)
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
            if derlib.oid(field[0]) != _OID_PRIME_FIELD:
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
            return _oid_label(algorithm)
        return self._from_der("signature algorithm", self._signature_from_der, "")

    def _signature_from_der(self, raw: _RawCertificate) -> str:
        if raw.inner_algorithm.encoded != raw.outer_algorithm.encoded:
            self.warn(
                "the signature algorithm inside the certificate body "
                "differs from the one of its signature"
            )
        for algorithm in (raw.inner_algorithm, raw.outer_algorithm):
            fields = algorithm.children()
            if len(fields) > 1 and derlib.oid(fields[0]) in _PARAMETERLESS_SIGNATURES:
                self.warn("the signature algorithm has parameters it must not have")
        fields = raw.outer_algorithm.children()
        if not fields:
            raise DerError("the signature algorithm is empty")
        return _oid_label(derlib.oid(fields[0]))

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
        for extension in _raw_extensions(raw, self.warn):
            if extension.oid in decoded:
                continue
            decoded.add(extension.oid)
            result = _decode_extension(extension, self.warn)
            if extension.oid == _OID_SAN and isinstance(result, list):
                sans = result
            elif extension.oid == _OID_BASIC_CONSTRAINTS and isinstance(result, tuple):
                is_ca = result[0]
        unsupported_names = any(name.startswith(_UNSUPPORTED_NAME_PREFIXES) for name in sans)
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
        signature_algorithm = _oid_label(certificate.signature_algorithm_oid)
        sans: list[str] = []
        is_ca = False
        for extension in certificate.extensions:
            if extension.oid == _SAN:
                sans = [_storable(_general_name_text(name)) for name in extension.value]
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
        issuer=_storable(issuer),
        subject=_storable(subject),
        common_name=_storable(common_name)[:255],
        sans=sans,
        not_before=not_before,
        not_after=not_after,
        key_algorithm=key[0],
        key_size=key[1],
        signature_algorithm=_storable(signature_algorithm),
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
        raw = _split(der)  # refuses what is no certificate
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
        issuer=_storable(issuer),
        subject=_storable(subject),
        common_name=_storable(common_name)[:255],
        sans=[_storable(name) for name in sans],
        not_before=not_before,
        not_after=not_after,
        key_algorithm=_storable(key_algorithm),
        key_size=key_size,
        signature_algorithm=_storable(signature_algorithm),
        is_ca=is_ca,
        self_signed=self_signed,
        version=version,
        parse_warnings=[_storable(message) for message in warnings],
    )


def certificate_parse(der: bytes) -> ParsedCertificate:
    """Every field the inventory keeps, from one DER certificate.

    A field that cannot be decoded is unknown ("" or None) and a parse warning says
    why; bytes after the certificate are ignored with a warning. Raises
    CertificateParseError, and nothing else, only for bytes that are no certificate.
    """
    if type(der) is bytes:
        # The common case first: cryptography reads it whole (it refuses trailing bytes).
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


_SHOWN_EXTENSIONS = frozenset(
    {
        _OID_SAN,
        _OID_KEY_USAGE,
        _OID_EKU,
        _OID_BASIC_CONSTRAINTS,
        _OID_POLICIES,
        _OID_AIA,
        _OID_CRL_DP,
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
        if message not in warnings and len(warnings) < _MAX_WARNINGS:
            warnings.append(message)

    sans: dict[str, list[str]] = {}
    found: dict[str, object] = {}
    other_extensions: list[str] = []
    try:
        extensions = _raw_extensions(_split(parsed.der), warn)
    except Exception:
        warn("the extensions cannot be read")
        extensions = []
    for extension in extensions:
        if extension.oid in found:
            continue
        if extension.oid not in _SHOWN_EXTENSIONS:
            label = _oid_label(extension.oid)
            other_extensions.append(f"{label} (critical)" if extension.critical else label)
        found[extension.oid] = _decode_extension(extension, warn)
    for name in found.get(_OID_SAN) or []:
        kind, _, value = str(name).partition(":")
        sans.setdefault(_SAN_GROUPS.get(kind, kind), []).append(_storable(value))
    basic_constraints = found.get(_OID_BASIC_CONSTRAINTS)

    def texts(oid: str) -> list[str]:
        value = found.get(oid)
        return [_storable(str(item)) for item in value] if isinstance(value, list) else []

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
        key_usage=texts(_OID_KEY_USAGE),
        extended_key_usage=texts(_OID_EKU),
        basic_constraints=(
            _basic_constraints_text(*basic_constraints)
            if isinstance(basic_constraints, tuple)
            else None
        ),
        policies=texts(_OID_POLICIES),
        authority_information_access=texts(_OID_AIA),
        crl_distribution_points=texts(_OID_CRL_DP),
        other_extensions=[_storable(label) for label in other_extensions],
        warnings=[_storable(message) for message in warnings],
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
