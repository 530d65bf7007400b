"""Real processes for end-to-end tests: the platform as `make run` starts it, and agents.

The platform runs `manage.py certyard_run --no-demo-orchestrator` (gunicorn and a
django-q2 cluster with the ORM broker) on a temporary SQLite database; each agent
is a real `certyard-orchestrator` process. Tests talk to all of them over HTTP only.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

logging.getLogger("httpx").setLevel(logging.WARNING)

ROOT = Path(__file__).resolve().parents[2]
MANAGE = [sys.executable, str(ROOT / "manage.py")]
AGENT = [sys.executable, "-m", "orchestrators.agent"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def orchestrator_named(api: httpx.Client, name: str) -> dict:
    answer = api.get("orchestrators/", params={"page_size": 500})
    assert answer.status_code == 200, answer.text
    return next(o for o in answer.json()["results"] if o["name"] == name)


def certificates_listed(api: httpx.Client, **params: object) -> list[dict]:
    answer = api.get("certificates/", params={"page_size": 500, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


def orchestrator_approved(api: httpx.Client, name: str) -> dict:
    """Wait for the agent called ``name`` to have registered, approve it, return it."""
    orchestrator = wait_for(
        lambda: next(
            (o for o in api.get("orchestrators/").json()["results"] if o["name"] == name), None
        ),
        timeout=30,
        what=f"the orchestrator {name}",
    )
    assert api.post(f"orchestrators/{orchestrator['id']}/approve/").status_code == 200
    return orchestrator


def file_store_created(api: httpx.Client, orchestrator: dict, folder: Path, **extra: Any) -> dict:
    """A file store (type PEM) of ``folder`` on the orchestrator's own machine."""
    created = api.post(
        "stores/",
        json={
            "store_type": "PEM",
            "store_path": str(folder),
            "orchestrator": orchestrator["id"],
            **extra,
        },
    )
    assert created.status_code == 201, created.text
    return created.json()


def inventory_finished(
    api: httpx.Client, store_id: str, agent: AgentProcess, *, timeout: float = 60
) -> dict:
    """Open an inventory job for the store now and wait for it to end; the job's detail."""
    job_id = api.post(f"stores/{store_id}/inventory-now/").json()["id"]
    return wait_for(
        lambda: job_if_finished(api, job_id),
        timeout=timeout,
        what=f"the inventory job\n{agent.log()[-3000:]}",
    )


def job_if_finished(api: httpx.Client, job_id: str) -> dict | None:
    job = api.get(f"jobs/{job_id}/").json()
    return job if job["state"] in ("succeeded", "failed", "cancelled") else None


def scheduled_job_finished(api: httpx.Client, store_id: str, agent: AgentProcess) -> dict:
    """Wait for the worker to turn the store's schedule into a job, then for the agent to
    finish it; the job's detail. The maintenance task runs every minute, its scheduler
    looks every 30 s: allow for both."""
    scheduled = wait_for(
        lambda: api.get("jobs/", params={"store": store_id}).json()["results"],
        timeout=150,
        what="the worker to open the scheduled inventory job",
        every=2,
    )
    assert scheduled[0]["source"] == "schedule"
    return wait_for(
        lambda: job_if_finished(api, scheduled[0]["id"]),
        timeout=60,
        what=f"the agent to run the scheduled job\n{agent.log()[-2000:]}",
    )


@dataclass
class LivePlatform:
    url: str
    data_dir: Path
    env: dict[str, str]
    admin_username: str
    admin_password: str
    api_token: str
    process: subprocess.Popen | None
    log_path: Path
    web_workers: int = 1

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1/",
            headers={"Authorization": f"Token {self.api_token}"},
            timeout=30,
        )

    def registration_token(self, *, description: str = "e2e") -> str:
        with self.api() as api:
            answer = api.post("registration-tokens/", json={"description": description})
            assert answer.status_code == 201, answer.text
            return answer.json()["token"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class AgentProcess:
    name: str
    config_dir: Path
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None
    registration_output: str = ""
    orchestrator_id: str = field(default="")
    # How to start it: this checkout's agent by default; an installed one (the agent
    # wheel's console script) runs from a folder where this checkout is not importable.
    command: tuple[str, ...] = tuple(AGENT)
    cwd: Path = ROOT

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*self.command, "run", "--config-dir", str(self.config_dir), "--log-level", "DEBUG"],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, timeout: float = 15) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


_migrated: list[Path] = []


