"""The metadata generators over a few hundred real certificates, parsed by the inventory.

Certificates are made here with known keys, hashes, validity and subjects (so the expected
fields follow from how each was made), plus the real-world certificates of
``cryptography_vectors``, cross-checked against cryptography's own reading of them.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from certyard.x509 import (
    CertificateParseError,
    certificate_parse,
    pem_blocks_to_der,
)
from handlers.base import CertificateInfo, HandlerError
from handlers.builtin.metadata import (
    DN_ATTRIBUTE_TYPES,
    OWNER_ATTRIBUTES,
    CertificateFields,
    CryptoStrength,
    dn_first,
    dn_value,
    key_profile,
    signature_hash,
)
from handlers.parameters import ParameterError, parameters_check

VECTORS = Path(cryptography_vectors.__file__).parent / "x509"
ENVIRONMENT_RULES = [
    "*.prod.example.com=production",
    "*.staging.example.com=staging",
    "db-*.example.com=database",
    "*.example.com=corporate",
]
pytestmark = [
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning"),
]


def info_of(der: bytes) -> CertificateInfo:
    """A certificate as the inventory hands it to a metadata generator."""
    parsed = certificate_parse(der)
    return CertificateInfo(
        sha256=parsed.sha256,
        subject=parsed.subject,
        issuer=parsed.issuer,
        common_name=parsed.common_name,
        sans=tuple(parsed.sans),
        serial_number=parsed.serial_number,
        not_before=parsed.not_before.isoformat() if parsed.not_before else None,
        not_after=parsed.not_after.isoformat() if parsed.not_after else None,
        key_algorithm=parsed.key_algorithm,
        key_size=parsed.key_size,
        signature_algorithm=parsed.signature_algorithm,
        is_ca=parsed.is_ca,
        self_signed=parsed.self_signed,
    )


# --- Certificates made here ---------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    family: str  # RSA, EC, DSA, EdDSA, ML-DSA: the families of the strength rules
    label: str  # the key_strength expected
    bits: int
    private: Any


@dataclass(frozen=True)
class Signer:
    key: Any
    hash: hashes.HashAlgorithm | None
    hash_name: str  # the signature_hash expected


@dataclass(frozen=True)
class Made:
    info: CertificateInfo
    key: Key
    hash_name: str
    days: int
    ca: bool
    attributes: dict[str, str]  # the first value of each owner attribute, as written
    dns_names: tuple[str, ...]


OU_VALUES = [
    "Payments",
    "R&D, Lab 2",
    "a+b=c",
    "Ünïcode Tëam",
    " leading space",
    "trailing space ",
    "#hash first",
    "back\\slash",
    "semi;colon",
    'quote"d',
    "<angle>",
    "日本語",
]
HOSTS = [
    "web-1.prod.example.com",
    "API.PROD.EXAMPLE.COM",
    "*.prod.example.com",
    "app.staging.example.com",
    "db-3.example.com",
    "mail.example.com",
    "example.com",
    "www.example.org",
    "host.prod.example.com.evil.org",
]


def keys() -> list[Key]:
    made = [
        Key("RSA", f"RSA-{bits}", bits, rsa.generate_private_key(65537, bits))
        for bits in (1024, 2048, 3072)
    ]
    for curve in (ec.SECP192R1(), ec.SECP224R1(), ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()):
        made.append(
            Key("EC", f"EC-{curve.key_size}", curve.key_size, ec.generate_private_key(curve))
        )
    made.append(Key("EdDSA", "Ed25519", 256, ed25519.Ed25519PrivateKey.generate()))
    made.append(Key("EdDSA", "Ed448", 456, ed448.Ed448PrivateKey.generate()))
    made += [
        Key("DSA", f"DSA-{bits}", bits, dsa.generate_private_key(bits)) for bits in (1024, 2048)
    ]
    made += [
        Key("ML-DSA", f"ML-DSA-{level}", 0, getattr(mldsa, f"MLDSA{level}PrivateKey").generate())
        for level in (44, 65, 87)
    ]
    return made


def signers(by_label: dict[str, Key]) -> list[Signer]:
    rsa_ca, ec_ca = by_label["RSA-2048"].private, by_label["EC-384"].private
    return [
        *(
            Signer(rsa_ca, algorithm, name)
            for algorithm, name in [
                (hashes.SHA224(), "sha224"),
                (hashes.SHA256(), "sha256"),
                (hashes.SHA384(), "sha384"),
                (hashes.SHA512(), "sha512"),
                (hashes.SHA3_256(), "sha3-256"),
            ]
        ),
        *(
            Signer(ec_ca, algorithm, name)
            for algorithm, name in [
                (hashes.SHA256(), "sha256"),
                (hashes.SHA512(), "sha512"),
                (hashes.SHA3_384(), "sha3-384"),
            ]
        ),
        Signer(by_label["Ed25519"].private, None, "sha512"),
        Signer(by_label["Ed448"].private, None, "shake256"),
        Signer(by_label["ML-DSA-65"].private, None, "shake256"),
        Signer(by_label["DSA-2048"].private, hashes.SHA256(), "sha256"),
    ]


def subject(rng: random.Random) -> tuple[x509.Name, dict[str, str]]:
    """A varied subject, and the first value of each attribute in RFC 4514 order."""
    common_name = rng.choice([*HOSTS, "Payments API", "Ops, Team + Friends"])
    rdns: list[list[x509.NameAttribute]] = []  # DER order: the RFC 4514 string reverses it
    if rng.random() < 0.8:
        rdns.append([x509.NameAttribute(NameOID.COUNTRY_NAME, rng.choice(["US", "DE", "JP"]))])
    if rng.random() < 0.5:
        rdns.append([x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Baden-Württemberg")])
    if rng.random() < 0.5:
        rdns.append([x509.NameAttribute(NameOID.LOCALITY_NAME, rng.choice(["Paris", "São Paulo"]))])
    if rng.random() < 0.8:
        rdns.append(
            [
                x509.NameAttribute(
                    NameOID.ORGANIZATION_NAME, rng.choice(["Example, Inc.", "Ex+ample"])
                )
            ]
        )
    for _ in range(rng.choice([0, 1, 1, 2])):
        rdns.append([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, rng.choice(OU_VALUES))])
    if rng.random() < 0.3:
        rdns.append(
            [
                x509.NameAttribute(
                    NameOID.EMAIL_ADDRESS, rng.choice(["pki@example.com", "a.b+c@example.org"])
                )
            ]
        )
    last = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if rng.random() < 0.3:
        # A multi-valued RDN: OU and CN together (RFC 4514: OU=...+CN=...).
        last.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, rng.choice(OU_VALUES)))
    rdns.append(last)
    first: dict[str, str] = {}
    for rdn in reversed(rdns):
        for attribute in rdn:
            key = next(
                k for k, types in DN_ATTRIBUTE_TYPES.items() if attribute.oid.dotted_string in types
            )
            first.setdefault(key, str(attribute.value))
    return x509.Name([x509.RelativeDistinguishedName(rdn) for rdn in rdns]), first


def make(rng: random.Random, all_keys: list[Key], all_signers: list[Signer]) -> Made:
    key = rng.choice(all_keys)
    signer = rng.choice(all_signers)
    days = rng.choice([90, 397, 825, 826, 1200, 3650])
    ca = rng.random() < 0.3
    name, attributes = subject(rng)
    dns_names = tuple(rng.sample(HOSTS, rng.choice([0, 1, 2, 3])))
    not_before = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randrange(10**7))
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(key.private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    general_names: list[x509.GeneralName] = [x509.DNSName(host) for host in dns_names]
    if rng.random() < 0.3:
        general_names.append(x509.RFC822Name("ops@prod.example.com"))
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    certificate = builder.sign(signer.key, signer.hash)
    info = info_of(certificate.public_bytes(Encoding.DER))
    return Made(info, key, signer.hash_name, days, ca, attributes, dns_names)


@pytest.fixture(scope="module")
def made() -> list[Made]:
    rng = random.Random(4514)
    all_keys = keys()
    all_signers = signers({key.label: key for key in all_keys})
    return [make(rng, all_keys, all_signers) for _ in range(320)]


# --- Real-world certificates from cryptography_vectors ------------------------------------


def vector_files() -> Iterator[Path]:
    for folder in ("", "custom", "PKITS_data/certs", "ed25519", "ed448", "custom/ca"):
        for path in sorted((VECTORS / folder).glob("*")):
            if path.is_file() and path.suffix in (".pem", ".der", ".crt"):
                yield path


@pytest.fixture(scope="module")
def vectors() -> list[tuple[Path, bytes, CertificateInfo]]:
    found = []
    for path in vector_files():
        data = path.read_bytes()
        try:
            ders = pem_blocks_to_der(data.decode("latin-1")) if b"-----BEGIN" in data else [data]
            if ders:
                found.append((path, ders[0], info_of(ders[0])))
        except CertificateParseError:
            continue  # a CRL, a request, or bytes that are no certificate
    return found


def loaded_by_cryptography(der: bytes) -> x509.Certificate | None:
    """cryptography's reading, or None where it refuses the certificate (a bad version...)."""
    try:
        return x509.load_der_x509_certificate(der)
    except Exception:
        return None


