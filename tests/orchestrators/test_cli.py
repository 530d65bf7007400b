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
