"""Benchmark: TLS endpoints scanned per second by the agent's ``TLS`` store type.

A real nginx (Debian's, started here in a throwaway folder, 2 worker processes) serves TLS
on every (address, port) of the loopback range ``--range`` (127.0.1.0/25: 126 addresses)
times ``--ports`` ports, each with an ECDSA P-256 leaf under an intermediate (the chain of
two a real site presents). The scan store names the range and the ports, exactly as an
administrator would, and ``TlsScanStore.inventory`` runs as the agent runs it: names and
ranges expanded, every endpoint connected to, handshaked, its chain and TLS version and
cipher read, one inventory entry per endpoint. Each concurrency setting is timed from the
first connection to the last entry; nothing else runs.

It prints endpoints per second for each concurrency (the goal, issue 18: at least 200
per second for 1,000 endpoints on this 2-core machine) and checks every endpoint was
recorded as serving its chain.

Run: .venv/bin/python benchmarks/tls_scan.py [--range 127.0.1.0/25 --ports 8]
     [--concurrency 8 --concurrency 32 --concurrency 64]
(default: 126 addresses x 8 ports = 1,008 endpoints; concurrency 8, 32 and 64).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from orchestrators.protocol import JobType  # noqa: E402
from orchestrators.scan import ScanAllowance  # noqa: E402
from orchestrators.sdk import JobConfiguration, StoreConfiguration  # noqa: E402
from orchestrators.stores.tls_scan import TlsScanStore  # noqa: E402
from tests.servers.nginx import nginx_executable, nginx_stop  # noqa: E402
from tests.servers.pebble import free_port  # noqa: E402

SNI = "bench.certyard.test"


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    ca: bool,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _nginx(prefix: Path, addresses: list[str], ports: list[int]) -> tuple[str, Path]:
    for folder in ("logs", "scratch"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    root_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    intermediate = _certificate("Bench Intermediate", root_key, None, ca=True)
    leaf = _certificate(SNI, leaf_key, (intermediate.subject, root_key), ca=False)
    pem = serialization.Encoding.PEM
    (prefix / "chain.pem").write_bytes(leaf.public_bytes(pem) + intermediate.public_bytes(pem))
    (prefix / "key.pem").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    listens = "\n".join(
        f"        listen {address}:{port} ssl;" for address in addresses for port in ports
    )
    config = prefix / "nginx.conf"
    config.write_text(
        f"""worker_processes 2;
daemon on;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/scratch/body;
    proxy_temp_path {prefix}/scratch/proxy;
    fastcgi_temp_path {prefix}/scratch/fastcgi;
    uwsgi_temp_path {prefix}/scratch/uwsgi;
    scgi_temp_path {prefix}/scratch/scgi;
    server {{
{listens}
        server_name _;
        ssl_certificate {prefix}/chain.pem;
        ssl_certificate_key {prefix}/key.pem;
        location / {{ return 200 "bench\\n"; }}
    }}
}}
"""
    )
    executable = nginx_executable()
    if executable is None:
        raise SystemExit("nginx is not installed: run `make system-deps`")
    subprocess.run([executable, "-c", str(config), "-p", str(prefix)], check=True, timeout=60)
    return executable, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--range", default="127.0.1.0/25", help="a loopback range to serve on")
    parser.add_argument("--ports", type=int, default=8)
    parser.add_argument("--concurrency", type=int, action="append")
    args = parser.parse_args()
    concurrencies = args.concurrency or [8, 32, 64]
    network = ipaddress.ip_network(args.range)
    if not network.subnet_of(ipaddress.ip_network("127.0.0.0/8")) or network.num_addresses > 1024:
        raise SystemExit("--range must be a loopback range of at most 1,024 addresses")
    addresses = [str(address) for address in network.hosts()]
    ports = sorted({free_port() for _ in range(args.ports)})
    endpoints = len(addresses) * len(ports)
    with tempfile.TemporaryDirectory(prefix="certyard-tls-bench-") as folder:
        prefix = Path(folder)
        executable, config = _nginx(prefix, addresses, ports)
        from tests.servers.nginx import NginxServer

        server = NginxServer(executable, "127.0.1.1", ports[0], prefix / "chain.pem",
                             prefix / "key.pem", prefix, config)  # fmt: skip
        try:
            time.sleep(0.5)
            print(
                f"TLS scan of {endpoints} endpoints ({len(addresses)} addresses x "
                f"{len(ports)} ports), nginx with 2 workers, ECDSA P-256 leaf + intermediate"
            )
            allowance = ScanAllowance.parse(["127.0.0.0/8"], "1-65535")
            for concurrency in concurrencies:
                job = JobConfiguration(
                    job_id="bench",
                    type=JobType.INVENTORY,
                    attempt=1,
                    store=StoreConfiguration(
                        "bench",
                        "TLS",
                        "bench",
                        args.range,
                        {
                            "ports": ",".join(map(str, ports)),
                            "sni_names": SNI,
                            "concurrency": concurrency,
                            "rate_per_second": 10_000,
                        },
                    ),
                    scan_allowance=allowance,
                )
                started = time.perf_counter()
                entries = list(TlsScanStore().inventory(job))
                elapsed = time.perf_counter() - started
                served = sum(
                    1
                    for e in entries
                    if e.endpoint and e.endpoint["status"] == "ok" and len(e.certificates) == 2
                )
                if served != endpoints:
                    statuses = sorted({str(e.endpoint and e.endpoint["status"]) for e in entries})
                    raise SystemExit(f"only {served} of {endpoints} endpoints served: {statuses}")
                print(
                    f"  concurrency {concurrency:>3}: {endpoints / elapsed:8.1f} endpoints/s "
                    f"({elapsed:.2f} s; goal >= 200/s)"
                )
        finally:
            nginx_stop(server)


if __name__ == "__main__":
    main()
