"""The public helpers for handler authors, over strings the platform really writes.

Certificates are made here with odd subjects and every kind of SAN, run through the
inventory's own parser (``certyard.x509.certificate_parse``) and the enrollment policy's
CSR reader, and the helpers must give back what went in. The real-world certificates of
``cryptography_vectors`` are read both ways: by the helpers from the stored subject
string, and by cryptography from the DER.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import warnings
from collections.abc import Iterator
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from certyard.enrollment import policy
from certyard.x509 import CertificateParseError, certificate_parse, pem_blocks_to_der
from handlers.helpers import (
    SAN_TYPES,
    SUBJECT_ATTRIBUTE_NAMES,
    attribute_value,
    der_string,
    key_values,
    sans_of,
    subject_attribute,
    subject_attributes,
    subject_rdns,
)
from tests.certs import build_csr, issue

VECTORS = Path(cryptography_vectors.__file__).parent / "x509"
UPN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def parsed_subject(
    name: x509.Name, sans: list[x509.GeneralName] | None = None
) -> tuple[str, list[str]]:
    """The subject and SANs the inventory stores for a certificate with this name."""
    ca = issue("Helpers Root", ca=True)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.certificate.subject)
        .public_key(ca.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2035, 1, 1, tzinfo=dt.UTC))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a long CN, a country of three letters: on purpose
        certificate = builder.sign(ca.key, hashes.SHA256())
    parsed = certificate_parse(certificate.public_bytes(serialization.Encoding.DER))
    return parsed.subject, parsed.sans


ODD_VALUES = [
    "Example, Inc.",
    "a+b",
    'say "hi"',
    "back\\slash",
    "back\\",
    "semi;colon",
    "<angle>",
    "#hash",
    " leading space",
    "trailing space ",
    " ",
    "a=b=c",
    "Zoë Ünïcode 日本語",
    "emoji 🎉",
    "new\nline",
    "tab\tand\rreturn",
    "nul\x00inside",
    "\\2C not an escape",
    "",
]


@pytest.mark.parametrize("value", ODD_VALUES)
def test_an_odd_value_comes_back_as_the_certificate_holds_it(value: str) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, value, _type=_ASN1Type.UTF8String)
            if value
            else x509.NameAttribute(NameOID.ORGANIZATION_NAME, "placeholder"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, value or "x"),
            x509.NameAttribute(NameOID.COMMON_NAME, "web.example.com"),
        ]
    )
    subject, _ = parsed_subject(name)

    assert subject_attributes(subject, "OU") == [value or "x"]
    assert subject_attribute(subject, "organizationalUnitName") == (value or "x")
    assert subject_attribute(subject, "CN") == "web.example.com"
    assert subject_attribute(subject, "c") == "FR"


def test_an_empty_value_is_kept_in_the_list_and_skipped_by_the_first_value() -> None:
    # cryptography refuses to build an empty value; a subject written elsewhere has them.
    assert subject_attributes("CN=web,OU=,OU=second", "OU") == ["", "second"]
    assert subject_attribute("CN=web,OU=,OU=second", "OU") == "second"
    assert subject_attribute("CN=web,OU=", "OU", default="none") == "none"


def test_every_named_attribute_is_found_by_name_alias_and_oid() -> None:
    rdns = [
        x509.RelativeDistinguishedName(
            [x509.NameAttribute(x509.ObjectIdentifier(oid), f"value of {name}")]
        )
        for name, (oid, _) in SUBJECT_ATTRIBUTE_NAMES.items()
        if name not in ("C", "jurisdictionC", "x500UniqueIdentifier")
    ]
    subject, _ = parsed_subject(x509.Name(rdns))

    for name, (oid, aliases) in SUBJECT_ATTRIBUTE_NAMES.items():
        if name in ("C", "jurisdictionC", "x500UniqueIdentifier"):
            continue
        expected = [f"value of {name}"]
        for spelling in (name, name.upper(), name.lower(), oid, f"OID.{oid}", *aliases):
            assert subject_attributes(subject, spelling) == expected, (subject, spelling)


def test_email_address_is_written_as_its_dotted_oid_and_read_by_name() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "pki+certs@example.com"),
            x509.NameAttribute(NameOID.COMMON_NAME, "web.example.com"),
        ]
    )
    subject, _ = parsed_subject(name)

    assert subject == r"CN=web.example.com,1.2.840.113549.1.9.1=pki\+certs@example.com,O=Example"
    for spelling in ("emailAddress", "EMAILADDRESS", "E", "email", "1.2.840.113549.1.9.1"):
        assert subject_attribute(subject, spelling) == "pki+certs@example.com"
    assert subject_rdns(subject) == [
        [("CN", "web.example.com")],
        [("emailAddress", "pki+certs@example.com")],
        [("O", "Example")],
    ]


def test_rdns_are_in_written_order_and_multi_valued_ones_stay_together() -> None:
    name = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "com")]),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example")]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IT")]
            ),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Pay+ments"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "web"),
                    x509.NameAttribute(NameOID.USER_ID, "u42"),
                ]
            ),
        ]
    )
    subject, _ = parsed_subject(name)

    rdns = subject_rdns(subject)
    assert [sorted(rdn) for rdn in rdns] == [
        [("CN", "web"), ("OU", "Pay+ments"), ("UID", "u42")],
        [("OU", "IT")],
        [("DC", "example")],
        [("DC", "com")],
    ]
    assert subject_attributes(subject, "OU") == [
        value for rdn in rdns for kind, value in rdn if kind == "OU"
    ]
    assert subject_attributes(subject, "DC") == ["example", "com"]


def test_with_several_common_names_the_inventorys_is_the_last_one_written() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "first in the certificate"),
            x509.NameAttribute(NameOID.COMMON_NAME, "second in the certificate"),
        ]
    )
    ca = issue("Two CNs Root", ca=True)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.certificate.subject)
        .public_key(ca.key.public_key())
        .serial_number(5)
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2035, 1, 1, tzinfo=dt.UTC))
        .sign(ca.key, hashes.SHA256())
    )
    parsed = certificate_parse(certificate.public_bytes(serialization.Encoding.DER))

    assert subject_attributes(parsed.subject, "CN") == [
        "second in the certificate",
        "first in the certificate",
    ]
    assert parsed.common_name == "first in the certificate"


@pytest.mark.parametrize(
    "string_type",
    [
        _ASN1Type.UTF8String,
        _ASN1Type.BMPString,
        _ASN1Type.UniversalString,
        _ASN1Type.PrintableString,
        _ASN1Type.T61String,
        _ASN1Type.IA5String,
    ],
)
def test_every_string_type_reads_as_its_text(string_type: _ASN1Type) -> None:
    value = "Plain Name" if string_type in (_ASN1Type.PrintableString,) else "Zoë & Co"
    if string_type == _ASN1Type.IA5String:
        value = "ascii@example.com"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value, _type=string_type)])
    subject, _ = parsed_subject(name)

    assert subject_attribute(subject, "CN") == value


def test_a_value_that_is_not_text_is_shown_as_hex_and_not_returned_as_text() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(
                NameOID.X500_UNIQUE_IDENTIFIER, b"\x00\x01\xff", _type=_ASN1Type.BitString
            ),
            x509.NameAttribute(NameOID.COMMON_NAME, "web"),
        ]
    )
    subject, _ = parsed_subject(name)

    assert subject == "CN=web,2.5.4.45=#0001ff"
    assert subject_rdns(subject) == [[("CN", "web")], [("x500UniqueIdentifier", "#0001ff")]]
    assert subject_attributes(subject, "x500UniqueIdentifier") == []
    assert subject_attribute(subject, "2.5.4.45", default="?") == "?"


def test_a_name_the_platform_read_from_the_der_keeps_its_undecodable_bytes() -> None:
    der = (VECTORS / "custom" / "invalid_utf8_common_name.pem").read_text()
    parsed = certificate_parse(pem_blocks_to_der(der)[0])

    assert parsed.subject == "CN=We heart UTF8!\\xe2\\x84"
    assert subject_attribute(parsed.subject, "CN") == parsed.common_name


def test_hex_values_holding_a_der_string_are_decoded() -> None:
    assert subject_attribute("CN=#0c03616263", "CN") == "abc"
    assert subject_attribute("CN=#1e0400e90041", "CN") == "éA"
    assert subject_attributes("CN=#0403616263", "CN") == []  # an OCTET STRING: not text
    assert der_string("0c03616263") == "abc"
    assert der_string("zz") is None
    assert attribute_value(r"\C3\A9t\C3\A9") == "été"
    assert attribute_value("#0403616263") is None
    assert attribute_value(r"trail\ ") == "trail "


def test_a_subject_that_is_no_name_gives_nothing_and_never_raises() -> None:
    for subject in ("", "garbage without equals", ",,,", "=novalue", "CN", "\\", "CN=a\\"):
        subject_rdns(subject)
        assert subject_attributes(subject, "OU") == []
    assert subject_attribute("CN=a\\", "CN") == "a\\"


def test_an_unknown_attribute_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not a subject attribute name"):
        subject_attribute("CN=web", "Department")
    assert subject_attribute("CN=web,1.2.3.4=custom", "1.2.3.4") == "custom"


def test_the_helpers_read_real_world_subjects_as_cryptography_does() -> None:
    """Every certificate of cryptography_vectors: the stored subject, read by the helpers,
    is cryptography's reading of the DER, attribute by attribute."""
    compared = 0
    for path, der in _vectors():
        expected = _cryptography_rdns(der)
        if expected is None:
            continue  # cryptography refuses it: the DER reader's forms are tested above
        try:
            parsed = certificate_parse(der)
        except CertificateParseError:
            continue
        if "\x00" in str(expected):
            continue  # stored with the NUL escaped (\00 in the subject): compared above
        assert subject_rdns(parsed.subject) == expected, path
        compared += 1
    assert compared >= 300


