"""Helpers for the agent's management tests: a small real store type and job builders.

``FolderStore`` writes one PEM file per alias (certificate, chain, then the key) into a real
folder: enough to run the agent's management code against real files without depending on
how the built-in store types lay theirs out.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orchestrators.declarations import (
    Policy,
    PropertySpec,
    PropertyType,
    RequiredWhen,
    StoreTypeDeclaration,
)
from orchestrators.protocol import JobType, StoreOperation
from orchestrators.sdk import (
    CertificateMaterial,
    InventoryEntry,
    JobConfiguration,
    StoreConfiguration,
    StoreError,
    StoreTypeExtension,
)

ALL_OPERATIONS = frozenset(StoreOperation)


def sha256_of(pem: str) -> str:
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


class FolderStore(StoreTypeExtension):
    """One ``<alias>.pem`` per entry in the store folder."""

    short_name: ClassVar[str] = "FOLDER"
    operations: ClassVar[frozenset[StoreOperation]] = ALL_OPERATIONS
    declaration: ClassVar[StoreTypeDeclaration | None] = StoreTypeDeclaration(
        short_name="FOLDER",
        name="Test folder",
        operations=ALL_OPERATIONS,
        entry_parameters=(
            PropertySpec(
                "entry_password",
                "Entry password",
                PropertyType.SECRET,
                required_when=frozenset({RequiredWhen.HAS_PRIVATE_KEY}),
            ),
        ),
    )

    def inventory(self, job: JobConfiguration) -> Iterator[InventoryEntry]:
        folder = Path(job.store.store_path)
        if not folder.is_dir():
            raise StoreError(f"store path {folder} does not exist")
        for path in sorted(folder.glob("*.pem")):
            text = path.read_text()
            certificates = [
                c.public_bytes(serialization.Encoding.PEM).decode()
                for c in x509.load_pem_x509_certificates(text.encode())
            ]
            yield InventoryEntry(path.stem, "PRIVATE KEY" in text, certificates)

    def add(self, job: JobConfiguration, material: CertificateMaterial) -> str:
        folder = Path(job.store.store_path)
        if not folder.is_dir():
            if not job.payload.get("create_store"):
                raise StoreError(f"store path {folder} does not exist")
            folder.mkdir()
        alias = material.alias or material.certificate_sha256[:16]
        path = folder / f"{alias}.pem"
        if path.exists():
            first = x509.load_pem_x509_certificates(path.read_bytes())[0]
            if sha256_of(first.public_bytes(serialization.Encoding.PEM).decode()) == (
                material.certificate_sha256
            ):
                return alias
            if not material.overwrite:
                raise StoreError(f"alias {alias} holds another certificate")
        text = material.certificate + "".join(material.chain)
        if material.private_key is not None:
            text += material.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)
        return alias

    def remove(
        self, job: JobConfiguration, *, alias: str | None, certificate_sha256: str | None
    ) -> bool:
        removed = False
        for entry in list(self.inventory(job)):
            if entry.alias == alias or sha256_of(entry.certificates[0]) == certificate_sha256:
                (Path(job.store.store_path) / f"{entry.alias}.pem").unlink()
                removed = True
        return removed

    def create(self, job: JobConfiguration) -> bool:
        folder = Path(job.store.store_path)
        if folder.is_dir():
            return False
        folder.mkdir()
        return True


class KeylessFolderStore(FolderStore):
    """The same store, declared as refusing private keys."""

    short_name: ClassVar[str] = "KEYLESS"
    declaration: ClassVar[StoreTypeDeclaration | None] = StoreTypeDeclaration(
        short_name="KEYLESS",
        name="Test folder without keys",
        operations=ALL_OPERATIONS,
        private_key=Policy.FORBIDDEN,
    )


def job_for(
    store_path: Path | str,
    job_type: JobType,
    payload: dict[str, Any],
    *,
    store_type: str = "FOLDER",
    job_id: str = "job-1",
    attempt: int = 1,
    endpoint: dict[str, Any] | None = None,
    roots: tuple[str, ...] | None = None,
) -> JobConfiguration:
    return JobConfiguration(
        job_id=job_id,
        type=job_type,
        attempt=attempt,
        store=StoreConfiguration(
            id="store-1",
            store_type=store_type,
            client_machine="here",
            store_path=str(store_path),
            endpoint=endpoint,
        ),
        payload=payload,
        store_roots=roots,
    )


def files_below(folder: Path) -> set[str]:
    """Every file below ``folder``, relative to it."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