# --- Expected values, from how each certificate was made -----------------------------------

STRONG_HASHES = {"sha256", "sha384", "sha512", "sha3-256", "sha3-384", "shake256"}


def expected_strength(key: Key, hash_name: str, days: int, ca: bool) -> str:
    if (
        hash_name in ("md5", "sha1")
        or (key.family in ("RSA", "DSA") and key.bits < 2048)
        or (key.family == "EC" and key.bits < 224)
        or (days > 825 and not ca)
    ):
        return "weak"
    if hash_name in STRONG_HASHES and (
        (key.family == "RSA" and key.bits >= 3072)
        or (key.family == "EC" and key.bits >= 256)
        or key.family in ("EdDSA", "ML-DSA")
    ):
        return "strong"
    return "acceptable"


def expected_environment(names: list[str]) -> str | None:
    for rule in ENVIRONMENT_RULES:
        pattern, environment = rule.split("=")
        if any(fnmatch.fnmatchcase(name.lower(), pattern.lower()) for name in names):
            return environment
    return None


def test_crypto_strength_over_a_few_hundred_certificates_made_here(made: list[Made]) -> None:
    generator = CryptoStrength(parameters_check(CryptoStrength.parameters, {"prefix": "crypto_"}))
    results = generator.generate_many([m.info for m in made])

    seen = set()
    for m, values in zip(made, results, strict=True):
        expected = {
            "crypto_key_strength": m.key.label,
            "crypto_signature_hash": m.hash_name,
            "crypto_validity_days": m.days,
            "crypto_strength": expected_strength(m.key, m.hash_name, m.days, m.ca),
            "crypto_quantum_vulnerable": m.key.family != "ML-DSA",
        }
        assert values == expected, (m.info.key_algorithm, m.info.signature_algorithm, m.days)
        seen.add(values["crypto_strength"])
    assert seen == {"weak", "acceptable", "strong"}, "the certificates made cover every rating"


