"""Key and certificate building blocks of the built-in CA (no database).

Kept apart from the services so the benchmark's bare loop and the service sign exactly
the same certificate, and so the key rules (which types, which hash) live in one place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certyard.pki.models import KeyAlgorithm, RevocationReason

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CURVES = {"EC-P256": ec.SECP256R1, "EC-P384": ec.SECP384R1}

# Key usage names as templates store them, in the order x509.KeyUsage takes them.
KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)
EXTENDED_KEY_USAGES = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "time_stamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
}


@dataclass(frozen=True, slots=True)
class NameBound:
    """What one subject attribute may hold: its X.520 / RFC 5280 upper bound.

    Bounds are counted in UTF-8 bytes, as ``cryptography`` counts them when it refuses a
    name (a CN of 40 "é" is 80 bytes, too long), so a value checked here never makes it
    raise later.
    """

    short: str
    oid: x509.ObjectIdentifier
    label: str
    max_bytes: int
    min_bytes: int = 1
    ascii_only: bool = False  # IA5String / PrintableString attributes
    letters_only: bool = False


# The one table of subject attributes Certyard writes into certificates and CA names,
# by the short names people use (RFC 5280 Appendix A upper bounds).
NAME_BOUNDS: dict[str, NameBound] = {
    bound.short: bound
    for bound in (
        NameBound("CN", NameOID.COMMON_NAME, "common name", 64),
        NameBound("O", NameOID.ORGANIZATION_NAME, "organization", 64),
        NameBound("OU", NameOID.ORGANIZATIONAL_UNIT_NAME, "organizational unit", 64),
        NameBound(
            "C", NameOID.COUNTRY_NAME, "country", 2, min_bytes=2, ascii_only=True, letters_only=True
        ),
        NameBound("ST", NameOID.STATE_OR_PROVINCE_NAME, "state or province", 128),
        NameBound("L", NameOID.LOCALITY_NAME, "locality", 128),
        NameBound("emailAddress", NameOID.EMAIL_ADDRESS, "email address", 255, ascii_only=True),
    )
}
NAME_BOUND_BY_OID: dict[x509.ObjectIdentifier, NameBound] = {
    bound.oid: bound for bound in NAME_BOUNDS.values()
}


def name_value_error(short: str, value: object) -> str | None:
    """Why ``value`` cannot be the subject attribute ``short`` (a key of
    :data:`NAME_BOUNDS`), as a sentence; None when it can."""
    bound = NAME_BOUNDS[short]
    what = f"the {bound.label} ({short})"
    if not isinstance(value, str):
        return f"{what} must be text"
    if not value:
        return f"{what} is empty"
    if value != value.strip():
        return f"{what} {value!r} starts or ends with white space"
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value):
        return f"{what} {value!r} contains control characters"
    if bound.ascii_only and not value.isascii():
        return f"{what} {value!r} must be ASCII"
    if bound.letters_only and not (
        value.isascii() and value.isalpha() and len(value) == bound.max_bytes
    ):
        return f"{what} {value!r} must be a two-letter code (ISO 3166), like DE or US"
    size = len(value.encode())
    if not bound.min_bytes <= size <= bound.max_bytes:
        limit = (
            f"exactly {bound.max_bytes}"
            if bound.min_bytes == bound.max_bytes
            else f"at most {bound.max_bytes}"
        )
        return (
            f"{what} is {size} bytes in UTF-8 ({len(value)} characters); X.509 allows {limit} bytes"
        )
    return None


def utf8_prefix(value: str, max_bytes: int) -> str:
    """The longest prefix of ``value`` that is at most ``max_bytes`` in UTF-8 (never a
    split character), for names the platform shortens itself."""
    return value.encode()[:max_bytes].decode(errors="ignore")


def common_name(name: x509.Name | str) -> str:
    """The first common name of a name (or of its RFC 4514 text); empty when it has none
    or cannot be read."""
    try:
        if isinstance(name, str):
            name = x509.Name.from_rfc4514_string(name)
        values = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    except ValueError:
        return ""
    return str(values[0].value) if values else ""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def key_generate(algorithm: str) -> PrivateKey:
    """A new private key of one of the :class:`KeyAlgorithm` types."""
    if algorithm in _CURVES:
        return ec.generate_private_key(_CURVES[algorithm]())
    if algorithm == KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm.startswith("RSA-") and algorithm in KeyAlgorithm.values:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm[4:]))
    raise ValueError(f"unknown key type {algorithm!r}")


def key_algorithm_of(public_key: object) -> str:
    """The key's type as templates name it (``RSA-2048``, ``EC-P256``, ``Ed25519``), or a
    descriptive name outside that list (``RSA-1024``, ``EC-secp521r1``, ``DSA``)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "EC-P256", "secp384r1": "EC-P384"}
        return names.get(public_key.curve.name, f"EC-{public_key.curve.name}")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(public_key).__name__.removeprefix("_").replace("PublicKey", "") or "unknown"


