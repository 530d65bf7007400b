"""The JKS and JCEKS store types on real keystores, with the JDK's keytool as the judge.

Keystores made by ``keytool`` are inventoried and written back; what the store types write is
listed by ``keytool -list -v`` and its keys exported by ``keytool -importkeystore`` to PKCS#12
and read by ``openssl pkcs12``, which proves the key protection is what Java expects.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orchestrators.agent.store_types import load_store_types
from orchestrators.protocol import JobType, StoreOperation
from orchestrators.sdk import (
    CertificateMaterial,
    JobConfiguration,
    StoreConfiguration,
    StoreError,
)
from orchestrators.stores import jks_codec
from orchestrators.stores.jks import (
    INTEGRITY_CHECK_FAILED,
    NOT_A_CERTIFICATE,
    JavaKeystore,
    JceksStore,
    JksStore,
)
from tests.certs import Issued, issue

pytestmark = pytest.mark.skipif(shutil.which("keytool") is None, reason="needs the JDK's keytool")

PASSWORD = "changeit"
STORES: dict[str, type[JavaKeystore]] = {"JKS": JksStore, "JCEKS": JceksStore}
KINDS = pytest.mark.parametrize("kind", ["JKS", "JCEKS"])


# -- helpers -----------------------------------------------------------------------------------


def keytool(*args: str) -> str:
    result = subprocess.run(
        ["keytool", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def listing(path: Path, kind: str, password: str = PASSWORD) -> dict[str, dict[str, Any]]:
    """``keytool -list -v`` as {alias: {"type", "chain": [sha256 hex, ...]}}."""
    entries: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] = {}
    output = keytool(
        "-list", "-v", "-storetype", kind, "-keystore", str(path), "-storepass", password
    )
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("Alias name:"):
            current = {"type": None, "chain": []}
            entries[line.split(":", 1)[1].strip()] = current
        elif line.startswith("Entry type:"):
            current["type"] = line.split(":", 1)[1].strip()
        elif line.startswith("SHA256:"):
            current["chain"].append(line.split(":", 1)[1].strip().replace(":", "").lower())
    return entries


def job(
    path: Path,
    kind: str,
    *,
    password: str | None = PASSWORD,
    payload: dict[str, Any] | None = None,
    roots: tuple[str, ...] | None = None,
    job_type: JobType = JobType.ADD,
) -> JobConfiguration:
    return JobConfiguration(
        job_id="job-1",
        type=job_type,
        attempt=1,
        store=StoreConfiguration(
            id="store-1",
            store_type=kind,
            client_machine="localhost",
            store_path=str(path),
            password=password,
        ),
        payload=payload or {},
        store_roots=roots,
    )


def material(
    issued: Issued,
    alias: str | None,
    *,
    chain: tuple[Issued, ...] = (),
    key: bool = True,
    overwrite: bool = False,
    entry_password: str = "",
) -> CertificateMaterial:
    return CertificateMaterial(
        certificate=issued.pem,
        chain=tuple(item.pem for item in chain),
        private_key=issued.key if key else None,
        alias=alias,
        overwrite=overwrite,
        entry_parameters={"entry_password": entry_password} if entry_password else {},
        certificate_sha256=issued.sha256,
    )


def pem_sha256(pem: str) -> str:
    return hashlib.sha256(
        x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    ).hexdigest()


def keytool_keystore(folder: Path, kind: str, trusted: Issued) -> Path:
    """A keystore made by keytool: key pair ``MyKey`` and trusted certificate ``Partner``."""
    path = folder / f"made.{kind.lower()}"
    keytool(
        "-genkeypair", "-alias", "MyKey", "-keyalg", "EC", "-groupname", "secp256r1",
        "-dname", "CN=made by keytool", "-validity", "30", "-storetype", kind,
        "-keystore", str(path), "-storepass", PASSWORD, "-keypass", PASSWORD,
    )  # fmt: skip
    certificate = folder / "partner.der"
    certificate.write_bytes(trusted.der)
    keytool(
        "-importcert", "-noprompt", "-alias", "Partner", "-file", str(certificate),
        "-storetype", kind, "-keystore", str(path), "-storepass", PASSWORD,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def ca() -> Issued:
    return issue("JKS test CA", ca=True)


@pytest.fixture
def leaf(ca: Issued) -> Issued:
    return issue("leaf.example", issuer=ca)


# -- reading -----------------------------------------------------------------------------------


@KINDS
def test_a_keystore_made_by_keytool_is_inventoried_one_entry_per_alias(
    tmp_path: Path, kind: str, ca: Issued
) -> None:
    path = keytool_keystore(tmp_path, kind, ca)
    expected = listing(path, kind)

    entries = {entry.alias: entry for entry in STORES[kind]().inventory(job(path, kind))}

    assert sorted(entries) == ["mykey", "partner"]
    assert entries["mykey"].private_key is True
    assert [pem_sha256(pem) for pem in entries["mykey"].certificates] == expected["mykey"]["chain"]
    assert entries["partner"].private_key is False
    assert [pem_sha256(pem) for pem in entries["partner"].certificates] == [ca.sha256]
    assert not any(entry.rejected for entry in entries.values())


@KINDS
def test_a_wrong_store_password_fails_and_the_keystore_is_not_touched(
    tmp_path: Path, kind: str, ca: Issued, leaf: Issued
) -> None:
    path = keytool_keystore(tmp_path, kind, ca)
    before = path.read_bytes()
    store = STORES[kind]()

    with pytest.raises(StoreError, match="password is wrong, or the file is damaged"):
        store.inventory(job(path, kind, password="wrong-password"))
    with pytest.raises(StoreError) as refused:
        store.add(job(path, kind, password="wrong-password"), material(leaf, "new"))

    assert str(refused.value) == INTEGRITY_CHECK_FAILED
    assert path.read_bytes() == before


@KINDS
def test_a_corrupt_keystore_is_reported_and_never_overwritten(
    tmp_path: Path, kind: str, ca: Issued, leaf: Issued
) -> None:
    path = keytool_keystore(tmp_path, kind, ca)
    damaged = path.read_bytes()[:-60]
    path.write_bytes(damaged)
    store = STORES[kind]()

    with pytest.raises(StoreError, match=f"is a damaged {kind} keystore: the file is truncated"):
        store.inventory(job(path, kind))
    with pytest.raises(StoreError, match="damaged"):
        store.add(job(path, kind), material(leaf, "new"))
    with pytest.raises(StoreError, match="damaged"):
        store.remove(job(path, kind), alias="mykey", certificate_sha256=None)

    assert path.read_bytes() == damaged


def test_a_file_that_is_not_a_java_keystore_is_named_for_what_it_is(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jks"
    garbage.write_bytes(b"not a keystore at all")
    pkcs12 = tmp_path / "store.p12"
    pkcs12.write_bytes(b"\x30\x82\x01\x00" + bytes(256))
    jceks = tmp_path / "store.jceks"
    JceksStore().create(job(jceks, "JCEKS"))

    with pytest.raises(StoreError, match="is not a JKS keystore"):
        JksStore().inventory(job(garbage, "JKS"))
    with pytest.raises(StoreError, match="looks like a PKCS#12 file"):
        JksStore().inventory(job(pkcs12, "JKS"))
    with pytest.raises(StoreError, match="is a JCEKS keystore, not JKS"):
        JksStore().inventory(job(jceks, "JKS"))
    with pytest.raises(StoreError, match="does not exist"):
        JksStore().inventory(job(tmp_path / "missing.jks", "JKS"))


def test_a_jceks_secret_key_is_a_rejected_entry_and_kept_byte_for_byte_across_a_rewrite(
    tmp_path: Path, leaf: Issued
) -> None:
    path = tmp_path / "secrets.jceks"
    keytool(
        "-genseckey", "-alias", "Vault", "-keyalg", "AES", "-keysize", "256", "-storetype",
        "JCEKS", "-keystore", str(path), "-storepass", PASSWORD, "-keypass", PASSWORD,
    )  # fmt: skip
    secret_before = jks_codec.load(path.read_bytes(), PASSWORD).find("vault")
    store = JceksStore()

    [entry] = store.inventory(job(path, "JCEKS"))
    assert (entry.alias, entry.error) == ("vault", NOT_A_CERTIFICATE)

    store.add(job(path, "JCEKS"), material(leaf, "web"))
    with pytest.raises(StoreError, match="holds a secret key"):
        store.add(job(path, "JCEKS"), material(leaf, "Vault", overwrite=True))

    secret_after = jks_codec.load(path.read_bytes(), PASSWORD).find("vault")
    assert secret_before is not None and secret_after is not None
    assert secret_after.raw == secret_before.raw
    listed = listing(path, "JCEKS")
    assert listed["vault"]["type"] == "SecretKeyEntry"
    assert listed["web"]["type"] == "PrivateKeyEntry"


# -- writing -----------------------------------------------------------------------------------


@KINDS
def test_an_added_key_and_chain_are_a_private_key_entry_keytool_exports_with_its_key(
    tmp_path: Path, kind: str, ca: Issued, leaf: Issued
) -> None:
    path = tmp_path / f"new.{kind.lower()}"
    store = STORES[kind]()

    alias = store.add(
        job(path, kind, payload={"create_store": True}),
        material(leaf, "Web-Server", chain=(ca,), entry_password="entry-secret"),
    )

    assert alias == "web-server"
    assert listing(path, kind) == {
        "web-server": {"type": "PrivateKeyEntry", "chain": [leaf.sha256, ca.sha256]}
    }
    exported = tmp_path / "exported.p12"
    keytool(
        "-importkeystore", "-srckeystore", str(path), "-srcstoretype", kind,
        "-srcstorepass", PASSWORD, "-srcalias", "web-server", "-srckeypass", "entry-secret",
        "-destkeystore", str(exported), "-deststoretype", "PKCS12",
        "-deststorepass", "p12-secret",
    )  # fmt: skip
    opened = subprocess.run(
        ["openssl", "pkcs12", "-in", str(exported), "-passin", "pass:p12-secret", "-nodes"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    start = opened.index(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(opened[start:], password=None)
    assert key.private_numbers() == leaf.key.private_numbers()  # type: ignore[union-attr]
    [entry] = store.inventory(job(path, kind))
    assert entry.private_key is True
    assert [pem_sha256(pem) for pem in entry.certificates] == [leaf.sha256, ca.sha256]


@KINDS
def test_a_certificate_without_key_is_added_as_a_trusted_entry_beside_keytools_entries(
    tmp_path: Path, kind: str, ca: Issued, leaf: Issued
) -> None:
    path = keytool_keystore(tmp_path, kind, ca)
    before = jks_codec.load(path.read_bytes(), PASSWORD)

    alias = STORES[kind]().add(job(path, kind), material(leaf, "Trusted-Leaf", key=False))

    listed = listing(path, kind)
    assert alias == "trusted-leaf"
    assert listed["trusted-leaf"] == {"type": "trustedCertEntry", "chain": [leaf.sha256]}
    assert listed["mykey"]["type"] == "PrivateKeyEntry"
    after = jks_codec.load(path.read_bytes(), PASSWORD)
    assert [e.raw for e in after.entries[:2]] == [e.raw for e in before.entries]


def test_the_same_certificate_at_the_alias_is_not_written_again(
    tmp_path: Path, leaf: Issued
) -> None:
    path = tmp_path / "store.jks"
    store = JksStore()
    store.add(job(path, "JKS", payload={"create_store": True}), material(leaf, "site"))
    written = path.stat()

    alias = store.add(job(path, "JKS"), material(leaf, "SITE"))

    assert alias == "site"
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


def test_aliases_are_compared_as_java_does_and_another_certificate_needs_overwrite(
    tmp_path: Path, ca: Issued
) -> None:
    path = tmp_path / "store.jks"
    store = JksStore()
    first, second = issue("first", issuer=ca), issue("second", issuer=ca)
    store.add(job(path, "JKS", payload={"create_store": True}), material(first, "MyAlias"))
    before = path.read_bytes()

    with pytest.raises(StoreError) as refused:
        store.add(job(path, "JKS"), material(second, "myalias"))
    assert str(refused.value) == (
        "alias myalias already holds another certificate; set overwrite to replace it"
    )
    assert path.read_bytes() == before

    store.add(job(path, "JKS"), material(second, "MYALIAS", overwrite=True))
    assert listing(path, "JKS") == {
        "myalias": {"type": "PrivateKeyEntry", "chain": [second.sha256]}
    }


def test_remove_by_alias_and_by_fingerprint_leaves_the_other_entries(
    tmp_path: Path, ca: Issued, leaf: Issued
) -> None:
    path = keytool_keystore(tmp_path, "JCEKS", ca)
    store = JceksStore()
    store.add(job(path, "JCEKS"), material(leaf, "one", key=False))
    store.add(job(path, "JCEKS"), material(leaf, "two"))

    assert store.remove(job(path, "JCEKS"), alias="MyKey", certificate_sha256=None) is True
    assert sorted(listing(path, "JCEKS")) == ["one", "partner", "two"]
    assert store.remove(job(path, "JCEKS"), alias=None, certificate_sha256=leaf.sha256) is True
    assert sorted(listing(path, "JCEKS")) == ["partner"]
    # Asked again (a job offered again), or for an alias holding another certificate: no-op.
    assert store.remove(job(path, "JCEKS"), alias="one", certificate_sha256=None) is False
    assert (
        store.remove(job(path, "JCEKS"), alias="partner", certificate_sha256=leaf.sha256) is False
    )
    assert (
        store.remove(job(tmp_path / "gone.jceks", "JCEKS"), alias="x", certificate_sha256=None)
        is False
    )


@KINDS
def test_create_writes_an_empty_keystore_keytool_opens_and_leaves_an_existing_one(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / f"empty.{kind.lower()}"
    store = STORES[kind]()

    assert store.create(job(path, kind, job_type=JobType.CREATE)) is True
    written = path.read_bytes()
    assert store.create(job(path, kind, job_type=JobType.CREATE)) is False

    assert path.read_bytes() == written
    assert "Your keystore contains 0 entries" in keytool(
        "-list", "-storetype", kind, "-keystore", str(path), "-storepass", PASSWORD
    )
    assert path.stat().st_mode & 0o777 == 0o600
    assert list(store.inventory(job(path, kind))) == []


def test_refusals_name_what_is_missing_and_write_nothing(
    tmp_path: Path, ca: Issued, leaf: Issued
) -> None:
    path = tmp_path / "store.jks"
    store = JksStore()

    with pytest.raises(StoreError, match="needs an alias"):
        store.add(job(path, "JKS", payload={"create_store": True}), material(leaf, None))
    with pytest.raises(StoreError, match=r"does not exist \(set create_store"):
        store.add(job(path, "JKS"), material(leaf, "site"))
    with pytest.raises(StoreError, match="outside the orchestrator's store roots"):
        store.add(
            job(path, "JKS", payload={"create_store": True}, roots=(str(tmp_path / "other"),)),
            material(leaf, "site"),
        )
    with pytest.raises(StoreError, match="does not belong to the certificate"):
        store.add(
            job(path, "JKS", payload={"create_store": True}),
            CertificateMaterial(certificate=leaf.pem, private_key=ca.key, alias="site"),
        )
    with pytest.raises(StoreError, match="must be printable ASCII"):
        JceksStore().add(
            job(tmp_path / "s.jceks", "JCEKS", payload={"create_store": True}),
            material(leaf, "site", entry_password="pässword"),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_agent_loads_both_java_store_types_with_their_declarations() -> None:
    store_types = load_store_types()

    for kind in ("JKS", "JCEKS"):
        assert store_types[kind] is STORES[kind]
        assert store_types[kind].declaration is not None
        assert store_types[kind].declaration.short_name == kind  # type: ignore[union-attr]
        assert StoreOperation.ADD in store_types[kind].operations
        assert StoreOperation.DISCOVERY not in store_types[kind].operations


def test_modified_utf8_aliases_round_trip_as_java_writes_them() -> None:
    alias = "caf\u00e9 \U0001f512 nul\x00"
    encoded = jks_codec.encode_modified_utf8(alias)

    assert b"\x00" not in encoded  # Java writes NUL as C0 80
    assert len(encoded) == len("caf") + 2 + 1 + 6 + len(" nul") + 2  # the emoji as two surrogates
    assert jks_codec.decode_modified_utf8(encoded) == alias


@KINDS
def test_every_truncation_of_a_keytool_keystore_is_a_clear_error(
    tmp_path: Path, kind: str, ca: Issued
) -> None:
    path = keytool_keystore(tmp_path, kind, ca)
    if kind == "JCEKS":
        keytool(
            "-genseckey", "-alias", "vault", "-keyalg", "AES", "-keysize", "128", "-storetype",
            kind, "-keystore", str(path), "-storepass", PASSWORD, "-keypass", PASSWORD,
        )  # fmt: skip
    data = path.read_bytes()

    for length in range(len(data)):
        with pytest.raises(jks_codec.KeystoreError):
            jks_codec.load(data[:length], None)
    assert len(jks_codec.load(data, PASSWORD).entries) == (3 if kind == "JCEKS" else 2)


@KINDS
def test_keys_protected_by_keytool_decrypt_with_the_codec(
    tmp_path: Path, kind: str, ca: Issued
) -> None:
    path = tmp_path / f"k.{kind.lower()}"
    keytool(
        "-genkeypair", "-alias", "k", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=k",
        "-storetype", kind, "-keystore", str(path), "-storepass", PASSWORD,
        "-keypass", "key-pass",
    )  # fmt: skip
    entry = jks_codec.load(path.read_bytes(), PASSWORD).find("K")
    assert entry is not None and entry.leaf is not None

    key = serialization.load_der_private_key(
        jks_codec.decrypt_private_key(entry.encrypted_key, "key-pass"), password=None
    )
    with pytest.raises(jks_codec.KeyPasswordError):
        jks_codec.decrypt_private_key(entry.encrypted_key, "not-the-key-pass")

    certificate = x509.load_der_x509_certificate(entry.leaf)
    assert key.public_key() == certificate.public_key()
