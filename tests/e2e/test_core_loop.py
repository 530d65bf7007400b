"""The core loop, end to end, with real processes: agent, web server, worker."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    AgentProcess,
    LivePlatform,
    certificates_listed,
    job_if_finished,
    orchestrator_named,
    scheduled_job_finished,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _write_pem_folder(folder: Path) -> dict[str, object]:
    """Three files: a leaf with its CA, a leaf with its key, and a self-signed one."""
    ca = issue("E2E Root CA", ca=True, days=3650)
    web = issue("web.e2e.test", issuer=ca, days=20, sans=("web.e2e.test", "www.e2e.test"))
    mail = issue("mail.e2e.test", issuer=ca, days=200)
    legacy = issue("legacy.e2e.test", days=-2)
    folder.mkdir()
    (folder / "web.pem").write_text(web.pem + ca.pem)
    (folder / "mail.crt").write_text(mail.pem + mail.key_pem)
    (folder / "legacy.cer").write_text(legacy.pem)
    (folder / "notes.txt").write_text("not a certificate")
    return {"ca": ca, "web": web, "mail": mail, "legacy": legacy}


def test_register_approve_inventory_and_reinventory(
    live_platform: LivePlatform, agent_factory, tmp_path: Path
) -> None:
    folder = tmp_path / "pem-store"
    certs = _write_pem_folder(folder)
    agent: AgentProcess = agent_factory("e2e-agent")
    assert "status new" in agent.registration_output.lower()
    agent.start()

    with live_platform.api() as api:
        orchestrator = orchestrator_named(api, "e2e-agent")
        assert orchestrator["status"] == "new"
        assert "PEM.Inventory" in orchestrator["capabilities"]

        # A New orchestrator gets no jobs, however long it polls.
        time.sleep(1)
        assert api.get("jobs/", params={"orchestrator": orchestrator["id"]}).json()["count"] == 0

        approved = api.post(f"orchestrators/{orchestrator['id']}/approve/")
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "approved"

        created = api.post(
            "stores/",
            json={
                "store_type": "PEM",
                "client_machine": "e2e-agent.e2e.test",
                "store_path": str(folder),
                "orchestrator": orchestrator["id"],
                "inventory_interval_minutes": 60,
            },
        )
        assert created.status_code == 201, created.text
        store = created.json()

        # The store is scheduled: only the worker's maintenance task opens the first job.
        first_job = scheduled_job_finished(api, store["id"], agent)
        assert first_job["state"] == "succeeded", first_job
        assert first_job["result"]["inventory"]["added"] == 3
        assert first_job["history"][0]["outcome"] == "success"

        # Every certificate with its location and expiry.
        in_store = {c["common_name"]: c for c in certificates_listed(api, store=store["id"])}
        assert set(in_store) == {"web.e2e.test", "mail.e2e.test", "legacy.e2e.test"}
        for name in ("web", "mail", "legacy"):
            expected = certs[name].certificate
            found = in_store[expected.subject.rfc4514_string().removeprefix("CN=")]
            assert found["sha256"] == certs[name].sha256
            assert dt.datetime.fromisoformat(found["not_after"]) == expected.not_valid_after_utc
        web = api.get(f"certificates/{in_store['web.e2e.test']['id']}/").json()
        assert [(loc["alias"], loc["store_path"]) for loc in web["locations"]] == [
            ("web.pem", str(folder))
        ]
        assert web["sans"] == ["DNS:web.e2e.test", "DNS:www.e2e.test"]
        mail = api.get(f"certificates/{in_store['mail.e2e.test']['id']}/").json()
        assert mail["locations"][0]["has_private_key"] is True
        # The CA came in the chain: it is in the inventory too, linked as the issuer.
        assert web["issuer_certificate"] is not None
        found_ca = [c for c in certificates_listed(api, search="E2E Root CA") if c["is_ca"]]
        assert [(c["common_name"], c["id"]) for c in found_ca] == [
            ("E2E Root CA", web["issuer_certificate"])
        ]

        # Remove a file and take inventory again, now.
        (folder / "legacy.cer").unlink()
        rerun = api.post(f"stores/{store['id']}/inventory-now/")
        assert rerun.status_code == 201, rerun.text
        second_job = wait_for(
            lambda: job_if_finished(api, rerun.json()["id"]),
            timeout=60,
            what=f"the second inventory\n{agent.log()[-2000:]}",
        )
        assert second_job["state"] == "succeeded", second_job
        assert second_job["result"]["inventory"]["removed_aliases"] == ["legacy.cer"]
        assert second_job["result"]["inventory"]["unchanged"] == 2

        legacy = in_store["legacy.e2e.test"]
        detail = api.get(f"certificates/{legacy['id']}/")
        assert detail.status_code == 200  # the certificate record stays...
        assert detail.json()["locations"] == []  # ...its location is gone
        assert {c["common_name"] for c in certificates_listed(api, store=store["id"])} == {
            "web.e2e.test",
            "mail.e2e.test",
        }

    # The agent stops cleanly and promptly on SIGTERM.
    started = time.monotonic()
    assert agent.stop() == 0
    assert time.monotonic() - started < 10
    assert "SIGTERM" in agent.log()


def test_agent_backs_off_and_exits_when_reset(live_platform: LivePlatform, agent_factory) -> None:
    """A reset orchestrator's agent is refused and exits with code 3, telling the operator why."""
    agent = agent_factory("e2e-reset")
    agent.start()
    with live_platform.api() as api:
        orchestrator = orchestrator_named(api, "e2e-reset")
        wait_for(
            lambda: orchestrator_named(api, "e2e-reset")["last_seen"],
            timeout=30,
            what="the agent's first heartbeat",
        )
        assert api.post(f"orchestrators/{orchestrator['id']}/reset/").status_code == 200
    assert agent.process is not None
    code = agent.process.wait(timeout=60)
    assert code == 3, agent.log()
    assert "register" in agent.log().lower()


def test_every_file_of_the_running_platform_is_private(live_platform: LivePlatform) -> None:
    """The database, its WAL and the secret key: readable by their owner alone."""
    files = [path for path in live_platform.data_dir.rglob("*") if not path.is_symlink()]
    assert any(path.name.endswith("sqlite3-wal") for path in files)
    loose = {
        str(path): oct(path.stat().st_mode & 0o777) for path in files if path.stat().st_mode & 0o077
    }
    assert not loose
    assert live_platform.data_dir.stat().st_mode & 0o077 == 0
    assert "cyreg_" not in live_platform.log(), "no registration token in make run's output"
