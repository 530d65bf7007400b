"""The agent's management jobs (add, remove, create, reenrollment) against real files.

The platform side of these jobs is exercised end to end in tests/e2e; here the agent's own
rules are shown: the sealed key opens only for its job attempt and its agent, the store
type's declaration is enforced before the store is touched, keys made on the device stay in
the agent's state folder, and reload commands run after a write.
"""

from __future__ import annotations

import datetime as dt
import logging
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from orchestrators.agent.client import PlatformError
from orchestrators.agent.config import private_key_pem, write_private_file
from orchestrators.agent.management import (
    ManagementContext,
    csr_build,
    key_generate,
    management_run,
)
from orchestrators.protocol import JobOutcome, JobType
from orchestrators.sdk import StoreError
from orchestrators.transit import seal, transit_context
from tests.certs import Issued, agent_key, issue
from tests.orchestrators.management_support import (
    FolderStore,
    KeylessFolderStore,
    files_below,
    job_for,
    sha256_of,
)


def add_payload(leaf: Issued, **extra: Any) -> dict[str, Any]:
    return {
        "deployment_id": "d-1",
        "alias": "site",
        "certificate": leaf.pem,
        "chain": [],
        "certificate_sha256": leaf.sha256,
        "overwrite": False,
        "create_store": False,
        "entry_parameters": {"entry_password": "pw"},
        "private_key": None,
        "device_key": None,
        **extra,
    }


def sealed(leaf: Issued, recipient: ec.EllipticCurvePrivateKey, *, job_id: str, attempt: int):
    return seal(
        leaf.key_pem.encode(),
        recipient.public_key(),
        context=transit_context(job_id=job_id, attempt=attempt),
    )


class CsrSigner:
    """Stands in for the platform's ``POST jobs/<id>/csr``: signs with a real test CA, or
    answers pending / refused."""

    def __init__(self, ca: Issued, mode: str = "issued") -> None:
        self.ca, self.mode, self.csrs = ca, mode, []

    def submit_csr(self, job_id: str, *, attempt: int, csr: str) -> tuple[int, dict[str, Any]]:
        request = x509.load_pem_x509_csr(csr.encode())
        self.csrs.append(request)
        if self.mode == "refused":
            raise PlatformError(400, "invalid", "the template does not allow example.org")
        if self.mode == "pending":
            return 202, {"state": "pending", "enrollment_id": "enr-42"}
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(request.subject)
            .issuer_name(self.ca.certificate.subject)
            .public_key(request.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self.ca.key, hashes.SHA256())
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        return 200, {
            "state": "issued",
            "certificate": pem,
            "chain": [self.ca.pem],
            "enrollment_id": "enr-7",
        }