def _cryptography_rdns(der: bytes) -> list[list[tuple[str, str]]] | None:
    """cryptography's reading of the subject, in written order; None where it refuses."""
    try:
        name = x509.load_der_x509_certificate(der).subject
        return [
            [
                (
                    _usual_name(attribute.oid.dotted_string),
                    value if isinstance(value := attribute.value, str) else "#" + value.hex(),
                )
                for attribute in rdn
            ]
            for rdn in reversed(name.rdns)
        ]
    except Exception:
        return None


def _usual_name(dotted: str) -> str:
    for name, (oid, _) in SUBJECT_ATTRIBUTE_NAMES.items():
        if oid == dotted:
            return name
    return dotted


def _vectors() -> Iterator[tuple[Path, bytes]]:
    for path in sorted(VECTORS.rglob("*")):
        if path.suffix == ".pem":
            data = path.read_bytes()
            if b"-----BEGIN CERTIFICATE-----" in data:
                try:
                    for der in pem_blocks_to_der(data.decode("latin-1")):
                        yield path, der
                except CertificateParseError:
                    continue
        elif path.suffix in (".der", ".crt"):
            yield path, path.read_bytes()


# --- SANs ---------------------------------------------------------------------------------------


def test_each_san_type_is_found_as_the_inventory_writes_it() -> None:
    sans = [
        x509.DNSName("www.example.com"),
        x509.DNSName("xn--bcher-kva.example"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.10")),
        x509.IPAddress(ipaddress.ip_address("2001:DB8:0:0:0:0:0:1")),
        x509.RFC822Name("pki@example.com"),
        x509.UniformResourceIdentifier("https://example.com/a?b=c"),
        x509.DirectoryName(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
                    x509.NameAttribute(NameOID.EMAIL_ADDRESS, "dir@example.com"),
                ]
            )
        ),
        x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
        x509.OtherName(UPN, b"\x0c\x11user@corp.example"),
        x509.OtherName(x509.ObjectIdentifier("1.2.3.5"), b"\x04\x02\xab\xcd"),
    ]
    _, stored = parsed_subject(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]), sans)

    assert stored == [
        "DNS:www.example.com",
        "DNS:xn--bcher-kva.example",
        "IP:192.0.2.10",
        "IP:2001:db8::1",
        "email:pki@example.com",
        "URI:https://example.com/a?b=c",
        r"DirName:1.2.840.113549.1.9.1=dir@example.com,O=Example\, Inc.",
        "RID:1.2.3.4",
        "othername:1.3.6.1.4.1.311.20.2.3:user@corp.example",
        "othername:1.2.3.5:0402abcd",
    ]
    assert sans_of(stored, "DNS") == ["www.example.com", "xn--bcher-kva.example"]
    assert sans_of(stored, "dns") == sans_of(stored, "dNSName")
    assert sans_of(stored, "IP") == ["192.0.2.10", "2001:db8::1"]
    assert sans_of(stored, "iPAddress") == ["192.0.2.10", "2001:db8::1"]
    assert sans_of(stored, "email") == sans_of(stored, "rfc822Name") == ["pki@example.com"]
    assert sans_of(stored, "uri") == ["https://example.com/a?b=c"]
    (directory,) = sans_of(stored, "directoryName")
    assert subject_attribute(directory, "O") == "Example, Inc."
    assert subject_attribute(directory, "emailAddress") == "dir@example.com"
    assert sans_of(stored, "RID") == ["1.2.3.4"]
    assert sans_of(stored, "otherName") == [
        "1.3.6.1.4.1.311.20.2.3:user@corp.example",
        "1.2.3.5:0402abcd",
    ]
    assert {san.partition(":")[0] for san in stored} <= set(SAN_TYPES)


