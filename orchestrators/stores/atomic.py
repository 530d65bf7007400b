"""Transactional file writes for store types: a crash leaves the old file or the new one.

Every store type that writes a file goes through :func:`write_file_atomically`:

1. leftover temporary files of a crashed write in the same folder are removed;
2. the new content goes to ``.<name>.certyard-tmp-<random>`` in the SAME folder (created with
   ``O_CREAT | O_EXCL``, mode 0600, so nobody else can read a key half-written), is fsynced;
3. the temporary file is read back and handed to ``verify`` (the store type parses it again
   with the same password): a :class:`~orchestrators.sdk.StoreError` there removes the
   temporary file and leaves the old file untouched;
4. owner, group and mode are copied from the file being replaced; a new file takes
   ``file_mode`` (or 0600 for a file holding a private key, else 0644 minus the umask) and
   ``file_group`` (or the folder's group);
5. optionally the previous file is kept as ``<name>.certyard-bak-<UTC yyyymmddThhmmssZ>``;
6. ``os.replace`` swaps the file in one step, and the folder is fsynced so the rename itself
   survives a power cut.

A symbolic link at ``path`` is kept: the file it points to is what gets replaced (certbot's
``live/`` links, ``/etc/ssl/current.pem -> v2.pem``). Callers check that path against the
agent's roots (``orchestrators.sdk.path_within_roots``) before writing.

Fault-injection seam for tests: when the environment variable
:data:`WRITE_PAUSE_ENV` (``CERTYARD_AGENT_WRITE_PAUSE_SECONDS``) is set to a number, the
write sleeps that many seconds after the temporary file is fsynced and verified and before
the rename, so an end-to-end test can kill the agent in the middle of a write and check that
the store is intact. Never set it in production.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrators.sdk import StoreError, os_error_transient

WRITE_PAUSE_ENV = "CERTYARD_AGENT_WRITE_PAUSE_SECONDS"
TEMP_MARKER = ".certyard-tmp-"
BACKUP_MARKER = ".certyard-bak-"

_OCTAL_MODE = re.compile(r"^0?o?[0-7]{3,4}$")
_GROUP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?$")


def store_write_options(properties: dict[str, Any]) -> dict[str, Any]:
    """The ``backup``, ``file_mode`` and ``file_group`` keyword arguments of
    :func:`write_file_atomically`, from a store's properties (missing ones: defaults).

    Raises:
        StoreError: a value is malformed (``file_mode`` not an octal mode such as ``0640``,
            ``file_group`` not a group name or number, ``backup`` not a boolean).
    """
    backup = properties.get("backup", False)
    if isinstance(backup, str) and backup.strip().lower() in {"true", "false", "1", "0", ""}:
        backup = backup.strip().lower() in {"true", "1"}
    if not isinstance(backup, bool):
        raise StoreError("store property backup must be true or false")
    file_mode = properties.get("file_mode") or ""
    if not isinstance(file_mode, str) or (file_mode and not _OCTAL_MODE.match(file_mode.strip())):
        raise StoreError(
            f"store property file_mode {str(file_mode)[:20]!r} is not an octal mode such as 0640"
        )
    file_group = properties.get("file_group") or ""
    if not isinstance(file_group, str) or (
        file_group and not _GROUP_NAME.match(file_group.strip())
    ):
        raise StoreError(
            f"store property file_group {str(file_group)[:40]!r} is not a group name or number"
        )
    return {"backup": backup, "file_mode": file_mode.strip(), "file_group": file_group.strip()}


def write_file_atomically(
    path: Path,
    data: bytes,
    *,
    verify: Callable[[bytes], object],
    private: bool = False,
    backup: bool = False,
    file_mode: str = "",
    file_group: str = "",
) -> None:
    """Replace (or create) ``path`` with ``data`` so that a crash leaves old or new, never a mix.

    Args:
        path: The file to write. A link is followed: its target is replaced.
        data: The whole new content.
        verify: Called with the bytes read back from the temporary file; raises
            :class:`StoreError` if they do not parse as the store (then nothing changes).
        private: The file holds a private key: a NEW file gets mode 0600 unless
            ``file_mode`` says otherwise. An existing file keeps its mode.
        backup: Keep the previous file as ``<name>.certyard-bak-<UTC time>``.
        file_mode: Octal mode for a new file (``"0640"``); empty: see ``private``.
        file_group: Group (name or number) for a new file; empty: the folder's group.

    Raises:
        StoreError: the folder is missing or not writable, verification failed, or the
            disk refused the write; the message names the folder or file.
    """
    target = Path(os.path.realpath(path))
    folder = target.parent
    if not folder.is_dir():
        raise StoreError(f"cannot write {path}: folder {folder} does not exist")
    if target.is_dir():
        raise StoreError(f"cannot write {path}: it is a folder")
    try:
        existing: os.stat_result | None = target.stat()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise StoreError(
            f"cannot read {path}: {exc.strerror}", transient=os_error_transient(exc)
        ) from exc

    remove_stale_temporary_files(folder)
    temp = folder / f".{target.name}{TEMP_MARKER}{secrets.token_hex(8)}"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except PermissionError as exc:
        raise StoreError(f"cannot write in {folder}: permission denied") from exc
    except OSError as exc:
        raise StoreError(
            f"cannot write in {folder}: {exc.strerror}", transient=os_error_transient(exc)
        ) from exc
    renamed = False
    try:
        # The lock tells a concurrent writer's clean-up that this temporary file is alive; a
        # crashed process's lock is released by the kernel, so its leftover can be removed.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _write_all(fd, data)
        _apply_ownership(fd, existing, folder, private=private, mode=file_mode, group=file_group)
        os.fsync(fd)
        written = temp.read_bytes()
        verify(written)
        _pause_for_fault_injection()
        if backup and existing is not None:
            _make_backup(target)
        os.replace(temp, target)
        renamed = True
        _fsync_folder(folder)
    except StoreError:
        raise
    except PermissionError as exc:
        raise StoreError(f"cannot write in {folder}: permission denied") from exc
    except OSError as exc:
        raise StoreError(
            f"cannot write {path}: {exc.strerror or exc}", transient=os_error_transient(exc)
        ) from exc
    finally:
        os.close(fd)
        if not renamed:
            with contextlib.suppress(OSError):
                temp.unlink()


def remove_file_atomically(path: Path, *, backup: bool = False) -> bool:
    """Delete ``path`` (keeping a backup copy first when asked) and fsync its folder.

    Returns False when there was nothing to remove (a job offered again is not an error).

    Raises:
        StoreError: the folder is not writable.
    """
    path = Path(path)
    folder = Path(os.path.realpath(path.parent))
    if not os.path.lexists(path):
        return False
    try:
        if backup and path.is_file() and not path.is_symlink():
            _make_backup(Path(os.path.realpath(path)))
        path.unlink()
        _fsync_folder(folder)
    except FileNotFoundError:
        return False
    except PermissionError as exc:
        raise StoreError(f"cannot remove {path}: permission denied in {folder}") from exc
    except OSError as exc:
        raise StoreError(
            f"cannot remove {path}: {exc.strerror or exc}", transient=os_error_transient(exc)
        ) from exc
    return True


def remove_stale_temporary_files(folder: Path) -> int:
    """Remove the temporary files a crashed write left in ``folder``; return how many.

    A temporary file still locked belongs to a write in progress (another job, another
    agent process) and is left alone.
    """
    removed = 0
    try:
        names = [name for name in os.listdir(folder) if TEMP_MARKER in name]
    except OSError:
        return 0
    for name in names:
        candidate = folder / name
        if not name.startswith(".") or candidate.is_symlink() or not candidate.is_file():
            continue
        with _try_lock(candidate) as locked:
            if locked:
                with contextlib.suppress(OSError):
                    candidate.unlink()
                    removed += 1
    return removed


@contextlib.contextmanager
def _try_lock(candidate: Path) -> Iterator[bool]:
    try:
        fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def backup_name(target: Path) -> Path:
    """A free ``<name>.certyard-bak-<UTC yyyymmddThhmmssZ>`` beside ``target`` (``-2``, ``-3``
    appended when two writes fall in the same second)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = target.with_name(f"{target.name}{BACKUP_MARKER}{stamp}")
    counter = 2
    while os.path.lexists(candidate):
        candidate = target.with_name(f"{target.name}{BACKUP_MARKER}{stamp}-{counter}")
        counter += 1
    return candidate


