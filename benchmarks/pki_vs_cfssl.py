"""Benchmark: issuing over HTTP, Certyard's enrollment API side by side with CFSSL's sign API.

In one run, on the same machine, with the same N EC P-256 CSRs (one key each, made once
with ``cryptography``, not timed) and the same client (``http.client``, keep-alive:
benchmarks/_http.py):

1. **CFSSL**: ``cfssl serve`` (Debian's golang-cfssl, started by the gateway tests' helper,
   tests/servers/cfssl.py) with an EC P-256 CA made by ``cfssl gencert -initca``, a 90-day
   TLS-server profile, on a free loopback port; ``POST /api/v1/cfssl/sign`` with each CSR.
   Measured twice: without a certificate database (the reference for the goals: the
   issue's "CFSSL's sign API") and with one (``-db-config``, SQLite: CFSSL records every
   certificate it signs, as Certyard does), then stopped;
2. **Certyard**: a real platform started as `make run` starts it (``certyard_run``: the
   ASGI server with two web workers, the django-q2 cluster; a fresh data directory;
   SQLite, or a throwaway PostgreSQL database with ``--database``), a built-in EC P-256
   CA, a template that issues without approval, the bootstrap admin's API token;
   ``POST /api/v1/enrollments/`` with one CSR per request, each with its own
   ``Idempotency-Key`` as the README tells clients to send (``--no-idempotency-key``:
   none), and ``POST /api/v1/enrollments/batch/`` in batches of 250 as a third line.

Each is measured one request after another from one client, then from 8 concurrent
clients (threads, one keep-alive connection each), after a few warm-up requests that are
not counted. Every answer is checked: a certificate (CFSSL: ``success``; Certyard: 201 and
state ``issued``) whose public key is the CSR's; anything else is a failure, counted and
printed, never in the rate. It prints certificates per second, p50/p95 latency (per
request; per call for the batch line), and the ratios Certyard / CFSSL beside the goals of
issue 22 (>= 0.25 x one by one, >= 0.4 x with 8 clients).

``--profile``: then, on the same data directory and database (the platform stopped), N
more enrollments in this process through Django's test client (the whole request: URL
routing, middleware, DRF authentication, the view, the service, the serializer; the
connection kept from one to the next as the server's request threads keep it; no socket,
no ASGI server): timed bare, then the SQL of each counted with ``CaptureQueriesContext``
(statements per enrollment by kind and table), then under cProfile: the time per
enrollment by area (authentication, request parsing, idempotency, template, CSR parsing and
policy, signing, the CA's issued record, the inventory, events, commits, the answer's
serialization, SQL on the wire, connections) and the top functions by cumulative and own
time.

Run: .venv/bin/python benchmarks/pki_vs_cfssl.py [N] [--clients 8] [--batch 250]
       [--database postgres://USER@HOST:PORT/ANY]  (a throwaway database is created on
       that server and dropped at the end; the URL's own database is never touched)
       [--no-idempotency-key] [--profile] [--top 25]
(default N = 300, as in the issue).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _http import Client, HTTPError
from _live import MANAGE, ROOT, Platform, recreate_database
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

# The gateway tests' CFSSL, started the same way (tests/servers/cfssl.py).
from tests.servers.cfssl import cfssl_server  # noqa: E402

DOMAIN = "bench.example.test"
TEMPLATE = "bench-vs-cfssl"
WARMUP = 8
GOAL_SEQUENTIAL = 0.25
GOAL_CONCURRENT = 0.4

TEMPLATE_SETUP = """
import json
from certyard.enrollment.models import Template
Template.objects.create(name={name!r}, ca_id={ca_id}, allowed_domains=[{domain!r}],
    allowed_key_types=["EC-P256"], validity_days=90, require_approval=False)
