"""`make run` supervises: a crashed web server or worker cluster comes back, a stop leaves
no process behind, a run that died is cleaned up by the next, and the demo orchestrator's
registration token stays off every command line and out of the log.

Processes are found the way an operator would, in /proc: the children of the
`certyard_run` process, their process groups, and what carries the run's data directory
in its environment (``CERTYARD_RUN_DATA_DIR``).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import (
    AGENT,
    MANAGE,
    ROOT,
    LivePlatform,
    _free_port,
    orchestrator_named,
    start_platform,
    stop_platform,
    wait_for,
)

pytestmark = pytest.mark.e2e

WEB_COMMANDS = ("gunicorn", "uvicorn")
# Enqueued through django-q2 by a separate process: proves a worker cluster takes work.
ENQUEUE_AND_WAIT = (
    "from django_q.tasks import async_task, result\n"
    "task = async_task('math.factorial', 5)\n"
    "print('result', result(task, wait=60000))\n"
)


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    cmdline: str


def _proc(pid: int) -> Proc | None:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = status[status.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie runs nothing
        return None
    text = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return Proc(pid, int(fields[1]), int(fields[2]), text)


def _procs() -> list[Proc]:
    return [p for name in os.listdir("/proc") if name.isdigit() and (p := _proc(int(name)))]


def _child(run_pid: int, *words: str) -> Proc | None:
    """The child of ``run_pid`` whose command line holds one of ``words``; it must lead a
    process group of its own."""
    for proc in _procs():
        if proc.ppid == run_pid and any(word in proc.cmdline for word in words):
            assert proc.pgid == proc.pid, f"{proc} does not lead a process group of its own"
            return proc
    return None


def _in_groups(pgids: set[int]) -> list[Proc]:
    return [proc for proc in _procs() if proc.pgid in pgids]


def _of_data_dir(data_dir: Path) -> list[Proc]:
    """Processes started for this data directory: marked in their environment, or naming it."""
    marker = f"CERTYARD_RUN_DATA_DIR={data_dir.resolve()}".encode()
    found = []
    for proc in _procs():
        try:
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            environ = []
        if marker in environ or str(data_dir) in proc.cmdline:
            found.append(proc)
    return found


def _groups_of(run_pid: int) -> set[int]:
    return {proc.pgid for proc in _procs() if proc.ppid == run_pid}


def _healthy(platform: LivePlatform) -> bool:
    try:
        return httpx.get(f"{platform.url}/healthz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _pid_file(platform: LivePlatform) -> Path:
    return platform.data_dir / "run" / "certyard-run.pid"


def _task_processed(platform: LivePlatform) -> bool:
    done = subprocess.run(
        [*MANAGE, "shell", "-c", ENQUEUE_AND_WAIT],
        cwd=ROOT,
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return "result 120" in done.stdout


def _stopped_leaving_nothing(platform: LivePlatform, pgids: set[int]) -> None:
    """Stop the platform as Ctrl-C would; nothing it started may remain."""
    stop_platform(platform)
    assert not _in_groups(pgids), "processes outlived the stop"
    assert not _of_data_dir(platform.data_dir), "processes of this data directory remain"
    assert not _pid_file(platform).exists(), "a clean stop removes the pid file"


def test_a_killed_worker_cluster_is_restarted_and_a_stop_leaves_no_orphan(
    tmp_path: Path,
) -> None:
    platform = start_platform(tmp_path)
    assert platform.process is not None
    run_pid = platform.process.pid
    pgids: set[int] = set()
    try:
        worker = _child(run_pid, "qcluster")
        assert worker is not None, "no qcluster child"
        pgids |= _groups_of(run_pid)
        cluster = _in_groups({worker.pgid})
        # qcluster forks a sentinel, which forks a monitor, a pusher and the workers.
        assert len(cluster) >= 4, cluster
        recorded = json.loads(_pid_file(platform).read_text())
        assert stat.S_IMODE(_pid_file(platform).stat().st_mode) == 0o600
        assert recorded["pid"] == run_pid
        assert {g["pgid"] for g in recorded["groups"]} == pgids
        log_from = len(platform.log())

        os.kill(worker.pid, signal.SIGKILL)

        restarted = wait_for(
            lambda: (proc := _child(run_pid, "qcluster")) and proc.pid != worker.pid and proc,
            timeout=60,
            what=f"a new worker cluster\n{platform.log()[log_from:]}",
        )
        wait_for(
            lambda: "] running." in platform.log()[log_from:],
            timeout=60,
            what=f"the new worker cluster to run\n{platform.log()[log_from:]}",
        )
        log = platform.log()[log_from:]
        assert f"the worker cluster (pid {worker.pid}) was killed by SIGKILL" in log
        assert "restarting the worker cluster in 1 s" in log
        assert f"restarted the worker cluster (pid {restarted.pid})" in log
        # What the killed qcluster had forked went before the new cluster started.
        assert not _in_groups({worker.pgid}), "the old cluster's processes were orphaned"
        assert platform.process.poll() is None, "the platform went down with its worker"
        assert _healthy(platform)
        assert _task_processed(platform), "the new worker cluster does not take work"
        pgids |= _groups_of(run_pid)
        recorded = json.loads(_pid_file(platform).read_text())
        assert restarted.pgid in {g["pgid"] for g in recorded["groups"]}
    finally:
        _stopped_leaving_nothing(platform, pgids)


def test_a_killed_web_server_is_restarted(tmp_path: Path) -> None:
    platform = start_platform(tmp_path)
    assert platform.process is not None
    run_pid = platform.process.pid
    pgids: set[int] = set()
    try:
        web = _child(run_pid, *WEB_COMMANDS)
        assert web is not None, "no web server child"
        pgids |= _groups_of(run_pid)
        log_from = len(platform.log())

        os.kill(web.pid, signal.SIGKILL)

        restarted = wait_for(
            lambda: (proc := _child(run_pid, *WEB_COMMANDS)) and proc.pid != web.pid and proc,
            timeout=60,
            what=f"a new web server\n{platform.log()[log_from:]}",
        )
        wait_for(
            lambda: _healthy(platform),
            timeout=60,
            what=f"/healthz again\n{platform.log()[log_from:]}",
        )
        log = platform.log()[log_from:]
        assert f"the web server (pid {web.pid}) was killed by SIGKILL" in log
        assert f"restarted the web server (pid {restarted.pid})" in log
        assert not _in_groups({web.pgid}), "the old web server's workers were orphaned"
        assert platform.process.poll() is None
        pgids |= _groups_of(run_pid)
    finally:
        _stopped_leaving_nothing(platform, pgids)


def _run_make_run(platform: LivePlatform) -> LivePlatform:
    """`make run` itself, demo orchestrator included, on the platform's data directory and
    port; returns once it answers /healthz and its worker cluster runs."""
    port = platform.url.rsplit(":", 1)[1]
    started_at = len(platform.log())
    platform.process = subprocess.Popen(
        [*MANAGE, "certyard_run", "--port", port, "--web-workers", str(platform.web_workers)],
        cwd=ROOT,
        env=platform.env,
        stdout=platform.log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    process = platform.process

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the platform exited while starting:\n{platform.log()}")
        return "Certyard is running at" in platform.log()[started_at:]

    wait_for(started, timeout=120, what="the platform to start")
    wait_for(
        lambda: "] running." in platform.log()[started_at:],
        timeout=60,
        what="the worker cluster to start",
    )
    return platform


def test_a_run_killed_outright_is_cleaned_up_by_the_next_one(tmp_path: Path) -> None:
    """Never two clusters on one data directory: a second run beside a live one is refused,
    and what a run killed with SIGKILL left running is stopped by the next run."""
    platform = start_platform(tmp_path)
    first = platform.process
    assert first is not None
    worker = _child(first.pid, "qcluster")
    web = _child(first.pid, *WEB_COMMANDS)
    assert worker is not None and web is not None
    first_groups = _groups_of(first.pid)

    refused = subprocess.run(
        [*MANAGE, "certyard_run", "--no-demo-orchestrator", "--port", str(_free_port())],
        cwd=ROOT,
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "already running on the data directory" in refused.stderr
    assert f"pid {first.pid}" in refused.stderr
    assert first.poll() is None and _healthy(platform), "the refused run disturbed the first"

    # The run and its worker cluster die at once (an OOM kill, kill -9 of both): the
    # cluster's forks are orphaned, and would go on running the schedule.
    os.kill(first.pid, signal.SIGSTOP)  # so it cannot restart its worker
    os.kill(worker.pid, signal.SIGKILL)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    orphans = _in_groups({worker.pgid})
    assert len(orphans) >= 3, "no stale cluster to clean up"
    log_from = len(platform.log())

    # The next `make run` (demo orchestrator included); a watcher looks at every command
    # line while it registers its demo orchestrator.
    seen_on_command_lines: list[str] = []
    watching = threading.Event()
    watching.set()

    def watch() -> None:
        while watching.is_set():
            seen_on_command_lines.extend(p.cmdline for p in _procs() if "cyreg_" in p.cmdline)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _run_make_run(platform)
    finally:
        watching.clear()
        watcher.join()
    second = platform.process
    assert second is not None
    second_groups: set[int] = set()
    try:
        log = platform.log()[log_from:]
        assert "left running on" in log and "by an earlier run" in log
        assert str(orphans[0].pid) in log
        assert not _in_groups(first_groups), "the first run's processes survived the second"
        second_groups = _groups_of(second.pid)
        clusters = {p.pgid for p in _of_data_dir(platform.data_dir) if "qcluster" in p.cmdline}
        new_worker = _child(second.pid, "qcluster")
        assert new_worker is not None
        assert clusters == {new_worker.pgid}, "two worker clusters on one data directory"

        # The demo orchestrator registered with a one-time token it got off the command line.
        assert not seen_on_command_lines, "a registration token was on a command line"
        assert "cyreg_" not in platform.log()
        with platform.api() as api:
            demo = orchestrator_named(api, "demo-orchestrator")
            assert demo["status"] == "approved"
            tokens = api.get("registration-tokens/").json()["results"]
        made = [t for t in tokens if t["description"] == "demo orchestrator (make run)"]
        assert len(made) == 1
        assert made[0]["reusable"] is False and made[0]["use_count"] == 1

        # The demo orchestrator is supervised as well.
        agent = _child(second.pid, "orchestrators.agent")
        assert agent is not None
        os.kill(agent.pid, signal.SIGKILL)
        wait_for(
            lambda: "restarted the demo orchestrator" in platform.log()[log_from:],
            timeout=30,
            what=f"the demo orchestrator's restart\n{platform.log()[log_from:]}",
        )
        second_groups |= _groups_of(second.pid)
    finally:
        _stopped_leaving_nothing(platform, first_groups | second_groups)


def test_register_takes_the_token_from_stdin_or_the_environment(
    live_platform: LivePlatform, tmp_path: Path
) -> None:
    env = {k: v for k, v in live_platform.env.items() if not k.startswith("CERTYARD_")}

    def register(name: str, *, token_option: list[str], stdin: str = "", extra_env=None):
        return subprocess.run(
            [
                *AGENT,
                "register",
                "--url",
                live_platform.url,
                *token_option,
                "--name",
                name,
                "--client-machine",
                f"{name}.e2e.test",
                "--config-dir",
                str(tmp_path / name),
            ],
            cwd=ROOT,
            env={**env, **(extra_env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    token = live_platform.registration_token(description="read from stdin")
    by_stdin = register("e2e-token-stdin", token_option=["--token", "-"], stdin=f"{token}\n")
    assert by_stdin.returncode == 0, by_stdin.stderr
    assert token not in by_stdin.stdout + by_stdin.stderr

    token = live_platform.registration_token(description="read from the environment")
    by_env = register(
        "e2e-token-env", token_option=[], extra_env={"CERTYARD_REGISTRATION_TOKEN": token}
    )
    assert by_env.returncode == 0, by_env.stderr
    assert token not in by_env.stdout + by_env.stderr
    assert (tmp_path / "e2e-token-env" / "agent.json").exists()

    missing = register("e2e-token-none", token_option=[])
    assert missing.returncode == 2
    assert "CERTYARD_REGISTRATION_TOKEN" in missing.stderr
    assert not (tmp_path / "e2e-token-none" / "agent.json").exists()