def test_names_cryptography_does_not_support_are_written_by_the_der_reader() -> None:
    x400 = certificate_parse((VECTORS / "san_x400address.der").read_bytes())
    edi = certificate_parse((VECTORS / "san_edipartyname.der").read_bytes())

    assert sans_of(x400.sans, "X400Address") == ["a303130161"]
    assert sans_of(edi.sans, "ediPartyName") == ["a50c810a13086564695061727479"]


def test_the_enrollment_policy_writes_the_same_forms() -> None:
    csr = build_csr(
        "web.example.com",
        "www.example.com",
        ips=["2001:DB8::10", "192.0.2.1"],
        subject_extra=[x509.NameAttribute(NameOID.EMAIL_ADDRESS, "owner@example.com")],
    )
    csr_text = csr.public_bytes(serialization.Encoding.PEM).decode()
    subject, sans = policy.csr_names_as_requested(policy.csr_parse(csr_text))

    assert subject_attribute(subject, "CN") == "web.example.com"
    assert subject_attribute(subject, "emailAddress") == "owner@example.com"
    assert sans == ["DNS:www.example.com", "IP:2001:db8::10", "IP:192.0.2.1"]
    assert sans_of(sans, "IP") == ["2001:db8::10", "192.0.2.1"]


def test_an_unknown_san_type_is_refused_and_odd_entries_are_skipped() -> None:
    with pytest.raises(ValueError, match="not a SAN type"):
        sans_of(["DNS:a"], "DSN")
    assert sans_of(["no colon", "DNS:", "dns:lower.example", "IP:10.0.0.1"], "DNS") == [
        "",
        "lower.example",
    ]
    assert sans_of("DNS:one.example", "DNS") == ["one.example"]


