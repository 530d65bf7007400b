"""Benchmark: an OCSP flood against the built-in CA's responder, and what it costs.

On a fresh platform database (SQLite in a throwaway folder, the embedded default; its
shared cache is the database cache table, as on `make run`), a built-in CA issues a
handful of certificates; then OCSP requests are sent in-process through Django's WSGI
handler (the test client: URL routing, middleware, the view, the service, the cache, the
database, exactly what a web worker runs; no socket):

1. **flood**: N requests for random serials the CA never issued, from one address (an
   attacker: every request names a new serial, so none can be answered from the cache);
2. **relying parties**: N requests for the handful of issued serials, from another
   address (a client population asking about certificates in use; no nonce, as browsers
   and RFC 5019 clients send).

For each it prints the requests, the answers by status (successful, tryLater,
malformedRequest, other), the signatures made (counted by wrapping cryptography's
``OCSPResponseBuilder.sign`` and ``CertificateBuilder.sign`` in this script: the real
signing still runs), the CPU time (``time.process_time``) in total and per request, and the
wall time; and, for scale, what one bare signature with the CA's key costs. Before issue 14
every request cost two signatures (a stand-in certificate, then the answer): about 7.5 ms
of CPU per request with an RSA-2048 CA.

Run: .venv/bin/python benchmarks/ocsp_flood.py [N] [--known 5] [--ca-key RSA-2048]
       [--rate R]   (CERTYARD_OCSP_RATE for the run; default: the platform's default)
(default N = 10000 per phase).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

FLOODER = "203.0.113.66"
RELYING_PARTY = "198.51.100.10"


def _setup(ca_key: str, known: int) -> tuple[Any, list[int], tuple[bytes, bytes]]:
    """Migrate a throwaway database, create the CA and issue ``known`` certificates."""
    import django

    django.setup()
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509 import ocsp
    from cryptography.x509.oid import NameOID
    from django.core.management import call_command

    from certyard.pki import crypto, services

    call_command("migrate", verbosity=0)
    ca = services.ca_create(name=f"Bench OCSP {ca_key}", key_algorithm=ca_key)
    key = crypto.key_generate("EC-P256")
    serials = []
    for index in range(known):
        name = f"host{index}.bench.example.test"
        profile = crypto.Profile(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
            validity=dt.timedelta(days=90),
            sans=(x509.DNSName(name),),
        )
        issued = services.certificate_issue(ca=ca, public_key=key.public_key(), profile=profile)
        serials.append(issued.certificate.serial_number)
    # The CA's CertID hashes, as a client computes them.
    probe = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(
            issued.certificate,
            x509.load_pem_x509_certificate(ca.certificate_pem.encode()),
            hashes.SHA1(),  # noqa: S303 - what OCSP clients send
        )
        .build()
    )
    return ca, serials, (probe.issuer_name_hash, probe.issuer_key_hash)


def _request(hashes_: tuple[bytes, bytes], serial: int) -> bytes:
    """A one-CertID OCSP request (SHA-1, no nonce), as DER."""

    def tlv(tag: int, content: bytes) -> bytes:
        assert len(content) < 0x80
        return bytes([tag, len(content)]) + content

    algorithm = tlv(0x30, bytes.fromhex("06052b0e03021a0500"))
    number = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
    cert_id = tlv(
        0x30, algorithm + tlv(0x04, hashes_[0]) + tlv(0x04, hashes_[1]) + tlv(0x02, number)
    )
    return tlv(0x30, tlv(0x30, tlv(0x30, tlv(0x30, cert_id))))


class _Signatures:
    """Counts every signature cryptography makes while installed (and still makes it)."""

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.x509 import ocsp

        self.count = 0
        for cls in (ocsp.OCSPResponseBuilder, x509.CertificateBuilder):
            real = cls.sign

            def counted(builder: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
                self.count += 1
                return _real(builder, *args, **kwargs)

            cls.sign = counted  # type: ignore[method-assign]


def _phase(label: str, ca: Any, bodies: list[bytes], address: str, signatures: _Signatures) -> None:
    from cryptography.x509 import ocsp
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1", REMOTE_ADDR=address)
    url = f"/pki/{ca.pk}/ocsp"
    statuses: Counter[str] = Counter()
    signed_before = signatures.count
    cpu, wall = time.process_time(), time.perf_counter()
    for body in bodies:
        response = client.post(url, data=body, content_type="application/ocsp-request")
        if response.status_code != 200:
            statuses[f"HTTP {response.status_code}"] += 1
            continue
        status = ocsp.load_der_ocsp_response(response.content).response_status
        statuses[status.name] += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    count = len(bodies)
    others = {k: v for k, v in statuses.items() if k not in _SHOWN}
    print(
        f"{label:<16} {count:>8,} {statuses['SUCCESSFUL']:>11,} {statuses['TRY_LATER']:>9,} "
        f"{statuses['MALFORMED_REQUEST']:>10,} {signatures.count - signed_before:>11,} "
        f"{cpu:>8.2f} s {cpu / count * 1000:>8.3f} ms {wall:>8.2f} s"
        + (f"  other: {others}" if others else "")
    )


_SHOWN = ("SUCCESSFUL", "TRY_LATER", "MALFORMED_REQUEST")


def _bare_signature_ms(ca: Any) -> float:
    """CPU per bare signature of a one-response OCSP answer with the CA's key."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509 import ocsp

    from certyard.pki import crypto, services

    certificate, key = services.ca_material(ca)
    now = crypto.now()
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=b"\x00" * 20,
            issuer_key_hash=b"\x00" * 20,
            serial_number=1,
            algorithm=hashes.SHA1(),  # noqa: S303 - what OCSP clients send
            cert_status=ocsp.OCSPCertStatus.UNKNOWN,
            this_update=now,
            next_update=now + dt.timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, certificate)
    )
    rounds = 200
    started = time.process_time()
    for _ in range(rounds):
        builder.sign(key, crypto.signing_hash(key))  # type: ignore[arg-type]
    return (time.process_time() - started) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=10_000)
    parser.add_argument("--known", type=int, default=5, help="issued serials asked about")
    parser.add_argument("--ca-key", default="RSA-2048", metavar="TYPE")
    parser.add_argument("--rate", type=int, help="CERTYARD_OCSP_RATE (new signatures/min)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="certyard-bench-ocsp-")
    os.environ.setdefault("CERTYARD_DATA_DIR", workdir)
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"
    os.environ.pop("CERTYARD_REDIS_URL", None)  # the embedded setup: the database cache
    if args.rate is not None:
        os.environ["CERTYARD_OCSP_RATE"] = str(args.rate)
    os.environ["DJANGO_SETTINGS_MODULE"] = "certyard.settings"
    ca, serials, issuer_hashes = _setup(args.ca_key, args.known)
    import random

    from cryptography import x509
    from django.conf import settings

    print(
        f"CA key {args.ca_key}; CERTYARD_OCSP_RATE {settings.CERTYARD_OCSP_RATE}/minute per "
        f"address; SQLite and its cache table in {workdir}"
    )
    print(f"one bare OCSP signature: {_bare_signature_ms(ca):.3f} ms of CPU")
    flood = [_request(issuer_hashes, x509.random_serial_number()) for _ in range(args.count)]
    relying = [_request(issuer_hashes, random.choice(serials)) for _ in range(args.count)]
    signatures = _Signatures()
    print(
        f"{'phase':<16} {'requests':>8} {'successful':>11} {'tryLater':>9} {'malformed':>10} "
        f"{'signatures':>11} {'CPU':>10} {'CPU/request':>11} {'wall':>10}"
    )
    _phase("flood (unknown)", ca, flood, FLOODER, signatures)
    _phase(f"known x{args.known}", ca, relying, RELYING_PARTY, signatures)


if __name__ == "__main__":
    main()
