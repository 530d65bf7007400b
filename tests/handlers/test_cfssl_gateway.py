"""The CFSSL gateway against a real ``cfssl serve`` (Debian's golang-cfssl) on the loopback."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from handlers.base import HandlerError
from handlers.builtin import cfssl as cfssl_module
from handlers.builtin.cfssl import CfsslGateway
from handlers.gateways import (
    CARecord,
    EnrollmentType,
    GatewayEnrollment,
    GatewayRevocation,
    RecordStatus,
    RevocationReason,
)
from handlers.parameters import ParameterError, parameters_check
from tests import certs
from tests.servers.cfssl import CfsslServer, cfssl_server

PrivateKey = certs.PrivateKey


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CfsslServer]:
    with cfssl_server(tmp_path_factory.mktemp("cfssl")) as running:
        yield running


def gateway(server: CfsslServer, **overrides: Any) -> CfsslGateway:
    raw: dict[str, Any] = {
        "url": server.url,
        "profiles": ["default", "client"],
        "certdb_path": str(server.certdb_path),
        "timeout_seconds": 10,
    }
    raw.update(overrides)
    raw = {name: value for name, value in raw.items() if value is not None}
    return CfsslGateway(parameters_check(CfsslGateway.parameters, raw))


def enrollment(
    common_name: str,
    sans: tuple[str, ...] = (),
    *,
    key: PrivateKey | None = None,
    product: str = "default",
    csr: str | None = None,
    **fields: Any,
) -> GatewayEnrollment:
    dns = tuple(san.removeprefix("DNS:") for san in sans if san.startswith("DNS:"))
    return GatewayEnrollment(
        request_id=f"req-{common_name}",
        type=fields.pop("type", EnrollmentType.NEW),
        product_id=product,
        csr_pem=csr or certs.csr(common_name, *dns, key=key),
        subject=f"CN={common_name}",
        sans=sans,
        **fields,
    )


def issue(server: CfsslServer, common_name: str, **overrides: Any) -> CARecord:
    return gateway(server, **overrides).enroll(enrollment(common_name, (f"DNS:{common_name}",)))


def certificate(record: CARecord) -> x509.Certificate:
    assert record.certificate_pem
    return x509.load_pem_x509_certificate(record.certificate_pem.encode())


def certdb_rows(server: CfsslServer) -> list[sqlite3.Row]:
    with contextlib.closing(sqlite3.connect(server.certdb_path)) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute("SELECT rowid, * FROM certificates ORDER BY rowid").fetchall()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def not_cfssl(status: int) -> Iterator[str]:
    """An HTTP server that answers every POST with an HTML page and ``status``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"<html><body>Not here</body></html>"
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- ping and products --------------------------------------------------------------------


def test_ping_succeeds_against_a_running_cfssl(server: CfsslServer) -> None:
    gateway(server).ping()


def test_ping_to_a_closed_port_is_temporary_and_names_the_url(server: CfsslServer) -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    with pytest.raises(HandlerError) as raised:
        gateway(server, url=url).ping()
    assert not raised.value.permanent
    assert url in raised.value.message


@pytest.mark.parametrize("status", [404, 200])
def test_ping_to_a_server_that_is_not_cfssl_is_permanent(status: int) -> None:
    with not_cfssl(status) as url:
        configured = CfsslGateway(parameters_check(CfsslGateway.parameters, {"url": url}))
        with pytest.raises(HandlerError) as raised:
            configured.ping()
    assert raised.value.permanent
    assert "not CFSSL" in raised.value.message
    assert str(status) in raised.value.message


def test_products_are_the_configured_profiles(server: CfsslServer) -> None:
    assert [product.id for product in gateway(server).products()] == ["default", "client"]
    default_only = CfsslGateway(parameters_check(CfsslGateway.parameters, {"url": server.url}))
    assert [product.id for product in default_only.products()] == ["default"]


def test_a_non_hexadecimal_auth_key_is_refused_when_registered() -> None:
    config = parameters_check(
        CfsslGateway.parameters, {"url": "http://127.0.0.1:8888", "auth_key": "not hex"}
    )
    with pytest.raises(ParameterError) as raised:
        CfsslGateway.config_check(config)
    assert "auth_key" in raised.value.errors


