"""The ``TLS`` store type: discovery of the certificates TLS endpoints present.

A store of this type names targets (its store path, see ``orchestrators.scan``) and ports
(its ``ports`` property). Its inventory connects to every endpoint, with bounded
concurrency, connect and handshake timeouts and a rate limit, and reports one entry per
endpoint: the whole chain the server presented with the TLS version and cipher it
negotiated, or why there was none (refused, timeout, plain HTTP, no TLS, handshake
failure). The platform turns each endpoint into a location of its leaf certificate, so a
certificate seen in a file and on a port is one certificate with two locations.

The client accepts what a server offers, old protocols included (TLS 1.0, weak ciphers):
the point is to see what is served, not to trust it. No chain or name is validated here;
the platform judges expiry, self-signed chains and host-name mismatches from what was
presented. Targets outside what the agent's administrator allows (``ScanAllowance`` in
the job) are refused before any connection is opened.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import textwrap
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from orchestrators.declarations import (
    TLS_DECLARATION,
    TLS_MAX_CONCURRENCY,
    StoreTypeDeclaration,
)
from orchestrators.protocol import StoreOperation
from orchestrators.scan import (
    MAX_ENDPOINTS,
    MAX_REASON_LENGTH,
    EndpointStatus,
    ScanAllowance,
    ScanTargetError,
    Target,
    endpoint_alias,
    endpoint_count,
    ports_parse,
    sni_names_parse,
    targets_parse,
)
from orchestrators.sdk import InventoryEntry, JobConfiguration, StoreError, StoreTypeExtension

MAX_CONCURRENCY = TLS_MAX_CONCURRENCY
# OpenSSL says these when the peer's first bytes are no TLS record: not a TLS server.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "HTTP_REQUEST",
     "UNKNOWN_PROTOCOL", "RECORD_LENGTH_MISMATCH", "BAD_RECORD_TYPE"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScanSettings:
    """A scan's limits, from the store's properties (checked and bounded)."""

    ports: tuple[int, ...]
    sni_names: tuple[str, ...]
    concurrency: int = 32
    rate_per_second: int = 200
    connect_timeout: float = 3.0
    handshake_timeout: float = 5.0

    @classmethod
    def of(cls, properties: dict[str, Any]) -> ScanSettings:
        def number(name: str, default: int, low: int, high: int) -> int:
            value = properties.get(name)
            try:
                number = int(default if value in (None, "") else value)
            except (TypeError, ValueError):
                raise ScanTargetError(f"{name} must be a whole number") from None
            if not low <= number <= high:
                raise ScanTargetError(f"{name} must be between {low} and {high}")
            return number

        return cls(
            ports=tuple(ports_parse(str(properties.get("ports") or "443"))),
            sni_names=tuple(sni_names_parse(str(properties.get("sni_names") or ""))),
            concurrency=number("concurrency", 32, 1, MAX_CONCURRENCY),
            rate_per_second=number("rate_per_second", 200, 1, 10_000),
            connect_timeout=number("connect_timeout", 3, 1, 60),
            handshake_timeout=number("handshake_timeout", 5, 1, 120),
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One connection to try: ``host`` as the store named it, the ``address`` to connect
    to, the port, and the server name to ask for (None: no SNI)."""

    host: str
    address: str
    port: int
    sni: str | None

    @property
    def alias(self) -> str:
        return endpoint_alias(self.host, self.port, self.sni)

    def observation(self, status: EndpointStatus, reason: str = "", **found: Any) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "sni": self.sni or "",
            "status": str(status),
            "reason": reason[:MAX_REASON_LENGTH],
            **found,
        }


class _RateLimit:
    """At most ``per_second`` connections started per second, shared by the scan's threads."""

    def __init__(self, per_second: int) -> None:
        self._interval = 1.0 / per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


def client_context() -> ssl.SSLContext:
    """A client that completes a handshake with whatever the server offers, TLS 1.0 and
    weak ciphers included, and validates nothing (we record, the platform judges)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        # Deprecated as a protocol to use, which we do not: we only want to see it served.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def _presented_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The certificates the server sent, as sent (leaf first), DER."""
    chain_of = getattr(tls, "get_unverified_chain", None)  # public from Python 3.13
    if chain_of is None:
        chain_of = tls._sslobj.get_unverified_chain  # type: ignore[union-attr]  # 3.10-3.12
    chain = chain_of() or []
    if chain and not isinstance(chain[0], bytes):
        return [certificate.public_bytes(ssl._ssl.ENCODING_DER) for certificate in chain]  # type: ignore[attr-defined]
    return list(chain)


