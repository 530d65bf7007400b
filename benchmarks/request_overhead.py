"""Benchmark: the fixed cost of a request, and where it goes (issue 22, step 1).

Starts the platform as `make run` starts it (a fresh data directory, migrated and
bootstrapped, `certyard_run`: the ASGI server with two web processes and the django-q2
cluster), on SQLite (the embedded default) or, with ``--database``, on a PostgreSQL
database this script creates and drops. It creates what the requests need through the
platform's own services (an API token for the admin, a logged-in console session, one
approved orchestrator with an open session per client, a built-in EC P-256 CA and a
template, and the CSRs), then measures with ``http.client`` (benchmarks/_http.py), from
one client sending requests one after another and from 8 clients at once (threads, one
kept-alive connection each):

- ``GET /healthz`` (one ``SELECT 1``);
- ``GET /api/v1/cas/`` and ``GET /api/v1/certificates/?page_size=1`` with an API token;
- ``GET /`` (the console's dashboard) with a logged-in session;
- ``GET /api/orchestrator/v1/jobs/next?wait=0``: the agent's long poll answered at once
  (no job waiting: authentication, the approval check, the lease query, 204);
- ``POST /api/v1/enrollments/``: one EC P-256 CSR enrolled per request, issued at once.

For each it prints requests per second, p50 and p95 latency, the ratio 8 clients /
one client and the issue's goals beside them (sequential ``/healthz`` >= 1,500/s, API
reads >= 600/s, 8 clients >= 1.6 x sequential), and the client's own CPU use (the client
shares the machine's two cores with the platform it measures).

``--profile`` measures no server: it runs the platform's ASGI application in this process
(``certyard.asgi.application``: every request to Django's WSGI handler on the pool's
long-lived threads, the long poll behind its handoff, the whole middleware stack, the
views; no socket, no uvicorn) for N requests of each kind, three times: with nothing but
the wall clock (the in-process cost of a request: what the live latency adds to it is
uvicorn, the socket and the client), then

1. with light timers around the phases (each middleware, the hops into the request's
   sync thread, URL routing, authentication, session load, DRF permission checks, the
   view, serializers, rendering, database connection setup and close, queries and
   commits): wall-clock ms per request, each phase without the phases inside it;
2. under cProfile (every thread: the event loop's and each request's sync thread): own
   time per request grouped by module (Django handler and asgiref, middleware modules,
   authentication, ORM, database driver, DRF, templates, Certyard, crypto), and the
   functions costing most, and the cumulative time of a few (connect, thread start, ...).

A summary puts the phases of every kind side by side, with the queries, database
connections, hops into the sync thread and threads started per request.

Run: .venv/bin/python benchmarks/request_overhead.py [N] [--clients 8]
       [--database postgres://postgres@127.0.0.1:5432/certyard_bench_overhead]
       [--profile] [--only healthz,api-cas,...]
(default N = 2000 requests per kind and mode; `make bench` runs N = 200).
Goals (issue 22): /healthz >= 1,500/s and an API read >= 600/s sequentially on SQLite and
PostgreSQL; with 8 clients, at least 1.6 x the sequential rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import datetime as dt
import functools
import inspect
import json
import logging
import math
import os
import pstats
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _http import Client
from _live import ROOT, Platform, recreate_database
from _profile import IDLE, MARKERS, ThreadProfiles, group_of, own_time_by_group, short_name

sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

TEMPLATE = "bench-overhead"
WARM_UP = 20
GOAL_HEALTHZ = 1500.0
GOAL_API_READ = 600.0
GOAL_CONCURRENCY = 1.6


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    label: str
    method: str
    path: str
    expected: int
    goal_rate: float | None = None  # sequential requests per second (issue 22)
    goal_ratio: float | None = None  # 8 clients / one client


KINDS = [
    Kind("healthz", "GET /healthz", "GET", "/healthz", 200, GOAL_HEALTHZ, GOAL_CONCURRENCY),
    Kind(
        "api-cas", "GET /api/v1/cas/", "GET", "/api/v1/cas/", 200, GOAL_API_READ, GOAL_CONCURRENCY
    ),
    Kind(
        "api-certificates",
        "GET /api/v1/certificates/?page_size=1",
        "GET",
        "/api/v1/certificates/?page_size=1",
        200,
        GOAL_API_READ,
        GOAL_CONCURRENCY,
    ),
    Kind("console", "GET / (console dashboard)", "GET", "/", 200),
    Kind(
        "agent-poll",
        "GET jobs/next?wait=0 (agent)",
        "GET",
        "/api/orchestrator/v1/jobs/next?wait=0",
        204,
    ),
    Kind("enrollment", "POST /api/v1/enrollments/", "POST", "/api/v1/enrollments/", 201),
]


@dataclasses.dataclass
class Fixtures:
    """What the requests need: credentials, an agent session per client, CSRs."""

    api_token: str
    session_cookie: tuple[str, str]
    agent_tokens: list[str]
    csrs: Iterator[str]
    csr_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def next_csr(self) -> str:
        with self.csr_lock:
            return next(self.csrs)

    def headers(self, kind: Kind, client: int) -> dict[str, str]:
        if kind.name.startswith("api-") or kind.name == "enrollment":
            return {"Authorization": f"Token {self.api_token}"}
        if kind.name == "agent-poll":
            return {"Authorization": f"Bearer {self.agent_tokens[client]}"}
        if kind.name == "console":
            return {"Cookie": f"{self.session_cookie[0]}={self.session_cookie[1]}"}
        return {}

    def body(self, kind: Kind) -> bytes | None:
        if kind.name != "enrollment":
            return None
        return json.dumps({"template": TEMPLATE, "csr": self.next_csr()}).encode()


# --- Setting up -------------------------------------------------------------------------


def _django_setup(env: dict[str, str]) -> None:
    """This process reads and writes the platform's database through its own code."""
    for name in ("CERTYARD_DATA_DIR", "DATABASE_URL"):
        os.environ[name] = env[name]
    os.environ["DJANGO_SETTINGS_MODULE"] = "certyard.settings"
    import django

    django.setup()
    logging.getLogger("axes").setLevel(logging.WARNING)  # its line per login made here
    # WhiteNoise notes that nothing was collected yet (this process serves no static file).
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)


