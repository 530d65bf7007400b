"""Store type names agreed: the entry point's name is the short name; a class without one
takes it; a class, or a declaration, that names another is refused, logged and reported by
``certyard-orchestrator extensions`` (orchestrators/agent/store_types.py).

Each case is a store type of a small distribution written into a temporary folder, seen by
a subprocess only (entry points are read once per process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tempdist import env_with_path, write_distribution

ROOT = Path(__file__).resolve().parents[2]
GROUP = "certyard.store_types.names_test"

STORES = """
from orchestrators.declarations import StoreTypeDeclaration
from orchestrators.protocol import StoreOperation
from orchestrators.sdk import StoreTypeExtension


class Unnamed(StoreTypeExtension):
    operations = frozenset({StoreOperation.INVENTORY})

    def inventory(self, job):
        return []


class Agreeing(StoreTypeExtension):
    short_name = "AGREEING"
    operations = frozenset({StoreOperation.INVENTORY})
    declaration = StoreTypeDeclaration(short_name="AGREEING", name="Agreeing")

    def inventory(self, job):
        return []


class OtherName(Unnamed):
    short_name = "SOMETHING_ELSE"


class OtherDeclaration(Unnamed):
    short_name = "DECLARED"
    declaration = StoreTypeDeclaration(short_name="DECLARED_OTHER", name="Declared")


class AddMissing(Unnamed):
    short_name = "ADDLESS"
    operations = frozenset({StoreOperation.INVENTORY, StoreOperation.ADD})


class NoInventory(StoreTypeExtension):
    short_name = "NOINV"
    operations = frozenset({StoreOperation.INVENTORY})


class NotAStore:
    short_name = "PLAIN"
"""


@pytest.fixture(scope="module")
def agent_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = write_distribution(
        tmp_path_factory.mktemp("dist"),
        name="acme-stores",
        version="1.2.3",
        files={"acme_stores.py": STORES},
        entry_points={
            GROUP: {
                "UNNAMED": "acme_stores:Unnamed",
                "AGREEING": "acme_stores:Agreeing",
                "MISNAMED": "acme_stores:OtherName",
                "DECLARED": "acme_stores:OtherDeclaration",
                "ADDLESS": "acme_stores:AddMissing",
                "NOINV": "acme_stores:NoInventory",
                "PLAIN": "acme_stores:NotAStore",
                "GONE": "acme_stores_missing:Nothing",
            }
        },
    )
    return env_with_path(folder, ROOT, CERTYARD_EXTRA_STORE_TYPE_GROUPS=GROUP)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_agent_offers_agreeing_names_and_refuses_the_others(agent_env: dict[str, str]) -> None:
    code = (
        "import json, logging\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from orchestrators.agent.store_types import capabilities, load_store_types\n"
        "types = load_store_types()\n"
        "print(json.dumps({'names': sorted(types), 'unnamed': types['UNNAMED'].short_name,"
        " 'capabilities': capabilities(types)}))\n"
    )
    done = _run(agent_env, "-c", code)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    # Offered: the built-ins, the agreeing one, the unnamed one under its entry point's name,
    # and one that lists an operation it does not implement (its jobs fail; reported).
    assert {"PEM", "AGREEING", "UNNAMED", "ADDLESS"} <= set(answer["names"])
    assert not {"MISNAMED", "SOMETHING_ELSE", "DECLARED", "NOINV", "PLAIN", "GONE"} & set(
        answer["names"]
    )
    assert answer["unnamed"] == "UNNAMED"
    assert "UNNAMED.Inventory" in answer["capabilities"]
    # Each refusal is logged, saying why.
    log = done.stderr
    assert (
        "store type plugin 'MISNAMED' (acme_stores:OtherName, acme-stores) skipped: its class's "
        "short_name 'SOMETHING_ELSE' disagrees with the entry point's name 'MISNAMED'" in log
    )
    assert "its declaration's short_name 'DECLARED_OTHER' disagrees" in log
    assert "'PLAIN'" in log and "is not a subclass of orchestrators.sdk.StoreTypeExtension" in log
    assert "'GONE'" in log and "cannot be imported: ModuleNotFoundError" in log
    assert "'NOINV'" in log and "does not implement inventory()" in log
    assert "it lists the operation add but does not implement add()" in log


def test_the_agents_extensions_command_reports_each_store_type(agent_env: dict[str, str]) -> None:
    done = _run(agent_env, "-m", "orchestrators.agent", "extensions", "--json")
    assert done.returncode == 1, done.stderr  # some are broken
    found = {item["name"]: item for item in json.loads(done.stdout)["store_types"]}
    assert found["AGREEING"] == {
        "name": "AGREEING",
        "kind": "store_type",
        "class": "acme_stores:Agreeing",
        "group": GROUP,
        "package": "acme-stores",
        "version": "1.2.3",
        "short_name": "AGREEING",
        "operations": ["inventory"],
        "problems": [],
        "refused": False,
    }
    assert found["UNNAMED"]["short_name"] == "UNNAMED" and not found["UNNAMED"]["problems"]
    assert found["MISNAMED"]["refused"] and "disagrees" in found["MISNAMED"]["problems"][0]
    assert found["DECLARED"]["refused"]
    assert not found["ADDLESS"]["refused"] and found["ADDLESS"]["problems"]
    assert found["PEM"]["group"] == "certyard.store_types" and not found["PEM"]["problems"]
    assert found["JKS"]["group"] == "built in"

    text = _run(agent_env, "-m", "orchestrators.agent", "extensions")
    assert text.returncode == 1
    assert "MISNAMED" in text.stdout and "refused" in text.stdout
    assert "store type(s) with problems" in text.stderr


def test_the_agents_extensions_command_passes_when_all_agree() -> None:
    done = _run(
        {**env_with_path(ROOT, ROOT), "CERTYARD_EXTRA_STORE_TYPE_GROUPS": ""},
        "-m",
        "orchestrators.agent",
        "extensions",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PEM" in done.stdout and "MANIFEST" in done.stdout
