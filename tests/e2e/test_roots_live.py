"""`certyard-orchestrator roots --add` is honoured by the running agent: a live platform,
a real agent process, the real CLI on the same configuration directory, no restart, and
Chromium on the console (the orchestrator page shows the new root; the store form takes a
path below it).

A store out of the agent's roots fails at once (one attempt, final); the agent reports its
roots to the platform (the orchestrator's ``store_roots`` in the API) at its session and
again when an administrator adds one, and the same store's inventory then succeeds.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    AGENT,
    ROOT,
    LivePlatform,
    file_store_created,
    inventory_finished,
    job_if_finished,
    orchestrator_approved,
    wait_for,
)
from tests.e2e.test_console_browser import browser  # noqa: F401 (the module's Chromium)
from tests.e2e.test_store_path_browser import _log_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_roots_added_while_the_agent_runs_are_reported_and_honoured(
    live_platform: LivePlatform,
    agent_factory,
    tmp_path: Path,
    tmp_path_factory,
    browser,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    later = Path(os.path.realpath(tmp_path_factory.mktemp("a-later-root")))
    site = issue("later.roots.e2e.test")
    (later / "site.pem").write_text(site.pem)
    # Inside the roots by its name, outside once resolved: only the agent can tell.
    (tmp_path / "linked").symlink_to(later)
    root = os.path.realpath(tmp_path)
    agent = agent_factory("e2e-roots-live")  # its root: tmp_path
    agent.start()
    assert agent.process is not None
    pid = agent.process.pid
    with live_platform.api() as api:
        orchestrator = orchestrator_approved(api, "e2e-roots-live")
        detail = f"orchestrators/{orchestrator['id']}/"
        reported = wait_for(
            lambda: api.get(detail).json()["store_roots"],
            timeout=30,
            what=f"the agent to report its roots\n{agent.log()[-2000:]}",
        )
        assert reported == [root]
        assert api.get(detail).json()["max_file_bytes"] == 16 * 1024 * 1024

        # The platform refuses what it can see is out of the reported roots ...
        refused = api.post(
            "stores/",
            json={
                "store_type": "PEM",
                "store_path": str(later),
                "orchestrator": orchestrator["id"],
            },
        )
        assert refused.status_code == 400, refused.text
        assert "outside the folders this orchestrator may read" in str(
            refused.json()["error"]["fields"]["store_path"]
        )
        # ... and the agent what only it can see: one attempt, final, at once.
        store = file_store_created(api, orchestrator, tmp_path / "linked")
        started = time.monotonic()
        job_id = api.post(f"stores/{store['id']}/inventory-now/").json()["id"]
        job = wait_for(
            lambda: job_if_finished(api, job_id),
            timeout=60,
            what=f"the refused inventory to end\n{agent.log()[-2000:]}",
        )
        assert (job["state"], job["outcome"], job["attempts"]) == ("failed", "failure", 1), job
        assert len(job["history"]) == 1
        assert "outside the folders this orchestrator may read" in job["message"]
        assert "certyard-orchestrator roots --add" in job["message"]
        assert time.monotonic() - started < 30  # no retry delay waited out

        added = subprocess.run(
            [*AGENT, "roots", "--add", str(later), "--config-dir", str(agent.config_dir)],
            cwd=ROOT,
            env=agent.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert added.returncode == 0, added.stderr
        assert "a running agent picks this up" in added.stdout

        reported = wait_for(
            lambda: (roots := api.get(detail).json()["store_roots"]) != [root] and roots,
            timeout=20,
            what=f"the running agent to report its new roots\n{agent.log()[-2000:]}",
        )
        assert reported == [root, str(later)]
        # The same store now reads, and the platform takes the folder itself too.
        job = inventory_finished(api, store["id"], agent)
        assert (job["state"], job["outcome"]) == ("succeeded", "success"), job

        # In the console: the orchestrator page shows the new root, and the store form
        # (refusing the folder before) takes it now.
        context = browser.new_context(base_url=live_platform.url)
        page = context.new_page()
        _log_in(page, live_platform)
        page.goto(f"/orchestrators/{orchestrator['id']}/")
        expect(page.get_by_test_id("store-roots")).to_contain_text(str(later))
        page.goto(f"/stores/add/?orchestrator={orchestrator['id']}")
        form = page.get_by_test_id("add-store-form")
        form.locator("select[name=store_type]").select_option("PEM")
        form.locator("input[name=store_path]").fill(str(later))
        form.get_by_role("button", name="Add store").click()
        expect(page.locator(f'[data-testid=store-row][data-path="{later}"]')).to_be_visible()
        context.close()
        (direct,) = [
            s
            for s in api.get("stores/", params={"page_size": 500}).json()["results"]
            if s["store_path"] == str(later)
        ]
        assert inventory_finished(api, direct["id"], agent)["outcome"] == "success"
        shas = {
            c["sha256"]
            for c in api.get("certificates/", params={"page_size": 500}).json()["results"]
        }
        assert site.sha256 in shas

    # All of it without a restart.
    assert agent.process.pid == pid and agent.process.poll() is None
    assert "store roots now" in agent.log()
    assert agent.stop() == 0
