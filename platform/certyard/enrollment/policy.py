"""Checking a request against its template: the CSR, the key, the subject and the names.

Pure functions over ``cryptography`` objects and a template; the services record what
they refuse. Every message names what was wrong and what the template allows.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from certyard.enrollment.models import Template
from certyard.pki.crypto import (
    NAME_BOUND_BY_OID,
    NAME_BOUNDS,
    key_algorithm_of,
    key_usages_for,
    name_value_error,
)

# Subject attributes a template can name, by the short names people use; their bounds
# live in one table, pki.crypto.NAME_BOUNDS.
SUBJECT_FIELDS = {short: bound.oid for short, bound in NAME_BOUNDS.items()}
# What a template says of one subject attribute (Template.subject_attributes).
SUBJECT_RULES = ("allowed", "required", "fixed")
# The order attributes are written in a certificate's subject, whatever the CSR's order.
_SUBJECT_ORDER = ("C", "ST", "L", "O", "OU", "CN", "emailAddress")
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# CSRs travel in JSON bodies and form fields; a real one is a few kilobytes.
CSR_MAX_CHARACTERS = 64 * 1024


class PolicyError(ValueError):
    """A request the template (or plain correctness) refuses; the message says why."""


@dataclass(frozen=True, slots=True)
class CheckedRequest:
    csr: x509.CertificateSigningRequest
    subject: x509.Name
    sans: tuple[x509.GeneralName, ...]
    san_texts: tuple[str, ...]  # "DNS:www.example.com", "IP:10.0.0.1"
    key_algorithm: str

    @property
    def subject_text(self) -> str:
        return self.subject.rfc4514_string()


def csr_parse(text: str) -> x509.CertificateSigningRequest:
    """A PEM CSR whose signature verifies (the requester holds the key it names)."""
    if not isinstance(text, str) or not text.strip():
        raise PolicyError(
            "send a certificate signing request (PEM, -----BEGIN CERTIFICATE REQUEST-----)"
        )
    if len(text) > CSR_MAX_CHARACTERS:
        raise PolicyError(f"the CSR is longer than {CSR_MAX_CHARACTERS:,} characters")
    try:
        csr = x509.load_pem_x509_csr(text.strip().encode())
    except (ValueError, UnicodeError) as exc:
        raise PolicyError(
            "this is not a readable PEM certificate signing request "
            "(expected -----BEGIN CERTIFICATE REQUEST-----)"
        ) from exc
    try:
        valid = csr.is_signature_valid
        csr.public_key()
        csr.subject.rfc4514_string()
    except Exception as exc:  # an unsupported key or a broken structure in a parsed CSR
        raise PolicyError(f"the CSR cannot be used: {exc}") from exc
    if not valid:
        raise PolicyError(
            "the CSR's signature does not verify: it was altered, or not signed by the key "
            "it carries"
        )
    return csr


# What a refused request still shows of its CSR: bounded, it is the requester's text.
_SUBJECT_SHOWN_MAX = 1000
_SANS_SHOWN_MAX = 100


def csr_names_as_requested(csr: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    """The subject (RFC 4514) and names a CSR asks for, unchecked and bounded: what a
    request refused by the policy is recorded with, so its page says what was refused."""
    try:
        subject = csr.subject.rfc4514_string()[:_SUBJECT_SHOWN_MAX]
    except Exception:  # a broken name in a CSR that parsed
        subject = ""
    texts: list[str] = []
    try:
        requested = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except Exception:  # no SAN extension, or one that cannot be read: the check says why
        requested = []
    for name in requested[:_SANS_SHOWN_MAX]:
        if isinstance(name, x509.DNSName):
            texts.append(f"DNS:{name.value}"[:300])
        elif isinstance(name, x509.IPAddress):
            texts.append(f"IP:{name.value}"[:300])
    return subject, texts


def subject_attributes_errors(rules: Any) -> list[str]:
    """Every problem with a template's ``subject_attributes`` (empty: usable)."""
    if not isinstance(rules, dict):
        return ['An object of attribute rules, like {"O": {"rule": "required"}}.']
    errors: list[str] = []
    for short, rule in rules.items():
        if short not in NAME_BOUNDS:
            errors.append(f"{short}: not a subject attribute ({', '.join(NAME_BOUNDS)}).")
            continue
        if not isinstance(rule, dict) or not set(rule) <= {"rule", "value"}:
            errors.append(f'{short}: give {{"rule": …}}, and "value" for a fixed one.')
            continue
        kind = rule.get("rule")
        if kind not in SUBJECT_RULES:
            errors.append(f"{short}: the rule is allowed, required or fixed, not {kind!r}.")
        elif short == "CN" and kind == "fixed":
            errors.append("CN: the common name follows the name rules; it cannot be fixed.")
        elif kind == "fixed":
            problem = name_value_error(short, rule.get("value"))
            if problem is not None:
                errors.append(f"{short}: {problem}.")
        elif "value" in rule:
            errors.append(f"{short}: only a fixed attribute has a value.")
    return errors


