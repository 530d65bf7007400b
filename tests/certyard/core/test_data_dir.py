"""The data directory is private: make run refuses one others can read, and tightens its files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from certyard.datadir import data_dir_problem, data_dir_tighten

ROOT = Path(__file__).resolve().parents[3]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_directory_others_can_read_is_a_problem_and_a_private_one_is_not(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)

    assert "chmod 700" in (data_dir_problem(shared) or "")
    assert data_dir_problem(private) is None


def test_tightening_makes_files_0600_and_folders_0700(tmp_path: Path) -> None:
    (tmp_path / "agent").mkdir(mode=0o755)
    (tmp_path / "certyard.sqlite3").write_bytes(b"x")
    (tmp_path / "certyard.sqlite3").chmod(0o644)
    (tmp_path / "agent" / "agent.key").write_bytes(b"k")
    (tmp_path / "agent" / "agent.key").chmod(0o640)

    assert data_dir_tighten(tmp_path) == 3

    assert _mode(tmp_path / "certyard.sqlite3") == 0o600
    assert _mode(tmp_path / "agent") == 0o700
    assert _mode(tmp_path / "agent" / "agent.key") == 0o600
    assert data_dir_tighten(tmp_path) == 0


def test_make_run_refuses_a_data_directory_others_can_read(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    env = {
        **os.environ,
        "CERTYARD_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'certyard.sqlite3'}",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)

    refused = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "certyard_run", "--no-demo-orchestrator"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert refused.returncode != 0
    assert "can be read by other users" in refused.stderr
    assert not (data_dir / "certyard.sqlite3").exists(), "nothing was set up"
