"""The built-in ``PEM`` store type: a folder of PEM files, or one PEM bundle file.

Directory store: every ``.pem``/``.crt``/``.cer`` file (any case) holding at least one
certificate is one entry. Its alias is the file's path relative to the store path (POSIX
separators), its certificates the file's CERTIFICATE blocks in order (the installed one first,
then its chain), and it has a private key when the file also holds a PRIVATE KEY block.
Subdirectories are read only when the store property ``recursive`` is true.

Bundle store (``store_path`` is a file): every CERTIFICATE block is its own entry, named by
the lowercase hex SHA-256 of its DER.

Blocks are passed through unvalidated: the platform is the single certificate parser.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar

from orchestrators.protocol import StoreOperation
from orchestrators.sdk import InventoryEntry, JobConfiguration, StoreError, StoreTypeExtension

CERTIFICATE_SUFFIXES = frozenset({".pem", ".crt", ".cer"})
_BEGIN_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_END_CERTIFICATE = "-----END CERTIFICATE-----"


def certificate_blocks(text: str) -> list[str]:
    """The CERTIFICATE blocks of ``text`` in order, BEGIN to END line inclusive, with ``\\n``
    line endings."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = []
    start = text.find(_BEGIN_CERTIFICATE)
    while start != -1:
        end = text.find(_END_CERTIFICATE, start)
        if end == -1:
            break  # a truncated last block is not a certificate
        end += len(_END_CERTIFICATE)
        blocks.append(text[start:end])
        start = text.find(_BEGIN_CERTIFICATE, end)
    return blocks


def has_private_key(text: str) -> bool:
    """Whether ``text`` holds a private key block of any kind (RSA, EC, ENCRYPTED, PKCS#8)."""
    return any(
        line.startswith("-----BEGIN ") and line.rstrip().endswith("PRIVATE KEY-----")
        for line in text.splitlines()
    )


def block_fingerprint(block: str) -> str | None:
    """Lowercase hex SHA-256 of the block's DER, or None when its body is not base64."""
    body = block[len(_BEGIN_CERTIFICATE) : -len(_END_CERTIFICATE)]
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return hashlib.sha256(der).hexdigest() if der else None


def _truthy(value: Any) -> bool:
    # Store properties may arrive as booleans or as the strings an admin typed.
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _read_text(path: Path) -> str:
    try:
        # PEM is ASCII; latin-1 never fails, so a binary DER file simply has no blocks.
        return path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc


class PemStore(StoreTypeExtension):
    """PEM files in a directory, or a single PEM bundle (see the module docstring)."""

    short_name: ClassVar[str] = "PEM"
    operations: ClassVar[frozenset[StoreOperation]] = frozenset({StoreOperation.INVENTORY})

    def inventory(self, job: JobConfiguration) -> list[InventoryEntry]:
        """The entries of the directory or bundle at ``job.store.store_path``, sorted by alias."""
        root = Path(job.store.store_path)
        try:
            if root.is_dir():
                recursive = _truthy(job.store.properties.get("recursive", False))
                entries = self._directory_entries(root, recursive=recursive)
            elif root.is_file():
                entries = self._bundle_entries(root)
            elif root.exists():
                raise StoreError(f"store path {root} is neither a directory nor a file")
            else:
                raise StoreError(f"store path {root} does not exist")
        except PermissionError as exc:
            raise StoreError(f"cannot read store path {root}: permission denied") from exc
        return sorted(entries, key=lambda entry: entry.alias)

    def _directory_entries(self, root: Path, *, recursive: bool) -> list[InventoryEntry]:
        entries = []
        for path in self._candidate_files(root, recursive=recursive):
            text = _read_text(path)
            blocks = certificate_blocks(text)
            if blocks:
                alias = path.relative_to(root).as_posix()
                entries.append(InventoryEntry(alias, has_private_key(text), blocks))
        return entries

    @staticmethod
    def _candidate_files(root: Path, *, recursive: bool) -> list[Path]:
        def raise_error(exc: OSError) -> None:
            raise StoreError(f"cannot list {exc.filename}: {exc.strerror or exc}") from exc

        files = []
        for directory, subdirectories, names in os.walk(root, onerror=raise_error):
            if not recursive:
                subdirectories.clear()
            for name in names:
                path = Path(directory, name)
                if path.suffix.lower() in CERTIFICATE_SUFFIXES and path.is_file():
                    files.append(path)
        return files

    @staticmethod
    def _bundle_entries(path: Path) -> list[InventoryEntry]:
        entries: dict[str, InventoryEntry] = {}
        for index, block in enumerate(certificate_blocks(_read_text(path))):
            alias = block_fingerprint(block) or f"entry-{index}"
            # The same certificate twice in a bundle is one entry: its alias is its fingerprint.
            entries.setdefault(alias, InventoryEntry(alias, False, [block]))
        return list(entries.values())