@pytest.mark.parametrize("attribute", OWNER_ATTRIBUTES)
def test_certificate_fields_over_a_few_hundred_certificates_made_here(
    made: list[Made], attribute: str
) -> None:
    generator = CertificateFields(
        parameters_check(
            CertificateFields.parameters,
            {"owner_attribute": attribute, "environment_rules": ENVIRONMENT_RULES},
        )
    )
    results = generator.generate_many([m.info for m in made])

    owners = environments = 0
    for m, values in zip(made, results, strict=True):
        expected: dict[str, str] = {}
        if attribute in m.attributes:
            expected["owner"] = m.attributes[attribute]
            owners += 1
        environment = expected_environment([*m.dns_names, m.info.common_name])
        if environment:
            expected["environment"] = environment
            environments += 1
        assert values == expected, m.info.subject
    assert owners > 20 and environments > 100


def test_the_generators_read_real_world_certificates_as_cryptography_does(
    vectors: list[tuple[Path, bytes, CertificateInfo]],
) -> None:
    assert len(vectors) >= 300
    fields = CertificateFields({"environment_rules": ["*=any"]})
    strength = CryptoStrength({})
    compared_owners = compared_hashes = 0
    for path, der, info in vectors:
        where = path.relative_to(VECTORS)
        owner_values = fields.generate(info)
        if info.common_name or any(san.startswith("DNS:") for san in info.sans):
            assert owner_values.get("environment") == "any", where
        values = strength.generate(info)
        assert set(values) <= {
            "key_strength",
            "signature_hash",
            "validity_days",
            "strength",
            "quantum_vulnerable",
        }
        if "key_strength" in values:
            assert values["key_strength"].startswith(info.key_algorithm), where
        if info.key_algorithm in ("RSA", "EC", "DSA", "Ed25519", "Ed448"):
            assert values["quantum_vulnerable"] is True, where
        certificate = loaded_by_cryptography(der)
        if certificate is None:
            continue
        # Owner: the first OU in the subject string, as cryptography reads that string.
        try:
            name = x509.Name.from_rfc4514_string(info.subject)
        except ValueError:
            name = None
        if name is not None:
            units = [
                str(attribute.value)
                for rdn in reversed(name.rdns)
                for attribute in rdn
                if attribute.oid == NameOID.ORGANIZATIONAL_UNIT_NAME
            ]
            assert owner_values.get("owner") == (units[0] if units else None), where
            compared_owners += 1
        # Signature hash: cryptography's, where the algorithm's name says it.
        try:
            hash_algorithm = certificate.signature_hash_algorithm
        except Exception:
            hash_algorithm = None
        if hash_algorithm is not None and info.signature_algorithm != "rsassaPss":
            assert values.get("signature_hash") == hash_algorithm.name.replace("_", "-"), where
            compared_hashes += 1
        if "validity_days" in values:
            span = certificate.not_valid_after_utc - certificate.not_valid_before_utc
            assert values["validity_days"] == round(span.total_seconds() / 86400), where
    assert compared_owners >= 300 and compared_hashes >= 300


