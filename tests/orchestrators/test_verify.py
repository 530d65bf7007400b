"""Verified deployment: reload commands run locally, and the endpoint check against a real
TLS server (Python's ``ssl`` on 127.0.0.1, in a thread)."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrators.agent.config import private_key_pem
from orchestrators.agent.management import ManagementContext, management_run
from orchestrators.agent.verify import (
    OUTPUT_TAIL_CHARS,
    endpoint_verify,
    reload_command_for,
    reload_run,
    served_leaf_sha256,
)
from orchestrators.protocol import JobOutcome, JobType
from tests.certs import Issued, agent_key, issue
from tests.orchestrators.management_support import FolderStore, job_for


@contextmanager
def tls_server(tmp_path: Path, served: Issued) -> Iterator[int]:
    """A TLS server on 127.0.0.1 serving ``served``; yields its port."""
    cert_file, key_file = tmp_path / "served.crt", tmp_path / "served.key"
    cert_file.write_text(served.pem)
    key_file.write_bytes(private_key_pem(served.key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                connection.settimeout(5)
                with context.wrap_socket(connection, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_served_leaf_is_fingerprinted(tmp_path: Path, ca: Issued) -> None:
    leaf = issue("site.example", issuer=ca)
    with tls_server(tmp_path, leaf) as port:
        assert served_leaf_sha256("127.0.0.1", port, "site.example") == leaf.sha256


def test_an_endpoint_serving_the_expected_certificate_is_verified(
    tmp_path: Path, ca: Issued
) -> None:
    leaf = issue("site.example", issuer=ca)
    with tls_server(tmp_path, leaf) as port:
        evidence = endpoint_verify(
            {"host": "127.0.0.1", "port": port, "sni": "site.example"}, leaf.sha256.upper()
        )

    assert evidence == {
        "endpoint": f"127.0.0.1:{port}",
        "sni": "site.example",
        "served_sha256": leaf.sha256,
        "expected_sha256": leaf.sha256,
        "served": True,
        "error": None,
    }


def test_an_endpoint_serving_another_certificate_is_not_verified(
    tmp_path: Path, ca: Issued
) -> None:
    expected, old = issue("site.example", issuer=ca), issue("old.example", issuer=ca)
    with tls_server(tmp_path, old) as port:
        evidence = endpoint_verify(
            {"host": "127.0.0.1", "port": port, "sni": None}, expected.sha256, within=0.3
        )

    assert evidence["served"] is False
    assert evidence["served_sha256"] == old.sha256
    assert evidence["expected_sha256"] == expected.sha256
    assert evidence["error"] is None


def test_an_endpoint_that_does_not_answer_is_not_verified_and_says_why(ca: Issued) -> None:
    evidence = endpoint_verify(
        {"host": "127.0.0.1", "port": free_port(), "sni": None}, ca.sha256, within=0.3
    )

    assert evidence["served"] is False
    assert evidence["served_sha256"] is None
    assert "ConnectionRefusedError" in evidence["error"]


@pytest.mark.parametrize("port", [0, 70000, "https", None])
def test_an_endpoint_without_a_valid_port_is_not_tried(port: object, ca: Issued) -> None:
    evidence = endpoint_verify({"host": "127.0.0.1", "port": port}, ca.sha256)
    assert evidence["error"] == "the endpoint has no valid host and port"


def test_a_write_to_a_served_store_ends_deployed_and_served_or_warns(
    tmp_path: Path, ca: Issued
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    new, old = issue("site.example", issuer=ca), issue("site.example", issuer=ca)
    context = ManagementContext(
        client=None, identity_keys=lambda: [agent_key()], verify_seconds=0.3
    )

    def add(leaf: Issued, alias: str, port: int) -> object:
        payload = {"alias": alias, "certificate": leaf.pem, "certificate_sha256": leaf.sha256}
        endpoint = {"host": "127.0.0.1", "port": port, "sni": "site.example"}
        job = job_for(store, JobType.ADD, payload, endpoint=endpoint)
        return management_run(job, FolderStore, context)

    with tls_server(tmp_path, new) as served_port:
        served = add(new, "new", served_port)
    with tls_server(tmp_path, old) as port:
        stale = add(new, "again", port)

    assert served.outcome is JobOutcome.SUCCESS
    assert served.message == f"deployed and served (127.0.0.1:{served_port})"
    assert served.result["verification"]["served"] is True
    assert stale.outcome is JobOutcome.WARNING
    assert stale.message == "written, endpoint still serves the old certificate"
    assert stale.result["verification"]["served_sha256"] == old.sha256


def test_a_reload_command_runs_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = reload_run(
        [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('y')", str(marker)]
    )
    assert result == {"ran": True, "exit_code": 0, "output": ""}
    assert marker.read_text() == "y"
    # Shell syntax is a plain argument, never interpreted.
    echoed = reload_run(["/bin/echo", "$(touch", f"{tmp_path}/injected)", ";", "ls"])
    assert echoed["output"] == f"$(touch {tmp_path}/injected) ; ls\n"
    assert not (tmp_path / "injected)").exists() and not (tmp_path / "injected").exists()


def test_a_failing_reload_command_keeps_the_tail_of_its_output() -> None:
    result = reload_run(
        [sys.executable, "-c", "import sys; print('x' * 5000 + 'END'); sys.exit(2)"]
    )
    assert result["exit_code"] == 2
    assert len(result["output"]) == OUTPUT_TAIL_CHARS
    assert result["output"].endswith("END\n")


def test_a_reload_command_that_hangs_or_does_not_exist_reports_it(tmp_path: Path) -> None:
    hung = reload_run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    missing = reload_run([str(tmp_path / "no-such-command")])

    assert hung["exit_code"] is None
    assert "timed out after" in hung["output"]
    assert missing["exit_code"] is None
    assert "cannot run" in missing["output"]


def test_the_reload_command_is_found_by_the_store_s_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    commands = {str(tmp_path / "real"): ("systemctl", "reload", "nginx")}

    assert reload_command_for(str(tmp_path / "link"), commands) == ("systemctl", "reload", "nginx")
    assert reload_command_for(str(tmp_path / "real" / ".." / "real"), commands) is not None
    assert reload_command_for(str(tmp_path / "other"), commands) is None
