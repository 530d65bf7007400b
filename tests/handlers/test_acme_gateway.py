"""The ACME gateway against a real ACME CA: Pebble, Let's Encrypt's test server, on the loopback.

Most tests use a Pebble that skips validation; the ones named ``real_validation`` use a
second one that really fetches http-01 challenges from 127.0.0.1 and requires external
account binding, so the solvers and the account binding are proven against the CA itself.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from handlers.base import HandlerError
from handlers.builtin.acme import (
    SOLVERS,
    AccountKey,
    AcmeGateway,
    AcmeIdentifier,
    AcmeProblem,
    StandaloneSolver,
    WebrootSolver,
    account_key_generate,
    address_parse,
)
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
from tests.servers.pebble import PebbleServer, free_port, pebble_server

BLOCKED = "blocked.example.test"
EAB_KID = "certyard-tests"
EAB_MAC_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


# --- Fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PebbleServer]:
    """A Pebble that treats every challenge as solved and refuses one domain."""
    with pebble_server(tmp_path_factory.mktemp("pebble"), blocked_domains=(BLOCKED,)) as server:
        yield server


@pytest.fixture(scope="module")
def validating_pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PebbleServer]:
    """A Pebble that fetches http-01 challenges for real and requires account binding."""
    with pebble_server(
        tmp_path_factory.mktemp("validating-pebble"),
        always_valid=False,
        eab_keys={EAB_KID: EAB_MAC_KEY},
    ) as server:
        yield server


@pytest.fixture(scope="module")
def account_key_pem() -> str:
    return account_key_generate()


def gateway_for(pebble: PebbleServer, account_key_pem: str, **overrides: Any) -> AcmeGateway:
    """The gateway as the platform builds it: parameters checked, defaults filled in."""
    raw = {
        "directory_url": pebble.directory_url,
        "account_key_pem": account_key_pem,
        "contact_email": "pki@example.test",
        "ca_bundle": pebble.ca_bundle_pem,
        "challenge_solver": "none",
        **overrides,
    }
    config = parameters_check(AcmeGateway.parameters, raw)
    AcmeGateway.config_check(config)
    return AcmeGateway(config)


@pytest.fixture
def webroot(tmp_path: Path) -> Path:
    folder = tmp_path / "webroot"
    folder.mkdir()
    return folder


@pytest.fixture
def gateway(pebble: PebbleServer, account_key_pem: str, webroot: Path) -> AcmeGateway:
    return gateway_for(
        pebble, account_key_pem, challenge_solver="http-01-webroot", webroot=str(webroot)
    )


def csr_pem(key: certs.PrivateKey, sans: tuple[str, ...]) -> str:
    names: list[x509.GeneralName] = []
    for san in sans:
        kind, _, value = san.partition(":")
        names.append(x509.IPAddress(ip_address(value)) if kind == "IP" else x509.DNSName(value))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    csr = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def enrollment(
    sans: tuple[str, ...],
    *,
    key: certs.PrivateKey | None = None,
    csr_sans: tuple[str, ...] | None = None,
    **fields: Any,
) -> GatewayEnrollment:
    return GatewayEnrollment(
        request_id=fields.pop("request_id", "request-1"),
        type=fields.pop("type", EnrollmentType.NEW),
        product_id="default",
        csr_pem=csr_pem(key or certs.private_key(), sans if csr_sans is None else csr_sans),
        subject="",
        sans=sans,
        **fields,
    )


def openssl_verify(folder: Path, pebble: PebbleServer, record: CARecord) -> str:
    """``openssl verify`` of the leaf against Pebble's root, the chain given as untrusted."""
    (folder / "root.pem").write_text(pebble.root_pem())
    (folder / "chain.pem").write_text("".join(record.chain_pem))
    (folder / "leaf.pem").write_text(record.certificate_pem or "")
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return (result.stdout + result.stderr).strip()


