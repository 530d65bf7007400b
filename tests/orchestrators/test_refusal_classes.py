"""A refusal the agent meets is permanent (the job ends at once, ``final``) or transient
(the platform retries it), for inventory and management jobs alike.

The store types here are the real built-in ones on real files; the platform is the wire
recorder of ``test_runner_management`` (the platform's side of ``final`` has its own tests,
and tests/e2e/test_roots_live.py runs the whole loop).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from orchestrators.agent.client import PlatformClient
from orchestrators.agent.management import ManagementContext, management_run
from orchestrators.agent.runner import Runner
from orchestrators.protocol import JobOutcome, JobType
from orchestrators.sdk import (
    CertificateMaterial,
    InventoryEntry,
    JobConfiguration,
    StoreError,
    TransientStoreError,
    os_error_transient,
)
from orchestrators.stores.jks import JksStore
from orchestrators.stores.pem import PemStore
from orchestrators.stores.pkcs12 import Pkcs12Store
from tests.certs import Issued, agent_key, issue
from tests.orchestrators.management_support import FolderStore, job_for
from tests.orchestrators.test_management import add_payload
from tests.orchestrators.test_runner_management import RecordingPlatform, config

# -- the classification itself -------------------------------------------------------------


def test_store_errors_are_permanent_unless_said_otherwise() -> None:
    assert StoreError("store path /x does not exist").transient is False
    assert StoreError("device busy", transient=True).transient is True
    assert TransientStoreError("timed out").transient is True
    assert TransientStoreError("forced", transient=False).transient is False
    assert isinstance(TransientStoreError("x"), StoreError)


def test_real_os_errors_are_classified_by_what_another_attempt_would_meet(
    tmp_path: Path,
) -> None:
    def raised(action: Any) -> OSError:
        with pytest.raises(OSError) as caught:
            action()
        return caught.value

    # Permanent: nothing changes until someone acts.
    missing = raised(lambda: (tmp_path / "missing.pem").read_bytes())
    assert missing.errno == errno.ENOENT and not os_error_transient(missing)
    (tmp_path / "file").write_text("x")
    not_a_folder = raised(lambda: os.listdir(tmp_path / "file"))
    assert not_a_folder.errno == errno.ENOTDIR and not os_error_transient(not_a_folder)
    a_folder = raised(tmp_path.read_bytes)
    assert a_folder.errno == errno.EISDIR and not os_error_transient(a_folder)

    # Transient: the kernel says "not now".
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(read_end, False)
        empty = raised(lambda: os.read(read_end, 1))
    finally:
        os.close(read_end)
        os.close(write_end)
    assert empty.errno == errno.EAGAIN and os_error_transient(empty)
    locked_path = tmp_path / "locked"
    locked_path.write_text("x")
    holder = os.open(locked_path, os.O_RDONLY)
    other = os.open(locked_path, os.O_RDONLY)  # another open file description: another lock
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        locked = raised(lambda: fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB))
    finally:
        os.close(other)
        os.close(holder)
    assert locked.errno in (errno.EAGAIN, errno.EWOULDBLOCK) and os_error_transient(locked)
    for code in (errno.EIO, errno.EBUSY, errno.ETIMEDOUT):
        assert os_error_transient(OSError(code, os.strerror(code)))
    assert os_error_transient(TimeoutError("the appliance did not answer"))
    assert not os_error_transient(PermissionError(errno.EACCES, "Permission denied"))


# -- inventory jobs through the runner ------------------------------------------------------


def _inventory_completed(
    tmp_path: Path,
    store_path: str,
    store_type: str,
    *,
    roots: tuple[str, ...] | None,
    password: str | None = None,
    extra_types: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one inventory job of ``store_path`` in a runner; the ``complete`` body sent."""
    wire = config("j1", "inventory", store_path, {})
    wire["store"].update(store_type=store_type, password=password)
    platform = RecordingPlatform({"j1": wire})
    client = PlatformClient(
        "http://platform.test",
        orchestrator_id="orch-1",
        private_key=agent_key(),
        transport=httpx.MockTransport(platform),
    )
    types = {"PEM": PemStore, "PKCS12": Pkcs12Store, "JKS": JksStore, **(extra_types or {})}
    runner = Runner(client, types, state_root=tmp_path / "state", store_roots=roots)
    runner._run_job({"id": "j1", "type": "inventory", "attempt": 1})
    (complete,) = platform.sent("/complete")
    return complete


