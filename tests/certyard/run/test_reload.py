"""Auto-reload's pieces (``certyard_run --reload``): what is watched, the polling watcher,
and the supervisor's restart that is no crash. tests/e2e/test_reload.py runs them together."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from certyard.run.reload import SourceWatcher, extension_source_roots, watched_roots
from certyard.run.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[3]


def _bump(path: Path, text: str | None = None) -> None:
    """Change a file so that its modification time differs, whatever the clock's grain."""
    if text is not None:
        path.write_text(text)
    later = path.stat().st_mtime_ns + 2_000_000_000
    os.utime(path, ns=(later, later))


def test_the_watcher_names_changed_added_and_removed_files(tmp_path: Path) -> None:
    package = tmp_path / "acme"
    (package / "__pycache__").mkdir(parents=True)
    module = package / "handlers.py"
    module.write_text("x = 1\n")
    removed = package / "old.py"
    removed.write_text("")
    (package / "page.html").write_text("<p>")
    watcher = SourceWatcher([tmp_path], interval=0)
    assert watcher.file_count == 3
    assert watcher.changed() == []

    _bump(module, "x = 2\n")
    (package / "new.py").write_text("")
    removed.unlink()
    (package / "notes.txt").write_text("not code")
    (package / "__pycache__" / "handlers.cpython-312.pyc").write_bytes(b"")
    (package / "__pycache__" / "cached.py").write_text("")
    assert watcher.changed() == [module, package / "new.py", removed]
    assert watcher.changed() == []  # reported once

    _bump(package / "page.html")
    assert watcher.changed() == [package / "page.html"]


def test_the_watcher_polls_at_most_once_per_interval(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("")
    watcher = SourceWatcher([module], interval=0.3)
    _bump(module)
    assert watcher.changed() == []  # not due yet
    time.sleep(0.35)
    assert watcher.changed() == [module]


def test_it_watches_the_platform_handlers_and_every_installed_extension() -> None:
    roots = watched_roots(ROOT, ["certyard.handlers", "certyard.handlers.tests"])
    assert ROOT / "platform" / "certyard" in roots
    assert ROOT / "handlers" in roots
    # The examples (installed, editable) declare certyard.handlers entry points.
    assert ROOT / "examples" / "certyard_examples" in roots
    # The tests' handlers too, when their group is read (tests/conftest.py names it).
    assert ROOT / "tests" / "plugins" / "certyard_test_handlers" in roots
    # Only the groups asked for.
    assert ROOT / "tests" / "plugins" / "certyard_test_handlers" not in extension_source_roots(
        ["certyard.handlers"]
    )


def test_a_restart_starts_the_processes_again_and_is_no_crash(tmp_path: Path) -> None:
    out = io.StringIO()
    supervisor = Supervisor(tmp_path, cwd=ROOT, stdout=out, stderr=out)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    try:
        first = supervisor.start("web", sleeper, label="web server")
        other = supervisor.start("worker", sleeper, label="worker cluster")
        supervisor.restart(["web", "worker", "unknown"], reason="handlers.py changed")
        assert first.poll() is not None and other.poll() is not None
        assert supervisor.children["web"].pid != first.pid
        assert supervisor.children["web"].poll() is None
        assert supervisor.children["worker"].poll() is None
        assert supervisor.crashes["web"].in_a_row == 0
        log = out.getvalue()
        assert f"restarted the web server (pid {supervisor.children['web'].pid}): " in log
        assert "handlers.py changed" in log
        assert (
            first.pid not in supervisor.groups
            and supervisor.children["web"].pid in supervisor.groups
        )
    finally:
        supervisor.stop_all()


def test_reload_is_refused_beyond_loopback_unless_debugging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CERTYARD_PUBLIC_URL", "http://certyard.example.test:8000")
    with override_settings(DEBUG=False), pytest.raises(CommandError) as refused:
        call_command("certyard_run", "--reload", "--host", "0.0.0.0")  # noqa: S104
    assert "--reload is for development only" in str(refused.value)
