"""Pebble, Let's Encrypt's ACME test server, started for a test and stopped after it.

Debian's ``pebble`` package ships no configuration, so this writes one: a TLS certificate
for 127.0.0.1 made here, free ports, and the environment that makes Pebble fast and
deterministic (no validation sleeps, no nonces rejected at random).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

STARTUP_SECONDS = 15.0


@dataclass
class PebbleServer:
    """A running Pebble.

    Attributes:
        directory_url: The ACME directory (``https://127.0.0.1:<port>/dir``).
        management_url: Pebble's own test interface (roots, certificate status).
        ca_bundle_pem: The self-signed certificate Pebble serves HTTPS with: trust it.
        http_port: Where Pebble's validator connects for http-01 challenges.
        log_path: Pebble's output, for a failing test's report.
    """

    directory_url: str
    management_url: str
    ca_bundle_pem: str
    http_port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    def _get(self, path: str) -> httpx.Response:
        context = ssl.create_default_context(cadata=self.ca_bundle_pem)
        response = httpx.get(f"{self.management_url}{path}", verify=context, timeout=10)
        response.raise_for_status()
        return response

    def root_pem(self) -> str:
        """The root that issued this run's certificates (new at every start)."""
        return self._get("/roots/0").text

    def intermediate_pem(self) -> str:
        return self._get("/intermediates/0").text

    def certificate_status(self, serial_hex: str) -> dict[str, Any]:
        """``{"Status": "Valid" | "Revoked", "Reason": ..., "Serial": ..., ...}``."""
        return self._get(f"/cert-status-by-serial/{serial_hex}").json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tls_certificate(folder: Path) -> tuple[Path, Path, str]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert file, key file, PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble test server")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_text(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, pem


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop Pebble's process group: TERM, then KILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=5)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@contextmanager
def pebble_server(
    folder: Path,
    *,
    always_valid: bool = True,
    http_port: int | None = None,
    eab_keys: Mapping[str, str] | None = None,
    blocked_domains: Sequence[str] = (),
) -> Iterator[PebbleServer]:
    """Start Pebble with its files in ``folder``; stop it on exit.

    ``always_valid`` skips challenge validation (``PEBBLE_VA_ALWAYS_VALID``); without it
    Pebble really connects to ``127.0.0.1:<http_port>`` (or the name's address) for
    http-01. ``eab_keys`` (kid: base64url MAC key) makes external account binding
    required; ``blocked_domains`` are refused as ``rejectedIdentifier``.
    """
    executable = shutil.which("pebble")
    if executable is None:
        raise RuntimeError("pebble is not installed: run `make system-deps`")
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path, cert_pem = tls_certificate(folder)
    port, management_port = free_port(), free_port()
    http_port = http_port or free_port()
    config: dict[str, Any] = {
        "listenAddress": f"127.0.0.1:{port}",
        "managementListenAddress": f"127.0.0.1:{management_port}",
        "certificate": str(cert_path),
        "privateKey": str(key_path),
        "httpPort": http_port,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": bool(eab_keys),
    }
    if eab_keys:
        config["externalAccountMACKeys"] = dict(eab_keys)
    if blocked_domains:
        config["domainBlocklist"] = list(blocked_domains)
    config_path = folder / "pebble.json"
    config_path.write_text(json.dumps({"pebble": config}, indent=2))
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",
        # Pebble rejects 5% of good nonces by default; a test suite must not flake on it.
        "PEBBLE_WFE_NONCEREJECT": "0",
    }
    if always_valid:
        env["PEBBLE_VA_ALWAYS_VALID"] = "1"
    else:
        env.pop("PEBBLE_VA_ALWAYS_VALID", None)
    log_path = folder / "pebble.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [executable, "-config", str(config_path), "-strict=false"],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PebbleServer(
        directory_url=f"https://127.0.0.1:{port}/dir",
        management_url=f"https://127.0.0.1:{management_port}",
        ca_bundle_pem=cert_pem,
        http_port=http_port,
        log_path=log_path,
        process=process,
    )
    try:
        _wait_until_answering(server)
        yield server
    finally:
        _stop(process)


def _wait_until_answering(server: PebbleServer) -> None:
    context = ssl.create_default_context(cadata=server.ca_bundle_pem)
    deadline = time.monotonic() + STARTUP_SECONDS
    problem = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"pebble exited with {server.process.returncode}:\n{server.log()}")
        try:
            directory = httpx.get(server.directory_url, verify=context, timeout=2)
            management = httpx.get(f"{server.management_url}/roots/0", verify=context, timeout=2)
        except httpx.HTTPError as exc:
            problem = str(exc)
        else:
            if directory.status_code == 200 and management.status_code == 200:
                return
            problem = f"HTTP {directory.status_code} / {management.status_code}"
        time.sleep(0.05)
    raise RuntimeError(
        f"pebble did not answer at {server.directory_url} within {STARTUP_SECONDS} s "
        f"({problem}):\n{server.log()}"
    )