def test_weak_signatures_of_real_certificates_are_rated_weak(
    vectors: list[tuple[Path, bytes, CertificateInfo]],
) -> None:
    generator = CryptoStrength({})
    by_name = {path.name: generator.generate(info) for path, _, info in vectors}

    assert by_name["verisign_md2_root.pem"]["signature_hash"] == "md2"
    assert by_name["verisign_md2_root.pem"]["strength"] == "weak"
    sha1_signed = [v for v in by_name.values() if v.get("signature_hash") == "sha1"]
    assert len(sha1_signed) > 50
    assert all(v["strength"] == "weak" for v in sha1_signed)
    assert "signature_hash" not in by_name["rsa_pss_cert.pem"], "PSS keeps its hash elsewhere"


# --- The pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("Payments", "Payments"),
        (r"Example\, Inc.", "Example, Inc."),
        (r"a\+b\=c", "a+b=c"),
        (r"\C3\A9t\C3\A9", "été"),
        (r"\ lead", " lead"),
        (r"trail\ ", "trail "),
        (r"\#hash", "#hash"),
        (r"back\\", "back\\"),
        ("#0c03616263", "abc"),
        ("#1e0400e90041", "éA"),
        ("#0403616263", None),
        ("#zz", None),
    ],
)
def test_rfc4514_values_are_unescaped(raw: str, value: str | None) -> None:
    assert dn_value(raw) == value


