"""nginx (Debian's package), started for a test and stopped after it.

It serves TLS on ``127.0.0.1:<free port>`` from a certificate file and a key file in a
store folder the test gives (the folder a Certyard agent manages), so a test can check
what a real web server serves after the agent wrote and reloaded. Everything nginx
writes (configuration, pid file, logs, temporary folders) stays in its own prefix folder.

The reload command the agent runs is :attr:`NginxServer.reload_command`
(``nginx -c <conf> -p <prefix> -s reload``): put it in the agent's local configuration
with ``certyard-orchestrator reload --store-path <store> --command ...``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.servers.pebble import free_port

STARTUP_SECONDS = 15.0
NGINX_CANDIDATES = ("/usr/sbin/nginx", "nginx")


def nginx_executable() -> str | None:
    """The nginx binary, or None when it is not installed (`make system-deps` installs it)."""
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


@dataclass
class NginxServer:
    """A running nginx.

    Attributes:
        host, port: where it serves TLS.
        certificate_path, key_path: the files its ``ssl_certificate`` directives name.
        prefix: its prefix folder (config, pid file, logs).
        config_path: its configuration file.
    """

    executable: str
    host: str
    port: int
    certificate_path: Path
    key_path: Path
    prefix: Path
    config_path: Path

    @property
    def pid_path(self) -> Path:
        return self.prefix / "nginx.pid"

    @property
    def reload_command(self) -> list[str]:
        """argv that makes this nginx re-read its configuration and certificate files."""
        return [
            self.executable,
            "-c",
            str(self.config_path),
            "-p",
            str(self.prefix),
            "-s",
            "reload",
        ]

    def master_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def error_log(self) -> str:
        path = self.prefix / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def served_sha256(self, *, sni: str | None = None, timeout: float = 5) -> str:
        """SHA-256 (hex) of the leaf certificate nginx serves now (no chain validation)."""
        return served_sha256(self.host, self.port, sni=sni, timeout=timeout)

    def reload(self) -> None:
        subprocess.run(self.reload_command, check=True, capture_output=True, timeout=30)


def served_sha256(host: str, port: int, *, sni: str | None = None, timeout: float = 5) -> str:
    """The SHA-256 of the leaf a TLS server at host:port serves (hex, lower case)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # We compare fingerprints, so no chain or name validation: the test CA is not trusted.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni or None) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


CONFIG = """\
worker_processes 1;
daemon on;
pid {pid};
error_log {prefix}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen {host}:{port} ssl;
        server_name _;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        location / {{ return 200 "certyard e2e\\n"; }}
    }}
}}
"""


def nginx_stop(server: NginxServer) -> None:
    """``nginx -s quit``; if the master lingers or never wrote its pid, KILL it."""
    subprocess.run(
        [server.executable, "-c", str(server.config_path), "-p", str(server.prefix), "-s", "stop"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    pid = server.master_pid()
    if pid is None:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextmanager
def nginx_server(
    prefix: Path,
    *,
    certificate_path: Path,
    key_path: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> Iterator[NginxServer]:
    """Start nginx serving ``certificate_path``/``key_path`` (they must exist and match);
    stop it on exit. ``prefix`` holds its configuration, pid file and logs."""
    executable = nginx_executable()
    if executable is None:
        raise RuntimeError("nginx is not installed: run `make system-deps`")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "logs").mkdir(exist_ok=True)
    (prefix / "tmp").mkdir(exist_ok=True)
    port = port or free_port()
    config_path = prefix / "nginx.conf"
    server = NginxServer(
        executable=executable,
        host=host,
        port=port,
        certificate_path=certificate_path,
        key_path=key_path,
        prefix=prefix,
        config_path=config_path,
    )
    config_path.write_text(
        CONFIG.format(
            pid=server.pid_path,
            prefix=prefix,
            host=host,
            port=port,
            certificate=certificate_path,
            key=key_path,
        )
    )
    nginx_start(server)
    try:
        nginx_wait_until_serving(server)
        yield server
    finally:
        nginx_stop(server)


def nginx_start(server: NginxServer) -> None:
    """Start nginx with the server's configuration file and prefix; its errors if it fails."""
    started = subprocess.run(
        [server.executable, "-c", str(server.config_path), "-p", str(server.prefix)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if started.returncode != 0:
        raise RuntimeError(
            f"nginx did not start ({started.returncode}):\n{started.stdout}{started.stderr}"
            f"\n{server.error_log()}"
        )


def nginx_wait_until_serving(server: NginxServer) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    problem = "no answer"
    while time.monotonic() < deadline:
        try:
            server.served_sha256(timeout=2)
        except OSError as exc:
            problem = str(exc)
        else:
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"nginx did not serve TLS on {server.host}:{server.port} within {STARTUP_SECONDS} s "
        f"({problem}):\n{server.error_log()}"
    )
