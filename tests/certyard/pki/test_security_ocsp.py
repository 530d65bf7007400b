"""Issue 14, finding 5: the OCSP responder by RFC 6960 and RFC 8954, with bounded CPU.

Every request is sent over HTTP to the real responder (Django's test client, or the live
server for the ``openssl ocsp -url`` client); requests the ``cryptography`` builder cannot
write (several CertIDs, negative or huge serials, long nonces) are written as DER by hand
or by ``openssl ocsp -reqout``; signed answers are verified with ``openssl ocsp -respin``.
Signatures are counted by wrapping cryptography's signing methods: the real signing still
runs, the wrapper only counts.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from django.test import Client

from certyard.pki import crypto, services
from certyard.pki.models import CertificateAuthority, KeyAlgorithm
from tests.certs import private_key

pytestmark = pytest.mark.django_db

Status = ocsp.OCSPResponseStatus
CertStatus = ocsp.OCSPCertStatus

# --- Writing OCSP requests by hand (RFC 6960 section 4.1.1, DER) -----------------------------


def _tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + content


def _integer(value: int) -> bytes:
    """A DER INTEGER, two's complement, minimal: negative and huge values too."""
    size = max(1, (value + (value < 0)).bit_length() // 8 + 1)
    return _tlv(0x02, value.to_bytes(size, "big", signed=True))


def _sequence(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


_HASH_OIDS = {"sha1": "06052b0e03021a", "sha256": "0609608648016503040201"}
_NONCE_OID = bytes.fromhex("06092b0601050507300102")  # id-pkix-ocsp-nonce


def _request(
    cert_ids: list[tuple[bytes, bytes, int]],
    *,
    algorithm: str = "sha1",
    nonce: bytes | None = None,
    extensions: tuple[bytes, ...] = (),
) -> bytes:
    """An OCSPRequest naming each (issuerNameHash, issuerKeyHash, serial), unsigned."""
    algorithm_id = _sequence(bytes.fromhex(_HASH_OIDS[algorithm]), b"\x05\x00")
    requests = [
        _sequence(_sequence(algorithm_id, _tlv(0x04, name), _tlv(0x04, key), _integer(serial)))
        for name, key, serial in cert_ids
    ]
    tbs = [_sequence(*requests)]
    if nonce is not None:
        # RFC 8954: extnValue is the DER of an OCTET STRING holding the nonce.
        extensions = (_sequence(_NONCE_OID, _tlv(0x04, _tlv(0x04, nonce))), *extensions)
    if extensions:
        tbs.append(_tlv(0xA2, _sequence(*extensions)))
    return _sequence(_sequence(*tbs))


# --- The CA, its hashes, the responder ------------------------------------------------------


@pytest.fixture
def ca() -> CertificateAuthority:
    return services.ca_create(name="OCSP Issuing", key_algorithm=KeyAlgorithm.EC_P256)


def _ca_certificate(ca: CertificateAuthority) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.certificate_pem.encode())


def _leaf(ca: CertificateAuthority, cn: str = "www.example.test") -> services.Issued:
    key = private_key()
    profile = crypto.Profile(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
        validity=dt.timedelta(days=30),
        sans=(x509.DNSName(cn),),
    )
    return services.certificate_issue(ca=ca, public_key=key.public_key(), profile=profile)


def _hashes(ca: CertificateAuthority, algorithm: str = "sha1") -> tuple[bytes, bytes]:
    """The CA's issuerNameHash and issuerKeyHash, as cryptography's request builder
    computes them (independently of the responder's code)."""
    issuer = _ca_certificate(ca)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(
            _leaf(ca, "hashes.example.test").certificate,
            issuer,
            hashes.SHA1() if algorithm == "sha1" else hashes.SHA256(),  # noqa: S303
        )
        .build()
    )
    return request.issuer_name_hash, request.issuer_key_hash


def _post(ca: CertificateAuthority, body: bytes, **extra: Any) -> Any:
    return Client().post(
        f"/pki/{ca.pk}/ocsp", data=body, content_type="application/ocsp-request", **extra
    )


def _answer(response: Any) -> ocsp.OCSPResponse:
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.content)


