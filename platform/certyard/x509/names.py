"""Distinguished names read from the DER, as cryptography's ``rfc4514_string()`` shows them.

Used where cryptography refuses a name (a string of the wrong type, bytes that are
not valid UTF-8): each attribute is shown as well as it can be, and what is odd
about it is returned in words.
"""

from __future__ import annotations

import ipaddress

from certyard.x509 import der as derlib
from certyard.x509.der import DerError, Element
from certyard.x509.oids import NAME_KEYS, OID_COMMON_NAME, OID_COUNTRY


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


def format_attributes(attributes: list[Element]) -> tuple[str, list[str], list[str]]:
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
        if dotted == OID_COMMON_NAME:
            common_names.append(value)
        elif dotted == OID_COUNTRY and len(value) != 2:
            problems.append("a country name that is not two letters")
        parts.append(f"{NAME_KEYS.get(dotted, dotted)}={shown}")
    return "+".join(parts), common_names, problems


def format_name(name: Element) -> tuple[str, list[str], list[str]]:
    """A Name as cryptography's ``rfc4514_string()`` shows it, its common names, its oddities."""
    relative_names: list[str] = []
    common_names: list[str] = []
    problems: list[str] = []
    for relative_name in derlib.expect(name, derlib.SEQUENCE).children():
        text, found, odd = format_attributes(derlib.expect(relative_name, derlib.SET).children())
        relative_names.append(text)
        common_names += found
        problems += odd
    return ",".join(reversed(relative_names)), common_names, problems


def host_name_matches(host: str, sans: list[str], common_name: str = "") -> bool:
    """Whether a certificate with these SANs (``["DNS:a.example", "IP:192.0.2.1"]``) is
    valid for ``host`` (a DNS name or an IP address), as RFC 6125 reads them.

    A wildcard stands for exactly one whole left-most label (``*.example.com`` matches
    ``www.example.com``, not ``example.com`` nor ``a.b.example.com``). The common name is
    read only when the certificate has no DNS or IP SAN at all, as old clients did.
    """
    host = host.rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    names = [san[4:].rstrip(".").lower() for san in sans if san.startswith("DNS:")]
    addresses = [san[3:] for san in sans if san.startswith("IP:")]
    if address is not None:
        return any(_same_address(address, text) for text in addresses)
    if not names and not addresses and common_name:
        names = [common_name.rstrip(".").lower()]
    return any(_dns_name_matches(host, pattern) for pattern in names)


def _same_address(address: object, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False


def _dns_name_matches(host: str, pattern: str) -> bool:
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    suffix = pattern[1:]  # ".example.com"
    head, _, rest = host.partition(".")
    return bool(head) and "." + rest == suffix and suffix.count(".") >= 2
