"""The agent-only wheel (``certyard-agent``, distribution/build_agent_wheel.py) installs into a
fresh virtual environment that holds no Django and no platform code, registers with a live
platform, passes ``doctor``, and runs an inventory and a management job (a removal); the
hardened systemd unit that ships with it is accepted by ``systemd-analyze verify``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    ROOT,
    AgentProcess,
    LivePlatform,
    file_store_created,
    inventory_finished,
    orchestrator_approved,
    wait_for,
)
from tests.e2e.management import batch_finished, removed, store_inventory

pytestmark = pytest.mark.e2e

UNIT = ROOT / "distribution" / "systemd" / "certyard-orchestrator.service"
BUILD = ROOT / "distribution" / "build_agent_wheel.py"


@pytest.fixture(scope="module")
def agent_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with the agent wheel and its two dependencies, nothing else."""
    base = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, str(BUILD), str(base / "dist")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = Path(built.stdout.strip().splitlines()[-1])
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=600,
        cwd=base,
    )
    return venv


def _clean_env() -> dict[str, str]:
    # Nothing of this checkout or its virtual environment may leak into the agent's.
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CERTYARD_", "PYTHON", "VIRTUAL_ENV", "DJANGO"))
    }


@pytest.fixture
def api(live_platform: LivePlatform) -> Iterator[httpx.Client]:
    with live_platform.api() as client:
        yield client


def test_the_wheel_holds_the_agent_alone(agent_venv: Path) -> None:
    python = str(agent_venv / "bin" / "python")
    for module in ("django", "rest_framework", "certyard", "handlers"):
        found = subprocess.run(
            [python, "-c", f"import {module}"],
            capture_output=True,
            text=True,
            cwd=agent_venv,
            env=_clean_env(),
            timeout=60,
        )
        assert found.returncode != 0 and "ModuleNotFoundError" in found.stderr, module
    installed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.lower()
    names = {line.split("==")[0] for line in installed.split()}
    assert {"certyard-agent", "cryptography", "httpx"} <= names
    assert not names & {"django", "djangorestframework", "certyard"}


def test_the_installed_agent_registers_inventories_and_manages_a_store(
    agent_venv: Path, live_platform: LivePlatform, api: httpx.Client, tmp_path: Path
) -> None:
    command = str(agent_venv / "bin" / "certyard-orchestrator")
    config_dir, stores = tmp_path / "agent", tmp_path / "stores"
    site = stores / "site"
    site.mkdir(parents=True)
    leaf = issue("wheel.e2e.test", sans=("wheel.e2e.test",), days=200)
    (site / "wheel.pem").write_text(leaf.pem)
    env = _clean_env()

    registered = subprocess.run(
        [
            command,
            "register",
            "--url",
            live_platform.url,
            "--token",
            live_platform.registration_token(description="agent wheel"),
            "--name",
            "wheel-agent",
            "--client-machine",
            "wheel-agent.e2e.test",
            "--store-root",
            str(stores),
            "--config-dir",
            str(config_dir),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr
    orchestrator = orchestrator_approved(api, "wheel-agent")

    doctor = subprocess.run(
        [command, "doctor", "--config-dir", str(config_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "key accepted; status approved" in doctor.stdout
    assert f"ok    store roots: {stores.resolve()}" in doctor.stdout
    assert "FAIL" not in doctor.stdout

    agent = AgentProcess(
        "wheel-agent",
        config_dir,
        tmp_path / "agent.log",
        env,
        command=(command,),
        cwd=tmp_path,
    )
    agent.start()
    try:
        store = file_store_created(api, orchestrator, site)
        job = inventory_finished(api, store["id"], agent)
        assert job["state"] == "succeeded", agent.log()[-3000:]
        assert store_inventory(api, store["id"]) == {"wheel.pem": leaf.sha256}

        # A management job: take the certificate out of the store again.
        # The store's one certificate (the platform is shared with other tests).
        (listed,) = api.get("certificates/", params={"store": store["id"]}).json()["results"]
        assert listed["sha256"] == leaf.sha256
        certificate_id = listed["id"]
        batch = batch_finished(
            api, removed(api, certificate_id, [store["id"]])["id"], agents=(agent,)
        )
        assert [d["state"] for d in batch["deployments"]] == ["written"], batch
        assert not (site / "wheel.pem").exists()
        wait_for(
            lambda: store_inventory(api, store["id"]) == {},
            timeout=30,
            what="the removal to reach the inventory",
        )
    finally:
        agent.stop()
    # It ran the installed code, not this checkout's.
    assert str(ROOT) not in agent.log()


def test_the_systemd_unit_is_accepted_and_hardened(agent_venv: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed: run `make system-deps`")
    unit = tmp_path / UNIT.name
    # The unit names /opt/certyard-agent; verify checks that the command exists.
    unit.write_text(UNIT.read_text().replace("/opt/certyard-agent", str(agent_venv)))

    verify = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert exposure is not None, security.stdout + security.stderr
    assert float(exposure.group(1)) <= 2.0, security.stdout
