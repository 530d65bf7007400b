"""Helpers for handler authors: subject attributes, SANs by type, ``key=value`` lines.

Standard library only (no Django, no platform imports), so a handler package can use them
in its own tests. Every function here reads the strings exactly as the platform writes
them; ``docs/extending.md`` (*Formats*) describes those strings in full.

Subjects and issuers (``CertificateInfo.subject``, ``event.data["subject"]``,
``GatewayEnrollment.subject``) are RFC 4514 strings, as cryptography's
``Name.rfc4514_string()`` writes them:

- relative distinguished names (RDNs) joined by ``,`` in the reverse of the certificate's
  order, so a usual subject reads most specific first:
  ``CN=web.example.com,OU=Payments,O=Example\\, Inc.,C=FR``; attributes of one
  multi-valued RDN joined by ``+`` (``CN=web+OU=Payments``);
- attribute types as ``CN``, ``L``, ``ST``, ``O``, ``OU``, ``C``, ``STREET``, ``DC``,
  ``UID``, and every other one as its dotted OID: ``emailAddress`` is
  ``1.2.840.113549.1.9.1=pki@example.com``, ``serialNumber`` ``2.5.4.5=...``;
- values as text (non-ASCII characters as themselves, ``CN=Zoë``), with ``\\`` before
  ``\\ " + , ; < >``, before a leading ``#`` or space and before a trailing space, and NUL
  as ``\\00``; ``=`` is *not* escaped (``CN=a=b``). A value that is not a string (a BIT
  STRING ``x500UniqueIdentifier``, a wrongly typed value) is ``#`` and hex. Bytes the
  platform could not decode appear as ``\\xNN``.

Subject alternative names (``sans``) are ``TYPE:value`` strings: ``DNS:``, ``IP:``,
``email:``, ``URI:``, ``DirName:`` (an RFC 4514 name), ``RID:`` (a dotted OID),
``othername:<oid>:<value>``, ``X400Address:``/``EdiPartyName:`` (DER in hex).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from handlers.parameters import mapping_parse

__all__ = [
    "SAN_TYPES",
    "SUBJECT_ATTRIBUTE_NAMES",
    "attribute_value",
    "der_string",
    "key_values",
    "sans_of",
    "subject_attribute",
    "subject_attributes",
    "subject_rdns",
]

# --- Subject attribute names -----------------------------------------------------------------

#: Each attribute's usual name, its dotted OID and the other spellings accepted for it
#: (all compared ignoring case). ``SN`` is the surname, as in OpenSSL; the subject's serial
#: number is ``serialNumber``.
SUBJECT_ATTRIBUTE_NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "CN": ("2.5.4.3", ("commonName",)),
    "SN": ("2.5.4.4", ("surname",)),
    "serialNumber": ("2.5.4.5", ()),
    "C": ("2.5.4.6", ("countryName",)),
    "L": ("2.5.4.7", ("localityName",)),
    "ST": ("2.5.4.8", ("S", "stateOrProvinceName")),
    "street": ("2.5.4.9", ("streetAddress",)),
    "O": ("2.5.4.10", ("organizationName",)),
    "OU": ("2.5.4.11", ("organizationalUnitName",)),
    "title": ("2.5.4.12", ("T",)),
    "description": ("2.5.4.13", ()),
    "businessCategory": ("2.5.4.15", ()),
    "postalAddress": ("2.5.4.16", ()),
    "postalCode": ("2.5.4.17", ()),
    "name": ("2.5.4.41", ()),
    "GN": ("2.5.4.42", ("givenName", "G")),
    "initials": ("2.5.4.43", ()),
    "generationQualifier": ("2.5.4.44", ()),
    "x500UniqueIdentifier": ("2.5.4.45", ()),
    "dnQualifier": ("2.5.4.46", ()),
    "pseudonym": ("2.5.4.65", ()),
    "role": ("2.5.4.72", ()),
    "organizationIdentifier": ("2.5.4.97", ()),
    "DC": ("0.9.2342.19200300.100.1.25", ("domainComponent",)),
    "UID": ("0.9.2342.19200300.100.1.1", ("userId",)),
    "emailAddress": ("1.2.840.113549.1.9.1", ("E", "email")),
    "unstructuredName": ("1.2.840.113549.1.9.2", ()),
    "jurisdictionC": ("1.3.6.1.4.1.311.60.2.1.3", ("jurisdictionCountryName",)),
    "jurisdictionST": ("1.3.6.1.4.1.311.60.2.1.2", ("jurisdictionStateOrProvinceName",)),
    "jurisdictionL": ("1.3.6.1.4.1.311.60.2.1.1", ("jurisdictionLocalityName",)),
}
# Every spelling (upper-cased) and every dotted OID -> the dotted OID.
_OID_BY_SPELLING: dict[str, str] = {}
_NAME_BY_OID: dict[str, str] = {}
for _name, (_oid, _aliases) in SUBJECT_ATTRIBUTE_NAMES.items():
    _NAME_BY_OID[_oid] = _name
    _OID_BY_SPELLING[_oid] = _oid
    for _spelling in (_name, *_aliases):
        _OID_BY_SPELLING[_spelling.upper()] = _oid
del _name, _oid, _aliases, _spelling
_DOTTED = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")


def _oid_of(kind: str) -> str:
    """A written attribute type (``cn``, ``OID.2.5.4.3``, ``2.5.4.3``) as its dotted OID.

    An unknown word comes back upper-cased (it matches itself, whatever its case).
    """
    kind = kind.strip()
    found = _OID_BY_SPELLING.get(kind) or _OID_BY_SPELLING.get(kind.upper())
    if found is not None:
        return found
    if kind[:4].upper() == "OID.":
        kind = kind[4:]
    if _DOTTED.fullmatch(kind):
        return kind
    return _OID_BY_SPELLING.get(kind.upper(), kind.upper())


def _wanted_oid(name: str) -> str:
    """The dotted OID an author asked for by name; ValueError for a name we do not know."""
    if not isinstance(name, str):
        raise TypeError(f"an attribute name is a str, not {type(name).__name__}")
    oid = _oid_of(name)
    if oid not in _NAME_BY_OID and not _DOTTED.fullmatch(oid):
        raise ValueError(
            f"{name!r} is not a subject attribute name: use one of "
            f"{', '.join(SUBJECT_ATTRIBUTE_NAMES)} or a dotted OID such as 2.5.4.3"
        )
    return oid


# --- Values ------------------------------------------------------------------------------------

# DER string types a "#<hex>" value may hold, and how their bytes read.
_DER_STRING_ENCODINGS = {
    0x0C: "utf-8",  # UTF8String
    0x12: "ascii",  # NumericString
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # TeletexString, read as Latin-1 like most software does
    0x16: "ascii",  # IA5String
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}
# What RFC 4514 lets follow a backslash besides two hex digits.
_SPECIALS = frozenset(' "#+,;<=>\\')
_HEX = frozenset("0123456789abcdefABCDEF")


def der_string(hex_text: str) -> str | None:
    """The text of an RFC 4514 ``#<hex>`` value (without its ``#``) holding a DER string.

    None when the hex is not one whole DER string (UTF8String, PrintableString,
    IA5String, BMPString, ...): an OCTET STRING, a BIT STRING, broken hex.
    """
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        return None
    if len(data) < 2 or data[0] not in _DER_STRING_ENCODINGS:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or len(data) < 2 + count:
            return None
        length, offset = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    if offset + length != len(data):
        return None
    try:
        return data[offset:].decode(_DER_STRING_ENCODINGS[data[0]])
    except UnicodeDecodeError:
        return None


def _unescape(text: str) -> str:
    """RFC 4514 escapes undone: ``\\,`` is ``,``; ``\\C3\\A9`` is ``é`` (UTF-8 pairs).

    A backslash before anything else stays as written, with what follows it: that is how
    the platform shows bytes it could not decode (``\\xff``).
    """
    data = bytearray()
    index, length = 0, len(text)
    while index < length:
        found = text.find("\\", index)
        if found < 0:
            data += text[index:].encode("utf-8", "surrogatepass")
            break
        data += text[index:found].encode("utf-8", "surrogatepass")
        pair = text[found + 1 : found + 3]
        if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
            data.append(int(pair, 16))
            index = found + 3
        elif pair[:1] and pair[0] in _SPECIALS:
            data += pair[0].encode()
            index = found + 2
        else:
            data += text[found : found + 2].encode("utf-8", "surrogatepass")
            index = found + 2
    return data.decode("utf-8", "replace")


def _value(raw: str) -> tuple[str, bool]:
    """An attribute value as written -> (its text, whether it is text at all).

    Unescaped spaces around it are no part of it; ``#<hex>`` is decoded when it holds a
    DER string, else returned as written with False.
    """
    text = raw.strip(" ")
    if raw.endswith(" ") and text.endswith("\\"):
        # "\ " at the end is an escaped space, part of the value.
        backslashes = len(text) - len(text.rstrip("\\"))
        if backslashes % 2:
            text += " "
    if text[:1] == "#":
        decoded = der_string(text[1:])
        return (text, False) if decoded is None else (decoded, True)
    if "\\" in text:
        return _unescape(text), True
    return text, True


def attribute_value(raw: str) -> str | None:
    """One attribute value as an RFC 4514 string writes it, as text; None if not text.

    Escapes are undone (``Example\\, Inc.`` -> ``Example, Inc.``, ``\\C3\\A9`` -> ``é``),
    unescaped spaces around it dropped, a ``#<hex>`` DER string decoded; None for a
    ``#<hex>`` value that is no DER string (a BIT STRING, an OCTET STRING, broken hex).
    """
    value, is_text = _value(raw)
    return value if is_text else None


# --- Splitting a name --------------------------------------------------------------------------


# One attribute as written (group 1), up to the next unescaped "," or "+" (group 2, empty
# at the end). A backslash takes the character after it; a lone one at the end is itself.
_PART = re.compile(r"((?:[^\\,+]++|\\.?)*+)([,+]?)", re.DOTALL)
# Written attribute types -> dotted OIDs: a backfill reads the same few types millions of
# times. Bounded: a subject is data, and its types could be anything.
_KINDS: dict[str, str] = {}
_KINDS_MAX = 4096


def _kind(kind: str) -> str:
    found = _KINDS.get(kind)
    if found is None:
        found = _oid_of(kind)
        if len(_KINDS) < _KINDS_MAX:
            _KINDS[kind] = found
    return found


def _attributes(dn: str) -> list[tuple[int, str, str]]:
    """Each ``(RDN number, dotted OID or upper-cased type, value as written)``, in order.

    A part without ``=`` (or with nothing before it) is no attribute and is skipped.
    """
    found: list[tuple[int, str, str]] = []
    if "\\" not in dn:
        for number, relative in enumerate(dn.split(",")):
            for attribute in relative.split("+"):
                kind, equals, raw = attribute.partition("=")
                if equals and kind and (oid := _kind(kind)):
                    found.append((number, oid, raw))
        return found
    number = 0
    for match in _PART.finditer(dn):
        kind, equals, raw = match[1].partition("=")
        if equals and kind and (oid := _kind(kind)):
            found.append((number, oid, raw))
        if match[2] == ",":
            number += 1
        elif not match[2]:
            break
    return found


def subject_rdns(dn: str) -> list[list[tuple[str, str]]]:
    """A whole RFC 4514 name: its RDNs in written order, each a list of ``(type, value)``.

    ``type`` is the usual name of a known attribute (``CN``, ``emailAddress``,
    ``serialNumber``: the keys of :data:`SUBJECT_ATTRIBUTE_NAMES`), whichever way the
    name spells it, else its dotted OID. ``value`` is the text with escapes undone and a
    ``#<hex>`` DER string decoded; a value that is not text stays as written (``#`` and
    hex). Never raises: a part without ``=`` is skipped.

    >>> subject_rdns("CN=web+OU=Payments,1.2.840.113549.1.9.1=pki@example.com,O=A\\\\, B")
    [[('CN', 'web'), ('OU', 'Payments')], [('emailAddress', 'pki@example.com')], [('O', 'A, B')]]
    """
    rdns: list[list[tuple[str, str]]] = []
    last = -1
    for number, oid, raw in _attributes(dn or ""):
        if number != last:
            rdns.append([])
            last = number
        rdns[-1].append((_NAME_BY_OID.get(oid, oid), _value(raw)[0]))
    return rdns


def subject_attributes(dn: str, name: str) -> list[str]:
    """Every value of one attribute in an RFC 4514 subject (or issuer), in written order.

    ``name`` is an attribute name, ignoring case (``CN``, ``O``, ``OU``, ``L``, ``ST``,
    ``C``, ``emailAddress`` (or ``E``, ``email``), ``serialNumber``, ``DC``, ``UID``,
    ``street``, ``title``, ``GN``, ``SN`` (surname), ...: see
    :data:`SUBJECT_ATTRIBUTE_NAMES`) or a dotted OID (``2.5.4.11``). The subject may spell
    the attribute any of those ways (the platform writes ``emailAddress`` as
    ``1.2.840.113549.1.9.1``). Values come with escapes undone (``Example\\, Inc.`` is
    ``Example, Inc.``) and ``#<hex>`` DER strings decoded; empty values are kept, values
    that are not text (``#<hex>`` of a BIT or OCTET STRING) are left out.

    Written order is the reverse of the certificate's: for the usual subject the most
    specific first (``CN=web,OU=Payments,OU=IT`` gives ``["Payments", "IT"]`` for
    ``OU``). Raises ``ValueError`` for an unknown name; never for the subject.
    """
    oid = _wanted_oid(name)
    values = []
    for _, found, raw in _attributes(dn or ""):
        if found == oid:
            value, is_text = _value(raw)
            if is_text:
                values.append(value)
    return values


def subject_attribute(dn: str, name: str, default: str = "") -> str:
    """The first non-empty value of one attribute (see :func:`subject_attributes`), else
    ``default``.

    >>> subject_attribute("CN=web,OU=Payments,OU=IT,O=Example", "ou")
    'Payments'
    >>> subject_attribute("CN=web,1.2.840.113549.1.9.1=pki@example.com", "emailAddress")
    'pki@example.com'
    """
    oid = _wanted_oid(name)
    for _, found, raw in _attributes(dn or ""):
        if found == oid:
            value, is_text = _value(raw)
            if value and is_text:
                return value
    return default


# --- Subject alternative names -------------------------------------------------------------

#: The SAN types as the platform writes them (``TYPE:value``), and what each holds.
SAN_TYPES: dict[str, str] = {
    "DNS": "a DNS name as the certificate holds it (IDNs in their xn-- form)",
    "IP": "an IP address: IPv4 dotted (10.0.0.1), IPv6 compressed lower-case (2001:db8::1)",
    "email": "an e-mail address (rfc822Name)",
    "URI": "a URI",
    "DirName": "a directory name, as an RFC 4514 string like a subject",
    "RID": "a registered ID, as a dotted OID",
    "othername": "<type OID>:<value>: a UPN's text, else the value's DER in hex",
    "X400Address": "the DER of the name in hex",
    "EdiPartyName": "the DER of the name in hex",
}
_SAN_ALIASES = {
    "DNSNAME": "DNS",
    "IPADDRESS": "IP",
    "RFC822": "email",
    "RFC822NAME": "email",
    "E-MAIL": "email",
    "UNIFORMRESOURCEIDENTIFIER": "URI",
    "DIRECTORYNAME": "DirName",
    "REGISTEREDID": "RID",
}
_SAN_KIND = {kind.upper(): kind for kind in SAN_TYPES} | _SAN_ALIASES


def sans_of(sans: Iterable[str], kind: str) -> list[str]:
    """The values of the SANs of one type, in order, without their ``TYPE:`` prefix.

    ``sans`` is ``CertificateInfo.sans`` or ``event.data["sans"]`` (``TYPE:value``
    strings). ``kind`` ignores case: ``DNS``, ``IP``, ``email``, ``URI``, ``DirName``,
    ``RID``, ``othername``, ``X400Address``, ``EdiPartyName`` (see :data:`SAN_TYPES`; the
    ASN.1 names ``dNSName``, ``iPAddress``, ``rfc822Name``, ``directoryName``, ...
    work too). Values are returned as written: ``sans_of(["IP:2001:db8::1"], "ip")`` is
    ``["2001:db8::1"]``; an ``othername`` value keeps its ``<oid>:`` in front.
    Raises ``ValueError`` for a type that is none of these.
    """
    wanted = _SAN_KIND.get(str(kind).strip().upper())
    if wanted is None:
        raise ValueError(f"{kind!r} is not a SAN type: use one of {', '.join(SAN_TYPES)}")
    if isinstance(sans, str):
        sans = [sans]
    values = []
    for san in sans:
        found, colon, value = str(san).partition(":")
        if colon and _SAN_KIND.get(found.upper()) == wanted:
            values.append(value)
    return values


# --- key=value lines ---------------------------------------------------------------------------


def key_values(lines: str | Iterable[str], *, separator: str = "=") -> dict[str, str]:
    """``key=value`` lines as a dict, in order; ``ValueError`` naming the first wrong line.

    ``lines`` is one text (split at line breaks) or its lines (a ``LIST`` parameter's
    value). Blank lines and lines starting with ``#`` are skipped, but still counted, so a
    line number is the one a person sees. A line splits at its first ``separator``: the
    value may hold more of it. Keys and values are trimmed of surrounding whitespace; a
    key must be non-empty and given once; a value may be empty (``key=``).

    >>> key_values("# owners\\nteam=payments\\nurl=https://x/?a=b")
    {'team': 'payments', 'url': 'https://x/?a=b'}
    """
    return mapping_parse(lines, separator=separator)
