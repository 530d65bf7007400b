"""The web entry point's thread pool: Django's WSGI handler under the ASGI server
(certyard.run.sync_requests), driven as uvicorn drives it (scope, receive, send).

The first tests use a small WSGI application that shows what it was given; the last one
goes through Django's WSGI handler, middleware and database included. The agents' long
polls, which come through here behind the entry point's handoff, are in tests/e2e and
tests/certyard/jobs/test_long_poll.py.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.backends.signals import connection_created

from certyard.run.sync_requests import SyncRequests


def _scope(path: str = "/x", **extra: Any) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 50123),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


def _served(
    app: Any, scope: dict[str, Any], chunks: list[bytes] | None = None, *, gone: bool = False
) -> list[dict]:
    """What ``app`` sends for ``scope`` with a body sent in ``chunks`` (``gone``: the
    client goes away before sending one)."""
    sent: list[dict] = []

    async def scenario() -> None:
        messages: list[dict] = (
            [{"type": "http.disconnect"}]
            if gone
            else [
                {
                    "type": "http.request",
                    "body": chunk,
                    "more_body": index < len(chunks or [b""]) - 1,
                }
                for index, chunk in enumerate(chunks or [b""])
            ]
        )

        async def receive() -> dict:
            if messages:
                return messages.pop(0)
            await asyncio.Event().wait()  # the client waits for the answer
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)

    asyncio.run(scenario())
    return sent


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    shown = {
        key: value
        for key, value in environ.items()
        if isinstance(value, str) and not key.startswith("wsgi.")
    }
    shown["body"] = environ["wsgi.input"].read().decode()
    shown["thread"] = threading.current_thread().name
    start_response("201 Created", [("Content-Type", "application/json"), ("X-One", "1")])
    return [json.dumps(shown).encode()]


def _body(sent: list[dict]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_the_environ_is_the_request_as_django_reads_an_asgi_scope() -> None:
    app = SyncRequests(_echo, threads=2, max_memory_body=10)
    scope = _scope(
        "/app/api/é x",
        method="post",
        root_path="/app",
        query_string=b"a=1&b=%C3%A9",
        headers=[
            (b"host", b"certyard.example"),
            (b"content-type", b"application/json"),
            (b"content-length", b"11"),
            (b"x-forwarded-for", b"10.0.0.1"),
            (b"x-forwarded-for", b"10.0.0.2"),
            (b"cookie", b"a=1; "),
            (b"cookie", b"b=2"),
        ],
    )
    sent = _served(app, scope, [b'{"a": ', b"[1, 2]}"])
    assert sent[0] == {
        "type": "http.response.start",
        "status": 201,
        "headers": [(b"content-type", b"application/json"), (b"x-one", b"1")],
    }
    shown = json.loads(_body(sent))
    assert shown["REQUEST_METHOD"] == "POST"
    assert shown["SCRIPT_NAME"] == "/app"
    # PEP 3333: the path's UTF-8 bytes, spelt as latin-1.
    assert shown["PATH_INFO"].encode("latin-1").decode() == "/api/é x"
    assert shown["QUERY_STRING"] == "a=1&b=%C3%A9"
    assert shown["CONTENT_TYPE"] == "application/json"
    assert shown["CONTENT_LENGTH"] == "11"
    assert shown["HTTP_HOST"] == "certyard.example"
    assert shown["HTTP_X_FORWARDED_FOR"] == "10.0.0.1,10.0.0.2"
    assert shown["HTTP_COOKIE"] == "a=1; b=2"
    assert shown["REMOTE_ADDR"] == "127.0.0.1"
    assert shown["SERVER_PROTOCOL"] == "HTTP/1.1"
    # The body arrived in two messages and, past max_memory_body, went to disk: whole.
    assert shown["body"] == '{"a": [1, 2]}'
    assert shown["thread"].startswith("web")


def test_the_scopes_certyard_keys_reach_the_view_as_they_are() -> None:
    """The long poll's handoff is a dict the view fills in on the pool thread and the
    entry point reads afterwards: the very object, not a copy."""
    handoff: dict[str, Any] = {}
    seen: dict[str, Any] = {}

    def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        environ["certyard.long_poll_handoff"]["pending"] = "filled in by the view"
        start_response("204 No Content", [])
        return [b""]

    app = SyncRequests(application, threads=1, max_memory_body=10)
    scope = _scope(**{"certyard.long_poll_handoff": handoff, "state": {"other": "server's"}})
    sent = _served(app, scope)
    assert sent[0]["status"] == 204
    assert seen["certyard.long_poll_handoff"] is handoff
    assert handoff == {"pending": "filled in by the view"}
    assert "state" not in seen  # only the platform's own keys


def test_a_client_gone_before_its_body_arrived_gets_nothing_and_runs_nothing() -> None:
    called = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        called.append(environ)
        return _echo(environ, start_response)

    assert _served(SyncRequests(app, threads=1, max_memory_body=1024), _scope(), gone=True) == []
    assert called == []


class _Streamed:
    """A streaming answer as Django's handler gives one: iterated, then closed."""

    streaming = True

    def __init__(self) -> None:
        self.closed_on: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        yield b"one,"
        yield b""
        yield b"two"

    def close(self) -> None:
        self.closed_on = threading.current_thread().name