# --- key=value lines ------------------------------------------------------------------------


def test_key_values_reads_a_text_or_its_lines() -> None:
    text = "# who owns what\n\nteam = payments\nurl=https://x.example/?a=b\nempty=\n"
    assert key_values(text) == {
        "team": "payments",
        "url": "https://x.example/?a=b",
        "empty": "",
    }
    assert key_values(text.splitlines()) == key_values(text)
    assert key_values(["a: b", "c:d:e"], separator=":") == {"a": "b", "c": "d:e"}
    assert key_values("") == {}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("a=1\n\n# note\nno equals", "line 4: 'no equals' has no '='"),
        (["a=1", "=2"], "line 2: the key before '=' is empty"),
        ("a=1\nb=2\na=3", "line 3: the key 'a' is given twice (first on line 1)"),
    ],
)
def test_key_values_names_the_wrong_line(lines: str | list[str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        key_values(lines)
    assert message in str(caught.value)


def test_key_values_agrees_with_the_mapping_parameter() -> None:
    parameters = pytest.importorskip("handlers.parameters")
    mapping_parse = getattr(parameters, "mapping_parse", None)
    if mapping_parse is None:
        pytest.skip("no mapping parameter type yet")
    for text in (
        "a=1\n# c\n\nb = 2=3\n",
        "x=\n",
        "a=1\nbad",
        "a=1\na=2",
        " = v",
        "x" * 80,
        "\r\n".join(["k=v", "  #  indented comment", "z = 1 "]),
    ):
        try:
            expected: object = mapping_parse(text)
        except ValueError as exc:
            expected = str(exc)
        try:
            found: object = key_values(text)
        except ValueError as exc:
            found = str(exc)
        assert found == expected, text


def test_the_enrollment_rules_read_an_older_events_common_name_with_the_helpers() -> None:
    from handlers.builtin.enrollment import _common_name

    assert _common_name({"subject": "CN=web.example.com,O=Example\\, Inc."}) == "web.example.com"
    # As the platform's common_name: the certificate's first CN, written last.
    assert _common_name({"subject": "CN=second,CN=first"}) == "first"
    assert _common_name({"subject": "O=Example"}) == ""
    assert _common_name({"subject": "garbage"}) == "\x00unreadable"
    assert _common_name({"subject": "", "sans": []}) == ""
    assert _common_name({"common_name": "given", "subject": "CN=other"}) == "given"