def _csrs(count: int) -> Iterator[str]:
    """``count`` EC P-256 CSRs for names the template allows (a few keys, reused)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(20)]
    for index in range(count):
        name = f"host{index}.overhead.example.test"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(keys[index % len(keys)], hashes.SHA256())
        )
        yield csr.public_bytes(serialization.Encoding.PEM).decode()


def create_fixtures(username: str, clients: int, enrollments: int) -> Fixtures:
    """The admin's API token and console session, an approved orchestrator with an open
    session per client, a built-in EC P-256 CA with a template, and the CSRs."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from long_poll_load import register_agents

    from certyard.accounts.services import api_token_create
    from certyard.enrollment.models import Template
    from certyard.enrollment.services import enrollment_submit_csr
    from certyard.pki import services as pki_services

    user = get_user_model().objects.get(username=username)
    _, api_token = api_token_create(
        user=user, name="request-overhead benchmark", expires_in=dt.timedelta(days=1)
    )
    console = Client(HTTP_HOST="127.0.0.1")
    console.force_login(user)
    session = console.cookies[settings.SESSION_COOKIE_NAME].value
    ca = pki_services.ca_create(name="Bench overhead CA", key_algorithm="EC-P256")
    Template.objects.create(name=TEMPLATE, ca=ca, allowed_domains=["example.test"])
    agents = register_agents(clients)
    csrs = iter(list(_csrs(enrollments + 10)))  # made now, not while measuring
    # Certificates for the certificate list and the dashboard to show (a page of one).
    for _ in range(10):
        enrollment_submit_csr(template_name=TEMPLATE, csr_pem=next(csrs))
    connection.close()  # nothing of this process stays open on the database
    return Fixtures(
        api_token=api_token,
        session_cookie=(settings.SESSION_COOKIE_NAME, session),
        agent_tokens=[token for _, token, _ in agents],
        csrs=csrs,
    )