def test_an_inventory_outside_the_roots_is_final(tmp_path: Path) -> None:
    roots, outside = tmp_path / "roots", tmp_path / "outside"
    roots.mkdir()
    outside.mkdir()
    (roots / "link").symlink_to(outside)

    for path in (str(outside), str(roots / "link")):
        complete = _inventory_completed(tmp_path, path, "PEM", roots=(str(roots),))
        assert complete["status"] == "failure"
        assert complete.get("final") is True
        assert "is outside the folders this orchestrator may read" in complete["message"]
        assert "certyard-orchestrator roots --add" in complete["message"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("relative/store", "is not absolute"),
        ("/srv/../etc/ssl/certs", "contains '..'"),
    ],
)
def test_a_path_no_orchestrator_reads_is_final_even_for_an_unguarded_agent(
    tmp_path: Path, path: str, expected: str
) -> None:
    complete = _inventory_completed(tmp_path, path, "PEM", roots=None)

    assert complete["status"] == "failure" and complete.get("final") is True
    assert expected in complete["message"]


def _pkcs12_file(path: Path, leaf: Issued, password: bytes) -> None:
    key = serialization.load_pem_private_key(leaf.key_pem.encode(), password=None)
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"site",
            key,  # type: ignore[arg-type]
            leaf.certificate,
            None,
            serialization.BestAvailableEncryption(password),
        )
    )


def test_permanent_store_refusals_end_the_inventory_at_once(tmp_path: Path, ca: Issued) -> None:
    roots = (str(tmp_path),)
    _pkcs12_file(tmp_path / "store.p12", issue("site.example", issuer=ca), b"right")
    (tmp_path / "keystore.jks").write_bytes(b"this is no keystore at all")
    os.mkfifo(tmp_path / "fifo")
    cases = {
        "no such path": (str(tmp_path / "missing"), "PEM", None, "does not exist"),
        "not a file or folder": (str(tmp_path / "fifo"), "PEM", None, "neither a directory"),
        "a folder, not a keystore": (str(tmp_path), "PKCS12", "x", "is a folder"),
        "wrong password": (str(tmp_path / "store.p12"), "PKCS12", "wrong", "password"),
        "unparseable": (str(tmp_path / "keystore.jks"), "JKS", "x", "is not a JKS keystore"),
    }
    for why, (path, store_type, password, expected) in cases.items():
        complete = _inventory_completed(tmp_path, path, store_type, roots=roots, password=password)
        assert complete["status"] == "failure", why
        assert complete.get("final") is True, (why, complete)
        assert expected in complete["message"], (why, complete["message"])

    # The same store with its right password reads: the refusal was the password's.
    good = _inventory_completed(
        tmp_path, str(tmp_path / "store.p12"), "PKCS12", roots=roots, password="right"
    )
    assert good["status"] == "success" and "final" not in good


class FlakyStore(FolderStore):
    """A store type of a third party whose device answers "busy" now and then."""

    short_name: ClassVar[str] = "FLAKY"
    error: ClassVar[Exception] = TransientStoreError("the appliance is busy; try again")

    def inventory(self, job: JobConfiguration) -> Iterator[InventoryEntry]:
        raise self.error

    def add(self, job: JobConfiguration, material: CertificateMaterial) -> str:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        TransientStoreError("the appliance is busy; try again"),
        StoreError("cannot read: Input/output error", transient=True),
        OSError(errno.EIO, "Input/output error"),  # not a StoreError: an agent bug, retried
    ],
    ids=["transient-class", "transient-flag", "bare-os-error"],
)
def test_transient_inventory_refusals_keep_their_retries(tmp_path: Path, error: Exception) -> None:
    class Store(FlakyStore):
        pass

    Store.error = error
    complete = _inventory_completed(
        tmp_path, str(tmp_path), "FLAKY", roots=(str(tmp_path),), extra_types={"FLAKY": Store}
    )

    assert complete["status"] == "failure"
    assert "final" not in complete  # the platform retries while attempts remain


# -- management jobs: the same rule -------------------------------------------------------


def test_management_uses_the_same_classification(tmp_path: Path, ca: Issued) -> None:
    store = tmp_path / "store"
    store.mkdir()
    leaf = issue("site.example", issuer=ca)
    job = job_for(store, JobType.ADD, add_payload(leaf), store_type="FLAKY")
    context = ManagementContext(client=None, identity_keys=lambda: [agent_key()])

    class Busy(FlakyStore):
        error = TransientStoreError("the appliance is busy; try again")

    class Refused(FlakyStore):
        error = StoreError("the appliance refuses this certificate")

    busy = management_run(job, Busy, context)
    refused = management_run(job, Refused, context)

    assert (busy.outcome, busy.final) == (JobOutcome.FAILURE, False)
    assert (refused.outcome, refused.final) == (JobOutcome.FAILURE, True)
