"""The signed webhook against a real HTTP server on the loopback that checks signatures."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from handlers.base import HandlerError
from handlers.builtin.webhook import SignedWebhook, signature, signature_verify
from handlers.parameters import ParameterError, parameters_check
from tests.handlers.support import expiring_event

SECRET = "s3cr3t-shared-with-the-receiver"


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    delay: float = 0.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signature_valid: bool
    at: float


class Receiver(ThreadingHTTPServer):
    """Answers each POST with the next planned answer (the last one repeats) and keeps it."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.plan: list[Answer] = [Answer(204)]
        self.received: list[Received] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/certyard?token=abc"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        valid = signature_verify(
            SECRET,
            self.headers.get("X-Certyard-Timestamp", ""),
            body,
            self.headers.get("X-Certyard-Signature", ""),
            max_age_seconds=300,
        )
        self.server.received.append(
            Received(dict(self.headers.items()), body, valid, time.monotonic())
        )
        index = min(len(self.server.received), len(self.server.plan)) - 1
        answer = self.server.plan[index]
        if not valid:
            answer = Answer(401, body="bad signature")
        time.sleep(answer.delay)
        payload = answer.body.encode()
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the handler gave up waiting (the timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def webhook(url: str, **config: Any) -> SignedWebhook:
    checked = parameters_check(SignedWebhook.parameters, {"url": url, "secret": SECRET, **config})
    SignedWebhook.config_check(checked)
    return SignedWebhook(checked)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/"


def test_the_event_arrives_as_signed_json_with_its_headers(receiver: Receiver) -> None:
    event = expiring_event()
    result = webhook(receiver.url).handle(event)

    [request] = receiver.received
    assert request.signature_valid
    assert json.loads(request.body) == json.loads(json.dumps(event.as_json()))
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Certyard-Event"] == "certificate.expiring"
    assert request.headers["X-Certyard-Event-Id"] == "42"
    assert abs(int(request.headers["X-Certyard-Timestamp"]) - time.time()) < 60
    assert request.headers["X-Certyard-Signature"] == signature(
        SECRET, request.headers["X-Certyard-Timestamp"], request.body
    )
    assert result.output["status_code"] == 204
    assert result.output["attempts"] == 1
    # The URL's path and query can hold a token: messages show the origin only.
    assert "token" not in result.message and "127.0.0.1" in result.message


def test_503s_are_retried_with_a_fresh_signature_until_one_succeeds(receiver: Receiver) -> None:
    receiver.plan = [Answer(503), Answer(503), Answer(200)]

    result = webhook(receiver.url, attempts=3, backoff_seconds=0).handle(expiring_event())

    assert [r.signature_valid for r in receiver.received] == [True, True, True]
    assert result.output["status_code"] == 200
    assert result.output["attempts"] == 3


def test_the_wait_doubles_between_attempts(receiver: Receiver) -> None:
    receiver.plan = [Answer(502), Answer(500), Answer(200)]

    webhook(receiver.url, attempts=3, backoff_seconds=1).handle(expiring_event())

    first, second, third = (r.at for r in receiver.received)
    assert second - first >= 0.9
    assert third - second >= 1.9


def test_when_every_attempt_fails_the_error_can_be_retried_later(receiver: Receiver) -> None:
    receiver.plan = [Answer(503, body="down for maintenance")]

    with pytest.raises(HandlerError) as caught:
        webhook(receiver.url, attempts=2, backoff_seconds=0).handle(expiring_event())

    assert len(receiver.received) == 2
    assert not caught.value.permanent
    assert "503" in caught.value.message and "down for maintenance" in caught.value.message
    assert "after 2 attempts" in caught.value.message
    assert caught.value.output["status_code"] == 503


def test_a_429_waits_as_long_as_retry_after_asks(receiver: Receiver) -> None:
    receiver.plan = [Answer(429, headers={"Retry-After": "1"}), Answer(200)]

    result = webhook(receiver.url, attempts=2, backoff_seconds=0).handle(expiring_event())

    first, second = (r.at for r in receiver.received)
    assert second - first >= 0.9
    assert result.output["status_code"] == 200


@pytest.mark.parametrize("status", [400, 404, 410, 302])
def test_another_refusal_is_permanent_at_once(receiver: Receiver, status: int) -> None:
    receiver.plan = [Answer(status, headers={"Location": "http://127.0.0.1/elsewhere"})]

    with pytest.raises(HandlerError) as caught:
        webhook(receiver.url, attempts=5, backoff_seconds=0).handle(expiring_event())

    assert len(receiver.received) == 1
    assert caught.value.permanent
    assert str(status) in caught.value.message


def test_the_secret_is_never_in_a_message_or_the_output(receiver: Receiver) -> None:
    receiver.plan = [Answer(400, body=f"we did not expect {SECRET} here")]

    with pytest.raises(HandlerError) as caught:
        webhook(receiver.url).handle(expiring_event())

    assert SECRET not in caught.value.message
    assert SECRET not in json.dumps(caught.value.output)
    assert "[secret]" in caught.value.message


def test_a_connection_refused_is_retried_then_reported(receiver: Receiver) -> None:
    with pytest.raises(HandlerError) as caught:
        webhook(closed_port_url(), attempts=2, backoff_seconds=0).handle(expiring_event())

    assert not caught.value.permanent
    assert "could not connect" in caught.value.message
    assert caught.value.output == {
        "status_code": None,
        "attempts": 2,
        "duration": caught.value.output["duration"],
    }


def test_a_receiver_slower_than_the_timeout_counts_as_a_failed_attempt(
    receiver: Receiver,
) -> None:
    receiver.plan = [Answer(200, delay=2.5), Answer(200)]

    result = webhook(receiver.url, attempts=2, backoff_seconds=0, timeout_seconds=1).handle(
        expiring_event()
    )

    assert len(receiver.received) == 2
    assert result.output["attempts"] == 2


def test_a_receiver_that_never_answers_in_time_fails_with_the_timeout(receiver: Receiver) -> None:
    receiver.plan = [Answer(200, delay=2.5)]

    with pytest.raises(HandlerError) as caught:
        webhook(receiver.url, attempts=1, timeout_seconds=1).handle(expiring_event())

    assert "no answer within 1 s" in caught.value.message
    assert not caught.value.permanent


def test_signature_verify_refuses_anything_but_the_exact_signed_bytes() -> None:
    body = b'{"kind":"certificate.expiring"}'
    header = signature(SECRET, "1700000000", body)

    assert signature_verify(SECRET, "1700000000", body, header)
    assert not signature_verify("another secret", "1700000000", body, header)
    assert not signature_verify(SECRET, "1700000001", body, header)
    assert not signature_verify(SECRET, "1700000000", body + b" ", header)
    assert not signature_verify(SECRET, "1700000000", body, header.removeprefix("sha256="))
    assert not signature_verify(SECRET, "not a number", body, header)
    assert not signature_verify(SECRET, "1700000000", body, "sha256=é")
    assert signature_verify(SECRET, "1700000000", body, header, max_age_seconds=300, now=1700000100)
    assert not signature_verify(
        SECRET, "1700000000", body, header, max_age_seconds=300, now=1700000301
    )


def test_parameters_are_bounded_and_the_url_must_be_http() -> None:
    with pytest.raises(ParameterError) as caught:
        parameters_check(
            SignedWebhook.parameters,
            {"url": "ftp://example.com/", "attempts": 11, "backoff_seconds": -1},
        )
    assert set(caught.value.errors) == {"url", "secret", "attempts", "backoff_seconds"}
    checked = parameters_check(
        SignedWebhook.parameters, {"url": "https://example.com/", "secret": "x"}
    )
    assert (checked["attempts"], checked["backoff_seconds"], checked["timeout_seconds"]) == (
        3,
        2,
        5,
    )
