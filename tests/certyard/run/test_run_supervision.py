"""The pieces of `make run`'s supervision that need no running platform: restart back-off,
the run files, finding and stopping what an earlier run left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from certyard.run.supervisor import (
    RUN_MARKER,
    CrashHistory,
    RunFiles,
    backoff_delay,
    process_info,
    recorded_groups,
    signal_until_gone,
    stale_processes,
)

ROOT = Path(__file__).resolve().parents[3]


def test_backoff_doubles_from_one_second_up_to_thirty() -> None:
    assert [backoff_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff_delay(10_000) == 30


def test_five_crashes_within_two_minutes_give_up() -> None:
    history = CrashHistory()
    delays = [history.crashed(uptime=3, now=100 + 10 * n) for n in range(5)]
    assert delays == [1, 2, 4, 8, None]


def test_a_process_that_stayed_up_a_minute_starts_again_at_once() -> None:
    history = CrashHistory()
    assert history.crashed(uptime=3, now=0) == 1
    assert history.crashed(uptime=3, now=10) == 2
    assert history.crashed(uptime=61, now=80) == 1  # stable for a while: back to 1 s


def test_crashes_spread_over_more_than_the_window_never_give_up() -> None:
    history = CrashHistory()
    for n in range(20):
        assert history.crashed(uptime=59, now=n * 31.0) is not None


def test_run_files_lock_once_and_record_groups_privately(tmp_path: Path) -> None:
    first = RunFiles(tmp_path)
    assert first.lock()
    assert not RunFiles(tmp_path).lock(), "a second holder on the same data directory"
    first.write({4242: "worker", 4343: "web"})
    pid_file = tmp_path / "run" / "certyard-run.pid"
    assert pid_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700
    recorded = RunFiles(tmp_path).read()
    assert recorded["pid"] == os.getpid()
    assert recorded_groups(recorded) == {4242, 4343}
    first.remove()
    assert not pid_file.exists()


def test_a_run_that_does_not_hold_the_lock_leaves_the_pid_file_alone(tmp_path: Path) -> None:
    holder = RunFiles(tmp_path)
    assert holder.lock()
    holder.write({})
    other = RunFiles(tmp_path)
    assert not other.lock()
    other.write({1: "web"})
    other.remove()
    assert RunFiles(tmp_path).read()["groups"] == []


@pytest.mark.parametrize(
    "content",
    ["", "not json", "[1, 2]", '{"groups": "x"}', '{"groups": [{"pgid": true}, {"pgid": 1}]}'],
)
def test_a_damaged_pid_file_names_no_group(tmp_path: Path, content: str) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "certyard-run.pid").write_text(content)
    assert recorded_groups(RunFiles(tmp_path).read()) == set()


def _sleeper(env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        ["sleep", "120"], env={**os.environ, **(env or {})}, start_new_session=True
    )


def test_what_an_earlier_run_left_is_found_and_stopped(tmp_path: Path) -> None:
    data_dir = str(tmp_path)
    marked = _sleeper({RUN_MARKER: data_dir})
    other_data_dir = _sleeper({RUN_MARKER: data_dir + "-other"})
    unmarked = _sleeper()
    try:
        # The marker finds it; a pid file's group alone needs a command line like ours
        # (sleep is not one), so a recycled process group id hits nobody else.
        found = stale_processes(data_dir, [unmarked.pid])
        assert [p.pid for p in found] == [marked.pid]
        assert signal_until_gone(found, [(signal.SIGTERM, 5)]) == []
        assert marked.wait(timeout=5) == -signal.SIGTERM
        assert other_data_dir.poll() is None and unmarked.poll() is None
    finally:
        for process in (marked, other_data_dir, unmarked):
            process.kill()
            process.wait()


def test_a_child_dies_with_certyard_run_even_by_sigkill(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: the direct child gets SIGTERM when its parent is killed outright."""
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, time\n"
            "import django\n"
            "django.setup()\n"
            "from certyard.run.supervisor import dies_with_parent\n"
            "child = subprocess.Popen(['sleep', '120'], start_new_session=True,"
            " preexec_fn=dies_with_parent())\n"
            f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(120)\n",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'platform'}{os.pathsep}{ROOT}",
            "DJANGO_SETTINGS_MODULE": "certyard.settings",
        },
    )
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            assert parent.poll() is None, "the parent failed"
            time.sleep(0.1)
        child = int(pid_file.read_text())
        assert process_info(child) is not None
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while process_info(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process_info(child) is None, "the child outlived its parent"
    finally:
        parent.kill()
        parent.wait()
