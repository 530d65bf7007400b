"""The agent's HTTP client for the platform's orchestrator API (see ``orchestrators.protocol``)."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrators import __version__, protocol
from orchestrators.sdk import InventoryEntry

logger = logging.getLogger(__name__)

USER_AGENT = f"certyard-orchestrator/{__version__}"
DEFAULT_TIMEOUT_SECONDS = 30.0
# A long poll may legitimately take `wait` seconds before the platform answers.
LONG_POLL_GRACE_SECONDS = 10.0
# Refresh the session this long before the platform says it expires.
SESSION_REFRESH_MARGIN_SECONDS = 30.0


class PlatformUnavailable(Exception):
    """The platform could not be reached or failed (connection error, timeout, 5xx): back off."""


class PlatformError(Exception):
    """The platform refused a request (a 4xx other than the cases below)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, Any] | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        # A refusal's particular cause, when the platform names one (e.g. certificate_revoked).
        self.reason = reason


class NotApproved(PlatformError):
    """The orchestrator is registered but not approved (yet): 403 ``not_approved``."""


class IdentityRejected(PlatformError):
    """The platform refused to open a session: the orchestrator was reset, deleted or is
    unknown, or its certificate was revoked. The agent must re-register."""

    @property
    def revoked(self) -> bool:
        """The platform refused because this orchestrator's certificate was revoked."""
        return self.reason == CERTIFICATE_REVOKED


# The reason the platform gives with identity_rejected when the certificate was revoked.
CERTIFICATE_REVOKED = "certificate_revoked"


_last_issued_at = 0
_issued_at_lock = threading.Lock()


def next_issued_at(clock: Callable[[], float] = time.time) -> int:
    """The current Unix second, but strictly greater than any value returned before in this
    process: the platform accepts an assertion only if it is later than the last one."""
    global _last_issued_at
    with _issued_at_lock:
        _last_issued_at = max(int(clock()), _last_issued_at + 1)
        return _last_issued_at


