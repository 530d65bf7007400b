"""``certyard-orchestrator reload``: reload commands live in the agent's own configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrators.agent.cli import main
from orchestrators.agent.config import AgentConfig, load_config, save_registration
from tests.certs import agent_key


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    save_registration(
        AgentConfig(
            config_dir=home,
            platform_url="https://platform.test",
            orchestrator_id="orch-1",
            name="agent",
            client_machine="here",
        ),
        private_key=agent_key(),
        certificate=None,
        ca_chain=None,
    )
    return home


def test_a_reload_command_is_set_by_real_path_listed_and_removed(
    tmp_path: Path, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ssl").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "ssl")
    home = ["--config-dir", str(config_dir)]

    assert main(["reload", *home, "--store-path", str(tmp_path / "link"),
                 "--command", "systemctl reload 'nginx server'"]) == 0  # fmt: skip

    real = str(tmp_path / "ssl")
    assert load_config(config_dir).reload_commands == {
        real: ("systemctl", "reload", "nginx server")
    }
    saved = json.loads((config_dir / "agent.json").read_text())
    assert saved["reload_commands"] == {real: ["systemctl", "reload", "nginx server"]}
    assert f"{real}: systemctl reload 'nginx server'" in capsys.readouterr().out

    assert main(["reload", *home, "--store-path", real, "--remove"]) == 0
    assert load_config(config_dir).reload_commands == {}
    assert main(["reload", *home, "--store-path", real, "--remove"]) == 2
    assert "no reload command is set" in capsys.readouterr().err


def test_a_reload_command_needs_a_store_path_and_a_command(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reload", "--config-dir", str(config_dir), "--command", "true"]) == 2
    assert main(["reload", "--config-dir", str(config_dir), "--store-path", "/x",
                 "--command", "  "]) == 2  # fmt: skip
    assert "the reload command is empty" in capsys.readouterr().err


def test_a_hand_edited_reload_command_of_the_wrong_shape_is_a_clear_error(
    config_dir: Path,
) -> None:
    data = json.loads((config_dir / "agent.json").read_text())
    data["reload_commands"] = {"/etc/ssl": "systemctl reload nginx"}
    (config_dir / "agent.json").write_text(json.dumps(data))

    with pytest.raises(Exception, match="must be a list of strings"):
        load_config(config_dir)
