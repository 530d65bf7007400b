"""The tolerant certificate parser: ``certyard.x509`` on real certificates we did not make.

The vectors are cryptography's own test certificates (``cryptography_vectors``):
certificates from the field that bend the rules, which the inventory must list
anyway, and structures that are no certificate, which it must refuse in words.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certyard.x509 import (
    CertificateDetails,
    CertificateParseError,
    ParsedCertificate,
    certificate_details,
    certificate_parse,
    oids,
    pem_blocks_to_der,
    pem_to_der,
)
from certyard.x509 import der as derlib
from certyard.x509 import parse as parsing
from tests.certs import csr_der, issue, private_key

VECTORS = Path(cryptography_vectors.__file__).parent / "x509"
PEM_LABEL = re.compile(rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----")
# Text cryptography puts in its own error messages; none may reach a person.
RAW_PARSER_TEXT = ("ParseError", "error parsing asn1", "ASN.1 parse error", "kind:", "location:")

# Some vectors make cryptography warn (negative serials, odd policies): expected here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning"),
]


def vector(relative: str) -> bytes:
    """The DER of a vector file (its first certificate block, for a PEM file)."""
    data = (VECTORS / relative).read_bytes()
    return pem_to_der(data.decode("latin-1")) if relative.endswith(".pem") else data


def storable(text: str) -> bool:
    """What ``x509.text_is_storable`` checks: no NUL, no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def texts_of(parsed: ParsedCertificate) -> list[str]:
    return [
        parsed.serial_number,
        parsed.issuer,
        parsed.subject,
        parsed.common_name,
        parsed.key_algorithm,
        parsed.signature_algorithm,
        *parsed.sans,
        *parsed.parse_warnings,
    ]


def detail_texts(details: CertificateDetails) -> list[str]:
    return [
        details.serial_number,
        details.signature_algorithm,
        details.subject,
        details.issuer,
        details.key_algorithm,
        *(name for names in details.sans.values() for name in names),
        *details.key_usage,
        *details.extended_key_usage,
        details.basic_constraints or "",
        *details.policies,
        *details.authority_information_access,
        *details.crl_distribution_points,
        *details.other_extensions,
        *details.warnings,
    ]


def loads_in_cryptography(der: bytes) -> bool:
    try:
        x509.load_der_x509_certificate(der)
    except Exception:
        return False
    return True


def has_warning(parsed: ParsedCertificate, *words: str) -> bool:
    return any(all(word in message for word in words) for message in parsed.parse_warnings)


# --- Certificates that bend the rules are kept, each oddity named ---------------------------


def check_two_basic_constraints(parsed: ParsedCertificate) -> None:
    assert has_warning(parsed, "basicConstraints", "appears twice")
    assert parsed.is_ca is True  # the first one says CA


def check_invalid_version(parsed: ParsedCertificate) -> None:
    assert parsed.common_name == "Cryptography CA"
    assert parsed.subject == "CN=Cryptography CA,O=PyCA,L=Austin,ST=Texas,C=US"
    assert parsed.version is None
    assert has_warning(parsed, "version 8 is not a valid X.509 version")
    assert (parsed.key_algorithm, parsed.key_size) == ("RSA", 2048)
    assert parsed.self_signed is True


def check_x400_address(parsed: ParsedCertificate) -> None:
    assert [name for name in parsed.sans if name.startswith("X400Address:")] == [
        "X400Address:a303130161"
    ]
    assert parsed.common_name == "yassir"
    assert parsed.parse_warnings == []  # a valid name type, only unsupported by cryptography


def check_edi_party_name(parsed: ParsedCertificate) -> None:
    assert parsed.sans == ["EdiPartyName:a50c810a13086564695061727479"]


def check_invalid_utf8_common_name(parsed: ParsedCertificate) -> None:
    assert parsed.common_name == "We heart UTF8!\\xe2\\x84"
    assert parsed.subject == "CN=We heart UTF8!\\xe2\\x84"
    assert "the subject contains text that is not valid UTF-8" in parsed.parse_warnings


def check_cp_invalid(parsed: ParsedCertificate) -> None:
    assert has_warning(parsed, "certificatePolicies", "user notice")
    assert parsed.common_name == "PyCA CA"


def check_cp_invalid2(parsed: ParsedCertificate) -> None:
    assert has_warning(parsed, "certificatePolicies", "CPS")