def test_a_streaming_answer_is_sent_chunk_by_chunk_and_closed_on_its_thread() -> None:
    answer = _Streamed()

    def app(environ: dict[str, Any], start_response: Any) -> _Streamed:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return answer

    sent = _served(SyncRequests(app, threads=1, max_memory_body=1024), _scope())
    assert [m["type"] for m in sent] == ["http.response.start"] + ["http.response.body"] * 3
    assert [m.get("more_body", False) for m in sent[1:]] == [True, True, False]
    assert _body(sent) == b"one,two"
    assert answer.closed_on is not None and answer.closed_on.startswith("web")


def test_an_application_failing_outside_djangos_handler_is_a_plain_500(caplog: Any) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("broken")

    sent = _served(SyncRequests(app, threads=1, max_memory_body=1024), _scope())
    assert sent[0]["status"] == 500
    assert _body(sent) == b"A server error occurred."
    assert "failed outside Django's handler" in caplog.text


def test_lifespan_is_acknowledged() -> None:
    sent: list[dict] = []
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    app = SyncRequests(_echo, threads=1, max_memory_body=1024)
    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


# --- Kept-alive connections closed after so many answers ------------------------------


def _closes(sent: list[dict]) -> bool:
    start = next(m for m in sent if m["type"] == "http.response.start")
    return (b"connection", b"close") in start["headers"]


def test_a_connection_is_closed_after_its_share_of_answers_and_counted_apart() -> None:
    app = SyncRequests(_echo, threads=1, max_memory_body=1024, requests_per_connection=3)
    one, other = ("127.0.0.1", 50001), ("127.0.0.1", 50002)
    try:
        closes = [
            _closes(_served(app, _scope(client=client)))
            for client in (one, other, one, other, one, one, one, one)
        ]
    finally:
        app._executor.shutdown()
    # Each connection's third answer is its last; the same address and port seen again
    # is a new connection (the old one was closed), counted from one.
    assert closes == [False, False, False, False, True, False, False, True]


def test_connections_stay_open_without_a_limit_or_a_client_address() -> None:
    unlimited = SyncRequests(_echo, threads=1, max_memory_body=1024)
    unix = SyncRequests(_echo, threads=1, max_memory_body=1024, requests_per_connection=1)
    try:
        assert not any(_closes(_served(unlimited, _scope())) for _ in range(5))
        assert not _closes(_served(unix, _scope(client=None)))
    finally:
        unlimited._executor.shutdown()
        unix._executor.shutdown()


def test_uvicorn_closes_the_connection_after_the_last_answer_and_the_client_reconnects() -> None:
    import uvicorn

    app = SyncRequests(_echo, threads=2, max_memory_body=1024, requests_per_connection=2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        seen = []
        for _ in range(4):
            client.request("GET", "/x")
            answer = client.getresponse()
            shown = json.loads(answer.read())
            seen.append((answer.getheader("Connection"), shown["REMOTE_PORT"]))
        client.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app._executor.shutdown()
    # Two answers a connection: the second says close, and the next request comes on a
    # new connection (another client port).
    assert [header for header, _ in seen] == [None, "close", None, "close"]
    ports = [port for _, port in seen]
    assert ports[0] == ports[1] != ports[2] == ports[3]


# --- Through the platform's entry point ------------------------------------------------


# Not transactional: /healthz reads no table, so the pool thread's own connection needs
# nothing this test's transaction holds (and a flush would disturb the serialized tests).
@pytest.mark.django_db
def test_requests_through_django_reuse_their_threads_database_connection(
    settings: Any,
) -> None:
    from certyard import asgi

    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    opened: list[str] = []

    def on_connect(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(threading.current_thread().name)

    app = SyncRequests(asgi.sync_requests.wsgi_app, threads=1, max_memory_body=1024)
    connection_created.connect(on_connect)
    try:
        answers = [_served(app, _scope("/healthz"), [b""]) for _ in range(5)]
    finally:
        connection_created.disconnect(on_connect)
        # The pool thread's connection: closed there, before the test database goes.
        app._executor.submit(connections.close_all).result()
        app._executor.shutdown()
    assert [a[0]["status"] for a in answers] == [200] * 5
    assert json.loads(_body(answers[-1])) == {"status": "ok"}
    # One connection for five requests, opened on the pool's thread.
    assert len(opened) == 1 and opened[0].startswith("web")