def _pem(der: bytes) -> str:
    try:
        return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
    except ValueError:
        # Not for us to judge: the platform reads what cryptography refuses, or says why not.
        body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
        return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def _speaks_http(endpoint: Endpoint, timeout: float) -> bool:
    """Whether the port answers a plain HTTP request with an HTTP status line."""
    request = f"HEAD / HTTP/1.0\r\nHost: {endpoint.sni or endpoint.host}\r\n\r\n".encode()
    try:
        with socket.create_connection((endpoint.address, endpoint.port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            raw.sendall(request)
            return raw.recv(5) == b"HTTP/"
    except OSError:
        return False


def endpoint_probe(
    endpoint: Endpoint,
    context: ssl.SSLContext,
    *,
    connect_timeout: float,
    handshake_timeout: float,
) -> tuple[dict[str, Any], list[bytes]]:
    """Connect to ``endpoint``; what happened (an observation for the report) and the chain
    presented (DER, leaf first; empty unless the status is ``ok``)."""
    try:
        raw = socket.create_connection((endpoint.address, endpoint.port), timeout=connect_timeout)
    except ConnectionRefusedError:
        return endpoint.observation(EndpointStatus.REFUSED, "connection refused"), []
    except TimeoutError:
        return endpoint.observation(
            EndpointStatus.TIMEOUT, f"no connection within {connect_timeout:g} s"
        ), []
    except OSError as exc:
        return endpoint.observation(
            EndpointStatus.UNREACHABLE, f"cannot connect: {exc.strerror or exc}"
        ), []
    try:
        raw.settimeout(handshake_timeout)
        try:
            tls = context.wrap_socket(raw, server_hostname=endpoint.sni)
        except TimeoutError:
            return endpoint.observation(
                EndpointStatus.TIMEOUT,
                f"connected, but no TLS handshake within {handshake_timeout:g} s",
            ), []
        except ssl.SSLError as exc:
            reason = exc.reason or ""
            if reason in _NOT_TLS_REASONS:
                if _speaks_http(endpoint, handshake_timeout):
                    return endpoint.observation(
                        EndpointStatus.PLAINTEXT_HTTP, "the port answers plain HTTP, not TLS"
                    ), []
                return endpoint.observation(
                    EndpointStatus.NO_TLS, "the port answers, but not with TLS"
                ), []
            if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
                return endpoint.observation(
                    EndpointStatus.HANDSHAKE_FAILED,
                    "the server closed the connection during the TLS handshake",
                ), []
            return endpoint.observation(
                EndpointStatus.HANDSHAKE_FAILED,
                f"TLS handshake failed: {(reason or str(exc)).replace('_', ' ').lower()}",
            ), []
        except OSError as exc:
            return endpoint.observation(
                EndpointStatus.HANDSHAKE_FAILED,
                f"the connection failed during the TLS handshake: {exc.strerror or exc}",
            ), []
        with tls:
            chain = _presented_chain(tls)
            cipher = tls.cipher()
            found = {"tls_version": tls.version() or "", "cipher": cipher[0] if cipher else ""}
        if not chain:
            return endpoint.observation(
                EndpointStatus.HANDSHAKE_FAILED, "the server presented no certificate", **found
            ), []
        return endpoint.observation(EndpointStatus.OK, **found), chain
    finally:
        raw.close()


def endpoints_of(
    targets: list[Target],
    settings: ScanSettings,
    allowance: ScanAllowance | None,
) -> Iterator[Endpoint | dict[str, Any]]:
    """The endpoints to try, in the store's order; a name that does not resolve, or that
    resolves outside what the agent allows, is an observation instead (per port)."""
    for target in targets:
        sni_names: list[str | None] = list(settings.sni_names) or [target.name]
        if target.name is None:
            for address in target.addresses():
                for port in settings.ports:
                    for sni in sni_names:
                        yield Endpoint(str(address), str(address), port, sni)
            continue
        try:
            infos = socket.getaddrinfo(target.name, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            for port in settings.ports:
                for sni in sni_names:
                    probe = Endpoint(target.name, target.name, port, sni)
                    yield probe.observation(
                        EndpointStatus.UNREACHABLE,
                        f"the name does not resolve: {exc.strerror or exc}",
                    )
            continue
        address = str(infos[0][4][0])
        if allowance is not None and not allowance.name_allowed(target.name):
            resolved = {ipaddress.ip_address(str(info[4][0])) for info in infos}
            if not all(allowance.address_allowed(each) for each in resolved):
                raise StoreError(
                    f"{target.name} resolves to {', '.join(sorted(map(str, resolved)))}, "
                    f"outside what this orchestrator may scan ({allowance.describe()})"
                )
        for port in settings.ports:
            for sni in sni_names:
                yield Endpoint(target.name, address, port, sni)


def scan(
    targets: list[Target],
    settings: ScanSettings,
    allowance: ScanAllowance | None,
) -> Iterator[InventoryEntry]:
    """Probe every endpoint, ``settings.concurrency`` at a time; yield each one's entry as
    it ends (so the agent sends chunks while the scan goes on)."""
    context = client_context()
    limit = _RateLimit(settings.rate_per_second)

    def probe(endpoint: Endpoint) -> InventoryEntry:
        limit.wait()
        observation, chain = endpoint_probe(
            endpoint,
            context,
            connect_timeout=settings.connect_timeout,
            handshake_timeout=settings.handshake_timeout,
        )
        return InventoryEntry(
            endpoint.alias, False, [_pem(der) for der in chain], endpoint=observation
        )

    in_flight: set[Future[InventoryEntry]] = set()
    with ThreadPoolExecutor(settings.concurrency, thread_name_prefix="tls-scan") as pool:
        try:
            for item in endpoints_of(targets, settings, allowance):
                if isinstance(item, dict):
                    yield InventoryEntry(
                        endpoint_alias(item["host"], item["port"], item["sni"] or None),
                        False,
                        [],
                        endpoint=item,
                    )
                    continue
                in_flight.add(pool.submit(probe, item))
                if len(in_flight) >= settings.concurrency * 2:
                    done, in_flight = _done(in_flight)
                    yield from done
            while in_flight:
                done, in_flight = _done(in_flight)
                yield from done
        finally:
            for future in in_flight:
                future.cancel()


def _done(
    in_flight: set[Future[InventoryEntry]],
) -> tuple[list[InventoryEntry], set[Future[InventoryEntry]]]:
    finished, pending = wait(in_flight, return_when=FIRST_COMPLETED)
    return [future.result() for future in finished], set(pending)


class TlsScanStore(StoreTypeExtension):
    """Network discovery: the certificates TLS endpoints present (see the module)."""

    short_name: ClassVar[str] = "TLS"
    operations: ClassVar[frozenset[StoreOperation]] = frozenset({StoreOperation.INVENTORY})
    declaration: ClassVar[StoreTypeDeclaration | None] = TLS_DECLARATION

    def inventory(self, job: JobConfiguration) -> Iterable[InventoryEntry]:
        try:
            targets = targets_parse(job.store.store_path)
            settings = ScanSettings.of(job.store.properties)
        except ScanTargetError as exc:
            raise StoreError(str(exc)) from exc
        count = endpoint_count(targets, settings.ports, settings.sni_names)
        if count > MAX_ENDPOINTS:
            raise StoreError(
                f"the store names {count} endpoints; a store scans at most {MAX_ENDPOINTS} "
                "(fewer targets, ports or server names per store)"
            )
        allowance = job.scan_allowance
        if allowance is not None:
            problems = [allowance.target_problem(target) for target in targets]
            blocked = [port for port in settings.ports if not allowance.port_allowed(port)]
            if blocked:
                problems.append(
                    f"port {blocked[0]} is outside what this orchestrator may scan "
                    f"({allowance.describe()})"
                )
            # Refused before any connection: the platform cannot widen what the agent allows.
            problem = next((each for each in problems if each), None)
            if problem is not None:
                raise StoreError(problem)
        return scan(targets, settings, allowance)
