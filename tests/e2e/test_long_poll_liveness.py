"""A job goes only to an agent that is still there, on the real server (uvicorn workers).

- An agent killed while it long-polls closes its connection: the server ends its poll,
  and a job opened afterwards waits, unleased, for an agent that is there.
- An agent that vanishes behind a proxy that keeps the connection open (as a buffering
  reverse proxy or a dropped network does) cannot be seen going: the job handed to its
  poll is offered again once the short pickup lease lapses, not after the whole lease.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    LivePlatform,
    file_store_created,
    orchestrator_approved,
    start_platform,
    stop_platform,
    wait_for,
)
from tests.e2e.proxy import GatedProxy

pytestmark = pytest.mark.e2e

PICKUP_SECONDS = 4
LEASE_SECONDS = 300


@pytest.fixture(scope="module")
def pickup_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """A platform with a short pickup lease and the usual long lease."""
    platform = start_platform(
        tmp_path_factory.mktemp("pickup"),
        env_overrides={
            "CERTYARD_JOB_PICKUP_SECONDS": str(PICKUP_SECONDS),
            "CERTYARD_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        },
        web_workers=2,
    )
    yield platform
    stop_platform(platform)


def _store_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for index in range(3):
        (folder / f"{name}{index}.pem").write_text(issue(f"{name}{index}.e2e.test").pem)
    return folder


def _job(api, job_id: str) -> dict:
    return api.get(f"jobs/{job_id}/").json()


def _polling(agent) -> bool:
    return "waiting for jobs" in agent.log()


def test_a_job_opened_after_its_agent_was_killed_mid_poll_waits_unleased(
    pickup_platform: LivePlatform, agent_factory, tmp_path: Path
) -> None:
    folder = _store_folder(tmp_path, "killed")
    agent = agent_factory("e2e-killed-poll", platform=pickup_platform)
    agent.start()
    with pickup_platform.api() as api:
        orchestrator = orchestrator_approved(api, "e2e-killed-poll")
        store = file_store_created(api, orchestrator, folder, inventory_interval_minutes=None)
        wait_for(lambda: _polling(agent), timeout=60, what="the agent to long-poll")
        time.sleep(1)  # its poll is open on the server
        agent.process.send_signal(signal.SIGKILL)
        agent.process.wait(timeout=10)

        job_id = api.post(f"stores/{store['id']}/inventory-now/").json()["id"]
        # Several ticks of the waiting room, and more than a pickup lease: had the dead
        # poll been handed the job, it would show as leased, or as a missed pickup.
        time.sleep(PICKUP_SECONDS + 2)
        job = _job(api, job_id)
        assert job["state"] == "pending" and job["attempts"] == 0, job
        assert job["history"] == []

        agent.start()  # the agent is back: the job goes to it, as its first attempt
        job = wait_for(
            lambda: (lambda j: j if j["state"] == "succeeded" else None)(_job(api, job_id)),
            timeout=90,
            what=f"the job to run\n{agent.log()[-2000:]}",
        )
        assert job["attempts"] == 1
        assert [h["outcome"] for h in job["history"]] == ["success"]


def test_a_job_handed_to_an_agent_gone_behind_a_proxy_is_offered_again_within_seconds(
    pickup_platform: LivePlatform, agent_factory, tmp_path: Path
) -> None:
    folder = _store_folder(tmp_path, "vanished")
    agent = agent_factory("e2e-vanished", platform=pickup_platform)
    config = agent.config_dir / "agent.json"
    direct = config.read_text()
    proxy = GatedProxy(pickup_platform.url)
    proxy.gate.set()  # hold nothing: forward every request, as a plain reverse proxy
    try:
        config.write_text(direct.replace(pickup_platform.url, proxy.url))
        agent.start()
        with pickup_platform.api() as api:
            orchestrator = orchestrator_approved(api, "e2e-vanished")
            store = file_store_created(api, orchestrator, folder, inventory_interval_minutes=None)
            wait_for(lambda: _polling(agent), timeout=60, what="the agent to long-poll")
            time.sleep(1)
            # Gone without a word: the proxy keeps its connection to the platform open.
            agent.process.send_signal(signal.SIGKILL)
            agent.process.wait(timeout=10)

            job_id = api.post(f"stores/{store['id']}/inventory-now/").json()["id"]
            wait_for(
                lambda: (lambda j: j if j["state"] == "leased" else None)(_job(api, job_id)),
                timeout=30,
                what="the job to be handed to the vanished agent's poll",
            )

            config.write_text(direct)  # the agent comes back, straight to the platform
            agent.start()
            job = wait_for(
                lambda: (lambda j: j if j["state"] == "succeeded" else None)(_job(api, job_id)),
                timeout=90,
                what=f"the job to be offered again and run\n{agent.log()[-2000:]}",
            )
    finally:
        proxy.close()

    outcomes = [(h["attempt"], h["outcome"]) for h in job["history"]]
    assert outcomes == [(1, "not_picked_up"), (2, "success")], job["history"]
    # Within the 90 s wait above: the 300 s lease of the first attempt never had to lapse.
    assert "did not pick the job up" in job["history"][0]["message"]
