"""Extension decoders over the DER: general names, constraints, usages, policies, access.

Each decoder takes an extension's value and a ``warn`` callback, returns what the
extension says in words, and raises ``DerError`` (or anything else) for a value it
cannot read; ``decode_extension`` turns that into a warning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from certyard.x509 import der as derlib
from certyard.x509.der import DerError, Element
from certyard.x509.names import format_attributes, format_name
from certyard.x509.oids import (
    ACCESS_METHODS,
    EKU_NAMES,
    GENERAL_NAME_KINDS,
    KEY_USAGES,
    OID_AIA,
    OID_BASIC_CONSTRAINTS,
    OID_CPS,
    OID_CRL_DP,
    OID_EKU,
    OID_IAN,
    OID_INHIBIT_ANY_POLICY,
    OID_KEY_USAGE,
    OID_NAME_CONSTRAINTS,
    OID_POLICIES,
    OID_SAN,
    OID_SCTS,
    OID_SIA,
    OID_UPN,
    OID_USER_NOTICE,
    POLICY_NAMES,
    extension_label,
    named_oid,
)


def _sequence_of(value: bytes) -> list[Element]:
    """The items of the SEQUENCE that an extension's value holds."""
    return derlib.expect(derlib.read_one(value), derlib.SEQUENCE).children()


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
UNSUPPORTED_NAME_PREFIXES = ("X400Address:", "EdiPartyName:")


def other_name_value(dotted: str, value: bytes) -> str:
    """An otherName's value: a UPN's text when it is a UTF8String, else the DER in hex."""
    if dotted == OID_UPN:
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
    if element.tag_class != derlib.CONTEXT or element.number >= len(GENERAL_NAME_KINDS):
        warn(f"the {where} holds an entry that is no name ({element.describe()}); it is not shown")
        return None
    kind = GENERAL_NAME_KINDS[element.number]
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
        text, _, problems = format_name(element.only_child())
        for problem in problems:
            warn(f"the {where} holds a directory name that contains {problem}")
        return f"DirName:{text}"
    if kind == "othername":
        fields = element.children()
        if len(fields) != 2 or not fields[1].is_context(0):
            raise DerError("an other name does not hold a type and a value")
        dotted = derlib.oid(fields[0])
        return f"othername:{dotted}:{other_name_value(dotted, fields[1].only_child().encoded)}"
    if kind == "RID":
        return f"RID:{derlib.decode_oid(content)}"
    return f"{kind}:{element.encoded.hex()}"  # X400Address, EdiPartyName: their DER


def _general_names(container: Element, where: str, warn: Callable[[str], None]) -> list[str]:
    """The GeneralNames inside ``container``; a malformed one is skipped with a warning."""
    items, broken = derlib.readable_children(container)
    names = []
    for item in items:
        try:
            name = _general_name(item, where, warn)
        except DerError:
            kind = GENERAL_NAME_KINDS[min(item.number, len(GENERAL_NAME_KINDS) - 1)]
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
        KEY_USAGES[bit]
        for bit in range(min(count, len(KEY_USAGES)))
        if bits[bit // 8] & (0x80 >> (bit % 8))
    ]
    if any(bits[bit // 8] & (0x80 >> (bit % 8)) for bit in range(len(KEY_USAGES), count)):
        warn("the keyUsage extension sets bits that mean nothing")
    if not usages:
        warn("the keyUsage extension allows no usage")
    return usages


def _decode_extended_key_usage(value: bytes, warn: Callable[[str], None]) -> list[str]:
    usages = [named_oid(derlib.oid(item), EKU_NAMES) for item in _sequence_of(value)]
    if not usages:
        warn("the extendedKeyUsage extension is empty")
    return usages


def _check_policy_qualifier(qualifier: Element, warn: Callable[[str], None]) -> None:
    fields = derlib.expect(qualifier, derlib.SEQUENCE).children()
    if not fields:
        raise DerError("a policy qualifier is empty")
    dotted = derlib.oid(fields[0])
    value = fields[1] if len(fields) > 1 else None
    if dotted == OID_CPS:
        if value is None or not value.is_universal(derlib.IA5_STRING):
            warn("the certificatePolicies extension has a CPS qualifier that is not a URI")
        elif derlib.text(value)[1]:
            warn("the certificatePolicies extension has a CPS URI with non-ASCII characters")
    elif dotted == OID_USER_NOTICE:
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
        policies.append(named_oid(derlib.oid(fields[0]), POLICY_NAMES))
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
            entries.append(f"{ACCESS_METHODS.get(method, method)}: {_without_uri_prefix(location)}")
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
                    text, _, problems = format_attributes(name.children())
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
    OID_SAN: lambda value, warn: _decode_alt_names(
        value, "subject alternative name extension", warn
    ),
    OID_IAN: lambda value, warn: _decode_alt_names(
        value, "issuer alternative name extension", warn
    ),
    OID_BASIC_CONSTRAINTS: _decode_basic_constraints,
    OID_KEY_USAGE: _decode_key_usage,
    OID_EKU: _decode_extended_key_usage,
    OID_POLICIES: _decode_policies,
    OID_AIA: lambda value, warn: _decode_access(value, "authorityInfoAccess extension", warn),
    OID_SIA: lambda value, warn: _decode_access(value, "subjectInfoAccess extension", warn),
    OID_CRL_DP: _decode_crl_points,
    OID_NAME_CONSTRAINTS: _check_name_constraints,
    OID_INHIBIT_ANY_POLICY: _check_inhibit_any_policy,
    OID_SCTS: _check_timestamps,
}


@dataclass(frozen=True, slots=True)
class Extension:
    oid: str
    critical: bool
    value: bytes


def decode_extension(extension: Extension, warn: Callable[[str], None]) -> object | None:
    """What the extension says (for the ones we know), or None with a warning if malformed."""
    decoder = _DECODERS.get(extension.oid)
    if decoder is None:
        return None
    try:
        return decoder(extension.value, warn)
    except Exception:  # DerError, or any surprise: this extension only is unknown
        label = extension_label(extension.oid)
        if extension.oid == OID_SAN:
            warn("the subject alternative name extension is malformed; its names are not shown")
        elif extension.oid == OID_BASIC_CONSTRAINTS:
            warn(
                "the basicConstraints extension is malformed; the certificate is taken as not a CA"
            )
        else:
            warn(f"the {label} extension is malformed; it is not shown")
        return None