@pytest.fixture
def signatures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every signature made while the test runs: OCSP answers and certificates (the old
    responder signed a stand-in certificate for each answer)."""
    made: list[str] = []
    for kind, cls in (("ocsp", ocsp.OCSPResponseBuilder), ("certificate", x509.CertificateBuilder)):
        real = cls.sign

        def counted(self: Any, *args: Any, _real: Any = real, _kind: str = kind, **kw: Any) -> Any:
            made.append(_kind)
            return _real(self, *args, **kw)

        monkeypatch.setattr(cls, "sign", counted)
    yield made


def _openssl_verifies(
    ca: CertificateAuthority, answer: bytes, serial: int, tmp_path: Path, digest: str = "sha1"
) -> str:
    """``openssl ocsp -respin``: the answer's signature checked against the CA, and the
    status openssl reads for ``serial``."""
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    (tmp_path / "resp.der").write_bytes(answer)
    result = subprocess.run(
        [
            *("openssl", "ocsp", "-respin", "resp.der", "-CAfile", "ca.pem", "-issuer", "ca.pem"),
            *(f"-{digest}", "-serial", hex(serial), "-no_nonce"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "Response verify OK" in result.stdout + result.stderr, result.stdout + result.stderr
    return result.stdout


# --- Several certificate IDs -----------------------------------------------------------------


def test_several_cert_ids_are_answered_malformed_request_not_500(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    name_hash, key_hash = _hashes(ca)
    by_hand = _request([(name_hash, key_hash, 1), (name_hash, key_hash, 2)])
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    subprocess.run(
        [
            *("openssl", "ocsp", "-issuer", "ca.pem", "-serial", "1", "-serial", "2"),
            *("-serial", "3", "-reqout", "req.der", "-no_nonce"),
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=30,
    )
    by_openssl = (tmp_path / "req.der").read_bytes()
    for body in (by_hand, by_openssl):
        assert _answer(_post(ca, body)).response_status == Status.MALFORMED_REQUEST
        encoded = base64.b64encode(body).decode()
        answer = _answer(Client().get(f"/pki/{ca.pk}/ocsp/{encoded}"))
        assert answer.response_status == Status.MALFORMED_REQUEST


def test_openssl_client_with_several_serials_reads_malformed_request(
    ca: CertificateAuthority, tmp_path: Path, live_server: Any
) -> None:
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    result = subprocess.run(
        [
            *("openssl", "ocsp", "-issuer", "ca.pem", "-serial", "1", "-serial", "2"),
            *("-url", f"{live_server.url}/pki/{ca.pk}/ocsp", "-CAfile", "ca.pem"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "malformedrequest" in (result.stdout + result.stderr).lower(), result


# --- Serials ---------------------------------------------------------------------------------


@pytest.mark.parametrize("serial", [0, 2**159, 2**200])
def test_serials_outside_rfc_5280_are_unknown_with_their_own_serial(
    ca: CertificateAuthority, serial: int, tmp_path: Path, signatures: list[str]
) -> None:
    name_hash, key_hash = _hashes(ca)
    signatures.clear()
    response = _post(ca, _request([(name_hash, key_hash, serial)]))
    answer = _answer(response)
    assert answer.response_status == Status.SUCCESSFUL
    assert answer.certificate_status == CertStatus.UNKNOWN
    assert answer.serial_number == serial  # never another serial (old: a random one)
    assert (answer.issuer_name_hash, answer.issuer_key_hash) == (name_hash, key_hash)
    assert signatures == ["ocsp"]  # one signature, no stand-in certificate
    assert f"{hex(serial)}: unknown" in _openssl_verifies(ca, response.content, serial, tmp_path)


def test_negative_serial_is_malformed_request_not_500(ca: CertificateAuthority) -> None:
    name_hash, key_hash = _hashes(ca)
    for serial in (-1, -(2**64)):
        answer = _answer(_post(ca, _request([(name_hash, key_hash, serial)])))
        assert answer.response_status == Status.MALFORMED_REQUEST


def test_random_serial_is_unknown_and_carries_that_serial(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    name_hash, key_hash = _hashes(ca, "sha256")
    serial = x509.random_serial_number()
    response = _post(ca, _request([(name_hash, key_hash, serial)], algorithm="sha256"))
    answer = _answer(response)
    assert answer.certificate_status == CertStatus.UNKNOWN
    assert answer.serial_number == serial
    assert isinstance(answer.hash_algorithm, hashes.SHA256)
    text = _openssl_verifies(ca, response.content, serial, tmp_path, digest="sha256")
    assert f"{hex(serial)}: unknown" in text


# --- Nonces (RFC 8954) -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [33, 15_000])
def test_nonce_over_32_bytes_is_refused_not_echoed(
    ca: CertificateAuthority, size: int, signatures: list[str]
) -> None:
    issued = _leaf(ca)
    name_hash, key_hash = _hashes(ca)
    signatures.clear()
    body = _request([(name_hash, key_hash, issued.certificate.serial_number)], nonce=b"\x41" * size)
    response = _post(ca, body)
    assert _answer(response).response_status == Status.MALFORMED_REQUEST
    assert len(response.content) < 100  # nothing of the nonce in it
    assert signatures == []


@pytest.mark.parametrize("size", [1, 32])
def test_nonce_of_1_to_32_bytes_is_echoed(
    ca: CertificateAuthority, size: int, tmp_path: Path
) -> None:
    issued = _leaf(ca)
    serial = issued.certificate.serial_number
    name_hash, key_hash = _hashes(ca)
    nonce = secrets.token_bytes(size)
    response = _post(ca, _request([(name_hash, key_hash, serial)], nonce=nonce))
    answer = _answer(response)
    assert answer.certificate_status == CertStatus.GOOD
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert f"{hex(serial)}: good" in _openssl_verifies(ca, response.content, serial, tmp_path)


# --- Garbage ---------------------------------------------------------------------------------


def test_garbage_of_every_kind_is_malformed_request_or_4xx_never_500(
    ca: CertificateAuthority, signatures: list[str]
) -> None:
    client = Client()
    url = f"/pki/{ca.pk}/ocsp"
    bodies = [b"", b"\x30", b"\x30\x80\x00\x00", b"\xff" * 300, b"not ocsp" * 100]
    for body in bodies:
        assert _answer(_post(ca, body)).response_status == Status.MALFORMED_REQUEST
    for content_type in ("text/plain", "application/json", "multipart/form-data; boundary=x"):
        response = client.post(url, data=b"--x\r\ngarbage", content_type=content_type)
        assert _answer(response).response_status == Status.MALFORMED_REQUEST
    # A Content-Length that is no number, and one that lies.
    for length in ("abc", "-5", "99999999999999999999"):
        response = client.generic("POST", url, b"\x30\x03\x02\x01\x01", CONTENT_LENGTH=length)
        assert response.status_code in (200, 400, 413), (length, response.status_code)
        answer = ocsp.load_der_ocsp_response(response.content)
        assert answer.response_status == Status.MALFORMED_REQUEST
    huge = _post(ca, b"\x30" + b"\x00" * 20_000)
    assert huge.status_code == 413
    assert ocsp.load_der_ocsp_response(huge.content).response_status == Status.MALFORMED_REQUEST
    for path in ("not*base64!", "%FF%FE", "A", "====", "MA" * 20_000, "é"):
        response = client.get(f"{url}/{path}")
        assert response.status_code in (200, 413), (path, response.status_code)
        answer = ocsp.load_der_ocsp_response(response.content)
        assert answer.response_status == Status.MALFORMED_REQUEST, path
    assert signatures == []


def test_unknown_critical_extension_is_refused_and_non_critical_one_ignored(
    ca: CertificateAuthority,
) -> None:
    issued = _leaf(ca)
    name_hash, key_hash = _hashes(ca)
    cert_id = [(name_hash, key_hash, issued.certificate.serial_number)]
    oid, value = bytes.fromhex("06032a0304"), _tlv(0x04, b"\x05\x00")  # 1.2.3.4, NULL
    critical = _sequence(oid, b"\x01\x01\xff", value)
    answer = _answer(_post(ca, _request(cert_id, extensions=(critical,))))
    assert answer.response_status == Status.MALFORMED_REQUEST
    answer = _answer(_post(ca, _request(cert_id, extensions=(_sequence(oid, value),))))
    assert answer.certificate_status == CertStatus.GOOD


def test_another_issuer_is_refused_unsigned(
    ca: CertificateAuthority, signatures: list[str]
) -> None:
    name_hash, key_hash = _hashes(ca)
    signatures.clear()
    for body in (
        _request([(b"\x00" * 20, key_hash, 5)]),
        _request([(name_hash, b"\x00" * 20, 5)]),
        _request([(name_hash[:10], key_hash, 5)]),
    ):
        assert _answer(_post(ca, body)).response_status == Status.UNAUTHORIZED
    assert signatures == []


# --- Caching ---------------------------------------------------------------------------------


def test_cached_answer_is_served_again_not_signed_again(
    ca: CertificateAuthority, signatures: list[str]
) -> None:
    issued = _leaf(ca)
    serial = issued.certificate.serial_number
    name_hash, key_hash = _hashes(ca)
    body = _request([(name_hash, key_hash, serial)])
    signatures.clear()
    first = _post(ca, body)
    assert signatures == ["ocsp"]  # once (old: a stand-in certificate too, or again later)
    second = _post(ca, body, REMOTE_ADDR="192.0.2.7")
    third = Client().get(f"/pki/{ca.pk}/ocsp/{base64.b64encode(body).decode()}")
    assert signatures == ["ocsp"]
    assert first.content == second.content == third.content
    answers = [_answer(r) for r in (first, second, third)]
    assert {a.produced_at_utc for a in answers} == {answers[0].produced_at_utc}
    assert answers[0].certificate_status == CertStatus.GOOD
    assert answers[0].next_update_utc > dt.datetime.now(dt.UTC)
    # Another hash algorithm is another CertID: answered (and cached) on its own.
    name256, key256 = _hashes(ca, "sha256")
    sha256_answer = _answer(_post(ca, _request([(name256, key256, serial)], algorithm="sha256")))
    assert isinstance(sha256_answer.hash_algorithm, hashes.SHA256)
    assert sha256_answer.serial_number == serial


def test_flood_for_one_unknown_serial_signs_at_most_the_rate(
    ca: CertificateAuthority, settings: Any, signatures: list[str]
) -> None:
    settings.CERTYARD_OCSP_RATE = 5
    name_hash, key_hash = _hashes(ca)
    body = _request([(name_hash, key_hash, x509.random_serial_number())])
    signatures.clear()
    statuses = Counter(_answer(_post(ca, body)).response_status for _ in range(30))
    assert statuses == {Status.SUCCESSFUL: 5, Status.TRY_LATER: 25}
    assert signatures == ["ocsp"] * 5  # one per answer, none for tryLater


def test_revocation_invalidates_the_cached_answer(ca: CertificateAuthority) -> None:
    issued = _leaf(ca)
    serial = issued.certificate.serial_number
    name_hash, key_hash = _hashes(ca)
    body = _request([(name_hash, key_hash, serial)])
    before = _post(ca, body)
    assert _answer(before).certificate_status == CertStatus.GOOD
    assert _post(ca, body).content == before.content  # cached
    services.certificate_revoke(issued=issued.record, reason=1)
    after = _answer(_post(ca, body))
    assert after.certificate_status == CertStatus.REVOKED
    assert after.revocation_reason == x509.ReasonFlags.key_compromise
    assert after.serial_number == serial


# --- The rate limit --------------------------------------------------------------------------


def test_rate_limit_answers_try_later_without_signing(
    ca: CertificateAuthority, settings: Any, signatures: list[str]
) -> None:
    settings.CERTYARD_OCSP_RATE = 3
    issued = _leaf(ca)
    known = issued.certificate.serial_number
    name_hash, key_hash = _hashes(ca)
    signatures.clear()
    statuses = [
        _answer(_post(ca, _request([(name_hash, key_hash, s)]))).response_status
        for s in [known] + [x509.random_serial_number() for _ in range(4)]
    ]
    assert statuses == [Status.SUCCESSFUL] * 3 + [Status.TRY_LATER] * 2
    assert signatures == ["ocsp"] * 3
    # What is cached is still served to the limited address; with a nonce it comes
    # without the nonce (RFC 5019), since a fresh one would need a new signature.
    cached = _answer(_post(ca, _request([(name_hash, key_hash, known)])))
    assert cached.certificate_status == CertStatus.GOOD
    with_nonce = _answer(_post(ca, _request([(name_hash, key_hash, known)], nonce=b"n" * 16)))
    assert with_nonce.certificate_status == CertStatus.GOOD
    with pytest.raises(x509.ExtensionNotFound):
        with_nonce.extensions.get_extension_for_class(x509.OCSPNonce)
    fresh_nonce = _request([(name_hash, key_hash, 12345)], nonce=b"n" * 16)
    assert _answer(_post(ca, fresh_nonce)).response_status == Status.TRY_LATER
    assert signatures == ["ocsp"] * 3
    # Another address has its own allowance.
    other = _answer(_post(ca, fresh_nonce, REMOTE_ADDR="198.51.100.9"))
    assert other.response_status == Status.SUCCESSFUL
    assert other.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 16