def _allowed_attributes(template: Template) -> str:
    rules = template.subject_attributes or {}
    return ", ".join(["CN", *(short for short in rules if short != "CN")])


def _subject_values(template: Template, subject: x509.Name) -> dict[str, str]:
    """The subject the certificate will carry, by short name: the CSR's attributes the
    template allows, its fixed values, and nothing else."""
    rules = template.subject_attributes or {}
    values: dict[str, str] = {}
    for attribute in subject:  # every attribute, multi-valued RDNs included
        bound = NAME_BOUND_BY_OID.get(attribute.oid)
        short = bound.short if bound else attribute.rfc4514_attribute_name
        if bound is None or (short != "CN" and short not in rules):
            raise PolicyError(
                f"template {template.name!r} does not allow the subject attribute {short} "
                f"({attribute.value!r}); it allows {_allowed_attributes(template)}"
            )
        problem = name_value_error(short, attribute.value)
        if problem is not None:
            raise PolicyError(problem)
        if short in values:
            raise PolicyError(f"the subject has {short} more than once; give it once")
        values[short] = str(attribute.value)
    for short, rule in rules.items():
        kind = rule.get("rule") if isinstance(rule, dict) else None
        if kind == "fixed":
            fixed = str(rule.get("value", ""))
            if short in values and values[short] != fixed:
                # Refused, not overwritten: the requester learns what the certificate
                # would say instead of receiving one that differs from the request.
                raise PolicyError(
                    f"template {template.name!r} fixes {short} to {fixed!r}; the request "
                    f"asks for {values[short]!r} (leave it out or give that value)"
                )
            values[short] = fixed
        elif kind == "required" and short not in values:
            raise PolicyError(f"template {template.name!r} requires the subject field {short}")
    return values


def _dns_name_check(name: str, template: Template, *, where: str) -> None:
    lowered = name.lower().rstrip(".")
    wildcard = lowered.startswith("*.")
    if wildcard and not template.allow_wildcards:
        raise PolicyError(
            f"{where} {name!r} is a wildcard, which template {template.name!r} does not allow"
        )
    base = lowered[2:] if wildcard else lowered
    labels = base.split(".")
    if not lowered or len(lowered) > 253 or not all(map(_DNS_LABEL.fullmatch, labels)):
        raise PolicyError(f"{where} {name!r} is not a valid DNS name")
    domains = [d.lower().strip(".") for d in template.allowed_domains]
    if len(labels) == 1 and base not in domains:
        # "intranet" means whatever the relying party's resolver makes of it.
        raise PolicyError(
            f"{where} {name!r} is a single-label name; template {template.name!r} allows one "
            "only when its allowed domains name it"
        )
    if domains and not any(lowered == d or lowered.endswith("." + d) for d in domains):
        raise PolicyError(
            f"{where} {name!r} is outside the domains template {template.name!r} allows "
            f"({', '.join(domains)})"
        )
    if template.san_pattern:
        try:
            matched = re.fullmatch(template.san_pattern, lowered)
        except re.error as exc:
            raise PolicyError(f"template {template.name!r} has a broken pattern: {exc}") from exc
        if not matched:
            raise PolicyError(
                f"{where} {name!r} does not match template {template.name!r}'s pattern "
                f"{template.san_pattern!r}"
            )


