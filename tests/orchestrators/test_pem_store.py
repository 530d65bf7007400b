from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrators.protocol import JobType
from orchestrators.sdk import JobConfiguration, StoreConfiguration, StoreError
from orchestrators.stores.pem import PemStore


def inventory_job(store_path: Path, **properties: Any) -> JobConfiguration:
    store = StoreConfiguration(
        id="store-1",
        store_type="PEM",
        client_machine="localhost",
        store_path=str(store_path),
        properties=properties,
        password="s3cret",
    )
    return JobConfiguration(job_id="job-1", type=JobType.INVENTORY, attempt=1, store=store)


@pytest.fixture
def store_dir(tmp_path: Path, issue: Callable[[str], Any], ca_certificate: Any) -> Path:
    web, mail, nested = issue("web.example"), issue("mail.example"), issue("nested.example")
    root = tmp_path / "certs"
    (root / "sub").mkdir(parents=True)
    (root / "web.pem").write_text(web.pem + ca_certificate.pem)
    # Windows line endings and a key: still one entry, normalised, with a private key.
    (root / "mail.CRT").write_bytes((mail.key_pem + mail.pem).replace("\n", "\r\n").encode())
    (root / "notes.pem").write_text("no certificate in here\n")
    (root / "readme.txt").write_text(web.pem)
    (root / "sub" / "nested.cer").write_text(nested.pem)
    return root


def test_directory_entries_are_files_with_their_chains(
    store_dir: Path, ca_certificate: Any
) -> None:
    entries = list(PemStore().inventory(inventory_job(store_dir)))

    assert [entry.alias for entry in entries] == ["mail.CRT", "notes.pem", "web.pem"]
    mail, notes, web = entries
    # A matching file without a certificate is reported, not skipped in silence.
    assert notes.error == "is not PEM, DER, PKCS#7 or PKCS#12 data"
    assert notes.certificates == []
    assert mail.private_key is True
    assert len(mail.certificates) == 1
    assert "\r" not in mail.certificates[0]
    assert mail.certificates[0].startswith("-----BEGIN CERTIFICATE-----\n")
    assert mail.certificates[0].endswith("-----END CERTIFICATE-----")
    assert web.private_key is False
    assert len(web.certificates) == 2
    assert web.certificates[1] == ca_certificate.pem.strip()


def test_subdirectories_are_read_only_when_recursive(store_dir: Path) -> None:
    entries = list(PemStore().inventory(inventory_job(store_dir, recursive="true")))

    assert [entry.alias for entry in entries] == [
        "mail.CRT",
        "notes.pem",
        "sub/nested.cer",
        "web.pem",
    ]


def test_any_private_key_block_counts(tmp_path: Path, issue: Callable[[str], Any]) -> None:
    leaf = issue("rsa.example")
    encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    (tmp_path / "a.pem").write_text(encrypted + leaf.pem)
    rsa = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
    (tmp_path / "b.pem").write_text(leaf.pem + rsa)

    entries = list(PemStore().inventory(inventory_job(tmp_path)))

    assert [entry.private_key for entry in entries] == [True, True]


def test_bundle_entries_are_named_by_fingerprint(
    tmp_path: Path, issue: Callable[[str], Any]
) -> None:
    first, second = issue("one.example"), issue("two.example")
    broken = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n"
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(first.pem + broken + second.pem + first.pem)

    entries = list(PemStore().inventory(inventory_job(bundle)))

    expected = sorted(
        [hashlib.sha256(first.der).hexdigest(), hashlib.sha256(second.der).hexdigest(), "entry-1"]
    )
    assert [entry.alias for entry in entries] == expected
    assert all(entry.private_key is False and len(entry.certificates) == 1 for entry in entries)
    by_alias = {entry.alias: entry for entry in entries}
    assert by_alias["entry-1"].certificates == [broken.strip()]
    assert by_alias[hashlib.sha256(second.der).hexdigest()].certificates == [second.pem.strip()]


def test_missing_store_path_is_a_store_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    with pytest.raises(StoreError, match=f"store path {missing} does not exist"):
        list(PemStore().inventory(inventory_job(missing)))


def test_empty_directory_has_no_entries(tmp_path: Path) -> None:
    assert list(PemStore().inventory(inventory_job(tmp_path))) == []


def test_store_password_is_not_in_repr(tmp_path: Path) -> None:
    assert "s3cret" not in repr(inventory_job(tmp_path))
