"""The built-in metadata generators: ownership and environment, and cryptographic strength.

Both run over the whole inventory on a backfill, so everything that can be prepared once
(patterns, rule tables, per-algorithm verdicts) is prepared in ``__init__`` or cached; the
work per certificate is a few dictionary look-ups and at most one regular-expression
match per name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from handlers.base import (
    CertificateInfo,
    HandlerError,
    MetadataFieldDeclaration,
    MetadataFieldType,
    MetadataGenerator,
)
from handlers.builtin._common import glob_regex, key_value_lines, setting
from handlers.helpers import attribute_value, sans_of, subject_attribute
from handlers.parameters import Parameter, ParameterError, ParameterType

# --- Reading RFC 4514 names ------------------------------------------------------------------

# The spellings of each attribute type a subject may use: cryptography's rfc4514_string()
# writes the short name where it has one, else the dotted OID (emailAddress is always
# dotted there). Kept for callers of dn_first; the generator asks handlers.helpers by name.
DN_ATTRIBUTE_TYPES: dict[str, frozenset[str]] = {
    "CN": frozenset({"CN", "COMMONNAME", "2.5.4.3"}),
    "OU": frozenset({"OU", "ORGANIZATIONALUNITNAME", "2.5.4.11"}),
    "O": frozenset({"O", "ORGANIZATIONNAME", "2.5.4.10"}),
    "L": frozenset({"L", "LOCALITYNAME", "2.5.4.7"}),
    "ST": frozenset({"ST", "S", "STATEORPROVINCENAME", "2.5.4.8"}),
    "C": frozenset({"C", "COUNTRYNAME", "2.5.4.6"}),
    "emailAddress": frozenset({"EMAILADDRESS", "E", "EMAIL", "1.2.840.113549.1.9.1"}),
}
OWNER_ATTRIBUTES = ("OU", "O", "CN", "L", "ST", "C", "emailAddress")


def dn_value(raw: str) -> str | None:
    """An RFC 4514 attribute value as text (:func:`handlers.helpers.attribute_value`)."""
    return attribute_value(raw)


def dn_first(name: str, types: frozenset[str]) -> str | None:
    """The first non-empty value (most specific first) of the attribute ``types`` spell.

    ``types`` is one of :data:`DN_ATTRIBUTE_TYPES`; new code calls
    :func:`handlers.helpers.subject_attribute` with the attribute's name.
    """
    oid = next((spelling for spelling in types if spelling[:1].isdigit()), None)
    if oid is None:
        return None
    return subject_attribute(name, oid) or None


# --- Certificate fields -------------------------------------------------------------------------


def _environment_rules(lines: list[str]) -> list[tuple[str, str]]:
    """(glob, environment) pairs, in order; ValueError naming the first wrong line."""
    return key_value_lines(lines, what="pattern=environment")


class CertificateFields(MetadataGenerator):
    """Sets an owner and an environment on each certificate, from what the certificate says.

    - **owner_field** / **owner_attribute**: the metadata field to fill (default ``owner``)
      with one attribute of the certificate's subject: ``OU`` (default), ``O``, ``CN``,
      ``L``, ``ST``, ``C`` or ``emailAddress``. When the subject has it several times, the
      most specific one is used (the first in ``CN=web,OU=Payments,OU=IT,O=Example``:
      ``Payments``).
    - **environment_field** / **environment_rules**: the metadata field to fill (default
      ``environment``) from ``pattern=environment`` lines, e.g.
      ``*.prod.example.com=production`` then ``*.example.com=test``. Patterns are globs,
      ignoring case (``*`` matches any text, dots included), compared with the
      certificate's DNS names, then its common name. The first line that matches one of
      them wins.

    A field is set only when it can be determined: a certificate without that subject
    attribute, or matching no rule, keeps its current value. Registering it creates the
    two fields (one line of text each) when they do not exist yet.
    """

    label = "Owner and environment from the certificate"
    parameters = (
        Parameter(
            "owner_field",
            ParameterType.STRING,
            help="The metadata field that receives the owner.",
            default="owner",
        ),
        Parameter(
            "owner_attribute",
            ParameterType.CHOICE,
            help="The subject attribute that names the owner.",
            default="OU",
            choices=OWNER_ATTRIBUTES,
        ),
        Parameter(
            "environment_field",
            ParameterType.STRING,
            help="The metadata field that receives the environment.",
            default="environment",
        ),
        Parameter(
            "environment_rules",
            ParameterType.LIST,
            help="pattern=environment lines, e.g. *.prod.example.com=production; first wins.",
        ),
    )

    @classmethod
    def declared_fields(cls, config: Mapping[str, Any]) -> tuple[MetadataFieldDeclaration, ...]:
        owner = config.get("owner_field") or "owner"
        environment = config.get("environment_field") or "environment"
        return (
            MetadataFieldDeclaration(
                owner, description="Who owns the certificate, from its subject."
            ),
            MetadataFieldDeclaration(
                environment, description="The environment its names belong to."
            ),
        )

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        try:
            _environment_rules(list(config.get("environment_rules") or []))
        except ValueError as exc:
            raise ParameterError({"environment_rules": str(exc)}) from exc

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self._owner_field: str = setting(self, "owner_field")
        self._environment_field: str = setting(self, "environment_field")
        self._problem = ""
        owner_attribute = setting(self, "owner_attribute")
        self._owner_attribute: str = owner_attribute
        if owner_attribute not in OWNER_ATTRIBUTES:
            self._problem = f"owner_attribute: {owner_attribute!r} is not one of {OWNER_ATTRIBUTES}"
        self._environments: tuple[str, ...] = ()
        self._environment_pattern: re.Pattern[str] | None = None
        try:
            rules = _environment_rules(list(setting(self, "environment_rules") or []))
        except ValueError as exc:
            self._problem = f"environment_rules: {exc}"
            return
        if rules:
            # One alternation, one group per rule: a fullmatch takes the first rule that
            # matches the name, and its group number says which rule it was. Names and
            # patterns are lower-cased rather than matched with IGNORECASE: twice as fast.
            self._environment_pattern = re.compile(
                "|".join(f"({glob_regex(pattern.lower())})" for pattern, _ in rules),
                re.DOTALL,
            )
            self._environments = tuple(environment for _, environment in rules)

    def generate(self, certificate: CertificateInfo) -> Mapping[str, Any]:
        if self._problem:
            raise HandlerError(self._problem, permanent=True)
        values: dict[str, Any] = {}
        owner = (
            subject_attribute(certificate.subject, self._owner_attribute)
            if certificate.subject
            else None
        )
        if owner:
            values[self._owner_field] = owner
        pattern = self._environment_pattern
        if pattern is not None:
            # Group numbers start at 1: best is the number of the first rule that matched.
            unmatched = best = len(self._environments) + 1
            fullmatch = pattern.fullmatch
            for dns_name in sans_of(certificate.sans, "DNS"):
                if (match := fullmatch(dns_name.lower())) and match.lastindex < best:  # type: ignore[operator]
                    best = match.lastindex  # type: ignore[assignment]
                    if best == 1:
                        break
            if best > 1 and certificate.common_name:
                match = fullmatch(certificate.common_name.lower())
                if match and match.lastindex < best:  # type: ignore[operator]
                    best = match.lastindex  # type: ignore[assignment]
            if best != unmatched:
                values[self._environment_field] = self._environments[best - 1]
        return values


# --- Cryptographic strength ---------------------------------------------------------------------

_WEAK_HASHES = frozenset({"md2", "md4", "md5", "sha1"})
# SHA-256 or stronger; what a "strong" certificate needs besides a strong key.
_STRONG_HASHES = frozenset(
    {
        "sha256",
        "sha384",
        "sha512",
        "sha512-256",
        "sha3-256",
        "sha3-384",
        "sha3-512",
        "shake256",
        "sm3",
        "streebog256",
        "streebog512",
    }
)
# Signature algorithms the inventory shows by dotted OID (cryptography has no name for
# them), and those whose hash is implied rather than named.
_SIGNATURE_HASH_BY_OID = {
    "1.2.840.113549.1.1.2": "md2",
    "1.2.840.113549.1.1.3": "md4",
    "1.2.840.113549.1.1.4": "md5",
    "1.2.840.113549.1.1.5": "sha1",
    "1.3.14.3.2.29": "sha1",
    "1.2.840.113549.1.1.14": "sha224",
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
    "1.2.840.113549.1.1.15": "sha512-224",
    "1.2.840.113549.1.1.16": "sha512-256",
    "1.2.840.10045.4.1": "sha1",
    "1.2.840.10045.4.3.1": "sha224",
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
    "1.2.840.10040.4.3": "sha1",
    "2.16.840.1.101.3.4.3.1": "sha224",
    "2.16.840.1.101.3.4.3.2": "sha256",
    "2.16.840.1.101.3.4.3.3": "sha384",
    "2.16.840.1.101.3.4.3.4": "sha512",
    **{
        f"2.16.840.1.101.3.4.3.{5 + i}": f"sha3-{bits}"
        for i, bits in enumerate((224, 256, 384, 512))
    },
    **{
        f"2.16.840.1.101.3.4.3.{9 + i}": f"sha3-{bits}"
        for i, bits in enumerate((224, 256, 384, 512))
    },
    **{
        f"2.16.840.1.101.3.4.3.{13 + i}": f"sha3-{bits}"
        for i, bits in enumerate((224, 256, 384, 512))
    },
    # ML-DSA hashes with SHAKE256; SLH-DSA with SHA-256 (128-bit SHA2 sets), SHA-512
    # (192/256-bit SHA2 sets) or SHAKE256 (SHAKE sets); EdDSA with SHA-512 or SHAKE256.
    **{f"2.16.840.1.101.3.4.3.{n}": "shake256" for n in (17, 18, 19)},
    **{f"2.16.840.1.101.3.4.3.{n}": "sha256" for n in (20, 21)},
    **{f"2.16.840.1.101.3.4.3.{n}": "sha512" for n in (22, 23, 24, 25)},
    **{f"2.16.840.1.101.3.4.3.{n}": "shake256" for n in range(26, 32)},
    "1.3.101.112": "sha512",
    "1.3.101.113": "shake256",
    "1.3.6.1.5.5.7.6.30": "shake128",
    "1.3.6.1.5.5.7.6.31": "shake256",
    "1.3.6.1.5.5.7.6.32": "shake128",
    "1.3.6.1.5.5.7.6.33": "shake256",
    "1.2.156.10197.1.501": "sm3",
    "1.2.643.2.2.3": "gostr3411-94",
    "1.2.643.7.1.1.3.2": "streebog256",
    "1.2.643.7.1.1.3.3": "streebog512",
    "1.3.36.3.3.1.2": "ripemd160",
}
# Read from a signature algorithm's name, lower-cased with everything but letters and
# digits removed ("ecdsa-with-SHA384" -> "ecdsawithsha384"); the first that matches wins.
_SIGNATURE_HASH_BY_NAME = (
    (re.compile(r"sha3(224|256|384|512)"), r"sha3-\1"),
    (re.compile(r"sha512(224|256)"), r"sha512-\1"),
    (re.compile(r"sha(224|256|384|512|1)(?!\d)"), r"sha\1"),
    (re.compile(r"md([245])"), r"md\1"),
    (re.compile(r"shake(128|256)"), r"shake\1"),
    (re.compile(r"sm3"), "sm3"),
    (re.compile(r"ripemd160"), "ripemd160"),
    (re.compile(r"34112012(256|512)|streebog(256|512)"), r"streebog\1\2"),
    (re.compile(r"341194"), "gostr3411-94"),
    (re.compile(r"^ed25519"), "sha512"),
    (re.compile(r"^ed448"), "shake256"),
    (re.compile(r"^mldsa"), "shake256"),
    (re.compile(r"^slhdsasha2128"), "sha256"),
    (re.compile(r"^slhdsasha2"), "sha512"),
    (re.compile(r"^slhdsashake"), "shake256"),
)
_NOT_ALNUM = re.compile(r"[^a-z0-9]")

# Public key algorithms the inventory may show by dotted OID, by their names.
_KEY_NAME_BY_OID = {
    "2.16.840.1.101.3.4.3.17": "ML-DSA-44",
    "2.16.840.1.101.3.4.3.18": "ML-DSA-65",
    "2.16.840.1.101.3.4.3.19": "ML-DSA-87",
    **{
        f"2.16.840.1.101.3.4.3.{20 + i}": f"SLH-DSA-{name}"
        for i, name in enumerate(
            (
                "SHA2-128s",
                "SHA2-128f",
                "SHA2-192s",
                "SHA2-192f",
                "SHA2-256s",
                "SHA2-256f",
                "SHAKE-128s",
                "SHAKE-128f",
                "SHAKE-192s",
                "SHAKE-192f",
                "SHAKE-256s",
                "SHAKE-256f",
            )
        )
    },
    "2.16.840.1.101.3.4.4.1": "ML-KEM-512",
    "2.16.840.1.101.3.4.4.2": "ML-KEM-768",
    "2.16.840.1.101.3.4.4.3": "ML-KEM-1024",
    "1.3.6.1.5.5.7.6.34": "XMSS",
    "1.3.6.1.5.5.7.6.35": "XMSS-MT",
    "1.2.840.113549.1.9.16.3.17": "HSS-LMS",
}
# Post-quantum signature and key-establishment families, by the start of their names
# (upper-cased, letters and digits only); composites (MLDSA65-ECDSA-P256-SHA512) start with
# their post-quantum part, and count as post-quantum.
_POST_QUANTUM_PREFIXES = (
    "MLDSA",
    "SLHDSA",
    "MLKEM",
    "FNDSA",
    "FALCON",
    "SPHINCS",
    "DILITHIUM",
    "KYBER",
    "XMSS",
    "HSSLMS",
    "LMS",
    "HSS",
)
_STRONG_POST_QUANTUM = ("MLDSA", "SLHDSA")
_CLASSICAL = {
    "RSA": "RSA",
    "RSASSAPSS": "RSA",
    "RSAPSS": "RSA",
    "EC": "EC",
    "ECDSA": "EC",
    "ECDH": "EC",
    "DSA": "DSA",
    "ED25519": "EdDSA",
    "ED448": "EdDSA",
    "X25519": "other",
    "X448": "other",
    "DH": "other",
    "SM2": "other",
}
_NOT_ALNUM_UPPER = re.compile(r"[^A-Z0-9]")
_FIXED_SIZE_KEYS = frozenset({"ED25519", "ED448", "X25519", "X448"})
_MAX_CACHED = 4096
_UTC = dt.UTC


def signature_hash(signature_algorithm: str) -> str | None:
    """The hash a signature algorithm uses (``sha256``, ``sha1``, ...), None if it cannot say.

    RSASSA-PSS names its hash in parameters the inventory does not keep: None.
    """
    if not signature_algorithm:
        return None
    known = _SIGNATURE_HASH_BY_OID.get(signature_algorithm.strip())
    if known:
        return known
    normalized = _NOT_ALNUM.sub("", signature_algorithm.lower())
    for pattern, replacement in _SIGNATURE_HASH_BY_NAME:
        match = pattern.search(normalized)
        if match:
            return match.expand(replacement)
    return None


def key_profile(algorithm: str, size: int | None) -> tuple[str | None, str | None, bool | None]:
    """(key strength label, family, quantum vulnerable) for a public key; None where unknown.

    Families: ``RSA``, ``EC``, ``DSA``, ``EdDSA``, ``PQ`` (ML-DSA, SLH-DSA), ``PQ-other``
    (other post-quantum schemes), ``other`` (other classical schemes), or None.
    """
    name = _KEY_NAME_BY_OID.get(algorithm.strip(), algorithm.strip())
    normalized = _NOT_ALNUM_UPPER.sub("", name.upper())
    if not normalized or normalized == "UNKNOWN":
        return None, None, None
    family = _CLASSICAL.get(normalized)
    if family is None and normalized.startswith("GOST"):
        family = "other"
    if family is not None:
        if normalized in _FIXED_SIZE_KEYS:
            return name, family, True
        label = f"{name}-{size}" if size else None
        if family == "other" and not size:
            label = name
        return label, family, True
    if normalized.startswith(_POST_QUANTUM_PREFIXES):
        strong = normalized.startswith(_STRONG_POST_QUANTUM)
        return name, "PQ" if strong else "PQ-other", False
    # A dotted OID or a name we do not know: nothing can be said of it.
    return None, None, None


def _key_class(family: str | None, size: int | None, hash_name: str | None) -> str | None:
    """The strength from the key and signature hash alone, before looking at validity."""
    if hash_name in _WEAK_HASHES:
        return "weak"
    if family in ("RSA", "DSA"):
        if not size:
            return None
        if size < 2048:
            return "weak"
        return (
            "strong"
            if family == "RSA" and size >= 3072 and hash_name in _STRONG_HASHES
            else "acceptable"
        )
    if family == "EC":
        if not size:
            return None
        if size < 224:
            return "weak"
        return "strong" if size >= 256 and hash_name in _STRONG_HASHES else "acceptable"
    if family in ("EdDSA", "PQ"):
        return "strong" if hash_name in _STRONG_HASHES else "acceptable"
    if family in ("other", "PQ-other"):
        return "acceptable"
    return None


def _instant(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_UTC)


class CryptoStrength(MetadataGenerator):
    """Rates each certificate's cryptography and sets five fields (each name after **prefix**).

    - ``key_strength``: the public key, e.g. ``RSA-2048``, ``EC-256``, ``Ed25519``,
      ``ML-DSA-65``.
    - ``signature_hash``: the hash of the issuer's signature: ``md5``, ``sha1``,
      ``sha256``, ``sha384``, ``sha512``, ``sha3-256``, ... (Ed25519 signs with SHA-512,
      Ed448 and ML-DSA with SHAKE256). Not set for RSASSA-PSS, which names its hash in
      parameters the inventory does not keep.
    - ``validity_days``: days from not-before to not-after (a whole number, rounded).
    - ``strength``, the first rule that applies:

      1. ``weak``: an RSA or DSA key under 2048 bits, an EC key under 224 bits, an MD2,
         MD4, MD5 or SHA-1 signature, or, for a certificate that is not a CA, a validity
         over 825 days;
      2. ``strong``: an RSA key of 3072 bits or more, an EC key of 256 bits or more, an
         Ed25519, Ed448, ML-DSA or SLH-DSA key, each with a signature hash of SHA-256 or
         stronger (SHA-384, SHA-512, SHA-3, SHAKE256);
      3. ``acceptable``: any other key the rules know.

      Not set when the key is unknown and no weak rule applies. An unreadable validity
      is rated on the key and signature alone.
    - ``quantum_vulnerable``: true for keys a quantum computer could break (RSA, EC, DSA,
      Ed25519, Ed448, X25519, X448, DH, GOST, SM2), false for post-quantum ones (ML-DSA,
      SLH-DSA, ML-KEM, FN-DSA/Falcon, XMSS, LMS and hybrids containing one); not set for
      an algorithm it does not recognise.

    Example: with prefix ``crypto_``, an RSA-2048 certificate signed with SHA-256 for 397
    days gets ``crypto_key_strength=RSA-2048``, ``crypto_signature_hash=sha256``,
    ``crypto_validity_days=397``, ``crypto_strength=acceptable``,
    ``crypto_quantum_vulnerable=true``. Registering it creates the five fields when they
    do not exist yet (one line of text for the labels, a whole number for validity_days,
    yes/no for quantum_vulnerable).
    """

    label = "Cryptographic strength"
    parameters = (
        Parameter(
            "prefix",
            ParameterType.STRING,
            help="Put before each field name, e.g. crypto_ (empty: key_strength, ...).",
            pattern=r"[A-Za-z0-9_]{0,40}",
        ),
    )
    # The five fields, before the prefix (declared_fields puts it in front).
    fields = (
        MetadataFieldDeclaration(
            "key_strength",
            label="Key strength",
            description="The public key: algorithm and size, e.g. RSA-2048, EC-256, Ed25519.",
        ),
        MetadataFieldDeclaration(
            "signature_hash",
            label="Signature hash",
            description="The hash of the issuer's signature, e.g. sha256 or sha1.",
        ),
        MetadataFieldDeclaration(
            "validity_days",
            MetadataFieldType.INTEGER,
            label="Validity (days)",
            description="Days from not-before to not-after.",
        ),
        MetadataFieldDeclaration(
            "strength",
            label="Strength",
            description="weak, acceptable or strong, from the key, the signature hash and "
            "the validity.",
        ),
        MetadataFieldDeclaration(
            "quantum_vulnerable",
            MetadataFieldType.BOOLEAN,
            label="Quantum vulnerable",
            description="Whether a quantum computer could break the key (false for "
            "post-quantum keys).",
        ),
    )

    @classmethod
    def declared_fields(cls, config: Mapping[str, Any]) -> tuple[MetadataFieldDeclaration, ...]:
        prefix = config.get("prefix") or ""
        if not prefix:
            return cls.fields
        return tuple(
            dataclasses.replace(
                field,
                name=f"{prefix}{field.name}",
                label=f"{field.label} ({prefix.rstrip('_') or prefix})",
            )
            for field in cls.fields
        )

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        prefix = setting(self, "prefix") or ""
        self._key_strength = f"{prefix}key_strength"
        self._signature_hash = f"{prefix}signature_hash"
        self._validity_days = f"{prefix}validity_days"
        self._strength = f"{prefix}strength"
        self._quantum_vulnerable = f"{prefix}quantum_vulnerable"
        self._profiles: dict[
            tuple[str, int | None, str], tuple[str | None, str | None, bool | None, str | None]
        ] = {}

    def _profile(
        self, certificate: CertificateInfo
    ) -> tuple[str | None, str | None, bool | None, str | None]:
        """(key strength, signature hash, quantum vulnerable, class) for its algorithms."""
        key = (certificate.key_algorithm, certificate.key_size, certificate.signature_algorithm)
        found = self._profiles.get(key)
        if found is None:
            label, family, vulnerable = key_profile(certificate.key_algorithm, certificate.key_size)
            hash_name = signature_hash(certificate.signature_algorithm)
            found = (
                label,
                hash_name,
                vulnerable,
                _key_class(family, certificate.key_size, hash_name),
            )
            if len(self._profiles) >= _MAX_CACHED:
                self._profiles.clear()
            self._profiles[key] = found
        return found

    def generate(self, certificate: CertificateInfo) -> Mapping[str, Any]:
        label, hash_name, vulnerable, strength = self._profile(certificate)
        values: dict[str, Any] = {}
        if label is not None:
            values[self._key_strength] = label
        if hash_name is not None:
            values[self._signature_hash] = hash_name
        if vulnerable is not None:
            values[self._quantum_vulnerable] = vulnerable
        not_before = _instant(certificate.not_before)
        not_after = _instant(certificate.not_after)
        if not_before is not None and not_after is not None:
            days = round((not_after - not_before).total_seconds() / 86400)
            values[self._validity_days] = days
            if days > 825 and not certificate.is_ca:
                strength = "weak"
        if strength is not None:
            values[self._strength] = strength
        return values