def _make_backup(target: Path) -> None:
    destination = backup_name(target)
    try:
        # A hard link keeps the old inode (content, owner, mode) at no cost; the rename that
        # follows only moves the name.
        os.link(target, destination)
    except OSError as exc:
        if exc.errno not in {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP}:
            raise
        st = target.stat()
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, target.read_bytes())
            with contextlib.suppress(PermissionError):
                os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _apply_ownership(
    fd: int,
    existing: os.stat_result | None,
    folder: Path,
    *,
    private: bool,
    mode: str,
    group: str,
) -> None:
    if existing is not None:
        _chown(fd, existing.st_uid, existing.st_gid)
        os.fchmod(fd, stat.S_IMODE(existing.st_mode))
        return
    gid = _group_id(group) if group else folder.stat().st_gid
    _chown(fd, -1, gid)
    if mode:
        os.fchmod(fd, int(mode.replace("o", ""), 8) & 0o7777)
    elif private:
        os.fchmod(fd, 0o600)
    else:
        os.fchmod(fd, 0o644 & ~_current_umask())


def _chown(fd: int, uid: int, gid: int) -> None:
    try:
        os.fchown(fd, uid, gid)
    except PermissionError:
        # Not root: the owner cannot be given away, but a group we belong to can be set.
        try:
            os.fchown(fd, -1, gid)
        except PermissionError as exc:
            raise StoreError(
                f"cannot give the new file group {gid}: this agent is not a member of it"
            ) from exc


def _group_id(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise StoreError(f"group {group!r} (store property file_group) does not exist") from None


def _current_umask() -> int:
    # /proc avoids os.umask's set-and-restore, which races with other threads creating files.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pause_for_fault_injection() -> None:
    value = os.environ.get(WRITE_PAUSE_ENV)
    if not value:
        return
    try:
        seconds = float(value)
    except ValueError:
        return
    if seconds > 0:
        time.sleep(seconds)
