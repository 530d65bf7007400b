"""What each file of a directory store held when it was last read, keyed by the file's stat.

An unchanged re-inventory then reads no file: a file whose modification time, change
time, size and inode are what they were is reported by the SHA-256 of its certificates,
which the platform already holds. The change time cannot be set back by a program (unlike
the modification time), so a file rewritten in place is read again. The cache is SQLite in
the job's private state folder; it is scoped to the store's path, properties and
password, and starts empty when any of them changes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FILE = "files.sqlite3"
_WRITE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class CachedEntry:
    """One entry a file gave: its alias, key flag, and certificates' SHA-256 (or error)."""

    alias: str
    private_key: bool
    sha256: tuple[str, ...]
    error: str | None


def file_stamp(stat: os.stat_result) -> str:
    """What says a file is unchanged: modification and change times, size, inode, device."""
    return f"{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_size}:{stat.st_ino}:{stat.st_dev}"


class ReadCache:
    """A cache of file contents by path; use it as a context manager around one inventory.

    ``finish()`` at the end of a complete inventory forgets the files that were not seen.
    """

    def __init__(self, folder: Path, *, scope: dict[str, Any]) -> None:
        self._connection = sqlite3.connect(folder / _FILE, isolation_level=None)
        os.chmod(folder / _FILE, 0o600)
        self._connection.executescript(
            "PRAGMA journal_mode=WAL;"
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, stamp TEXT NOT NULL,"
            " entries TEXT NOT NULL, run INTEGER NOT NULL);"
        )
        salt = self._meta("salt")
        if salt is None:
            salt = secrets.token_hex(16)
            self._meta_set("salt", salt)
        # An HMAC, not the scope itself: the scope holds the store password.
        digest = hmac.new(
            bytes.fromhex(salt), json.dumps(scope, sort_keys=True).encode(), hashlib.sha256
        ).hexdigest()
        if self._meta("scope") != digest:
            self._connection.execute("DELETE FROM files")
            self._meta_set("scope", digest)
        run = self._connection.execute("SELECT COALESCE(MAX(run), 0) FROM files").fetchone()
        self._run = int(run[0]) + 1
        self._seen: list[tuple[int, str]] = []
        self._written: list[tuple[str, str, str, int]] = []

    def __enter__(self) -> ReadCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _meta(self, key: str) -> str | None:
        row = self._connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _meta_set(self, key: str, value: str) -> None:
        self._connection.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def lookup(self, path: str, stamp: str) -> list[CachedEntry] | None:
        """The entries the file gave when its stamp was the same, or None."""
        row = self._connection.execute(
            "SELECT stamp, entries FROM files WHERE path = ?", (path,)
        ).fetchone()
        if row is None or row[0] != stamp:
            return None
        self._seen.append((self._run, path))
        if len(self._seen) >= _WRITE_BATCH:
            self._flush()
        return [
            CachedEntry(alias, bool(private_key), tuple(sha256), error)
            for alias, private_key, sha256, error in json.loads(row[1])
        ]

    def record(self, path: str, stamp: str, entries: list[CachedEntry]) -> None:
        """Remember what the file gave now."""
        data = json.dumps([[e.alias, e.private_key, list(e.sha256), e.error] for e in entries])
        self._written.append((path, stamp, data, self._run))
        if len(self._written) >= _WRITE_BATCH:
            self._flush()

    def _flush(self) -> None:
        with self._connection:
            self._connection.execute("BEGIN")
            self._connection.executemany(
                "INSERT INTO files (path, stamp, entries, run) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (path) DO UPDATE SET stamp = excluded.stamp, "
                "entries = excluded.entries, run = excluded.run",
                self._written,
            )
            self._connection.executemany("UPDATE files SET run = ? WHERE path = ?", self._seen)
        self._written, self._seen = [], []

    def finish(self) -> None:
        """The inventory read every file: forget those it did not see."""
        self._flush()
        self._connection.execute("DELETE FROM files WHERE run < ?", (self._run,))

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self._connection.close()
