"""Benchmark: thousands of agents long-polling the embedded platform at once.

Starts the platform as `make run` starts it (SQLite, the django-q2 ORM broker, two web
processes), registers N orchestrators with a store each (through the services, with a
real key and session per agent), then opens one long poll per agent (``jobs/next?wait=30``,
each agent polling again as soon as an answer comes, as the agent does) and, while every
poll is open, measures:

1. ``/healthz`` latency and console latency (the logged-in dashboard and the stores
   page, and the people's API orchestrator list): p50, p99 and max;
2. job pickup latency: an admin asks for an inventory through the API, and the time
   from its answer to the waiting agent receiving the job (p50, p99, max).

The pollers are a small asyncio HTTP/1.1 client in a process of their own (the
measuring requests are made from another, so they wait for no poll loop); the load
generator shares the machine's two cores with the platform it measures.

Run: .venv/bin/python benchmarks/long_poll_load.py [N] [--samples 300] [--jobs 100]
       [--spread SECONDS]  (0: every agent polls at once, a herd as after a restart)
       [--postgres URL]    (the scale-out database instead of SQLite)
Goals (issue 6): N=2000, console and /healthz p99 < 100 ms, pickup median < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import logging
import math
import multiprocessing
import os
import queue
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from _live import ROOT, Platform, recreate_database

POLL_WAIT_SECONDS = 30


class Shared:
    """What the pollers' process tells the measuring one: counters, jobs received, errors."""

    def __init__(self) -> None:
        self.counters = {name: multiprocessing.Value("l", 0) for name in ("waiting", "polls")}
        self.errors = multiprocessing.Value("l", 0)
        self.first_errors: multiprocessing.Queue = multiprocessing.Queue()
        self.received: multiprocessing.Queue = multiprocessing.Queue()
        self.stop = multiprocessing.Event()

    def add(self, name: str, delta: int) -> None:
        with self.counters[name].get_lock():
            self.counters[name].value += delta

    def value(self, name: str) -> int:
        return self.counters[name].value

    def error(self, text: str) -> None:
        with self.errors.get_lock():
            self.errors.value += 1
            if self.errors.value <= 3:
                self.first_errors.put(text)


def run_pollers(url: str, tokens: list[str], spread_seconds: float, shared: Shared) -> None:
    """The agents, in a process of their own: the measuring process shares no GIL with
    two thousand poll loops."""

    async def poll_all() -> None:
        stop = asyncio.Event()
        pollers = [Poller(url, token, shared) for token in tokens]
        # A fleet that has been running polls at random moments; one that has just
        # started (or reconnected after a restart of the platform) polls all at once.
        tasks = [
            asyncio.create_task(p.run(stop, random.uniform(0, spread_seconds))) for p in pollers
        ]
        while not shared.stop.is_set():
            await asyncio.sleep(0.2)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(poll_all())


