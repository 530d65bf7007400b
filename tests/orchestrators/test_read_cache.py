"""The directory store's read cache: an unchanged file is named by fingerprint, not read."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from orchestrators.sdk import InventoryEntry, JobConfiguration
from orchestrators.stores.pem import PemStore
from tests.certs import issue


def _job(store_path: Path, state_dir: Path, *, password: str | None = None) -> JobConfiguration:
    job = JobConfiguration.from_wire(
        {
            "job_id": "job-1",
            "type": "inventory",
            "attempt": 1,
            "store": {
                "id": "store-1",
                "store_type": "PEM",
                "store_path": str(store_path),
                "properties": {},
                "password": password,
            },
        }
    )
    return dataclasses.replace(job, state_dir=state_dir)


def _inventory(job: JobConfiguration) -> dict[str, InventoryEntry]:
    return {entry.alias: entry for entry in PemStore().inventory(job)}


def _folder(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    folder = tmp_path / "store"
    folder.mkdir()
    certs = {name: issue(f"{name}.cache.test") for name in ("a", "b")}
    for name, cert in certs.items():
        (folder / f"{name}.pem").write_text(cert.pem)
    (folder / "empty.pem").write_text("")
    return folder, certs


def test_a_second_inventory_names_unchanged_files_by_fingerprint(tmp_path: Path) -> None:
    folder, certs = _folder(tmp_path)
    job = _job(folder, tmp_path / "state")
    (tmp_path / "state").mkdir()

    first = _inventory(job)
    second = _inventory(job)

    assert first["a.pem"].certificates and first["a.pem"].certificate_sha256 is None
    assert second["a.pem"].certificates == []
    assert second["a.pem"].certificate_sha256 == [certs["a"].sha256]
    assert second["a.pem"].to_wire() == {
        "alias": "a.pem",
        "private_key": False,
        "sha256": [certs["a"].sha256],
    }
    assert second["empty.pem"].error == "is empty"  # a rejected file stays rejected
    assert second["a.pem"].load_full is not None
    assert second["a.pem"].load_full() == first["a.pem"]


def test_a_rewritten_file_is_read_again_even_with_its_old_modification_time(
    tmp_path: Path,
) -> None:
    folder, _ = _folder(tmp_path)
    (tmp_path / "state").mkdir()
    job = _job(folder, tmp_path / "state")
    _inventory(job)
    path = folder / "a.pem"
    before = path.stat()
    replacement = issue("a.cache.test")  # same name, new key: same size, new bytes
    path.write_text(replacement.pem)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # hide the change

    again = _inventory(job)

    assert again["a.pem"].certificates == [replacement.pem.strip()]


def test_a_new_password_or_property_starts_with_an_empty_cache(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path)
    (tmp_path / "state").mkdir()
    _inventory(_job(folder, tmp_path / "state", password="one"))

    again = _inventory(_job(folder, tmp_path / "state", password="two"))

    assert again["a.pem"].certificates and again["a.pem"].certificate_sha256 is None
    cache_file = tmp_path / "state" / "files.sqlite3"
    assert b"two" not in cache_file.read_bytes() and b"one" not in cache_file.read_bytes()
    assert oct(cache_file.stat().st_mode & 0o777) == "0o600"


def test_deleted_files_are_forgotten_and_new_ones_read(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path)
    (tmp_path / "state").mkdir()
    job = _job(folder, tmp_path / "state")
    _inventory(job)
    (folder / "b.pem").unlink()
    newcomer = issue("c.cache.test")
    (folder / "c.pem").write_text(newcomer.pem)

    again = _inventory(job)

    assert set(again) == {"a.pem", "c.pem", "empty.pem"}
    assert again["c.pem"].certificates == [newcomer.pem.strip()]
    assert again["a.pem"].certificate_sha256 is not None


def test_without_a_state_folder_every_file_is_read(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path)
    job = dataclasses.replace(_job(folder, tmp_path), state_dir=None)

    first, second = _inventory(job), _inventory(job)

    assert second["a.pem"].certificates == first["a.pem"].certificates != []
    assert not (tmp_path / "files.sqlite3").exists()