class _Site(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start an HTTP server on 127.0.0.1 for the test; stopped after it."""
    servers: list[ThreadingHTTPServer] = []

    def start(handler: Any, port: int = 0) -> int:
        server = _Site(("127.0.0.1", port), handler)
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- Reaching the CA --------------------------------------------------------------------------


def test_ping_succeeds_against_pebble(gateway: AcmeGateway) -> None:
    assert gateway.ping() is None


def test_ping_at_a_closed_port_is_a_temporary_error_naming_the_url(
    pebble: PebbleServer, account_key_pem: str
) -> None:
    url = f"https://127.0.0.1:{free_port()}/dir"
    gateway = gateway_for(pebble, account_key_pem, directory_url=url)
    with pytest.raises(HandlerError) as caught:
        gateway.ping()
    assert not caught.value.permanent
    assert url in caught.value.message
    assert "could not reach" in caught.value.message


class _NotAcme(BaseHTTPRequestHandler):
    """A web server with a page at /page, a JSON object at /json, and nothing else."""

    def do_GET(self) -> None:
        if self.path == "/page":
            status, kind, body = 200, "text/html", b"<html><body>Welcome</body></html>"
        elif self.path == "/json":
            status, kind, body = 200, "application/json", json.dumps({"hello": 1}).encode()
        else:
            status, kind, body = 404, "text/plain", b"not found"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("path", ["/page", "/json", "/missing"])
def test_ping_at_a_web_server_that_is_not_acme_is_permanent(
    pebble: PebbleServer, account_key_pem: str, serve: Any, path: str
) -> None:
    url = f"http://127.0.0.1:{serve(_NotAcme)}{path}"
    gateway = gateway_for(pebble, account_key_pem, directory_url=url)
    with pytest.raises(HandlerError) as caught:
        gateway.ping()
    assert caught.value.permanent
    assert f"{url} answered but is not an ACME directory" in caught.value.message


def test_an_untrusted_https_certificate_is_permanent_and_points_at_ca_bundle(
    pebble: PebbleServer, account_key_pem: str
) -> None:
    with pytest.raises(HandlerError) as caught:
        gateway_for(pebble, account_key_pem, ca_bundle="").ping()
    assert caught.value.permanent
    assert "ca_bundle" in caught.value.message
    # A test CA may be used without checking its certificate, when one says so.
    gateway_for(pebble, account_key_pem, ca_bundle="", verify_tls=False).ping()


def test_a_ca_requiring_account_binding_refuses_an_account_without_it(
    validating_pebble: PebbleServer,
) -> None:
    gateway = gateway_for(validating_pebble, account_key_generate())
    for call in (gateway.ping, lambda: gateway.enroll(enrollment(("DNS:www.example.test",)))):
        with pytest.raises(HandlerError) as caught:
            call()
        assert caught.value.permanent
        assert "external account binding" in caught.value.message


# --- Issuing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key_kind", ["ec", "rsa"])
def test_issues_a_certificate_for_the_csr_key_and_names_that_chains_to_pebbles_root(
    gateway: AcmeGateway, pebble: PebbleServer, webroot: Path, tmp_path: Path, key_kind: str
) -> None:
    key = certs.private_key(key_kind)
    sans = ("DNS:www.example.test", "DNS:api.example.test")
    record = gateway.enroll(enrollment(sans, key=key))

    assert record.status == RecordStatus.ISSUED
    assert record.ca_request_id.startswith(pebble.directory_url.removesuffix("/dir"))
    leaf = x509.load_pem_x509_certificate((record.certificate_pem or "").encode())
    assert leaf.public_key() == key.public_key()
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == [
        "api.example.test",
        "www.example.test",
    ]
    assert record.serial_number == format(leaf.serial_number, "x")
    assert pebble.certificate_status(record.serial_number)["Status"] == "Valid"
    assert record.chain_pem == (pebble.intermediate_pem(),)
    assert openssl_verify(tmp_path, pebble, record) == "leaf.pem: OK"
    # The webroot solver left no challenge file behind.
    challenges = webroot / ".well-known" / "acme-challenge"
    assert not challenges.exists() or not any(challenges.iterdir())


def test_an_rsa_account_key_signs_with_rs256(pebble: PebbleServer) -> None:
    pem = certs.key_pem(
        certs.private_key("rsa"), private_format=serialization.PrivateFormat.TraditionalOpenSSL
    )
    assert AccountKey.from_pem(pem).alg == "RS256"
    record = gateway_for(pebble, pem).enroll(enrollment(("DNS:rsa-account.example.test",)))
    assert record.status == RecordStatus.ISSUED


def test_renewal_with_a_new_key_is_a_new_order_and_a_new_serial(gateway: AcmeGateway) -> None:
    sans = ("DNS:renew.example.test",)
    first = gateway.enroll(enrollment(sans))
    second = gateway.enroll(
        enrollment(
            sans,
            request_id="request-2",
            type=EnrollmentType.RENEW,
            prior_ca_request_id=first.ca_request_id,
            prior_certificate_pem=first.certificate_pem,
        )
    )
    assert second.status == RecordStatus.ISSUED
    assert second.serial_number != first.serial_number
    assert second.ca_request_id != first.ca_request_id
    assert second.certificate_pem != first.certificate_pem
    assert second.message.startswith("renewed by")


def test_fetch_of_the_order_returns_the_same_certificate(gateway: AcmeGateway) -> None:
    issued = gateway.enroll(enrollment(("DNS:fetch.example.test",)))
    fetched = gateway.fetch(issued.ca_request_id)
    assert fetched.status == RecordStatus.ISSUED
    assert fetched.ca_request_id == issued.ca_request_id
    assert fetched.certificate_pem == issued.certificate_pem
    assert fetched.chain_pem == issued.chain_pem
    assert fetched.serial_number == issued.serial_number


def test_fetch_of_an_order_not_finished_is_pending(gateway: AcmeGateway) -> None:
    with gateway.session() as acme:
        placed = acme.post(
            "placing an order",
            acme.resource("newOrder"),
            {"identifiers": [{"type": "dns", "value": "pending.example.test"}]},
        )
    order_url = placed.headers["Location"]
    record = gateway.fetch(order_url)
    assert record.status == RecordStatus.PENDING
    assert record.ca_request_id == order_url
    assert record.certificate_pem is None
    assert "pending" in record.message


def test_fetch_of_something_that_is_not_an_order_url_is_permanent(gateway: AcmeGateway) -> None:
    with pytest.raises(HandlerError) as caught:
        gateway.fetch("order-42")
    assert caught.value.permanent


def test_revoke_with_key_compromise_is_recorded_by_pebble_and_can_be_repeated(
    gateway: AcmeGateway, pebble: PebbleServer
) -> None:
    issued = gateway.enroll(enrollment(("DNS:revoke.example.test",)))
    assert issued.serial_number and issued.certificate_pem
    revocation = GatewayRevocation(
        ca_request_id=issued.ca_request_id,
        certificate_pem=issued.certificate_pem,
        serial_number=issued.serial_number,
        reason=RevocationReason.KEY_COMPROMISE,
    )
    record = gateway.revoke(revocation)

    assert record.status == RecordStatus.REVOKED
    assert record.revocation_reason == RevocationReason.KEY_COMPROMISE
    assert record.serial_number == issued.serial_number
    assert record.revoked_at
    status = pebble.certificate_status(issued.serial_number)
    assert status["Status"] == "Revoked"
    assert status["Reason"] == 1
    # A retried revocation finds it already revoked: still a success.
    again = gateway.revoke(revocation)
    assert again.status == RecordStatus.REVOKED
    assert "already revoked" in again.message


# --- What the CA or the gateway refuses -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "said", "problem"),
    [
        (BLOCKED, "forbidden by policy", "rejectedIdentifier"),
        ("bad_name!.test", "illegal character", "malformed"),
    ],
)
def test_a_name_pebble_refuses_is_a_permanent_error_with_its_detail(
    gateway: AcmeGateway, name: str, said: str, problem: str
) -> None:
    with pytest.raises(AcmeProblem) as caught:
        gateway.enroll(enrollment((f"DNS:{name}",)))
    assert caught.value.permanent
    assert caught.value.problem_type == problem
    assert said in caught.value.message
    assert name in caught.value.message


@pytest.mark.parametrize(
    ("sans", "csr_sans", "said"),
    [
        (("DNS:www.example.test", "email:pki@example.test"), None, "email:pki@example.test"),
        (("DNS:www.example.test",), ("DNS:other.example.test",), "the same names in both"),
    ],
)
def test_names_acme_cannot_certify_are_refused_before_any_order(
    pebble: PebbleServer,
    account_key_pem: str,
    sans: tuple[str, ...],
    csr_sans: tuple[str, ...] | None,
    said: str,
) -> None:
    # An unreachable directory proves no request was made.
    unreachable = f"https://127.0.0.1:{free_port()}/dir"
    gateway = gateway_for(pebble, account_key_pem, directory_url=unreachable)
    if csr_sans is None:
        csr_sans = tuple(san for san in sans if san.startswith("DNS:"))
    with pytest.raises(HandlerError) as caught:
        gateway.enroll(enrollment(sans, csr_sans=csr_sans))
    assert caught.value.permanent
    assert said in caught.value.message


def test_a_profile_the_ca_does_not_advertise_is_refused(gateway: AcmeGateway) -> None:
    (product,) = gateway.products()
    assert product.id == "default"
    assert [parameter.name for parameter in product.parameters] == ["profile"]
    gateway.validate_product("default", {"profile": "shortlived"})
    with pytest.raises(HandlerError) as caught:
        gateway.enroll(
            enrollment(("DNS:www.example.test",), product_parameters={"profile": "shortlived"})
        )
    assert caught.value.permanent
    assert "offers no profile 'shortlived'" in caught.value.message


def test_a_rejected_nonce_is_tried_once_more_then_reported(
    gateway: AcmeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    with gateway.session() as acme:
        account_url = acme.account()
        acme._nonce = "not-a-nonce-pebble-gave"
        assert acme.post_as_get("reading the account", account_url)["status"] == "valid"

        sent: list[str] = []

        def stale_nonce() -> str:
            sent.append("stale")
            return "not-a-nonce-pebble-gave"

        monkeypatch.setattr(acme, "_take_nonce", stale_nonce)
        with pytest.raises(AcmeProblem) as caught:
            acme.post_as_get("reading the account", account_url)
    assert caught.value.problem_type == "badNonce"
    assert not caught.value.permanent
    assert sent == ["stale", "stale"]


# --- Real http-01 validation ------------------------------------------------------------------


def _binding() -> dict[str, str]:
    return {"eab_kid": EAB_KID, "eab_hmac_key": EAB_MAC_KEY}


def test_real_validation_with_the_standalone_solver(validating_pebble: PebbleServer) -> None:
    # A new account each time: Pebble may reuse an account's valid authorizations.
    gateway = gateway_for(
        validating_pebble,
        account_key_generate(),
        challenge_solver="http-01-standalone",
        standalone_address=f"127.0.0.1:{validating_pebble.http_port}",
        **_binding(),
    )
    gateway.ping()
    record = gateway.enroll(enrollment(("IP:127.0.0.1",)))
    assert record.status == RecordStatus.ISSUED
    leaf = x509.load_pem_x509_certificate((record.certificate_pem or "").encode())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ip_address("127.0.0.1")]
    # The solver's server is gone once validation is over.
    with (
        pytest.raises(OSError),
        socket.create_connection(("127.0.0.1", validating_pebble.http_port), timeout=2),
    ):
        pass


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, fmt: str, *args: Any) -> None:
        pass


def test_real_validation_with_the_webroot_solver(
    validating_pebble: PebbleServer, webroot: Path, serve: Any
) -> None:
    # The web server that would serve the names: the webroot as its document root.
    serve(functools.partial(_QuietFiles, directory=str(webroot)), validating_pebble.http_port)
    gateway = gateway_for(
        validating_pebble,
        account_key_generate(),
        challenge_solver="http-01-webroot",
        webroot=str(webroot),
        **_binding(),
    )
    record = gateway.enroll(enrollment(("IP:127.0.0.1",)))
    assert record.status == RecordStatus.ISSUED
    assert not any((webroot / ".well-known" / "acme-challenge").iterdir())


def test_real_validation_that_fails_is_a_temporary_error_with_the_cas_detail(
    validating_pebble: PebbleServer,
) -> None:
    # Nothing answers on the port Pebble validates at.
    gateway = gateway_for(
        validating_pebble, account_key_generate(), challenge_solver="none", **_binding()
    )
    with pytest.raises(HandlerError) as caught:
        gateway.enroll(enrollment(("IP:127.0.0.1",)))
    assert not caught.value.permanent
    assert "could not validate 127.0.0.1" in caught.value.message
    assert "connection refused" in caught.value.message


# --- Solvers ----------------------------------------------------------------------------------


IDENTIFIER = AcmeIdentifier("dns", "www.example.test")


def test_webroot_solver_writes_the_key_authorization_and_removes_it(webroot: Path) -> None:
    solver = WebrootSolver({"webroot": str(webroot)})
    solver.prepare(IDENTIFIER, "tok-en_1", "tok-en_1.thumb")
    path = webroot / ".well-known" / "acme-challenge" / "tok-en_1"
    assert path.read_text() == "tok-en_1.thumb"
    assert path.stat().st_mode & 0o777 == 0o644
    solver.cleanup(IDENTIFIER, "tok-en_1", "tok-en_1.thumb")
    assert not path.exists()
    assert path.parent.is_dir()
    # Cleaning up twice (a retried cleanup) is harmless.
    solver.cleanup(IDENTIFIER, "tok-en_1", "tok-en_1.thumb")


@pytest.mark.parametrize("token", ["../escape", "a/b", "", "dot.dot"])
def test_webroot_solver_refuses_a_token_that_is_not_base64url(webroot: Path, token: str) -> None:
    with pytest.raises(HandlerError):
        WebrootSolver({"webroot": str(webroot)}).prepare(IDENTIFIER, token, "x")
    assert list(webroot.rglob("*")) == []


def test_standalone_solver_serves_the_key_authorization_only_while_validating() -> None:
    port = free_port()
    solver = StandaloneSolver({"standalone_address": f"127.0.0.1:{port}"})
    base = f"http://127.0.0.1:{port}/.well-known/acme-challenge"
    solver.prepare(IDENTIFIER, "first", "first.thumb")
    solver.prepare(AcmeIdentifier("dns", "api.example.test"), "second", "second.thumb")
    try:
        assert httpx.get(f"{base}/first", timeout=5).text == "first.thumb"
        assert httpx.get(f"{base}/second", timeout=5).text == "second.thumb"
        assert httpx.get(f"{base}/unknown", timeout=5).status_code == 404
        solver.cleanup(IDENTIFIER, "first", "first.thumb")
        assert httpx.get(f"{base}/first", timeout=5).status_code == 404
    finally:
        solver.cleanup(IDENTIFIER, "second", "second.thumb")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/second", timeout=5)


def test_standalone_solver_on_a_port_in_use_is_a_temporary_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        solver = StandaloneSolver({"standalone_address": f"127.0.0.1:{port}"})
        with pytest.raises(HandlerError) as caught:
            solver.prepare(IDENTIFIER, "token", "token.thumb")
    assert not caught.value.permanent
    assert "listening there" in caught.value.message


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:5002", ("127.0.0.1", 5002)), (":80", ("", 80)), ("[::1]:8080", ("::1", 8080))],
)
def test_standalone_addresses(text: str, address: tuple[str, int]) -> None:
    assert address_parse(text) == address


# --- Configuration ----------------------------------------------------------------------------


def _config(**values: Any) -> dict[str, Any]:
    raw = {
        "directory_url": "https://acme.example.test/directory",
        "account_key_pem": account_key_generate(),
        "challenge_solver": "none",
        **values,
    }
    return parameters_check(AcmeGateway.parameters, raw)


def test_parameters_and_solvers_are_declared() -> None:
    names = [parameter.name for parameter in AcmeGateway.parameters]
    assert names[:2] == ["directory_url", "account_key_pem"]
    solver = next(p for p in AcmeGateway.parameters if p.name == "challenge_solver")
    assert solver.choices == tuple(SOLVERS) == ("http-01-webroot", "http-01-standalone", "none")
    assert solver.default == "http-01-webroot"
    assert AcmeGateway.supports_sync is False
    AcmeGateway.config_check(_config())


@pytest.mark.parametrize(
    ("values", "field", "said"),
    [
        ({"challenge_solver": "http-01-webroot"}, "webroot", "is required"),
        (
            {"challenge_solver": "http-01-webroot", "webroot": "/no/such/folder"},
            "webroot",
            "not a directory",
        ),
        ({"challenge_solver": "http-01-standalone"}, "standalone_address", "is required"),
        (
            {"challenge_solver": "http-01-standalone", "standalone_address": "localhost"},
            "standalone_address",
            "host:port",
        ),
        ({"account_key_pem": ""}, "account_key_pem", "paste an account private key"),
        ({"account_key_pem": "not a key"}, "account_key_pem", "not a PEM private key"),
        ({"eab_kid": "kid-1"}, "eab_hmac_key", "is required with eab_kid"),
        ({"eab_hmac_key": "c2VjcmV0"}, "eab_kid", "is required with eab_hmac_key"),
        ({"ca_bundle": "garbage"}, "ca_bundle", "PEM certificates"),
    ],
)
def test_config_check_names_the_parameter_at_fault(
    values: dict[str, Any], field: str, said: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        AcmeGateway.config_check(_config(**values))
    assert field in caught.value.errors
    assert said in caught.value.errors[field]


def test_an_account_key_on_an_unsupported_curve_is_refused() -> None:
    pem = certs.key_pem(certs.private_key("ec521"))
    with pytest.raises(ParameterError) as caught:
        AcmeGateway.config_check(_config(account_key_pem=pem))
    assert "P-256" in caught.value.errors["account_key_pem"]


def test_using_the_gateway_without_an_account_key_is_a_permanent_error(
    pebble: PebbleServer,
) -> None:
    config = _config(directory_url=pebble.directory_url, ca_bundle=pebble.ca_bundle_pem)
    config.pop("account_key_pem")
    with pytest.raises(HandlerError) as caught:
        AcmeGateway(config).enroll(enrollment(("DNS:www.example.test",)))
    assert caught.value.permanent
    assert "account_key_pem" in caught.value.message


def test_account_key_generate_makes_a_p256_key() -> None:
    key = AccountKey.from_pem(account_key_generate())
    assert key.alg == "ES256"
    assert key.jwk["crv"] == "P-256"
    assert len(key.thumbprint) == 43  # SHA-256, base64url without padding
