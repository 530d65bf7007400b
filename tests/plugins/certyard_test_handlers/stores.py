"""A store type for Certyard's own tests: it declares what the built-ins do not (private
keys forbidden, an entry parameter required on add), so the tests can show that the
platform and the agent both keep to a declaration.

``KEYLESS``: the store path is a folder; an entry is ``<alias>.crt`` holding the
certificate (PEM), and ``<alias>.slot`` the ``slot`` entry parameter it was added with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orchestrators.declarations import (
    Policy,
    PropertySpec,
    PropertyType,
    RequiredWhen,
    StoreTypeDeclaration,
)
from orchestrators.protocol import StoreOperation
from orchestrators.sdk import (
    CertificateMaterial,
    InventoryEntry,
    JobConfiguration,
    StoreError,
    StoreTypeExtension,
)

_OPERATIONS = frozenset(
    {StoreOperation.INVENTORY, StoreOperation.ADD, StoreOperation.REMOVE, StoreOperation.CREATE}
)


class KeylessStore(StoreTypeExtension):
    short_name: ClassVar[str] = "KEYLESS"
    operations: ClassVar[frozenset[StoreOperation]] = _OPERATIONS
    declaration: ClassVar[StoreTypeDeclaration | None] = StoreTypeDeclaration(
        short_name="KEYLESS",
        name="Certificates without keys (tests)",
        schema_version=1,
        operations=_OPERATIONS,
        entry_parameters=(
            PropertySpec(
                "slot",
                "Slot",
                PropertyType.STRING,
                required_when=frozenset({RequiredWhen.ADD}),
            ),
        ),
        private_key=Policy.FORBIDDEN,
        custom_alias=Policy.REQUIRED,
    )

    def _folder(self, job: JobConfiguration) -> Path:
        folder = Path(job.store.store_path)
        if not folder.is_dir():
            raise StoreError(f"store folder {folder} does not exist")
        return folder

    def inventory(self, job: JobConfiguration) -> Iterator[InventoryEntry]:
        for path in sorted(self._folder(job).glob("*.crt")):
            yield InventoryEntry(path.stem, False, [path.read_text()])

    def add(self, job: JobConfiguration, material: CertificateMaterial) -> str:
        if material.private_key is not None:
            raise StoreError("KEYLESS stores never hold a key")  # the agent checks first
        alias = material.alias or ""
        if not alias.isalnum():
            raise StoreError(f"alias {alias!r} must be letters and digits")
        path = self._folder(job) / f"{alias}.crt"
        if path.exists():
            found = x509.load_pem_x509_certificate(path.read_bytes())
            sha256 = hashlib.sha256(found.public_bytes(serialization.Encoding.DER)).hexdigest()
            if sha256 == material.certificate_sha256:
                return alias
            if not material.overwrite:
                raise StoreError(f"alias {alias} already holds another certificate")
        path.write_text(material.certificate)
        path.with_suffix(".slot").write_text(str(material.entry_parameters["slot"]))
        return alias

    def remove(
        self, job: JobConfiguration, *, alias: str | None, certificate_sha256: str | None
    ) -> bool:
        removed = False
        for entry in self.inventory(job):
            if entry.alias == alias:
                (self._folder(job) / f"{entry.alias}.crt").unlink()
                removed = True
        return removed

    def create(self, job: JobConfiguration) -> bool:
        folder = Path(job.store.store_path)
        if folder.is_dir():
            return False
        folder.mkdir(parents=True)
        return True
