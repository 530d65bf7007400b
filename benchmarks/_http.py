"""The benchmarks' measuring client: one kept-alive HTTP/1.1 connection, the standard library's.

httpx spent about 0.8 ms of the client's CPU per request here (measured: 0.52 of a core
at 650 requests a second), as much as the smallest request costs the server, and the
client shares the machine's two cores with the server it measures. ``http.client`` spends
a tenth of that, so a figure is the server's, not the client's. It speaks what the
benchmarks send: a method, a path under ``base_url``, headers, a body; nothing else
(no redirects, no cookies jar, no HTTPS).
"""

from __future__ import annotations

import http.client
import json as jsonlib
from typing import Any
from urllib.parse import urlsplit


class HTTPError(Exception):
    """The connection failed (refused, reset, timed out)."""


class Answer:
    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, content: bytes, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.content = content
        self.headers = headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class Client:
    """``Client("http://127.0.0.1:8000/api/v1/", headers={...})``: requests to paths under
    it (``"cas/"``) or absolute (``"/healthz"``), on one connection kept alive."""

    def __init__(
        self, base_url: str, *, headers: dict[str, str] | None = None, timeout: float = 60
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an http:// address is needed, not {base_url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._prefix = parts.path if parts.path.endswith("/") else parts.path + "/"
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = {**self._headers, **(headers or {})}
        if json is not None:
            content = jsonlib.dumps(json).encode()
            sent.setdefault("Content-Type", "application/json")
        target = path if path.startswith("/") else self._prefix + path
        # A kept-alive connection the server closed meanwhile fails once; the retry opens
        # a new one (the benchmarks' requests are all safe to send again on that failure).
        for attempt in (1, 2):
            connection = self._connected()
            try:
                connection.request(method, target, body=content, headers=sent)
                response = connection.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 2:
                    raise HTTPError(f"{method} {target}: {exc}") from exc
                continue
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise HTTPError(f"{method} {target}: {exc}") from exc
            return Answer(response.status, body, dict(response.getheaders()))
        raise AssertionError("unreachable")

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Answer:
        return self.request("POST", path, **kwargs)

    def _connected(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout
            )
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
