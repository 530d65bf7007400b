"""Property tests: whatever the bytes, the parser answers or refuses in words; it never crashes.

Real certificates (cryptography's vectors and our factory's) are mutated: truncated,
bit-flipped, bytes inserted or deleted, extensions duplicated or invented, string
types swapped, public key algorithms replaced by random OIDs. Hypothesis runs
derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import cryptography_vectors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certyard.x509 import (
    CertificateParseError,
    ParsedCertificate,
    certificate_details,
    certificate_parse,
    pem_blocks_to_der,
    pem_to_der,
)
from certyard.x509 import der as derlib
from certyard.x509 import oids as oid_tables
from certyard.x509 import parse as parsing
from tests.certs import issue

VECTORS = Path(cryptography_vectors.__file__).parent / "x509"
SEED_VECTORS = (
    "cryptography.io.pem",
    "letsencryptx3.pem",
    "utf8-dnsname.pem",
    "e-trust.ru.der",
    "san_x400address.der",
    "custom/all_supported_names.pem",
    "custom/two_basic_constraints.pem",
    "custom/invalid_version.pem",
    "custom/san_email_dns_ip_dirname_uri.pem",
    "custom/cp_user_notice_with_notice_reference.pem",
    "ed25519/server-ed25519-cert.pem",
    "PKITS_data/certs/GoodCACert.crt",
)
STRING_TAGS = (0x0C, 0x12, 0x13, 0x14, 0x16, 0x1A, 0x1C, 0x1E)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning"),
]


@cache
def seeds() -> tuple[bytes, ...]:
    """Well-formed certificates to mutate: vectors and certificates from tests/certs.py."""
    found = []
    for relative in SEED_VECTORS:
        data = (VECTORS / relative).read_bytes()
        found.append(pem_to_der(data.decode("latin-1")) if relative.endswith(".pem") else data)
    ca = issue("Fuzz Root", ca=True)
    found += [
        ca.der,
        issue("fuzz.example.test", issuer=ca, sans=("fuzz.example.test", "*.fuzz.test")).der,
        issue("rsa.fuzz.test", issuer=ca, rsa_bits=2048).der,
    ]
    return tuple(found)


def seed() -> st.SearchStrategy[bytes]:
    return st.integers(0, len(seeds()) - 1).map(lambda index: seeds()[index])


# --- DER building, to make structural mutations --------------------------------------------------


def encode(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def encode_oid(arcs: list[int]) -> bytes:
    body = bytearray()
    for number in arcs:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        body += bytes(reversed(chunk))
    return encode(0x06, bytes(body))


def rebuild(
    der: bytes,
    *,
    extensions: Callable[[list[bytes]], list[bytes]] | None = None,
    public_key_info: Callable[[derlib.Element], bytes] | None = None,
) -> bytes:
    """``der`` with its extension items or its SPKI replaced, every length recomputed."""
    outer = derlib.read_element(der)
    body, algorithm, signature = outer.children()[:3]
    fields = body.children()
    start = 1 if fields[0].is_context(0) else 0
    pieces = [field.encoded for field in fields]
    if public_key_info is not None:
        pieces[start + 5] = public_key_info(fields[start + 5])
    if extensions is not None:
        where = next((i for i, field in enumerate(fields) if field.is_context(3)), None)
        items = [] if where is None else [e.encoded for e in fields[where].only_child().children()]
        block = encode(0xA3, encode(0x30, b"".join(extensions(items))))
        if where is None:
            pieces.append(block)
        else:
            pieces[where] = block
    return encode(0x30, encode(0x30, b"".join(pieces)) + algorithm.encoded + signature.encoded)


# --- The property -------------------------------------------------------------------------------


def storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def answers_or_refuses_in_words(data: bytes) -> ParsedCertificate | None:
    """The property: a storable result, or a CertificateParseError; nothing else, ever."""
    try:
        parsed = certificate_parse(data)
    except CertificateParseError as exc:
        assert "ParseError" not in str(exc) and "asn1" not in str(exc).lower()
        assert "internal error" not in str(exc)  # a bug of ours, not a refusal
        with pytest.raises(CertificateParseError):
            certificate_details(data)
        return None
    texts = [
        parsed.serial_number,
        parsed.issuer,
        parsed.subject,
        parsed.common_name,
        parsed.key_algorithm,
        parsed.signature_algorithm,
        *parsed.sans,
        *parsed.parse_warnings,
    ]
    assert all(storable(text) for text in texts), texts
    assert parsed.not_before is None or parsed.not_before.tzinfo is not None
    details = certificate_details(data)  # must not raise for what certificate_parse accepts
    shown = [
        details.subject,
        details.issuer,
        *(name for names in details.sans.values() for name in names),
        *details.policies,
        *details.authority_information_access,
        *details.crl_distribution_points,
        *details.other_extensions,
        *details.warnings,
    ]
    assert all(storable(text) for text in shown), shown
    return parsed


@FUZZ
@given(seed(), st.floats(0, 1))
def test_a_truncated_certificate_is_refused_or_read(der: bytes, fraction: float) -> None:
    answers_or_refuses_in_words(der[: int(len(der) * fraction)])


@FUZZ
@given(seed(), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=8))
def test_flipped_bits_never_crash_the_parser(der: bytes, flips: list[tuple[float, int]]) -> None:
    mutated = bytearray(der)
    for where, bit in flips:
        mutated[min(int(where * len(der)), len(der) - 1)] ^= 1 << bit
    answers_or_refuses_in_words(bytes(mutated))


@FUZZ
@given(
    seed(),
    st.lists(
        st.tuples(st.booleans(), st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=4
    ),
)
def test_inserted_and_deleted_bytes_never_crash_the_parser(
    der: bytes, edits: list[tuple[bool, float, int]]
) -> None:
    mutated = bytearray(der)
    for insert, where, value in edits:
        index = min(int(where * len(mutated)), len(mutated) - 1)
        if insert:
            mutated.insert(index, value)
        elif mutated:
            del mutated[index]
    answers_or_refuses_in_words(bytes(mutated))


@FUZZ
@given(seed(), st.data())
def test_swapped_string_types_never_crash_the_parser(der: bytes, data: st.DataObject) -> None:
    positions = [i for i, byte in enumerate(der) if byte in STRING_TAGS]
    mutated = bytearray(der)
    for index in data.draw(st.lists(st.sampled_from(positions), min_size=1, max_size=6)):
        mutated[index] = data.draw(st.sampled_from(STRING_TAGS))
    answers_or_refuses_in_words(bytes(mutated))


@FUZZ
@given(seed(), st.data())
def test_duplicated_extensions_are_kept_with_a_warning(der: bytes, data: st.DataObject) -> None:
    duplicated: list[bytes] = []

    def duplicate(items: list[bytes]) -> list[bytes]:
        if not items:
            return items
        index = data.draw(st.integers(0, len(items) - 1))
        duplicated.append(items[index])
        return [*items[: index + 1], items[index], *items[index + 1 :]]

    parsed = answers_or_refuses_in_words(rebuild(der, extensions=duplicate))

    assert parsed is not None
    if duplicated:
        assert any("appears" in message for message in parsed.parse_warnings)


oids = st.lists(st.integers(0, 2**40), min_size=1, max_size=12).map(
    lambda arcs: [min(arcs[0], 2) * 40 + (arcs[1] % 40 if len(arcs) > 1 else 0), *arcs[2:]]
)


@FUZZ
@given(seed(), oids, st.booleans(), st.binary(max_size=64))
def test_an_invented_extension_is_listed_by_its_oid(
    der: bytes, arcs: list[int], critical: bool, value: bytes
) -> None:
    invented = encode(
        0x30,
        encode_oid(arcs) + (b"\x01\x01\xff" if critical else b"") + encode(0x04, value),
    )
    mutated = rebuild(der, extensions=lambda items: [*items, invented])

    assert answers_or_refuses_in_words(mutated) is not None
    dotted = derlib.oid(derlib.read_element(encode_oid(arcs)))
    if (
        dotted
        not in {
            extension.oid
            for extension in parsing.raw_extensions(
                parsing.split_certificate(der), lambda message: None
            )
        }
        and oid_tables.oid_label(dotted) == dotted
    ):
        listed = certificate_details(mutated).other_extensions
        assert (f"{dotted} (critical)" if critical else dotted) in listed


@FUZZ
@given(seed(), oids, st.one_of(st.none(), st.binary(max_size=16)))
def test_a_random_public_key_algorithm_is_named_by_its_oid(
    der: bytes, arcs: list[int], parameters: bytes | None
) -> None:
    def replace(spki: derlib.Element) -> bytes:
        key = spki.children()[1].encoded
        extra = b"" if parameters is None else encode(0x04, parameters)
        return encode(0x30, encode(0x30, encode_oid(arcs) + extra) + key)

    parsed = answers_or_refuses_in_words(rebuild(der, public_key_info=replace))

    assert parsed is not None
    dotted = derlib.oid(derlib.read_element(encode_oid(arcs)))
    if dotted not in oid_tables.KEY_ALGORITHMS:
        assert (parsed.key_algorithm, parsed.key_size) == (dotted, None)
        assert f"public key algorithm {dotted} is not supported; key size unknown" in (
            parsed.parse_warnings
        )


@FUZZ
@given(st.text(max_size=300))
def test_pem_to_der_on_any_text_answers_or_refuses_in_words(text: str) -> None:
    for candidate in (
        text,
        f"-----BEGIN CERTIFICATE-----\n{text}\n-----END CERTIFICATE-----",
        f"junk-----BEGIN TRUSTED CERTIFICATE-----{text}-----END TRUSTED CERTIFICATE-----",
    ):
        try:
            der = pem_to_der(candidate)
        except CertificateParseError:
            continue
        assert isinstance(der, bytes) and der
        answers_or_refuses_in_words(der)
    with contextlib.suppress(CertificateParseError):
        pem_blocks_to_der(text)


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_are_read_or_refused_in_words(data: bytes) -> None:
    answers_or_refuses_in_words(data)
    answers_or_refuses_in_words(b"\x30" + data)


def nested_sequences(depth: int, inner: bytes = b"") -> bytes:
    for _ in range(depth):
        inner = encode(0x30, inner)
    return inner


def test_two_thousand_nested_sequences_do_not_recurse_forever() -> None:
    nested = nested_sequences(2000)
    started = time.perf_counter()

    with pytest.raises(CertificateParseError):
        certificate_parse(nested)
    with pytest.raises(CertificateParseError):
        certificate_details(nested)

    # Nested deep inside a real certificate too: as an extension, and as a subject name.
    der = seeds()[-2]
    deep_extension = encode(0x30, encode_oid([1, 2, 3]) + encode(0x04, nested))
    answers_or_refuses_in_words(rebuild(der, extensions=lambda items: [*items, deep_extension]))
    san = encode(
        0x30, encode_oid([2, 5, 29, 17]) + encode(0x04, encode(0x30, encode(0xA4, nested)))
    )
    answers_or_refuses_in_words(rebuild(der, extensions=lambda items: [san]))
    assert time.perf_counter() - started < 5