print(json.dumps({{"template": {name!r}}}))
"""


# --- The CSRs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Csr:
    pem: str
    spki: bytes  # the key's SubjectPublicKeyInfo, DER: what the certificate must carry


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def csrs_make(count: int) -> list[Csr]:
    made = []
    for index in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"host{index}.{DOMAIN}"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        made.append(
            Csr(csr.public_bytes(serialization.Encoding.PEM).decode(), _spki(key.public_key()))
        )
    return made


def certificate_problem(pem: object, csr: Csr) -> str:
    """Empty when ``pem`` is one certificate for ``csr``'s key; else what is wrong."""
    if not isinstance(pem, str) or "BEGIN CERTIFICATE" not in pem:
        return f"no certificate in the answer: {str(pem)[:80]!r}"
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        return f"unreadable certificate: {exc}"
    if _spki(certificate.public_key()) != csr.spki:
        return "a certificate for another key"
    return ""


# --- Measuring ---------------------------------------------------------------------------

# send(client, csrs) -> failures among those CSRs (each: why), raising nothing
Send = Callable[[Client, list[Csr]], list[str]]


@dataclass
class Line:
    label: str
    certificates: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # per call, seconds

    @property
    def issued(self) -> int:
        return self.certificates - len(self.failures)

    @property
    def rate(self) -> float:
        return self.issued / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _call(send: Send, client: Client, chunk: list[Csr], line: Line) -> None:
    started = time.perf_counter()
    try:
        failures = send(client, chunk)
    except HTTPError as exc:
        failures = [f"{type(exc).__name__}: {exc}"] * len(chunk)
    line.latencies.append(time.perf_counter() - started)
    line.certificates += len(chunk)
    line.failures += failures


