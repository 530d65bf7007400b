"""The PKCS12 store type on keystores made by openssl and keytool, read back by both."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrators.protocol import JobType
from orchestrators.sdk import CertificateMaterial, JobConfiguration, StoreConfiguration, StoreError
from orchestrators.stores.atomic import BACKUP_MARKER
from orchestrators.stores.pkcs12 import Pkcs12Store
from orchestrators.stores.pkcs12_format import pkcs12_layout
from tests.certs import Issued, issue

PASSWORD = "store-pw"
REPO = Path(__file__).resolve().parents[2]


def job(
    path: Path, *, password: str | None = PASSWORD, create_store: bool = False, **properties: Any
) -> JobConfiguration:
    store = StoreConfiguration(
        id="store-1",
        store_type="PKCS12",
        client_machine="localhost",
        store_path=str(path),
        properties=properties,
        password=password,
    )
    return JobConfiguration(
        job_id="job-1",
        type=JobType.ADD,
        attempt=1,
        store=store,
        payload={"create_store": create_store},
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


def run(*args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(list(args), input=stdin, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    return (result.stdout + result.stderr).decode()


def openssl_info(path: Path, password: str = PASSWORD) -> str:
    return run(
        "openssl", "pkcs12", "-info", "-nokeys", "-in", str(path), "-passin", f"pass:{password}"
    )


def keytool_list(path: Path, password: str = PASSWORD) -> str:
    return run(
        "keytool", "-list", "-storetype", "pkcs12", "-keystore", str(path), "-storepass", password
    )


def inventory(path: Path, **kwargs: Any) -> dict[str, tuple[bool, int]]:
    return {
        entry.alias: (entry.private_key, len(entry.certificates))
        for entry in Pkcs12Store().inventory(job(path, **kwargs))
    }


@pytest.fixture
def leaf_files(tmp_path: Path, ca: Issued) -> tuple[Path, Path, Issued]:
    leaf = issue("web.example", issuer=ca)
    (tmp_path / "leaf.pem").write_text(leaf.pem)
    (tmp_path / "leaf.key").write_text(leaf.key_pem)
    (tmp_path / "ca.pem").write_text(ca.pem)
    return tmp_path / "leaf.pem", tmp_path / "leaf.key", leaf


def openssl_export(tmp_path: Path, files: tuple[Path, Path, Issued], *extra: str) -> Path:
    cert, key, _ = files
    out = tmp_path / "store.p12"
    run(
        "openssl", "pkcs12", "-export", "-in", str(cert), "-inkey", str(key),
        "-certfile", str(tmp_path / "ca.pem"), "-name", "web",
        "-out", str(out), "-passout", f"pass:{PASSWORD}", *extra,
    )  # fmt: skip
    return out


@pytest.mark.parametrize(("extra", "scheme"), [((), "aes256"), (("-legacy",), "rc2")])
def test_openssl_files_current_and_legacy_are_inventoried_and_written_back(
    tmp_path: Path,
    leaf_files: tuple[Path, Path, Issued],
    ca: Issued,
    extra: tuple[str, ...],
    scheme: str,
) -> None:
    path = openssl_export(tmp_path, leaf_files, *extra)
    assert pkcs12_layout(path.read_bytes()).profile == scheme

    assert inventory(path) == {"web": (True, 2)}

    trusted = issue("partner.example", issuer=ca)
    Pkcs12Store().add(job(path), material(trusted, alias="partner"))

    assert inventory(path) == {"web": (True, 2), "partner": (False, 1)}
    info = openssl_info(path)
    assert "friendlyName: web" in info and "friendlyName: partner" in info
    listing = keytool_list(path)
    assert "web, " in listing and "PrivateKeyEntry" in listing
    assert "partner, " in listing and "trustedCertEntry" in listing
    # found: AES stays AES; an RC2 file is written with 3DES, the nearest scheme we can write.
    expected = "AES-256-CBC" if scheme == "aes256" else "pbeWithSHA1And3-KeyTripleDES-CBC"
    assert expected in info


def test_a_keytool_keystore_is_inventoried_and_written_back(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "kt.p12"
    run(
        "keytool", "-genkeypair", "-storetype", "pkcs12", "-keystore", str(path),
        "-storepass", PASSWORD, "-alias", "server", "-keyalg", "EC", "-dname", "CN=kt",
        "-validity", "5",
    )  # fmt: skip
    (tmp_path / "ca.pem").write_text(ca.pem)
    run(
        "keytool", "-importcert", "-noprompt", "-storetype", "pkcs12", "-keystore", str(path),
        "-storepass", PASSWORD, "-alias", "rootca", "-file", str(tmp_path / "ca.pem"),
    )  # fmt: skip
    assert inventory(path) == {"server": (True, 1), "rootca": (False, 1)}

    assert Pkcs12Store().remove(job(path), alias="RootCA", certificate_sha256=None) is True

    assert inventory(path) == {"server": (True, 1)}
    listing = keytool_list(path)
    assert "server, " in listing and "PrivateKeyEntry" in listing and "rootca" not in listing


@pytest.mark.parametrize(
    ("profile", "marker"),
    [("aes256", "PBES2, PBKDF2, AES-256-CBC"), ("3des", "pbeWithSHA1And3-KeyTripleDES-CBC")],
)
def test_profiles_are_written_as_named_and_read_by_openssl_and_keytool(
    tmp_path: Path, ca: Issued, profile: str, marker: str
) -> None:
    path = tmp_path / "new.p12"
    leaf = issue("app.example", issuer=ca)

    alias = Pkcs12Store().add(
        job(path, create_store=True, profile=profile),
        material(leaf, key=True, chain=(ca.pem,)),
    )
    Pkcs12Store().add(job(path, profile=profile), material(ca, alias="root"))

    assert alias == "app.example"
    info = openssl_info(path)
    assert marker in info
    mac = "MAC: sha256" if profile == "aes256" else "MAC: sha1"
    assert mac in info
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    listing = keytool_list(path)
    assert "app.example, " in listing and "PrivateKeyEntry" in listing
    assert "root, " in listing and "trustedCertEntry" in listing


def test_the_rc2_profile_is_refused_with_a_clear_message(tmp_path: Path, ca: Issued) -> None:
    with pytest.raises(StoreError, match="cannot write RC2"):
        Pkcs12Store().add(
            job(tmp_path / "x.p12", create_store=True, profile="rc2"), material(ca, alias="a")
        )
    assert not (tmp_path / "x.p12").exists()


def test_a_wrong_password_says_so(tmp_path: Path, leaf_files: tuple[Path, Path, Issued]) -> None:
    path = openssl_export(tmp_path, leaf_files)

    with pytest.raises(StoreError, match="the store password does not open"):
        list(Pkcs12Store().inventory(job(path, password="wrong")))


def test_a_legacy_file_the_agents_openssl_cannot_decrypt_names_the_scheme(
    tmp_path: Path, leaf_files: tuple[Path, Path, Issued]
) -> None:
    path = openssl_export(tmp_path, leaf_files, "-legacy")
    # A real agent process whose OpenSSL has no legacy provider (as on a hardened host).
    program = (
        "import sys\n"
        "from tests.orchestrators.test_pkcs12_store import job\n"
        "from orchestrators.stores.pkcs12 import Pkcs12Store\n"
        "from orchestrators.sdk import StoreError\n"
        "try:\n"
        "    print(list(Pkcs12Store().inventory(job(__import__('pathlib').Path(sys.argv[1])))))\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": f"{REPO}/platform:{REPO}",
            "CRYPTOGRAPHY_OPENSSL_NO_LEGACY": "1",
        },
        timeout=120,
        check=True,
    )

    assert "is encrypted with RC2-40-CBC and 3DES-CBC, which this agent's OpenSSL cannot" in (
        result.stdout
    ), result.stdout + result.stderr
    assert "password" not in result.stdout


def test_a_corrupt_keystore_is_refused_and_left_as_is(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "bad.p12"
    path.write_bytes(b"\x30\x82\x01\x00garbage")

    with pytest.raises(StoreError, match="not a PKCS#12 file"):
        Pkcs12Store().add(job(path), material(ca, alias="a"))

    assert path.read_bytes() == b"\x30\x82\x01\x00garbage"


def test_the_same_certificate_is_a_no_op_and_another_needs_overwrite(
    tmp_path: Path, ca: Issued
) -> None:
    path = tmp_path / "s.p12"
    first, second = issue("one.example", issuer=ca), issue("two.example", issuer=ca)
    Pkcs12Store().add(job(path, create_store=True), material(first, alias="Site", key=True))
    before = path.stat().st_ino

    assert Pkcs12Store().add(job(path), material(first, alias="site", key=True)) == "Site"
    assert path.stat().st_ino == before
    with pytest.raises(StoreError, match="alias site already holds another certificate"):
        Pkcs12Store().add(job(path), material(second, alias="site", key=True))

    Pkcs12Store().add(job(path), material(second, alias="site", key=True, overwrite=True))
    entries = list(Pkcs12Store().inventory(job(path)))
    assert [(e.alias, e.private_key) for e in entries] == [("site", True)]


def keytool_entry(path: Path, alias: str) -> tuple[str, int, str]:
    """(entry type, chain length, SHA-256 of the first certificate) as keytool reads them."""
    listing = run(
        "keytool", "-list", "-v", "-storetype", "pkcs12", "-keystore", str(path),
        "-storepass", PASSWORD, "-alias", alias,
    )  # fmt: skip
    kind = re.search(r"Entry type: (\w+)", listing)
    length = re.search(r"Certificate chain length: (\d+)", listing)
    digest = re.search(r"SHA256: ([0-9A-F:]+)", listing)
    assert kind and digest, listing
    return kind[1], int(length[1]) if length else 1, digest[1].replace(":", "").lower()


def openssl_keys(path: Path) -> int:
    """How many private keys openssl decrypts from the file."""
    info = run(
        "openssl", "pkcs12", "-info", "-nodes", "-in", str(path), "-passin", f"pass:{PASSWORD}"
    )
    return info.count("-----BEGIN PRIVATE KEY-----")


def keytool_import(path: Path, tmp_path: Path) -> str:
    """keytool -importkeystore into a new keystore (every key decrypted), then its listing."""
    copy = tmp_path / f"copy-{path.stem}.p12"
    copy.unlink(missing_ok=True)
    run(
        "keytool", "-importkeystore", "-noprompt",
        "-srckeystore", str(path), "-srcstoretype", "pkcs12", "-srcstorepass", PASSWORD,
        "-destkeystore", str(copy), "-deststoretype", "pkcs12", "-deststorepass", PASSWORD,
    )  # fmt: skip
    return keytool_list(copy)


@pytest.mark.parametrize("profile", ["aes256", "3des"])
def test_several_key_entries_are_written_and_every_key_is_read_by_keytool_and_openssl(
    tmp_path: Path, ca: Issued, profile: str
) -> None:
    path = tmp_path / "many.p12"
    first, second = issue("a.example", issuer=ca), issue("b.example", issuer=ca)

    Pkcs12Store().add(
        job(path, create_store=True, profile=profile),
        material(first, key=True, chain=(ca.pem,)),
    )
    Pkcs12Store().add(job(path), material(second, key=True, chain=(ca.pem,)))
    Pkcs12Store().add(job(path), material(ca, alias="root"))

    # The chain certificate of both keys is no entry of its own; the trusted root is one.
    assert inventory(path) == {"a.example": (True, 2), "b.example": (True, 2), "root": (False, 1)}
    assert keytool_entry(path, "a.example") == ("PrivateKeyEntry", 2, first.sha256)
    assert keytool_entry(path, "b.example") == ("PrivateKeyEntry", 2, second.sha256)
    assert keytool_entry(path, "root") == ("trustedCertEntry", 1, ca.sha256)
    assert openssl_keys(path) == 2
    marker = "AES-256-CBC" if profile == "aes256" else "pbeWithSHA1And3-KeyTripleDES-CBC"
    assert marker in openssl_info(path)
    copied = keytool_import(path, tmp_path)
    assert copied.count("PrivateKeyEntry") == 2 and copied.count("trustedCertEntry") == 1


def keytool_signed_key(tmp_path: Path, path: Path, alias: str, ca: Issued) -> None:
    """A key entry made by keytool, its certificate signed by ``ca`` and imported with it."""
    keystore = ("-storetype", "pkcs12", "-keystore", str(path), "-storepass", PASSWORD)
    run("keytool", "-genkeypair", *keystore, "-alias", alias, "-keyalg", "EC",
        "-dname", f"CN={alias}")  # fmt: skip
    csr, signed = tmp_path / f"{alias}.csr", tmp_path / f"{alias}.pem"
    run("keytool", "-certreq", *keystore, "-alias", alias, "-file", str(csr))
    (tmp_path / "ca.pem").write_text(ca.pem)
    (tmp_path / "ca.key").write_text(ca.key_pem)
    run(
        "openssl", "x509", "-req", "-in", str(csr), "-CA", str(tmp_path / "ca.pem"),
        "-CAkey", str(tmp_path / "ca.key"), "-CAcreateserial", "-days", "5", "-out", str(signed),
    )  # fmt: skip
    (tmp_path / "reply.pem").write_text(signed.read_text() + ca.pem)
    run("keytool", "-importcert", "-noprompt", *keystore, "-alias", alias, "-file",
        str(tmp_path / "reply.pem"))  # fmt: skip


def test_a_keytool_keystore_with_two_key_entries_takes_a_third_and_loses_one(
    tmp_path: Path, ca: Issued
) -> None:
    path = tmp_path / "kt.p12"
    keytool_signed_key(tmp_path, path, "one", ca)
    keytool_signed_key(tmp_path, path, "two", ca)
    before = {alias: keytool_entry(path, alias) for alias in ("one", "two")}
    # keytool names the shared chain certificate by its subject: chain of both, no entry.
    assert inventory(path) == {"one": (True, 2), "two": (True, 2)}

    third = issue("three.example", issuer=ca)
    Pkcs12Store().add(job(path), material(third, alias="three", key=True, chain=(ca.pem,)))

    assert inventory(path) == {"one": (True, 2), "two": (True, 2), "three": (True, 2)}
    assert {alias: keytool_entry(path, alias) for alias in ("one", "two")} == before
    assert keytool_entry(path, "three") == ("PrivateKeyEntry", 2, third.sha256)
    assert openssl_keys(path) == 3

    assert Pkcs12Store().remove(job(path), alias="ONE", certificate_sha256=None) is True

    assert inventory(path) == {"two": (True, 2), "three": (True, 2)}
    assert keytool_entry(path, "two") == before["two"]
    assert keytool_entry(path, "three") == ("PrivateKeyEntry", 2, third.sha256)
    assert "one, " not in keytool_list(path)
    assert openssl_keys(path) == 2
    assert keytool_import(path, tmp_path).count("PrivateKeyEntry") == 2


def test_one_certificate_under_two_aliases_gets_two_local_key_ids(
    tmp_path: Path, ca: Issued
) -> None:
    path = tmp_path / "twice.p12"
    leaf, other = issue("a.example", issuer=ca), issue("b.example", issuer=ca)
    Pkcs12Store().add(job(path, create_store=True), material(leaf, alias="first", key=True))
    Pkcs12Store().add(job(path), material(other, alias="middle", key=True))

    Pkcs12Store().add(job(path), material(leaf, alias="second", key=True))

    assert inventory(path) == {"first": (True, 1), "middle": (True, 1), "second": (True, 1)}
    info = openssl_info(path)
    key_ids = set(re.findall(r"localKeyID: ([0-9A-F ]+)", info))
    assert len(key_ids) == 3, info
    assert keytool_entry(path, "first") == ("PrivateKeyEntry", 1, leaf.sha256)
    assert keytool_entry(path, "second") == ("PrivateKeyEntry", 1, leaf.sha256)
    assert openssl_keys(path) == 3

    # Replacing one key entry among several keeps the others, and its place.
    Pkcs12Store().add(job(path), material(other, alias="First", key=True, overwrite=True))

    assert [e.alias for e in Pkcs12Store().inventory(job(path))] == ["First", "middle", "second"]
    assert keytool_entry(path, "first") == ("PrivateKeyEntry", 1, other.sha256)
    assert keytool_entry(path, "middle") == ("PrivateKeyEntry", 1, other.sha256)
    assert keytool_entry(path, "second") == ("PrivateKeyEntry", 1, leaf.sha256)


def test_a_key_without_its_certificate_is_rejected_and_the_file_left_as_is(
    tmp_path: Path, leaf_files: tuple[Path, Path, Issued], ca: Issued
) -> None:
    _, key, _ = leaf_files
    path = tmp_path / "lonely.p12"
    run(
        "openssl", "pkcs12", "-export", "-nocerts", "-inkey", str(key), "-name", "lonely",
        "-out", str(path), "-passout", f"pass:{PASSWORD}",
    )  # fmt: skip
    original = path.read_bytes()

    entries = list(Pkcs12Store().inventory(job(path)))

    assert [(e.alias, e.private_key, e.error) for e in entries] == [
        ("lonely", True, "key entry lonely: the file holds no certificate for its private key")
    ]
    with pytest.raises(StoreError, match=r"cannot read .*lonely.* leaves the file as is"):
        Pkcs12Store().add(job(path), material(ca, alias="root"))
    assert path.read_bytes() == original


def test_remove_by_fingerprint_and_create_an_empty_store(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "trust.p12"
    assert Pkcs12Store().create(job(path)) is True
    assert Pkcs12Store().create(job(path)) is False
    assert inventory(path) == {}
    keytool_list(path)

    Pkcs12Store().add(job(path), material(ca, alias="root"))
    assert Pkcs12Store().remove(job(path), alias=None, certificate_sha256=ca.sha256) is True
    assert Pkcs12Store().remove(job(path), alias=None, certificate_sha256=ca.sha256) is False
    assert inventory(path) == {}


def test_a_rewrite_keeps_owner_group_and_mode_and_makes_a_backup(
    tmp_path: Path, leaf_files: tuple[Path, Path, Issued], ca: Issued
) -> None:
    path = openssl_export(tmp_path, leaf_files)
    os.chown(path, 1234, 4321)
    os.chmod(path, 0o640)
    original = path.read_bytes()

    Pkcs12Store().add(job(path, backup=True), material(ca, alias="root"))

    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 4321, 0o640)
    backups = [p for p in tmp_path.iterdir() if BACKUP_MARKER in p.name]
    assert [p.read_bytes() for p in backups] == [original]


def test_a_keytool_key_entry_with_its_chain_keeps_the_chain_when_written_back(
    tmp_path: Path, ca: Issued
) -> None:
    path = tmp_path / "chain.p12"
    keystore = ("-storetype", "pkcs12", "-keystore", str(path), "-storepass", PASSWORD)
    run("keytool", "-genkeypair", *keystore, "-alias", "srv", "-keyalg", "EC", "-dname", "CN=srv")
    run("keytool", "-certreq", *keystore, "-alias", "srv", "-file", str(tmp_path / "srv.csr"))
    (tmp_path / "ca.pem").write_text(ca.pem)
    (tmp_path / "ca.key").write_text(ca.key_pem)
    run(
        "openssl", "x509", "-req", "-in", str(tmp_path / "srv.csr"),
        "-CA", str(tmp_path / "ca.pem"), "-CAkey", str(tmp_path / "ca.key"),
        "-CAcreateserial", "-days", "5",
        "-out", str(tmp_path / "srv.pem"),
    )  # fmt: skip
    (tmp_path / "reply.pem").write_text((tmp_path / "srv.pem").read_text() + ca.pem)
    run("keytool", "-importcert", "-noprompt", *keystore, "-alias", "srv", "-file",
        str(tmp_path / "reply.pem"))  # fmt: skip
    # keytool names the chain certificate by its subject; it is chain, not an entry.
    assert inventory(path) == {"srv": (True, 2)}

    Pkcs12Store().add(job(path), material(issue("partner.example", issuer=ca), alias="partner"))

    assert inventory(path) == {"srv": (True, 2), "partner": (False, 1)}
    listing = run("keytool", "-list", "-v", *keystore, "-alias", "srv")
    assert "Certificate chain length: 2" in listing
    assert "trustedCertEntry" in keytool_list(path)


def test_a_trusted_entry_that_is_also_a_keys_issuer_stays_an_entry(tmp_path: Path) -> None:
    """keytool keeps a key entry without its chain and the CA as a trusted entry of its own:
    both are entries (the CA is also the key entry's chain)."""
    from tests.e2e.keystores import keytool_keystore

    ca = issue("Found Root", ca=True)
    leaf = issue("found.example", issuer=ca)
    path = keytool_keystore(
        tmp_path / "found.p12",
        store_type="PKCS12",
        password=PASSWORD,
        key_entries={"old": leaf},
        trusted={"foreign-root": ca},
    )
    found = {entry.alias.lower(): entry for entry in Pkcs12Store().inventory(job(path))}
    assert set(found) == {"old", "foreign-root"}
    assert found["old"].private_key and not found["foreign-root"].private_key
