"""Supervision of the processes `make run` (``certyard_run``) starts: keep them running,
stop them cleanly, and never leave one behind.

- Each runs in a session (so a process group) of its own, and Linux sends it SIGTERM if
  the supervising process dies, even by SIGKILL. Stopping (Ctrl-C or SIGTERM) asks each
  process to stop, then SIGTERMs and finally SIGKILLs whatever is left of its group
  (qcluster's forks included), and checks in /proc that nothing of those groups remains.
- A process that crashes is started again after 1 s, 2 s, 4 s ... at most 30 s (back to
  1 s once it has stayed up a minute), what was left of its group stopped first. An
  essential process (the web server, the worker cluster) that crashes 5 times within
  2 minutes stops Certyard with an error; one that is not (the demo orchestrator) is then
  just left stopped.
- ``<DATA_DIR>/run/certyard-run.lock`` is held while it runs: a second ``certyard_run`` on
  the same data directory refuses to start. ``<DATA_DIR>/run/certyard-run.pid`` (JSON, 0600)
  names this process and the process groups it started; at start, processes left by an
  earlier run that died (found through that file, and through the ``CERTYARD_RUN_DATA_DIR``
  every child carries in its environment) are stopped before anything else starts.

Nothing here needs Django: the caller says what to start, where, and where to report.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# A process asked to stop gets this long to stop itself (and the processes it started).
_STOP_GRACE_SECONDS = 15
# Then what is left of its process group gets this long after SIGTERM, before SIGKILL.
_GROUP_GRACE_SECONDS = 3
_KILL_WAIT_SECONDS = 5
# Restarts after a crash: 1 s, 2 s, 4 s ... at most 30 s; a process that stayed up a minute
# starts again at 1 s. Crashing 5 times within 2 minutes is giving up.
_BACKOFF_FIRST_SECONDS = 1.0
_BACKOFF_MAX_SECONDS = 30.0
_STABLE_AFTER_SECONDS = 60.0
_CRASH_LIMIT = 5
_CRASH_WINDOW_SECONDS = 120.0
# Every process the supervisor starts has the data directory it serves in its environment
# under this name, so one left running by a run that died can be told from anyone else's.
RUN_MARKER = "CERTYARD_RUN_DATA_DIR"
# What the command line of a process `make run` starts contains (one of).
_OUR_COMMANDS = ("qcluster", "gunicorn", "uvicorn", "orchestrators.agent", "certyard")
_PR_SET_PDEATHSIG = 1


class SupervisorError(Exception):
    """Certyard cannot start or go on running: another run holds the data directory, what
    an earlier run left would not stop, or an essential process crashed too often."""


class Output(Protocol):
    """Where the supervisor reports: a text stream (or Django's ``OutputWrapper``)."""

    def write(self, msg: str, /) -> Any: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class ChildSpec:
    """How a supervised process was started, so that a crash can start it again the same
    way, and what to do when it crashes."""

    command: list[str]
    popen_options: dict[str, Any]
    label: str
    # An essential process crashing too often stops everything; another is left stopped.
    essential: bool = True
    # Exit codes after which starting it again cannot help (it is left stopped): why.
    final_exits: Mapping[int, str] = field(default_factory=dict)


class Supervisor:
    """The processes of one ``certyard_run`` on one data directory: each started in a
    process group of its own, started again after a crash (with back-off), and stopped,
    groups and all, at the end.

    Usage: :meth:`claim_data_dir` first, then :meth:`handle_signals`, :meth:`start` each
    process, :meth:`run` until asked to stop, and :meth:`stop_all` in a ``finally``.
    """

    def __init__(
        self, data_dir: Path, *, cwd: str | os.PathLike[str], stdout: Output, stderr: Output
    ) -> None:
        self.data_dir = data_dir
        self.cwd = cwd
        self.stdout = stdout
        self.stderr = stderr
        self.children: dict[str, subprocess.Popen] = {}
        # How each child was started (to start it again), when, and how often it crashed.
        self.specs: dict[str, ChildSpec] = {}
        self.started_at: dict[str, float] = {}
        self.crashes: dict[str, CrashHistory] = {}
        self.restart_at: dict[str, float] = {}
        # Every process group started and not yet seen empty: pgid -> child name.
        self.groups: dict[int, str] = {}
        self.stopping = False
        self.hurry = False  # a second Ctrl-C: no more grace
        self.marker = str(data_dir.resolve())
        self.preexec = dies_with_parent()
        self.run_files = RunFiles(data_dir)

    # --- the data directory's run files -----------------------------------------

    def claim_data_dir(self) -> None:
        """Refuse to start beside a live run on this data directory; stop what a run that
        died left behind."""
        data_dir = self.data_dir
        if not self.run_files.lock():
            other = self.run_files.read().get("pid", "?")
            raise SupervisorError(
                f"Certyard is already running on the data directory {data_dir} "
                f"(certyard_run pid {other}); stop it first (Ctrl-C where it runs, or "
                f"`kill {other}`), or give this one a data directory of its own."
            )
        recorded = self.run_files.read()
        previous = process_info(_int(recorded.get("pid")))
        if previous and previous.pid != os.getpid() and "certyard_run" in previous.cmdline:
            # Alive, and not holding the lock: a certyard_run from before the lock existed.
            raise SupervisorError(
                f"Certyard is already running on the data directory {data_dir} "
                f"(certyard_run pid {previous.pid}); stop it first."
            )
        if stale := stale_processes(self.marker, recorded_groups(recorded)):
            self._stale_stop(stale)
        self.run_files.write(self.groups)

    def _stale_stop(self, stale: list[ProcessInfo]) -> None:
        by_command: dict[str, list[str]] = {}
        for process in stale:
            by_command.setdefault(process.cmdline[:80], []).append(str(process.pid))
        self.say(
            f"stopping {len(stale)} process(es) left running on {self.data_dir} by an earlier "
            "run that did not stop cleanly: "
            + "; ".join(f"{', '.join(pids)} ({command})" for command, pids in by_command.items()),
            error=True,
        )
        left = signal_until_gone(
            stale, [(signal.SIGTERM, _STOP_GRACE_SECONDS), (signal.SIGKILL, _KILL_WAIT_SECONDS)]
        )
        if left:
            raise SupervisorError(
                "processes left by an earlier run would not stop: "
                + ", ".join(str(p.pid) for p in left)
            )
        self.say("stopped what the earlier run left behind")

    # --- processes ------------------------------------------------------------

    def handle_signals(self) -> None:
        """SIGTERM and SIGINT (Ctrl-C) ask :meth:`run` to return; asked twice, stopping
        skips its grace periods."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def start(
        self,
        name: str,
        command: list[str],
        *,
        label: str | None = None,
        essential: bool = True,
        final_exits: Mapping[int, str] | None = None,
        **popen_options: Any,
    ) -> subprocess.Popen:
        """Start ``name`` in a session (so a process group) of its own, marked as this run's
        in its environment; a crash starts it again the same way. ``label`` names it in
        messages; see :class:`ChildSpec` for ``essential`` and ``final_exits``;
        ``popen_options`` go to :class:`subprocess.Popen`."""
        self.specs[name] = ChildSpec(
            command=command,
            popen_options=popen_options,
            label=label or f"{name} process",
            essential=essential,
            final_exits=final_exits or {},
        )
        return self._launch(name)

    def _launch(self, name: str) -> subprocess.Popen:
        spec = self.specs[name]
        options: dict[str, Any] = {"cwd": self.cwd, "stdin": subprocess.DEVNULL}
        options.update(spec.popen_options)
        options["env"] = {**(spec.popen_options.get("env") or os.environ), RUN_MARKER: self.marker}
        process = subprocess.Popen(
            spec.command, start_new_session=True, preexec_fn=self.preexec, **options
        )
        self.children[name] = process
        self.started_at[name] = time.monotonic()
        self.crashes.setdefault(name, CrashHistory())
        self.groups[process.pid] = name  # a session leader's pgid is its pid
        self.run_files.write(self.groups)
        return process

    def run(self, *, tick: Callable[[], None] | None = None) -> None:
        """Watch the processes until asked to stop: start again those that crashed, when
        their back-off is over. Raises :class:`SupervisorError` when an essential process
        crashed too often. ``tick`` is called every half second in between (the
        auto-reload's watcher: it may call :meth:`restart`)."""
        while not self.stopping:
            if tick is not None:
                tick()
            now = time.monotonic()
            for name in list(self.children):
                if name in self.restart_at:
                    if now >= self.restart_at[name]:
                        del self.restart_at[name]
                        pid = self._launch(name).pid
                        self.say(f"restarted the {self.specs[name].label} (pid {pid})")
                elif (code := self.children[name].poll()) is not None:
                    self._crashed(name, code)
            time.sleep(0.5)

    def restart(self, names: Iterable[str], *, reason: str) -> None:
        """Stop these processes (each given the time to stop itself, as at the end), then
        start them again the same way: not a crash, so their back-off and crash count are
        untouched. Used by the auto-reload when code changed."""
        names = [name for name in names if name in self.specs]
        running = [self.children[name] for name in names if self.children[name].poll() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        while any(child.poll() is None for child in running) and not self.hurry:
            if time.monotonic() > deadline or self.stopping:
                break
            time.sleep(0.1)
        if still := self._groups_stop({self.children[name].pid for name in names}):
            pids = ", ".join(str(p.pid) for p in still)
            self.say(f"could not stop process(es) {pids} before restarting", error=True)
        if self.stopping:
            return  # stop_all finishes the job
        for name in names:
            self.restart_at.pop(name, None)
            pid = self._launch(name).pid
            self.say(f"restarted the {self.specs[name].label} (pid {pid}): {reason}")

    def _crashed(self, name: str, code: int) -> None:
        """``name`` exited on its own: stop what it left behind, then start it again later,
        or give up."""
        child = self.children[name]
        spec = self.specs[name]
        label = spec.label
        now = time.monotonic()
        uptime = now - self.started_at[name]
        how = exit_description(code)
        message = f"the {label} (pid {child.pid}) {how} after {uptime:.0f} s"
        # Its own children outlive it (qcluster's sentinel, monitor, pusher and workers would
        # go on running the schedule): they go before it starts again.
        if left_behind := group_members({child.pid}):
            message += f"; stopping the {len(left_behind)} process(es) left in its process group"
        self.say(message, error=True)
        if still := self._groups_stop({child.pid}):
            pids = ", ".join(str(p.pid) for p in still)
            self.say(f"could not stop process(es) {pids} of the {label}", error=True)
        delay = self.crashes[name].crashed(uptime=uptime, now=now)
        if reason := spec.final_exits.get(code):
            self._forget(name)
            self.say(f"not restarting the {label}: {reason}; Certyard keeps running")
            return
        if delay is None:
            given_up = f"the {label} crashed {_CRASH_LIMIT} times within "
            given_up += f"{_CRASH_WINDOW_SECONDS:.0f} s (last: {how})"
            if not spec.essential:
                self._forget(name)
                self.say(f"{given_up}: not restarting it; Certyard keeps running", error=True)
                return
            raise SupervisorError(f"{given_up}; stopping Certyard")
        self.restart_at[name] = now + delay
        self.say(f"restarting the {label} in {delay:.0f} s", error=True)

    def _forget(self, name: str) -> None:
        del self.children[name]
        self.specs.pop(name, None)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping:
            self.hurry = True  # asked twice: skip the grace periods
        self.stopping = True

    def stop_all(self) -> None:
        """Stop every process started, the processes they started too, and check that none
        of their process groups has a process left."""
        running = [child for child in self.children.values() if child.poll() is None]
        # Each stops the processes it started first (qcluster its workers, gunicorn its).
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        while any(child.poll() is None for child in running) and not self.hurry:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # Then whatever is left of their groups: SIGTERM, and SIGKILL after a while.
        if left := self._groups_stop(set(self.groups)):
            pids = ", ".join(f"{p.pid} ({p.cmdline[:60]})" for p in left)
            self.say(f"could not stop process(es) {pids}; the next start stops them", error=True)
        else:
            self.run_files.remove()
        if self.children:
            self.stdout.write("Certyard stopped.\n")

    def _groups_stop(
        self, pgids: set[int], grace: float = _GROUP_GRACE_SECONDS
    ) -> list[ProcessInfo]:
        """SIGTERM what is left of these process groups, SIGKILL what is still there after
        ``grace`` seconds; returns the processes that remain (none, normally)."""
        members = group_members(pgids)
        for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, _KILL_WAIT_SECONDS)):
            if not members:
                break
            for pgid in {member.pgid for member in members}:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signum)
            deadline = time.monotonic() + wait
            while members and time.monotonic() < deadline:
                if self.hurry and signum == signal.SIGTERM:
                    break
                time.sleep(0.1)
                self._reap()
                members = group_members(pgids)
        self._reap(wait=True)
        for pgid in pgids - {member.pgid for member in members}:
            self.groups.pop(pgid, None)
        self.run_files.write(self.groups)
        return members

    def _reap(self, *, wait: bool = False) -> None:
        """Collect the exit status of the children that ended; with ``wait``, give one that
        /proc no longer shows alive a moment to be collectable."""
        for child in self.children.values():
            if child.poll() is not None:
                continue
            if wait and not process_info(child.pid):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=1)

    def say(self, message: str, *, error: bool = False) -> None:
        """Report one line, timed, on stdout (or stderr, for an ``error``)."""
        stream = self.stderr if error else self.stdout
        stream.write(f"{time.strftime('%H:%M:%S')} [certyard_run] {message}\n")
        stream.flush()


