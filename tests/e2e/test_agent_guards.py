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
        refused = {
            "direct": outside,
            "dotdot": tmp_path / ".." / outside.name,
            "link": tmp_path / "linked-folder",
        }
        for how, path in refused.items():
            store = file_store_created(api, orchestrator, path)
            job_id = api.post(f"stores/{store['id']}/inventory-now/").json()["id"]
            first = wait_for(
                lambda job_id=job_id: next(
                    (
                        attempt
                        for attempt in api.get(f"jobs/{job_id}/").json()["history"]
                        if attempt["finished_at"]
                    ),
                    None,
                ),
                timeout=60,
                what=f"the first attempt ({how})\n{agent.log()[-2000:]}",
            )
            assert first["outcome"] == "failure", (how, first)
            assert "outside the folders this orchestrator may read" in first["message"], how
            api.post(f"jobs/{job_id}/cancel/")
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
