"""The built-in ``PEM`` store type: a folder of certificate files, or one bundle file.

Formats, recognised by content, not by file name:

- PEM text with any line endings, with text, keys and other PEM blocks around the
  certificates. ``CERTIFICATE``, ``X509 CERTIFICATE`` and ``TRUSTED CERTIFICATE`` blocks are
  certificates (OpenSSL's trust settings after a trusted certificate are dropped);
  ``PKCS7`` blocks are certificate bundles.
- DER: binary data starting with a SEQUENCE is a certificate (several DER certificates one
  after the other are read too).
- PKCS#7 bundles (``.p7b``/``.p7c``), DER or PEM; read with ``cryptography``.
- PKCS#12 (``.p12``/``.pfx``), opened with the store password (or none, for files without one).

Certificates go to the platform as ``-----BEGIN CERTIFICATE-----`` PEM strings. They are not
validated here: the platform is the single certificate parser, so a certificate that
``cryptography`` cannot load is passed through all the same. Only multi-certificate files are
parsed, to see whether they form one chain.

Store properties:

- ``recursive`` (default false): read subdirectories too.
- ``file_patterns`` (default :data:`DEFAULT_FILE_PATTERNS`): the comma-separated glob patterns
  a file's *name* must match, in any case, to be read (``*.pem,*.crt,*.txt``).

Directory store: the alias of a file is its path relative to the store path (POSIX
separators).

- A file holding one certificate, or certificates forming one chain (each certificate's
  issuer is the next one's subject), is one entry: the first certificate is the installed
  one, the rest its chain, and ``private_key`` says whether the file also holds a private key
  (a PEM ``... PRIVATE KEY`` block or a PKCS#12 key).
- A file holding certificates that are not one chain (a CA bundle, a PKCS#7 of unrelated
  certificates) is one entry per distinct certificate, aliased ``<path>#<SHA-256>`` (the
  lowercase hex SHA-256 of its DER), without chain; only the first one carries the file's
  private key (a key's certificate comes first: PKCS#12 puts it there, PEM files by habit).
- A matching file the store cannot use (no certificate in it, empty, a PKCS#12 the store
  password does not open, unreadable, ...) is a rejected entry: ``error`` says why. So is a
  subdirectory that cannot be listed (alias ``<path>/``).

Bundle store (``store_path`` is a file, in any of the formats): every certificate is its own
entry, aliased by its SHA-256. An empty file is an empty store; a file holding no usable
certificate fails the job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from orchestrators.declarations import PEM_DECLARATION, StoreTypeDeclaration
from orchestrators.protocol import StoreOperation
from orchestrators.sdk import (
    CertificateMaterial,
    InventoryEntry,
    JobConfiguration,
    StoreError,
    StoreTypeExtension,
    os_error_transient,
    path_within_roots,
)
from orchestrators.stores.pem_files import (
    CERTIFICATE_SUFFIXES,
    DEFAULT_FILE_PATTERNS,
    MAX_FILE_BYTES,
    NOT_CERTIFICATE_DATA,
    OUTSIDE_ROOTS,
    FileContents,
    FoundCertificate,
    _truthy,
    block_fingerprint,
    certificate_blocks,
    der_to_pem,
    file_entries,
    file_name_matcher,
    has_private_key,
    read_certificates,
    read_file,
)
from orchestrators.stores.pem_write import pem_add, pem_create, pem_remove
from orchestrators.stores.read_cache import CachedEntry, ReadCache, file_stamp

__all__ = [
    "CERTIFICATE_SUFFIXES",
    "DEFAULT_FILE_PATTERNS",
    "MAX_FILE_BYTES",
    "NOT_CERTIFICATE_DATA",
    "OUTSIDE_ROOTS",
    "FileContents",
    "FoundCertificate",
    "PemStore",
    "block_fingerprint",
    "certificate_blocks",
    "der_to_pem",
    "file_entries",
    "file_name_matcher",
    "has_private_key",
    "read_certificates",
    "read_file",
]


@dataclass(frozen=True, slots=True)
class _Reading:
    """How files of one job are read: the store password and the agent's size limit."""

    password: str | None
    max_bytes: int = MAX_FILE_BYTES


