"""The agent as a real process against the live platform: the paths off the happy one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.certs import issue
from tests.e2e.conftest import AGENT, ROOT, LivePlatform, wait_for

pytestmark = pytest.mark.e2e

STORE_PASSWORD = "s3cret-store-password-e2e"


def test_malformed_file_is_reported_as_a_warning_and_secrets_stay_out_of_logs(
    live_platform: LivePlatform, agent_factory, tmp_path: Path
) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    good = issue("good.agent.e2e.test")
    (folder / "good.pem").write_text(good.pem)
    (folder / "broken.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    )
    agent = agent_factory("e2e-warning")
    agent.start()
    with live_platform.api() as api:
        orchestrator = next(
            o for o in api.get("orchestrators/").json()["results"] if o["name"] == "e2e-warning"
        )
        assert api.post(f"orchestrators/{orchestrator['id']}/approve/").status_code == 200
        store = api.post(
            "stores/",
            json={
                "store_type": "PEM",
                "client_machine": "e2e-warning.e2e.test",
                "store_path": str(folder),
                "orchestrator": orchestrator["id"],
                "password": STORE_PASSWORD,
            },
        ).json()
        assert store["has_password"] is True
        job_id = api.post(f"stores/{store['id']}/inventory-now/").json()["id"]

        def finished() -> dict | None:
            job = api.get(f"jobs/{job_id}/").json()
            return job if job["state"] == "succeeded" else None

        job = wait_for(finished, timeout=60, what=f"the inventory job\n{agent.log()[-2000:]}")
        assert job["outcome"] == "warning"
        assert "broken.pem" in job["message"]
        assert job["result"]["inventory"]["added"] == 1
        assert job["result"]["inventory"]["rejected"][0]["alias"] == "broken.pem"
        names = [
            c["common_name"]
            for c in api.get("certificates/", params={"store": store["id"]}).json()["results"]
        ]
        assert names == ["good.agent.e2e.test"]
    assert agent.stop() == 0
    log = agent.log()
    assert "broken.pem" in log
    assert STORE_PASSWORD not in log  # even at DEBUG level
    assert STORE_PASSWORD not in live_platform.log()
    assert "Bearer " not in log


def test_register_with_a_used_token_exits_2_and_saves_nothing(
    live_platform: LivePlatform, agent_factory, tmp_path: Path
) -> None:
    token = live_platform.registration_token(description="one-time")
    agent_factory("e2e-first", token=token)
    config_dir = tmp_path / "second"
    refused = subprocess.run(
        [
            *AGENT,
            "register",
            "--url",
            live_platform.url,
            "--token",
            token,
            "--name",
            "e2e-second",
            "--config-dir",
            str(config_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "already been used" in refused.stderr
    assert not (config_dir / "agent.json").exists()


def test_unreachable_platform_is_retried_not_fatal(agent_factory, tmp_path: Path) -> None:
    """An agent whose platform is away keeps backing off instead of exiting."""
    agent = agent_factory("e2e-backoff")
    config = agent.config_dir / "agent.json"
    text = config.read_text()
    port = text.split("127.0.0.1:")[1].split('"')[0].split("/")[0]
    config.write_text(text.replace(f"127.0.0.1:{port}", "127.0.0.1:9"))  # nothing listens there
    agent.start()
    wait_for(lambda: "retrying in" in agent.log(), timeout=30, what="a back-off message")
    assert agent.process is not None and agent.process.poll() is None
    assert agent.stop() == 0
