from __future__ import annotations

from pathlib import Path

import pytest

from orchestrators.agent.cli import main


def test_status_without_registration_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(["status", "--config-dir", str(tmp_path)])

    assert exit_code != 0
    assert "not registered: run `certyard-orchestrator register` first" in capsys.readouterr().err


def test_run_without_registration_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(["run", "--config-dir", str(tmp_path)])

    assert exit_code == 2
    assert "not registered" in capsys.readouterr().err


def test_register_refuses_a_missing_store_root_before_asking_the_platform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The token is spent by the platform's answer: a store root that does not exist is
    refused first. The URL answers nothing (a closed port), so reaching it would say
    "unavailable" (exit 1), not this refusal; and no configuration is written."""
    token_file = tmp_path / "token"
    token_file.write_text("cyreg_not_used\n")
    config_dir = tmp_path / "agent"
    exit_code = main(
        [
            "register",
            "--url",
            "http://127.0.0.1:9",
            "--token-file",
            str(token_file),
            "--store-root",
            str(tmp_path / "no-such-folder"),
            "--config-dir",
            str(config_dir),
        ]
    )

    assert exit_code == 2
    err = capsys.readouterr().err
    assert "no-such-folder is not a folder of this machine" in err
    assert "cyreg_not_used" not in err
    assert not (config_dir / "agent.json").exists()
