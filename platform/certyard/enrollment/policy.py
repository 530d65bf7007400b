"""Checking a request against its template: the CSR, the key, the subject and the names.

Pure functions over ``cryptography`` objects and a template; the services record what
they refuse. Every message names what was wrong and what the template allows.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from certyard.enrollment.models import Template
from certyard.pki.crypto import key_algorithm_of

# Subject attributes a template can require, by the short names people use.
SUBJECT_FIELDS = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}
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


def _dns_name_check(name: str, template: Template, *, where: str) -> None:
    lowered = name.lower().rstrip(".")
    wildcard = lowered.startswith("*.")
    if wildcard and not template.allow_wildcards:
        raise PolicyError(
            f"{where} {name!r} is a wildcard, which template {template.name!r} does not allow"
        )
    labels = (lowered[2:] if wildcard else lowered).split(".")
    if not lowered or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise PolicyError(f"{where} {name!r} is not a valid DNS name")
    domains = [d.lower().strip(".") for d in template.allowed_domains]
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
    return "." in value and " " not in value and "@" not in value


def request_check(template: Template, csr: x509.CertificateSigningRequest) -> CheckedRequest:
    """Check a verified CSR against the template; what the certificate will say."""
    algorithm = key_algorithm_of(csr.public_key())
    if algorithm not in template.allowed_key_types:
        raise PolicyError(
            f"template {template.name!r} does not allow {algorithm} keys "
            f"(it allows {', '.join(template.allowed_key_types) or 'none'})"
        )
    subject = csr.subject
    for short in template.required_subject_fields:
        oid = SUBJECT_FIELDS.get(short)
        if oid is not None and not subject.get_attributes_for_oid(oid):
            raise PolicyError(f"template {template.name!r} requires the subject field {short}")
    common_names = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = list(requested)
    except x509.ExtensionNotFound:
        names = []
    except Exception as exc:
        raise PolicyError(f"the CSR's requested extensions cannot be read: {exc}") from exc
    if not names and common_names and _looks_like_dns_name(common_names[0]):
        names = [x509.DNSName(common_names[0])]  # the usual meaning of a bare CN
    if not names and not common_names:
        raise PolicyError("the CSR names nothing: give a common name or DNS names")
    if len(names) > template.max_sans:
        raise PolicyError(
            f"the CSR asks for {len(names)} names; template {template.name!r} allows "
            f"{template.max_sans}"
        )
    texts: list[str] = []
    for name in names:
        if isinstance(name, x509.DNSName):
            _dns_name_check(name.value, template, where="DNS name")
            texts.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            if not template.allow_ip_addresses:
                raise PolicyError(
                    f"template {template.name!r} does not allow IP addresses ({name.value})"
                )
            texts.append(f"IP:{ipaddress.ip_address(name.value)}")
        else:
            raise PolicyError(
                f"template {template.name!r} allows only DNS names and IP addresses, not "
                f"{type(name).__name__} ({name.value})"
            )
    for common_name in common_names:
        if _looks_like_dns_name(common_name):
            _dns_name_check(common_name, template, where="common name")
    return CheckedRequest(csr, subject, tuple(names), tuple(texts), algorithm)