def check_malformed_san(parsed: ParsedCertificate) -> None:
    assert parsed.sans == []
    assert has_warning(parsed, "subject alternative name", "malformed")


def check_malformed_ian(parsed: ParsedCertificate) -> None:
    assert has_warning(parsed, "issuer alternative name", "malformed")


def check_nc_invalid_netmask(parsed: ParsedCertificate) -> None:
    assert has_warning(parsed, "nameConstraints", "netmask")


def check_nc_invalid_length(parsed: ParsedCertificate) -> None:
    assert has_warning(parsed, "nameConstraints", "33 bytes")


def check_empty_eku(parsed: ParsedCertificate) -> None:
    assert has_warning(parsed, "extendedKeyUsage", "empty")


def check_negative_inhibit_any_policy(parsed: ParsedCertificate) -> None:
    assert has_warning(parsed, "inhibitAnyPolicy", "negative")


def check_negative_serial(parsed: ParsedCertificate) -> None:
    assert parsed.serial_number.startswith("-")
    assert int(parsed.serial_number, 16) < 0
    assert "the serial number is negative" in parsed.parse_warnings


def check_unsupported_key(parsed: ParsedCertificate) -> None:
    assert parsed.key_algorithm == "1.3.6.1.4.1.8432.1.1.2"
    assert parsed.key_size is None
    assert has_warning(parsed, "1.3.6.1.4.1.8432.1.1.2", "not supported", "key size unknown")
    assert parsed.common_name == "www.yassl.com"


def check_unsupported_subject_attribute(parsed: ParsedCertificate) -> None:
    assert parsed.subject == "2.5.4.43=PK,CN=Unsupported subject item"
    assert parsed.common_name == "Unsupported subject item"


def check_unsupported_name_tag(parsed: ParsedCertificate) -> None:
    assert parsed.subject.startswith("CN=#")  # RFC 4514: a non-string value in hex
    assert has_warning(parsed, "subject", "unexpected type", "[APPLICATION 9]")


def check_bad_time(parsed: ParsedCertificate) -> None:
    assert parsed.not_after is None
    assert parsed.not_before == dt.datetime(2011, 3, 21, 9, 25, 52, tzinfo=dt.UTC)
    assert has_warning(parsed, "notAfter", "19020701025736Z")
    assert parsed.common_name == "Default Common Name"


def check_belgian_eid(parsed: ParsedCertificate) -> None:
    assert parsed.common_name == "Else De Proft (Signature)"
    details = certificate_details(parsed.der)
    assert any("VisibleString" in message for message in details.warnings)


def check_gost_key(parsed: ParsedCertificate) -> None:
    assert parsed.key_algorithm not in ("RSA", "EC")
    assert parsed.key_algorithm == "GOST R 34.10-2001"
    assert parsed.key_size is None
    assert has_warning(parsed, "1.2.643.2.2.19", "GOST R 34.10-2001", "not supported")
    assert parsed.common_name == "Головной удостоверяющий центр"


def check_other_name(parsed: ParsedCertificate) -> None:
    assert parsed.sans == ["othername:1.2.3.4:160b48656c6c6f20576f726c64"]


def check_registered_id(parsed: ParsedCertificate) -> None:
    assert parsed.sans == ["RID:1.2.3.4"]


def check_directory_name(parsed: ParsedCertificate) -> None:
    assert parsed.sans == ["DirName:ST=Texas,O=Org,CN=test"]


def check_all_supported_names(parsed: ParsedCertificate) -> None:
    assert parsed.common_name == "CN 0"
    assert parsed.subject.startswith("1.2.840.113549.1.9.1=test3@test.local,")
    assert "O=Org One\\, LLC" in parsed.subject
    assert parsed.parse_warnings == []


