"""A platform started as `make run` starts it, for the benchmarks: a fresh data directory,
migrated and bootstrapped, `certyard_run` in its own process group, stopped with SIGTERM."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(ROOT / "manage.py")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found += [int(entry.name), *_descendants(int(entry.name))]
    return found


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Platform:
    def __init__(
        self, base: Path, database_url: str | None, env_overrides: dict[str, str] | None = None
    ) -> None:
        self.base = base
        data_dir = base / "var"
        data_dir.mkdir(mode=0o700, parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CERTYARD_DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url or f"sqlite:///{data_dir / 'certyard.sqlite3'}",
            "CERTYARD_ADMIN_USER": "admin",
            "CERTYARD_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "CERTYARD_WORKERS": "1",
            **(env_overrides or {}),
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        subprocess.run([*MANAGE, "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)
        token_file = base / "api-token"
        subprocess.run(
            [*MANAGE, "certyard_bootstrap", "--api-token-file", str(token_file)],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.token = token_file.read_text().strip()
        self.log = (base / "platform.log").open("wb")
        self.process = subprocess.Popen(
            [*MANAGE, "certyard_run", "--no-demo-orchestrator", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        self.api = httpx.Client(
            base_url=f"{self.url}/api/v1/",
            headers={"Authorization": f"Token {self.token}"},
            timeout=60,
        )

    def web_peak_rss_mb(self) -> float:
        pids = [p for p in _descendants(self.process.pid) if "gunicorn" in _process_name(p)]
        return max((peak_rss_mb(p) for p in pids), default=0.0)

    def stop(self) -> None:
        self.api.close()
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)


def recreate_database(url: str) -> None:
    """Drop and create the PostgreSQL database ``url`` names: every run starts empty."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
