"""The protocol (RFC 8555): one session with the CA, its directory, nonces and account."""

from __future__ import annotations

import itertools
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpx

from handlers.base import HandlerError
from handlers.builtin.acme.config import _MISSING_KEY, _Settings
from handlers.builtin.acme.errors import AcmeProblem, _response_problem, _transport_error
from handlers.builtin.acme.jws import USER_AGENT, _json_bytes, external_account_binding

# Poll quickly first (test CAs answer within a second), then every few seconds.
_POLL_DELAYS = (0.2, 0.4, 0.8, 1.5, 3.0)
_MAX_RETRY_AFTER_SECONDS = 30.0


def _origin(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "the CA"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.host}{port}"


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
