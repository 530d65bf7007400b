"""Challenge solvers: what publishes the proof of control the CA looks for (RFC 8555
section 8), one class per way of publishing it."""

from __future__ import annotations

import abc
import errno
import hashlib
import ipaddress
import logging
import os
import re
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from handlers.base import HandlerError
from handlers.builtin.acme.jws import USER_AGENT, _b64

logger = logging.getLogger(__name__)

# Tokens come from the CA and become a file name and a URL path: only base64url letters.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


def key_authorization(token: str, account_thumbprint: str) -> str:
    """RFC 8555 section 8.1: what an http-01 resource serves for a token."""
    return f"{token}.{account_thumbprint}"


def dns01_txt_value(key_authorization_text: str) -> str:
    """RFC 8555 section 8.4: the ``_acme-challenge`` TXT value for a key authorization."""
    return _b64(hashlib.sha256(key_authorization_text.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class AcmeIdentifier:
    """What an authorization proves control of.

    Attributes:
        type: ``dns`` or ``ip``.
        value: The name (without ``*.`` for a wildcard) or the address.
        wildcard: True when the order asked for ``*.value``.
    """

    type: str
    value: str
    wildcard: bool = False

    def __str__(self) -> str:
        return f"*.{self.value}" if self.wildcard else self.value


class ChallengeSolver(abc.ABC):
    """Publishes what the CA looks for to validate one identifier, then removes it.

    A solver is created for one enrollment with the gateway's whole configuration, so a
    solver of your own can read parameters of your own. The gateway calls ``prepare`` for
    every pending authorization first, then asks the CA to validate them all, waits, and
    calls ``cleanup`` for each prepared one, whatever happened.

    Class attributes:
        challenge_types: The ACME challenge types the solver answers, preferred first;
            the gateway picks the first one the CA offers for an identifier.
    """

    challenge_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    @classmethod
    def config_errors(cls, config: Mapping[str, Any]) -> dict[str, str]:
        """What is wrong with the solver's parameters, by parameter name (empty: nothing)."""
        return {}

    @abc.abstractmethod
    def prepare(self, identifier: AcmeIdentifier, token: str, key_authorization: str) -> None:
        """Publish the challenge response; raise HandlerError when it cannot be."""

    @abc.abstractmethod
    def cleanup(self, identifier: AcmeIdentifier, token: str, key_authorization: str) -> None:
        """Remove what ``prepare`` published (called even when validation failed)."""


def _http01_path(token: str) -> str:
    return f"/.well-known/acme-challenge/{token}"


class WebrootSolver(ChallengeSolver):
    """http-01 through a web server already running: writes the file it serves.

    ``<webroot>/.well-known/acme-challenge/<token>`` holds the key authorization while the
    CA validates; the web server answering on port 80 for every name in the request must
    serve ``webroot`` as its document root (or that path from it).
    """

    challenge_types = ("http-01",)

    @classmethod
    def config_errors(cls, config: Mapping[str, Any]) -> dict[str, str]:
        webroot = str(config.get("webroot") or "")
        if not webroot:
            return {"webroot": "is required by the http-01-webroot solver"}
        if not os.path.isdir(webroot):
            return {"webroot": f"{webroot} is not a directory on this machine"}
        return {}

    def _path(self, token: str) -> Path:
        if not _TOKEN.fullmatch(token):
            raise HandlerError(f"the CA sent a challenge token that is not base64url: {token!r}")
        return Path(str(self.config["webroot"])) / ".well-known" / "acme-challenge" / token

    def prepare(self, identifier: AcmeIdentifier, token: str, key_authorization: str) -> None:
        path = self._path(token)
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.write_text(key_authorization, encoding="ascii")
            # The web server reads it under its own user.
            path.chmod(0o644)
        except PermissionError as exc:
            raise HandlerError(
                f"cannot write the challenge file {path} for {identifier}: permission denied",
                permanent=True,
            ) from exc
        except OSError as exc:
            raise HandlerError(
                f"cannot write the challenge file {path} for {identifier}: {exc.strerror}"
            ) from exc

    def cleanup(self, identifier: AcmeIdentifier, token: str, key_authorization: str) -> None:
        # The folders stay: web server configurations often name them.
        self._path(token).unlink(missing_ok=True)


def address_parse(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (every interface); ``ValueError`` if not."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port, such as 0.0.0.0:80 or 127.0.0.1:5002")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValueError(f"{host} is not an IPv6 address") from exc
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets: [::1]:5002")
    return host, int(port)


class _ChallengeServer:
    """One small HTTP server per address, shared by every standalone solver in the process.

    Two enrollments running at once in one worker publish their tokens on the same server
    instead of fighting for the port; it stops when its last token is withdrawn.
    """

    _lock = threading.Lock()
    _running: ClassVar[dict[tuple[str, int], _ChallengeServer]] = {}

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.responses: dict[str, str] = {}
        responses = self.responses

        class Handler(BaseHTTPRequestHandler):
            server_version = USER_AGENT

            def do_GET(self) -> None:
                prefix = _http01_path("")
                token = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
                body = responses.get(token)
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode("ascii")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt: str, *args: Any) -> None:
                logger.debug("http-01 standalone: " + fmt, *args)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET

        self.server = Server(address, Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"acme-http01-{address[1]}",
            daemon=True,
        )
        self.thread.start()

    @classmethod
    def publish(cls, address: tuple[str, int], token: str, body: str) -> None:
        with cls._lock:
            server = cls._running.get(address)
            if server is None:
                server = cls(address)
                cls._running[address] = server
            server.responses[token] = body

    @classmethod
    def withdraw(cls, address: tuple[str, int], token: str) -> None:
        with cls._lock:
            server = cls._running.get(address)
            if server is None:
                return
            server.responses.pop(token, None)
            if not server.responses:
                del cls._running[address]
                server.server.shutdown()
                server.server.server_close()


class StandaloneSolver(ChallengeSolver):
    """http-01 without a web server: serves the key authorizations itself while validating.

    Listens on ``standalone_address`` only during validation. The CA connects to port 80
    of each name, so that address must be port 80 on a machine the names point to, or a
    port that port 80 is forwarded to (a proxy passing ``/.well-known/acme-challenge/``).
    """

    challenge_types = ("http-01",)

    @classmethod
    def config_errors(cls, config: Mapping[str, Any]) -> dict[str, str]:
        address = str(config.get("standalone_address") or "")
        if not address:
            return {"standalone_address": "is required by the http-01-standalone solver"}
        try:
            address_parse(address)
        except ValueError as exc:
            return {"standalone_address": str(exc)}
        return {}

    @property
    def address(self) -> tuple[str, int]:
        return address_parse(str(self.config["standalone_address"]))

    def prepare(self, identifier: AcmeIdentifier, token: str, key_authorization: str) -> None:
        if not _TOKEN.fullmatch(token):
            raise HandlerError(f"the CA sent a challenge token that is not base64url: {token!r}")
        host, port = self.address
        try:
            _ChallengeServer.publish((host, port), token, key_authorization)
        except OSError as exc:
            where = f"{host or 'every interface'} port {port}"
            if exc.errno == errno.EADDRINUSE:
                raise HandlerError(
                    f"cannot serve the http-01 challenge on {where}: another program "
                    "(or another Certyard worker) is listening there"
                ) from exc
            if exc.errno == errno.EACCES:
                raise HandlerError(
                    f"cannot serve the http-01 challenge on {where}: permission denied "
                    "(ports below 1024 need privileges: forward port 80 to a high port)",
                    permanent=True,
                ) from exc
            raise HandlerError(
                f"cannot serve the http-01 challenge on {where}: {exc.strerror or exc}",
                permanent=exc.errno == errno.EADDRNOTAVAIL,
            ) from exc

    def cleanup(self, identifier: AcmeIdentifier, token: str, key_authorization: str) -> None:
        _ChallengeServer.withdraw(self.address, token)


class NoSolver(ChallengeSolver):
    """Publishes nothing: for names the CA validates without Certyard's help.

    Use it when the CA pre-authorizes the account's names (authorizations arrive valid),
    or when the CA validates without looking, as a test CA may. A pending authorization
    is still answered (its http-01 challenge first) so such a CA goes ahead.
    """

    challenge_types = ("http-01", "dns-01", "tls-alpn-01")

    def prepare(self, identifier: AcmeIdentifier, token: str, key_authorization: str) -> None:
        return None

    def cleanup(self, identifier: AcmeIdentifier, token: str, key_authorization: str) -> None:
        return None


#: The built-in solvers by the name the ``challenge_solver`` parameter stores.
SOLVERS: dict[str, type[ChallengeSolver]] = {
    "http-01-webroot": WebrootSolver,
    "http-01-standalone": StandaloneSolver,
    "none": NoSolver,
}
