"""``certyard-orchestrator scan-allow`` and ``secret-command``: what TLS scan stores may
connect to, and the commands that resolve secret references, are this machine's own
settings, saved in agent.json, followed by a running agent, refused when malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrators.agent.cli import main
from orchestrators.agent.config import ConfigError, Guards, GuardsWatch, load_config
from orchestrators.scan import ScanAllowance


def scan_allow(home: Path, *args: str) -> int:
    return main(["scan-allow", "--config-dir", str(home), *args])


def test_nothing_is_allowed_until_added_and_a_running_agent_follows(
    agent_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    watch = GuardsWatch(agent_home, Guards.of(load_config(agent_home)))
    assert watch.current().scan_allowance.empty
    assert scan_allow(agent_home) == 0
    assert "none: no TLS scan runs" in capsys.readouterr().out

    assert (
        scan_allow(
            agent_home, "--add", "10.0.0.0/8", "--add", "*.example.com", "--ports", "443,8443"
        )
        == 0
    )
    said = capsys.readouterr().out
    assert "10.0.0.0/8, *.example.com" in said and "443,8443" in said
    assert watch.current().scan_allowance == ScanAllowance.parse(
        ["10.0.0.0/8", "*.example.com"], "443,8443"
    )

    assert scan_allow(agent_home, "--remove", "10.0.0.0/8") == 0
    assert load_config(agent_home).scan_targets == ("*.example.com",)
    assert watch.current().scan_allowance.names == ("*.example.com",)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--add", "10.0.0.0/33"], "is neither a network"),
        (["--add", "bad host!"], "is neither a network"),
        (["--ports", "https"], "is not a port or a port range"),
        (["--remove", "192.0.2.0/24"], "is not allowed now"),
    ],
)
def test_a_malformed_change_is_refused_and_nothing_saved(
    agent_home: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = (agent_home / "agent.json").read_text()
    assert scan_allow(agent_home, *args) == 2
    assert message in capsys.readouterr().err
    assert (agent_home / "agent.json").read_text() == before


def test_a_hand_edit_that_breaks_the_allowance_is_refused_not_widened(
    agent_home: Path,
) -> None:
    watch = GuardsWatch(agent_home, Guards.of(load_config(agent_home)))
    saved = json.loads((agent_home / "agent.json").read_text())
    (agent_home / "agent.json").write_text(json.dumps({**saved, "scan_targets": ["0.0.0.0/-1"]}))

    with pytest.raises(ConfigError, match="neither a network"):
        load_config(agent_home)
    assert watch.current().scan_allowance.empty  # kept as it was: nothing


def test_secret_commands_are_named_listed_and_forgotten_locally(
    agent_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def secret_command(*args: str) -> int:
        return main(["secret-command", "--config-dir", str(agent_home), *args])

    assert secret_command() == 0 and "secret commands: none" in capsys.readouterr().out
    assert secret_command("--name", "pass", "--command", "pass show") == 0
    assert "pass: pass show" in capsys.readouterr().out
    assert load_config(agent_home).secret_commands == {"pass": ("pass", "show")}
    assert secret_command("--name", "Bad Name", "--command", "x") == 2
    assert "lowercase letters" in capsys.readouterr().err
    assert secret_command("--command", "x") == 2  # no name
    assert secret_command("--name", "pass", "--remove") == 0
    assert load_config(agent_home).secret_commands == {}
