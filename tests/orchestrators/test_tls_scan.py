"""The TLS store type against real servers: Debian's nginx serving valid, expired,
self-signed, wrong-name, chained and TLS 1.0-only certificates, a plain HTTP port, a port
that accepts and never answers, and a closed port (tests/servers/tls_zoo.py)."""

from __future__ import annotations

import hashlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from orchestrators.protocol import JobType
from orchestrators.scan import ScanAllowance, targets_parse
from orchestrators.sdk import JobConfiguration, StoreConfiguration, StoreError
from orchestrators.stores.tls_scan import ScanSettings, TlsScanStore, endpoints_of
from tests.servers.nginx import nginx_executable
from tests.servers.tls_zoo import SNI, TlsZoo, tls_zoo

LOOPBACK = ScanAllowance.parse(["127.0.0.0/8"], "1-65535")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsZoo]:
    if nginx_executable() is None:
        pytest.fail("nginx is not installed: run `make system-deps`")
    with tls_zoo(tmp_path_factory.mktemp("zoo")) as running:
        yield running


def _job(
    targets: str, allowance: ScanAllowance | None = LOOPBACK, **properties: Any
) -> JobConfiguration:
    return JobConfiguration(
        job_id="j1",
        type=JobType.INVENTORY,
        attempt=1,
        store=StoreConfiguration("s1", "TLS", "scanner", targets, properties),
        scan_allowance=allowance,
    )


def _sha256(pem: str) -> str:
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def test_each_kind_of_endpoint_is_recorded_as_what_it_is(zoo: TlsZoo) -> None:
    ports = ",".join(str(port) for port in zoo.ports.values())
    job = _job("127.0.0.1", ports=ports, sni_names=SNI, connect_timeout=2, handshake_timeout=2)

    entries = {zoo.kind_of_port(e.endpoint["port"]): e for e in TlsScanStore().inventory(job)}

    assert set(entries) == set(zoo.ports)
    for kind, served in zoo.served.items():
        found = entries[kind]
        assert found.endpoint["status"] == "ok", (kind, found.endpoint)
        # The whole chain as presented, leaf first.
        assert [_sha256(pem) for pem in found.certificates] == [c.sha256 for c in served], kind
        assert found.endpoint["cipher"], kind
        assert found.alias == f"127.0.0.1:{zoo.ports[kind]}/{SNI}"
        assert found.endpoint["sni"] == SNI
    assert len(entries["chain"].certificates) == 2
    assert entries["tls10"].endpoint["tls_version"] == "TLSv1"
    assert entries["valid"].endpoint["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert entries["http"].endpoint["status"] == "plaintext_http"
    assert entries["closed"].endpoint["status"] == "refused"
    silent = entries["silent"].endpoint
    assert silent["status"] == "timeout" and "no TLS handshake within 2 s" in silent["reason"]
    for kind in ("http", "closed", "silent"):
        assert entries[kind].certificates == [] and entries[kind].error is None
        assert entries[kind].to_wire()["endpoint"]["status"] == entries[kind].endpoint["status"]


def _listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener


def test_a_target_outside_the_allowance_is_refused_before_any_connection() -> None:
    listener = _listener()
    port = listener.getsockname()[1]
    try:
        for allowance, message in (
            (ScanAllowance.parse([], ""), "allows no scan targets"),
            (ScanAllowance.parse(["10.0.0.0/8"], "1-65535"), "127.0.0.1 is outside"),
            (ScanAllowance.parse(["127.0.0.0/8"], "443"), f"port {port} is outside"),
        ):
            with pytest.raises(StoreError, match=message):
                TlsScanStore().inventory(_job("127.0.0.1", allowance, ports=str(port)))
        # No connection ever reached the port.
        assert select.select([listener], [], [], 0.2)[0] == []
    finally:
        listener.close()


def test_a_name_is_scanned_when_a_pattern_or_its_addresses_allow_it() -> None:
    settings = ScanSettings.of({"ports": "443"})
    targets = targets_parse("localhost")
    outside = ScanAllowance.parse(["192.0.2.0/24"], "443")
    with pytest.raises(StoreError, match=r"localhost resolves to .*outside"):
        list(endpoints_of(targets, settings, outside))
    by_pattern = ScanAllowance.parse(["localhost"], "443")
    (endpoint,) = list(endpoints_of(targets, settings, by_pattern))
    assert endpoint.host == "localhost" and endpoint.sni == "localhost"  # type: ignore[union-attr]


def test_a_name_that_does_not_resolve_is_an_unreachable_endpoint() -> None:
    job = _job("no-such-host.invalid", ScanAllowance.parse(["*.invalid"], "443"), ports="443")
    (entry,) = list(TlsScanStore().inventory(job))
    assert entry.endpoint["status"] == "unreachable"
    assert "does not resolve" in entry.endpoint["reason"]


def test_concurrency_and_rate_are_bounded() -> None:
    """Six endpoints (one port, six server names), three at once, five new connections a
    second, against a server that accepts and never answers (each attempt ends at the 1 s
    handshake timeout). The rate spaces the first three arrivals by 0.2 s at least; the
    fourth waits for a free slot, so it comes a whole timeout after the first, not 0.2 s
    after the third. Both are lower bounds: a slow machine only adds to them."""
    listener = _listener()
    port = listener.getsockname()[1]
    arrivals: list[float] = []
    held: list[socket.socket] = []

    def serve() -> None:
        for _ in range(6):
            connection, _ = listener.accept()
            arrivals.append(time.monotonic())
            held.append(connection)  # never answered; closed at the end

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    names = ",".join(f"n{i}.certyard.test" for i in range(6))
    job = _job(
        "127.0.0.1",
        ports=str(port),
        sni_names=names,
        concurrency=3,
        rate_per_second=5,
        handshake_timeout=1,
    )
    try:
        entries = list(TlsScanStore().inventory(job))
    finally:
        server.join(10)
        listener.close()
        for connection in held:
            connection.close()

    assert [e.endpoint["status"] for e in entries] == ["timeout"] * 6
    assert len(arrivals) == 6
    assert arrivals[1] - arrivals[0] >= 0.15 and arrivals[2] - arrivals[1] >= 0.15  # the rate
    assert arrivals[3] - arrivals[0] >= 0.95  # the fourth waited for one of three to end


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"ports": "https"}, "is not a port"),
        ({"ports": "443", "concurrency": 0}, "concurrency must be between 1 and 256"),
        ({"ports": "443", "handshake_timeout": "soon"}, "handshake_timeout must be a whole number"),
        ({"ports": "1-20", "sni_names": ""}, "a store scans at most 65536"),
    ],
)
def test_bad_store_settings_fail_the_job_in_words(properties: dict[str, Any], message: str) -> None:
    targets = "10.0.0.0/20" if properties.get("ports") == "1-20" else "127.0.0.1"
    with pytest.raises(StoreError, match=message):
        TlsScanStore().inventory(
            _job(targets, ScanAllowance.parse(["10.0.0.0/8"], "1-65535"), **properties)
        )
