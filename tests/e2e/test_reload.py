"""``make run RELOAD=1`` (``certyard_run --reload``): editing an installed extension's code
restarts the web server and the worker cluster, which then run the new code; the changed
file is named in the log.

The extension is a distribution written into a temporary folder on the platform's
``PYTHONPATH`` (installed as pip installs one), declaring a handler in a group of its own."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    MANAGE,
    ROOT,
    LivePlatform,
    _free_port,
    console_client,
    wait_for,
)
from tests.tempdist import env_with_path, write_distribution

pytestmark = pytest.mark.e2e

GROUP = "certyard.handlers.reload_test"
PROBE = '''
from handlers.base import EventContext, EventHandler, HandlerResult


class Probe(EventHandler):
    """A handler whose label says which version of its code runs."""

    label = "Reload probe {version}"

    def handle(self, event: EventContext) -> HandlerResult:
        return HandlerResult(message="{version}")
'''


def _children(pid: int) -> dict[str, int]:
    """The web server's and the worker cluster's pids among the children of ``pid``."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] in ("Z", "X") or int(fields[1]) != pid:
            continue
        if "gunicorn" in cmdline:
            found["web"] = int(name)
        elif "qcluster" in cmdline:
            found["worker"] = int(name)
    return found


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_editing_an_extension_restarts_web_and_worker_on_the_new_code(tmp_path: Path) -> None:
    folder = write_distribution(
        tmp_path / "dist",
        name="reload-probe",
        files={"reload_probe/__init__.py": PROBE.format(version="v1")},
        entry_points={GROUP: {"probe.reload": "reload_probe:Probe"}},
    )
    module = folder / "reload_probe" / "__init__.py"
    data_dir = tmp_path / "var"
    port = _free_port()
    password = secrets.token_urlsafe(12)
    env = env_with_path(
        folder,
        ROOT,
        CERTYARD_DATA_DIR=str(data_dir),
        DATABASE_URL=f"sqlite:///{data_dir / 'certyard.sqlite3'}",
        CERTYARD_ADMIN_USER="admin",
        CERTYARD_ADMIN_PASSWORD=password,
        CERTYARD_CSRF_TRUSTED_ORIGINS=f"http://127.0.0.1:{port}",
        CERTYARD_WORKERS="1",
        CERTYARD_EXTRA_HANDLER_GROUPS=GROUP,
        PYTHONUNBUFFERED="1",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    data_dir.mkdir(mode=0o700)
    log_path = tmp_path / "platform.log"
    process = subprocess.Popen(
        [*MANAGE, "certyard_run", "--reload", "--no-demo-orchestrator", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    platform = LivePlatform(
        f"http://127.0.0.1:{port}", data_dir, env, "admin", password, "", process, log_path
    )

    def log() -> str:
        return log_path.read_text(errors="replace")

    try:
        _reload_seen(platform, folder, module, log)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n--- platform log ---\n{log()[-6000:]}") from None
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, log()[-3000:]


def _admin_add_page(platform: LivePlatform) -> str:
    client = console_client(platform)
    try:
        return client.get("/admin/workflows/handlerregistration/add/").text
    finally:
        client.close()


def _reload_seen(platform: LivePlatform, folder: Path, module: Path, log: Any) -> None:
    # The platform's own folders are watched too, and edited as this runs by whoever works
    # in the tree: other restarts may come; only the one naming the probe is looked for.
    process = platform.process
    assert process is not None
    wait_for(lambda: _healthy(platform.url), timeout=120, what="the platform to answer")
    wait_for(lambda: "] running." in log(), timeout=60, what="the worker")
    assert "auto-reload (development only): watching" in log()
    assert str(folder / "reload_probe") in log()
    before = _children(process.pid)
    assert set(before) == {"web", "worker"}
    assert "Reload probe v1" in _admin_add_page(platform)

    module.write_text(PROBE.format(version="v2"))
    later = module.stat().st_mtime_ns + 2_000_000_000
    os.utime(module, ns=(later, later))

    announced = f"changed: {module}; restarting the web server and the worker cluster"
    wait_for(lambda: announced in log(), timeout=30, what="the change to be seen")

    def restarted() -> bool:
        after = log().split(announced, 1)[1]
        return (
            all(
                line in after
                for line in ("restarted the web server (pid", "restarted the worker cluster (pid")
            )
            and "] running." in after.split("restarted the worker cluster", 1)[1]
        )

    wait_for(restarted, timeout=90, what="the web server and the worker to restart")
    after = _children(process.pid)
    assert after["web"] != before["web"] and after["worker"] != before["worker"]
    wait_for(lambda: _healthy(platform.url), timeout=60, what="the new web server")
    page = _admin_add_page(platform)
    assert "Reload probe v2" in page and "Reload probe v1" not in page
    # A restart is no crash.
    assert "crashed" not in log() and "exited with code" not in log()
