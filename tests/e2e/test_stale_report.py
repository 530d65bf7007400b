"""Results are applied once per attempt and never stale, with real processes.

A real agent reports a store and is killed before it can say the job is done; the store
changes; the lease lapses; the next attempt (a new agent process with the same identity)
reports the changed store, and that report wins. Attempt 1's late requests, held by a
reverse proxy or replayed with the agent's own credentials, change nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.certs import Issued, issue
from tests.e2e.conftest import (
    AgentProcess,
    LivePlatform,
    file_store_created,
    job_if_finished,
    orchestrator_approved,
    start_platform,
    stop_platform,
    wait_for,
)
from tests.e2e.proxy import Exchange, HoldingProxy

pytestmark = pytest.mark.e2e

# Short enough to wait out in a test, long enough for an agent on a loaded machine to
# read a small folder and report it within one lease (each chunk renews it, too).
LEASE_SECONDS = 30


def replayed(platform: LivePlatform, exchange: Exchange) -> httpx.Response:
    """The exchange's request sent again straight to the platform: same credentials
    (the agent's bearer token), same body."""
    return httpx.request(
        exchange.method,
        platform.url + exchange.path,
        headers=exchange.headers,
        content=exchange.body,
        timeout=60,
    )


def store_contents(api: httpx.Client, store_id: str) -> dict[str, str]:
    """The store's locations as the platform records them: alias -> certificate SHA-256."""
    listed = api.get("certificates/", params={"store": store_id, "page_size": 500})
    assert listed.status_code == 200, listed.text
    contents: dict[str, str] = {}
    for certificate in listed.json()["results"]:
        detail = api.get(f"certificates/{certificate['id']}/").json()
        for location in detail["locations"]:
            if location["store_id"] == store_id:
                contents[location["alias"]] = certificate["sha256"]
    return contents


def written(folder: Path, certificates: dict[str, Issued]) -> None:
    for name, certificate in certificates.items():
        (folder / name).write_text(certificate.pem)


def is_path(suffix: str) -> Callable[[Exchange], bool]:
    return lambda exchange: exchange.path.split("?")[0].endswith(suffix)


def _utc(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def short_lease_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    platform = start_platform(
        tmp_path_factory.mktemp("short-lease"),
        env_overrides={"CERTYARD_JOB_LEASE_SECONDS": str(LEASE_SECONDS)},
    )
    yield platform
    stop_platform(platform)
    assert "Traceback" not in platform.log(), platform.log()[-5000:]


@pytest.fixture
def proxy(short_lease_platform: LivePlatform) -> Iterator[HoldingProxy]:
    proxy = HoldingProxy(short_lease_platform.url)
    yield proxy
    proxy.close()


def _through(agent: AgentProcess, platform: LivePlatform, proxy: HoldingProxy) -> None:
    """Point the agent at the proxy instead of the platform."""
    config = agent.config_dir / "agent.json"
    config.write_text(config.read_text().replace(platform.url, proxy.url))


@dataclass
class KilledAttempt:
    """Attempt 1 reported the store and was killed; the store changed; its lease lapsed."""

    agent: AgentProcess
    job_id: str
    store_id: str
    first: dict[str, Issued]  # what attempt 1 reported
    gone: list[str]
    replaced: dict[str, Issued]
    fresh: dict[str, Issued]
    expected: dict[str, str]  # the store now: alias -> SHA-256
    held_complete: Exchange  # attempt 1's complete call, still held by the proxy
    commit_1: Exchange
    chunks_1: list[Exchange]


def _first_attempt_killed_after_its_report(
    platform: LivePlatform,
    api: httpx.Client,
    agent_factory: Callable[..., AgentProcess],
    proxy: HoldingProxy,
    folder: Path,
    name: str,
) -> KilledAttempt:
    folder.mkdir()
    first = {f"host{i:02}.pem": issue(f"host{i}.{name}.e2e.test") for i in range(12)}
    written(folder, first)
    agent = agent_factory(name, platform=platform)
    _through(agent, platform, proxy)
    # Attempt 1 reports its inventory (chunks and commit go through), but its word that
    # the job is done is held on the way: the agent dies waiting for the answer.
    proxy.hold = is_path("/complete")
    agent.start()
    orchestrator = orchestrator_approved(api, name)
    store_id = file_store_created(api, orchestrator, folder)["id"]
    job_id = api.post(f"stores/{store_id}/inventory-now/").json()["id"]
    held_complete = proxy.wait_for_exchange(
        is_path(f"jobs/{job_id}/complete"),
        what=f"attempt 1's complete call\n{agent.log()[-3000:]}",
    )
    proxy.hold = lambda exchange: False  # hold nothing else
    assert agent.process is not None
    agent.process.kill()  # SIGKILL: no goodbye, no retry
    agent.process.wait(timeout=30)

    (commit_1,) = proxy.matching(is_path(f"jobs/{job_id}/inventory/commit"))
    chunks_1 = proxy.matching(is_path(f"jobs/{job_id}/inventory/chunks"))
    assert commit_1.json()["attempt"] == 1 and chunks_1
    assert commit_1.status == 200, commit_1.answer
    assert commit_1.answer_json()["added"] == len(first)
    assert held_complete.status is None  # never reached the platform

    # Attempt 1's report was recorded; the job is still attempt 1's, leased.
    attempt_1 = api.get(f"jobs/{job_id}/").json()
    assert (attempt_1["state"], attempt_1["attempts"]) == ("leased", 1), attempt_1
    assert attempt_1["result"]["inventory"]["added"] == len(first)
    assert store_contents(api, store_id) == {n: c.sha256 for n, c in first.items()}

    # The store changes while nobody is looking: 5 files go, 1 is replaced, 3 come.
    gone = sorted(first)[:5]
    for alias in gone:
        (folder / alias).unlink()
    replaced = {"host05.pem": issue(f"host5-renewed.{name}.e2e.test")}
    fresh = {f"new{i}.pem": issue(f"new{i}.{name}.e2e.test") for i in range(3)}
    written(folder, {**replaced, **fresh})
    expected = {n: c.sha256 for n, c in first.items() if n not in gone}
    expected |= {n: c.sha256 for n, c in {**replaced, **fresh}.items()}
    assert len(expected) == 10  # attempt 1 reported 12: the counts tell them apart

    # The lease lapses: nothing renews it any more.
    lease_end = _utc(attempt_1["lease_expires_at"])
    wait_for(
        lambda: dt.datetime.now(dt.UTC) > lease_end + dt.timedelta(seconds=1),
        timeout=LEASE_SECONDS + 60,
        what="attempt 1's lease to lapse",
    )
    return KilledAttempt(
        agent,
        job_id,
        store_id,
        first,
        gone,
        replaced,
        fresh,
        expected,
        held_complete,
        commit_1,
        chunks_1,
    )


def test_a_killed_agents_attempt_is_superseded_by_the_next_attempts_report(
    short_lease_platform: LivePlatform, agent_factory, proxy: HoldingProxy, tmp_path: Path
) -> None:
    platform = short_lease_platform
    with platform.api() as api:
        killed = _first_attempt_killed_after_its_report(
            platform, api, agent_factory, proxy, tmp_path / "store", "e2e-stale"
        )
        agent, job_id, store_id, expected = (
            killed.agent,
            killed.job_id,
            killed.store_id,
            killed.expected,
        )
        first, gone, replaced, fresh = killed.first, killed.gone, killed.replaced, killed.fresh
        held_complete, commit_1, chunks_1 = killed.held_complete, killed.commit_1, killed.chunks_1
        # The agent starts again with the same identity and configuration, and gets the
        # job's next attempt.
        agent.start()
        job = wait_for(
            lambda: job_if_finished(api, job_id),
            timeout=180,
            what=f"attempt 2 to finish the job\n{agent.log()[-3000:]}",
        )

        assert (job["state"], job["outcome"]) == ("succeeded", "success"), job
        last = job["attempts"]
        assert last >= 2
        commit_2 = proxy.matching(
            lambda e: is_path(f"jobs/{job_id}/inventory/commit")(e) and e.json()["attempt"] == last
        )
        assert [e.status for e in commit_2] == [200]
        # The store is the changed folder, exactly: what attempt 2 saw.
        assert store_contents(api, store_id) == expected
        store = api.get(f"stores/{store_id}/").json()
        assert store["location_count"] == len(expected)
        # The job's result and message describe attempt 2's report, not attempt 1's.
        inventory = job["result"]["inventory"]
        assert inventory["entries"] == len(expected)
        assert (inventory["added"], inventory["changed"], inventory["removed"]) == (3, 1, 5)
        assert inventory["unchanged"] == len(first) - len(gone) - len(replaced)
        assert sorted(inventory["added_aliases"]) == sorted(fresh)
        assert inventory["changed_aliases"] == list(replaced)
        assert sorted(inventory["removed_aliases"]) == gone
        assert str(len(expected)) in job["message"] and str(len(first)) not in job["message"]
        # Attempt 1 lapsed; the last attempt succeeded. (A job handed to a poll whose agent
        # had gone is offered again without counting: any attempt between says so.)
        history = sorted((h["attempt"], h["outcome"]) for h in job["history"])
        assert history[0] == (1, "lease_expired"), job["history"]
        assert history[-1] == (last, "success"), job["history"]
        assert {outcome for _, outcome in history[1:-1]} <= {"not_picked_up"}, job["history"]
        last_history = next(h for h in job["history"] if h["attempt"] == last)
        assert last_history["message"] == job["message"]

        # Attempt 1's late requests change nothing. Its held complete call now reaches the
        # platform: it names attempt 1, and is refused as stale.
        held_complete.release.set()
        assert held_complete.answered.wait(timeout=60)
        late = held_complete.answer_json()
        assert held_complete.status == 409, (held_complete.status, late)
        assert late["error"]["code"] == "stale_attempt"
        # Its commit and a chunk, sent again with the agent's credentials, are refused.
        for request in (commit_1, chunks_1[0]):
            answer = replayed(platform, request)
            assert answer.status_code == 409, answer.text
            assert answer.json()["error"]["code"] == "stale_attempt"
        assert api.get(f"jobs/{job_id}/").json() == job
        assert store_contents(api, store_id) == expected

    assert agent.stop() == 0


def test_the_same_attempts_commit_twice_is_applied_once(
    short_lease_platform: LivePlatform, agent_factory, proxy: HoldingProxy, tmp_path: Path
) -> None:
    platform = short_lease_platform
    folder = tmp_path / "store"
    folder.mkdir()
    certificates = {f"c{i}.pem": issue(f"c{i}.twice.e2e.test") for i in range(8)}
    written(folder, certificates)
    agent = agent_factory("e2e-twice", platform=platform)
    _through(agent, platform, proxy)
    # The commit reaches the platform twice at the same moment (a proxy retrying
    # upstream); the complete call waits until the test has sent the commit once more.
    proxy.twice = is_path("/inventory/commit")
    proxy.hold = is_path("/complete")
    agent.start()

    with platform.api() as api:
        orchestrator = orchestrator_approved(api, "e2e-twice")
        store_id = file_store_created(api, orchestrator, folder)["id"]
        job_id = api.post(f"stores/{store_id}/inventory-now/").json()["id"]
        proxy.wait_for_exchange(
            is_path(f"jobs/{job_id}/complete"),
            what=f"the agent's complete call\n{agent.log()[-3000:]}",
        )
        (commit,) = proxy.matching(is_path(f"jobs/{job_id}/inventory/commit"))
        answers = [
            (commit.status, commit.answer_json()),
            (commit.twin_status, commit.twin_answer_json()),
        ]
        assert [status for status, _ in answers] == [200, 200], answers
        # One copy was applied, the other acknowledged as its repeat, with the same account.
        assert sorted(body["duplicate"] for _, body in answers) == [False, True], answers
        applied = next(body for _, body in answers if not body["duplicate"])
        repeat = next(body for _, body in answers if body["duplicate"])
        assert applied["added"] == len(certificates)
        assert {k: v for k, v in repeat.items() if k != "duplicate"} == {
            k: v for k, v in applied.items() if k != "duplicate"
        }
        # A third copy while the attempt still holds the lease: a duplicate too.
        again = replayed(platform, commit)
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True and again.json()["added"] == len(certificates)
        assert store_contents(api, store_id) == {n: c.sha256 for n, c in certificates.items()}

        # Let the complete call through (and any retry the agent made while it waited).
        proxy.hold = lambda exchange: False
        completes = proxy.matching(is_path(f"jobs/{job_id}/complete"))
        for held in completes:
            held.release.set()
        job = wait_for(
            lambda: job_if_finished(api, job_id),
            timeout=120,
            what=f"the job to finish\n{agent.log()[-3000:]}",
        )
        assert all(held.answered.wait(timeout=60) for held in completes)
        assert sorted((h.status, h.answer_json()["duplicate"]) for h in completes) == [
            (200, False),
            *[(200, True)] * (len(completes) - 1),
        ]
        assert (job["state"], job["outcome"], job["attempts"]) == ("succeeded", "success", 1)
        assert job["result"]["inventory"]["added"] == len(certificates)
        assert [(h["attempt"], h["outcome"]) for h in job["history"]] == [(1, "success")]
        # The complete call sent again: acknowledged, not applied.
        complete_again = replayed(platform, completes[0])
        assert complete_again.status_code == 200, complete_again.text
        assert complete_again.json()["duplicate"] is True
        assert api.get(f"jobs/{job_id}/").json() == job
        store = api.get(f"stores/{store_id}/").json()
        assert store["location_count"] == len(certificates)  # landed once, not twice
        assert store_contents(api, store_id) == {n: c.sha256 for n, c in certificates.items()}

    assert agent.stop() == 0


def test_a_late_complete_of_an_earlier_attempt_does_not_end_the_current_one(
    short_lease_platform: LivePlatform, agent_factory, proxy: HoldingProxy, tmp_path: Path
) -> None:
    platform = short_lease_platform
    with platform.api() as api:
        killed = _first_attempt_killed_after_its_report(
            platform, api, agent_factory, proxy, tmp_path / "store", "e2e-late-complete"
        )
        job_id = killed.job_id
        # The next attempt reads the changed store; its commit is held on the way, so the
        # attempt is in progress when attempt 1's complete call finally arrives.
        proxy.hold = lambda e: (
            is_path(f"jobs/{job_id}/inventory/commit")(e) and e.json().get("attempt", 0) > 1
        )
        killed.agent.start()
        try:
            held_commit = proxy.wait_for_exchange(
                lambda e: e.held and is_path("/inventory/commit")(e),
                what=f"the next attempt's commit\n{killed.agent.log()[-3000:]}",
            )
            current = held_commit.json()["attempt"]
            killed.held_complete.release.set()
            assert killed.held_complete.answered.wait(timeout=60)
            late = killed.held_complete.answer_json()
            during = api.get(f"jobs/{job_id}/").json()
        finally:
            proxy.hold = lambda exchange: False
            for held in proxy.matching(lambda e: e.held):
                held.release.set()

        # Attempt 1's word that the job is done is refused: the job is the current
        # attempt's, still leased, and none of attempt 1's numbers were put on it.
        assert killed.held_complete.status == 409, late
        assert late["error"]["code"] == "stale_attempt"
        assert (during["state"], during["attempts"]) == ("leased", current), during
        assert during["message"] != f"{len(killed.first)} entries"
        job = wait_for(
            lambda: job_if_finished(api, job_id),
            timeout=180,
            what=f"the job to finish\n{killed.agent.log()[-3000:]}",
        )
        assert held_commit.status == 200, held_commit.answer
        assert (job["state"], job["attempts"]) == ("succeeded", current), job
        assert job["result"]["inventory"]["entries"] == len(killed.expected)
        assert str(len(killed.expected)) in job["message"]
        assert store_contents(api, killed.store_id) == killed.expected
    assert killed.agent.stop() == 0
