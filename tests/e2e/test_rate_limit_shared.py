"""A rate limit holds across web processes: they count in one shared cache (the database
on the embedded setup), not each in its own memory.

Two web processes on one data directory: the platform as `make run` starts it (one web
worker) and a second plain WSGI server on another port. Requests alternate between them;
with a limit of 10 a minute, exactly 10 pass in all.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import (
    ROOT,
    LivePlatform,
    _free_port,
    start_platform,
    stop_platform,
    wait_for,
)

pytestmark = pytest.mark.e2e

RATE = 10
REGISTER = "/api/orchestrator/v1/register"


@pytest.fixture(scope="module")
def two_web_processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LivePlatform, str]]:
    base: Path = tmp_path_factory.mktemp("rate-limit")
    platform = start_platform(
        base, env_overrides={"CERTYARD_REGISTER_RATE": f"{RATE}/minute"}, web_workers=1
    )
    second_url = f"http://127.0.0.1:{_free_port()}"
    log_path = base / "second-web.log"
    second = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "certyard.wsgi",
            "--pythonpath",
            str(ROOT / "platform"),
            "--bind",
            second_url.removeprefix("http://"),
            "--workers",
            "1",
            "--no-control-socket",
        ],
        cwd=ROOT,
        env=platform.env,  # the same data directory, database and secret key
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )

    def healthy() -> bool:
        if second.poll() is not None:
            raise AssertionError(f"the second web process exited:\n{log_path.read_text()}")
        try:
            return httpx.get(f"{second_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=60, what="the second web process to answer /healthz")
        yield platform, second_url
    finally:
        second.terminate()
        second.wait(timeout=30)
        stop_platform(platform)


def test_a_rate_limit_holds_across_two_web_processes(
    two_web_processes: tuple[LivePlatform, str],
) -> None:
    platform, second_url = two_web_processes
    servers = [platform.url, second_url]
    answers = []
    with httpx.Client(timeout=30) as client:
        for n in range(2 * RATE + 4):
            server = servers[n % 2]
            # A bad body: refused with a 400 once past the throttle, no agent registered.
            answer = client.post(f"{server}{REGISTER}", json={"token": "cyreg_wrong"})
            answers.append((server, answer))

    passed = [server for server, answer in answers if answer.status_code != 429]
    assert len(passed) == RATE, [a.status_code for _, a in answers]
    # The first ten, five through each process; every later one refused, by both.
    assert [a.status_code for _, a in answers[:RATE]] == [400] * RATE
    assert passed.count(platform.url) == passed.count(second_url) == RATE // 2
    refused = answers[RATE:]
    assert {server for server, _ in refused} == set(servers)
    for _, answer in refused:
        assert answer.status_code == 429
        assert answer.headers["content-type"].startswith("application/json")
        error = answer.json()["error"]
        assert error["code"] == "throttled" and error["message"]
        assert 0 < int(answer.headers["Retry-After"]) <= 60