def _database_drop(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _checked_database(url: str | None) -> str | None:
    if url is None:
        return None
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("--database takes a PostgreSQL URL (SQLite is the default)")
    name = url.rsplit("/", 1)[1]
    if not name or name in ("certyard", "postgres", "template0", "template1"):
        raise SystemExit(f"--database: name a throwaway database, not {name!r}: it is dropped")
    return url


# --- Measuring over HTTP --------------------------------------------------------------


@dataclasses.dataclass
class Result:
    count: int
    seconds: float
    latencies: list[float]
    client_cpu: float
    errors: Counter[str]

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(len(ordered) * fraction) - 1)] * 1000


def _send(client: Client, kind: Kind, fixtures: Fixtures, index: int) -> tuple[float, str]:
    """One request; its latency and, when the answer is not the expected one, why."""
    body = fixtures.body(kind)
    headers = fixtures.headers(kind, index)
    if body is not None:
        headers["Content-Type"] = "application/json"
    started = time.perf_counter()
    answer = client.request(kind.method, kind.path, content=body, headers=headers)
    took = time.perf_counter() - started
    if answer.status_code != kind.expected:
        return took, f"{answer.status_code} {answer.text[:120]}"
    return took, ""


def measure(url: str, kind: Kind, fixtures: Fixtures, count: int, clients: int) -> Result:
    """``count`` requests of ``kind`` from ``clients`` clients at once (each its own
    thread and kept-alive connection), after a few unmeasured ones per client."""
    sessions = [Client(url, timeout=60) for _ in range(clients)]
    for index, client in enumerate(sessions):
        for _ in range(WARM_UP // clients + 1):
            _send(client, kind, fixtures, index)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    shares = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
    start = threading.Barrier(clients + 1)

    def run(index: int) -> None:
        own, bad = [], []
        start.wait()
        for _ in range(shares[index]):
            took, error = _send(sessions[index], kind, fixtures, index)
            own.append(took)
            if error:
                bad.append(error)
        with lock:
            latencies.extend(own)
            errors.update(bad)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    cpu = time.process_time()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    for client in sessions:
        client.close()
    return Result(count, seconds, latencies, cpu / seconds, errors)


def _goal(kind: Kind, sequential: Result, concurrent: Result | None) -> str:
    parts = []
    if kind.goal_rate is not None:
        met = sequential.rate >= kind.goal_rate
        parts.append(f">= {kind.goal_rate:,.0f}/s {'met' if met else 'NOT met'}")
    if kind.goal_ratio is not None and concurrent is not None:
        met = concurrent.rate / sequential.rate >= kind.goal_ratio
        parts.append(f"x{kind.goal_ratio} {'met' if met else 'NOT met'}")
    return "; ".join(parts) or "-"


def run_live(args: argparse.Namespace, kinds: list[Kind]) -> None:
    database = _checked_database(args.database)
    if database:
        recreate_database(database)
    where = "PostgreSQL" if database else "SQLite"
    try:
        with tempfile.TemporaryDirectory(prefix="certyard-overhead-") as tmp:
            platform = Platform(Path(tmp), database)
            try:
                _django_setup(platform.env)
                enrollments = (args.count + WARM_UP + args.clients) * 2
                fixtures = create_fixtures(
                    platform.env["CERTYARD_ADMIN_USER"], args.clients, enrollments
                )
                print(
                    f"request overhead on {where}: the platform as `make run` starts it "
                    f"(two web processes), {args.count} requests per kind and mode"
                )
                _report_live(platform.url, kinds, fixtures, args)
            finally:
                platform.stop()
                kept = Path(tempfile.gettempdir()) / "certyard-overhead-platform.log"
                kept.write_bytes((Path(tmp) / "platform.log").read_bytes())
                print(f"platform log: {kept}")
    finally:
        if database:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            _database_drop(database)


def _report_live(url: str, kinds: list[Kind], fixtures: Fixtures, args: argparse.Namespace) -> None:
    clients = args.clients
    print(
        f"{'':38} {'1 client':^29}   {f'{clients} clients at once':^29}   {'ratio':>5}  "
        "goals (issue 22)"
    )
    print(
        f"{'request':38} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'cpu':>4}   "
        f"{'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'cpu':>4}"
    )
    problems = []
    for kind in kinds:
        sequential = measure(url, kind, fixtures, args.count, 1)
        concurrent = measure(url, kind, fixtures, args.count, clients) if clients > 1 else None
        row = f"{kind.label:38} " + _cells(sequential)
        if concurrent is not None:
            row += "   " + _cells(concurrent) + f"   {concurrent.rate / sequential.rate:5.2f}"
        print(f"{row}  {_goal(kind, sequential, concurrent)}", flush=True)
        for result in (sequential, concurrent):
            if result is not None and result.errors:
                problems.append(
                    f"{kind.label}: {sum(result.errors.values())} unexpected answers, "
                    f"first: {result.errors.most_common(1)[0][0]}"
                )
    print(
        "cpu: the client's own CPU use, in cores, while it measured (the machine has "
        f"{os.cpu_count()})"
    )
    for problem in problems:
        print(f"  ! {problem}")


def _cells(result: Result) -> str:
    return (
        f"{result.rate:8,.0f} {result.percentile(0.5):7.2f} {result.percentile(0.95):7.2f} "
        f"{result.client_cpu:4.2f}"
    )


# --- Profiling in-process ---------------------------------------------------------------


class Phases:
    """Wall-clock time per phase of a request, each phase without the phases inside it.

    A stack of phase names: entering a phase charges the time since the last change to the
    phase on top and pushes the new one; leaving charges it and pops. One request runs at a
    time, so its event loop thread and its sync thread share one stack.
    """

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.since = 0.0
        self.spent: dict[str, float] = defaultdict(float)
        self.counts: Counter[str] = Counter()
        self.on = False
        self.lock = threading.Lock()

    def enter(self, name: str) -> None:
        if not self.on:
            return
        with self.lock:
            now = time.perf_counter()
            if self.stack:
                self.spent[self.stack[-1]] += now - self.since
            self.stack.append(name)
            self.since = now

    def leave(self) -> None:
        if not self.on:
            return
        with self.lock:
            now = time.perf_counter()
            if self.stack:
                self.spent[self.stack.pop()] += now - self.since
            self.since = now

    def top(self) -> str:
        return self.stack[-1] if self.stack else "ASGI handler"

    def reset(self) -> None:
        self.stack.clear()
        self.spent.clear()
        self.counts.clear()


PHASES = Phases()


def _timed(name: str | Callable[..., str], func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` timed as phase ``name`` (or ``name(*args)``), whether it answers at once or
    with an awaitable (then the phase is the await)."""

    def label(args: tuple[Any, ...]) -> str:
        return name(*args) if callable(name) else name

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            PHASES.enter(label(args))
            try:
                return await func(*args, **kwargs)
            finally:
                PHASES.leave()

        return timed_async

    @functools.wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        phase = label(args)
        PHASES.enter(phase)
        try:
            result = func(*args, **kwargs)
        except BaseException:
            PHASES.leave()
            raise
        PHASES.leave()
        if inspect.isawaitable(result):

            async def awaited() -> Any:
                PHASES.enter(phase)
                try:
                    return await result
                finally:
                    PHASES.leave()

            return awaited()
        return result

    return timed


def _counted(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def counted(*args: Any, **kwargs: Any) -> Any:
        if PHASES.on:
            PHASES.counts[name] += 1
        return func(*args, **kwargs)

    return counted


def install_phase_timers() -> None:
    """Timers around the phases of a request, in this process only (no platform code
    changes): see the module's docstring."""
    import asgiref.sync
    from django.conf import settings
    from django.contrib import auth
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.handlers.base import BaseHandler
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper
    from django.template.base import Template
    from django.utils.module_loading import import_string
    from rest_framework import serializers
    from rest_framework.renderers import JSONRenderer
    from rest_framework.request import Request
    from rest_framework.views import APIView

    from certyard.enrollment import services as enrollment_services
    from certyard.pki import crypto

    for path in settings.MIDDLEWARE:
        cls = import_string(path)
        cls.__call__ = _timed(f"middleware {cls.__name__}", cls.__call__)
        # Hooks Django calls itself (process_view, ...): part of the same middleware.
        for hook in ("process_view", "process_exception", "process_template_response"):
            if hook in vars(cls):
                setattr(cls, hook, _timed(f"middleware {cls.__name__}", vars(cls)[hook]))

    # A hop into the request's sync thread and back: the hop is its own phase; what
    # runs in the thread is charged to the phase that asked for it (the one below).
    real_call = asgiref.sync.SyncToAsync.__call__
    real_handler = asgiref.sync.SyncToAsync.thread_handler
    hop_phase = "sync_to_async hops (thread handoff)"

    async def hop(self: Any, *args: Any, **kwargs: Any) -> Any:
        if PHASES.on:
            PHASES.counts["sync_to_async hops"] += 1
            PHASES.counts[f"hop from {PHASES.top()}"] += 1
        PHASES.enter(hop_phase)
        try:
            return await real_call(self, *args, **kwargs)
        finally:
            PHASES.leave()

    def in_thread(self: Any, *args: Any, **kwargs: Any) -> Any:
        stack = PHASES.stack
        asker = stack[-2] if len(stack) > 1 and stack[-1] == hop_phase else "ASGI handler"
        PHASES.enter(asker)
        try:
            return real_handler(self, *args, **kwargs)
        finally:
            PHASES.leave()

    asgiref.sync.SyncToAsync.__call__ = hop  # type: ignore[method-assign]
    asgiref.sync.SyncToAsync.thread_handler = in_thread  # type: ignore[method-assign]

    BaseHandler._get_response_async = _timed(
        "Django handler (process_view, view call)", BaseHandler._get_response_async
    )
    BaseHandler.resolve_request = _timed("URL routing", BaseHandler.resolve_request)
    real_resolve = BaseHandler.resolve_request

    def resolve_with_timed_view(self: Any, request: Any) -> Any:
        match = real_resolve(self, request)
        match.func = _timed("view (own code, ORM, services)", match.func)
        return match

    BaseHandler.resolve_request = resolve_with_timed_view  # type: ignore[method-assign]

    Request._authenticate = _timed("authentication", Request._authenticate)
    auth.get_user = _timed("authentication", auth.get_user)
    auth.aget_user = _timed("authentication", auth.aget_user)
    SessionStore.load = _timed("session load", SessionStore.load)
    APIView.check_permissions = _timed("DRF permissions", APIView.check_permissions)
    APIView.check_throttles = _timed("DRF permissions", APIView.check_throttles)
    for cls in (serializers.Serializer, serializers.ListSerializer):
        cls.to_representation = _timed("serializers", cls.to_representation)
        cls.is_valid = _timed("serializers", cls.is_valid)
    JSONRenderer.render = _timed("rendering (JSON, templates)", JSONRenderer.render)
    Template.render = _timed("rendering (JSON, templates)", Template.render)
    enrollment_services.enrollment_submit_csr = _timed(
        "enrollment service (own code, ORM)", enrollment_services.enrollment_submit_csr
    )
    crypto.certificate_build = _timed(
        "certificate signing (cryptography)", crypto.certificate_build
    )

    BaseDatabaseWrapper.connect = _timed("database connection setup", BaseDatabaseWrapper.connect)
    BaseDatabaseWrapper.connect = _counted("database connections", BaseDatabaseWrapper.connect)
    BaseDatabaseWrapper.close = _timed("database connection close", BaseDatabaseWrapper.close)
    for name in ("execute", "executemany"):
        setattr(CursorWrapper, name, _timed("database queries", getattr(CursorWrapper, name)))
        setattr(CursorWrapper, name, _counted("queries", getattr(CursorWrapper, name)))
    BaseDatabaseWrapper.commit = _timed("database queries", BaseDatabaseWrapper.commit)

    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        PHASES.counts["threads started"] += PHASES.on
        real_start(self)

    threading.Thread.start = start  # type: ignore[method-assign]


class InProcess:
    """The platform's ASGI application, called in this process as uvicorn calls it."""

    def __init__(self) -> None:
        from certyard.asgi import application

        self.application = application
        self.loop = asyncio.new_event_loop()

    @contextlib.contextmanager
    def fresh_request_threads(self) -> Iterator[None]:
        """The request threads started anew (so that cProfile follows them) and ended
        after (so that their profiles are complete)."""
        from concurrent.futures import ThreadPoolExecutor

        from certyard.asgi import sync_requests

        kept = sync_requests._executor
        sync_requests._executor = ThreadPoolExecutor(max_workers=sync_requests.threads)
        try:
            yield
        finally:
            sync_requests._executor.shutdown(wait=True)
            sync_requests._executor = kept

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> int:
        return self.loop.run_until_complete(self._request(method, path, headers, body))

    async def _request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> int:
        route, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": route,
            "raw_path": route.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                *([(b"content-length", str(len(body)).encode())] if body else []),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent = False
        forever = asyncio.Event()
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body or b"", "more_body": False}
            await forever.wait()  # the client stays until the answer is sent
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        PHASES.enter("ASGI handler")
        try:
            await self.application(scope, receive, send)
        finally:
            PHASES.leave()
        return status


def run_profile(args: argparse.Namespace, kinds: list[Kind]) -> None:
    database = _checked_database(args.database)
    count = args.count
    with tempfile.TemporaryDirectory(prefix="certyard-overhead-profile-") as tmp:
        data_dir = Path(tmp) / "var"
        data_dir.mkdir(mode=0o700)
        env = {
            "CERTYARD_DATA_DIR": str(data_dir),
            "DATABASE_URL": database or f"sqlite:///{data_dir / 'certyard.sqlite3'}",
        }
        if database:
            recreate_database(database)
        try:
            _django_setup(env)
            from django.contrib.auth import get_user_model
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            get_user_model().objects.create_superuser("admin", "admin@example.test", "x" * 16)
            fixtures = create_fixtures("admin", 1, count * 3 + WARM_UP * 2)
            logging.getLogger("django.request").setLevel(logging.CRITICAL)
            _profile(kinds, fixtures, count, "PostgreSQL" if database else "SQLite")
        finally:
            if database:
                from django.db import connections

                connections.close_all()
                _database_drop(database)


def _profile(kinds: list[Kind], fixtures: Fixtures, count: int, where: str) -> None:
    install_phase_timers()
    profiles = ThreadProfiles()
    app = InProcess()
    summary: dict[str, tuple] = {}
    print(
        f"profile on {where}, in this process (certyard.asgi.application: the request "
        f"threads, the long poll behind its handoff; the middleware, the views; "
        f"no uvicorn, no socket), {count} requests per kind"
    )
    for kind in kinds:
        for _ in range(WARM_UP):
            status = app.request(
                kind.method, kind.path, _headers(fixtures, kind), fixtures.body(kind)
            )
            assert status == kind.expected, f"{kind.label} answered {status}"
        # 0. Nothing measured but the wall clock.
        started = time.perf_counter()
        for _ in range(count):
            app.request(kind.method, kind.path, _headers(fixtures, kind), fixtures.body(kind))
        plain = time.perf_counter() - started
        # 1. The phases, by the timers.
        PHASES.reset()
        PHASES.on = True
        started = time.perf_counter()
        for _ in range(count):
            app.request(kind.method, kind.path, _headers(fixtures, kind), fixtures.body(kind))
        wall = time.perf_counter() - started
        PHASES.on = False
        spent, counts = dict(PHASES.spent), dict(PHASES.counts)
        # 2. The functions, by cProfile.
        profiles.main, profiles.threads = cProfile.Profile(), []
        with profiles.running(), app.fresh_request_threads():
            started = time.perf_counter()
            for _ in range(count):
                app.request(kind.method, kind.path, _headers(fixtures, kind), fixtures.body(kind))
            profiled_wall = time.perf_counter() - started
        _print_profile(kind, count, plain, wall, spent, counts, profiled_wall, profiles.stats())
        summary[kind.name] = (plain, wall, spent, counts)
    _print_summary(summary, count)


def _print_summary(summary: dict[str, tuple], count: int) -> None:
    """The phases side by side: ms per request, each kind a column."""
    per = 1000 / count
    names = list(summary)
    print()
    print("summary: wall ms per request by phase (each without the phases inside it)")
    print(f"  {'':44}" + "".join(f"{name[:10]:>11}" for name in names))
    print(
        f"  {'in-process, no timers':44}" + "".join(f"{v[0] * per:11.2f}" for v in summary.values())
    )
    print(
        f"  {'in-process, timers on':44}" + "".join(f"{v[1] * per:11.2f}" for v in summary.values())
    )
    totals: dict[str, float] = defaultdict(float)
    for _, _, spent, _ in summary.values():
        for phase, seconds in spent.items():
            totals[phase] += seconds
    for phase in sorted(totals, key=lambda name: -totals[name]):
        cells = [v[2].get(phase, 0.0) * per for v in summary.values()]
        if max(cells) >= 0.05:
            print(f"  {phase[:44]:44}" + "".join(f"{cell:11.2f}" for cell in cells))
    for tally in ("queries", "database connections", "sync_to_async hops", "threads started"):
        cells = [v[3].get(tally, 0) / count for v in summary.values()]
        print(f"  {tally + ' per request':44}" + "".join(f"{cell:11.1f}" for cell in cells))


def _headers(fixtures: Fixtures, kind: Kind) -> dict[str, str]:
    headers = fixtures.headers(kind, 0)
    if kind.method == "POST":
        headers["Content-Type"] = "application/json"
    return headers


def _print_profile(
    kind: Kind,
    count: int,
    plain: float,
    wall: float,
    spent: dict[str, float],
    counts: dict[str, int],
    profiled_wall: float,
    stats: pstats.Stats,
) -> None:
    per = 1000 / count
    print()
    print(
        f"== {kind.label}: {plain * per:.2f} ms per request in-process ({count / plain:,.0f}/s "
        f"on one core); {wall * per:.2f} ms with the phase timers on"
    )
    tally = ", ".join(
        f"{counts.get(name, 0) / count:.1f} {name}"
        for name in ("queries", "database connections", "sync_to_async hops", "threads started")
    )
    print(f"   per request: {tally}")
    hops = sorted(
        (n[len("hop from ") :], c) for n, c in counts.items() if n.startswith("hop from ")
    )
    print(
        "   hops into the sync thread, by who asked: "
        + ", ".join(f"{name} {calls / count:.0f}" for name, calls in hops)
    )
    print("   phases (wall ms per request, each without the phases inside it):")
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        if seconds * per >= 0.005:
            print(f"     {seconds * per:7.3f}  {100 * seconds / wall:5.1f}%  {name}")
    raw: dict = stats.stats  # type: ignore[attr-defined]
    own = own_time_by_group(raw)
    busy = sum(v for k, v in own.items() if k != IDLE)
    print(
        f"   cProfile, every thread: {profiled_wall * per:.2f} ms per request under the "
        f"profiler (which slows calls down), {busy * per:.2f} ms of it running code; "
        "own time by module (ms per request):"
    )
    for name, seconds in sorted(own.items(), key=lambda item: -item[1]):
        if seconds * per >= 0.005:
            share = "" if name == IDLE else f"{100 * seconds / busy:5.1f}%"
            print(f"     {seconds * per:7.3f}  {share:>6}  {name}")
    functions = [
        (tottime, calls, filename, line, function)
        for (filename, line, function), (_, calls, tottime, _cum, _) in raw.items()
        if group_of(filename, function) != IDLE
    ]
    print("   functions with the most own time (ms per request, calls per request):")
    for tottime, calls, filename, line, function in sorted(functions, reverse=True)[:12]:
        where = function if filename == "~" else f"{short_name(filename)}:{line} {function}"
        print(f"     {tottime * per:7.3f}  {calls / count:6.1f}  {where}")
    print("   cumulative time of (ms per request, calls per request):")
    for label, file_part, function in MARKERS:
        found = [
            value
            for (filename, _line, name), value in raw.items()
            if file_part in filename and name == function
        ]
        cumulative, calls = sum(v[3] for v in found), sum(v[1] for v in found)
        if calls:
            print(f"     {cumulative * per:7.3f}  {calls / count:6.1f}  {label}")


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=2000, help="requests per kind")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument(
        "--database",
        metavar="URL",
        help="a throwaway PostgreSQL database (created, then dropped) instead of SQLite",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the server side in this process"
    )
    parser.add_argument(
        "--only", help=f"these kinds only, comma-separated: {', '.join(k.name for k in KINDS)}"
    )
    args = parser.parse_args()
    kinds = KINDS
    if args.only:
        wanted = set(args.only.split(","))
        kinds = [kind for kind in KINDS if kind.name in wanted]
        if unknown := wanted - {kind.name for kind in kinds}:
            parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    (run_profile if args.profile else run_live)(args, kinds)


if __name__ == "__main__":
    main()
