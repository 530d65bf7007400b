"""A zoo of local endpoints for TLS discovery tests: one real nginx (Debian's) serving
several kinds of TLS on ports of 127.0.0.1, a plain HTTP port, a port that accepts and
never answers, and a closed port.

Every TLS server is asked for :data:`SNI` (the scan store's ``sni_names``); each serves
its own certificate on its own port:

- ``valid``: a leaf for SNI issued by the zoo's root, served alone.
- ``chain``: a leaf for SNI under an intermediate, served with the intermediate.
- ``expired``: a leaf for SNI that expired ten days ago.
- ``self_signed``: a self-signed leaf for SNI.
- ``wrong_name``: a leaf for another name.
- ``tls10``: a leaf for SNI on a server that speaks TLS 1.0 only.
- ``http``: plain HTTP (nginx answers a TLS hello with 400, as deployed servers do).
- ``silent``: a socket that listens and never accepts (the kernel completes the
  connection; no byte ever comes back).
- ``closed``: a port nobody listens on.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.certs import Issued, issue
from tests.servers.nginx import (
    NginxServer,
    nginx_executable,
    nginx_start,
    nginx_stop,
    nginx_wait_until_serving,
)
from tests.servers.pebble import free_port

SNI = "site.certyard.test"
TLS_KINDS = ("valid", "chain", "expired", "self_signed", "wrong_name", "tls10")

_SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name _;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        {extra}
        location / {{ return 200 "{kind}\\n"; }}
    }}
"""
_PLAIN = """\
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        location / {{ return 200 "plain\\n"; }}
    }}
"""
_CONFIG = """\
worker_processes 1;
daemon on;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{servers}
}}
"""


@dataclass
class TlsZoo:
    """The running zoo: ``ports[kind]`` for every kind, ``served[kind]`` the certificates
    each TLS kind presents (leaf first)."""

    ports: dict[str, int]
    served: dict[str, list[Issued]]
    ca: Issued
    intermediate: Issued
    nginx: NginxServer
    _silent: socket.socket | None = field(default=None, repr=False)

    def kind_of_port(self, port: int) -> str:
        return next(kind for kind, each in self.ports.items() if each == port)


def _certificates() -> tuple[Issued, Issued, dict[str, list[Issued]]]:
    ca = issue("Certyard Zoo Root", ca=True, days=3650)
    intermediate = issue("Certyard Zoo Intermediate", issuer=ca, ca=True, days=1825)
    served = {
        "valid": [issue(SNI, issuer=ca, sans=(SNI,), days=90)],
        "chain": [issue(SNI, issuer=intermediate, sans=(SNI,), days=60), intermediate],
        "expired": [issue(SNI, issuer=ca, sans=(SNI,), days=-10)],
        "self_signed": [issue(SNI, sans=(SNI,), days=200)],
        "wrong_name": [issue("other.certyard.test", issuer=ca, sans=("other.certyard.test",))],
        "tls10": [issue(SNI, issuer=ca, sans=(SNI,), days=120)],
    }
    return ca, intermediate, served


@contextmanager
def tls_zoo(prefix: Path) -> Iterator[TlsZoo]:
    """Start the zoo under ``prefix`` (nginx's configuration, certificates and logs)."""
    executable = nginx_executable()
    if executable is None:
        raise RuntimeError("nginx is not installed: run `make system-deps`")
    for folder in ("logs", "tmp", "certs"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    ca, intermediate, served = _certificates()
    ports = {kind: free_port() for kind in (*TLS_KINDS, "http", "closed")}
    blocks = []
    for kind in TLS_KINDS:
        chain = served[kind]
        certificate_path = prefix / "certs" / f"{kind}.pem"
        key_path = prefix / "certs" / f"{kind}.key"
        certificate_path.write_text("".join(each.pem for each in chain))
        key_path.write_text(chain[0].key_pem)
        extra = 'ssl_protocols TLSv1; ssl_ciphers "ALL:@SECLEVEL=0";' if kind == "tls10" else ""
        blocks.append(
            _SERVER.format(
                port=ports[kind],
                certificate=certificate_path,
                key=key_path,
                extra=extra,
                kind=kind,
            )
        )
    blocks.append(_PLAIN.format(port=ports["http"]))
    config_path = prefix / "nginx.conf"
    config_path.write_text(_CONFIG.format(prefix=prefix, servers="".join(blocks)))
    nginx = NginxServer(
        executable=executable,
        host="127.0.0.1",
        port=ports["valid"],
        certificate_path=prefix / "certs" / "valid.pem",
        key_path=prefix / "certs" / "valid.key",
        prefix=prefix,
        config_path=config_path,
    )
    nginx_start(nginx)
    # Listens, never accepts: connections complete in the kernel's backlog, then silence.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    ports["silent"] = silent.getsockname()[1]
    zoo = TlsZoo(ports, served, ca, intermediate, nginx, silent)
    try:
        nginx_wait_until_serving(nginx)
        yield zoo
    finally:
        silent.close()
        nginx_stop(nginx)