def _entries_read(
    alias: str, path: str, listing_error: str | None, reading: _Reading
) -> list[InventoryEntry]:
    """The entries of one file (or of a subdirectory that cannot be listed), read now."""
    if listing_error:
        contents: FileContents | None = FileContents(error=listing_error)
    else:
        contents = read_file(path, password=reading.password, max_bytes=reading.max_bytes)
    if contents is None:
        return []  # gone since it was listed
    return sorted(file_entries(alias, contents), key=lambda entry: entry.alias)


def _entries_cached(
    cache: ReadCache, alias: str, path: str, listing_error: str | None, reading: _Reading
) -> list[InventoryEntry]:
    """The entries of one file: by fingerprint when it is unchanged since it was read."""
    if listing_error:
        return _entries_read(alias, path, listing_error, reading)
    try:
        stamp = file_stamp(os.stat(path))
    except OSError:
        return _entries_read(alias, path, listing_error, reading)
    cached = cache.lookup(path, stamp)
    if cached is not None:
        return [_from_cache(entry, alias, path, reading) for entry in cached]
    entries = _entries_read(alias, path, listing_error, reading)
    remembered = []
    for entry in entries:
        if entry.error is not None and entry.error.startswith("cannot be read"):
            return entries  # may pass: read it again next time
        fingerprints = [block_fingerprint(pem) for pem in entry.certificates]
        known = [f for f in fingerprints if f is not None]
        if len(known) != len(fingerprints):
            return entries  # passed through as found: nothing to name it by
        remembered.append(CachedEntry(entry.alias, entry.private_key, tuple(known), entry.error))
    cache.record(path, stamp, remembered)
    return entries


def _from_cache(
    entry: CachedEntry, file_alias: str, path: str, reading: _Reading
) -> InventoryEntry:
    if entry.error is not None:
        return InventoryEntry(entry.alias, False, [], error=entry.error)

    def load_full() -> InventoryEntry:
        fresh = _entries_read(file_alias, path, None, reading)
        found = next((e for e in fresh if e.alias == entry.alias), None)
        return found or InventoryEntry(entry.alias, False, [], error="changed while it was read")

    return InventoryEntry(
        entry.alias,
        entry.private_key,
        [],
        certificate_sha256=list(entry.sha256),
        load_full=load_full,
    )


