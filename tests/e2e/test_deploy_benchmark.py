"""The deployment benchmark runs (small: 2 agents, 10 PEM + 10 PKCS#12 stores), so it
cannot rot between the `make bench` runs that measure it at full size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_the_deploy_benchmark_delivers_to_every_store_in_its_small_mode() -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "deploy.py"), "--small"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "20 verified deployments of 20" in output, output[-5000:]
    assert "verified deployments/s" in output and "per-job time" in output, output
    assert "ms per job" in output, output
