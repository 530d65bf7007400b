"""The public helpers for store types, with real certificates, files and links.

A small store type written only with the helpers reads a bundle and is run the way the
agent runs it; what it reports is what the platform's own parser reads back.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certyard.x509 import certificate_parse, pem_blocks_to_der
from orchestrators.helpers import (
    certificate_sha256,
    der_to_pem,
    pem_blocks,
    pem_to_der,
    read_store_file,
    rejected,
)
from orchestrators.protocol import JobType, StoreOperation
from orchestrators.sdk import (
    InventoryEntry,
    JobConfiguration,
    StoreConfiguration,
    StoreError,
    StoreTypeExtension,
)
from orchestrators.stores import pem_files
from tests.certs import Issued


def job_for(
    path: Path, *, roots: tuple[str, ...] | None = None, max_file_bytes: int | None = None
) -> JobConfiguration:
    store = StoreConfiguration(
        id="store-1", store_type="BUNDLE", client_machine="localhost", store_path=str(path)
    )
    return JobConfiguration(
        job_id="job-1",
        type=JobType.INVENTORY,
        attempt=1,
        store=store,
        store_roots=roots,
        max_file_bytes=max_file_bytes,
    )


class BundleStore(StoreTypeExtension):
    """A store type written with the helpers alone: one PEM bundle, one entry."""

    short_name = "BUNDLE"
    operations = frozenset({StoreOperation.INVENTORY})

    def inventory(self, job: JobConfiguration) -> list[InventoryEntry]:
        data = read_store_file(job.store.store_path, job)
        blocks = pem_blocks(data)
        if not blocks:
            return [rejected(os.path.basename(job.store.store_path), "holds no certificate")]
        return [InventoryEntry("bundle", bool(pem_blocks(data, label="PRIVATE KEY")), blocks)]


def pem_of(issued: Issued) -> str:
    return issued.certificate.public_bytes(Encoding.PEM).decode()


def der_of(issued: Issued) -> bytes:
    return issued.certificate.public_bytes(Encoding.DER)


def test_a_store_type_built_on_the_helpers_reports_what_the_platform_reads(
    tmp_path: Path, issue: Callable[[str], Issued], ca_certificate: Issued
) -> None:
    leaf = issue("bundle.example.com")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(
        (
            "# the web server's bundle\r\n"
            + pem_of(leaf).replace("\n", "\r\n")
            + "Bag Attributes: none\n"
            + pem_of(ca_certificate)
            + "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"
        ).encode()
    )

    (entry,) = BundleStore().inventory(job_for(bundle, roots=(str(tmp_path),)))

    assert entry.private_key is True
    assert len(entry.certificates) == 2
    parsed = [certificate_parse(pem_blocks_to_der(pem)[0]) for pem in entry.certificates]
    assert [p.sha256 for p in parsed] == [
        certificate_sha256(der_of(leaf)),
        certificate_sha256(der_of(ca_certificate)),
    ]
    assert parsed[0].common_name == "bundle.example.com"
    assert entry.to_wire()["certificates"] == entry.certificates


def test_an_empty_bundle_is_a_rejected_entry(tmp_path: Path) -> None:
    bundle = tmp_path / "empty.pem"
    bundle.write_text("nothing here\n")

    (entry,) = BundleStore().inventory(job_for(bundle))

    assert entry.rejected
    assert entry.to_wire() == {
        "alias": "empty.pem",
        "private_key": False,
        "certificates": [],
        "error": "holds no certificate",
    }
    assert rejected("slot 3", "is empty", private_key=True).private_key is True


# --- read_store_file -----------------------------------------------------------------------


def test_a_file_within_the_roots_and_the_limit_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "store.bin"
    path.write_bytes(b"x" * 100)

    assert read_store_file(path, job_for(path, roots=(str(tmp_path),), max_file_bytes=100)) == (
        b"x" * 100
    )
    assert read_store_file(str(path), job_for(path)) == b"x" * 100


def test_a_file_over_the_limit_is_refused_and_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 101)

    with pytest.raises(StoreError, match=r"larger than the agent's limit \(100 bytes\)") as caught:
        read_store_file(path, job_for(path, max_file_bytes=100))
    assert caught.value.transient is False
    with pytest.raises(StoreError, match=r"\(50 bytes\)"):
        read_store_file(path, job_for(path, max_file_bytes=100), max_bytes=50)


def test_a_link_leading_outside_the_roots_is_refused(tmp_path: Path) -> None:
    inside = tmp_path / "root"
    inside.mkdir()
    outside = tmp_path / "secret.pem"
    outside.write_text("secret")
    link = inside / "innocent.pem"
    link.symlink_to(outside)

    with pytest.raises(StoreError, match="outside the orchestrator's store roots") as caught:
        read_store_file(link, job_for(link, roots=(str(inside),)))
    assert not caught.value.transient
    with pytest.raises(StoreError, match="outside"):
        read_store_file(inside / ".." / "secret.pem", job_for(link, roots=(str(inside),)))


def test_missing_files_and_folders_are_permanent_errors(tmp_path: Path) -> None:
    job = job_for(tmp_path)
    with pytest.raises(StoreError, match="does not exist") as caught:
        read_store_file(tmp_path / "nope.pem", job)
    assert not caught.value.transient
    with pytest.raises(StoreError, match="is a folder"):
        read_store_file(tmp_path, job)


def test_a_file_the_agent_may_not_read_is_a_permanent_error(tmp_path: Path) -> None:
    job = job_for(tmp_path)
    locked = tmp_path / "locked.pem"
    locked.write_text("x")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as a user who reads any file (root)")
        with pytest.raises(StoreError, match="permission denied") as caught:
            read_store_file(locked, job)
        assert not caught.value.transient
    finally:
        locked.chmod(0o600)


# --- PEM and DER ---------------------------------------------------------------------------


def test_der_to_pem_and_back_match_cryptography_and_the_platform(
    issue: Callable[[str], Issued],
) -> None:
    leaf = issue("round.trip.example")
    der = der_of(leaf)
    pem = der_to_pem(der)

    assert pem + "\n" == pem_of(leaf)
    assert pem_to_der(pem) == der
    assert pem_blocks_to_der(pem) == [der]
    assert x509.load_pem_x509_certificate(pem.encode()) == leaf.certificate
    assert pem_files.der_to_pem is der_to_pem  # the PEM store uses the same one


def test_certificate_sha256_is_the_platforms_fingerprint(issue: Callable[[str], Issued]) -> None:
    leaf = issue("fingerprint.example")
    der = der_of(leaf)
    expected = certificate_parse(der).sha256

    assert expected == hashlib.sha256(der).hexdigest()
    assert certificate_sha256(der) == expected
    assert certificate_sha256(pem_of(leaf)) == expected
    assert certificate_sha256(pem_of(leaf).encode()) == expected
    assert certificate_sha256(b"\n" + pem_of(leaf).encode()) == expected
    with pytest.raises(ValueError, match="no -----BEGIN CERTIFICATE----- block"):
        certificate_sha256("no certificate")


def test_pem_blocks_picks_blocks_by_label(issue: Callable[[str], Issued]) -> None:
    one, two = pem_of(issue("one.example")), pem_of(issue("two.example"))
    key = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----"
    text = f"{one}junk\n{key}\n{two}"

    assert pem_blocks(text) == [one.strip(), two.strip()]
    assert pem_blocks(text, label="EC PRIVATE KEY") == [key]
    assert len(pem_blocks(text, label=None)) == 3
    # A BEGIN without its END does not swallow the next block.
    assert pem_blocks("-----BEGIN CERTIFICATE-----\nAAAA\n" + two) == [two.strip()]


def test_pem_to_der_refuses_a_broken_body() -> None:
    with pytest.raises(ValueError, match="not base64"):
        pem_to_der("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----")
