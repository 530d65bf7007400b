"""A store type for the agent: the certificates a JSON manifest file lists.

Some deployments keep a manifest of the certificates a service uses (written by the tool
that deploys them). The store path is that manifest::

    {"entries": [
        {"alias": "web", "certificate": "web/cert.pem", "chain": ["ca/intermediate.pem"],
         "key": "web/key.pem"},
        {"alias": "mail", "certificate": "/etc/ssl/mail.pem"}
    ]}

Paths are relative to the manifest's folder, or absolute. ``certificate`` and each
``chain`` file hold PEM certificates; only their ``CERTIFICATE`` blocks are sent, so a
private key kept in the same file never leaves the machine. ``key`` is never read: an
entry whose key file exists is reported as holding its private key.

Every file must lie inside the agent's store roots, links resolved; an entry naming a file
outside them, missing, too large or holding no certificate is reported as rejected, with
the reason, and the others are still read. A manifest that cannot be read fails the job.

The store type declares itself (``declaration``): when an agent carrying it connects, the
platform creates the ``MANIFEST`` store type, with its one property, ``entries_key`` (the
manifest's key that holds the list, ``entries`` by default, for tools that name it
otherwise). Nothing is set up by hand.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrators.declarations import PropertySpec, PropertyType, StoreTypeDeclaration
from orchestrators.protocol import StoreOperation
from orchestrators.sdk import (
    InventoryEntry,
    JobConfiguration,
    StoreError,
    StoreTypeExtension,
    path_within_roots,
)

_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class _Unusable(Exception):
    """One file of an entry cannot be used; the message says why (it becomes the error)."""


def _read(path: Path, job: JobConfiguration) -> str:
    """A file's text, after the checks every path the store reads must pass."""
    if not path_within_roots(path, job.store_roots):
        raise _Unusable(f"{path} is outside the folders this orchestrator may read")
    try:
        size = path.stat().st_size
        if job.max_file_bytes is not None and size > job.max_file_bytes:
            raise _Unusable(f"{path} is larger than {job.max_file_bytes} bytes")
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise _Unusable(f"{path} does not exist") from None
    except OSError as exc:
        raise _Unusable(f"{path} cannot be read: {exc.strerror}") from None


class ManifestStore(StoreTypeExtension):
    """The certificates listed in a JSON manifest file (store path: the manifest)."""

    short_name = "MANIFEST"
    operations = frozenset({StoreOperation.INVENTORY})
    # The platform's record of the type, created from this when an agent connects. Raise
    # schema_version whenever it changes: the platform ignores (and warns of) another
    # declaration under a version it has already recorded.
    declaration = StoreTypeDeclaration(
        short_name="MANIFEST",
        name="Certificates listed in a JSON manifest (example)",
        schema_version=1,
        operations=operations,
        properties=(
            PropertySpec(
                "entries_key",
                "Entries key",
                PropertyType.STRING,
                default="entries",
                help="The manifest's top-level key that holds the list of entries.",
            ),
        ),
        store_path_hint="/etc/myservice/certificates.json (the manifest file)",
        description="Reads the certificates a JSON manifest lists (inventory only).",
    )

    def inventory(self, job: JobConfiguration) -> Iterator[InventoryEntry]:
        manifest = Path(job.store.store_path)
        try:
            items = self._manifest(manifest, job)
        except _Unusable as exc:
            raise StoreError(f"the manifest cannot be used: {exc}") from None
        for index, item in enumerate(items):
            yield self._entry(index, item, manifest.parent, job)

    @staticmethod
    def _manifest(manifest: Path, job: JobConfiguration) -> list[Any]:
        try:
            data = json.loads(_read(manifest, job))
        except ValueError as exc:
            raise _Unusable(f"{manifest} is not valid JSON ({exc})") from None
        # A store made before the type declared the property has none: the default.
        key = job.store.properties.get("entries_key") or "entries"
        entries = data.get(key) if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise _Unusable(f'{manifest} has no "{key}" list')
        return entries

    @staticmethod
    def _entry(index: int, item: Any, folder: Path, job: JobConfiguration) -> InventoryEntry:
        if not isinstance(item, dict) or not isinstance(item.get("alias"), str):
            return InventoryEntry(f"#{index}", False, [], error='the entry has no "alias"')
        alias = item["alias"]
        files = [item.get("certificate"), *(item.get("chain") or [])]
        if not all(isinstance(name, str) and name for name in files):
            return InventoryEntry(alias, False, [], error="the entry names no certificate file")
        try:
            # The installed certificate first, then its chain: as the platform expects.
            found = [_CERTIFICATE.findall(_read(folder / name, job)) for name in files]
        except _Unusable as exc:
            return InventoryEntry(alias, False, [], error=str(exc))
        if not found[0]:
            return InventoryEntry(alias, False, [], error=f"{files[0]} holds no PEM certificate")
        certificates = [block for blocks in found for block in blocks]
        key = item.get("key")
        has_key = (
            isinstance(key, str)
            and bool(key)
            and path_within_roots(folder / key, job.store_roots)
            and os.path.isfile(folder / key)
        )
        return InventoryEntry(alias, has_key, certificates)
