"""Benchmark: certificates issued per second by the built-in CA, through the service.

For each subject key type (RSA-2048 and ECDSA P-256), N CSRs are made first (not timed).
Then, in the same process and the same run:

- **service**: each CSR goes through ``enrollment_submit_csr`` exactly as the API calls it
  (request recorded, CSR parsed and its signature verified, the template's rules checked,
  the certificate signed and recorded for the CRL and OCSP, added to the inventory, the
  ``certificate.issued`` event written), one transaction per certificate, SQLite in a
  throwaway folder (the embedded default);
- **CA**: the built-in CA's own issuing service, ``pki.certificates_issue``, in batches:
  the CSR loaded and its signature checked, the certificate signed and recorded for the
  CRL and OCSP; no enrollment request, template, inventory or event;
- **bare**: a loop of ``cryptography`` alone signing the same certificates (load the CSR,
  check its signature, build the same extensions, sign with the same CA key), nothing
  stored.

It prints certificates per second for both and the ratio service / bare, for the service
called once per CSR (as ``POST enrollments/`` does) and in batches of 250 (as ``POST
enrollments/batch/`` does). The goal is a ratio of at least 0.8: the platform's bookkeeping
costs less than a quarter of signing. Signing cost depends on the CA's key, so the CA key
type is a choice (``--ca-key``, several allowed); the ratio is printed for each.

Run: .venv/bin/python benchmarks/pki_issue.py [N] [--ca-key RSA-2048 --ca-key EC-P256 ...]
(default N = 1000 per subject key type, CA key RSA-2048).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

SUBJECT_KEYS = ("RSA-2048", "EC-P256")
BATCH = 250  # CSRs per call of the bulk service


def _csrs(count: int, algorithm: str) -> list[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    from certyard.pki.crypto import key_generate

    # Key generation is not what is measured: a few keys, each reused for several CSRs.
    keys = [key_generate(algorithm) for _ in range(min(count, 50))]
    csrs = []
    for index in range(count):
        name = f"host{index}.bench.example.test"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(keys[index % len(keys)], hashes.SHA256())
        )
        csrs.append(csr.public_bytes(serialization.Encoding.PEM).decode())
    return csrs


def _run_on(count: int, ca_key: str, database_url: str) -> dict[str, object]:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "certyard.settings"
    import django

    django.setup()
    from cryptography import x509
    from django.core.management import call_command
    from django.db import transaction

    from certyard.enrollment.models import Template
    from certyard.enrollment.services import enrollment_submit_csr, enrollments_submit_csr_batch
    from certyard.pki import crypto
    from certyard.pki import services as pki_services

    call_command("migrate", verbosity=0)
    ca = pki_services.ca_create(name=f"Bench {ca_key}", key_algorithm=ca_key)
    Template.objects.create(name="bench", ca=ca, allowed_domains=["example.test"])
    ca_certificate, ca_private_key = pki_services.ca_material(ca)
    urls = pki_services.ca_urls(ca)
    results: dict[str, object] = {"ca_key": ca_key, "count": count}
    for subject_key in SUBJECT_KEYS:
        csrs = _csrs(count, subject_key)
        # Warm up both paths (imports, caches) on a few certificates not counted.
        for csr in csrs[:5]:
            enrollment_submit_csr(template_name="bench", csr_pem=csr)

        started = time.perf_counter()
        for csr in csrs:
            issued = enrollment_submit_csr(template_name="bench", csr_pem=csr)
            assert issued.state == "issued", issued.failure_reason
        single = time.perf_counter() - started

        started = time.perf_counter()
        for first in range(0, count, BATCH):
            requests = enrollments_submit_csr_batch(
                template_name="bench", csr_pems=csrs[first : first + BATCH]
            )
            assert all(r.state == "issued" for r in requests), requests[0].failure_reason
        batch = time.perf_counter() - started

        def profile_of(csr: x509.CertificateSigningRequest) -> crypto.Profile:
            return crypto.Profile(
                subject=csr.subject,
                validity=dt.timedelta(days=90),
                sans=tuple(
                    csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                ),
                key_usage=("digital_signature", "key_encipherment"),
                extended_key_usage=("server_auth",),
                **urls,
            )

        def checked(csr_pem: str) -> x509.CertificateSigningRequest:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
            assert csr.is_signature_valid  # a CA signs no CSR unchecked
            return csr

        # The CA's own issuing service (pki.certificates_issue): signed, recorded for the
        # CRL and OCSP, in batches; no enrollment request, inventory or event.
        started = time.perf_counter()
        for first in range(0, count, BATCH):
            with transaction.atomic():
                pki_services.certificates_issue(
                    ca=ca,
                    requests=[
                        (csr.public_key(), profile_of(csr))
                        for csr in map(checked, csrs[first : first + BATCH])
                    ],
                )
        ca_service = time.perf_counter() - started

        started = time.perf_counter()
        for csr_pem in csrs:
            csr = checked(csr_pem)
            crypto.certificate_build(
                issuer_certificate=ca_certificate,
                issuer_key=ca_private_key,
                public_key=csr.public_key(),  # type: ignore[arg-type]
                profile=profile_of(csr),
            )
        bare = time.perf_counter() - started
        results[subject_key] = {
            "single_per_second": round(count / single, 1),
            "batch_per_second": round(count / batch, 1),
            "bare_per_second": round(count / bare, 1),
            "single_ratio": round(bare / single, 3),
            "batch_ratio": round(bare / batch, 3),
            "ca_per_second": round(count / ca_service, 1),
            "ca_ratio": round(bare / ca_service, 3),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=1000)
    parser.add_argument("--ca-key", action="append", dest="ca_keys", metavar="TYPE")
    parser.add_argument("--run-on", nargs=2, metavar=("CA_KEY", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_on:
        print(json.dumps(_run_on(args.count, args.run_on[0], args.run_on[1])))
        return
    workdir = tempfile.mkdtemp(prefix="certyard-bench-pki-")
    os.environ.setdefault("CERTYARD_DATA_DIR", workdir)
    print(f"{args.count} certificates per subject key type, SQLite in {workdir}")
    print("ratio = service / bare; enrollment = the whole enrollment service (request,")
    print("template rules, CA, inventory, event); CA = pki.certificates_issue in batches")
    print(
        f"{'CA key':<9} {'subject':<9} {'bare /s':>9} {'enrollment 1 by 1':>18} {'ratio':>6} "
        f"{f'enrollment x{BATCH}':>16} {'ratio':>6} {f'CA x{BATCH}':>9} {'ratio':>6}"
    )
    for index, ca_key in enumerate(args.ca_keys or ["RSA-2048"]):
        url = f"sqlite:///{workdir}/bench-{index}.sqlite3"
        output = subprocess.run(
            [sys.executable, __file__, str(args.count), "--run-on", ca_key, url],
            check=True,
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        for subject_key in SUBJECT_KEYS:
            row = result[subject_key]
            print(
                f"{ca_key:<9} {subject_key:<9} {row['bare_per_second']:>9,.1f} "
                f"{row['single_per_second']:>18,.1f} {row['single_ratio']:>6.3f} "
                f"{row['batch_per_second']:>16,.1f} {row['batch_ratio']:>6.3f} "
                f"{row['ca_per_second']:>9,.1f} {row['ca_ratio']:>6.3f}"
            )


if __name__ == "__main__":
    main()