# --- enrollment ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_issues_a_certificate_for_the_csr_that_openssl_verifies(
    server: CfsslServer, kind: str, tmp_path: Path
) -> None:
    key = certs.private_key(kind)
    sans = ("DNS:www.example.com", "DNS:example.com", "IP:192.0.2.10")
    record = gateway(server).enroll(enrollment("www.example.com", sans, key=key))

    assert record.status == RecordStatus.ISSUED
    issued = certificate(record)
    assert issued.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    names = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"www.example.com", "example.com"}
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.10")]
    usages = issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert record.serial_number == f"{issued.serial_number:x}"
    aki = issued.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert record.ca_request_id == f"{issued.serial_number:x}:{aki.key_identifier.hex()}"
    assert record.product_id == "default"
    assert record.chain_pem == (server.ca_pem,)

    (tmp_path / "leaf.pem").write_text(record.certificate_pem or "")
    (tmp_path / "ca.pem").write_text(record.chain_pem[0])
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().endswith(": OK")


def test_issues_exactly_the_approved_names_not_the_csrs_others(server: CfsslServer) -> None:
    csr = certs.csr("app.example.com", "app.example.com", "admin.example.com")
    request = enrollment("app.example.com", ("DNS:app.example.com",), csr=csr)
    issued = certificate(gateway(server).enroll(request))
    names = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["app.example.com"]


def test_the_client_profile_issues_a_client_certificate(server: CfsslServer) -> None:
    record = gateway(server).enroll(
        enrollment("agent-7", ("DNS:agent-7.example.com",), product="client")
    )
    usages = certificate(record).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(usages.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert record.product_id == "client"


def test_renewal_signs_the_new_csr_with_a_new_serial(server: CfsslServer) -> None:
    first = issue(server, "renew.example.com")
    renewed = gateway(server).enroll(
        enrollment(
            "renew.example.com",
            ("DNS:renew.example.com",),
            type=EnrollmentType.RENEW,
            prior_ca_request_id=first.ca_request_id,
            prior_certificate_pem=first.certificate_pem,
        )
    )
    assert renewed.status == RecordStatus.ISSUED
    assert renewed.serial_number != first.serial_number
    assert renewed.ca_request_id != first.ca_request_id


@pytest.mark.parametrize(
    ("garbage", "code", "words"),
    [
        ("not a certificate request", 9002, "CSR Decode failed"),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            9003,
            "asn1: structure error",
        ),
    ],
)
def test_a_malformed_csr_is_refused_permanently_with_cfssls_words(
    server: CfsslServer, garbage: str, code: int, words: str
) -> None:
    with pytest.raises(HandlerError) as raised:
        gateway(server).enroll(enrollment("bad.example.com", csr=garbage))
    assert raised.value.permanent
    assert words in raised.value.message
    assert raised.value.output["errors"][0]["code"] == code


def test_an_unknown_profile_is_refused_before_cfssl_signs_with_its_default(
    server: CfsslServer,
) -> None:
    # CFSSL 1.2 itself would sign it with the default policy: the gateway must not ask.
    before = len(certdb_rows(server))
    with pytest.raises(HandlerError) as raised:
        gateway(server).enroll(enrollment("x.example.com", ("DNS:x.example.com",), product="nope"))
    assert raised.value.permanent
    assert "nope" in raised.value.message
    assert len(certdb_rows(server)) == before


def test_a_san_type_cfssl_cannot_issue_is_refused(server: CfsslServer) -> None:
    request = enrollment("svc", ("URI:spiffe://example.org/svc",))
    with pytest.raises(HandlerError) as raised:
        gateway(server).enroll(request)
    assert raised.value.permanent
    assert "spiffe://example.org/svc" in raised.value.message


# --- authsign -----------------------------------------------------------------------------


def test_authsign_issues_with_the_profiles_key(server: CfsslServer) -> None:
    authed = gateway(server, profiles=[server.auth_profile], auth_key=server.auth_key)
    authed.ping()
    record = authed.enroll(
        enrollment("auth.example.com", ("DNS:auth.example.com",), product=server.auth_profile)
    )
    assert record.status == RecordStatus.ISSUED
    assert certificate(record).extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_a_wrong_auth_key_is_refused_permanently_by_ping_and_enroll(server: CfsslServer) -> None:
    wrong = gateway(server, profiles=[server.auth_profile], auth_key="00" * 32)
    with pytest.raises(HandlerError) as pinged:
        wrong.ping()
    assert pinged.value.permanent
    assert "invalid token" in pinged.value.message
    with pytest.raises(HandlerError) as enrolled:
        wrong.enroll(enrollment("w.example.com", ("DNS:w.example.com",), product="authed"))
    assert enrolled.value.permanent
    assert "invalid token" in enrolled.value.message


