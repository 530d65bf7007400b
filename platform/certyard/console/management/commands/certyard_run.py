"""`make run`: set up and start the whole embedded platform, keep it running, stop it cleanly.

Starts the web server, the django-q2 worker cluster and, unless told not to, a local demo
orchestrator that manages a PEM folder of generated certificates, and supervises them with
:class:`certyard.run.supervisor.Supervisor` (see that module: process groups, restarts
with back-off, the run lock and pid file, cleaning up after a run that died). A web server
or worker cluster that crashes 5 times within 2 minutes stops Certyard with an error; the
demo orchestrator is then just left stopped.

Addresses (see :mod:`certyard.run.addresses`): it listens at ``--host``/``--port``
(``CERTYARD_HOST``/``CERTYARD_PORT``), checks its own health and lets the demo orchestrator
in through a loopback address, and advertises ``CERTYARD_PUBLIC_URL``, which it requires
when listening beyond loopback: a wildcard such as ``0.0.0.0`` names no machine. The admin
password (see :mod:`certyard.run.admin_password`) comes last, below the banner.

``--reload`` (``make run RELOAD=1``), for development only: the web server and the worker
cluster are started again whenever the code of the platform, ``handlers/`` or an installed
extension changes (see :mod:`certyard.run.reload`); the changed file is named. Refused when
listening beyond loopback unless ``CERTYARD_DEBUG`` is on.
"""

import datetime as dt
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from certyard.console.management.commands.certyard_bootstrap import admin_account_ensure
from certyard.datadir import data_dir_problem, data_dir_tighten
from certyard.fleet.models import Orchestrator
from certyard.fleet.services import registration_token_create, registration_token_revoke
from certyard.inventory.models import CertificateStoreType
from certyard.inventory.services import store_create
from certyard.run.addresses import (
    PUBLIC_URL_SETTING,
    bind_address,
    default_public_url,
    host_is_loopback,
    local_url,
    public_url_missing_message,
    public_url_problem,
)
from certyard.run.admin_password import AdminLogin, admin_login_lines
from certyard.run.demo import demo_pem_folder_seed
from certyard.run.reload import SourceWatcher, watched_roots
from certyard.run.supervisor import Supervisor, SupervisorError
from handlers.base import ENTRY_POINT_GROUP
from handlers.registry import EXTRA_GROUPS_VARIABLE

DEMO_ORCHESTRATOR = "demo-orchestrator"
# Agent exits after which starting it again cannot help (orchestrators/agent/cli.py).
_AGENT_FINAL_EXITS = {
    2: "it has no usable registration or the platform refused it",
    3: "the platform no longer accepts its identity (re-register it)",
}
# How long the banner waits for the demo orchestrator to report its store roots, so that
# the banner and the admin password come after its start-up lines, last on the screen.
_SETTLE_SECONDS = 20