def _looks_like_dns_name(value: str) -> bool:
    """Whether a free-text common name would pass for a host name (a relying party that
    still reads the CN would take it for one)."""
    labels = value.lower().rstrip(".").removeprefix("*.").split(".")
    return len(labels) > 1 and all(_DNS_LABEL.fullmatch(label) for label in labels)


def _common_name_as_name(template: Template, common_name: str) -> x509.GeneralName | None:
    """The certificate name the CN stands for, checked like the SANs; None for a
    free-text CN (only when the template allows one)."""
    try:
        address = ipaddress.ip_address(common_name)
    except ValueError:
        address = None
    if address is not None:
        if not template.allow_ip_addresses:
            raise PolicyError(
                f"the common name {common_name!r} is an IP address, which template "
                f"{template.name!r} does not allow"
            )
        return x509.IPAddress(address)
    if template.allow_non_dns_common_name and not _looks_like_dns_name(common_name):
        return None
    if not template.allow_non_dns_common_name and "@" in common_name:
        raise PolicyError(
            f"the common name {common_name!r} is not a DNS name; template {template.name!r} "
            "wants one of the certificate's DNS names (or IP addresses) there"
        )
    _dns_name_check(common_name, template, where="common name")
    return x509.DNSName(common_name)


def _name_key(name: x509.GeneralName) -> tuple[str, str]:
    if isinstance(name, x509.DNSName):
        return "DNS", name.value.lower().rstrip(".")
    return "IP", str(ipaddress.ip_address(name.value))


def _name_text(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    return f"IP:{ipaddress.ip_address(name.value)}"


def request_check(template: Template, csr: x509.CertificateSigningRequest) -> CheckedRequest:
    """Check a verified CSR against the template; what the certificate will say.

    Every name is checked: each SAN, and the common name, which must be one of the
    certificate's names (added to the SANs when missing) unless the template allows a
    free-text CN. Subject attributes other than CN must be ones the template names.
    """
    algorithm = key_algorithm_of(csr.public_key())
    if algorithm not in template.allowed_key_types:
        raise PolicyError(
            f"template {template.name!r} does not allow {algorithm} keys "
            f"(it allows {', '.join(template.allowed_key_types) or 'none'})"
        )
    if template.key_usage and not key_usages_for(template.key_usage, csr.public_key()):
        raise PolicyError(
            f"none of template {template.name!r}'s key usages "
            f"({', '.join(template.key_usage)}) applies to a {algorithm} key"
        )
    values = _subject_values(template, csr.subject)
    try:
        requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = list(requested)
    except x509.ExtensionNotFound:
        names = []
    except Exception as exc:
        raise PolicyError(f"the CSR's requested extensions cannot be read: {exc}") from exc
    seen: set[tuple[str, str]] = set()
    for name in names:
        if isinstance(name, x509.DNSName):
            _dns_name_check(name.value, template, where="DNS name")
        elif isinstance(name, x509.IPAddress):
            if not template.allow_ip_addresses:
                raise PolicyError(
                    f"template {template.name!r} does not allow IP addresses ({name.value})"
                )
        else:
            raise PolicyError(
                f"template {template.name!r} allows only DNS names and IP addresses, not "
                f"{type(name).__name__} ({name.value})"
            )
        key = _name_key(name)
        if key in seen:
            raise PolicyError(
                f"the CSR asks for {_name_text(name)} more than once (DNS names are compared "
                "without regard to case)"
            )
        seen.add(key)
    common_name = values.get("CN")
    if common_name is not None:
        as_name = _common_name_as_name(template, common_name)
        if as_name is not None and _name_key(as_name) not in seen:
            names.insert(0, as_name)  # the CN is always one of the certificate's names
    if not names and common_name is None:
        raise PolicyError("the CSR names nothing: give a common name or DNS names")
    if len(names) > template.max_sans:
        raise PolicyError(
            f"the CSR asks for {len(names)} names; template {template.name!r} allows "
            f"{template.max_sans}"
        )
    subject = x509.Name(
        [
            x509.NameAttribute(NAME_BOUNDS[short].oid, values[short])
            for short in _SUBJECT_ORDER
            if short in values
        ]
    )
    texts = tuple(_name_text(name) for name in names)
    return CheckedRequest(csr, subject, tuple(names), texts, algorithm)
