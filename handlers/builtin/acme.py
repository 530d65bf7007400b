"""The built-in ACME gateway ("certyard.acme"): certificates from any RFC 8555 CA.

The protocol is written here on ``httpx`` and ``cryptography`` alone (JWS signing, nonces,
orders, challenges), so the gateway needs nothing an administrator would have to install,
and every request it makes is visible in one module.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import datetime as dt
import errno
import hashlib
import hmac
import ipaddress
import itertools
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from handlers.base import HandlerError
from handlers.gateways import (
    CAGateway,
    CARecord,
    EnrollmentType,
    GatewayEnrollment,
    GatewayRevocation,
    Product,
    RecordStatus,
)
from handlers.parameters import Parameter, ParameterError, ParameterType

logger = logging.getLogger(__name__)

PRODUCT_ID = "default"
USER_AGENT = "Certyard-ACME/1"
_ERROR_PREFIX = "urn:ietf:params:acme:error:"
# Problems that the same request would meet again: the configuration or the request is at
# fault, so the platform fails the request at once instead of retrying it.
PERMANENT_PROBLEMS = frozenset(
    {
        "accountDoesNotExist",
        "badCSR",
        "badPublicKey",
        "badRevocationReason",
        "badSignatureAlgorithm",
        "caa",
        "externalAccountRequired",
        "invalidContact",
        "invalidProfile",
        "malformed",
        "rejectedIdentifier",
        "unauthorized",
        "unsupportedContact",
        "unsupportedIdentifier",
        "userActionRequired",
    }
)
# Tokens come from the CA and become a file name and a URL path: only base64url letters.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
# Poll quickly first (test CAs answer within a second), then every few seconds.
_POLL_DELAYS = (0.2, 0.4, 0.8, 1.5, 3.0)
_MAX_RETRY_AFTER_SECONDS = 30.0
_PROBLEM_EXCERPT = 300


def _b64(data: bytes) -> str:
    """base64url without padding, as JOSE writes every binary value."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_decode(text: str) -> bytes:
    """base64url (or plain base64, as some CAs hand out EAB keys), padding optional."""
    cleaned = "".join(text.split()).replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def account_key_generate() -> str:
    """A new ACME account key: EC P-256, unencrypted PKCS#8 PEM.

    Paste it into ``account_key_pem``. The key *is* the account: the CA finds the account
    by it, and only that account can revoke what it ordered, so keep it for as long as the
    certificates it issued matter.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def key_authorization(token: str, account_thumbprint: str) -> str:
    """RFC 8555 section 8.1: what an http-01 resource serves for a token."""
    return f"{token}.{account_thumbprint}"


def dns01_txt_value(key_authorization_text: str) -> str:
    """RFC 8555 section 8.4: the ``_acme-challenge`` TXT value for a key authorization."""
    return _b64(hashlib.sha256(key_authorization_text.encode("ascii")).digest())


# --- Account keys and JWS ---------------------------------------------------------------------


_EC_ALGORITHMS: dict[str, tuple[str, hashes.HashAlgorithm, int]] = {
    # curve name: (JWS alg, hash, coordinate size in bytes)
    "secp256r1": ("ES256", hashes.SHA256(), 32),
    "secp384r1": ("ES384", hashes.SHA384(), 48),
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384"}


@dataclass(frozen=True, slots=True)
class AccountKey:
    """An account's private key with what JWS needs of it (RFC 7515, 7517, 7518, 7638).

    Attributes:
        private_key: EC P-256 (ES256), EC P-384 (ES384) or RSA of 2048 bits or more (RS256).
        alg: The JWS algorithm the key signs with.
        jwk: The public key as a JWK, with only the members RFC 7638 hashes (so the same
            dict is both the ``jwk`` header and the thumbprint's input).
    """

    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    alg: str
    jwk: dict[str, str]

    @classmethod
    def from_pem(cls, pem: str) -> AccountKey:
        """The key in ``pem``; ``ValueError`` with a sentence when it cannot be used."""
        try:
            key = serialization.load_pem_private_key(pem.strip().encode("utf-8"), password=None)
        except TypeError as exc:
            raise ValueError("is encrypted: paste the key without a passphrase") from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ValueError("is not a PEM private key") from exc
        if isinstance(key, ec.EllipticCurvePrivateKey):
            algorithm = _EC_ALGORITHMS.get(key.curve.name)
            if algorithm is None:
                raise ValueError(f"is an EC key on {key.curve.name}: use P-256 or P-384")
            size = algorithm[2]
            numbers = key.public_key().public_numbers()
            jwk = {
                "crv": _CURVE_NAMES[key.curve.name],
                "kty": "EC",
                "x": _b64(numbers.x.to_bytes(size, "big")),
                "y": _b64(numbers.y.to_bytes(size, "big")),
            }
            return cls(key, algorithm[0], jwk)
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 2048:
                raise ValueError(f"is an RSA key of {key.key_size} bits: use 2048 or more")
            numbers = key.public_key().public_numbers()
            jwk = {
                "e": _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
                "kty": "RSA",
                "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            }
            return cls(key, "RS256", jwk)
        raise ValueError("is neither an EC (P-256, P-384) nor an RSA key")

    @property
    def thumbprint(self) -> str:
        """RFC 7638: SHA-256 of the JWK's required members, sorted, without whitespace."""
        return _b64(hashlib.sha256(_json_bytes(self.jwk)).digest())

    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature: for EC the raw ``r || s`` of fixed size, not DER."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        _, digest, size = _EC_ALGORITHMS[self.private_key.curve.name]
        der = self.private_key.sign(signing_input, ec.ECDSA(digest))
        r, s = decode_dss_signature(der)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def jws(
        self, url: str, payload: Mapping[str, Any] | None, *, nonce: str, kid: str | None
    ) -> dict[str, str]:
        """A flattened JWS for one ACME request (RFC 8555 section 6.2).

        ``payload`` None makes a POST-as-GET (empty payload). ``kid`` None puts the public
        key in the header (``jwk``): only for newAccount, and for the key's own lookups.
        """
        header: dict[str, Any] = {"alg": self.alg, "nonce": nonce, "url": url}
        if kid is None:
            header["jwk"] = self.jwk
        else:
            header["kid"] = kid
        protected = _b64(_json_bytes(header))
        body = "" if payload is None else _b64(_json_bytes(payload))
        signature = self.sign(f"{protected}.{body}".encode("ascii"))
        return {"protected": protected, "payload": body, "signature": _b64(signature)}


def external_account_binding(
    account_key: AccountKey, *, kid: str, hmac_key: bytes, url: str
) -> dict[str, str]:
    """RFC 8555 section 7.3.4: the account's JWK, signed with the CA's MAC key (HS256)."""
    protected = _b64(_json_bytes({"alg": "HS256", "kid": kid, "url": url}))
    payload = _b64(_json_bytes(account_key.jwk))
    mac = hmac.new(hmac_key, f"{protected}.{payload}".encode("ascii"), hashlib.sha256)
    return {"protected": protected, "payload": payload, "signature": _b64(mac.digest())}


# --- Challenge solvers ------------------------------------------------------------------------


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


def acme_parameters(
    solvers: Mapping[str, type[ChallengeSolver]], extra: tuple[Parameter, ...] = ()
) -> tuple[Parameter, ...]:
    """The gateway's parameters with a ``challenge_solver`` choice among ``solvers``.

    For a subclass that adds solvers (see :class:`AcmeGateway`); ``extra`` are the
    parameters its solvers read.
    """
    names = tuple(solvers)
    default = "http-01-webroot" if "http-01-webroot" in names else names[0]
    return (
        Parameter(
            "directory_url",
            ParameterType.URL,
            help="The CA's ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory.",
            required=True,
        ),
        Parameter(
            "account_key_pem",
            ParameterType.SECRET,
            help="The account's private key (PEM, EC P-256 recommended): the key is the account.",
        ),
        Parameter(
            "contact_email",
            ParameterType.EMAIL,
            help="Given to the CA when the account is created, for its expiry and policy mail.",
        ),
        Parameter(
            "eab_kid",
            help="External account binding key identifier, when the CA requires one.",
        ),
        Parameter(
            "eab_hmac_key",
            ParameterType.SECRET,
            help="External account binding MAC key (base64url), given with eab_kid.",
        ),
        Parameter(
            "challenge_solver",
            ParameterType.CHOICE,
            help="How Certyard proves control of the names.",
            choices=names,
            default=default,
        ),
        Parameter(
            "webroot",
            help="http-01-webroot: the document root the names' web server serves.",
        ),
        Parameter(
            "standalone_address",
            help="http-01-standalone: where to listen during validation (host:port).",
        ),
        Parameter(
            "ca_bundle",
            ParameterType.TEXT,
            help="PEM certificates to trust for the CA's HTTPS instead of the system's.",
        ),
        Parameter(
            "verify_tls",
            ParameterType.BOOLEAN,
            help="Check the CA's HTTPS certificate (turn off only for a test CA).",
            default=True,
        ),
        Parameter(
            "timeout_seconds",
            ParameterType.INTEGER,
            help="How long to wait for validation and issuance of one order.",
            default=30,
            minimum=1,
            maximum=600,
        ),
        *extra,
    )


# --- Configuration ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Settings:
    directory_url: str
    account_key: AccountKey | None
    contact_email: str
    eab_kid: str
    eab_hmac_key: bytes | None
    solver: type[ChallengeSolver]
    ca_bundle: str
    verify_tls: bool
    timeout: int


_MISSING_KEY = (
    "is required: paste an account private key in PEM (make one with `openssl genpkey "
    "-algorithm EC -pkeyopt ec_paramgen_curve:P-256`); the key is the ACME account"
)


def _read_settings(
    config: Mapping[str, Any], solvers: Mapping[str, type[ChallengeSolver]]
) -> tuple[_Settings, dict[str, str]]:
    """The configuration read once, and what is wrong with it by parameter name."""
    errors: dict[str, str] = {}

    def text(name: str) -> str:
        value = config.get(name)
        return value if isinstance(value, str) else ""

    account_key: AccountKey | None = None
    if text("account_key_pem").strip():
        try:
            account_key = AccountKey.from_pem(text("account_key_pem"))
        except ValueError as exc:
            errors["account_key_pem"] = str(exc)
    else:
        errors["account_key_pem"] = _MISSING_KEY

    eab_kid, eab_hmac_key = text("eab_kid").strip(), None
    if eab_kid and not text("eab_hmac_key").strip():
        errors["eab_hmac_key"] = "is required with eab_kid"
    elif text("eab_hmac_key").strip() and not eab_kid:
        errors["eab_kid"] = "is required with eab_hmac_key"
    elif eab_kid:
        try:
            eab_hmac_key = _b64_decode(text("eab_hmac_key"))
        except ValueError:
            errors["eab_hmac_key"] = "is not base64url, as the CA hands it out"

    solver_name = text("challenge_solver") or "http-01-webroot"
    solver = solvers.get(solver_name)
    if solver is None:
        errors["challenge_solver"] = f"must be one of {', '.join(solvers)}"
        solver = NoSolver
    else:
        errors.update(solver.config_errors(config))

    ca_bundle = text("ca_bundle").strip()
    if ca_bundle:
        try:
            x509.load_pem_x509_certificates(ca_bundle.encode("utf-8"))
        except ValueError:
            errors["ca_bundle"] = "is not one or more PEM certificates"

    verify_tls = config.get("verify_tls")
    timeout = config.get("timeout_seconds")
    settings = _Settings(
        directory_url=text("directory_url").strip(),
        account_key=account_key,
        contact_email=text("contact_email").strip(),
        eab_kid=eab_kid,
        eab_hmac_key=eab_hmac_key,
        solver=solver,
        ca_bundle=ca_bundle,
        verify_tls=verify_tls if isinstance(verify_tls, bool) else True,
        timeout=timeout if isinstance(timeout, int) and timeout > 0 else 30,
    )
    if not settings.directory_url:
        errors["directory_url"] = "is required"
    return settings, errors


# --- The protocol -----------------------------------------------------------------------------


def _origin(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "the CA"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.host}{port}"


class AcmeProblem(HandlerError):
    """The CA refused a request with an RFC 7807 problem document.

    Attributes:
        problem_type: The type without the ACME prefix (``rejectedIdentifier``), or the
            full URI for a CA's own types.
        detail: The CA's sentence.
        status: The HTTP status.
    """

    def __init__(self, action: str, status: int, problem: Mapping[str, Any], origin: str) -> None:
        full_type = str(problem.get("type") or "about:blank")
        self.problem_type = full_type.removeprefix(_ERROR_PREFIX)
        self.status = status
        self.detail = str(problem.get("detail") or "").strip()[:_PROBLEM_EXCERPT]
        details = [self.detail] if self.detail else []
        for sub in problem.get("subproblems") or []:
            if isinstance(sub, Mapping) and sub.get("detail"):
                details.append(str(sub["detail"])[:_PROBLEM_EXCERPT])
        said = "; ".join(details) or "no detail given"
        super().__init__(
            f"{action}: {origin} refused: {said} ({self.problem_type})",
            permanent=self.problem_type in PERMANENT_PROBLEMS,
            output={"status_code": status, "problem": dict(problem)},
        )


def _response_problem(action: str, response: httpx.Response, origin: str) -> HandlerError:
    """The error for an answer that is not a success: the problem document when there is one."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if isinstance(problem, dict) and problem.get("type"):
        return AcmeProblem(action, response.status_code, problem, origin)
    excerpt = response.text[:_PROBLEM_EXCERPT].strip()
    return HandlerError(
        f"{action}: {origin} answered HTTP {response.status_code}"
        + (f": {excerpt}" if excerpt else ""),
        # A server error may pass; a 4xx without a problem document will not.
        permanent=response.status_code < 500 and response.status_code != 429,
        output={"status_code": response.status_code},
    )


def _tls_refused(exc: BaseException) -> bool:
    """Whether a connection error is a refused server certificate (a configuration matter)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _transport_error(action: str, url: str, exc: httpx.HTTPError) -> HandlerError:
    if isinstance(exc, httpx.TimeoutException):
        return HandlerError(f"{action}: {url} did not answer in time")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return HandlerError(f"{action}: {url} cannot be used ({exc})", permanent=True)
    if _tls_refused(exc):
        return HandlerError(
            f"{action}: the HTTPS certificate of {url} is not trusted: put its CA in "
            "ca_bundle (or turn verify_tls off for a test CA)",
            permanent=True,
        )
    reason = str(exc) or type(exc).__name__
    return HandlerError(f"{action}: could not reach {url} ({reason})")


def _json_object(action: str, response: httpx.Response, origin: str) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise HandlerError(f"{action}: {origin} answered with something that is not JSON")
    return value


class AcmeSession:
    """One conversation with the CA: its directory, the current nonce, the account URL.

    Lives for one gateway call (the platform keeps no state between calls), so it fetches
    the directory and finds the account again each time: two requests, cheap beside
    issuance.
    """

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.origin = _origin(settings.directory_url)
        verify: ssl.SSLContext | bool = settings.verify_tls
        if settings.verify_tls and settings.ca_bundle:
            verify = ssl.create_default_context(cadata=settings.ca_bundle)
        self.http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(min(settings.timeout, 30), connect=min(settings.timeout, 10)),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._directory: dict[str, Any] | None = None
        self._nonce: str | None = None
        self.account_url: str | None = None

    def close(self) -> None:
        self.http.close()

    def _send(self, action: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise _transport_error(action, url, exc) from exc
        nonce = response.headers.get("Replay-Nonce")
        if nonce:
            self._nonce = nonce
        return response

    def directory(self) -> dict[str, Any]:
        """The directory, checked to be one (RFC 8555 section 7.1.1)."""
        if self._directory is not None:
            return self._directory
        url = self.settings.directory_url
        action = "reading the ACME directory"
        response = self._send(action, "GET", url, headers={"Accept": "application/json"})
        if response.status_code >= 500 or response.status_code == 429:
            raise HandlerError(f"{action}: the server answered HTTP {response.status_code}")
        if response.is_redirect:
            raise HandlerError(
                f"{action}: it redirects to {response.headers.get('Location', '?')}: "
                "use the directory's own URL",
                permanent=True,
            )
        try:
            directory = response.json() if response.is_success else None
        except ValueError:
            directory = None
        missing = [
            name
            for name in ("newNonce", "newAccount", "newOrder")
            if not isinstance(directory, dict) or not isinstance(directory.get(name), str)
        ]
        if missing or not isinstance(directory, dict):
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise HandlerError(
                f"{url} answered but is not an ACME directory (HTTP {response.status_code}, "
                f"{kind}, without {', '.join(missing)}): check directory_url",
                permanent=True,
                output={"status_code": response.status_code},
            )
        self._directory = directory
        return directory

    def resource(self, name: str) -> str:
        url = self.directory().get(name)
        if not isinstance(url, str) or not url:
            raise HandlerError(
                f"the ACME directory of {self.origin} offers no {name}", permanent=True
            )
        return url

    def meta(self) -> dict[str, Any]:
        meta = self.directory().get("meta")
        return meta if isinstance(meta, dict) else {}

    def new_nonce(self) -> str:
        url = self.resource("newNonce")
        response = self._send("asking for a nonce", "HEAD", url)
        nonce = response.headers.get("Replay-Nonce")
        if not response.is_success or not nonce:
            raise _response_problem("asking for a nonce", response, self.origin)
        return nonce  # kept by _send for the next request, too

    def _take_nonce(self) -> str:
        """A nonce for one request: the last one the CA sent, else a new one."""
        if self._nonce is None:
            self.new_nonce()
        nonce, self._nonce = self._nonce, None
        assert nonce is not None
        return nonce

    def post(
        self,
        action: str,
        url: str,
        payload: Mapping[str, Any] | None,
        *,
        use_jwk: bool = False,
        accept: str = "application/json",
    ) -> httpx.Response:
        """A signed POST (``payload`` None: POST-as-GET); raises on any refusal.

        A ``badNonce`` refusal is tried once more with the nonce it carried: servers reject
        valid nonces now and then on purpose, to keep clients honest.
        """
        key = self.settings.account_key
        if key is None:
            raise HandlerError(f"account_key_pem {_MISSING_KEY}", permanent=True)
        kid = None if use_jwk else self.account()
        for attempt in (1, 2):
            body = key.jws(url, payload, nonce=self._take_nonce(), kid=kid)
            response = self._send(
                action,
                "POST",
                url,
                content=_json_bytes(body),
                headers={"Content-Type": "application/jose+json", "Accept": accept},
            )
            if response.is_success:
                return response
            error = _response_problem(action, response, self.origin)
            if attempt == 1 and isinstance(error, AcmeProblem) and error.problem_type == "badNonce":
                continue
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def post_as_get(self, action: str, url: str) -> dict[str, Any]:
        """An ACME resource (order, authorization, challenge) as JSON."""
        return _json_object(action, self.post(action, url, None), self.origin)

    def _account_payload(self, *, only_existing: bool) -> dict[str, Any]:
        settings = self.settings
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if settings.contact_email:
            payload["contact"] = [f"mailto:{settings.contact_email}"]
        if only_existing:
            payload["onlyReturnExisting"] = True
        if settings.eab_kid and settings.eab_hmac_key is not None and settings.account_key:
            payload["externalAccountBinding"] = external_account_binding(
                settings.account_key,
                kid=settings.eab_kid,
                hmac_key=settings.eab_hmac_key,
                url=self.resource("newAccount"),
            )
        elif self.meta().get("externalAccountRequired"):
            raise HandlerError(
                f"{self.origin} requires external account binding: fill in eab_kid and "
                "eab_hmac_key with the values the CA gave you",
                permanent=True,
            )
        return payload

    def account(self) -> str:
        """The account's URL (its ``kid``), created on first use.

        newAccount is idempotent for a key (RFC 8555 section 7.3.1): it answers with the
        existing account, so there is nothing to remember between calls.
        """
        if self.account_url is None:
            response = self.post(
                "registering the ACME account",
                self.resource("newAccount"),
                self._account_payload(only_existing=False),
                use_jwk=True,
            )
            location = response.headers.get("Location")
            if not location:
                raise HandlerError(f"{self.origin} created the account but gave no URL for it")
            status = _json_object("registering the ACME account", response, self.origin).get(
                "status"
            )
            if status not in (None, "valid"):
                raise HandlerError(
                    f"the ACME account at {self.origin} is {status}: use another account key",
                    permanent=True,
                )
            self.account_url = location
        return self.account_url

    def account_exists(self) -> bool:
        """Whether the CA knows the key, without creating an account (for ``ping``)."""
        try:
            response = self.post(
                "looking up the ACME account",
                self.resource("newAccount"),
                self._account_payload(only_existing=True),
                use_jwk=True,
            )
        except AcmeProblem as exc:
            if exc.problem_type == "accountDoesNotExist":
                return False
            raise
        self.account_url = response.headers.get("Location") or None
        return True

    def poll(
        self, action: str, url: str, *, waiting: tuple[str, ...], deadline: float
    ) -> tuple[dict[str, Any], bool]:
        """The resource once its status leaves ``waiting``, and whether it did in time."""
        for attempt in itertools.count():
            response = self.post(action, url, None)
            resource = _json_object(action, response, self.origin)
            if resource.get("status") not in waiting:
                return resource, True
            delay = _POLL_DELAYS[min(attempt, len(_POLL_DELAYS) - 1)]
            asked = response.headers.get("Retry-After", "").strip()
            if asked.isdigit():
                delay = max(delay, min(float(asked), _MAX_RETRY_AFTER_SECONDS))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return resource, False
            time.sleep(min(delay, remaining))
        raise AssertionError("unreachable")  # pragma: no cover


# --- The gateway ------------------------------------------------------------------------------


def _csr_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """The DNS names and IP addresses a CSR asks for, as ``DNS:``/``IP:`` texts."""
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names = [f"DNS:{name}" for name in extension.value.get_values_for_type(x509.DNSName)]
    names += [f"IP:{address}" for address in extension.value.get_values_for_type(x509.IPAddress)]
    return names


def _identifier(san: str) -> dict[str, str] | None:
    """An ACME identifier for ``DNS:name`` or ``IP:address``; None for anything else."""
    kind, _, value = san.partition(":")
    kind, value = kind.strip().upper(), value.strip()
    if kind == "DNS" and value:
        return {"type": "dns", "value": value.lower().rstrip(".")}
    if kind in ("IP", "IP ADDRESS") and value:
        try:
            return {"type": "ip", "value": str(ipaddress.ip_address(value))}
        except ValueError:
            return None
    return None


def _identifiers(
    request: GatewayEnrollment, csr: x509.CertificateSigningRequest
) -> list[dict[str, str]]:
    """The order's identifiers: the request's DNS and IP names, else the CSR's own.

    RFC 8555 section 7.4 wants the CSR to name exactly the order's identifiers; a
    mismatch is refused here, before an order is spent on it.
    """
    identifiers: list[dict[str, str]] = []
    refused: list[str] = []
    for san in request.sans or _csr_names(csr):
        identifier = _identifier(san)
        if identifier is None:
            refused.append(san)
        elif identifier not in identifiers:
            identifiers.append(identifier)
    if refused:
        raise HandlerError(
            f"ACME certifies DNS names and IP addresses only; the request also names "
            f"{', '.join(refused)}",
            permanent=True,
        )
    if not identifiers:
        raise HandlerError(
            "the request names no DNS name or IP address (subject alternative names) to "
            "certify: ACME certifies those only",
            permanent=True,
        )
    in_csr = [identifier for san in _csr_names(csr) if (identifier := _identifier(san))]
    wanted = {(i["type"], i["value"]) for i in identifiers}
    asked = {(i["type"], i["value"]) for i in in_csr}
    if wanted != asked:
        texts = sorted(f"{kind.upper()}:{value}" for kind, value in asked) or ["none"]
        raise HandlerError(
            f"the CSR names {', '.join(texts)} but the request asks for "
            f"{', '.join(sorted(f'{kind.upper()}:{value}' for kind, value in wanted))}: ACME needs "
            "the same names in both",
            permanent=True,
        )
    return identifiers


def _pem_certificates(action: str, text: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(text.encode("utf-8"))
    except ValueError as exc:
        raise HandlerError(f"{action}: the CA's answer is not a PEM certificate chain") from exc
    return certificates


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _problem_text(problem: Any) -> str:
    if isinstance(problem, Mapping):
        detail = str(problem.get("detail") or "").strip()[:_PROBLEM_EXCERPT]
        kind = str(problem.get("type") or "").removeprefix(_ERROR_PREFIX)
        return f"{detail} ({kind})" if kind else detail or "no detail given"
    return "no detail given"


class AcmeGateway(CAGateway):
    """Issues and revokes through an ACME (RFC 8555) CA: Let's Encrypt, step-ca, Pebble.

    **Enrollment** places an order for the request's DNS names and IP addresses, proves
    control of each through the **challenge_solver**, sends the CSR, and returns the
    certificate with its chain. The CA decides validity: a template's validity is not
    sent. Renew and reissue are new orders with the new CSR (ACME has no other kind). A
    retried enrollment places a new order too: ACME has no reference of the client's to
    find the first one by. When the CA is still issuing after **timeout_seconds** the
    request is left *pending* with the order's URL; fetching it later collects the
    certificate.

    **The account** is the key in **account_key_pem** (EC P-256 recommended;
    ``account_key_generate()`` in this module makes one): the account is created at the
    first enrollment (agreeing to the CA's terms of service on the administrator's
    behalf) and found again by its key afterwards. Give **eab_kid** and **eab_hmac_key**
    when the CA binds accounts to an external account. Only the account that ordered a
    certificate can revoke it: keep the key.

    **Solvers** (``challenge_solver``): ``http-01-webroot`` writes
    ``<webroot>/.well-known/acme-challenge/<token>`` for a web server already serving
    the names; ``http-01-standalone`` serves the challenges itself on
    **standalone_address** while the CA validates; ``none`` publishes nothing (the CA
    pre-authorizes the names, or is a test CA). To add a solver (a DNS-01 one for your
    DNS provider), subclass :class:`ChallengeSolver` (``challenge_types = ("dns-01",)``;
    publish :func:`dns01_txt_value` of the key authorization at
    ``_acme-challenge.<name>``), then subclass this gateway::

        class MyAcme(AcmeGateway):
            solvers = {**SOLVERS, "dns-01-mydns": MyDnsSolver}
            parameters = acme_parameters(solvers, extra=(Parameter("dns_token", ...),))

    and declare it under your own entry point.

    **Synchronization** is not offered: RFC 8555 has no way to list what an account was
    issued (its ``orders`` list holds pending orders only, and most CAs leave it out).
    **Fetch** reads the order again: a revocation does not show there.

    Parameters: **directory_url**, **account_key_pem** (secret), **contact_email**,
    **eab_kid** and **eab_hmac_key** (secret), **challenge_solver**, **webroot**,
    **standalone_address**, **ca_bundle** (PEM, trusted for the CA's HTTPS instead of
    the system's), **verify_tls**, **timeout_seconds** (1-600, per order). One product,
    ``default``, whose optional **profile** names one the CA advertises (``meta.profiles``).
    """

    label = "ACME CA"
    supports_sync = False
    solvers: ClassVar[Mapping[str, type[ChallengeSolver]]] = SOLVERS
    parameters = acme_parameters(SOLVERS)

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        _, errors = _read_settings(config, cls.solvers)
        if errors:
            raise ParameterError(errors)

    def _settings(self) -> _Settings:
        settings, errors = _read_settings(self.config, type(self).solvers)
        if errors:
            raise HandlerError(
                "the ACME gateway's parameters are wrong: "
                + "; ".join(f"{name} {message}" for name, message in errors.items()),
                permanent=True,
            )
        return settings

    @contextmanager
    def session(self, settings: _Settings | None = None) -> Iterator[AcmeSession]:
        """A conversation with the CA, closed afterwards."""
        acme = AcmeSession(settings or self._settings())
        try:
            yield acme
        finally:
            acme.close()

    def ping(self) -> None:
        """The directory answers, hands out nonces, and the account key is accepted.

        The account is looked up, not created (``onlyReturnExisting``): a key the CA does
        not know yet is fine, the first enrollment creates its account.
        """
        settings, errors = _read_settings(self.config, type(self).solvers)
        if "directory_url" in errors:
            raise HandlerError(f"directory_url {errors['directory_url']}", permanent=True)
        with self.session(settings) as acme:
            acme.directory()
            acme.new_nonce()
            if errors:
                raise HandlerError(
                    f"{acme.origin} answers, but the parameters are wrong: "
                    + "; ".join(f"{name} {message}" for name, message in errors.items()),
                    permanent=True,
                )
            acme.account_exists()

    def products(self) -> list[Product]:
        return [
            Product(
                PRODUCT_ID,
                "ACME certificate",
                "A domain-validated certificate for the request's DNS names and IP addresses.",
                parameters=(
                    Parameter(
                        "profile",
                        help="A profile the CA advertises (meta.profiles); empty: its default.",
                    ),
                ),
            )
        ]

    def enroll(self, request: GatewayEnrollment) -> CARecord:
        settings = self._settings()
        try:
            csr = x509.load_pem_x509_csr(request.csr_pem.encode("utf-8"))
        except ValueError as exc:
            raise HandlerError(
                "the request's CSR is not a PEM PKCS#10 request", permanent=True
            ) from exc
        identifiers = _identifiers(request, csr)
        profile = str(request.product_parameters.get("profile") or "").strip()
        names = ", ".join(identifier["value"] for identifier in identifiers)
        deadline = time.monotonic() + settings.timeout
        with self.session(settings) as acme:
            payload: dict[str, Any] = {"identifiers": identifiers}
            if profile:
                offered = acme.meta().get("profiles")
                if not isinstance(offered, dict) or profile not in offered:
                    known = ", ".join(sorted(offered)) if isinstance(offered, dict) else "none"
                    raise HandlerError(
                        f"{acme.origin} offers no profile {profile!r} (it offers: {known})",
                        permanent=True,
                    )
                payload["profile"] = profile
            action = f"placing the order for {names}"
            response = acme.post(action, acme.resource("newOrder"), payload)
            order_url = response.headers.get("Location")
            if not order_url:
                raise HandlerError(f"{acme.origin} accepted the order but gave no URL for it")
            order = _json_object(action, response, acme.origin)
            self._authorize(acme, order, deadline)
            order, issued = self._finalize(acme, order_url, order, csr, deadline)
            if not issued:
                return CARecord(
                    ca_request_id=order_url,
                    status=RecordStatus.PENDING,
                    product_id=request.product_id,
                    message=(
                        f"{acme.origin} is still issuing after {settings.timeout} s "
                        f"(order {order.get('status')})"
                    ),
                )
            record = self._issued(acme, order_url, order, product_id=request.product_id)
        leaf = x509.load_pem_x509_certificate((record.certificate_pem or "").encode("ascii"))
        if leaf.public_key() != csr.public_key():
            raise HandlerError(
                f"{acme.origin} issued a certificate for another key than the CSR's",
                permanent=True,
            )
        kind = "renewed" if request.type == EnrollmentType.RENEW else "issued"
        return dataclasses.replace(record, message=f"{kind} by {acme.origin} for {names}")

    def fetch(self, ca_request_id: str) -> CARecord:
        """The order as it stands (``ca_request_id`` is its URL), with its certificate once
        valid. ACME orders do not show revocation: a revoked certificate reads as issued."""
        if not ca_request_id.startswith(("https://", "http://")):
            raise HandlerError(f"{ca_request_id!r} is not an ACME order URL", permanent=True)
        with self.session() as acme:
            order = acme.post_as_get("reading the order", ca_request_id)
            status = order.get("status")
            if status == "valid":
                return self._issued(acme, ca_request_id, order, product_id=PRODUCT_ID)
            if status == "invalid":
                return CARecord(
                    ca_request_id=ca_request_id,
                    status=RecordStatus.FAILED,
                    product_id=PRODUCT_ID,
                    message=f"the order failed: {_problem_text(order.get('error'))}",
                )
            return CARecord(
                ca_request_id=ca_request_id,
                status=RecordStatus.PENDING,
                product_id=PRODUCT_ID,
                message=f"the order is {status}",
            )

    def revoke(self, request: GatewayRevocation) -> CARecord:
        """revokeCert with the certificate and the reason, signed by the account that
        ordered it; a certificate the CA had already revoked counts as revoked."""
        try:
            certificate = x509.load_pem_x509_certificate(request.certificate_pem.encode("utf-8"))
        except ValueError as exc:
            raise HandlerError("the certificate to revoke is not PEM", permanent=True) from exc
        der = certificate.public_bytes(serialization.Encoding.DER)
        payload = {"certificate": _b64(der), "reason": int(request.reason)}
        with self.session() as acme:
            message = f"revoked at {acme.origin} ({request.reason.keyword})"
            try:
                acme.post("revoking the certificate", acme.resource("revokeCert"), payload)
            except AcmeProblem as exc:
                if exc.problem_type != "alreadyRevoked":
                    raise
                message = f"{acme.origin} had already revoked it"
        return CARecord(
            ca_request_id=request.ca_request_id,
            status=RecordStatus.REVOKED,
            certificate_pem=request.certificate_pem,
            serial_number=format(certificate.serial_number, "x"),
            revoked_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            revocation_reason=request.reason,
            message=message,
        )

    # --- Steps of an enrollment -------------------------------------------------------------

    def _authorize(self, acme: AcmeSession, order: Mapping[str, Any], deadline: float) -> None:
        """Get every authorization of the order valid, solving the pending ones."""
        key = acme.settings.account_key
        assert key is not None  # checked with the settings
        solver = acme.settings.solver(self.config)
        prepared: list[tuple[AcmeIdentifier, str, str]] = []
        pending: list[tuple[str, str, AcmeIdentifier]] = []
        try:
            for authz_url in order.get("authorizations") or []:
                authz = acme.post_as_get("reading an authorization", str(authz_url))
                identifier = AcmeIdentifier(
                    str((authz.get("identifier") or {}).get("type", "")),
                    str((authz.get("identifier") or {}).get("value", "")),
                    bool(authz.get("wildcard")),
                )
                status = authz.get("status")
                if status == "valid":
                    continue
                if status != "pending":
                    # A failed or expired authorization the CA reused: a new order may
                    # get a fresh one.
                    raise HandlerError(
                        f"the authorization for {identifier} is {status}: "
                        f"{_problem_text(self._challenge_error(authz))}",
                        output={"authorization": authz},
                    )
                challenge = self._challenge(authz, solver, identifier)
                token = str(challenge.get("token") or "")
                if not _TOKEN.fullmatch(token):
                    raise HandlerError(
                        f"{acme.origin} sent a challenge token that is not base64url"
                    )
                authorization = key_authorization(token, key.thumbprint)
                solver.prepare(identifier, token, authorization)
                prepared.append((identifier, token, authorization))
                pending.append((str(authz_url), str(challenge["url"]), identifier))
            for _, challenge_url, identifier in pending:
                acme.post(f"asking the CA to validate {identifier}", challenge_url, {})
            for authz_url, _, identifier in pending:
                authz, in_time = acme.poll(
                    f"waiting for the validation of {identifier}",
                    authz_url,
                    waiting=("pending",),
                    deadline=deadline,
                )
                if not in_time:
                    raise HandlerError(
                        f"{acme.origin} had not validated {identifier} after "
                        f"{acme.settings.timeout} s"
                    )
                if authz.get("status") != "valid":
                    problem = self._challenge_error(authz)
                    kind = str((problem or {}).get("type", "")).removeprefix(_ERROR_PREFIX)
                    raise HandlerError(
                        f"{acme.origin} could not validate {identifier}: {_problem_text(problem)}",
                        permanent=kind in PERMANENT_PROBLEMS,
                        output={"authorization": authz},
                    )
        finally:
            for identifier, token, authorization in reversed(prepared):
                try:
                    solver.cleanup(identifier, token, authorization)
                except Exception:
                    # The certificate matters more than a stale challenge file.
                    logger.warning(
                        "could not clean up the challenge for %s", identifier, exc_info=True
                    )

    @staticmethod
    def _challenge(
        authz: Mapping[str, Any], solver: ChallengeSolver, identifier: AcmeIdentifier
    ) -> Mapping[str, Any]:
        challenges = [c for c in authz.get("challenges") or [] if isinstance(c, Mapping)]
        by_type = {str(c.get("type")): c for c in challenges if c.get("url")}
        for kind in solver.challenge_types:
            if kind in by_type:
                return by_type[kind]
        offered = ", ".join(by_type) or "none"
        raise HandlerError(
            f"the CA offers no {' or '.join(solver.challenge_types)} challenge for "
            f"{identifier} (it offers: {offered}): choose another challenge_solver",
            permanent=True,
        )

    @staticmethod
    def _challenge_error(authz: Mapping[str, Any]) -> Mapping[str, Any] | None:
        for challenge in authz.get("challenges") or []:
            if isinstance(challenge, Mapping) and isinstance(challenge.get("error"), Mapping):
                return challenge["error"]
        return None

    def _finalize(
        self,
        acme: AcmeSession,
        order_url: str,
        order: dict[str, Any],
        csr: x509.CertificateSigningRequest,
        deadline: float,
    ) -> tuple[dict[str, Any], bool]:
        """Send the CSR once the order is ready; the order and whether it was issued in time."""
        finalized = False
        while True:
            status = order.get("status")
            if status == "valid":
                return order, True
            if status == "invalid":
                raise HandlerError(
                    f"{acme.origin} failed the order: {_problem_text(order.get('error'))}",
                    output={"order": order},
                )
            if status == "ready" and not finalized:
                der = csr.public_bytes(serialization.Encoding.DER)
                response = acme.post(
                    "sending the CSR", str(order.get("finalize")), {"csr": _b64(der)}
                )
                order = _json_object("sending the CSR", response, acme.origin)
                finalized = True
                continue
            if status not in ("pending", "ready", "processing"):
                raise HandlerError(f"{acme.origin} answered an order in status {status!r}")
            order, in_time = acme.poll(
                "waiting for the order",
                order_url,
                waiting=(str(status),),
                deadline=deadline,
            )
            if not in_time:
                if finalized:
                    return order, False
                raise HandlerError(
                    f"{acme.origin} had not made the order ready after {acme.settings.timeout} s"
                )

    @staticmethod
    def _issued(
        acme: AcmeSession, order_url: str, order: Mapping[str, Any], *, product_id: str
    ) -> CARecord:
        action = "downloading the certificate"
        certificate_url = order.get("certificate")
        if not isinstance(certificate_url, str) or not certificate_url:
            raise HandlerError(f"{action}: {acme.origin} gave no certificate URL for the order")
        response = acme.post(
            action, certificate_url, None, accept="application/pem-certificate-chain"
        )
        chain = _pem_certificates(action, response.text)
        if not chain:
            raise HandlerError(f"{action}: {acme.origin} sent no certificate")
        leaf, *issuers = chain
        return CARecord(
            ca_request_id=order_url,
            status=RecordStatus.ISSUED,
            certificate_pem=_pem(leaf),
            chain_pem=tuple(_pem(issuer) for issuer in issuers),
            serial_number=format(leaf.serial_number, "x"),
            product_id=product_id,
            message=f"issued by {acme.origin}",
        )
