"""A reverse proxy between a real agent and the platform, for the end-to-end tests.

It forwards what the agent sends, records every exchange, and can hold chosen requests
(a stalled network path), send one upstream twice at once (a proxy that retries), or
keep its upstream connection while the agent is gone (it does not pass a disconnect on,
like a buffering proxy or a dropped network).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.conftest import wait_for

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Exchange:
    """One request the agent sent through the proxy, and the platform's answer to it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    answer: bytes = b""
    # The answer to a second, simultaneous copy of the request (see HoldingProxy.twice).
    twin_status: int | None = None
    twin_answer: bytes = b""
    held: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)

    def json(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}")

    def answer_json(self) -> dict[str, Any]:
        return json.loads(self.answer or b"{}")

    def twin_answer_json(self) -> dict[str, Any]:
        return json.loads(self.twin_answer or b"{}")


class HoldingProxy:
    """A reverse proxy between the agent and the platform that records every exchange.

    ``hold`` picks requests to keep (not forwarded) until the test releases them, as a
    stalled network path would; ``twice`` picks requests to forward two times at once,
    as a proxy that retries upstream would. The agent gets the first copy's answer.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.hold: Callable[[Exchange], bool] = lambda exchange: False
        self.twice: Callable[[Exchange], bool] = lambda exchange: False
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                exchange = Exchange(self.command, self.path, headers, body)
                exchange.held = proxy.hold(exchange)
                with proxy._lock:
                    proxy.exchanges.append(exchange)
                if exchange.held:
                    exchange.release.wait(timeout=600)
                status, content, answer_headers = proxy.forwarded(exchange)
                self.send_response(status)
                for key, value in answer_headers.items():
                    if key.lower() not in HOP_BY_HOP | {"content-encoding"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(content)  # an agent that is gone

            do_GET = do_POST = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forwarded(self, exchange: Exchange) -> tuple[int, bytes, httpx.Headers]:
        """Send the exchange's request upstream (twice at once when asked); record it."""
        twin: list[httpx.Response | None] = []
        copy = None
        if self.twice(exchange):
            copy = threading.Thread(target=lambda: twin.append(self._send(exchange)))
            copy.start()
        first = self._send(exchange)
        if copy is not None:
            copy.join(timeout=120)
            if twin and twin[0] is not None:
                exchange.twin_status, exchange.twin_answer = twin[0].status_code, twin[0].content
        if first is None:
            status, content, headers = 502, b"bad gateway", httpx.Headers()
        else:
            status, content, headers = first.status_code, first.content, first.headers
        exchange.status, exchange.answer = status, content
        exchange.answered.set()
        return status, content, headers

    def _send(self, exchange: Exchange) -> httpx.Response | None:
        try:
            return httpx.request(
                exchange.method,
                self.upstream + exchange.path,
                headers=exchange.headers,
                content=exchange.body,
                timeout=90,
            )
        except httpx.TransportError:
            return None

    def matching(self, predicate: Callable[[Exchange], bool]) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if predicate(e)]

    def wait_for_exchange(
        self, predicate: Callable[[Exchange], bool], *, what: str, timeout: float = 120
    ) -> Exchange:
        return wait_for(
            lambda: next(iter(self.matching(predicate)), None),
            timeout=timeout,
            what=what,
            every=0.2,
        )

    def close(self) -> None:
        with self._lock:
            for exchange in self.exchanges:
                exchange.release.set()
        self.server.shutdown()


class GatedProxy(HoldingProxy):
    """Holds every inventory submission until the test opens ``gate``.

    ``submission_seen`` is set when the first one arrives; a platform that is down
    answers 502, as any reverse proxy in front of a stopped server does.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.submission_seen = threading.Event()
        self.gate = threading.Event()
        self.hold = self._wait_for_gate

    def _wait_for_gate(self, exchange: Exchange) -> bool:
        if "/inventory" in exchange.path and not self.gate.is_set():
            self.submission_seen.set()
            self.gate.wait(timeout=120)
        return False  # waited here already: forward it now

    @property
    def statuses(self) -> list[tuple[str, int]]:
        """``(path, status)`` of every answered request, oldest first."""
        return [(e.path, e.status) for e in self.matching(lambda e: e.status is not None)]

    def close(self) -> None:
        self.gate.set()
        super().close()