def test_a_profile_that_needs_a_key_is_refused_without_one(server: CfsslServer) -> None:
    keyless = gateway(server, profiles=[server.auth_profile])
    with pytest.raises(HandlerError) as raised:
        keyless.enroll(enrollment("k.example.com", ("DNS:k.example.com",), product="authed"))
    assert raised.value.permanent
    assert "authentication required" in raised.value.message


def test_ping_with_a_key_reports_a_profile_cfssl_has_no_key_for(server: CfsslServer) -> None:
    mixed = gateway(server, profiles=["default"], auth_key=server.auth_key)
    with pytest.raises(HandlerError) as raised:
        mixed.ping()
    assert raised.value.permanent
    assert "no authentication provider" in raised.value.message


# --- fetch and revoke ---------------------------------------------------------------------


def test_fetch_reads_the_record_cfssl_keeps(server: CfsslServer) -> None:
    issued = issue(server, "fetch.example.com")
    fetched = gateway(server).fetch(issued.ca_request_id)
    assert fetched.status == RecordStatus.ISSUED
    assert fetched.ca_request_id == issued.ca_request_id
    assert fetched.certificate_pem == issued.certificate_pem
    assert fetched.chain_pem == (server.ca_pem,)
    assert fetched.serial_number == issued.serial_number


def test_fetch_needs_the_certdb(server: CfsslServer) -> None:
    issued = issue(server, "nodb.example.com")
    with pytest.raises(HandlerError) as raised:
        gateway(server, certdb_path=None).fetch(issued.ca_request_id)
    assert raised.value.permanent
    assert "certdb_path" in raised.value.message


def test_fetch_of_an_unknown_or_malformed_id_is_permanent(server: CfsslServer) -> None:
    for ca_request_id in ("abc123:00ff", "not-an-id"):
        with pytest.raises(HandlerError) as raised:
            gateway(server).fetch(ca_request_id)
        assert raised.value.permanent


def test_revoke_for_key_compromise_shows_in_fetch_sync_and_cfssls_ocsp(
    server: CfsslServer,
) -> None:
    issued = issue(server, "revoke.example.com")
    revocation = GatewayRevocation(
        ca_request_id=issued.ca_request_id,
        certificate_pem=issued.certificate_pem or "",
        serial_number=issued.serial_number or "",
        reason=RevocationReason.KEY_COMPROMISE,
    )
    revoked = gateway(server).revoke(revocation)
    assert revoked.status == RecordStatus.REVOKED
    assert revoked.revocation_reason == RevocationReason.KEY_COMPROMISE
    assert revoked.revoked_at and revoked.revoked_at.endswith("+00:00")

    fetched = gateway(server).fetch(issued.ca_request_id)
    assert fetched.status == RecordStatus.REVOKED
    assert fetched.revocation_reason == RevocationReason.KEY_COMPROMISE

    synced = {
        record.ca_request_id: record
        for record in gateway(server).synchronize(cursor=None, full=True)
    }
    assert synced[issued.ca_request_id].status == RecordStatus.REVOKED
    assert synced[issued.ca_request_id].revocation_reason == RevocationReason.KEY_COMPROMISE

    single = server.ocsp_statuses()[certificate(issued).serial_number]
    assert single.certificate_status.name == "REVOKED"
    assert single.revocation_reason == x509.ReasonFlags.key_compromise

    # Again (a retry): the same record, CFSSL's revocation time untouched.
    assert gateway(server).revoke(revocation) == revoked


def test_revoke_without_the_certdb_goes_through_the_api_alone(server: CfsslServer) -> None:
    issued = issue(server, "api-revoke.example.com")
    revoked = gateway(server, certdb_path=None).revoke(
        GatewayRevocation(
            ca_request_id=issued.ca_request_id,
            certificate_pem=issued.certificate_pem or "",
            serial_number=issued.serial_number or "",
            reason=RevocationReason.SUPERSEDED,
        )
    )
    assert revoked.status == RecordStatus.REVOKED
    assert revoked.revocation_reason == RevocationReason.SUPERSEDED
    serial = str(certificate(issued).serial_number)
    (row,) = [row for row in certdb_rows(server) if row["serial_number"] == serial]
    assert (row["status"], row["reason"]) == ("revoked", RevocationReason.SUPERSEDED)


