"""The agent follows ``certyard-orchestrator roots`` while it runs, and reports its roots
and file size limit to the platform (``POST limits``) after each session and each change.

Real configuration directories and the real CLI; the platform is a recorder of the wire
(httpx's in-process transport), whose ``jobs/next`` can be held open like a long poll.
tests/e2e/test_roots_live.py runs the same with a live platform and an agent process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrators.agent.cli import main
from orchestrators.agent.client import PlatformClient
from orchestrators.agent.config import (
    DEFAULT_MAX_FILE_BYTES,
    MAX_STORE_ROOTS,
    ConfigError,
    Guards,
    GuardsWatch,
    guards_update,
    load_config,
)
from orchestrators.agent.runner import Runner
from orchestrators.stores.pem import PemStore
from tests.certs import Issued, issue
from tests.orchestrators.test_runner_management import RecordingPlatform, config


def roots_cli(home: Path, *args: str) -> int:
    return main(["roots", "--config-dir", str(home), *args])


# -- following agent.json ------------------------------------------------------------------


def test_the_watch_follows_every_change_of_agent_json(agent_home: Path, tmp_path: Path) -> None:
    watch = GuardsWatch(agent_home, Guards.of(load_config(agent_home)))
    first = str(tmp_path / "first")
    assert watch.current() == Guards((first,), DEFAULT_MAX_FILE_BYTES)

    for name in ("second", "third"):
        (tmp_path / name).mkdir()
    # Two changes within one clock tick are both seen: every write is a new file.
    assert roots_cli(agent_home, "--add", str(tmp_path / "second")) == 0
    assert watch.current().store_roots == (first, str(tmp_path / "second"))
    assert roots_cli(agent_home, "--add", str(tmp_path / "third"), "--max-file-size", "4096") == 0
    assert watch.current() == Guards(
        (first, str(tmp_path / "second"), str(tmp_path / "third")), 4096
    )
    assert roots_cli(agent_home, "--remove", first, "--remove", str(tmp_path / "second")) == 0
    assert watch.current() == Guards((str(tmp_path / "third"),), 4096)


def test_an_unreadable_agent_json_keeps_the_guards_the_agent_had(agent_home: Path) -> None:
    watch = GuardsWatch(agent_home, Guards.of(load_config(agent_home)))
    before = watch.current()
    saved = json.loads((agent_home / "agent.json").read_text())

    (agent_home / "agent.json").write_text('{"store_roots": ["/"')  # a hand edit gone wrong

    assert watch.current() == before  # never looser, never none
    (agent_home / "agent.json").write_text(json.dumps({**saved, "max_file_bytes": 99}))
    assert watch.current() == Guards(before.store_roots, 99)


def test_the_roots_command_says_a_running_agent_picks_the_change_up(
    agent_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "more").mkdir()

    assert roots_cli(agent_home, "--add", str(tmp_path / "more")) == 0
    said = capsys.readouterr().out
    assert str(tmp_path / "more") in said
    assert "a running agent picks this up within a few seconds, without a restart" in said

    assert roots_cli(agent_home) == 0  # only shown: nothing to pick up
    assert "picks this up" not in capsys.readouterr().out
    assert roots_cli(agent_home, "--add", str(tmp_path / "more")) == 0  # already there
    assert "picks this up" not in capsys.readouterr().out


def test_at_most_64_roots(agent_home: Path, tmp_path: Path) -> None:
    folders = []
    for index in range(MAX_STORE_ROOTS):
        folder = tmp_path / f"r{index}"
        folder.mkdir()
        folders.append(str(folder))
    config = load_config(agent_home)
    with pytest.raises(ConfigError, match=f"at most {MAX_STORE_ROOTS} store roots"):
        guards_update(config, add=folders)
    assert load_config(agent_home).store_roots == config.store_roots  # nothing saved


# -- reporting to the platform --------------------------------------------------------------


class LimitsPlatform(RecordingPlatform):
    """Answers ``POST limits`` (or 404, as an older platform does) and holds ``jobs/next``
    open until released, as a long poll with no job does."""

    def __init__(self, configs: dict[str, dict[str, Any]], *, knows_limits: bool = True) -> None:
        super().__init__(configs)
        self.knows_limits = knows_limits
        self.hold_polls = False
        self.release = threading.Event()
        self.polling = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/orchestrator/v1/")
        if path == "limits":
            body = json.loads(request.content)
            with self.lock:
                self.requests.append((request.method, path, body))
            if not self.knows_limits:
                return httpx.Response(404, text="<h1>Not Found</h1>")
            return httpx.Response(200, json={**body, "reported_at": "2026-01-01T00:00:00Z"})
        if path == "jobs/next" and self.hold_polls:
            with self.lock:
                self.requests.append((request.method, path, None))
            self.polling.set()
            self.release.wait(timeout=15)
            return httpx.Response(204)
        with self.lock:
            return super().__call__(request)

    def limits(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for _, path, body in self.requests if path == "limits"]


def _runner(platform: LimitsPlatform, home: Path) -> tuple[Runner, PlatformClient]:
    config = load_config(home)
    client = PlatformClient(
        "http://platform.test",
        orchestrator_id="orch-1",
        private_key=config.private_key(),
        transport=httpx.MockTransport(platform),
    )
    runner = Runner(
        client,
        {"PEM": PemStore},
        poll_wait=1,
        state_root=home / "state",
        guards=GuardsWatch(home, Guards.of(config)).current,
    )
    return runner, client


def _wait_for(predicate: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


def test_limits_are_reported_at_each_session_and_each_change(
    agent_home: Path, tmp_path: Path
) -> None:
    platform = LimitsPlatform({})
    runner, client = _runner(platform, agent_home)
    first = str(tmp_path / "first")

    runner._step()
    runner._step()  # nothing changed: nothing sent again

    assert platform.limits() == [{"store_roots": [first], "max_file_bytes": DEFAULT_MAX_FILE_BYTES}]
    paths = [path for _, path, _ in platform.requests]
    assert paths.index("session") < paths.index("limits") < paths.index("jobs/next")

    (tmp_path / "second").mkdir()
    assert roots_cli(agent_home, "--add", str(tmp_path / "second"), "--max-file-size", "1000") == 0
    runner._step()
    assert platform.limits()[-1] == {
        "store_roots": [first, str(tmp_path / "second")],
        "max_file_bytes": 1000,
    }

    # A new session (the old one expired, or the platform restarted): reported again.
    client._token = None
    runner._step()
    assert len(platform.limits()) == 3 and platform.limits()[-1] == platform.limits()[-2]
    assert [path for _, path, _ in platform.requests].count("session") == 2


def test_a_change_is_reported_while_a_long_poll_waits(agent_home: Path, tmp_path: Path) -> None:
    platform = LimitsPlatform({})
    runner, _ = _runner(platform, agent_home)
    platform.hold_polls = True
    stepping = threading.Thread(target=runner._step, daemon=True)
    stepping.start()
    try:
        assert platform.polling.wait(timeout=10)
        assert len(platform.limits()) == 1
        (tmp_path / "added").mkdir()
        assert roots_cli(agent_home, "--add", str(tmp_path / "added")) == 0

        reported = _wait_for(
            lambda: [b for b in platform.limits() if str(tmp_path / "added") in b["store_roots"]],
            seconds=5,
        )

        assert reported and stepping.is_alive()  # the poll is still waiting
    finally:
        platform.release.set()
        stepping.join(timeout=10)
    assert not stepping.is_alive()


def test_an_older_platform_without_the_endpoint_is_no_obstacle(
    agent_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    platform = LimitsPlatform({}, knows_limits=False)
    runner, _ = _runner(platform, agent_home)

    runner._step()
    runner._step()

    assert len(platform.limits()) == 1  # refused once: not asked again for the same roots
    assert [path for _, path, _ in platform.requests].count("jobs/next") == 2
    refused = [r for r in caplog.records if "refused the store roots report" in r.getMessage()]
    assert len(refused) == 1


@pytest.fixture
def stores(tmp_path: Path, ca: Issued) -> Iterator[Path]:
    """A folder of one certificate outside the agent's roots (for now)."""
    folder = tmp_path / "later"
    folder.mkdir()
    (folder / "site.pem").write_text(issue("site.example", issuer=ca).pem)
    yield folder


def test_a_root_added_while_running_applies_to_the_next_job(agent_home: Path, stores: Path) -> None:
    wire = config("j1", "inventory", str(stores), {})
    wire["store"]["store_type"] = "PEM"
    platform = LimitsPlatform({"j1": wire, "j2": {**wire, "job_id": "j2"}})
    runner, _ = _runner(platform, agent_home)

    runner._run_job({"id": "j1", "type": "inventory", "attempt": 1})
    assert roots_cli(agent_home, "--add", str(stores)) == 0
    runner._run_job({"id": "j2", "type": "inventory", "attempt": 1})

    refused, succeeded = platform.sent("/complete")
    assert refused["status"] == "failure" and refused["final"] is True
    assert "outside the folders this orchestrator may read" in refused["message"]
    assert succeeded["status"] == "success", succeeded
    assert succeeded["message"] == "1 entry"
