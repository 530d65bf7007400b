"""Benchmark: inventory end to end, through the real agent, HTTP, the platform and its database.

Builds a folder of N distinct certificate files with realistic chains (leaves with SANs,
RSA and EC keys, issued by a few shared intermediates under two roots; each file holds
the leaf and its intermediate), then, on a fresh platform started as `make run` starts it
(gunicorn + django-q2 cluster) and a real `certyard-orchestrator` process, times:

1. the first inventory of the folder (every certificate new);
2. an unchanged re-inventory;
3. an inventory after 1% of the files were removed and 1% replaced by new certificates;

and beside them, in the same run, a parse-only loop: read every file and parse its
certificates with `cryptography`, reading the fields the inventory keeps. It prints
certificates (entries) per second for each, the ratios to parse-only, and the peak RSS
of the agent and of the web processes.

Run: .venv/bin/python benchmarks/inventory_e2e.py [N] [--postgres URL]
      (default N=100000; the folder is cached in $TMPDIR between runs).
Goals (issue 5): first >= 0.5 x parse-only, unchanged >= 2 x parse-only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _live import ROOT, Platform, peak_rss_mb, recreate_database
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

AGENT = [sys.executable, "-m", "orchestrators.agent"]
NOW = dt.datetime.now(dt.UTC)


def _name(cn: str, org: str = "Bench Corp") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ca(name: x509.Name, key, issuer_name: x509.Name, issuer_key) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


class Issuers:
    """Two roots (RSA, EC), three intermediates: the chains leaves share."""

    def __init__(self) -> None:
        rsa_root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ec_root_key = ec.generate_private_key(ec.SECP384R1())
        rsa_root = _ca(_name("Bench RSA Root"), rsa_root_key, _name("Bench RSA Root"), rsa_root_key)
        ec_root = _ca(_name("Bench EC Root"), ec_root_key, _name("Bench EC Root"), ec_root_key)
        self.intermediates = []
        for label, root, root_key in (
            ("Bench EC Issuing 1", ec_root, ec_root_key),
            ("Bench EC Issuing 2", ec_root, ec_root_key),
            ("Bench RSA-signed EC Issuing", rsa_root, rsa_root_key),
        ):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _ca(_name(label), key, root.subject, root_key)
            self.intermediates.append((cert, key, cert.public_bytes(serialization.Encoding.PEM)))
        # Leaf keys: a pool, mixed RSA and EC (generating 100k RSA keys is not the point).
        self.leaf_keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048)] * 2
        self.leaf_keys += [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
        self.leaf_keys += [rsa.generate_private_key(public_exponent=65537, key_size=3072)]

    def leaf_file(self, index: int, tag: str = "") -> bytes:
        issuer, issuer_key, issuer_pem = self.intermediates[index % len(self.intermediates)]
        host = f"host{index}{tag}.{['web', 'db', 'api', 'mail'][index % 4]}.bench.test"
        key = self.leaf_keys[index % len(self.leaf_keys)]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(host, org=f"Bench Unit {index % 17}"))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=index % 300))
            .not_valid_after(NOW + dt.timedelta(days=1 + index % 400))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(host), x509.DNSName(f"alt{index}.bench.test")]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(issuer_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM) + issuer_pem


def build_folder(folder: Path, count: int, issuers: Issuers) -> None:
    marker = folder / ".complete"
    if marker.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    for index in range(count):
        (folder / f"cert{index:07d}.pem").write_bytes(issuers.leaf_file(index))
    marker.write_text("ok")
    print(f"built {count} files in {time.perf_counter() - started:.1f} s", flush=True)


def parse_only(folder: Path) -> tuple[int, float]:
    """Read each file and parse its certificates with cryptography, reading the kept fields."""
    started = time.perf_counter()
    count = 0
    for path in sorted(folder.glob("*.pem")):
        for cert in x509.load_pem_x509_certificates(path.read_bytes()):
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
            _ = cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc
            cert.public_key()
            with contextlib.suppress(x509.ExtensionNotFound):
                cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        count += 1
    return count, time.perf_counter() - started


def run_inventory(platform: Platform, store_id: str) -> tuple[float, dict]:
    started = time.perf_counter()
    job = platform.api.post(f"stores/{store_id}/inventory-now/").json()
    while True:
        detail = platform.api.get(f"jobs/{job['id']}/").json()
        if detail["state"] not in ("pending", "leased"):
            return time.perf_counter() - started, detail
        time.sleep(0.1)


def bench(
    count: int,
    folder: Path,
    issuers: Issuers,
    database_url: str | None,
    *,
    with_parse_only: bool = True,
) -> None:
    label = "PostgreSQL" if database_url else "SQLite"
    print(f"\n== {label}: {count} entries ==", flush=True)
    # The baseline at its best (warm file cache, two runs): the ratios are conservative.
    parse_rate = max(count / parse_only(folder)[1] for _ in range(2)) if with_parse_only else 0
    if parse_rate:
        print(f"parse-only (read + cryptography): {parse_rate:10,.0f} /s", flush=True)
    with tempfile.TemporaryDirectory(prefix="certyard-bench-") as tmp:
        platform = Platform(Path(tmp), database_url)
        agent_dir = Path(tmp) / "agent"
        agent_env = {k: v for k, v in platform.env.items() if not k.startswith("CERTYARD_")}
        token = platform.api.post(
            "registration-tokens/", json={"description": "bench", "approve_on_register": True}
        ).json()["token"]
        subprocess.run(
            [
                *AGENT,
                "register",
                "--url",
                platform.url,
                "--token",
                token,
                "--name",
                "bench",
                "--client-machine",
                "bench.local",
                "--store-root",
                str(folder),
                "--config-dir",
                str(agent_dir),
            ],
            cwd=ROOT,
            env=agent_env,
            check=True,
            capture_output=True,
        )
        agent = subprocess.Popen(
            [*AGENT, "run", "--config-dir", str(agent_dir), "--log-level", "WARNING"],
            cwd=ROOT,
            env=agent_env,
            stdout=(Path(tmp) / "agent.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            orchestrator = platform.api.get("orchestrators/").json()["results"][0]
            store = platform.api.post(
                "stores/",
                json={
                    "store_type": "PEM",
                    "client_machine": "bench.local",
                    "store_path": str(folder),
                    "orchestrator": orchestrator["id"],
                },
            ).json()
            figures = {}
            seconds, job = run_inventory(platform, store["id"])
            assert job["state"] == "succeeded", job
            assert job["result"]["inventory"]["added"] == count, job["result"]
            figures["first inventory"] = count / seconds
            seconds, job = run_inventory(platform, store["id"])
            assert job["result"]["inventory"]["unchanged"] == count, job["result"]
            figures["unchanged re-inventory"] = count / seconds
            step = 100
            removed = [folder / f"cert{i:07d}.pem" for i in range(0, count, step)]
            changed = [folder / f"cert{i:07d}.pem" for i in range(1, count, step)]
            saved = {path: path.read_bytes() for path in removed + changed}
            try:
                for path in removed:
                    path.unlink()
                for index, path in enumerate(changed):
                    path.write_bytes(issuers.leaf_file(index, tag="-renewed"))
                seconds, job = run_inventory(platform, store["id"])
                result = job["result"]["inventory"]
                assert (result["removed"], result["changed"]) == (len(removed), len(changed))
                figures["1% removed, 1% changed"] = (count - len(removed)) / seconds
            finally:
                for path, data in saved.items():
                    path.write_bytes(data)
            again = count / parse_only(folder)[1] if with_parse_only else 0
            if again > parse_rate:
                parse_rate = again
                print(f"parse-only, measured again after: {parse_rate:10,.0f} /s (used below)")
            for name, rate in figures.items():
                ratio = f"   ratio to parse-only {rate / parse_rate:5.2f}" if parse_rate else ""
                print(f"{name + ':':<26} {rate:10,.0f} /s{ratio}")
            print(
                f"peak RSS: agent {peak_rss_mb(agent.pid):.0f} MB, "
                f"web process {platform.web_peak_rss_mb():.0f} MB",
                flush=True,
            )
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=30)
            platform.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=100_000)
    parser.add_argument(
        "--postgres", help="also run on this PostgreSQL URL (a database it may wipe)"
    )
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--no-parse-only",
        action="store_true",
        help="skip the parse-only baseline (for a memory run at a million entries)",
    )
    args = parser.parse_args()
    folder = Path(tempfile.gettempdir()) / f"certyard-bench-folder-{args.count}"
    issuers = Issuers()
    build_folder(folder, args.count, issuers)
    if not args.no_sqlite:
        bench(args.count, folder, issuers, None, with_parse_only=not args.no_parse_only)
    if args.postgres:
        recreate_database(args.postgres)
        bench(args.count, folder, issuers, args.postgres, with_parse_only=not args.no_parse_only)


if __name__ == "__main__":
    main()