@pytest.mark.parametrize(
    ("subject", "owner"),
    [
        (r"CN=web,OU=Payments,OU=IT,O=Example\, Inc.", "Payments"),
        (r"CN=a\,OU=fake,OU=real", "real"),
        (r"CN=a\\,OU=real", "real"),
        (r"OU=x\+y+CN=web,O=Example", "x+y"),
        (r"CN=web+OU=first,OU=second", "first"),
        (r"CN=web,2.5.4.11=by oid", "by oid"),
        (r"CN=web,OID.2.5.4.11=by oid", "by oid"),
        (r"CN=web,OU=,OU=not empty", "not empty"),
        ("CN=web,O=Example", None),
        ("", None),
        ("garbage without equals", None),
        ("CN=\ue000,OU=private use", "private use"),
        (r"CN=\ue001\,x,OU=private use", "private use"),
    ],
)
def test_the_owner_is_the_most_specific_attribute_of_its_type(
    subject: str, owner: str | None
) -> None:
    assert dn_first(subject, DN_ATTRIBUTE_TYPES["OU"]) == owner


def test_email_address_is_read_in_each_of_its_spellings() -> None:
    types = DN_ATTRIBUTE_TYPES["emailAddress"]
    for subject in [
        "CN=web,1.2.840.113549.1.9.1=pki@example.com",
        "CN=web,emailAddress=pki@example.com",
        "E=pki@example.com,CN=web",
    ]:
        assert dn_first(subject, types) == "pki@example.com"


@pytest.mark.parametrize(
    ("name", "hash_name"),
    [
        ("sha256WithRSAEncryption", "sha256"),
        ("sha1WithRSAEncryption", "sha1"),
        ("md5WithRSAEncryption", "md5"),
        ("ecdsa-with-SHA384", "sha384"),
        ("ecdsa-with-SHA1", "sha1"),
        ("dsa-with-sha224", "sha224"),
        ("ed25519", "sha512"),
        ("ed448", "shake256"),
        ("ML-DSA-87", "shake256"),
        ("1.2.840.113549.1.1.2", "md2"),
        ("2.16.840.1.101.3.4.3.14", "sha3-256"),
        ("2.16.840.1.101.3.4.3.20", "sha256"),
        ("2.16.840.1.101.3.4.3.30", "shake256"),
        ("GOST R 34.10-2012 with GOST R 34.11-2012 (256 bit)", "streebog256"),
        ("GOST R 34.11-94 with GOST R 34.10-2001", "gostr3411-94"),
        ("SM2-with-SM3", "sm3"),
        ("rsassaPss", None),
        ("1.2.3.4", None),
        ("", None),
    ],
)
def test_signature_hash_is_read_from_the_algorithm_name(name: str, hash_name: str | None) -> None:
    assert signature_hash(name) == hash_name


@pytest.mark.parametrize(
    ("algorithm", "size", "profile"),
    [
        ("RSA", 4096, ("RSA-4096", "RSA", True)),
        ("RSA", None, (None, "RSA", True)),
        ("EC", 384, ("EC-384", "EC", True)),
        ("Ed25519", 256, ("Ed25519", "EdDSA", True)),
        ("X25519", 256, ("X25519", "other", True)),
        ("DH", 2048, ("DH-2048", "other", True)),
        ("GOST R 34.10-2012", 256, ("GOST R 34.10-2012-256", "other", True)),
        ("ML-DSA-44", None, ("ML-DSA-44", "PQ", False)),
        ("2.16.840.1.101.3.4.3.24", None, ("SLH-DSA-SHA2-256s", "PQ", False)),
        ("2.16.840.1.101.3.4.4.2", None, ("ML-KEM-768", "PQ-other", False)),
        ("FN-DSA-512", None, ("FN-DSA-512", "PQ-other", False)),
        ("MLDSA65-ECDSA-P256-SHA512", None, ("MLDSA65-ECDSA-P256-SHA512", "PQ", False)),
        ("1.2.3.4.5", None, (None, None, None)),
        ("unknown", None, (None, None, None)),
    ],
)
def test_key_profiles(algorithm: str, size: int | None, profile: tuple[Any, ...]) -> None:
    assert key_profile(algorithm, size) == profile


