"""A real agent reads stores only inside its roots, whatever the platform asks of it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    AGENT,
    ROOT,
    LivePlatform,
    file_store_created,
    inventory_finished,
    orchestrator_approved,
    wait_for,
)

pytestmark = pytest.mark.e2e


def test_store_paths_outside_the_roots_are_refused_directly_by_dotdot_and_by_link(
    live_platform: LivePlatform, agent_factory, tmp_path: Path, tmp_path_factory
) -> None:
    outside = tmp_path_factory.mktemp("outside-the-roots")
    secret = issue("secret.outside.e2e.test")
    (outside / "secret.pem").write_text(secret.pem)
    inside = tmp_path / "inside"
    inside.mkdir()
    mine = issue("mine.inside.e2e.test")
    (inside / "mine.pem").write_text(mine.pem)
    (inside / "leak.pem").symlink_to(outside / "secret.pem")  # a link out of the roots
    (tmp_path / "linked-folder").symlink_to(outside)
    agent = agent_factory("e2e-guards")  # its root: tmp_path
    agent.start()
    with live_platform.api() as api:
        orchestrator = orchestrator_approved(api, "e2e-guards")
        # The agent reports its roots after its session: the platform then refuses what
        # the agent would refuse, with the agent's own message, before any job exists.
        wait_for(
            lambda: api.get(f"orchestrators/{orchestrator['id']}/").json()["store_roots"],
            timeout=60,
            what=f"the agent's reported roots\n{agent.log()[-2000:]}",
        )
        for how, path in {"direct": outside, "dotdot": tmp_path / ".." / outside.name}.items():
            answer = api.post(
                "stores/",
                json={
                    "orchestrator": orchestrator["id"],
                    "store_type": "PEM",
                    "store_path": str(path),
                },
            )
            assert answer.status_code == 400, (how, answer.text)
            message = answer.json()["error"]["fields"]["store_path"][0]
            assert ("outside the folders" in message) or ("'..'" in message), (how, message)
        # A link below a root that leads out of it is only visible on the agent's machine:
        # the agent refuses it, at once and for good (one attempt, no retries).
        store = file_store_created(api, orchestrator, tmp_path / "linked-folder")
        job_id = api.post(f"stores/{store['id']}/inventory-now/").json()["id"]
        job = wait_for(
            lambda: (j := api.get(f"jobs/{job_id}/").json())["state"] == "failed" and j,
            timeout=60,
            what=f"the refused job\n{agent.log()[-2000:]}",
        )
        assert len(job["history"]) == 1, job["history"]
        assert "outside the folders this orchestrator may read" in job["history"][0]["message"]
        allowed = file_store_created(api, orchestrator, inside)
        job = inventory_finished(api, allowed["id"], agent)

        assert job["outcome"] == "warning"
        rejected = {r["alias"]: r["error"] for r in job["result"]["inventory"]["rejected"]}
        assert "outside the orchestrator's store roots" in rejected["leak.pem"]
        names = {c["sha256"] for c in api.get("certificates/").json()["results"]}
        assert mine.sha256 in names and secret.sha256 not in names
    assert agent.stop() == 0


def test_roots_are_set_changed_and_shown_on_the_agent(agent_factory, tmp_path: Path) -> None:
    agent = agent_factory("e2e-roots")
    extra = tmp_path / "extra"
    extra.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*AGENT, *args, "--config-dir", str(agent.config_dir)],
            cwd=ROOT,
            env=agent.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    added = cli("roots", "--add", str(extra), "--max-file-size", "4096")
    assert added.returncode == 0, added.stderr
    status = cli("status").stdout
    assert str(extra.resolve()) in status and "4096 bytes" in status
    assert cli("roots", "--remove", str(extra)).returncode == 0
    assert str(extra.resolve()) not in cli("status").stdout
    missing = cli("roots", "--add", str(tmp_path / "no-such-folder"))
    assert missing.returncode != 0 and "not a folder" in missing.stderr