class Command(BaseCommand):
    help = "Set up and run Certyard: web server, background worker and a demo orchestrator."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("CERTYARD_HOST", "127.0.0.1"))
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("CERTYARD_PORT", "8000"))
        )
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument(
            "--no-demo-orchestrator",
            action="store_true",
            help="Do not start the local demo orchestrator.",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Development only: restart the web server and the worker when the code of "
            "the platform, handlers/ or an installed extension changes.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self._run(options)
        except SupervisorError as error:
            raise CommandError(str(error)) from error

    def _run(self, options: dict[str, Any]) -> None:
        host, port = options["host"], options["port"]
        public_url = self._public_url(host, port)
        if options["reload"] and not host_is_loopback(host) and not settings.DEBUG:
            raise CommandError(
                "--reload is for development only: listen on a loopback address (the default), "
                "or set CERTYARD_DEBUG=1 on a development machine."
            )
        # What this process decided, its children (web server, worker) read the same way.
        os.environ.update(
            {"CERTYARD_HOST": host, "CERTYARD_PORT": str(port), PUBLIC_URL_SETTING: public_url}
        )
        settings.CERTYARD_PUBLIC_URL = public_url
        # Everything this command and its processes create is the owner's alone.
        os.umask(0o077)
        data_dir = Path(settings.DATA_DIR)
        if problem := data_dir_problem(data_dir):
            raise CommandError(problem)
        self.supervisor = Supervisor(
            data_dir, cwd=settings.BASE_DIR, stdout=self.stdout, stderr=self.stderr
        )
        self.supervisor.claim_data_dir()
        try:
            call_command("migrate", interactive=False, verbosity=0)
            login = admin_account_ensure(data_dir=data_dir)
            self._collect_static()
            data_dir_tighten(data_dir)  # collectstatic copies its files' modes
            # This machine's own way in: a loopback address when listening everywhere.
            url = local_url(host, port)
            started = timezone.now()
            self.supervisor.handle_signals()
            # Watched from before the processes start: a change while they start counts.
            self.watcher = self._watcher() if options["reload"] else None
            self._start_web(options)
            self.supervisor.start(
                "worker", [sys.executable, _manage_py(), "qcluster"], label="worker cluster"
            )
            self._wait_healthy(url)
            if not options["no_demo_orchestrator"]:
                self._start_demo_orchestrator(url)
            self._settle(started)
            self._announce(public_url, bound=bind_address(host, port), login=login)
            self.supervisor.run(tick=self._reload_tick if self.watcher else None)
        finally:
            self.supervisor.stop_all()

    def _watcher(self) -> SourceWatcher:
        base_dir = Path(settings.BASE_DIR)
        # The groups the platform reads handlers from (handlers/registry.py).
        extra = os.environ.get(EXTRA_GROUPS_VARIABLE, "")
        groups = [ENTRY_POINT_GROUP, *(g.strip() for g in extra.split(",") if g.strip())]
        roots = watched_roots(base_dir, groups)
        watcher = SourceWatcher(roots)
        shown = ", ".join(_relative(root, base_dir) for root in roots)
        self.supervisor.say(
            f"auto-reload (development only): watching {watcher.file_count} files in {shown}"
        )
        return watcher

    def _reload_tick(self) -> None:
        """Restart the web server and the worker cluster when a watched file changed."""
        changed = self.watcher.changed() if self.watcher is not None else []
        if not changed:
            return
        base_dir = Path(settings.BASE_DIR)
        names = ", ".join(_relative(path, base_dir) for path in changed[:3])
        if len(changed) > 3:
            names += f" and {len(changed) - 3} more"
        self.supervisor.say(f"changed: {names}; restarting the web server and the worker cluster")
        self.supervisor.restart(["web", "worker"], reason=f"{changed[0].name} changed")

    def _public_url(self, host: str, port: int) -> str:
        """The address to advertise: ``CERTYARD_PUBLIC_URL``, required (a CommandError
        saying what to set, before anything starts) when listening beyond loopback."""
        configured = os.environ.get(PUBLIC_URL_SETTING, "").strip()
        if not configured:
            if not host_is_loopback(host):
                raise CommandError(public_url_missing_message(host, port))
            return default_public_url(host, port)
        if problem := public_url_problem(configured):
            raise CommandError(problem)
        return configured.rstrip("/")

    def _collect_static(self) -> None:
        call_command("collectstatic", interactive=False, verbosity=0)

    def _start_web(self, options: dict[str, Any]) -> None:
        self.supervisor.start(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "certyard.asgi",
                "--pythonpath",
                str(Path(settings.BASE_DIR) / "platform"),
                "--bind",
                bind_address(options["host"], options["port"]),
                "--workers",
                str(options["web_workers"]),
                # Django under ASGI: an agent's long poll waits as a coroutine, not a thread,
                # so thousands of waiting agents cannot starve the console.
                "--worker-class",
                "uvicorn_worker.UvicornWorker",
                "--timeout",
                "90",
                "--graceful-timeout",
                "5",
                # Longer than a long poll, so an idle agent's connection is not closed
                # under a request it is sending.
                "--keep-alive",
                "65",
                # Gunicorn's control socket has one default path per user: two instances
                # (a test run beside `make run`) would fight over it, and we do not use it.
                "--no-control-socket",
                # Uvicorn would take the client's address from X-Forwarded-For sent by any
                # local process; the client is the peer (CERTYARD_TRUSTED_PROXIES tells DRF
                # about proxies, SECURE_PROXY_SSL_HEADER tells Django about TLS).
                "--forwarded-allow-ips",
                "",
            ],
            label="web server",
        )

    def _wait_healthy(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.supervisor.stopping:
                raise CommandError("stopped while starting")
            if self.supervisor.children["web"].poll() is not None:
                raise CommandError("the web server exited while starting (is the port in use?)")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise CommandError(f"the web server did not answer at {url} within {timeout:.0f} s")

    def _start_demo_orchestrator(self, url: str) -> None:
        data_dir = Path(settings.DATA_DIR)
        config_dir = data_dir / "demo-orchestrator"
        pem_folder = data_dir / "demo-pem"
        demo_pem_folder_seed(folder=pem_folder)
        agent = [sys.executable, "-m", "orchestrators.agent"]
        registered = Orchestrator.objects.filter(
            name=DEMO_ORCHESTRATOR, client_machine="localhost"
        ).first()
        if registered is None or not registered.has_identity:
            # A fresh database (or a reset) with an old agent configuration: start over.
            (config_dir / "agent.json").unlink(missing_ok=True)
        if not (config_dir / "agent.json").exists():
            # One-time, short-lived, handed over on stdin (a command line is public in `ps`),
            # and revoked unless the registration spent it.
            record, token = registration_token_create(
                description="demo orchestrator (make run)",
                valid_for=dt.timedelta(minutes=5),
                reusable=False,
                approve_on_register=True,
            )
            try:
                registration = subprocess.run(
                    [
                        *agent,
                        "register",
                        "--url",
                        url,
                        "--token",
                        "-",
                        "--name",
                        DEMO_ORCHESTRATOR,
                        "--client-machine",
                        "localhost",
                        "--store-root",
                        str(pem_folder),
                        "--config-dir",
                        str(config_dir),
                    ],
                    input=f"{token}\n",
                    text=True,
                    cwd=settings.BASE_DIR,
                    check=False,
                )
            finally:
                record.refresh_from_db()
                if not record.use_count:
                    registration_token_revoke(token=record)
            if registration.returncode != 0:
                self.stderr.write("the demo orchestrator could not register; continuing without it")
                return
        orchestrator = Orchestrator.objects.filter(
            name=DEMO_ORCHESTRATOR, client_machine="localhost"
        ).first()
        if orchestrator is not None and not orchestrator.stores.exists():
            store_create(
                store_type=CertificateStoreType.objects.get(short_name="PEM"),
                client_machine="localhost",
                store_path=str(pem_folder),
                orchestrator=orchestrator,
                inventory_interval_minutes=60,
            )
        # An agent configured before store roots existed is given its demo folder.
        subprocess.run(
            [*agent, "roots", "--add", str(pem_folder), "--config-dir", str(config_dir)],
            cwd=settings.BASE_DIR,
            check=False,
            capture_output=True,
        )
        self.supervisor.start(
            "orchestrator",
            [*agent, "run", "--config-dir", str(config_dir)],
            label="demo orchestrator",
            essential=False,
            final_exits=_AGENT_FINAL_EXITS,
        )

    def _settle(self, since: dt.datetime) -> None:
        """Wait (a little) for the demo orchestrator to have started, whose start-up lines
        would otherwise scroll the banner and the admin password away: the last thing it
        does is report its store roots, after opening its session."""
        if "orchestrator" not in self.supervisor.children:
            return
        deadline = time.monotonic() + _SETTLE_SECONDS
        reported = Orchestrator.objects.filter(
            name=DEMO_ORCHESTRATOR, client_machine="localhost", limits_reported_at__gte=since
        )
        while time.monotonic() < deadline and not self.supervisor.stopping:
            if reported.exists():
                time.sleep(0.5)  # its log line follows the answer
                return
            time.sleep(0.3)

    def _announce(self, url: str, *, bound: str, login: AdminLogin) -> None:
        # No registration token here: a log is no place for a secret. Tokens are made in
        # the console (or the API), where their value is shown once. The admin password
        # comes last, so that it is what the screen shows once start-up has settled.
        lines = [
            "",
            f"  Certyard is running at {url}/   (listening on {bound})",
            f"  API docs: {url}/api/docs/   Django admin: {url}/admin/",
            "  Register an agent: make a token in the console (Orchestrators -> Registration",
            "  tokens), then on the agent's machine:",
            f"    certyard-orchestrator register --url {url} --token -   (paste the token)",
            "  Press Ctrl-C to stop.",
            "",
            *(f"  {line}" for line in admin_login_lines(login)),
            "",
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()


def _relative(path: Path, base_dir: Path) -> str:
    """``path`` relative to the project when inside it (shorter to read), else as is."""
    try:
        return str(path.relative_to(base_dir.resolve()))
    except ValueError:
        return str(path)


def _manage_py() -> str:
    return str(Path(settings.BASE_DIR) / "manage.py")