def certificate(**changes: Any) -> CertificateInfo:
    fields: dict[str, Any] = {
        "sha256": "00" * 32,
        "subject": "CN=www.example.com",
        "issuer": "CN=CA",
        "common_name": "www.example.com",
        "sans": ("DNS:www.example.com",),
        "serial_number": "01",
        "not_before": "2025-01-01T00:00:00+00:00",
        "not_after": "2025-04-01T00:00:00+00:00",
        "key_algorithm": "EC",
        "key_size": 256,
        "signature_algorithm": "ecdsa-with-SHA256",
        "is_ca": False,
        "self_signed": False,
    }
    fields.update(changes)
    return CertificateInfo(**fields)


def test_only_the_fields_that_can_be_determined_are_returned() -> None:
    values = CryptoStrength({}).generate(
        certificate(
            key_algorithm="1.2.3.4", key_size=None, signature_algorithm="1.2.3.5", not_before=None
        )
    )
    assert values == {}
    assert CertificateFields({}).generate(certificate(subject="CN=x", sans=())) == {}


def test_an_unknown_key_with_a_weak_signature_is_still_weak_and_validity_counts() -> None:
    generator = CryptoStrength({})
    weak = generator.generate(
        certificate(key_algorithm="1.2.3.4", signature_algorithm="sha1WithRSAEncryption")
    )
    assert weak["strength"] == "weak" and "key_strength" not in weak
    long_lived = generator.generate(certificate(not_after="2028-01-01T00:00:00Z"))
    assert long_lived["strength"] == "weak" and long_lived["validity_days"] == 1095
    assert (
        generator.generate(certificate(not_after="2028-01-01T00:00:00Z", is_ca=True))["strength"]
        == "strong"
    )
    naive = generator.generate(
        certificate(not_before="2025-01-01T00:00:00", not_after="2025-01-31T00:00:00")
    )
    assert naive["validity_days"] == 30


def test_the_first_environment_rule_that_matches_any_name_wins() -> None:
    generator = CertificateFields(
        {
            "environment_rules": ["*.prod.example.com=production", "*=other"],
            "environment_field": "env",
        }
    )
    assert (
        generator.generate(certificate(sans=("DNS:a.test.org", "DNS:x.PROD.example.com")))["env"]
        == "production"
    )
    assert (
        generator.generate(certificate(sans=("IP:10.0.0.1",), common_name="db.prod.example.com"))[
            "env"
        ]
        == "production"
    )
    assert generator.generate(certificate(sans=("email:a@prod.example.com",), common_name="")) == {}


def test_bad_environment_rules_are_refused_when_saved_and_when_run() -> None:
    with pytest.raises(ParameterError) as caught:
        CertificateFields.config_check(
            {"environment_rules": ["*.example.com=prod", "no rule here"]}
        )
    assert "line 2" in caught.value.errors["environment_rules"]
    with pytest.raises(HandlerError) as failed:
        CertificateFields({"environment_rules": ["=prod"]}).generate(certificate())
    assert failed.value.permanent


def test_the_prefix_must_make_field_names() -> None:
    with pytest.raises(ParameterError):
        parameters_check(CryptoStrength.parameters, {"prefix": "bad prefix!"})
    values = CryptoStrength({"prefix": "tls_"}).generate(certificate())
    assert set(values) == {
        "tls_key_strength",
        "tls_signature_hash",
        "tls_validity_days",
        "tls_strength",
        "tls_quantum_vulnerable",
    }
