"""The architecture contracts of pyproject.toml ([tool.importlinter]), checked by `make lint`.

The real tree must keep every contract. To show the contracts bite, each failing case builds a
skeleton in tmp_path holding every module the contracts name, adds one forbidden import to it
and runs lint-imports on it with the real configuration: the contract concerned must break.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.test_layout import APP_ORDER

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract for contract in CONFIG["contracts"]}


def _lint(cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    """Run lint-imports in its own interpreter (sys.path and sys.modules of its own), on the
    pyproject.toml found in ``cwd``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(path) for path in pythonpath),
        # Wide and plain, so a contract's name is never wrapped or coloured.
        "COLUMNS": "250",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--no-cache",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _broken(result: subprocess.CompletedProcess[str]) -> str:
    """The report's "Broken contracts" section (empty when every contract is kept)."""
    _, _, broken = result.stdout.partition("Broken contracts")
    return broken


def _named_modules() -> set[str]:
    """Every module the contracts name, so a skeleton holding them satisfies the configuration."""
    roots = set(CONFIG["root_packages"])
    names = set(roots)
    for contract in CONFIG["contracts"]:
        for container in contract.get("containers", []):
            for layer in contract["layers"]:
                for tail in re.split(r"[|:]", layer):
                    names.add(f"{container}.{tail.strip().strip('()')}")
        for key in ("source_modules", "forbidden_modules", "ancestors"):
            names.update(contract.get(key, []))
    return {name for name in names if name.split(".")[0] in roots}


def _skeleton(tmp_path: Path) -> Path:
    """An empty package per named module, with the real configuration next to them."""
    for name in _named_modules():
        package = tmp_path.joinpath(*name.split("."))
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").touch()
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    return tmp_path


def _add_module(root: Path, name: str, source: str) -> None:
    path = root.joinpath(*name.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def test_the_real_tree_keeps_every_contract() -> None:
    result = _lint(ROOT, [ROOT / "platform", ROOT])

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


def test_an_empty_skeleton_keeps_every_contract(tmp_path: Path) -> None:
    root = _skeleton(tmp_path)

    result = _lint(root, [root])

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "source", "contract_id"),
    [
        pytest.param(
            "certyard.workflows.services",
            "import certyard.console\n",
            "platform-layers",
            id="a lower app imports a higher one",
        ),
        pytest.param(
            "certyard.errors.codes",
            "from certyard.pki import services\n",
            "platform-layers",
            id="errors import an app",
        ),
        pytest.param(
            "handlers.registry.loader",
            "import django.conf\n",
            "runtimes-apart",
            id="handlers import django",
        ),
        pytest.param(
            "orchestrators.agent.runner",
            "from certyard.jobs import models\n",
            "runtimes-apart",
            id="the agent imports the platform",
        ),
        pytest.param(
            "orchestrators.sdk.loading",
            "from orchestrators.stores import pem\n",
            "sdk-pure-contract",
            id="the SDK imports a store type",
        ),
        pytest.param(
            "certyard.fleet.services",
            "from orchestrators.sdk import StoreError\n",
            "platform-speaks-protocol",
            id="the platform imports the SDK",
        ),
        pytest.param(
            "handlers.base.kinds",
            "from handlers.builtin import email\n",
            "handler-contracts-pure",
            id="a handler contract imports a built-in",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, source: str, contract_id: str
) -> None:
    root = _skeleton(tmp_path)
    _add_module(root, module, source)

    result = _lint(root, [root])

    assert result.returncode == 1, result.stdout + result.stderr
    assert CONTRACTS[contract_id]["name"] in _broken(result)


def test_a_cycle_between_siblings_breaks_the_acyclic_contract(tmp_path: Path) -> None:
    root = _skeleton(tmp_path)
    _add_module(root, "certyard.pki.services", "from certyard.pki import selectors\n")
    _add_module(root, "certyard.pki.selectors", "def f():\n    from certyard.pki import services\n")

    result = _lint(root, [root])

    assert result.returncode == 1, result.stdout + result.stderr
    broken = _broken(result)
    assert CONTRACTS["no-cycles"]["name"] in broken
    assert "certyard.pki" in broken
    # A cycle inside one app breaks no layer.
    assert CONTRACTS["platform-layers"]["name"] not in broken


def test_the_layers_contract_lists_the_apps_in_their_order() -> None:
    layers = [layer.strip() for layer in CONTRACTS["platform-layers"]["layers"]]

    apps_top_down = [layer for layer in layers if layer in APP_ORDER]

    assert apps_top_down == list(reversed(APP_ORDER))
