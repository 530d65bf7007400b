"""orchestrators/stores/atomic.py: transactional file writes, on real files in real folders."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrators.sdk import StoreError
from orchestrators.stores.atomic import (
    BACKUP_MARKER,
    TEMP_MARKER,
    remove_file_atomically,
    remove_stale_temporary_files,
    store_write_options,
    write_file_atomically,
)

REPO = Path(__file__).resolve().parents[2]


def accept(data: bytes) -> None:
    """A verify callback that accepts anything."""


def refuse(data: bytes) -> None:
    raise StoreError("the new file does not parse")


def leftovers(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if TEMP_MARKER in name)


def test_a_new_file_is_written_with_its_content_and_no_temporary_file_is_left(
    tmp_path: Path,
) -> None:
    target = tmp_path / "site.pem"

    write_file_atomically(target, b"new", verify=accept)

    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_verify_receives_the_bytes_read_back_from_disk(tmp_path: Path) -> None:
    seen: list[bytes] = []

    write_file_atomically(tmp_path / "a.pem", b"payload", verify=seen.append)

    assert seen == [b"payload"]


def test_a_verify_failure_leaves_the_old_file_and_removes_the_temporary_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "site.pem"
    target.write_bytes(b"old")

    with pytest.raises(StoreError, match="does not parse"):
        write_file_atomically(target, b"broken", verify=refuse)

    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_rewrite_keeps_the_owner_group_and_mode_of_the_file_it_replaces(
    tmp_path: Path,
) -> None:
    target = tmp_path / "site.pem"
    target.write_bytes(b"old")
    os.chown(target, 1234, 4321)
    os.chmod(target, 0o640)

    write_file_atomically(target, b"new", verify=accept, private=True)

    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 4321, 0o640)
    assert target.read_bytes() == b"new"


def test_a_new_private_file_is_0600_and_takes_the_folders_group(tmp_path: Path) -> None:
    os.chown(tmp_path, 0, 4321)

    write_file_atomically(tmp_path / "key.pem", b"k", verify=accept, private=True)

    st = (tmp_path / "key.pem").stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_gid == 4321


def test_a_new_public_file_is_0644_minus_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_file_atomically(tmp_path / "cert.pem", b"c", verify=accept)
    finally:
        os.umask(old)

    assert stat.S_IMODE((tmp_path / "cert.pem").stat().st_mode) == 0o640


def test_a_new_file_takes_the_store_file_mode_and_group(tmp_path: Path) -> None:
    write_file_atomically(
        tmp_path / "cert.pem", b"c", verify=accept, private=True, file_mode="0640", file_group="7"
    )

    st = (tmp_path / "cert.pem").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, 7)


def test_an_unknown_group_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="group 'no-such-group-xyz'"):
        write_file_atomically(
            tmp_path / "c.pem", b"c", verify=accept, file_group="no-such-group-xyz"
        )

    assert os.listdir(tmp_path) == []


def test_a_backup_keeps_the_previous_content_beside_the_file(tmp_path: Path) -> None:
    target = tmp_path / "site.pem"
    target.write_bytes(b"old")

    write_file_atomically(target, b"new", verify=accept, backup=True)
    write_file_atomically(target, b"newer", verify=accept, backup=True)

    backups = sorted(path for path in tmp_path.iterdir() if BACKUP_MARKER in path.name)
    assert [path.read_bytes() for path in backups] == [b"old", b"new"]
    assert backups[0].name.startswith("site.pem.certyard-bak-2")
    assert target.read_bytes() == b"newer"


def test_a_link_is_kept_and_its_target_replaced(tmp_path: Path) -> None:
    (tmp_path / "v1.pem").write_bytes(b"old")
    (tmp_path / "current.pem").symlink_to("v1.pem")

    write_file_atomically(tmp_path / "current.pem", b"new", verify=accept)

    assert (tmp_path / "current.pem").is_symlink()
    assert (tmp_path / "v1.pem").read_bytes() == b"new"


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        write_file_atomically(tmp_path / "nope" / "a.pem", b"x", verify=accept)


def test_a_temporary_file_left_by_a_crash_is_removed_by_the_next_write(tmp_path: Path) -> None:
    # A crashed agent's temporary file (the real thing: a process that wrote and was killed
    # before the rename, here simulated by writing the file and exiting without renaming).
    stale = tmp_path / f".site.pem{TEMP_MARKER}deadbeef"
    subprocess.run([sys.executable, "-c", f"open({str(stale)!r}, 'wb').write(b'half')"], check=True)
    (tmp_path / "site.pem").write_bytes(b"old")

    write_file_atomically(tmp_path / "other.pem", b"x", verify=accept)

    assert leftovers(tmp_path) == []
    assert (tmp_path / "site.pem").read_bytes() == b"old"


def test_a_temporary_file_locked_by_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    live = tmp_path / f".site.pem{TEMP_MARKER}cafe"
    live.write_bytes(b"in progress")
    # The lock is taken by another process: flock locks belong to the open file description.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl,sys,os; fd=os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
            str(live),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        assert remove_stale_temporary_files(tmp_path) == 0
        assert live.exists()
    finally:
        holder.communicate("")
    assert remove_stale_temporary_files(tmp_path) == 1


def test_remove_deletes_the_file_and_keeps_a_backup_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "site.pem"
    target.write_bytes(b"old")

    assert remove_file_atomically(target, backup=True) is True
    assert remove_file_atomically(target) is False

    assert not target.exists()
    assert [path.read_bytes() for path in tmp_path.iterdir()] == [b"old"]


def test_store_write_options_turn_properties_into_keyword_arguments() -> None:
    assert store_write_options({}) == {"backup": False, "file_mode": "", "file_group": ""}
    assert store_write_options({"backup": True, "file_mode": "0640", "file_group": "ssl-cert"}) == {
        "backup": True,
        "file_mode": "0640",
        "file_group": "ssl-cert",
    }


@pytest.mark.parametrize(
    "properties",
    [{"file_mode": "rw-r-----"}, {"file_mode": "0999"}, {"file_group": "a b"}, {"backup": "yes"}],
)
def test_store_write_options_refuse_malformed_values(properties: dict) -> None:
    with pytest.raises(StoreError, match="store property"):
        store_write_options(properties)


@pytest.fixture
def folder_nobody_can_write() -> Iterator[Path]:
    # Outside pytest's root-only tmp folder, so that user nobody can reach it.
    folder = Path(tempfile.mkdtemp(prefix="certyard-ro-", dir="/tmp"))
    os.chmod(folder, 0o755)  # noqa: S103 (nobody must reach it, and only read)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_a_read_only_folder_is_a_clear_error_and_the_old_file_is_intact(
    folder_nobody_can_write: Path,
) -> None:
    # Root writes anywhere, so the write runs in a real child process as user nobody.
    target = folder_nobody_can_write / "site.pem"
    target.write_bytes(b"old")
    program = (
        # Everything is imported before dropping root: the interpreter lives under /root.
        "import os, sys\n"
        "from pathlib import Path\n"
        "from orchestrators.stores.atomic import write_file_atomically\n"
        "from orchestrators.sdk import StoreError\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        "    write_file_atomically(Path(sys.argv[1]), b'new', verify=lambda data: None)\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
    )
    if os.geteuid() != 0:
        pytest.skip("needs root to run the writer as user nobody")

    result = subprocess.run(
        [sys.executable, "-c", program, str(target)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{REPO}/platform:{REPO}"},
        check=True,
    )

    assert result.stdout.strip() == f"cannot write in {folder_nobody_can_write}: permission denied"
    assert target.read_bytes() == b"old"
    assert leftovers(folder_nobody_can_write) == []