def session_assertion(
    *,
    orchestrator_id: str,
    private_key: ec.EllipticCurvePrivateKey,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The body of ``POST session``: a fresh, signed proof of possession of the agent's key."""
    issued_at = next_issued_at(clock)
    nonce = secrets.token_urlsafe(16)
    signing_input = protocol.session_signing_input(
        orchestrator_id=orchestrator_id, issued_at=issued_at, nonce=nonce
    )
    signature = private_key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    return {
        "orchestrator_id": orchestrator_id,
        "issued_at": issued_at,
        "nonce": nonce,
        "signature": base64.b64encode(signature).decode("ascii"),
    }


def _error_of(response: httpx.Response) -> tuple[str, str, dict[str, Any], str]:
    """(code, message, fields, reason) from an error body, tolerating bodies that are not
    ours."""
    try:
        error = response.json()["error"]
        return (
            str(error.get("code", "error")),
            str(error.get("message", response.reason_phrase)),
            dict(error.get("fields") or {}),
            str(error.get("reason") or ""),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return "error", f"HTTP {response.status_code} {response.reason_phrase}", {}, ""


def _time_of(value: Any) -> dt.datetime | None:
    """An ISO 8601 time from an answer, or None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _verify_option(verify_tls: bool | str) -> bool | ssl.SSLContext:
    if isinstance(verify_tls, str):
        return ssl.create_default_context(cafile=verify_tls)
    return verify_tls


class PlatformClient:
    """A synchronous client for the orchestrator API.

    Several threads may send requests at once (the agent sends report chunks side by
    side); opening a session is done by one of them at a time. Every call raises
    :class:`PlatformUnavailable`, :class:`NotApproved`, :class:`IdentityRejected` or
    :class:`PlatformError` rather than returning an error.
    """

    def __init__(
        self,
        platform_url: str,
        *,
        verify_tls: bool | str = True,
        orchestrator_id: str | None = None,
        private_key: ec.EllipticCurvePrivateKey | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport``: where requests go instead of the network (tests)."""
        self.orchestrator_id = orchestrator_id
        self._private_key = private_key
        self._token: str | None = None
        self._token_expires_at = 0.0
        self.status: str | None = None
        # How many sessions this client opened: the agent reports its limits after each.
        self.sessions_opened = 0
        # From the platform's session and heartbeat answers (None from older platforms):
        # when the client certificate expires, and from when the agent should renew it.
        self.certificate_not_after: dt.datetime | None = None
        self.renew_after: dt.datetime | None = None
        self._session_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=platform_url.rstrip("/") + protocol.API_PREFIX,
            verify=_verify_option(verify_tls),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=DEFAULT_TIMEOUT_SECONDS,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def has_session(self) -> bool:
        return self._token is not None and time.monotonic() < self._token_expires_at

    def use_key(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        """Sign sessions with ``private_key`` from now on; the current session is dropped
        (the platform ends it when the certificate changes)."""
        with self._session_lock:
            self._private_key = private_key
            self._token = None
            self._token_expires_at = 0.0

    # -- calls -------------------------------------------------------------------------------

    def register(
        self,
        *,
        token: str,
        name: str,
        client_machine: str,
        capabilities: list[str],
        client_parameters: dict[str, str],
        csr: str,
    ) -> dict[str, Any]:
        """``POST register``: returns ``orchestrator_id, status, certificate, ca_chain``."""
        body = {
            "token": token,
            "name": name,
            "client_machine": client_machine,
            "agent_version": __version__,
            "capabilities": capabilities,
            "client_parameters": client_parameters,
            "csr": csr,
        }
        response = self._send("POST", "register", json=body)
        self._raise_for_status(response)
        return self._json(response)

    def open_session(self) -> str:
        """``POST session`` with a fresh assertion; returns the orchestrator's status."""
        if self.orchestrator_id is None or self._private_key is None:
            raise RuntimeError("open_session needs orchestrator_id and private_key")
        for attempt in (1, 2):
            body = session_assertion(
                orchestrator_id=self.orchestrator_id, private_key=self._private_key
            )
            response = self._send("POST", "session", json=body)
            if response.status_code in (401, 403):
                code, message, fields, reason = _error_of(response)
                if code == "not_approved":
                    raise NotApproved(response.status_code, code, message, fields, reason)
                if attempt == 1 and response.status_code == 401 and reason != CERTIFICATE_REVOKED:
                    # A restarted agent may reuse the last second a previous process used:
                    # one retry a second later tells that apart from a real refusal.
                    time.sleep(1.0)
                    continue
                raise IdentityRejected(response.status_code, code, message, fields, reason)
            break
        self._raise_for_status(response)
        data = self._json(response)
        try:
            self._token = str(data["token"])
            expires_in = float(data.get("expires_in", 300))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlatformUnavailable(f"unexpected session answer: {exc}") from exc
        self._token_expires_at = time.monotonic() + max(
            expires_in - SESSION_REFRESH_MARGIN_SECONDS, expires_in / 2
        )
        self.status = str(data.get("status", ""))
        self._certificate_times_note(data)
        self.sessions_opened += 1
        return self.status

    def heartbeat(self) -> dict[str, Any]:
        """``POST heartbeat``: returns ``status, server_time, certificate_not_after,
        renew_after``."""
        data = self._json(self._request("POST", "heartbeat", json={}))
        self.status = str(data.get("status", self.status))
        self._certificate_times_note(data)
        return data

    def report_limits(self, *, store_roots: Sequence[str], max_file_bytes: int) -> dict[str, Any]:
        """``POST limits``: the folders stores may be in and the largest file read; answers
        ``store_roots, max_file_bytes, reported_at``."""
        body = {"store_roots": list(store_roots), "max_file_bytes": max_file_bytes}
        return self._json(self._request("POST", "limits", json=body))

    def renew_certificate(self, csr: str) -> dict[str, Any]:
        """``POST certificate`` with a CSR for the agent's next key: returns ``certificate,
        ca_chain, not_after, renew_after``. The session ends with the old certificate:
        call :meth:`use_key` with the new key before the next call."""
        data = self._json(self._request("POST", "certificate", json={"csr": csr}))
        if not isinstance(data.get("certificate"), str) or not data["certificate"]:
            raise PlatformUnavailable("the renewal answer has no certificate")
        not_after = _time_of(data.get("not_after"))
        if not_after is not None:
            self.certificate_not_after = not_after
            self.renew_after = _time_of(data.get("renew_after"))
        return data

    def _certificate_times_note(self, data: dict[str, Any]) -> None:
        if "renew_after" in data:
            self.certificate_not_after = _time_of(data.get("certificate_not_after"))
            self.renew_after = _time_of(data.get("renew_after"))

    def next_job(self, wait: int) -> dict[str, Any] | None:
        """``GET jobs/next``: a leased job summary, or None when no job came within ``wait`` s."""
        response = self._request(
            "GET",
            "jobs/next",
            params={"wait": wait},
            timeout=wait + LONG_POLL_GRACE_SECONDS,
        )
        if response.status_code == 204:
            return None
        return self._json(response)

    def job_config(self, job_id: str) -> dict[str, Any]:
        """``GET jobs/<id>/config``: the job's full configuration, store password included."""
        return self._json(self._request("GET", f"jobs/{job_id}/config"))

    def submit_inventory(
        self, job_id: str, entries: Iterable[InventoryEntry]
    ) -> tuple[int, dict[str, Any]]:
        """``POST jobs/<id>/inventory``: (200, body), or (422, body) when entries were rejected."""
        body = {"entries": [entry.to_wire() for entry in entries]}
        response = self._request("POST", f"jobs/{job_id}/inventory", json=body, accept=(422,))
        return response.status_code, self._json(response)

    def submit_inventory_chunk(
        self,
        job_id: str,
        *,
        attempt: int,
        sequence: int,
        first_index: int,
        entries: Iterable[InventoryEntry],
    ) -> dict[str, Any]:
        """``POST jobs/<id>/inventory/chunks``: stage one chunk (safe to send again)."""
        body = {
            "attempt": attempt,
            "sequence": sequence,
            "first_index": first_index,
            "entries": [entry.to_wire() for entry in entries],
        }
        return self._json(self._request("POST", f"jobs/{job_id}/inventory/chunks", json=body))

    def commit_inventory(
        self,
        job_id: str,
        *,
        attempt: int,
        chunks: int,
        new_certificates: int,
        submission_errors: list[dict[str, str]],
        timeout: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """``POST jobs/<id>/inventory/commit``: (200, body), or (422, body) when entries were
        rejected. ``timeout``: a large store's commit may take longer than other calls."""
        body = {
            "attempt": attempt,
            "chunks": chunks,
            "new_certificates": new_certificates,
            "submission_errors": submission_errors,
        }
        response = self._request(
            "POST",
            f"jobs/{job_id}/inventory/commit",
            json=body,
            accept=(422,),
            timeout=timeout or DEFAULT_TIMEOUT_SECONDS,
        )
        return response.status_code, self._json(response)

    def complete(
        self,
        job_id: str,
        outcome: protocol.JobOutcome,
        message: str,
        attempt: int | None = None,
        *,
        result: dict[str, Any] | None = None,
        final: bool = False,
    ) -> dict[str, Any]:
        """``POST jobs/<id>/complete`` with the outcome of the job's attempt ``attempt`` and,
        for a management job, its ``result`` (a JSON object, at most 64 KiB serialised);
        ``final``: a failure another attempt would meet again, ending the job now."""
        body: dict[str, Any] = {"status": str(outcome), "message": message}
        if final:
            body["final"] = True
        if attempt is not None:
            body["attempt"] = attempt
        if result is not None:
            body["result"] = result
        return self._json(self._request("POST", f"jobs/{job_id}/complete", json=body))

    def submit_csr(self, job_id: str, *, attempt: int, csr: str) -> tuple[int, dict[str, Any]]:
        """``POST jobs/<id>/csr`` (a reenrollment job): (200, issued answer) or (202, pending
        answer); a refusal by the template's rules raises :class:`PlatformError`."""
        body = {"attempt": attempt, "csr": csr}
        response = self._request("POST", f"jobs/{job_id}/csr", json=body)
        return response.status_code, self._json(response)

    def submit_discovery(
        self, job_id: str, *, attempt: int, candidates: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """``POST jobs/<id>/discovery``: the candidates a discovery job found; answers
        ``new, gone, known``."""
        body = {"attempt": attempt, "candidates": candidates}
        return self._json(self._request("POST", f"jobs/{job_id}/discovery", json=body))

    def declare_store_types(self, declarations: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST store-types``: the declarations of the store types this agent carries;
        answers what the platform did with each."""
        body = {"store_types": declarations}
        return self._json(self._request("POST", "store-types", json=body))

    # -- plumbing ----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        accept: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        if not self.has_session:
            with self._session_lock:
                if not self.has_session:
                    self.open_session()
        token = self._token
        response = self._send(method, path, headers=self._auth(), **kwargs)
        if response.status_code == 401:
            if _error_of(response)[3] == CERTIFICATE_REVOKED:
                self._raise_for_status(response)  # no new session can help
            with self._session_lock:
                if self._token == token:  # no other thread renewed it meanwhile
                    self.open_session()
            response = self._send(method, path, headers=self._auth(), **kwargs)
        if response.status_code not in accept:
            self._raise_for_status(response)
        return response

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise PlatformUnavailable(f"{type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        if status >= 500:
            raise PlatformUnavailable(f"platform answered {status} {response.reason_phrase}")
        code, message, fields, reason = _error_of(response)
        if status == 403 and code == "not_approved":
            raise NotApproved(status, code, message, fields, reason)
        if status == 401 and reason == CERTIFICATE_REVOKED:
            raise IdentityRejected(status, code, message, fields, reason)
        raise PlatformError(status, code, message, fields, reason)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as exc:
            # Usually a proxy's error page in front of the platform.
            raise PlatformUnavailable(
                f"platform answered {response.status_code} without JSON"
            ) from exc
        if not isinstance(data, dict):
            raise PlatformUnavailable(
                f"platform answered {response.status_code} with non-object JSON"
            )
        return data