VECTOR_CHECKS: dict[str, Callable[[ParsedCertificate], None]] = {
    "custom/two_basic_constraints.pem": check_two_basic_constraints,
    "custom/invalid_version.pem": check_invalid_version,
    "san_x400address.der": check_x400_address,
    "san_edipartyname.der": check_edi_party_name,
    "custom/invalid_utf8_common_name.pem": check_invalid_utf8_common_name,
    "custom/cp_invalid.pem": check_cp_invalid,
    "custom/cp_invalid2.der": check_cp_invalid2,
    "custom/malformed-san.pem": check_malformed_san,
    "custom/malformed-ian.pem": check_malformed_ian,
    "custom/nc_invalid_ip_netmask.pem": check_nc_invalid_netmask,
    "custom/nc_ip_invalid_length.pem": check_nc_invalid_length,
    "custom/empty-eku.pem": check_empty_eku,
    "custom/inhibit_any_policy_negative.pem": check_negative_inhibit_any_policy,
    "custom/negative_serial.pem": check_negative_serial,
    "custom/unsupported_subject_public_key_info.pem": check_unsupported_key,
    "custom/unsupported_subject_name.pem": check_unsupported_subject_attribute,
    "custom/name_attribute_unsupported_tag.pem": check_unsupported_name_tag,
    "badasn1time.pem": check_bad_time,
    "belgian-eid-invalid-visiblestring.pem": check_belgian_eid,
    "e-trust.ru.der": check_gost_key,
    "custom/san_other_name.pem": check_other_name,
    "custom/san_registered_id.pem": check_registered_id,
    "custom/san_dirname.pem": check_directory_name,
    "custom/all_supported_names.pem": check_all_supported_names,
}


@pytest.mark.parametrize("relative", list(VECTOR_CHECKS))
def test_a_certificate_that_bends_the_rules_is_kept_with_what_is_odd_named(relative: str) -> None:
    der = vector(relative)

    parsed = certificate_parse(der)

    VECTOR_CHECKS[relative](parsed)
    assert parsed.der == der and parsed.sha256 == hashlib.sha256(der).hexdigest()
    assert all(storable(text) for text in texts_of(parsed))
    details = certificate_details(der)
    assert set(parsed.parse_warnings) <= set(details.warnings)
    assert all(storable(text) for text in detail_texts(details))


def test_a_conformant_certificate_has_no_warnings_and_the_old_field_values() -> None:
    ca = issue("Parsing Root", ca=True)
    leaf = issue("www.parse.test", issuer=ca, sans=("www.parse.test", "parse.test"))

    parsed = certificate_parse(leaf.der)

    assert parsed.parse_warnings == []
    assert parsed.version == 3
    assert parsed.serial_number == format(leaf.certificate.serial_number, "x")
    assert (parsed.subject, parsed.issuer) == ("CN=www.parse.test", "CN=Parsing Root")
    assert parsed.common_name == "www.parse.test"
    assert parsed.sans == ["DNS:www.parse.test", "DNS:parse.test"]
    assert parsed.not_before == leaf.certificate.not_valid_before_utc
    assert parsed.not_after == leaf.certificate.not_valid_after_utc
    assert (parsed.key_algorithm, parsed.key_size) == ("EC", 256)
    assert parsed.signature_algorithm == "ecdsa-with-SHA256"
    assert (parsed.is_ca, parsed.self_signed) == (False, False)
    assert parsed.sha1 == hashlib.sha1(leaf.der, usedforsecurity=False).hexdigest()
    root = certificate_parse(ca.der)
    assert (root.is_ca, root.self_signed, root.parse_warnings) == (True, True, [])


def test_an_rsa_key_size_is_read() -> None:
    parsed = certificate_parse(issue("rsa.parse.test", rsa_bits=2048).der)

    assert (parsed.key_algorithm, parsed.key_size) == ("RSA", 2048)
    assert parsed.signature_algorithm == "sha256WithRSAEncryption"


def test_ip_email_and_uri_names_keep_their_old_form() -> None:
    parsed = certificate_parse(vector("custom/san_email_dns_ip_dirname_uri.pem"))

    assert parsed.sans == [
        "email:user@cryptography.io",
        "DNS:cryptography.io",
        "IP:127.0.0.1",
        "IP:ff::",
        "DirName:O=Cryptographic Authority,CN=dirCN",
        "URI:https://cryptography.io",
    ]