class PemStore(StoreTypeExtension):
    """Certificate files in a directory, or a single bundle (see the module docstring)."""

    short_name: ClassVar[str] = "PEM"
    operations: ClassVar[frozenset[StoreOperation]] = frozenset(
        {
            StoreOperation.INVENTORY,
            StoreOperation.ADD,
            StoreOperation.REMOVE,
            StoreOperation.CREATE,
            StoreOperation.REENROLLMENT,
        }
    )
    declaration: ClassVar[StoreTypeDeclaration | None] = PEM_DECLARATION

    # Writing lives in pem_write, reading in pem_files: this class only joins them.
    def add(self, job: JobConfiguration, material: CertificateMaterial) -> str:
        """Write ``material`` into the folder or bundle (see ``orchestrators.stores.pem_write``)."""
        return pem_add(job, material)

    def remove(
        self, job: JobConfiguration, *, alias: str | None, certificate_sha256: str | None
    ) -> bool:
        """Remove a file (or one certificate of a bundle) by alias or fingerprint."""
        return pem_remove(job, alias=alias, certificate_sha256=certificate_sha256)

    def create(self, job: JobConfiguration) -> bool:
        """Create the store folder, or an empty bundle file."""
        return pem_create(job)

    def inventory(self, job: JobConfiguration) -> Iterator[InventoryEntry]:
        """The entries of the directory or bundle at ``job.store.store_path``.

        A directory's files are read one at a time as the agent sends the report, in the
        order of their paths, so a store of a million files costs little memory.
        """
        root = Path(job.store.store_path)
        properties = job.store.properties
        try:
            if root.is_dir():
                entries = self._directory_entries(
                    root,
                    recursive=_truthy(properties.get("recursive", False)),
                    matches=file_name_matcher(properties.get("file_patterns")),
                    reading=_Reading(job.store.password, job.max_file_bytes or MAX_FILE_BYTES),
                    roots=job.store_roots,
                    cache_folder=job.state_dir,
                    cache_scope={
                        "store_path": job.store.store_path,
                        "properties": properties,
                        "password": job.store.password,
                    },
                )
            elif root.is_file():
                entries = self._bundle_entries(
                    root, password=job.store.password, max_bytes=job.max_file_bytes
                )
            elif root.exists():
                raise StoreError(f"store path {root} is neither a directory nor a file")
            else:
                raise StoreError(f"store path {root} does not exist")
            yield from entries
        except PermissionError as exc:
            raise StoreError(f"cannot read store path {root}: permission denied") from exc

    def _directory_entries(
        self,
        root: Path,
        *,
        recursive: bool,
        matches: Callable[[str], bool],
        reading: _Reading,
        roots: tuple[str, ...] | None = None,
        cache_folder: Path | None = None,
        cache_scope: dict[str, Any] | None = None,
    ) -> Iterator[InventoryEntry]:
        # Only the aliases are held (short strings, sorted so reports come in a stable
        # order: about 80 MB at a million files); each file is read when its turn comes,
        # or not at all when the cache says it is unchanged.
        aliases: list[str] = []
        unlistable: dict[str, str] = {}
        for alias, reason in self._files(root, recursive=recursive, matches=matches, roots=roots):
            if reason is None:
                aliases.append(alias)
            else:
                unlistable[alias] = reason
        aliases.extend(unlistable)
        aliases.sort()
        base = str(root)
        if cache_folder is None:
            for alias in aliases:
                path = os.path.join(base, alias)
                yield from _entries_read(alias, path, unlistable.get(alias), reading)
            return
        with ReadCache(cache_folder, scope=cache_scope or {}) as cache:
            for alias in aliases:
                path = os.path.join(base, alias)
                yield from _entries_cached(cache, alias, path, unlistable.get(alias), reading)
            cache.finish()

    @staticmethod
    def _files(
        root: Path,
        *,
        recursive: bool,
        matches: Callable[[str], bool],
        roots: tuple[str, ...] | None = None,
    ) -> Iterator[tuple[str, str | None]]:
        """(alias, None) for each matching file; (alias, reason) for each subdirectory that
        cannot be listed and each link that leads outside the agent's store roots. The
        store path itself must be listable. Directories are read entry by entry, never
        held whole; links to folders are not followed."""
        pending = [(str(root), "")]
        while pending:
            directory, prefix = pending.pop()
            try:
                listing = os.scandir(directory)
            except OSError as exc:
                if not prefix:
                    if isinstance(exc, PermissionError):
                        raise
                    raise StoreError(
                        f"cannot list {directory}: {exc.strerror or exc}",
                        transient=os_error_transient(exc),
                    ) from exc
                reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
                yield prefix, f"cannot be listed: {reason or exc}"
                continue
            with listing:
                for child in listing:
                    if recursive and child.is_dir(follow_symlinks=False):
                        pending.append((child.path, f"{prefix}{child.name}/"))
                    elif matches(child.name) and child.is_file():
                        if child.is_symlink() and not path_within_roots(child.path, roots):
                            yield f"{prefix}{child.name}", OUTSIDE_ROOTS
                        else:
                            yield f"{prefix}{child.name}", None

    @staticmethod
    def _bundle_entries(
        path: Path, *, password: str | None, max_bytes: int | None = None
    ) -> list[InventoryEntry]:
        limit = max_bytes or MAX_FILE_BYTES
        try:
            with path.open("rb") as file:
                data = file.read(limit + 1)
        except OSError as exc:
            raise StoreError(
                f"cannot read {path}: {exc.strerror or exc}", transient=os_error_transient(exc)
            ) from exc
        if len(data) > limit:
            raise StoreError(f"store path {path} is larger than the agent's limit ({limit} bytes)")
        contents = read_certificates(data, password=password)
        if contents.error == "is empty":
            return []
        if contents.error is not None:
            raise StoreError(f"store path {path} {contents.error}")
        entries: dict[str, InventoryEntry] = {}
        for index, found in enumerate(contents.certificates):
            alias = found.fingerprint or f"entry-{index}"
            # The same certificate twice in a bundle is one entry: its alias is its fingerprint.
            # A key's certificate comes first, so only the first entry can carry the key.
            private_key = contents.private_key and index == 0
            entries.setdefault(alias, InventoryEntry(alias, private_key, [found.pem]))
        return sorted(entries.values(), key=lambda entry: entry.alias)