class Poller:
    """One agent's long poll loop over a kept-alive connection."""

    def __init__(self, url: str, token: str, shared: Shared) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.shared = shared
        self.request = (
            f"GET /api/orchestrator/v1/jobs/next?wait={POLL_WAIT_SECONDS} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()

    async def run(self, stop: asyncio.Event, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        reader = writer = None
        while not stop.is_set():
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(self.request)
                self.shared.add("polls", 1)
                self.shared.add("waiting", 1)
                try:
                    status, headers, body = await _response(reader)
                finally:
                    self.shared.add("waiting", -1)
                if status == 200:
                    job_id = re.search(rb'"id":"([0-9a-f-]+)"', body)
                    if job_id:
                        self.shared.received.put((job_id.group(1).decode(), time.time()))
                elif status != 204:
                    self.shared.error(f"{status} {body[:200]!r}")
                    await asyncio.sleep(1)
                if headers.get("connection") == "close":
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.shared.error(type(exc).__name__)
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.5)
        if writer is not None:
            writer.close()


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


def _django_setup(platform: Platform) -> None:
    """This process reads and writes the platform's database through its own code."""
    for name in ("CERTYARD_DATA_DIR", "DATABASE_URL"):
        os.environ[name] = platform.env[name]
    os.environ["DJANGO_SETTINGS_MODULE"] = "certyard.settings"
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    import django

    django.setup()


def register_agents(count: int) -> list[tuple[str, str, str]]:
    """``count`` approved orchestrators with a PEM store and an open session each:
    ``[(orchestrator_id, session_token, store_id)]``."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import CertificateSigningRequestBuilder, Name, NameAttribute
    from cryptography.x509.oid import NameOID

    from certyard.fleet.services import (
        orchestrator_register,
        orchestrator_session_open,
        registration_token_create,
    )
    from certyard.inventory.models import CertificateStoreType
    from certyard.inventory.services import store_create
    from orchestrators.protocol import session_signing_input

    _, token = registration_token_create(
        description="long-poll benchmark",
        valid_for=dt.timedelta(hours=1),
        reusable=True,
        approve_on_register=True,
    )
    pem_type = CertificateStoreType.objects.get(short_name="PEM")
    agents = []
    issued_at = int(time.time())
    for index in range(count):
        name = f"bench-agent-{index:05d}"
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            CertificateSigningRequestBuilder()
            .subject_name(Name([NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
        )
        registration = orchestrator_register(
            token=token,
            name=name,
            client_machine=f"{name}.bench.test",
            agent_version="bench",
            capabilities=["PEM.Inventory"],
            client_parameters={},
            csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
            source_address="127.0.0.1",
        )
        orchestrator = registration.orchestrator
        nonce = os.urandom(12).hex()
        signature = key.sign(
            session_signing_input(
                orchestrator_id=str(orchestrator.pk), issued_at=issued_at, nonce=nonce
            ),
            ec.ECDSA(hashes.SHA256()),
        )
        session = orchestrator_session_open(
            orchestrator_id=str(orchestrator.pk),
            issued_at=issued_at,
            nonce=nonce,
            signature_b64=base64.b64encode(signature).decode(),
        )
        store = store_create(
            store_type=pem_type,
            client_machine=orchestrator.client_machine,
            store_path=f"/srv/{name}",
            orchestrator=orchestrator,
        )
        agents.append((str(orchestrator.pk), session.token, str(store.pk)))
    return agents


def polled_recently() -> int:
    """Orchestrators whose newest poll the platform recorded within one wait."""
    from django.utils import timezone

    from certyard.jobs.models import AgentPoll

    since = timezone.now() - dt.timedelta(seconds=POLL_WAIT_SECONDS)
    return AgentPoll.objects.filter(opened_at__gte=since).count()


def _p99(samples: list[float]) -> float:
    """The nearest-rank 99th percentile: the value 99% of the samples do not exceed."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = _p99(ordered)
    return (
        f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   "
        f"max {ordered[-1] * 1000:7.1f} ms   (n={len(ordered)})"
    )


def _console_client(platform: Platform) -> httpx.Client:
    client = httpx.Client(base_url=platform.url, timeout=30, follow_redirects=False)
    page = client.get("/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert csrf, "no CSRF token on the login page"
    answer = client.post(
        "/login/",
        data={
            "username": platform.env["CERTYARD_ADMIN_USER"],
            "password": platform.env["CERTYARD_ADMIN_PASSWORD"],
            "csrfmiddlewaretoken": csrf.group(1),
        },
        headers={"Referer": f"{platform.url}/login/"},
    )
    assert answer.status_code == 302, f"login failed: {answer.status_code}"
    return client


def _sample(measured: dict, rounds: int, every: float) -> dict[str, list[float]]:
    """``rounds`` rounds of one request to each measured page, in turn, so every page
    sees the same moments of the load (a herd of returning polls included)."""
    timings: dict[str, list[float]] = {name: [] for name in measured}
    for _ in range(rounds):
        for name, call in measured.items():
            started = time.perf_counter()
            status = call()
            timings[name].append(time.perf_counter() - started)
            assert status == 200, f"{name} answered {status}"
            time.sleep(every)
    return timings


def measure(platform: Platform, count: int, samples: int, jobs: int, spread_seconds: float) -> None:
    print(f"registering {count} orchestrators (key, certificate, session and store each)...")
    started = time.perf_counter()
    agents = register_agents(count)
    print(f"  done in {time.perf_counter() - started:.1f} s")

    health = httpx.Client(base_url=platform.url, timeout=30)
    console = _console_client(platform)
    api = platform.api
    measured = {
        "/healthz": lambda: health.get("/healthz").status_code,
        "console dashboard": lambda: console.get("/").status_code,
        "console stores page": lambda: console.get("/stores/").status_code,
        "API orchestrator list": lambda: api.get("orchestrators/").status_code,
    }
    baseline = _sample(measured, samples, every=0.02)

    shared = Shared()
    pollers = multiprocessing.Process(
        target=run_pollers,
        args=(platform.url, [token for _, token, _ in agents], spread_seconds, shared),
        daemon=True,
    )
    pollers.start()
    try:
        started = time.perf_counter()
        while shared.value("waiting") < count or polled_recently() < count:
            if time.perf_counter() - started > 120:
                break
            time.sleep(0.5)
        took = time.perf_counter() - started
        print(f"{shared.value('waiting')} long polls open after {took:.1f} s")

        open_counts: list[int] = []
        counting = threading.Event()

        def count_open() -> None:
            while not counting.wait(0.5):
                open_counts.append(shared.value("waiting"))

        counter = threading.Thread(target=count_open, daemon=True)
        counter.start()
        results = _sample(measured, samples, every=0.02)
        counting.set()
        counter.join()

        received: dict[str, float] = {}
        pickups = []
        for _, _, store_id in random.sample(agents, min(jobs, len(agents))):
            answer = api.post(f"stores/{store_id}/inventory-now/")
            created = time.time()
            assert answer.status_code in (200, 201), answer.text
            job_id = answer.json()["id"]
            deadline = time.monotonic() + 30
            while job_id not in received and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    got, at = shared.received.get(timeout=0.05)
                    received[got] = at
            if job_id in received:
                pickups.append(max(0.0, received[job_id] - created))
            else:
                print(f"  job {job_id} was not picked up within 30 s")
            time.sleep(0.1)
        polls = shared.value("polls")
    finally:
        shared.stop.set()
        pollers.join(timeout=30)
    first_errors = []
    with contextlib.suppress(queue.Empty):
        while True:
            first_errors.append(shared.first_errors.get(timeout=0.1))

    print()
    print(f"with no long poll open ({count} orchestrators registered):")
    for name, timings in baseline.items():
        print(f"  {name:24s} {_percentiles(timings)}")
    start = f"started within {spread_seconds:.0f} s" if spread_seconds else "started at once"
    print(
        f"with {min(open_counts)} to {max(open_counts)} of {count} long polls open, {start} "
        f"(median {statistics.median(open_counts):.0f}; {polls} polls sent in all):"
    )
    for name, timings in results.items():
        print(f"  {name:24s} {_percentiles(timings)}")
    if pickups:
        print(f"  {'job pickup':24s} {_percentiles(pickups)}")
    errors = shared.errors.value
    print(f"  poll errors: {errors}" + (f" (first: {first_errors})" if errors else ""))
    healthz_p99 = _p99(results["/healthz"])
    console_p99 = max(_p99(t) for name, t in results.items() if name != "/healthz")
    print(
        f"goals: /healthz p99 < 100 ms: {'met' if healthz_p99 < 0.1 else 'NOT met'}; "
        f"console p99 < 100 ms: {'met' if console_p99 < 0.1 else 'NOT met'}; "
        f"pickup median < 1 s: "
        f"{'met' if pickups and statistics.median(pickups) < 1 else 'NOT met'}"
    )


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=2000)
    parser.add_argument(
        "--samples", type=int, default=300, help="rounds of requests to the measured pages"
    )
    parser.add_argument("--jobs", type=int, default=100, help="jobs whose pickup is timed")
    parser.add_argument(
        "--spread",
        type=float,
        default=POLL_WAIT_SECONDS,
        help="agents start polling at random within this many seconds (default: one wait, "
        "a fleet already running); 0 starts them all at once (a herd, as after a restart)",
    )
    parser.add_argument(
        "--postgres", metavar="URL", help="run on this PostgreSQL database (dropped first)"
    )
    args = parser.parse_args()
    if args.postgres:
        recreate_database(args.postgres)
    with tempfile.TemporaryDirectory(prefix="certyard-long-poll-") as tmp:
        platform = Platform(Path(tmp), args.postgres)
        try:
            _django_setup(platform)
            measure(platform, args.count, args.samples, args.jobs, args.spread)
        finally:
            platform.stop()
            kept = Path(tempfile.gettempdir()) / "certyard-long-poll-platform.log"
            kept.write_bytes((Path(tmp) / "platform.log").read_bytes())
            print(f"platform log: {kept}")


if __name__ == "__main__":
    main()