def test_a_user_principal_name_shows_as_its_text() -> None:
    ca = issue("UPN Root", ca=True)
    upn = x509.OtherName(
        x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x11user@corp.example"
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(ca.certificate.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(ca.key.public_key())
        .serial_number(7)
        .not_valid_before(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2034, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.SubjectAlternativeName([upn]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )

    parsed = certificate_parse(certificate.public_bytes(serialization.Encoding.DER))

    assert parsed.sans == ["othername:1.3.6.1.4.1.311.20.2.3:user@corp.example"]


# --- Every certificate in the vectors, and the system's trust store -----------------------------


def corpus() -> Iterator[tuple[str, bytes]]:
    """(file, DER) for each certificate-like item under x509/: PEM blocks, .der and .crt files."""
    for path in sorted(VECTORS.rglob("*")):
        relative = str(path.relative_to(VECTORS))
        if path.suffix == ".pem":
            data = path.read_bytes()
            if PEM_LABEL.search(data):
                for index, der in enumerate(pem_blocks_to_der(data.decode("latin-1"))):
                    yield f"{relative}#{index}", der
        elif path.suffix in (".der", ".crt"):
            yield relative, path.read_bytes()


# Files cryptography refuses as certificates that are certificates all the same.
KEPT_ALTHOUGH_CRYPTOGRAPHY_REFUSES = {
    "badasn1time.pem#0",
    "custom/invalid_version.pem#0",
    "custom/dsa_null_alg_params.pem#0",
    "custom/ecdsa_null_alg.pem#0",
    "ed25519/ed25519-rfc8410.pem#0",
    "PKITS_data/certs/DSAParametersInheritedCACert.crt",
    "PKITS_data/certs/ValidDSAParameterInheritanceTest5EE.crt",
}
# DER files under x509/ that hold no certificate, beyond the CRLs, requests and OCSP messages.
NOT_CERTIFICATES = {"cryptography-scts-tbs-precert.der"}  # a to-be-signed part alone


def is_other_structure(relative: str) -> bool:
    return (
        relative.startswith(("ocsp/", "requests/", "PKITS_data/crls/", "custom/crl_"))
        or relative in NOT_CERTIFICATES
    )


def test_every_certificate_in_the_vectors_parses_and_only_non_certificates_are_refused() -> None:
    kept, refused = set(), set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = list(corpus())
    assert len(items) > 500  # the PKITS certificates are there
    for relative, der in items:
        try:
            parsed = certificate_parse(der)
        except CertificateParseError as exc:
            assert not any(text in str(exc) for text in RAW_PARSER_TEXT), (relative, exc)
            assert str(exc).startswith("the data is not an X.509 certificate: "), (relative, exc)
            refused.add(relative)
            continue
        kept.add(relative)
        assert all(storable(text) for text in texts_of(parsed)), relative
        details = certificate_details(der)
        assert all(storable(text) for text in detail_texts(details)), relative
        if loads_in_cryptography(der):
            for message in parsed.parse_warnings:
                assert message and not any(text in message for text in RAW_PARSER_TEXT), message
        else:
            assert parsed.parse_warnings, f"{relative}: refused by cryptography, yet no warning"
    assert kept >= KEPT_ALTHOUGH_CRYPTOGRAPHY_REFUSES
    assert {relative for relative in refused if not is_other_structure(relative)} == set()
    assert not any(loads_in_cryptography(der) for relative, der in items if relative in refused)


def test_certificates_cryptography_loads_parse_with_no_warning_or_named_oddities() -> None:
    odd = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for relative, der in corpus():
            if loads_in_cryptography(der) and (found := certificate_parse(der).parse_warnings):
                odd[relative] = found
    assert odd["custom/two_basic_constraints.pem#0"] == [
        "the basicConstraints extension appears twice"
    ]
    assert odd["custom/negative_serial.pem#0"] == ["the serial number is negative"]
    assert odd["wosign-bc-invalid.pem#0"] == [
        "the basicConstraints extension gives a path length to a certificate that is not a CA"
    ]
    assert "cryptography.io.pem#0" not in odd and "letsencryptx3.pem#0" not in odd


@pytest.mark.skipif(not list(Path("/etc/ssl/certs").glob("*.pem")), reason="no system store")
def test_every_certificate_in_the_system_trust_store_parses() -> None:
    count = 0
    for path in sorted(Path("/etc/ssl/certs").glob("*.pem")):
        for der in pem_blocks_to_der(path.read_text(encoding="latin-1")):
            parsed = certificate_parse(der)
            count += 1
            assert parsed.subject and parsed.not_after is not None, path
            assert parsed.key_size, path
            assert all(storable(text) for text in texts_of(parsed)), path
            assert set(parsed.parse_warnings) <= {"the serial number is zero"}, path
    assert count > 0


def fully_readable(der: bytes) -> x509.Certificate | None:
    """cryptography's certificate, if it reads every field the inventory keeps."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        certificate.subject.rfc4514_string()
        certificate.issuer.rfc4514_string()
        certificate.public_key()
        certificate.extensions  # noqa: B018 - reading it is the check
    except Exception:
        return None
    return certificate


def test_the_der_reader_reads_every_field_as_cryptography_does() -> None:
    """The fallback must show what the fast path would: checked on every readable vector."""
    compared = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for relative, der in corpus():
            if (certificate := fully_readable(der)) is None:
                continue
            subject = certificate.subject.rfc4514_string()
            issuer = certificate.issuer.rfc4514_string()
            key = parsing._key_from_object(certificate.public_key())
            extensions = certificate.extensions
            reader = parsing._Reader(der, None, parsing.split_certificate(der), [])
            assert reader.names()[:2] == (issuer, subject), relative
            assert reader.validity() == (
                certificate.not_valid_before_utc,
                certificate.not_valid_after_utc,
            ), relative
            assert reader.version() == certificate.version.value + 1, relative
            if key is not None:
                assert reader.key() == key, relative
            assert reader.signature_algorithm() == oids.oid_label(
                certificate.signature_algorithm_oid
            )
            assert reader.extensions() == parsing._Reader._extensions_from(extensions), relative
            compared += 1
    assert compared > 500


# --- What is no certificate is refused, in words -------------------------------------------------


def private_key_der() -> bytes:
    return private_key().private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def rsa_private_key_der() -> bytes:
    return private_key("rsa").private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


NOT_CERTIFICATES_CASES: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "random bytes": lambda: random.Random(7).randbytes(600),
    "text": lambda: b"hello, I am not DER",
    "a CSR": lambda: csr_der("csr.test"),
    "a CSR from the vectors": lambda: (VECTORS / "requests/rsa_sha256.der").read_bytes(),
    "a private key": private_key_der,
    "an RSA private key": rsa_private_key_der,
    "a CRL": lambda: (VECTORS / "PKITS_data/crls/GoodCACRL.crl").read_bytes(),
    "a truncated certificate": lambda: (lambda der: der[: len(der) // 2])(
        vector("letsencryptx3.pem")
    ),
    "a sequence of garbage": lambda: b"\x30\x10" + b"\x13garbage-garbage"[:16],
    "an empty sequence": lambda: b"\x30\x00",
    "an indefinite length": lambda: b"\x30\x80" + vector("letsencryptx3.pem")[4:] + b"\x00\x00",
    "a length past the end": lambda: b"\x30\x84\xff\xff\xff\xff\x30\x00",
    "an OCSP response": lambda: (VECTORS / "ocsp/resp-sha256.der").read_bytes(),
}


@pytest.mark.parametrize("case", list(NOT_CERTIFICATES_CASES))
def test_bytes_that_are_no_certificate_are_refused_with_a_readable_reason(case: str) -> None:
    data = NOT_CERTIFICATES_CASES[case]()

    with pytest.raises(CertificateParseError) as caught:
        certificate_parse(data)
    with pytest.raises(CertificateParseError):
        certificate_details(data)

    message = str(caught.value)
    assert message.startswith("the data is not an X.509 certificate: ")
    assert not any(text in message for text in RAW_PARSER_TEXT)


def test_the_reasons_say_what_is_wrong() -> None:
    def reason(data: bytes) -> str:
        with pytest.raises(CertificateParseError) as caught:
            certificate_parse(data)
        return str(caught.value)

    der = vector("letsencryptx3.pem")
    assert reason(b"").endswith("it is empty")
    assert reason(b"hello").endswith("it does not start with a DER SEQUENCE")
    assert f"it is truncated (it says it holds {len(der) - 4} bytes" in reason(der[:600])
    assert "indefinite length" in reason(b"\x30\x80\x00\x00")
    assert "certificate request, a CRL" in reason(
        (VECTORS / "requests/rsa_sha256.der").read_bytes()
    )
    assert "certificate request, a CRL" in reason(
        (VECTORS / "PKITS_data/crls/GoodCACRL.crl").read_bytes()
    )


@pytest.mark.parametrize("value", ["a string", None, 42, ["list"]])
def test_input_that_is_not_bytes_is_refused(value: object) -> None:
    with pytest.raises(CertificateParseError, match="must be given as bytes"):
        certificate_parse(value)  # type: ignore[arg-type]


def test_bytes_after_the_certificate_are_ignored_with_a_warning() -> None:
    der = issue("trailing.parse.test").der

    parsed = certificate_parse(der + b"\x00\x01\x02")

    assert parsed.der == der
    assert parsed.sha256 == hashlib.sha256(der).hexdigest()
    assert parsed.parse_warnings == ["3 bytes after the certificate were ignored"]
    assert certificate_parse(bytearray(der)).sha256 == parsed.sha256


def test_a_nul_in_a_name_is_stored_escaped() -> None:
    ca = issue("NUL Root", ca=True)
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil.test\x00.good.test")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.certificate.subject)
        .public_key(ca.key.public_key())
        .serial_number(9)
        .not_valid_before(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2034, 1, 1, tzinfo=dt.UTC))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("evil.test\x00.good.test")]), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )

    parsed = certificate_parse(certificate.public_bytes(serialization.Encoding.DER))

    assert parsed.common_name == "evil.test\\x00.good.test"
    assert parsed.sans == ["DNS:evil.test\\x00.good.test"]
    assert all(storable(text) for text in texts_of(parsed))


# --- PEM ----------------------------------------------------------------------------------------


def test_pem_blocks_are_read_whatever_their_label_line_endings_and_surroundings() -> None:
    leaf = issue("pem.parse.test")
    body = base64.encodebytes(leaf.der).decode()

    for label in ("CERTIFICATE", "X509 CERTIFICATE"):
        pem = f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"
        assert pem_to_der(pem) == leaf.der
        assert pem_to_der(pem.replace("\n", "\r\n")) == leaf.der
        assert pem_to_der(f"subject=CN=x\nissuer=CN=y\n{pem}trailing words") == leaf.der
    assert pem_to_der(leaf.pem.replace("\n", "\r")) == leaf.der


def test_a_trusted_certificate_block_gives_the_certificate_without_its_trust_data() -> None:
    leaf = issue("trusted.parse.test")
    trust = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.1")
    aux = b"\x30\x0c\x30\x0a\x06\x08" + bytes.fromhex("2b06010505070301")
    assert trust.dotted_string  # serverAuth: what OpenSSL's trust data names
    body = base64.encodebytes(leaf.der + aux).decode()
    pem = f"-----BEGIN TRUSTED CERTIFICATE-----\n{body}-----END TRUSTED CERTIFICATE-----\n"

    der = pem_to_der(pem)

    assert der == leaf.der
    assert hashlib.sha256(der).hexdigest() == certificate_parse(der).sha256 == leaf.sha256


def test_old_header_and_garbage_vectors_are_read() -> None:
    expected = vector("cryptography.io.pem")
    for name in (
        "cryptography.io.old_header.pem",
        "cryptography.io.with_garbage.pem",
        "cryptography.io.with_headers.pem",
    ):
        assert pem_to_der((VECTORS / name).read_text()) == expected, name
    assert len(pem_blocks_to_der((VECTORS / "cryptography.io.chain.pem").read_text())) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no PEM certificate block found"),
        ("just words", "no PEM certificate block found"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n", "no PEM certificate block found"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----", "the PEM block is empty"),
        ("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----", "not valid base64"),
        ("-----BEGIN CERTIFICATE-----\nAAé=\n-----END CERTIFICATE-----", "not valid base64"),
        ("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----", "not valid base64"),
        ("-----BEGIN CERTIFICATE-----\n====\n-----END CERTIFICATE-----", "not valid base64"),
    ],
)
def test_pem_text_without_a_readable_block_is_refused_in_words(text: str, message: str) -> None:
    with pytest.raises(CertificateParseError, match=message):
        pem_to_der(text)


@pytest.mark.parametrize("value", [b"-----BEGIN CERTIFICATE-----", None, 7, ["x"]])
def test_pem_input_that_is_not_text_is_refused(value: object) -> None:
    with pytest.raises(CertificateParseError, match="must be a PEM string"):
        pem_to_der(value)  # type: ignore[arg-type]
    with pytest.raises(CertificateParseError):
        pem_blocks_to_der(value)  # type: ignore[arg-type]


def test_many_begin_lines_without_an_end_take_linear_time() -> None:
    text = "-----BEGIN CERTIFICATE-----\n" * 50_000 + "-----BEGIN X509 CERTIFICATE-----\n" * 50_000

    with pytest.raises(CertificateParseError, match="no PEM certificate block found"):
        pem_to_der(text)
    assert pem_blocks_to_der(text) == []


# --- Details -----------------------------------------------------------------------------------


def test_details_show_the_main_extensions_in_words() -> None:
    details = certificate_details(vector("utf8-dnsname.pem"))

    assert details.version == 3
    assert details.basic_constraints == "not a CA"
    assert details.key_usage == ["Digital signature", "Key encipherment", "Key agreement"]
    assert details.extended_key_usage == ["TLS Web Server Authentication (1.3.6.1.5.5.7.3.1)"]
    assert details.policies == ["CA/B Forum Organization Validated (2.23.140.1.2.2)"]
    assert details.authority_information_access[0] == "OCSP: http://ocsp1.netlock.hu/cbca.cgi"
    assert any(
        entry.startswith("CA Issuers: http://") for entry in details.authority_information_access
    )
    assert details.crl_distribution_points[0] == "http://crl1.netlock.hu/index.cgi?crl=cbca"
    assert details.other_extensions == ["subjectKeyIdentifier", "authorityKeyIdentifier"]
    assert "partner.biztositas.hu" in details.sans["DNS names"]


def test_details_group_names_by_type_and_mark_critical_extensions() -> None:
    names = certificate_details(vector("custom/san_email_dns_ip_dirname_uri.pem")).sans
    assert names == {
        "Email addresses": ["user@cryptography.io"],
        "DNS names": ["cryptography.io"],
        "IP addresses": ["127.0.0.1", "ff::"],
        "Directory names": ["O=Cryptographic Authority,CN=dirCN"],
        "URIs": ["https://cryptography.io"],
    }
    assert certificate_details(vector("san_x400address.der")).sans == {
        "X.400 addresses": ["a303130161"]
    }
    assert certificate_details(vector("custom/san_registered_id.pem")).sans == {
        "Registered IDs": ["1.2.3.4"]
    }
    constrained = certificate_details(vector("custom/nc_ip_invalid_length.pem"))
    assert constrained.other_extensions == ["nameConstraints (critical)"]
    assert certificate_details(vector("custom/bc_path_length_zero.pem")).basic_constraints == (
        "CA, path length 0"
    )


def test_details_decode_extensions_even_where_cryptography_refuses_the_list() -> None:
    duplicated = certificate_details(vector("custom/two_basic_constraints.pem"))
    assert duplicated.basic_constraints == "CA, no path length limit"
    assert any("appears twice" in message for message in duplicated.warnings)

    policies = certificate_details(vector("custom/cp_invalid.pem"))
    assert policies.policies == ["2.16.840.1.12345.1.2.3.4.1"]
    assert any("user notice" in message for message in policies.warnings)

    gost = certificate_details(vector("e-trust.ru.der"))
    assert gost.key_usage == ["Certificate signing", "CRL signing"]
    assert gost.key_size is None


def test_details_of_a_factory_certificate() -> None:
    leaf = issue("details.parse.test", sans=("details.parse.test",))

    details = certificate_details(leaf.der)

    assert details.sans == {"DNS names": ["details.parse.test"]}
    assert details.basic_constraints == "not a CA"
    assert details.other_extensions == []
    assert details.warnings == []
    assert (details.key_algorithm, details.key_size, details.version) == ("EC", 256, 3)


def test_the_der_reader_rejects_what_it_cannot_read() -> None:
    with pytest.raises(derlib.DerIndefiniteLengthError):
        derlib.read_element(b"\x30\x80\x00\x00")
    with pytest.raises(derlib.DerTruncatedError):
        derlib.read_element(b"\x30\x05\x00")
    assert derlib.decode_oid(bytes.fromhex("2a864886f70d01010b")) == "1.2.840.113549.1.1.11"
    assert derlib.read_element(b"\x5f\x81\x00\x00").number == 128  # a high tag number
    assert derlib.decode_text(b"\x00A\xd8\x00", derlib.BMP_STRING) == (
        "A\\xd8\\x00",
        "a BMPString that is not valid UTF-16",
    )
    assert derlib.decode_text(b"\x00\x00\x00A", derlib.UNIVERSAL_STRING) == ("A", "")
    assert derlib.decode_text(b"caf\xe9", derlib.T61_STRING) == ("café", "")
