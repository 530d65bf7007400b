"""Django's sync requests on a pool of long-lived threads, under the ASGI server.

Django's ASGI handler gives every request a thread of its own for its sync code (the
views, the ORM, every middleware written the sync way) and hops between that thread and
the event loop at each sync step: about sixteen hops per request here, and, because a
database connection belongs to the thread that opened it, a new connection (SQLite's
PRAGMAs, PostgreSQL's authentication) for every request whatever ``CONN_MAX_AGE`` says.
``benchmarks/request_overhead.py`` measured that as most of the cost of a small request.

``SyncRequests`` runs a whole request through Django's WSGI handler on one thread of a
fixed pool instead: the body is read on the event loop, then one hop in and one hop out.
A thread serves request after request, so it keeps its database connection
(``CONN_MAX_AGE``, checked before reuse by ``CONN_HEALTH_CHECKS``). The environ is built
as Django's own ``ASGIRequest`` reads the scope, so a view sees the same request.

The agent's long poll comes through here too, behind a handoff
(``certyard.jobs.api.long_poll_asgi``): a poll that must wait ends its request on the
pool thread and waits as a coroutine on the event loop, never on a pool thread. Keys of
the scope named ``certyard.*`` (that handoff) reach the view in ``request.META``.

A kept-alive connection is closed after ``requests_per_connection`` answers (the last one
says ``Connection: close``), as nginx does after its ``keepalive_requests``. Every web
process accepts from the one listening socket, and whichever wakes first takes a new
connection: clients that keep a few connections open for long can all end up on one
process while the other idles (8 clients measured 7 to 1: 412/s, against 540-700/s
spread). Their next connection goes to the process free to accept it, so the load
spreads again; reconnecting once per hundred requests costs next to nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_SERVER_ERROR = b"A server error occurred."
# Connections counted at once per process; past it the longest idle is forgotten (and
# would only be closed later than its due).
_CONNECTIONS_COUNTED = 10_000


class SyncRequests:
    """An ASGI application serving HTTP requests with a WSGI application on ``threads``
    long-lived threads. Lifespan messages are acknowledged; nothing else is served."""

    def __init__(
        self,
        wsgi_app: WSGIApp,
        *,
        threads: int,
        max_memory_body: int,
        requests_per_connection: int = 0,
    ) -> None:
        """``requests_per_connection``: answers on one kept-alive connection before it is
        closed (0: never)."""
        self.wsgi_app = wsgi_app
        self.max_memory_body = max_memory_body
        self.threads = threads
        self.requests_per_connection = requests_per_connection
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="web")
        # Answers so far per open connection (the client's address and port), counted on
        # the event loop's thread only.
        self._answered: OrderedDict[tuple[str, int], int] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"only HTTP is served here, not {scope['type']!r}")
        body = await self._read_body(receive)
        if body is None:
            return  # the client went away before it finished sending: nothing to answer
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(
                self._executor, self._respond, _environ(scope, body), loop, send
            )
        finally:
            body.close()
        if answer is not None:
            status, headers, content = answer
            if self._connection_done(scope):
                headers.append((b"connection", b"close"))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": content})

    def _connection_done(self, scope: Scope) -> bool:
        """Whether this answer is the last one its connection gets (counted here)."""
        client = scope.get("client")
        if not self.requests_per_connection or not client:
            return False
        key = (client[0], client[1])
        answered = self._answered.pop(key, 0) + 1
        if answered >= self.requests_per_connection:
            return True
        self._answered[key] = answered  # now the most recent
        if len(self._answered) > _CONNECTIONS_COUNTED:
            self._answered.popitem(last=False)
        return False

    async def _read_body(self, receive: Receive) -> tempfile.SpooledTemporaryFile[bytes] | None:
        # As Django's ASGI handler does: in memory up to the upload limit, then on disk.
        # Closed by __call__ once the request is answered, or below if it never comes.
        body: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=self.max_memory_body, mode="w+b"
        )
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body.close()
                return None
            if chunk := message.get("body"):
                body.write(chunk)
            if not message.get("more_body", False):
                body.seek(0)
                return body

    def _respond(
        self, environ: dict[str, Any], loop: asyncio.AbstractEventLoop, send: Send
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """On a pool thread: Django's answer, whole, for the loop to send; or, for a
        streaming answer, sent from here chunk by chunk (None)."""
        started: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> None:
            started["status"] = int(status.split(" ", 1)[0])
            started["headers"] = [
                (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
            ]

        try:
            result = self.wsgi_app(environ, start_response)
        except Exception:  # Django turns a view's exception into a 500 itself; this is ours
            logger.exception("the WSGI application failed outside Django's handler")
            return 500, [(b"content-type", b"text/plain")], _SERVER_ERROR
        try:
            if getattr(result, "streaming", False):
                self._stream(result, started, loop, send)
                return None
            return started["status"], started["headers"], b"".join(result)
        finally:
            # request_finished: Django closes or keeps this thread's connections here.
            close = getattr(result, "close", None)
            if close is not None:
                close()

    @staticmethod
    def _stream(
        chunks: Iterable[bytes],
        started: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        send: Send,
    ) -> None:
        def sent(message: Message) -> None:
            asyncio.run_coroutine_threadsafe(send(message), loop).result()

        sent({"type": "http.response.start", **started})
        for chunk in chunks:
            if chunk:
                sent({"type": "http.response.body", "body": bytes(chunk), "more_body": True})
        sent({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _environ(scope: Scope, body: Any) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP scope, read as Django's ASGIRequest reads it."""
    root_path = scope.get("root_path", "") or ""
    path = scope["path"]
    path_info = path.removeprefix(root_path) if root_path and path.startswith(root_path) else path
    client = scope.get("client") or ("", 0)
    server = scope.get("server") or ("unknown", "0")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"].upper(),
        # WSGI carries the path as the bytes of its UTF-8 spelt as latin-1 (PEP 3333).
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path_info.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] if server[1] is not None else "0"),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0] or "",
        "REMOTE_HOST": client[0] or "",
        "REMOTE_PORT": str(client[1] or 0),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    # What an entry point in front offers the view (the long poll's handoff), under the
    # scope's own keys, as Django's ASGIRequest keeps the scope.
    environ.update((key, value) for key, value in scope.items() if key.startswith("certyard."))
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1")
        if name == "content-length":
            key = "CONTENT_LENGTH"
        elif name == "content-type":
            key = "CONTENT_TYPE"
        else:
            key = f"HTTP_{name.upper().replace('-', '_')}"
        value = raw_value.decode("latin-1")
        if key == "HTTP_COOKIE":
            value = value.rstrip("; ")
            if key in environ:
                value = f"{environ[key]}; {value}"
        elif key in environ and key.startswith("HTTP_"):
            value = f"{environ[key]},{value}"
        environ[key] = value
    return environ
