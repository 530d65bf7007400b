"""Benchmark: inventory ingestion at scale (parse once, bulk upsert, one transaction).

Builds N distinct certificates (one key, many serials: signing is the slow part of
making them, not of ingesting them), then times on a fresh database:

1. the first report of a store holding all N (every certificate new, parsed once);
2. the same report again (nothing new: no certificate is parsed);
3. a report with 1% of the entries gone and 1% replaced.

Run: .venv/bin/python benchmarks/inventory_ingest.py [N]   (default 100000)
Uses a throwaway SQLite database (or DATABASE_URL, if set, on a database it may wipe).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]


def _certificates(count: int) -> list[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    pems = []
    for index in range(count):
        name = f"host{index}.bench.test"
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(index + 1)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1 + index % 400))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        pems.append(certificate.public_bytes(serialization.Encoding.PEM).decode())
    return pems


def _time_certificate_list(count: int) -> None:
    """The console's certificate list: one page (51 rows) per filter, median of 5 runs."""
    import statistics

    from certyard.inventory.selectors import CertificateFilters, certificate_list

    cases = {
        "no filter, first page": CertificateFilters(),
        "search a rare CN": CertificateFilters(search=f"host{count - 7}.bench.test"),
        "search a common word": CertificateFilters(search="bench"),
        "search a SHA-256 prefix": CertificateFilters(search="ab12"),
        "expiring within 30 days": CertificateFilters(expires_within_days=30),
        "search with no match": CertificateFilters(search="no-such-name.example"),
    }
    for label, filters in cases.items():
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            rows = list(certificate_list(filters=filters)[:51])
            runs.append(time.perf_counter() - started)
        print(f"list: {label:<28} {statistics.median(runs) * 1000:8.1f} ms  ({len(rows)} rows)")
    started = time.perf_counter()
    rows = list(certificate_list(filters=CertificateFilters())[count // 2 : count // 2 + 51])
    print(
        f"list: {'page ' + str(count // 100) + ' (deep offset)':<28} "
        f"{(time.perf_counter() - started) * 1000:8.1f} ms  ({len(rows)} rows)"
    )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    workdir = tempfile.mkdtemp(prefix="certyard-bench-")
    os.environ.setdefault("CERTYARD_DATA_DIR", workdir)
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir}/bench.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "certyard.settings"

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from certyard.fleet.models import Orchestrator
    from certyard.inventory.ingest import inventory_submit
    from certyard.inventory.models import Certificate, CertificateLocation, CertificateStoreType
    from certyard.inventory.services import store_create

    started = time.perf_counter()
    pems = _certificates(count + count // 100)
    print(f"made {len(pems)} certificates in {time.perf_counter() - started:.1f} s (not measured)")
    orchestrator = Orchestrator.objects.create(
        name="bench",
        client_machine="bench",
        capabilities=["PEM.Inventory"],
        status=Orchestrator.Status.APPROVED,
    )
    store = store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        client_machine="bench",
        store_path="/bench",
        orchestrator=orchestrator,
    )
    entries = [
        {"alias": f"cert-{i}.pem", "private_key": False, "certificates": [pems[i]]}
        for i in range(count)
    ]

    def timed(label: str, report: list[dict]) -> None:
        started = time.perf_counter()
        outcome = inventory_submit(store=store, entries=report)
        seconds = time.perf_counter() - started
        print(
            f"{label:<34} {len(report):>8} entries  {seconds:7.2f} s  "
            f"{len(report) / seconds:>9,.0f} entries/s  "
            f"(added {outcome.added_count}, changed {outcome.changed_count}, "
            f"removed {outcome.removed_count}, unchanged {outcome.unchanged})"
        )

    timed("first inventory (all new)", entries)
    timed("re-inventory (no change)", entries)
    changed = entries[count // 100 :]
    for offset, entry in enumerate(changed[: count // 100]):
        entry["certificates"] = [pems[count + offset]]
    timed("re-inventory (1% gone, 1% changed)", changed)
    _time_certificate_list(count)
    print(
        f"database: {Certificate.objects.count()} certificates, "
        f"{CertificateLocation.objects.count()} locations "
        f"({os.environ['DATABASE_URL'].split(':')[0]})"
    )


if __name__ == "__main__":
    main()