def test_cfssl_records_every_rfc5280_reason_the_gateway_sends(server: CfsslServer) -> None:
    issuer = gateway(server, certdb_path=None)
    serials: dict[str, RevocationReason] = {}
    for reason in RevocationReason:
        issued = issue(server, f"reason-{reason.value}.example.com")
        issuer.revoke(
            GatewayRevocation(
                ca_request_id=issued.ca_request_id,
                certificate_pem=issued.certificate_pem or "",
                serial_number=issued.serial_number or "",
                reason=reason,
            )
        )
        serials[str(certificate(issued).serial_number)] = reason
    recorded = {
        row["serial_number"]: row["reason"]
        for row in certdb_rows(server)
        if row["serial_number"] in serials
    }
    assert recorded == {serial: int(reason) for serial, reason in serials.items()}


def test_revoking_a_certificate_cfssl_never_issued_is_permanent(server: CfsslServer) -> None:
    with pytest.raises(HandlerError) as raised:
        gateway(server, certdb_path=None).revoke(
            GatewayRevocation(
                ca_request_id="1234abcd:" + "00" * 20,
                certificate_pem="",
                serial_number="1234abcd",
                reason=RevocationReason.KEY_COMPROMISE,
            )
        )
    assert raised.value.permanent
    assert "no record" in raised.value.message


# --- synchronize --------------------------------------------------------------------------


def test_full_synchronization_yields_every_certificate_in_order(server: CfsslServer) -> None:
    issued = {issue(server, f"full-{n}.example.com").ca_request_id for n in range(3)}
    records = list(gateway(server).synchronize(cursor=None, full=True))
    assert len(records) == len(certdb_rows(server))
    ids = [record.ca_request_id for record in records]
    assert len(set(ids)) == len(ids)
    assert issued <= set(ids)
    cursors = [int(record.sync_cursor or "") for record in records]
    assert cursors == sorted(cursors)
    assert all(record.chain_pem == (server.ca_pem,) for record in records)


def test_incremental_synchronization_yields_only_what_came_later(server: CfsslServer) -> None:
    *_, last = gateway(server).synchronize(cursor=None, full=True)
    later = [issue(server, f"later-{n}.example.com").ca_request_id for n in range(2)]
    records = list(gateway(server).synchronize(cursor=last.sync_cursor, full=False))
    assert [record.ca_request_id for record in records] == later
    # full ignores the cursor
    everything = list(gateway(server).synchronize(cursor=last.sync_cursor, full=True))
    assert len(everything) == len(certdb_rows(server))


def test_an_interrupted_synchronization_resumes_without_duplicates(
    server: CfsslServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cfssl_module, "SYNC_BATCH_SIZE", 2)
    *_, last = gateway(server).synchronize(cursor=None, full=True)
    issued = [issue(server, f"resume-{n}.example.com").ca_request_id for n in range(5)]

    stream = gateway(server).synchronize(cursor=last.sync_cursor, full=False)
    first = next(stream)
    # Paused mid-stream (the platform storing the record): CFSSL can still write the certdb.
    during = issue(server, "during-sync.example.com")
    stream.close()  # the worker stopped here

    rest = list(gateway(server).synchronize(cursor=first.sync_cursor, full=False))
    ids = [first.ca_request_id] + [record.ca_request_id for record in rest]
    assert ids == [*issued, during.ca_request_id]


def test_synchronization_with_a_label_yields_only_that_cas_certificates(
    server: CfsslServer,
) -> None:
    labelled = issue(server, "edge.example.com", label="edge")
    unlabelled = issue(server, "plain.example.com")
    edge_ids = [
        record.ca_request_id
        for record in gateway(server, label="edge").synchronize(cursor=None, full=True)
    ]
    assert edge_ids == [labelled.ca_request_id]
    every_id = {
        record.ca_request_id for record in gateway(server).synchronize(cursor=None, full=True)
    }
    assert {labelled.ca_request_id, unlabelled.ca_request_id} <= every_id


def test_synchronization_needs_the_certdb(server: CfsslServer) -> None:
    with pytest.raises(HandlerError) as raised:
        next(gateway(server, certdb_path=None).synchronize(cursor=None, full=True))
    assert raised.value.permanent
    assert "certdb_path" in raised.value.message


def test_synchronization_refuses_a_cursor_it_did_not_give(server: CfsslServer) -> None:
    with pytest.raises(HandlerError) as raised:
        next(gateway(server).synchronize(cursor="abc", full=False))
    assert raised.value.permanent


def test_a_missing_certdb_file_is_a_permanent_error(server: CfsslServer, tmp_path: Path) -> None:
    missing = gateway(server, certdb_path=str(tmp_path / "absent.db"))
    with pytest.raises(HandlerError) as raised:
        next(missing.synchronize(cursor=None, full=True))
    assert raised.value.permanent
    assert "absent.db" in raised.value.message
