"""PEM stores written by the agent: add, remove, create, on real files, checked with openssl."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from orchestrators.protocol import JobType
from orchestrators.sdk import CertificateMaterial, JobConfiguration, StoreConfiguration, StoreError
from orchestrators.stores.atomic import BACKUP_MARKER
from orchestrators.stores.pem import PemStore
from tests.certs import Issued, issue


def job(
    store_path: Path,
    *,
    password: str | None = None,
    roots: tuple[str, ...] | None = None,
    create_store: bool = False,
    **properties: Any,
) -> JobConfiguration:
    store = StoreConfiguration(
        id="store-1",
        store_type="PEM",
        client_machine="localhost",
        store_path=str(store_path),
        properties=properties,
        password=password,
    )
    return JobConfiguration(
        job_id="job-1",
        type=JobType.ADD,
        attempt=1,
        store=store,
        payload={"create_store": create_store},
        store_roots=roots,
    )


def material(
    issued: Issued,
    *,
    alias: str | None = None,
    key: bool = False,
    overwrite: bool = False,
    chain: tuple[str, ...] = (),
) -> CertificateMaterial:
    return CertificateMaterial(
        certificate=issued.pem,
        chain=chain,
        private_key=issued.key if key else None,
        alias=alias,
        overwrite=overwrite,
        certificate_sha256=issued.sha256,
    )


def openssl(*args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=True, timeout=60
    )
    return result.stdout.decode()


def openssl_fingerprint(path: Path) -> str:
    out = openssl("x509", "-in", str(path), "-noout", "-fingerprint", "-sha256")
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def rsa_leaf(tmp_path: Path, ca: Issued, name: str) -> Issued:
    return issue(name, issuer=ca, rsa_bits=2048)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    return folder


def test_add_writes_certificate_chain_and_key_in_one_file_read_by_openssl(
    store: Path, ca: Issued
) -> None:
    leaf = issue("web.example", issuer=ca)

    alias = PemStore().add(job(store), material(leaf, key=True, chain=(ca.pem,)))

    assert alias == "web.example.pem"
    path = store / alias
    assert openssl_fingerprint(path) == leaf.sha256
    text = path.read_text()
    assert text.count("BEGIN CERTIFICATE") == 2
    assert "-----BEGIN PRIVATE KEY-----" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # openssl reads the key and it matches the certificate.
    key_public = openssl("pkey", "-in", str(path), "-pubout")
    cert_public = openssl("x509", "-in", str(path), "-noout", "-pubkey")
    assert key_public == cert_public
    entries = list(PemStore().inventory(job(store)))
    assert [(e.alias, e.private_key, len(e.certificates)) for e in entries] == [
        ("web.example.pem", True, 2)
    ]


def test_a_separate_key_file_is_0600_and_the_certificate_file_is_not(
    store: Path, ca: Issued
) -> None:
    leaf = issue("api.example", issuer=ca)
    old = os.umask(0o022)
    try:
        PemStore().add(job(store, key_file="separate"), material(leaf, alias="api.crt", key=True))
    finally:
        os.umask(old)

    assert stat.S_IMODE((store / "api.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((store / "api.crt").stat().st_mode) == 0o644
    assert "PRIVATE KEY" not in (store / "api.crt").read_text()
    openssl("pkey", "-in", str(store / "api.key"), "-noout")


def test_a_pkcs1_key_made_by_openssl_stays_pkcs1_when_replaced(
    store: Path, ca: Issued, tmp_path: Path
) -> None:
    old_leaf = rsa_leaf(tmp_path, ca, "old.example")
    new_leaf = rsa_leaf(tmp_path, ca, "new.example")
    # A traditional PKCS#1 key as openssl writes it, beside its certificate.
    pkcs8 = old_leaf.key_pem.encode()
    pkcs1 = openssl("rsa", "-traditional", stdin=pkcs8)
    assert "BEGIN RSA PRIVATE KEY" in pkcs1
    (store / "site.pem").write_text(old_leaf.pem)
    (store / "site.key").write_text(pkcs1)

    PemStore().add(
        job(store, key_file="separate"),
        material(new_leaf, alias="site.pem", key=True, overwrite=True),
    )

    key_text = (store / "site.key").read_text()
    assert key_text.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert openssl("rsa", "-in", str(store / "site.key"), "-noout", "-modulus") == openssl(
        "x509", "-in", str(store / "site.pem"), "-noout", "-modulus"
    )


def test_an_encrypted_key_is_re_encrypted_with_the_store_password(store: Path, ca: Issued) -> None:
    old_leaf, new_leaf = issue("a.example", issuer=ca), issue("b.example", issuer=ca)
    encrypted = old_leaf.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"store-pw"),
    )
    (store / "a.pem").write_bytes(old_leaf.pem.encode() + encrypted)

    PemStore().add(
        job(store, password="store-pw"),
        material(new_leaf, alias="a.pem", key=True, overwrite=True),
    )

    text = (store / "a.pem").read_text()
    assert "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text
    openssl("pkey", "-in", str(store / "a.pem"), "-passin", "pass:store-pw", "-noout")


def test_a_new_key_takes_the_key_format_property(store: Path, ca: Issued) -> None:
    leaf = issue("ec.example", issuer=ca)

    PemStore().add(job(store, key_format="sec1"), material(leaf, key=True))

    assert "-----BEGIN EC PRIVATE KEY-----" in (store / "ec.example.pem").read_text()


def test_the_same_certificate_at_the_alias_is_not_written_again(store: Path, ca: Issued) -> None:
    leaf = issue("web.example", issuer=ca)
    PemStore().add(job(store), material(leaf))
    before = (store / "web.example.pem").stat().st_ino

    assert PemStore().add(job(store), material(leaf)) == "web.example.pem"
    assert (store / "web.example.pem").stat().st_ino == before


def test_another_certificate_at_the_alias_needs_overwrite(store: Path, ca: Issued) -> None:
    first, second = issue("one.example", issuer=ca), issue("two.example", issuer=ca)
    PemStore().add(job(store), material(first, alias="site.pem"))

    with pytest.raises(StoreError, match=r"alias site\.pem already holds another certificate; set"):
        PemStore().add(job(store), material(second, alias="site.pem"))

    assert openssl_fingerprint(store / "site.pem") == first.sha256
    PemStore().add(job(store), material(second, alias="site.pem", overwrite=True))
    assert openssl_fingerprint(store / "site.pem") == second.sha256


def test_a_rewrite_keeps_owner_group_and_mode_and_makes_a_backup(store: Path, ca: Issued) -> None:
    first, second = issue("one.example", issuer=ca), issue("two.example", issuer=ca)
    (store / "site.pem").write_text(first.pem)
    os.chown(store / "site.pem", 1234, 4321)
    os.chmod(store / "site.pem", 0o640)

    PemStore().add(job(store, backup=True), material(second, alias="site.pem", overwrite=True))

    st = (store / "site.pem").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 4321, 0o640)
    backups = [path for path in store.iterdir() if BACKUP_MARKER in path.name]
    assert [path.read_text() for path in backups] == [first.pem]


def test_a_file_the_store_cannot_parse_is_never_overwritten(store: Path, ca: Issued) -> None:
    (store / "site.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n")

    with pytest.raises(StoreError, match="cannot parse"):
        PemStore().add(
            job(store), material(issue("x.example", issuer=ca), alias="site.pem", overwrite=True)
        )

    assert (store / "site.pem").read_text() == "-----BEGIN CERTIFICATE-----\nnot base64!\n"


@pytest.mark.parametrize("alias", ["../escape.pem", "/etc/passwd", "sub/../../x.pem"])
def test_an_alias_outside_the_store_folder_is_refused(store: Path, ca: Issued, alias: str) -> None:
    with pytest.raises(StoreError, match="alias"):
        PemStore().add(job(store), material(issue("x.example", issuer=ca), alias=alias))


def test_an_alias_through_a_link_outside_the_roots_is_refused(
    store: Path, ca: Issued, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store / "elsewhere").symlink_to(outside)

    with pytest.raises(StoreError, match="outside the store folder"):
        PemStore().add(
            job(store, roots=(str(store),)),
            material(issue("x.example", issuer=ca), alias="elsewhere/x.pem"),
        )

    assert list(outside.iterdir()) == []


def test_remove_by_alias_deletes_the_file_and_its_separate_key(store: Path, ca: Issued) -> None:
    leaf = issue("api.example", issuer=ca)
    PemStore().add(job(store, key_file="separate"), material(leaf, alias="api.pem", key=True))

    assert PemStore().remove(job(store), alias="api.pem", certificate_sha256=None) is True
    assert PemStore().remove(job(store), alias="api.pem", certificate_sha256=None) is False

    assert list(store.iterdir()) == []


def test_remove_by_fingerprint_deletes_every_file_whose_leaf_it_is(store: Path, ca: Issued) -> None:
    leaf, other = issue("a.example", issuer=ca), issue("b.example", issuer=ca)
    PemStore().add(job(store), material(leaf, alias="one.pem"))
    PemStore().add(job(store), material(leaf, alias="two.pem"))
    PemStore().add(job(store), material(other, alias="other.pem"))

    assert PemStore().remove(job(store), alias=None, certificate_sha256=leaf.sha256) is True

    assert sorted(path.name for path in store.iterdir()) == ["other.pem"]


def test_a_bundle_store_appends_and_drops_certificates_by_fingerprint(
    tmp_path: Path, ca: Issued
) -> None:
    bundle = tmp_path / "trust.pem"
    bundle.write_text("# local trust\n" + ca.pem)
    leaf = issue("a.example", issuer=ca)

    assert PemStore().add(job(bundle), material(leaf)) == leaf.sha256
    assert PemStore().add(job(bundle), material(leaf)) == leaf.sha256
    aliases = sorted(entry.alias for entry in PemStore().inventory(job(bundle)))
    assert aliases == sorted([ca.sha256, leaf.sha256])

    assert PemStore().remove(job(bundle), alias=None, certificate_sha256=ca.sha256) is True
    assert bundle.read_text().startswith("# local trust\n")
    assert [entry.alias for entry in PemStore().inventory(job(bundle))] == [leaf.sha256]


def test_a_bundle_refuses_a_private_key(tmp_path: Path, ca: Issued) -> None:
    bundle = tmp_path / "trust.pem"
    bundle.write_text(ca.pem)

    with pytest.raises(StoreError, match="cannot hold a private key"):
        PemStore().add(job(bundle), material(issue("a.example", issuer=ca), key=True))


def test_create_makes_the_folder_or_an_empty_bundle(tmp_path: Path, ca: Issued) -> None:
    assert PemStore().create(job(tmp_path / "new-site")) is True
    assert PemStore().create(job(tmp_path / "new-site")) is False
    assert (tmp_path / "new-site").is_dir()

    assert PemStore().create(job(tmp_path / "bundle.pem")) is True
    assert (tmp_path / "bundle.pem").read_bytes() == b""
    assert list(PemStore().inventory(job(tmp_path / "bundle.pem"))) == []


def test_add_to_a_missing_store_creates_it_only_when_asked(tmp_path: Path, ca: Issued) -> None:
    leaf = issue("a.example", issuer=ca)
    with pytest.raises(StoreError, match="does not exist"):
        PemStore().add(job(tmp_path / "missing"), material(leaf))

    PemStore().add(job(tmp_path / "missing", create_store=True), material(leaf))

    assert openssl_fingerprint(tmp_path / "missing" / "a.example.pem") == leaf.sha256


def test_an_alias_without_a_suffix_is_written_as_a_file_the_inventory_reads(
    tmp_path: Path,
) -> None:
    shop = issue("shop.example.test")
    assert PemStore().add(job(tmp_path), material(shop, alias="shop")) == "shop.pem"
    assert (tmp_path / "shop.pem").exists() and not (tmp_path / "shop").exists()
    assert [entry.alias for entry in PemStore().inventory(job(tmp_path))] == ["shop.pem"]


def test_an_alias_the_file_patterns_do_not_match_is_refused(tmp_path: Path) -> None:
    shop = issue("shop.example.test")
    with pytest.raises(StoreError, match="does not match the store's file patterns"):
        PemStore().add(job(tmp_path), material(shop, alias="shop.txt"))
    assert list(tmp_path.iterdir()) == []
