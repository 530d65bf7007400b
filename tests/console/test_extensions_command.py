"""``manage.py certyard_extensions list|check [--json]``: the installed examples, the handlers
of tests/plugins that are broken on purpose (read through ``CERTYARD_EXTRA_HANDLER_GROUPS``,
set by tests/conftest.py), the agent's store types, and the registrations that cannot work."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from certyard.inventory.models import MetadataField
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.services import registration_save
from tests.tempdist import env_with_path, write_distribution

ROOT = Path(__file__).resolve().parents[2]
MANAGE = [sys.executable, str(ROOT / "manage.py"), "certyard_extensions"]


def _command(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("certyard_extensions", *args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in report["extensions"]}


@pytest.mark.django_db
def test_list_shows_every_extension_with_its_package_and_exits_0() -> None:
    code, out = _command("list")
    assert code == 0
    assert "Platform handlers" in out and "Agent store types" in out
    line = next(line for line in out.splitlines() if "example.team_from_dns" in line)
    assert line.split() == [
        "example.team_from_dns",
        "metadata",
        "certyard-example-extensions",
        "0.1.0",
        "certyard_examples.team_metadata:TeamFromDnsSuffix",
        "ok",
    ]
    broken = next(line for line in out.splitlines() if line.split()[:1] == ["test.broken_import"])
    assert broken.split()[1] == "?" and broken.endswith("BROKEN")
    assert "! test.broken_import: cannot be imported: ModuleNotFoundError" in out
    assert any(line.split()[:2] == ["MANIFEST", "store_type"] for line in out.splitlines())
    assert "Registrations that cannot work (0):" in out


@pytest.mark.django_db
def test_check_names_each_problem_in_a_sentence_and_exits_1() -> None:
    HandlerRegistration.objects.create(name="gone", handler="acme.uninstalled", kind="event")
    HandlerRegistration.objects.create(name="broken", handler="test.broken_import", kind="event")
    team = registration_save(
        registration=HandlerRegistration(name="teams", handler="example.team_from_dns"),
        values={"teams": ["example.com=platform"], "field": "team"},
    )
    MetadataField.objects.filter(name="team").delete()

    code, out = _command("check")

    assert code == 1
    lines = out.splitlines()
    assert (
        "Handler test.broken_import (certyard-test-handlers 0.1.0, "
        "certyard_test_handlers_missing_module:Nothing) cannot be imported: "
        "ModuleNotFoundError: No module named 'certyard_test_handlers_missing_module'." in lines
    )
    gone = next(line for line in lines if line.startswith("Registration 'gone'"))
    assert "The class acme.uninstalled is not installed" in gone
    assert any(
        line.startswith("Registration 'broken'") and "cannot be loaded" in line for line in lines
    )
    assert (
        f"Registration 'teams' (#{team.pk}, class example.team_from_dns): it fills metadata "
        "fields that do not exist: team." in out
    )
    # Only the broken ones are named.
    assert not any("example.agent_identity" in line for line in lines)


@pytest.mark.django_db
def test_json_has_one_shape_for_list_and_check() -> None:
    code, out = _command("list", "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"ok", "extensions", "registrations", "notes", "problems"}
    assert report["ok"] is False and report["registrations"] == []
    found = _by_name(report)
    assert found["example.retry_failed_inventory"] == {
        "name": "example.retry_failed_inventory",
        "kind": "job_complete",
        "side": "platform",
        "class": "certyard_examples.inventory_retry:RetryFailedInventory",
        "package": "certyard-example-extensions",
        "version": "0.1.0",
        "group": "",
        "problems": [],
    }
    assert found["test.broken_import"]["kind"] == ""
    assert found["test.broken_import"]["problems"][0].startswith("cannot be imported")
    assert found["MANIFEST"]["side"] == "agent" and found["MANIFEST"]["kind"] == "store_type"
    assert found["KEYLESS"]["group"] == "certyard.store_types.tests"
    assert len(report["problems"]) == 1  # the broken import, as a sentence

    code, out = _command("check", "--json")
    assert code == 1 and json.loads(out) == report


def test_check_exits_0_on_the_installed_examples_and_1_on_a_broken_one(tmp_path: Path) -> None:
    """As a developer runs it: a process of its own, its exit code."""
    env = {
        **os.environ,
        "CERTYARD_DATA_DIR": str(tmp_path / "var"),
        "CERTYARD_EXTRA_HANDLER_GROUPS": "",
        "CERTYARD_EXTRA_STORE_TYPE_GROUPS": "",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DATABASE_URL", None)
    ok = subprocess.run(
        [*MANAGE, "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "no problem found" in ok.stdout
    assert "Registrations not checked: the database cannot be read" in ok.stdout

    broken = subprocess.run(
        [*MANAGE, "check"],
        cwd=ROOT,
        env={**env, "CERTYARD_EXTRA_HANDLER_GROUPS": "certyard.handlers.tests"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert broken.returncode == 1
    assert "Handler test.broken_import" in broken.stdout
    assert "1 problem found" in broken.stderr


def test_check_reports_store_types_whose_names_disagree(tmp_path: Path) -> None:
    """The platform never imports store types: it asks the agent's own check."""
    folder = write_distribution(
        tmp_path / "dist",
        name="acme-stores",
        version="2.0",
        files={
            "acme_store.py": (
                "from orchestrators.protocol import StoreOperation\n"
                "from orchestrators.sdk import StoreTypeExtension\n"
                "class Appliance(StoreTypeExtension):\n"
                "    short_name = 'APPLIANCE'\n"
                "    operations = frozenset({StoreOperation.INVENTORY})\n"
                "    def inventory(self, job):\n"
                "        return []\n"
            )
        },
        entry_points={"certyard.store_types": {"ACME": "acme_store:Appliance"}},
    )
    env = env_with_path(
        folder,
        ROOT,
        CERTYARD_DATA_DIR=str(tmp_path / "var"),
        CERTYARD_EXTRA_HANDLER_GROUPS="",
        CERTYARD_EXTRA_STORE_TYPE_GROUPS="",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [*MANAGE, "check", "--json", "--no-database"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert _by_name(report)["ACME"]["package"] == "acme-stores"
    assert report["problems"] == [
        "Store type ACME (acme-stores 2.0, acme_store:Appliance) is refused by the agent: "
        "its class's short_name 'APPLIANCE' disagrees with the entry point's name 'ACME': "
        "set short_name = 'ACME', or remove it (the entry point's name is used)."
    ]
    assert "Registrations not checked" not in done.stdout


@pytest.mark.django_db
def test_an_agent_check_that_cannot_run_is_a_problem(tmp_path: Path) -> None:
    code, out = _command("check", "--agent-python", str(tmp_path / "no-python"))
    assert code == 1
    assert "The agent's store types could not be checked" in out
