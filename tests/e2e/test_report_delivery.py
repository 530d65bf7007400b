"""A report survives the platform going away while the agent sends it, and lands once."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    MANAGE,
    ROOT,
    LivePlatform,
    file_store_created,
    inventory_finished,
    orchestrator_approved,
    restart_platform,
    start_platform,
    stop_platform,
    wait_for,
)
from tests.e2e.proxy import GatedProxy

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """A platform of this test's own: the test stops and restarts it."""
    platform = start_platform(tmp_path_factory.mktemp("restarted"))
    yield platform
    if platform.process is not None and platform.process.poll() is None:
        stop_platform(platform)


def _port_free(url: str) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1]))) != 0


def test_a_report_sent_while_the_web_server_is_down_lands_once_after_it_restarts(
    own_platform: LivePlatform, agent_factory, tmp_path: Path
) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    count = 30
    for index in range(count):
        (folder / f"host{index}.pem").write_text(issue(f"host{index}.restart.e2e.test").pem)
    agent = agent_factory("e2e-restart", platform=own_platform)
    config = agent.config_dir / "agent.json"
    proxy = GatedProxy(own_platform.url)
    try:
        config.write_text(config.read_text().replace(own_platform.url, proxy.url))
        agent.start()
        with own_platform.api() as api:
            orchestrator = orchestrator_approved(api, "e2e-restart")
            store_id = file_store_created(api, orchestrator, folder)["id"]
            job_id = api.post(f"stores/{store_id}/inventory-now/").json()["id"]

        assert proxy.submission_seen.wait(timeout=60), agent.log()[-2000:]
        stop_platform(own_platform)  # the web server goes away mid-submission
        wait_for(lambda: _port_free(own_platform.url), timeout=20, what="the port to close")
        proxy.gate.set()
        wait_for(
            lambda: any(status == 502 for path, status in proxy.statuses if "inventory" in path),
            timeout=30,
            what="the agent's submission to fail while the platform is down",
        )
        wait_for(lambda: "trying again" in agent.log(), timeout=30, what="the agent to back off")
        restart_platform(own_platform)

        with own_platform.api() as api:
            job = wait_for(
                lambda: (lambda j: j if j["state"] != "leased" else None)(
                    api.get(f"jobs/{job_id}/").json()
                ),
                timeout=90,
                what=f"the job to finish\n{agent.log()[-3000:]}",
            )
            assert job["state"] == "succeeded", job
            assert job["attempts"] == 1  # the same attempt delivered its report
            assert job["result"]["inventory"]["added"] == count
            history = job["history"]
            assert len(history) == 1
            assert history[0]["report_errors"], "the failed submissions are on the attempt"
            assert "502" in history[0]["report_errors"][0]["error"]
            locations = api.get("certificates/", params={"store": store_id, "page_size": 100})
            assert len(locations.json()["results"]) == count
            store_now = api.get(f"stores/{store_id}/").json()
            assert store_now["location_count"] == count  # landed once, not twice
    finally:
        proxy.close()
    assert agent.stop() == 0
    assert not re.search(r"Traceback", own_platform.log())


def test_an_unchanged_store_is_sent_by_fingerprint_and_in_full_when_the_platform_lost_one(
    live_platform: LivePlatform, agent_factory, tmp_path: Path
) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    count = 5
    certs = [issue(f"cached{i}.e2e.test") for i in range(count)]
    for index, cert in enumerate(certs):
        (folder / f"c{index}.pem").write_text(cert.pem)
    agent = agent_factory("e2e-cache")
    agent.start()
    with live_platform.api() as api:
        orchestrator = orchestrator_approved(api, "e2e-cache")
        store = file_store_created(api, orchestrator, folder)

        def inventory() -> dict:
            return inventory_finished(api, store["id"], agent)

        assert inventory()["result"]["inventory"]["added"] == count
        unchanged = inventory()
        assert unchanged["outcome"] == "success"
        assert unchanged["result"]["inventory"]["unchanged"] == count
        assert "entries in full" not in agent.log()

        # The platform loses one certificate (an admin deleted it): the agent, which named
        # it by fingerprint, is asked for it and sends it in full.
        subprocess.run(
            [
                *MANAGE,
                "shell",
                "-c",
                "from certyard.inventory.models import Certificate; "
                f"Certificate.objects.filter(sha256='{certs[2].sha256}').delete()",
            ],
            cwd=ROOT,
            env=live_platform.env,
            check=True,
            capture_output=True,
        )
        recovered = inventory()

        assert recovered["outcome"] == "success", recovered["message"]
        assert recovered["result"]["inventory"]["added"] == 1  # its location went with it
        assert "the platform asked for 1 entries in full" in agent.log()
        located = api.get("certificates/", params={"store": store["id"]}).json()["results"]
        assert {c["sha256"] for c in located} == {c.sha256 for c in certs}
    assert agent.stop() == 0
