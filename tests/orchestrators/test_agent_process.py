"""The agent as a real process against a small stand-in platform (a stdlib HTTP server that
speaks the protocol and checks the agent's signatures). The end-to-end test against the real
platform lives in tests/e2e/."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrators import protocol

REPO_ROOT = Path(__file__).resolve().parents[2]


class StandInPlatform(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, store_path: Path) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.store_path = store_path
        self.public_key: ec.EllipticCurvePublicKey | None = None
        self.last_issued_at = 0
        self.token = "session-token-1"
        self.reject_identity = False
        self.job_offered = False
        self.registration: dict[str, Any] = {}
        self.inventory: list[dict[str, Any]] = []
        self.completed = threading.Event()
        self.completion: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: StandInPlatform

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, code: str, message: str) -> None:
        self.answer(status, {"error": {"code": code, "message": message, "fields": {}}})

    def body(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.server.token}":
            return True
        self.error(401, "unauthenticated", "no valid session")
        return False

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.removeprefix(protocol.API_PREFIX)
        if path == "register":
            self.register(self.body())
        elif path == "session":
            self.session(self.body())
        elif not self.authorised():
            return
        elif path == "heartbeat":
            self.answer(200, {"status": "Approved", "server_time": int(time.time())})
        elif path == "jobs/j1/inventory":
            entries = self.body()["entries"]
            self.server.inventory = entries
            rejected = [
                {"index": i, "alias": e["alias"], "reason": "not a certificate"}
                for i, e in enumerate(entries)
                if "broken" in e["alias"]
            ]
            self.answer(422 if rejected else 200, {"recorded": len(entries), "rejected": rejected})
        elif path == "jobs/j1/complete":
            self.server.completion = self.body()
            self.server.completed.set()
            self.answer(200, {"duplicate": False})
        else:
            self.error(404, "not_found", path)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path.removeprefix(protocol.API_PREFIX)
        if not self.authorised():
            return
        if path == "jobs/next":
            if not self.server.job_offered:
                self.server.job_offered = True
                summary = {"id": "j1", "type": "inventory", "attempt": 1, "store": {"id": "s1"}}
                self.answer(200, {**summary, "lease_expires_at": "2099-01-01T00:00:00Z"})
                return
            time.sleep(int(parse_qs(url.query)["wait"][0]))
            self.answer(204)
        elif path == "jobs/j1/config":
            store = {
                "id": "s1",
                "store_type": "PEM",
                "client_machine": "localhost",
                "store_path": str(self.server.store_path),
                "properties": {},
                "password": "store-password-1",
            }
            self.answer(200, {"job_id": "j1", "type": "inventory", "attempt": 1, "store": store})
        else:
            self.error(404, "not_found", path)

    def register(self, body: dict[str, Any]) -> None:
        if body["token"] != "registration-token":
            self.error(400, "invalid_token", "registration token is invalid or used")
            return
        csr = x509.load_pem_x509_csr(body["csr"].encode())
        assert csr.is_signature_valid
        self.server.public_key = csr.public_key()
        self.server.registration = body
        answer = {"orchestrator_id": "orc-1", "status": "Approved", "certificate": None}
        self.answer(201, {**answer, "ca_chain": None})

    def session(self, body: dict[str, Any]) -> None:
        signing_input = protocol.session_signing_input(
            orchestrator_id=body["orchestrator_id"],
            issued_at=body["issued_at"],
            nonce=body["nonce"],
        )
        assert self.server.public_key is not None
        self.server.public_key.verify(
            base64.b64decode(body["signature"]), signing_input, ec.ECDSA(hashes.SHA256())
        )
        if self.server.reject_identity or body["issued_at"] <= self.server.last_issued_at:
            self.error(401, "unknown_orchestrator", "this orchestrator was reset")
            return
        self.server.last_issued_at = body["issued_at"]
        self.answer(200, {"token": self.server.token, "expires_in": 900, "status": "Approved"})


@pytest.fixture
def platform(tmp_path: Path, issue: Callable[[str], Any]) -> Iterator[StandInPlatform]:
    store = tmp_path / "store"
    store.mkdir()
    (store / "web.pem").write_text(issue("web.example").certificate)
    (store / "broken.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
    )
    server = StandInPlatform(store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def agent(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrators.agent", *args]


def agent_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def register(platform: StandInPlatform, config_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        agent(
            "register",
            "--url",
            platform.url,
            "--token",
            "registration-token",
            "--name",
            "agent-under-test",
            "--param",
            "site=lab",
            "--config-dir",
            str(config_dir),
        ),
        env=agent_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_agent_registers_runs_an_inventory_job_and_stops_on_sigterm(
    platform: StandInPlatform, tmp_path: Path
) -> None:
    config_dir = tmp_path / "agent"
    registered = register(platform, config_dir)
    assert registered.returncode == 0, registered.stderr
    assert "registered as orc-1; status Approved" in registered.stdout
    assert platform.registration["capabilities"] == ["PEM.Inventory"]
    assert platform.registration["client_parameters"] == {"site": "lab"}

    process = subprocess.Popen(
        agent("run", "--config-dir", str(config_dir), "--poll-wait", "20"),
        env=agent_env(),
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert platform.completed.wait(20)
        time.sleep(0.5)  # let it go back to an idle long poll
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=10)
        stop_seconds = time.monotonic() - stopping
    finally:
        process.kill()
        log = process.communicate()[1]

    assert exit_code == 0, log
    assert stop_seconds < 2
    assert [entry["alias"] for entry in platform.inventory] == ["broken.pem", "web.pem"]
    assert platform.completion["status"] == "warning"
    assert "broken.pem: not a certificate" in platform.completion["message"]
    assert "SIGTERM received" in log
    assert "store-password-1" not in log
    assert platform.token not in log


def test_agent_whose_identity_is_rejected_exits_3(
    platform: StandInPlatform, tmp_path: Path
) -> None:
    config_dir = tmp_path / "agent"
    assert register(platform, config_dir).returncode == 0
    platform.reject_identity = True

    finished = subprocess.run(
        agent("run", "--config-dir", str(config_dir)),
        env=agent_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert finished.returncode == 3
    assert "Re-register" in finished.stderr


def test_register_with_a_refused_token_exits_2(platform: StandInPlatform, tmp_path: Path) -> None:
    finished = subprocess.run(
        agent("register", "--url", platform.url, "--token", "wrong", "--config-dir", str(tmp_path)),
        env=agent_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert finished.returncode == 2
    assert "registration token is invalid or used" in finished.stderr
    assert not (tmp_path / "agent.json").exists()
