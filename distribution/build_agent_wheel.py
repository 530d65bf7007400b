"""Build the agent-only wheel (``certyard-agent``): ``orchestrators/`` and nothing else.

Usage: python distribution/build_agent_wheel.py [OUTPUT_FOLDER]   (default: dist/)

The agent's package is copied beside ``distribution/agent/pyproject.toml`` in a temporary
folder (so the wheel can hold no Django, platform or handler code, whatever lies next to
it in the repository) and built there with pip. Prints the wheel's path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "distribution" / "agent"


def agent_version() -> str:
    text = (ROOT / "orchestrators" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if match is None:
        raise SystemExit("orchestrators/__init__.py has no __version__")
    return match.group(1)


def build(output: Path) -> Path:
    """Build the wheel into ``output``; its path."""
    output = output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    version = agent_version()
    with tempfile.TemporaryDirectory(prefix="certyard-agent-build-") as folder:
        stage = Path(folder)
        shutil.copytree(
            ROOT / "orchestrators",
            stage / "orchestrators",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        recipe = (RECIPE / "pyproject.toml").read_text()
        (stage / "pyproject.toml").write_text(
            re.sub(r'^version = "[^"]*".*$', f'version = "{version}"', recipe, count=1, flags=re.M)
        )
        shutil.copy(RECIPE / "README.md", stage / "README.md")
        # pip builds in an isolated environment with the setuptools the recipe asks for.
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(output)]
        subprocess.run([*command, str(stage)], check=True, cwd=stage)
    wheel = output / f"certyard_agent-{version}-py3-none-any.whl"
    if not wheel.exists():
        raise SystemExit(f"pip built no {wheel.name} in {output}")
    return wheel


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist"))
