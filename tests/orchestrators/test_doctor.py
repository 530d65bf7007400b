"""``certyard-orchestrator doctor`` names what keeps an agent from working: a key others may
read, a root that went away, a platform it cannot reach, an expired certificate.
The healthy path, against a live platform, is in tests/e2e/test_agent_wheel.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from orchestrators.agent.cli import main
from orchestrators.agent.doctor import doctor_findings
from tests.certs import issue


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


def _point_at(home: Path, url: str) -> None:
    data = json.loads((home / "agent.json").read_text())
    (home / "agent.json").write_text(json.dumps({**data, "platform_url": url}))


def _levels(home: Path) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for finding in doctor_findings(home):
        found.setdefault(finding.topic, []).append((finding.level, finding.text))
    return found


def test_an_unreachable_platform_fails_and_says_where(agent_home: Path) -> None:
    url = _closed_port_url()
    _point_at(agent_home, url)

    found = _levels(agent_home)

    ((level, text),) = found["platform"]
    assert level == "FAIL" and f"cannot reach {url}" in text
    assert found["configuration"][0][0] == "ok"
    assert found["store roots"][0][0] == "ok"
    assert any("PEM" in text for _, text in found["store types"])


def test_loose_modes_and_a_vanished_root_are_named(agent_home: Path, tmp_path: Path) -> None:
    _point_at(agent_home, _closed_port_url())
    agent_home.chmod(0o755)
    (tmp_path / "first").rmdir()

    found = _levels(agent_home)

    assert found["configuration"][0][0] == "FAIL" and "chmod 700" in found["configuration"][0][1]
    assert "platform" not in found  # no session is opened with a key others may read
    assert ("FAIL", f"{tmp_path / 'first'} is not a folder (any more)") in found["store roots"]


def test_an_expired_client_certificate_fails(agent_home: Path) -> None:
    _point_at(agent_home, _closed_port_url())
    (agent_home / "cert.pem").write_text(issue("agent", days=-1).pem)

    ((level, text),) = _levels(agent_home)["certificate"]

    assert level == "FAIL" and "expired" in text and "register again" in text


def test_no_registration_is_one_failure(tmp_path: Path) -> None:
    ((finding),) = doctor_findings(tmp_path / "nowhere")
    assert finding.level == "FAIL" and "not registered" in finding.text


def test_the_command_exits_1_on_a_failure_and_prints_each_finding(
    agent_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _point_at(agent_home, _closed_port_url())

    assert main(["doctor", "--config-dir", str(agent_home)]) == 1

    out = capsys.readouterr()
    assert "FAIL  platform: cannot reach" in out.out and "ok    store roots:" in out.out
    assert "1 problem(s) to fix" in out.err