# --- restarts ----------------------------------------------------------------------


def backoff_delay(crashes_in_a_row: int) -> float:
    """Seconds to wait before starting again a process that crashed this many times in a
    row: 1, 2, 4 ... at most 30."""
    exponent = min(max(0, crashes_in_a_row - 1), 16)
    return min(_BACKOFF_MAX_SECONDS, _BACKOFF_FIRST_SECONDS * 2**exponent)


class CrashHistory:
    """One process's crashes: how long to wait before starting it again, and when to stop
    trying."""

    def __init__(
        self,
        *,
        limit: int = _CRASH_LIMIT,
        window: float = _CRASH_WINDOW_SECONDS,
        stable_after: float = _STABLE_AFTER_SECONDS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.stable_after = stable_after
        self.in_a_row = 0
        self.recent: deque[float] = deque()

    def crashed(self, *, uptime: float, now: float) -> float | None:
        """Record a crash after ``uptime`` seconds up (at monotonic time ``now``); the delay
        before the restart, or None when it crashed ``limit`` times within ``window``
        seconds."""
        if uptime >= self.stable_after:
            self.in_a_row = 0
        self.in_a_row += 1
        self.recent.append(now)
        while self.recent and self.recent[0] <= now - self.window:
            self.recent.popleft()
        if len(self.recent) >= self.limit:
            return None
        return backoff_delay(self.in_a_row)


def exit_description(code: int) -> str:
    """How a process with this ``Popen.returncode`` ended, for a message."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


# --- processes, as /proc shows them ------------------------------------------------


@dataclass(frozen=True)
class ProcessInfo:
    """One live process, as /proc shows it."""

    pid: int
    ppid: int
    pgid: int
    started: int  # clock ticks after boot: with the pid, names one process for good
    cmdline: str


def process_info(pid: int | None) -> ProcessInfo | None:
    """The process ``pid`` if it is alive (a zombie is not), from /proc."""
    if not pid or pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ... starttime(22nd) ...": comm may hold anything.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    text = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return ProcessInfo(pid, int(fields[1]), int(fields[2]), int(fields[19]), text)


def processes() -> list[ProcessInfo]:
    """Every live process on this machine (none where there is no /proc)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return [info for name in names if name.isdigit() and (info := process_info(int(name)))]


def group_members(pgids: set[int]) -> list[ProcessInfo]:
    """The live processes of these process groups. Without /proc (macOS), one stand-in
    per group that still has a process, zombies included."""
    if not pgids:
        return []
    if not os.path.isdir("/proc/self"):
        return [ProcessInfo(pgid, 0, pgid, 0, "?") for pgid in pgids if _group_exists(pgid)]
    return [info for info in processes() if info.pgid in pgids]


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_marker(pid: int) -> str | None:
    """The data directory in a process's ``CERTYARD_RUN_DATA_DIR``, if it has one."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = f"{RUN_MARKER}=".encode()
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def looks_ours(cmdline: str) -> bool:
    """Whether a command line looks like one of the processes `make run` starts."""
    return any(word in cmdline for word in _OUR_COMMANDS)


def _ancestry() -> set[int]:
    """This process and the ones above it."""
    found: set[int] = set()
    pid: int | None = os.getpid()
    while pid and pid not in found:
        found.add(pid)
        pid = info.ppid if (info := process_info(pid)) else None
    return found


def stale_processes(marker: str, pgids: Iterable[int]) -> list[ProcessInfo]:
    """What an earlier run on the data directory ``marker`` left running: the processes of
    the groups its pid file names that look like ours, and every process carrying its
    marker."""
    pgids = set(pgids)
    mine = _ancestry()
    return [
        info
        for info in processes()
        if info.pid not in mine
        and ((info.pgid in pgids and looks_ours(info.cmdline)) or run_marker(info.pid) == marker)
    ]


def signal_until_gone(
    targets: list[ProcessInfo], steps: list[tuple[signal.Signals, float]]
) -> list[ProcessInfo]:
    """Send each step's signal to the targets still alive (the same processes: pid and start
    time) and wait up to its seconds for them to end; the ones left after the last step."""
    wanted = {(p.pid, p.started) for p in targets}

    def alive() -> list[ProcessInfo]:
        infos = (process_info(pid) for pid, _ in wanted)
        return [info for info in infos if info and (info.pid, info.started) in wanted]

    left = alive()
    for signum, wait in steps:
        if not left:
            break
        for info in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(info.pid, signum)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = alive()
    return left


def dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when this process dies, however
    it dies. It covers the child only, not what the child starts: the pid file does."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: no signal comes
            os._exit(1)

    return preexec


# --- the run files -------------------------------------------------------------------


class RunFiles:
    """``<DATA_DIR>/run``: a lock held while ``certyard_run`` runs on the data directory,
    and a pid file (JSON, 0600) naming it and the process groups it started."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / "run"
        self.pid_file = self.folder / "certyard-run.pid"
        self.lock_file = self.folder / "certyard-run.lock"
        self.locked = False
        self._lock_fd: int | None = None

    def lock(self) -> bool:
        """Hold the lock until this process ends; False when another process holds it.
        The kernel drops it however the holder ends, so a dead run never blocks a start."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self.locked = True
        return True

    def read(self) -> dict[str, Any]:
        """The pid file's content; empty when there is none or it is not one of ours."""
        try:
            recorded = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return {}
        return recorded if isinstance(recorded, dict) else {}

    def write(self, groups: dict[int, str]) -> None:
        """Record this process and its children's process groups (only while locked)."""
        if not self.locked:
            return
        content = {
            "pid": os.getpid(),
            "groups": [{"pgid": pgid, "name": name} for pgid, name in sorted(groups.items())],
        }
        temporary = self.pid_file.with_name(f"{self.pid_file.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(content, handle)
        os.replace(temporary, self.pid_file)

    def remove(self) -> None:
        """Remove the pid file (only while locked: another run's is not ours to remove)."""
        if self.locked:
            self.pid_file.unlink(missing_ok=True)


def recorded_groups(recorded: dict[str, Any]) -> set[int]:
    """The process groups a pid file names."""
    groups = recorded.get("groups")
    if not isinstance(groups, list):
        return set()
    return {
        pgid
        for group in groups
        if isinstance(group, dict) and (pgid := _int(group.get("pgid"))) and pgid > 1
    }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
