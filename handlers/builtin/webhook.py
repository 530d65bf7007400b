"""The built-in signed webhook ("certyard.webhook"): the event as JSON, POSTed with an HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from handlers.base import EventContext, EventHandler, HandlerResult
from handlers.builtin._common import failure, setting
from handlers.parameters import Parameter, ParameterType

SIGNATURE_PREFIX = "sha256="
# Retry-After can ask for more; a worker slot is not held longer than this per wait.
MAX_RETRY_AFTER_SECONDS = 60
_RESPONSE_EXCERPT = 200


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Certyard-Signature`` header value for a timestamp and a body."""
    signed = timestamp.encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signature_verify(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    max_age_seconds: int | None = None,
    now: float | None = None,
) -> bool:
    """Whether a request came from Certyard: copy this function into your receiver.

    ``timestamp`` is the ``X-Certyard-Timestamp`` header, ``body`` the raw request body
    (bytes, before any JSON parsing), ``header`` the ``X-Certyard-Signature`` header. Pass
    ``max_age_seconds`` (e.g. 300) to refuse old requests someone recorded and replays.
    Needs only the standard library (``hashlib``, ``hmac``, ``time``).
    """
    if not timestamp.isdigit() or not header.startswith("sha256="):
        return False
    if max_age_seconds is not None:
        current = time.time() if now is None else now
        if abs(current - int(timestamp)) > max_age_seconds:
            return False
    signed = timestamp.encode("ascii") + b"." + body
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    # compare_digest takes the same time wherever the strings differ: no timing oracle.
    return hmac.compare_digest(expected.encode("ascii"), header.encode("ascii", "replace"))


def _origin(url: str) -> str:
    """The URL as messages show it: scheme, host and port only.

    Webhook URLs often carry a token in their path or query (chat services do); the run
    log is read by more people than the registration form.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "the configured URL"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def _retry_after(response: httpx.Response) -> int | None:
    """Seconds a numeric ``Retry-After`` asks for, capped; None for a date or nothing."""
    value = response.headers.get("Retry-After", "").strip()
    if not value.isdigit():
        return None
    return min(int(value), MAX_RETRY_AFTER_SECONDS)


class SignedWebhook(EventHandler):
    """POSTs the event as JSON to a URL, signed so the receiver can check it came from here.

    The body is the event (``event_id``, ``kind``, ``occurred_at``, ``subject_type``,
    ``subject_id``, ``subject_label``, ``data``, ``attempt``, ``context``). Headers:

    - ``X-Certyard-Event``: the event kind, e.g. ``certificate.expiring``;
    - ``X-Certyard-Event-Id``: the event's id, the same on every retry (to drop duplicates);
    - ``X-Certyard-Timestamp``: Unix seconds when this attempt was signed;
    - ``X-Certyard-Signature``: ``sha256=`` and the hex HMAC-SHA256, keyed with the secret,
      of ``<timestamp>.<body bytes>``. Check it with ``signature_verify`` from
      ``handlers/builtin/webhook.py`` (standard library only: copy it).

    Any 2xx answer is success. A connection error, a timeout, a 5xx or a 429 is tried
    again, up to **attempts** times in all, waiting **backoff_seconds**, then twice that,
    and so on (a numeric ``Retry-After``, up to 60 s, replaces the wait). Any other answer
    fails at once: fix the receiver or the URL (redirects are not followed).

    Parameters: **url** (http:// or https://), **secret** (shared with the receiver; never
    shown again nor logged), **attempts** (1-10), **backoff_seconds** (0-300),
    **timeout_seconds** (1-60, per attempt). Keep attempts x timeout within the
    registration's own timeout.

    Example: url ``https://hooks.example.com/certyard``, a long random secret, attempts 3.
    """

    label = "Signed webhook"
    parameters = (
        Parameter("url", ParameterType.URL, help="Where to POST the event.", required=True),
        Parameter(
            "secret",
            ParameterType.SECRET,
            help="Shared with the receiver to sign each request (HMAC-SHA256).",
            required=True,
        ),
        Parameter(
            "attempts",
            ParameterType.INTEGER,
            help="Tries in all when the receiver is unreachable or answers 5xx/429.",
            default=3,
            minimum=1,
            maximum=10,
        ),
        Parameter(
            "backoff_seconds",
            ParameterType.INTEGER,
            help="Wait before the second try; doubled before each later one.",
            default=2,
            minimum=0,
            maximum=300,
        ),
        Parameter(
            "timeout_seconds",
            ParameterType.INTEGER,
            help="How long one try may take.",
            default=5,
            minimum=1,
            maximum=60,
        ),
    )

    def handle(self, event: EventContext) -> HandlerResult:
        url: str = setting(self, "url")
        secret: str = setting(self, "secret")
        attempts = int(setting(self, "attempts"))
        backoff = int(setting(self, "backoff_seconds"))
        timeout = int(setting(self, "timeout_seconds"))
        if not url or not secret:
            raise failure("the url and the secret are required", permanent=True)
        origin = _origin(url)
        # Sorted and compact: the bytes signed are the bytes sent, reproducible in a test.
        body = json.dumps(event.as_json(), sort_keys=True, separators=(",", ":")).encode()

        def redact(text: str) -> str:
            return text.replace(secret, "[secret]") if secret else text

        started = time.monotonic()
        last_problem = ""
        last_status: int | None = None
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            for attempt in range(1, attempts + 1):
                timestamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "Certyard-Webhook/1",
                    "X-Certyard-Event": event.kind,
                    "X-Certyard-Event-Id": str(event.event_id),
                    "X-Certyard-Timestamp": timestamp,
                    "X-Certyard-Signature": signature(secret, timestamp, body),
                }
                wait: float = backoff * 2 ** (attempt - 1)
                try:
                    response = client.post(url, content=body, headers=headers)
                except httpx.TimeoutException:
                    last_problem = f"no answer within {timeout} s"
                except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                    raise failure(
                        f"the URL cannot be used: {redact(str(exc))}", permanent=True
                    ) from exc
                except httpx.TransportError as exc:
                    last_problem = f"could not connect ({type(exc).__name__})"
                else:
                    last_status = response.status_code
                    output = self._output(response.status_code, attempt, started)
                    if response.is_success:
                        return HandlerResult(
                            message=f"delivered to {origin}: {response.status_code}",
                            output=output,
                        )
                    excerpt = redact(response.text[:_RESPONSE_EXCERPT]).strip()
                    last_problem = f"answered {response.status_code}" + (
                        f": {excerpt}" if excerpt else ""
                    )
                    if not (response.status_code >= 500 or response.status_code == 429):
                        # The receiver refused this request itself: the same request
                        # would be refused again.
                        raise failure(f"{origin} {last_problem}", permanent=True, output=output)
                    asked = _retry_after(response)
                    if asked is not None:
                        wait = asked
                if attempt < attempts and wait:
                    time.sleep(wait)
        raise failure(
            f"{origin} {last_problem} (after {attempts} attempt{'s' if attempts != 1 else ''})",
            output=self._output(last_status, attempts, started),
        )

    @staticmethod
    def _output(status_code: int | None, attempts: int, started: float) -> dict[str, Any]:
        return {
            "status_code": status_code,
            "attempts": attempts,
            "duration": round(time.monotonic() - started, 3),
        }
