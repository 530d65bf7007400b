"""Benchmark: a metadata backfill with both built-in generators, in-process.

Inserts N certificates as rows (realistic and varied: owners in the subject, hosts in
several environments, RSA / EC / Ed25519 keys of several sizes, SHA-1 to SHA-384
signatures, validities from 90 days to 3 years; no DER, which no generator reads),
defines the seven metadata fields the built-ins fill, registers "certyard.certificate_fields"
and "certyard.crypto_strength", then runs the backfill exactly as its task does (the real
service, batches of 2,000, values, run records and events written) and prints
certificates per second. Then it runs a second backfill over the same inventory (every
value already there: nothing is written again).

Run: .venv/bin/python benchmarks/metadata_backfill.py [N] [--postgres URL] [--no-sqlite]
(default N = 100000; SQLite in a throwaway folder; --postgres names a database it drops
and creates again). Goal: at least 5,000 certificates per second on SQLite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

# The fields the two built-in generators fill, with the types they need.
FIELDS = (
    ("owner", "string", []),
    ("environment", "choice", ["production", "staging", "development", "test", "corporate"]),
    ("key_strength", "string", []),
    ("signature_hash", "string", []),
    ("validity_days", "integer", []),
    ("strength", "choice", ["weak", "acceptable", "strong"]),
    ("quantum_vulnerable", "boolean", []),
)
ENVIRONMENT_RULES = [
    "*.prod.example.com=production",
    "*.staging.example.com=staging",
    "*.dev.example.com=development",
    "*.test.example.com=test",
    "*.corp.example.net=corporate",
]
_UNITS = ("Payments", "Platform", "Identity", "Data", "Web", "Mobile", "Security", "Finance")
_ZONES = ("prod.example.com", "staging.example.com", "dev.example.com", "test.example.com")
_SERVICES = ("api", "www", "auth", "db", "mq", "cache", "grafana", "vault", "git", "mail")
# (key algorithm, key size, signature algorithm), weighted by how often each appears.
_KEYS = (
    *[("RSA", 2048, "sha256WithRSAEncryption")] * 36,
    *[("RSA", 3072, "sha384WithRSAEncryption")] * 8,
    *[("RSA", 4096, "sha256WithRSAEncryption")] * 8,
    *[("RSA", 1024, "sha1WithRSAEncryption")] * 3,
    *[("RSA", 2048, "sha1WithRSAEncryption")] * 3,
    *[("EC", 256, "ecdsa-with-SHA256")] * 26,
    *[("EC", 384, "ecdsa-with-SHA384")] * 10,
    *[("Ed25519", None, "ed25519")] * 4,
    *[("RSA", 2048, "1.2.840.113549.1.1.10")] * 2,  # RSASSA-PSS: its hash is not kept
)
_VALIDITY_DAYS = (90, 90, 365, 397, 397, 398, 730, 825, 1095)


def synthetic_certificates_insert(count: int, *, seed: str = "bench") -> int:
    """Insert ``count`` certificate rows, varied as an inventory is; the number inserted.

    Plain multi-row inserts (``executemany``), as the inventory's own bulk path does:
    building model instances would cost more than the benchmark measures.
    """
    from django.db import connection, transaction

    from certyard.inventory.ingest import _CERTIFICATE_COLUMNS
    from certyard.inventory.models import Certificate

    ops = connection.ops
    json_field = Certificate._meta.get_field("sans")
    now = dt.datetime.now(dt.UTC)
    # The same columns, in the same order, as the inventory's own bulk insert.
    columns = _CERTIFICATE_COLUMNS
    table = ops.quote_name(Certificate._meta.db_table)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - names only
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    empty_list = json_field.get_db_prep_save([], connection)
    first_seen = ops.adapt_datetimefield_value(now)
    rows = []
    for index in range(count):
        digest = hashlib.sha256(f"{seed}-{index}".encode()).hexdigest()
        unit = _UNITS[index % len(_UNITS)]
        service = _SERVICES[index // 7 % len(_SERVICES)]
        if index % 11 == 0:
            host = f"{service}{index}.corp.example.net"
        elif index % 13 == 0:
            host = f"{service}{index}.partner.example.org"  # matches no environment rule
        else:
            host = f"{service}{index}.{_ZONES[index % len(_ZONES)]}"
        if index % 10 == 0:
            subject = f"CN={host},O=Example Corp,C=DE"  # no OU: no owner
        elif index % 17 == 0:
            subject = f"CN={host},OU={unit},OU=IT,O=Example Corp\\, Inc.,C=US"
        else:
            subject = f"CN={host},OU={unit},O=Example Corp,L=Berlin,C=DE"
        sans = [f"DNS:{host}", f"DNS:www.{host}"] if index % 3 else [f"DNS:{host}"]
        if index % 29 == 0:
            sans.append(f"IP:10.{index % 250}.{index // 250 % 250}.1")
        algorithm, size, signature = _KEYS[index % len(_KEYS)]
        days = _VALIDITY_DAYS[index % len(_VALIDITY_DAYS)]
        not_before = now - dt.timedelta(days=index % 1000, seconds=index % 86400)
        is_ca = index % 100 == 0
        rows.append(
            (
                b"",
                digest,
                digest[:40],
                format(index * 7919 + 1, "x"),
                "CN=Example Issuing CA 1,O=Example Corp,C=DE",
                subject,
                host,
                json_field.get_db_prep_save(sans, connection),
                " ".join(sans),
                ops.adapt_datetimefield_value(not_before),
                ops.adapt_datetimefield_value(not_before + dt.timedelta(days=days)),
                3,
                algorithm,
                size,
                signature,
                is_ca,
                is_ca and index % 200 == 0,
                empty_list,
                True,
                first_seen,
            )
        )
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, len(rows), 5_000):
            cursor.executemany(sql, rows[start : start + 5_000])
    return count


def fields_and_generators_define() -> list[object]:
    """The seven fields and the two built-in generators, registered as an admin would."""
    from certyard.inventory.metadata import metadata_field_create
    from certyard.inventory.models import MetadataField
    from certyard.workflows.models import HandlerRegistration
    from certyard.workflows.services import registration_save

    for name, kind, choices in FIELDS:
        if not MetadataField.objects.filter(name=name).exists():
            metadata_field_create(name=name, type=kind, choices=choices)
    registrations = []
    for order, (name, handler, values) in enumerate(
        (
            (
                "Owner and environment",
                "certyard.certificate_fields",
                {"environment_rules": ENVIRONMENT_RULES},
            ),
            ("Crypto strength", "certyard.crypto_strength", {}),
        )
    ):
        registration = HandlerRegistration.objects.filter(name=name).first()
        if registration is None:
            registration = registration_save(
                registration=HandlerRegistration(
                    name=name, handler=handler, order=10 * (order + 1), timeout_seconds=120
                ),
                values=values,
            )
        registrations.append(registration)
    return registrations


def _run_on(count: int, database_url: str) -> dict[str, float]:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "certyard.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from certyard.inventory.metadata.generators import (
        metadata_backfill_run,
        metadata_backfill_start,
    )
    from certyard.inventory.models import CertificateMetadata, MetadataBackfill
    from certyard.workflows.models import HandlerRun

    started = time.perf_counter()
    synthetic_certificates_insert(count)
    print(
        f"[{connection.vendor}] inserted {count:,} certificates in "
        f"{time.perf_counter() - started:.1f} s (not measured)",
        flush=True,
    )
    fields_and_generators_define()
    figures: dict[str, float] = {}
    for label in ("backfill", "backfill again (values unchanged)"):
        backfill = metadata_backfill_start(actor=None)
        started = time.perf_counter()
        metadata_backfill_run(backfill.pk, time_budget=None)
        seconds = time.perf_counter() - started
        backfill = MetadataBackfill.objects.get(pk=backfill.pk)
        assert backfill.state == MetadataBackfill.State.SUCCEEDED, (backfill.state, backfill.error)
        assert backfill.processed == backfill.total == count, (backfill.processed, count)
        runs = HandlerRun.objects.filter(inputs__backfill=backfill.pk).count()
        rate = count / seconds
        figures[label] = rate
        print(
            f"[{connection.vendor}] {label + ':':<38} {seconds:6.1f} s  {rate:8,.0f} certificates/s"
            f"  ({backfill.values_set:,} values written, {backfill.error_count:,} errors, "
            f"{runs} run records)",
            flush=True,
        )
    values = CertificateMetadata.objects.count()
    print(f"[{connection.vendor}] {values:,} values stored ({values / count:.2f} per certificate)")
    _time_filters(connection.vendor)
    return figures


def _time_filters(vendor: str) -> None:
    """The certificate list's first page (51 rows) filtered by metadata, median of 5."""
    import statistics

    from certyard.inventory.metadata.selectors import metadata_filter_resolve
    from certyard.inventory.selectors import CertificateFilters, certificate_list

    cases = {
        "owner = Payments": ("owner", "Payments", False),
        "strength = weak": ("strength", "weak", False),
        "environment has no value": ("environment", None, True),
        "owner = nobody (no match)": ("owner", "nobody", False),
    }
    for label, (name, value, empty) in cases.items():
        chosen = metadata_filter_resolve(field_name=name, value=value, empty=empty)
        filters = CertificateFilters(
            metadata_field_id=chosen.field.pk, metadata_value=chosen.value, metadata_empty=empty
        )
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            rows = list(certificate_list(filters=filters)[:51])
            runs.append(time.perf_counter() - started)
        print(
            f"[{vendor}] list filtered by {label:<27} "
            f"{statistics.median(runs) * 1000:7.1f} ms ({len(rows)} rows)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=100_000)
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL database")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--run-on", metavar="URL", help=argparse.SUPPRESS)  # one database
    args = parser.parse_args()
    if args.run_on:
        print(json.dumps(_run_on(args.count, args.run_on)))
        return
    # Django is set up once per process: each database gets a process of its own.
    targets = []
    workdir = tempfile.mkdtemp(prefix="certyard-bench-metadata-")
    os.environ.setdefault("CERTYARD_DATA_DIR", workdir)
    if not args.no_sqlite:
        targets.append(f"sqlite:///{workdir}/bench.sqlite3")
    if args.postgres:
        from benchmarks._live import recreate_database

        recreate_database(args.postgres)
        targets.append(args.postgres)
    for url in targets:
        subprocess.run(
            [sys.executable, __file__, str(args.count), "--run-on", url], check=True, cwd=ROOT
        )


if __name__ == "__main__":
    main()