def context_for(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, client: Any = None, **extra: Any
) -> ManagementContext:
    return ManagementContext(
        client=client,
        identity_keys=lambda: [key],
        device_keys_dir=tmp_path / "state" / "device-keys",
        **extra,
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    folder.mkdir()
    return folder


def test_a_sealed_key_is_opened_and_installed_with_its_certificate(
    tmp_path: Path, store: Path, ca: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    key = agent_key()
    leaf = issue("site.example", issuer=ca)
    job = job_for(
        store,
        JobType.ADD,
        add_payload(leaf, chain=[ca.pem], private_key=sealed(leaf, key, job_id="job-1", attempt=1)),
    )

    with caplog.at_level(logging.DEBUG):
        ended = management_run(job, FolderStore, context_for(tmp_path, key))

    assert ended.outcome is JobOutcome.SUCCESS, ended.message
    assert ended.message == "written"
    assert ended.result == {
        "alias": "site",
        "certificate_sha256": leaf.sha256,
        "written": True,
        "key_origin": "platform",
        "reload": None,
        "verification": None,
    }
    written = (store / "site.pem").read_text()
    installed = serialization.load_pem_private_key(written.encode(), password=None)
    assert installed.private_numbers() == leaf.key.private_numbers()
    assert [sha256_of(c) for c in _pems(written)] == [leaf.sha256, ca.sha256]
    assert "PRIVATE KEY" not in caplog.text


def test_the_same_add_again_is_a_no_op_success(tmp_path: Path, store: Path, ca: Issued) -> None:
    key = agent_key()
    leaf = issue("site.example", issuer=ca)
    first = job_for(store, JobType.ADD, add_payload(leaf, entry_parameters={}))
    assert management_run(first, FolderStore, context_for(tmp_path, key)).result["written"]
    before = (store / "site.pem").stat().st_mtime_ns

    again = management_run(first, FolderStore, context_for(tmp_path, key))

    assert again.outcome is JobOutcome.SUCCESS
    assert again.message == "already written"
    assert again.result["written"] is False
    assert (store / "site.pem").stat().st_mtime_ns == before


def test_an_envelope_sealed_for_another_job_attempt_is_refused_before_the_store(
    tmp_path: Path, store: Path, ca: Issued
) -> None:
    key = agent_key()
    leaf = issue("site.example", issuer=ca)
    envelope = sealed(leaf, key, job_id="job-1", attempt=1)

    for job_id, attempt in (("job-1", 2), ("job-2", 1)):
        job = job_for(
            store,
            JobType.ADD,
            add_payload(leaf, private_key=envelope),
            job_id=job_id,
            attempt=attempt,
        )
        ended = management_run(job, FolderStore, context_for(tmp_path, key))

        assert ended.outcome is JobOutcome.FAILURE
        assert "does not open" in ended.message
        assert ended.reached_store is False
    assert files_below(store) == set()


def test_an_envelope_for_another_agent_is_refused(tmp_path: Path, store: Path, ca: Issued) -> None:
    leaf = issue("site.example", issuer=ca)
    job = job_for(
        store,
        JobType.ADD,
        add_payload(leaf, private_key=sealed(leaf, agent_key(), job_id="job-1", attempt=1)),
    )

    ended = management_run(job, FolderStore, context_for(tmp_path, agent_key()))

    assert ended.outcome is JobOutcome.FAILURE
    assert "sealed for another orchestrator key" in ended.message
    assert not ended.final  # the next attempt is sealed again, to the key the agent has now
    assert files_below(store) == set()


def test_an_envelope_sealed_to_the_pending_renewal_key_opens_too(
    tmp_path: Path, store: Path, ca: Issued
) -> None:
    current, pending = agent_key(), agent_key()
    leaf = issue("site.example", issuer=ca)
    job = job_for(
        store,
        JobType.ADD,
        add_payload(leaf, private_key=sealed(leaf, pending, job_id="job-1", attempt=1)),
    )
    context = ManagementContext(client=None, identity_keys=lambda: [current, pending])

    ended = management_run(job, FolderStore, context)

    assert ended.outcome is JobOutcome.SUCCESS, ended.message
    assert ended.result["key_origin"] == "platform"


def test_a_key_for_a_store_type_that_forbids_keys_fails_before_the_store(
    tmp_path: Path, store: Path, ca: Issued
) -> None:
    key = agent_key()
    leaf = issue("site.example", issuer=ca)
    job = job_for(
        store,
        JobType.ADD,
        add_payload(leaf, private_key=sealed(leaf, key, job_id="job-1", attempt=1)),
        store_type="KEYLESS",
    )

    ended = management_run(job, KeylessFolderStore, context_for(tmp_path, key))

    assert ended.outcome is JobOutcome.FAILURE
    assert ended.message == "store type KEYLESS does not take private keys; nothing was written"
    assert ended.final  # another attempt would be refused the same way
    assert files_below(store) == set()


def test_a_missing_required_entry_parameter_fails_before_the_store(
    tmp_path: Path, store: Path, ca: Issued
) -> None:
    key = agent_key()
    leaf = issue("site.example", issuer=ca)
    payload = add_payload(
        leaf, entry_parameters={}, private_key=sealed(leaf, key, job_id="job-1", attempt=1)
    )

    ended = management_run(
        job_for(store, JobType.ADD, payload), FolderStore, context_for(tmp_path, key)
    )

    assert ended.outcome is JobOutcome.FAILURE
    assert ended.message == "missing required entry parameter: Entry password"
    assert ended.final
    assert files_below(store) == set()


def test_a_key_that_is_not_the_certificates_is_refused(
    tmp_path: Path, store: Path, ca: Issued
) -> None:
    key = agent_key()
    leaf, other = issue("site.example", issuer=ca), issue("other.example", issuer=ca)
    payload = add_payload(leaf, private_key=sealed(other, key, job_id="job-1", attempt=1))

    ended = management_run(
        job_for(store, JobType.ADD, payload), FolderStore, context_for(tmp_path, key)
    )

    assert ended.outcome is JobOutcome.FAILURE
    assert "does not belong to the certificate" in ended.message
    assert files_below(store) == set()


def test_a_certificate_that_does_not_match_its_fingerprint_is_refused(
    tmp_path: Path, store: Path, ca: Issued
) -> None:
    leaf = issue("site.example", issuer=ca)
    payload = add_payload(leaf, certificate_sha256=ca.sha256, entry_parameters={})

    ended = management_run(
        job_for(store, JobType.ADD, payload), FolderStore, context_for(tmp_path, agent_key())
    )

    assert ended.outcome is JobOutcome.FAILURE
    assert "does not match its SHA-256" in ended.message


def test_a_device_key_is_installed_then_deleted(tmp_path: Path, store: Path, ca: Issued) -> None:
    leaf = issue("site.example", issuer=ca)
    keys = tmp_path / "state" / "device-keys"
    keys.mkdir(parents=True)
    write_private_file(keys / "enr-42.pem", private_key_pem(leaf.key))
    job = job_for(store, JobType.ADD, add_payload(leaf, device_key="enr-42"))

    ended = management_run(job, FolderStore, context_for(tmp_path, agent_key()))

    assert ended.outcome is JobOutcome.SUCCESS, ended.message
    assert ended.result["key_origin"] == "device"
    assert "PRIVATE KEY" in (store / "site.pem").read_text()
    assert not (keys / "enr-42.pem").exists()


@pytest.mark.parametrize("reference", ["../key", "/etc/passwd", "a/b", ".hidden", ""])
def test_a_device_key_reference_never_names_another_path(
    tmp_path: Path, store: Path, ca: Issued, reference: str
) -> None:
    leaf = issue("site.example", issuer=ca)
    job = job_for(store, JobType.ADD, add_payload(leaf, device_key=reference or None))
    if not reference:
        job = job_for(store, JobType.ADD, add_payload(leaf, device_key=None))
        ended = management_run(job, FolderStore, context_for(tmp_path, agent_key()))
        assert ended.outcome is JobOutcome.SUCCESS  # no key asked for: installs without one
        return

    ended = management_run(job, FolderStore, context_for(tmp_path, agent_key()))

    assert ended.outcome is JobOutcome.FAILURE
    assert ended.message == "the job names a device key with an invalid reference"


def test_remove_and_create_report_what_they_did(tmp_path: Path, ca: Issued) -> None:
    store = tmp_path / "new-store"
    context = context_for(tmp_path, agent_key())
    created = management_run(job_for(store, JobType.CREATE, {}), FolderStore, context)
    assert (created.outcome, created.result) == (JobOutcome.SUCCESS, {"created": True})
    again = management_run(job_for(store, JobType.CREATE, {}), FolderStore, context)
    assert again.result == {"created": False}
    leaf = issue("site.example", issuer=ca)
    management_run(
        job_for(store, JobType.ADD, add_payload(leaf, entry_parameters={})), FolderStore, context
    )

    removed = management_run(
        job_for(store, JobType.REMOVE, {"alias": None, "certificate_sha256": leaf.sha256}),
        FolderStore,
        context,
    )
    nothing = management_run(
        job_for(store, JobType.REMOVE, {"alias": "site"}), FolderStore, context
    )
    neither = management_run(job_for(store, JobType.REMOVE, {}), FolderStore, context)

    assert (removed.outcome, removed.result["removed"]) == (JobOutcome.SUCCESS, True)
    assert (nothing.message, nothing.result["removed"]) == ("nothing to remove", False)
    assert neither.outcome is JobOutcome.FAILURE
    assert files_below(store) == set()


def test_the_reload_command_runs_after_a_write_and_its_failure_is_a_warning(
    tmp_path: Path, store: Path, ca: Issued
) -> None:
    marker = tmp_path / "reloaded"
    succeeding = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x'); print('ok')"]
    failing = [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"]
    first, second = issue("one.example", issuer=ca), issue("two.example", issuer=ca)

    ok = management_run(
        job_for(store, JobType.ADD, add_payload(first, entry_parameters={})),
        FolderStore,
        context_for(tmp_path, agent_key(), reload_commands={str(store): succeeding}),
    )
    no_op = management_run(
        job_for(store, JobType.ADD, add_payload(first, entry_parameters={})),
        FolderStore,
        context_for(tmp_path, agent_key(), reload_commands={str(store): succeeding}),
    )
    failed = management_run(
        job_for(store, JobType.ADD, add_payload(second, alias="two", entry_parameters={})),
        FolderStore,
        context_for(tmp_path, agent_key(), reload_commands={str(store): failing}),
    )

    assert ok.outcome is JobOutcome.SUCCESS
    assert ok.result["reload"] == {"ran": True, "exit_code": 0, "output": "ok\n"}
    assert no_op.result["reload"] is None  # nothing changed: nothing to reload
    assert marker.read_text() == "x"
    assert failed.outcome is JobOutcome.WARNING
    assert failed.message == "written; the reload command failed (exit 3): bad config"
    assert (store / "two.pem").exists()


def test_reenrollment_installs_a_key_made_here_that_never_left_the_machine(
    tmp_path: Path, store: Path, ca: Issued
) -> None:
    signer = CsrSigner(ca)
    payload = {
        "deployment_id": "d-1",
        "alias": "site",
        "overwrite": True,
        "key_type": "EC",
        "key_size": 384,
        "subject": "CN=site.example,O=Example",
        "sans": [{"type": "dns", "value": "site.example"}, {"type": "ip", "value": "127.0.0.1"}],
        "entry_parameters": {"entry_password": "pw"},
    }
    before = files_below(tmp_path)

    ended = management_run(
        job_for(store, JobType.REENROLLMENT, payload),
        FolderStore,
        context_for(tmp_path, agent_key(), signer),
    )

    assert ended.outcome is JobOutcome.SUCCESS, ended.message
    assert ended.result["key_origin"] == "device"
    assert ended.result["enrollment_id"] == "enr-7"
    (csr,) = signer.csrs
    assert csr.subject.rfc4514_string() == "CN=site.example,O=Example"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["site.example"]
    installed = serialization.load_pem_private_key((store / "site.pem").read_bytes(), password=None)
    assert isinstance(installed, ec.EllipticCurvePrivateKey)
    assert installed.curve.name == "secp384r1"
    assert _spki(installed.public_key()) == _spki(csr.public_key())
    # The key went into the store and nowhere else.
    assert files_below(tmp_path) - before == {"store/site.pem"}


def test_a_reenrollment_waiting_for_approval_keeps_its_key_in_the_state_folder(
    tmp_path: Path, store: Path, ca: Issued
) -> None:
    signer = CsrSigner(ca, mode="pending")
    payload = {
        "alias": "site",
        "key_type": "RSA",
        "key_size": 2048,
        "subject": "CN=site.example",
        "sans": [],
        "entry_parameters": {"entry_password": "pw"},
    }
    before = files_below(tmp_path)

    ended = management_run(
        job_for(store, JobType.REENROLLMENT, payload),
        FolderStore,
        context_for(tmp_path, agent_key(), signer),
    )

    assert ended.outcome is JobOutcome.SUCCESS
    assert ended.result == {"awaiting_approval": True, "enrollment_id": "enr-42"}
    assert files_below(tmp_path) - before == {"state/device-keys/enr-42.pem"}
    kept = tmp_path / "state" / "device-keys" / "enr-42.pem"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    key = serialization.load_pem_private_key(kept.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert _spki(key.public_key()) == _spki(signer.csrs[0].public_key())
    assert files_below(store) == set()


def test_a_reenrollment_the_template_refuses_fails_with_the_platforms_message(
    tmp_path: Path, store: Path, ca: Issued
) -> None:
    payload = {
        "key_type": "Ed25519",
        "key_size": 0,
        "alias": "site",
        "subject": "CN=example.org",
        "sans": [],
        "entry_parameters": {"entry_password": "pw"},
    }

    ended = management_run(
        job_for(store, JobType.REENROLLMENT, payload),
        FolderStore,
        context_for(tmp_path, agent_key(), CsrSigner(ca, mode="refused")),
    )

    assert ended.outcome is JobOutcome.FAILURE
    assert ended.message == (
        "the platform refused the certificate request: the template does not allow example.org"
    )
    assert files_below(tmp_path) == set()


@pytest.mark.parametrize(
    ("key_type", "key_size", "expected"),
    [("RSA", 1024, "RSA key size"), ("EC", 300, "EC key size"), ("DSA", 2048, "key type")],
)
def test_key_types_and_sizes_outside_the_allowed_ones_are_refused(
    key_type: str, key_size: int, expected: str
) -> None:
    with pytest.raises(StoreError, match=expected):
        key_generate(key_type, key_size)


def test_an_ed25519_csr_carries_every_kind_of_name() -> None:
    key = key_generate("Ed25519", 0)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    pem = csr_build(
        key,
        "CN=a.example",
        [
            {"type": "dns", "value": "a.example"},
            {"type": "ip", "value": "::1"},
            {"type": "email", "value": "ops@a.example"},
            {"type": "uri", "value": "spiffe://a.example/x"},
        ],
    )
    csr = x509.load_pem_x509_csr(pem.encode())
    assert csr.is_signature_valid
    with pytest.raises(StoreError, match="not an RFC 4514 name"):
        csr_build(key, "not a name", [])
    with pytest.raises(StoreError, match="not valid"):
        csr_build(key, "CN=a", [{"type": "ip", "value": "999.1.1.1"}])


def _pems(text: str) -> list[str]:
    return [
        c.public_bytes(serialization.Encoding.PEM).decode()
        for c in x509.load_pem_x509_certificates(text.encode())
    ]


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_java_keystore_entry_is_removed_by_its_fingerprint(tmp_path: Path, ca: Issued) -> None:
    """Java stores need an alias to write an entry, not to remove one."""
    from dataclasses import replace

    from orchestrators.stores.jks import JksStore

    def jks_job(job_type: JobType, payload: dict[str, Any]) -> Any:
        job = job_for(tmp_path / "app.jks", job_type, payload, store_type="JKS")
        return replace(job, store=replace(job.store, password="changeit"))

    context = context_for(tmp_path, agent_key())
    leaf = issue("app.example", issuer=ca)
    assert management_run(jks_job(JobType.CREATE, {}), JksStore, context).result["created"]
    added = management_run(
        jks_job(JobType.ADD, add_payload(leaf, alias="web", entry_parameters={})),
        JksStore,
        context,
    )
    assert added.outcome is JobOutcome.SUCCESS, added.message
    removed = management_run(
        jks_job(JobType.REMOVE, {"alias": None, "certificate_sha256": leaf.sha256}),
        JksStore,
        context,
    )
    assert (removed.outcome, removed.result["removed"]) == (JobOutcome.SUCCESS, True)
    assert list(JksStore().inventory(jks_job(JobType.INVENTORY, {}))) == []