def _migrated_data_dir() -> Path:
    """A data directory (SQLite database and secret key) migrated once per test process.

    Every platform on the default database starts from a copy of it: `migrate` costs about
    ten seconds a platform, and what it makes is the same each time (the upgrade of a
    database made by an earlier release has its own tests). The copy keeps the files'
    modes, which the data directory's privacy test reads.
    """
    if not _migrated:
        base = Path(tempfile.mkdtemp(prefix="certyard-e2e-migrated-"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        data_dir = base / "var"
        data_dir.mkdir(mode=0o700)
        template_env = {
            **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            "CERTYARD_DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir / 'certyard.sqlite3'}",
        }
        subprocess.run([*MANAGE, "migrate", "-v0"], cwd=ROOT, env=template_env, check=True)
        _migrated.append(data_dir)
    return _migrated[0]


def start_platform(
    base: Path, *, env_overrides: dict[str, str] | None = None, web_workers: int = 1
) -> LivePlatform:
    """Migrate, bootstrap and start the platform as `make run` does, without its demo agent."""
    data_dir = base / "var"
    port = _free_port()
    password = secrets.token_urlsafe(12)
    env = {
        **os.environ,
        "CERTYARD_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'certyard.sqlite3'}",
        "CERTYARD_ADMIN_USER": "admin",
        "CERTYARD_ADMIN_PASSWORD": password,
        "CERTYARD_CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{port}",
        "CERTYARD_WORKERS": "1",
        "PYTHONUNBUFFERED": "1",
        **(env_overrides or {}),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if "DATABASE_URL" in (env_overrides or {}):
        data_dir.mkdir(mode=0o700)
        subprocess.run([*MANAGE, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    else:
        shutil.copytree(_migrated_data_dir(), data_dir)
    token_file = base / "api-token"
    subprocess.run(
        [*MANAGE, "certyard_bootstrap", "--api-token-file", str(token_file)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    log_path = base / "platform.log"
    url = f"http://127.0.0.1:{port}"
    platform = LivePlatform(
        url, data_dir, env, "admin", password, token_file.read_text().strip(), None, log_path
    )
    platform.web_workers = web_workers
    return _run_platform(platform)


def restart_platform(platform: LivePlatform) -> LivePlatform:
    """Start a stopped platform again: same port, same data directory."""
    return _run_platform(platform)


def _run_platform(platform: LivePlatform) -> LivePlatform:
    port = platform.url.rsplit(":", 1)[1]
    process = subprocess.Popen(
        [
            *MANAGE,
            "certyard_run",
            "--no-demo-orchestrator",
            "--port",
            port,
            "--web-workers",
            str(platform.web_workers),
        ],
        cwd=ROOT,
        env=platform.env,
        stdout=platform.log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    platform.process = process
    url = platform.url
    started_at = len(platform.log())

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the platform exited while starting:\n{platform.log()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=90, what="the platform to answer /healthz")
    wait_for(
        # django-q2's own line ("Q Cluster <name> [certyard] running."), not the banner
        # "Certyard is running at ...", which may come first.
        lambda: "] running." in platform.log()[started_at:],
        timeout=60,
        what="the worker cluster to start",
    )
    wait_for(
        # The supervisor's own start-up is over only with its banner: until then a web
        # server that dies is a failed start (the run stops), not a crash to restart.
        lambda: "Certyard is running at" in platform.log()[started_at:],
        timeout=60,
        what="the supervisor to finish starting",
    )
    return platform


def stop_platform(platform: LivePlatform) -> None:
    """SIGTERM, as Ctrl-C would: everything must stop, cleanly."""
    assert platform.process is not None
    platform.process.send_signal(signal.SIGTERM)
    code = platform.process.wait(timeout=40)
    assert code == 0, f"the platform did not stop cleanly ({code}):\n{platform.log()[-3000:]}"


def platform_python(platform: LivePlatform, code: str) -> str:
    """Run Python in the platform's own environment (its database), as an operator would
    with `manage.py shell`; its standard output."""
    completed = subprocess.run(
        [*MANAGE, "shell", "-c", code],
        cwd=ROOT,
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def console_client(platform: LivePlatform) -> httpx.Client:
    """An HTTP client logged into the console as the admin, through the login form."""
    client = httpx.Client(base_url=platform.url, timeout=30, follow_redirects=True)
    client.get("/login/")
    answer = client.post(
        "/login/",
        data={
            "username": platform.admin_username,
            "password": platform.admin_password,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
        headers={"Referer": f"{platform.url}/login/"},
    )
    assert answer.status_code == 200 and "/login/" not in str(answer.url), answer.text[:500]
    return client


@pytest.fixture(scope="session")
def live_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """The embedded setup: SQLite and the django-q2 ORM broker."""
    platform = start_platform(tmp_path_factory.mktemp("platform"))
    yield platform
    stop_platform(platform)


@pytest.fixture
def agent_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., AgentProcess]]:
    """Register real agent processes (with the session's platform unless told another);
    each is stopped (SIGTERM) when the test ends."""
    agents: list[AgentProcess] = []

    def register(
        name: str,
        *,
        token: str | None = None,
        platform: LivePlatform | None = None,
        params: dict[str, str] | None = None,
    ) -> AgentProcess:
        live_platform = platform or request.getfixturevalue("live_platform")
        config_dir = tmp_path / f"agent-{name}"
        env = {k: v for k, v in live_platform.env.items() if not k.startswith("CERTYARD_")}
        agent = AgentProcess(name, config_dir, tmp_path / f"agent-{name}.log", env)
        completed = subprocess.run(
            [
                *AGENT,
                "register",
                "--url",
                live_platform.url,
                "--token",
                token or live_platform.registration_token(description=f"token for {name}"),
                "--name",
                name,
                "--client-machine",
                f"{name}.e2e.test",
                # The agent reads stores only below its roots: the test's own folder.
                "--store-root",
                str(tmp_path),
                "--config-dir",
                str(config_dir),
                *[f"--param={key}={value}" for key, value in (params or {}).items()],
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        agent.registration_output = completed.stdout
        agents.append(agent)
        return agent

    yield register
    for agent in agents:
        if agent.process is not None and agent.process.poll() is None:
            agent.stop()


# --- Store management (issue 16): agents shared by a module, reload commands, nginx ------


def agent_registered(
    platform: LivePlatform,
    name: str,
    base: Path,
    *,
    store_roots: tuple[Path, ...] = (),
    env: dict[str, str] | None = None,
) -> AgentProcess:
    """Register a real agent whose files live in ``base`` (roots: ``store_roots``, else
    ``base``); not started. ``env`` adds to its environment (the write-pause seam)."""
    config_dir = base / f"agent-{name}"
    agent_env = {k: v for k, v in platform.env.items() if not k.startswith("CERTYARD_")}
    # ... but the tests' own store type group (KEYLESS), which only the tests' agents load.
    agent_env["CERTYARD_EXTRA_STORE_TYPE_GROUPS"] = "certyard.store_types.tests"
    agent_env.update(env or {})
    agent = AgentProcess(name, config_dir, base / f"agent-{name}.log", agent_env)
    roots = [f"--store-root={root}" for root in (store_roots or (base,))]
    completed = subprocess.run(
        [
            *AGENT,
            "register",
            "--url",
            platform.url,
            "--token",
            platform.registration_token(description=f"token for {name}"),
            "--name",
            name,
            "--client-machine",
            f"{name}.e2e.test",
            *roots,
            "--config-dir",
            str(config_dir),
        ],
        cwd=ROOT,
        env=agent_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    agent.registration_output = completed.stdout
    return agent


def agent_reload_command_set(agent: AgentProcess, store_path: Path, argv: list[str]) -> None:
    """``certyard-orchestrator reload --store-path P --command ...``: the agent's own local
    configuration, the only place a reload command may come from."""
    import shlex

    completed = subprocess.run(
        [
            *AGENT,
            "reload",
            "--config-dir",
            str(agent.config_dir),
            "--store-path",
            str(store_path),
            "--command",
            shlex.join(argv),
        ],
        cwd=ROOT,
        env=agent.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def agent_killed(agent: AgentProcess) -> None:
    """SIGKILL: no clean-up, no goodbye (a crash or a power cut, as far as files go)."""
    assert agent.process is not None
    agent.process.kill()
    agent.process.wait(timeout=15)


@pytest.fixture(scope="module")
def module_agents(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., AgentProcess]]:
    """Like ``agent_factory``, for a whole module: ``module_agents(name, folder=...,
    env=...)`` registers an agent rooted in ``folder`` (default: the module's folder) on
    the session's platform; every agent still running is stopped (SIGTERM) at the end."""
    base = tmp_path_factory.mktemp("agents")
    agents: list[AgentProcess] = []

    def register(
        name: str,
        *,
        folder: Path | None = None,
        env: dict[str, str] | None = None,
        platform: LivePlatform | None = None,
    ) -> AgentProcess:
        live = platform or request.getfixturevalue("live_platform")
        root = folder or base
        root.mkdir(parents=True, exist_ok=True)
        agent = agent_registered(live, name, root, env=env)
        agents.append(agent)
        return agent

    register.base = base  # type: ignore[attr-defined]
    yield register
    for agent in agents:
        if agent.process is not None and agent.process.poll() is None:
            agent.stop()


@pytest.fixture(scope="module")
def nginx_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """Start real nginx servers (Debian's) on 127.0.0.1 for a module:
    ``nginx_factory(certificate_path, key_path)`` -> :class:`tests.servers.nginx.NginxServer`;
    all stopped at the end."""
    from contextlib import ExitStack

    from tests.servers.nginx import nginx_executable, nginx_server

    if nginx_executable() is None:
        pytest.fail("nginx is not installed: run `make system-deps`")
    with ExitStack() as stack:

        def start(certificate_path: Path, key_path: Path) -> Any:
            prefix = tmp_path_factory.mktemp("nginx")
            return stack.enter_context(
                nginx_server(prefix, certificate_path=certificate_path, key_path=key_path)
            )

        yield start