def measure(
    label: str,
    make_client: Callable[[], Client],
    send: Send,
    csrs: list[Csr],
    *,
    clients: int = 1,
    per_call: int = 1,
) -> Line:
    """Send ``csrs`` (``per_call`` a call) from ``clients`` threads, one keep-alive client
    each; each thread first sends warm-up calls that are not counted."""
    chunks = [csrs[i : i + per_call] for i in range(0, len(csrs), per_call)]
    line = Line(label)
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    next_chunk = iter(chunks)

    def worker() -> None:
        own = Line(label)
        with make_client() as client:
            warm = Line(label)
            for index in range(max(1, WARMUP // clients)):
                _call(send, client, csrs[index % len(csrs) : index % len(csrs) + 1], warm)
            ready.wait()
            while True:
                with lock:
                    chunk = next(next_chunk, None)
                if chunk is None:
                    break
                _call(send, client, chunk, own)
        with lock:
            line.certificates += own.certificates
            line.failures += own.failures
            line.latencies += own.latencies

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    line.seconds = time.perf_counter() - started
    return line


# --- CFSSL -------------------------------------------------------------------------------


# The signing profile the Certyard template matches: TLS server, 90 days.
CFSSL_CONFIG = {
    "signing": {
        "default": {"expiry": "2160h", "usages": ["digital signature", "server auth"]},
    }
}


def cfssl_send(client: Client, chunk: list[Csr]) -> list[str]:
    (csr,) = chunk
    answer = client.post("/api/v1/cfssl/sign", json={"certificate_request": csr.pem})
    if answer.status_code != 200:
        return [f"HTTP {answer.status_code}: {answer.text[:200]}"]
    body = answer.json()
    if not body.get("success"):
        return [f"refused: {body.get('errors')}"]
    problem = certificate_problem(body["result"].get("certificate"), csr)
    return [problem] if problem else []


def cfssl_lines(csrs: list[Csr], base: Path, clients: int) -> list[Line]:
    lines = []
    for certdb, name in ((False, "CFSSL"), (True, "CFSSL +certdb")):
        directory = base / name.replace(" +", "-")
        with cfssl_server(directory, certdb=certdb, config=CFSSL_CONFIG, quiet=True) as server:

            def make_client(url: str = server.url) -> Client:
                return Client(url, timeout=60)

            lines.append(measure(f"{name} 1 by 1", make_client, cfssl_send, csrs))
            lines.append(
                measure(f"{name} x{clients}", make_client, cfssl_send, csrs, clients=clients)
            )
    return lines


# --- Certyard ----------------------------------------------------------------------------


def expect(answer: httpx.Response, *codes: int) -> dict:
    if answer.status_code not in codes:
        raise SystemExit(f"{answer.request.method} {answer.request.url}: {answer.text[:2000]}")
    return answer.json()


def certyard_setup(platform: Platform) -> None:
    """A built-in EC P-256 root CA (the API) and a template that issues at once (the
    template API is read-only: made in `manage.py shell`, as deploy.py does)."""
    ca = expect(
        platform.api.post("cas/", json={"name": "Bench EC P-256", "key_algorithm": "EC-P256"}),
        201,
    )
    subprocess.run(
        [
            *MANAGE,
            "shell",
            "-c",
            TEMPLATE_SETUP.format(name=TEMPLATE, ca_id=ca["id"], domain=DOMAIN),
        ],
        cwd=ROOT,
        env=platform.env,
        check=True,
        capture_output=True,
        timeout=300,
    )


def enrollment_problem(status: int, body: object, csr: Csr) -> str:
    if status != 201:
        return f"HTTP {status}: {str(body)[:200]}"
    if not isinstance(body, dict) or body.get("state") != "issued":
        state = body.get("state") if isinstance(body, dict) else body
        return f"state {state!r}: {body.get('failure_reason') if isinstance(body, dict) else ''}"
    return certificate_problem(body.get("certificate_pem"), csr)


def certyard_send(idempotency_key: bool) -> Send:
    def send(client: Client, chunk: list[Csr]) -> list[str]:
        (csr,) = chunk
        headers = {"Idempotency-Key": str(uuid.uuid4())} if idempotency_key else {}
        answer = client.post(
            "enrollments/", json={"template": TEMPLATE, "csr": csr.pem}, headers=headers
        )
        try:
            body = answer.json()
        except ValueError:
            body = answer.text
        problem = enrollment_problem(answer.status_code, body, csr)
        return [problem] if problem else []

    return send


def certyard_batch_send(client: Client, chunk: list[Csr]) -> list[str]:
    answer = client.post(
        "enrollments/batch/", json={"template": TEMPLATE, "csrs": [c.pem for c in chunk]}
    )
    if answer.status_code != 201:
        return [f"HTTP {answer.status_code}: {answer.text[:200]}"] * len(chunk)
    results = answer.json()["results"]
    if len(results) != len(chunk):
        return [f"{len(results)} results for {len(chunk)} CSRs"] * len(chunk)
    # The results come in the order of the CSRs; each is checked against its own.
    return [
        p for r, csr in zip(results, chunk, strict=True) if (p := enrollment_problem(201, r, csr))
    ]


def certyard_lines(
    platform: Platform, csrs: list[Csr], clients: int, batch: int, idempotency_key: bool
) -> list[Line]:
    def make_client() -> Client:
        return Client(
            f"{platform.url}/api/v1/",
            headers={"Authorization": f"Token {platform.token}"},
            timeout=120,
        )

    send = certyard_send(idempotency_key)
    lines = [measure("Certyard 1 by 1", make_client, send, csrs)]
    lines.append(measure(f"Certyard x{clients}", make_client, send, csrs, clients=clients))
    if batch:
        lines.append(
            measure(
                f"Certyard batch/{batch}", make_client, certyard_batch_send, csrs, per_call=batch
            )
        )
    return lines


# --- The database ------------------------------------------------------------------------


def throwaway_postgres(url: str) -> str:
    """The URL of a new, empty database on the server ``url`` names (never that database)."""
    name = f"certyard_bench_vs_cfssl_{os.getpid()}"
    server = url.rsplit("/", 1)[0] if url.count("/") >= 3 else url.rstrip("/")
    throwaway = f"{server}/{name}"
    recreate_database(throwaway)
    return throwaway


def postgres_drop(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    assert name.startswith("certyard_bench_vs_cfssl_"), name  # never another database
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- The table ---------------------------------------------------------------------------


def table(lines: list[Line], clients: int) -> None:
    print(
        f"{'':<22} {'certs':>6} {'failed':>6} {'cert/s':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'seconds':>8}"
    )
    for line in lines:
        print(
            f"{line.label:<22} {line.certificates:>6} {len(line.failures):>6} "
            f"{line.rate:>9,.1f} {line.percentile(0.5) * 1000:>8.2f} "
            f"{line.percentile(0.95) * 1000:>8.2f} {line.seconds:>8.2f}"
        )
    for line in lines:
        if line.failures:
            print(f"  {line.label}: {len(line.failures)} failed, e.g.:")
            for reason, count in Counter(line.failures).most_common(3):
                print(f"    {count} x {reason}")
    by_label = {line.label: line for line in lines}

    def ratio(ours: str, theirs: str, goal: float | None) -> None:
        if ours not in by_label or theirs not in by_label or not by_label[theirs].rate:
            return
        value = by_label[ours].rate / by_label[theirs].rate
        verdict = f"goal >= {goal:.2f}x: {'met' if value >= goal else 'MISSED'}" if goal else ""
        print(f"  {ours:<22} / {theirs:<22} {value:>7.3f}x  {verdict}")

    print("ratios (certificates/s):")
    ratio("Certyard 1 by 1", "CFSSL 1 by 1", GOAL_SEQUENTIAL)
    ratio(f"Certyard x{clients}", f"CFSSL x{clients}", GOAL_CONCURRENT)
    ratio("Certyard 1 by 1", "CFSSL +certdb 1 by 1", None)
    ratio(f"Certyard x{clients}", f"CFSSL +certdb x{clients}", None)
    for line in lines:
        if line.label.startswith("Certyard batch"):
            ratio(line.label, "CFSSL 1 by 1", None)


# --- The profile -------------------------------------------------------------------------

# (area, file path ending, function name): the cumulative time of each, per enrollment.
# Indented areas are inside the one above them; areas are not disjoint (SQL runs inside
# most of them): read each as "what this step costs, everything it calls included".
AREAS: list[tuple[str, str, str]] = [
    ("whole request (Django handler)", "django/core/handlers/base.py", "get_response"),
    ("  DRF authentication (token)", "rest_framework/request.py", "_authenticate"),
    ("  request body parse (JSON)", "rest_framework/request.py", "_load_data_and_files"),
    ("  input serializer is_valid", "rest_framework/serializers.py", "is_valid"),
    ("  service enrollment_submit_csr", "enrollment/services/submit.py", "enrollment_submit_csr"),
    ("    idempotency: look-up", "enrollment/services/submit.py", "_replayed"),
    ("    template look-up", "enrollment/services/submit.py", "_template_find"),
    ("    CSR parse + policy (_checked)", "enrollment/services/submit.py", "_checked"),
    ("      csr_parse (load + signature)", "enrollment/policy.py", "csr_parse"),
    ("      request_check (name policy)", "enrollment/policy.py", "request_check"),
    ("    issue: _issue_builtin (1 txn)", "enrollment/services/issuing.py", "_issue_builtin"),
    ("      pki certificates_issue", "pki/services.py", "certificates_issue"),
    ("        crypto.certificate_build", "pki/crypto.py", "certificate_build"),
    ("        ca_material (cached key)", "pki/material.py", "ca_material"),
    ("      _issued_record (inventory..)", "enrollment/services/issuing.py", "_issued_record"),
    ("        inventory certificates_record", "inventory/ingest.py", "certificates_record"),
    ("        certificate.issued event", "enrollment/services/recording.py", "_certificate_event"),
    ("          events_emit", "workflows/services.py", "events_emit"),
    ("    issued hooks (on commit)", "enrollment/services/issuing.py", "issued_notify"),
    ("  request as saved (selector)", "enrollment/selectors.py", "enrollment_as_saved"),
    ("  output serializer .data", "rest_framework/serializers.py", "data"),
    ("SQL compile+run (execute_sql)", "django/db/models/sql/compiler.py", "execute_sql"),
    ("SQL on the wire (cursor)", "django/db/backends/utils.py", "_execute"),
    ("SQL on the wire (executemany)", "django/db/backends/utils.py", "_executemany"),
    ("commit", "django/db/backends/base/base.py", "commit"),
    ("connect (new connection)", "django/db/backends/base/base.py", "connect"),
    ("close connection", "django/db/backends/base/base.py", "close"),
    ("transaction.atomic enter", "django/db/transaction.py", "__enter__"),
    ("transaction.atomic exit", "django/db/transaction.py", "__exit__"),
]


def _area_rows(stats: pstats.Stats, count: int) -> list[tuple[str, float, float]]:
    """(area, ms per enrollment, calls per enrollment). Where a matching function calls
    another (``super().data``, an update compiler calling the base one), the inner call is
    counted once, in the outer one."""
    raw = stats.stats  # type: ignore[attr-defined]
    rows = []
    for label, path, name in AREAS:
        keys = {key for key in raw if key[2] == name and key[0].replace("\\", "/").endswith(path)}
        cumulative = calls = 0.0
        for key in keys:
            _cc, _nc, _tt, _ct, callers = raw[key]
            for caller, (_ccc, nc, _tt2, ct) in callers.items():
                if caller not in keys:
                    cumulative += ct
                    calls += nc
        rows.append((label, cumulative * 1000 / count, calls / count))
    return rows


def _rust_seconds(stats: pstats.Stats) -> float:
    """Own time of cryptography's compiled (Rust) functions and methods."""
    total = 0.0
    for (filename, _line, function), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if filename == "~" and ("cryptography" in function or "_rust" in function):
            total += tt
    return total


STATEMENT = re.compile(
    r'^\s*(?P<verb>\w+)(?:.*?\b(?:FROM|INTO|UPDATE)\s+"?(?P<table>[\w.]+)"?)?', re.I | re.S
)


def _statement_kind(sql: str) -> str:
    found = STATEMENT.match(sql)
    if not found:
        return sql[:40]
    verb = found["verb"].upper()
    if verb == "UPDATE":
        table = sql.split()[1].strip('"')
        return f"UPDATE {table}"
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return verb
    return f"{verb} {found['table'] or ''}".strip()


def profile(
    platform: Platform, csrs: list[Csr], idempotency_key: bool, top: int, out: str | None
) -> None:
    """N enrollments in this process through Django's test client (the platform stopped,
    its data directory and database reused)."""
    os.environ.update(platform.env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "certyard.settings"
    import django

    django.setup()
    from django.db import close_old_connections, connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(SERVER_NAME="127.0.0.1", HTTP_AUTHORIZATION=f"Token {platform.token}")
    failures: list[str] = []

    def enroll(csr: Csr) -> None:
        headers = {"Idempotency-Key": str(uuid.uuid4())} if idempotency_key else {}
        answer = client.post(
            "/api/v1/enrollments/",
            data={"template": TEMPLATE, "csr": csr.pem},
            content_type="application/json",
            headers=headers,
        )
        try:
            body = answer.json()
        except ValueError:
            body = answer.content[:200]
        close_old_connections()  # what the server does after each request (kept: CONN_MAX_AGE)
        if problem := enrollment_problem(answer.status_code, body, csr):
            failures.append(problem)

    count = len(csrs)
    for csr in csrs[:WARMUP]:
        enroll(csr)
    started = time.perf_counter()
    for csr in csrs:
        enroll(csr)
    bare = time.perf_counter() - started

    kinds: Counter[str] = Counter()
    per_enrollment: list[int] = []
    counted = csrs[: min(count, 50)]
    for csr in counted:
        with CaptureQueriesContext(connection) as captured:
            enroll(csr)
        per_enrollment.append(len(captured.captured_queries))
        kinds.update(_statement_kind(q["sql"]) for q in captured.captured_queries)

    profiler = cProfile.Profile()
    profiler.enable()
    started = time.perf_counter()
    for csr in csrs:
        enroll(csr)
    profiled = time.perf_counter() - started
    profiler.disable()
    stats = pstats.Stats(profiler)
    if out:
        stats.dump_stats(out)

    print()
    print(
        f"--profile: {count} enrollments in process (Django test client, {connection.vendor}, "
        f"Idempotency-Key {'sent' if idempotency_key else 'not sent'}); "
        f"{len(failures)} failed"
    )
    for reason, times in Counter(failures).most_common(3):
        print(f"  {times} x {reason}")
    print(
        f"bare: {bare / count * 1000:.2f} ms per enrollment ({count / bare:,.1f}/s in one "
        f"thread); under cProfile: {profiled / count * 1000:.2f} ms"
    )
    print(
        f"SQL statements per enrollment (CaptureQueriesContext, {len(counted)} enrollments): "
        f"min {min(per_enrollment)}, median {statistics.median(per_enrollment):g}, "
        f"max {max(per_enrollment)}  (the connection's set-up is not logged)"
    )
    for kind, times in sorted(kinds.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {times / len(counted):>5.2f}  {kind}")

    print(
        "time per enrollment by area (cumulative, under cProfile; total "
        f"{profiled / count * 1000:.2f} ms; scale by bare / profiled for real time):"
    )
    print(f"  {'area':<40} {'ms':>7} {'%':>6} {'calls':>6}")
    for label, ms, calls in _area_rows(stats, count):
        share = ms / (profiled * 1000 / count) * 100
        print(f"  {label:<40} {ms:>7.3f} {share:>5.1f}% {calls:>6.2f}")
    rust = _rust_seconds(stats)
    print(
        f"  {'cryptography compiled code (own time)':<40} {rust * 1000 / count:>7.3f} "
        f"{rust / profiled * 100:>5.1f}%"
    )

    handler = max(ms for label, ms, _calls in _area_rows(stats, count)[:1]) / 1000 * count

    def listing(sort: str, title: str) -> None:
        print(f"top {top} functions by {title} (ms per enrollment; calls per enrollment)")
        entries = sorted(
            stats.stats.items(),  # type: ignore[attr-defined]
            key=lambda item: item[1][3 if sort == "cumulative" else 2],
            reverse=True,
        )
        shown = 0
        for (filename, line, function), (_cc, nc, tt, ct, _callers) in entries:
            if function in ("enroll", "post", "generic", "request", "_base_environ") or (
                "django/test/" in filename
            ):
                continue
            if sort == "cumulative" and ct > 0.9 * handler and function != "get_response":
                continue  # the middleware chain around the whole request
            where = filename
            for marker in ("site-packages/", "/platform/", str(ROOT) + "/"):
                if marker in where:
                    where = where.split(marker, 1)[1]
            value = ct if sort == "cumulative" else tt
            print(f"  {value * 1000 / count:>8.3f}  {nc / count:>7.2f}  {where}:{line}({function})")
            shown += 1
            if shown >= top:
                break

    listing("cumulative", "cumulative time, the middleware chain around the view left out")
    listing("own", "own time")


# --- Main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=300, help="CSRs (default 300)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--batch", type=int, default=250, help="CSRs per batch call; 0: none")
    parser.add_argument(
        "--database",
        "--postgres",
        dest="database",
        metavar="URL",
        help="a PostgreSQL server (postgres://user@host:port/any): the platform runs on a "
        "throwaway database created there and dropped at the end",
    )
    parser.add_argument(
        "--idempotency-key",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send an Idempotency-Key with each enrollment (default: yes, as the README says)",
    )
    parser.add_argument("--profile", action="store_true", help="then profile N enrollments")
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    parser.add_argument("--profile-out", metavar="FILE", help="--profile: also dump the pstats")
    args = parser.parse_args()
    if shutil.which("cfssl") is None:
        raise SystemExit("cfssl is not installed: run `make system-deps` (golang-cfssl)")

    started = time.perf_counter()
    csrs = csrs_make(args.count)
    print(
        f"{args.count} EC P-256 CSRs (one key each, made in "
        f"{time.perf_counter() - started:.1f} s); "
        f"CA keys EC P-256; {os.cpu_count()} CPUs; 1 client and {args.clients} concurrent "
        "clients (http.client, keep-alive)",
        flush=True,
    )
    base = Path(tempfile.mkdtemp(prefix="certyard-bench-vs-cfssl-"))
    database = throwaway_postgres(args.database) if args.database else None
    platform = None
    try:
        lines = cfssl_lines(csrs, base / "cfssl", args.clients)
        platform = Platform(base / "platform", database)
        certyard_setup(platform)
        print(
            f"Certyard: certyard_run (2 web workers, ASGI) on "
            f"{'PostgreSQL ' + database.rsplit('/', 1)[1] if database else 'SQLite'} in {base}; "
            f"Idempotency-Key {'sent' if args.idempotency_key else 'not sent'}",
            flush=True,
        )
        lines += certyard_lines(platform, csrs, args.clients, args.batch, args.idempotency_key)
        platform.stop()
        table(lines, args.clients)
        if args.profile:
            profile(platform, csrs, args.idempotency_key, args.top, args.profile_out)
    finally:
        if platform is not None and platform.process.poll() is None:
            platform.stop()
        if args.profile and "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if database:
            postgres_drop(database)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