def signing_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    """The hash a CA key signs with: none for Ed25519, SHA-384 for P-384, else SHA-256."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def key_pem(key: PrivateKey, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def key_usage(names: list[str] | tuple[str, ...]) -> x509.KeyUsage:
    chosen = set(names)
    return x509.KeyUsage(**{name: name in chosen for name in KEY_USAGES})


_SIGNING_USAGES = frozenset(
    {"digital_signature", "content_commitment", "key_cert_sign", "crl_sign"}
)
# Which key usages a key of each kind can carry: an RSA key signs and encrypts (no key
# agreement); an EC key signs and agrees (no keyEncipherment or dataEncipherment, RFC
# 8813); an Ed25519 key only signs (RFC 8410). encipherOnly and decipherOnly qualify
# keyAgreement and mean nothing without it (RFC 5280 4.2.1.3).
KEY_USAGES_BY_KIND: dict[str, frozenset[str]] = {
    "RSA": _SIGNING_USAGES | {"key_encipherment", "data_encipherment"},
    "EC": _SIGNING_USAGES | {"key_agreement", "encipher_only", "decipher_only"},
    "Ed25519": _SIGNING_USAGES,
}


def key_kind(key_or_algorithm: object) -> str:
    """``RSA``, ``EC`` or ``Ed25519`` for a key (public or private) or a key type name
    (``RSA-2048``, ``EC-P256``…); another name for anything else."""
    if isinstance(key_or_algorithm, str):
        algorithm = key_or_algorithm
    elif isinstance(key_or_algorithm, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        algorithm = key_algorithm_of(key_or_algorithm.public_key())
    elif isinstance(key_or_algorithm, ed25519.Ed25519PrivateKey):
        algorithm = "Ed25519"
    else:
        algorithm = key_algorithm_of(key_or_algorithm)
    return algorithm.split("-", 1)[0]


def key_usages_for(names: list[str] | tuple[str, ...], key: object) -> tuple[str, ...]:
    """The key usages of ``names`` that apply to ``key`` (a key or a key type name), in
    :data:`KEY_USAGES` order: the others are dropped, never written into a certificate."""
    allowed = KEY_USAGES_BY_KIND.get(key_kind(key))
    chosen = [name for name in KEY_USAGES if name in set(names)]
    if allowed is not None:
        chosen = [name for name in chosen if name in allowed]
    if "key_agreement" not in chosen:
        chosen = [name for name in chosen if name not in ("encipher_only", "decipher_only")]
    return tuple(chosen)


@dataclass(frozen=True, slots=True)
class Profile:
    """What an issued certificate says beyond its key: decided by the platform.

    Attributes:
        subject: The subject name.
        sans: Subject alternative names (empty: no extension).
        validity: How long from now, capped at the CA's own expiry.
        key_usage: Names from :data:`KEY_USAGES` (empty: no extension); those the
            subject key cannot use are dropped (:func:`key_usages_for`).
        extended_key_usage: Names from :data:`EXTENDED_KEY_USAGES`.
        crl_url, ocsp_url, issuer_url: Written into CDP and AIA when set.
        ca_path_length: Set to make a CA certificate (an intermediate); None for leaves.
    """

    subject: x509.Name
    validity: dt.timedelta
    sans: tuple[x509.GeneralName, ...] = ()
    key_usage: tuple[str, ...] = ("digital_signature", "key_encipherment")
    extended_key_usage: tuple[str, ...] = ()
    crl_url: str = ""
    ocsp_url: str = ""
    issuer_url: str = ""
    ca_path_length: int | None = field(default=None)
    is_ca: bool = False


def certificate_build(
    *,
    issuer_certificate: x509.Certificate | None,
    issuer_key: PrivateKey,
    public_key: PublicKey,
    profile: Profile,
    serial_number: int | None = None,
) -> x509.Certificate:
    """Sign one certificate. ``issuer_certificate`` None makes a self-signed root."""
    start = now()
    not_after = start + profile.validity
    if issuer_certificate is not None:
        not_after = min(not_after, issuer_certificate.not_valid_after_utc)
    issuer_name = issuer_certificate.subject if issuer_certificate is not None else profile.subject
    issuer_public = issuer_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(profile.subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=profile.is_ca, path_length=profile.ca_path_length),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer_certificate is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),  # type: ignore[arg-type]
            critical=False,
        )
    # Bits the subject key cannot use (keyEncipherment on an EC key…) are dropped here,
    # whatever the caller asked for: no certificate this CA signs carries them.
    usages = key_usages_for(profile.key_usage, public_key)
    if usages:
        builder = builder.add_extension(key_usage(usages), critical=True)
    if profile.extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([EXTENDED_KEY_USAGES[n] for n in profile.extended_key_usage]),
            critical=False,
        )
    if profile.sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(profile.sans)), critical=False
        )
    if profile.crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(profile.crl_url)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    access = []
    if profile.ocsp_url:
        access.append(
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(profile.ocsp_url),
            )
        )
    if profile.issuer_url:
        access.append(
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(profile.issuer_url),
            )
        )
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    return builder.sign(issuer_key, signing_hash(issuer_key))  # type: ignore[arg-type]


# RFC 5280's reasons as cryptography names them, for CRL entries and OCSP answers
# (unspecified and removeFromCRL carry no reason there).
REASON_FLAGS = {
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
}
