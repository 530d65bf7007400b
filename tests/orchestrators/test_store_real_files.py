"""The PEM store type on real certificate files it did not make: cryptography's test vectors
and the machine's CA bundle, copied under other names, suffixes and line endings."""

from __future__ import annotations

import base64
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7, pkcs12

from orchestrators.protocol import JobType
from orchestrators.sdk import InventoryEntry, JobConfiguration, StoreConfiguration
from orchestrators.stores import pem_files
from orchestrators.stores.pem import (
    DEFAULT_FILE_PATTERNS,
    PemStore,
    certificate_blocks,
    has_private_key,
)

VECTORS = Path(os.path.dirname(cryptography_vectors.__file__))
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The password of cryptography's encrypted PKCS#12 vectors.
VECTOR_PASSWORD = "cryptography"
# What `openssl x509 -addtrust serverAuth -trustout` appends to a certificate's DER.
SERVER_AUTH_TRUST = bytes.fromhex("300c300a06082b06010505070301")


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def inventory(
    store_path: Path, *, password: str | None = None, **properties: Any
) -> list[InventoryEntry]:
    store = StoreConfiguration(
        id="store-1",
        store_type="PEM",
        client_machine="localhost",
        store_path=str(store_path),
        properties=properties,
        password=password,
    )
    job = JobConfiguration(job_id="job-1", type=JobType.INVENTORY, attempt=1, store=store)
    return list(PemStore().inventory(job))


def der_of(pem: str) -> bytes:
    lines = pem.strip().split("\n")
    assert lines[0] == "-----BEGIN CERTIFICATE-----"
    assert lines[-1] == "-----END CERTIFICATE-----"
    assert all(len(line) <= 64 for line in lines)
    return base64.b64decode("".join(lines[1:-1]))


def sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def shape(entries: list[InventoryEntry]) -> list[tuple[str, bool, int, str | None]]:
    return [
        (entry.alias, entry.private_key, len(entry.certificates), entry.error) for entry in entries
    ]


def pem_certificates(data: bytes) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CA bundle may hold a root with a negative serial
        return x509.load_pem_x509_certificates(data)


def pkcs7_certificates(name: str) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "parsed as BER"
        return pkcs7.load_der_pkcs7_certificates(vector(name))


def pkcs12_certificates(name: str, password: str | None) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = pkcs12.load_pkcs12(vector(name), password.encode() if password else None)
    first = [bundle.cert.certificate] if bundle.cert else []
    return first + [extra.certificate for extra in bundle.additional_certs]


# -- PEM ---------------------------------------------------------------------------------------


def test_the_old_x509_certificate_header_is_read_as_a_certificate(tmp_path: Path) -> None:
    (tmp_path / "old.pem").write_bytes(vector("x509/cryptography.io.old_header.pem"))
    expected = x509.load_pem_x509_certificate(vector("x509/cryptography.io.pem"))

    [entry] = inventory(tmp_path)

    assert shape([entry]) == [("old.pem", False, 1, None)]
    assert der_of(entry.certificates[0]) == expected.public_bytes(Encoding.DER)


def test_a_chain_reads_the_same_with_any_line_endings(tmp_path: Path) -> None:
    text = vector("x509/cryptography.io.chain_with_garbage.pem").replace(b"\r\n", b"\n")
    (tmp_path / "unix.pem").write_bytes(text)
    (tmp_path / "windows.crt").write_bytes(text.replace(b"\n", b"\r\n"))
    (tmp_path / "classic-mac.cer").write_bytes(text.replace(b"\n", b"\r"))

    entries = inventory(tmp_path)

    assert shape(entries) == [
        ("classic-mac.cer", True, 2, None),
        ("unix.pem", True, 2, None),
        ("windows.crt", True, 2, None),
    ]
    assert entries[0].certificates == entries[1].certificates == entries[2].certificates
    chain = x509.load_pem_x509_certificates(vector("x509/cryptography.io.chain.pem"))
    assert [der_of(pem) for pem in entries[0].certificates] == [
        certificate.public_bytes(Encoding.DER) for certificate in chain
    ]


def test_text_keys_and_pem_headers_around_a_certificate_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "garbage.pem").write_bytes(vector("x509/cryptography.io.with_garbage.pem"))
    (tmp_path / "encrypted-key.pem").write_bytes(vector("x509/cryptography.io.with_headers.pem"))

    entries = inventory(tmp_path)

    assert shape(entries) == [
        ("encrypted-key.pem", True, 1, None),
        ("garbage.pem", True, 1, None),
    ]
    assert entries[0].certificates == entries[1].certificates


def test_a_trusted_certificate_is_sent_without_its_trust_settings(tmp_path: Path) -> None:
    der = x509.load_pem_x509_certificate(vector("x509/cryptography.io.pem")).public_bytes(
        Encoding.DER
    )
    body = base64.encodebytes(der + SERVER_AUTH_TRUST).decode()
    trusted = f"-----BEGIN TRUSTED CERTIFICATE-----\n{body}-----END TRUSTED CERTIFICATE-----\n"
    (tmp_path / "trusted.pem").write_text(trusted)

    [entry] = inventory(tmp_path)

    assert der_of(entry.certificates[0]) == der


def test_a_certificate_cryptography_cannot_load_is_passed_through(tmp_path: Path) -> None:
    odd = vector("x509/custom/invalid_version.pem")
    with pytest.raises(x509.InvalidVersion):
        x509.load_pem_x509_certificate(odd)
    [block] = certificate_blocks(odd.decode())
    (tmp_path / "odd.pem").write_bytes(odd)
    (tmp_path / "odd.der").write_bytes(der_of(block))

    entries = inventory(tmp_path)

    assert shape(entries) == [("odd.der", False, 1, None), ("odd.pem", False, 1, None)]
    assert entries[0].certificates == entries[1].certificates == [odd.decode().strip()]


# -- DER ---------------------------------------------------------------------------------------


def test_der_certificates_are_found_by_content_whatever_their_suffix(tmp_path: Path) -> None:
    x400 = vector("x509/san_x400address.der")
    etrust = vector("x509/e-trust.ru.der")
    (tmp_path / "x400.der").write_bytes(x400)
    (tmp_path / "x400.cer").write_bytes(x400)
    (tmp_path / "etrust.crt").write_bytes(etrust)
    (tmp_path / "etrust.pem").write_bytes(etrust)

    entries = inventory(tmp_path)

    assert shape(entries) == [
        ("etrust.crt", False, 1, None),
        ("etrust.pem", False, 1, None),
        ("x400.cer", False, 1, None),
        ("x400.der", False, 1, None),
    ]
    assert [der_of(entry.certificates[0]) for entry in entries] == [etrust, etrust, x400, x400]


def test_der_certificates_one_after_the_other_are_read_as_a_chain(tmp_path: Path) -> None:
    chain = x509.load_pem_x509_certificates(vector("x509/cryptography.io.chain.pem"))
    ders = [certificate.public_bytes(Encoding.DER) for certificate in chain]
    (tmp_path / "chain.der").write_bytes(b"".join(ders))

    [entry] = inventory(tmp_path)

    assert shape([entry]) == [("chain.der", False, 2, None)]
    assert [der_of(pem) for pem in entry.certificates] == ders


# -- PKCS#7 ------------------------------------------------------------------------------------


def test_pkcs7_bundles_are_read_in_pem_and_der(tmp_path: Path) -> None:
    (tmp_path / "isrg.p7c").write_bytes(vector("pkcs7/isrg.pem"))
    (tmp_path / "amazon.p7b").write_bytes(vector("pkcs7/amazon-roots.p7b"))
    (tmp_path / "amazon-again.der").write_bytes(vector("pkcs7/amazon-roots.der"))
    amazon = [
        sha256(certificate.public_bytes(Encoding.DER))
        for certificate in pkcs7_certificates("pkcs7/amazon-roots.der")
    ]
    [isrg] = pkcs7.load_pem_pkcs7_certificates(vector("pkcs7/isrg.pem"))

    entries = inventory(tmp_path)

    # Two unrelated roots: one entry each. One certificate: the file is the entry.
    assert shape(entries) == sorted(
        [(f"amazon-again.der#{digest}", False, 1, None) for digest in amazon]
        + [(f"amazon.p7b#{digest}", False, 1, None) for digest in amazon]
        + [("isrg.p7c", False, 1, None)]
    )
    assert der_of(entries[-1].certificates[0]) == isrg.public_bytes(Encoding.DER)


def test_a_pkcs7_file_without_certificates_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "enveloped.p7b").write_bytes(vector("pkcs7/enveloped.pem"))
    (tmp_path / "enveloped.p7c").write_bytes(vector("pkcs7/enveloped-no-content.der"))

    entries = inventory(tmp_path)

    reason = "is a PKCS#7 file that is not a certificate bundle (not signed data)"
    assert shape(entries) == [
        ("enveloped.p7b", False, 0, reason),
        ("enveloped.p7c", False, 0, reason),
    ]


# -- PKCS#12 -----------------------------------------------------------------------------------


def test_pkcs12_files_are_opened_with_the_store_password(tmp_path: Path) -> None:
    (tmp_path / "server.p12").write_bytes(vector("pkcs12/cert-key-aes256cbc.p12"))
    (tmp_path / "cert-only.pfx").write_bytes(vector("pkcs12/cert-aes256cbc-no-key.p12"))
    (tmp_path / "unprotected.p12").write_bytes(vector("pkcs12/no-password.p12"))
    (tmp_path / "other-password.p12").write_bytes(vector("pkcs12/name-1-pwd.p12"))
    (tmp_path / "key-only.pfx").write_bytes(vector("pkcs12/no-cert-key-aes256cbc.p12"))

    entries = inventory(tmp_path, password=VECTOR_PASSWORD)

    assert shape(entries) == [
        ("cert-only.pfx", False, 1, None),
        ("key-only.pfx", False, 0, "holds no certificate (a private key only)"),
        (
            "other-password.p12",
            False,
            0,
            "is a PKCS#12 file and the store password does not open it",
        ),
        ("server.p12", True, 1, None),
        ("unprotected.p12", True, 1, None),
    ]
    [server] = pkcs12_certificates("pkcs12/cert-key-aes256cbc.p12", VECTOR_PASSWORD)
    assert der_of(entries[3].certificates[0]) == server.public_bytes(Encoding.DER)


def test_a_protected_pkcs12_in_a_store_without_password_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "server.p12").write_bytes(vector("pkcs12/cert-key-aes256cbc.p12"))
    (tmp_path / "unprotected.p12").write_bytes(vector("pkcs12/no-password.p12"))

    entries = inventory(tmp_path)

    assert shape(entries) == [
        ("server.p12", False, 0, "is a PKCS#12 file and the store has no password to open it"),
        ("unprotected.p12", True, 1, None),
    ]


def test_a_pkcs12_of_unrelated_certificates_gives_the_key_to_its_own(tmp_path: Path) -> None:
    (tmp_path / "keystore.p12").write_bytes(vector("pkcs12/name-2-3-no-pwd.p12"))
    (tmp_path / "truststore.p12").write_bytes(vector("pkcs12/java-truststore.p12"))
    keyed, *others = pkcs12_certificates("pkcs12/name-2-3-no-pwd.p12", None)
    trusted = pkcs12_certificates("pkcs12/java-truststore.p12", None)

    entries = inventory(tmp_path)

    def alias(file: str, certificate: x509.Certificate) -> str:
        return f"{file}#{sha256(certificate.public_bytes(Encoding.DER))}"

    assert shape(entries) == sorted(
        [(alias("keystore.p12", keyed), True, 1, None)]
        + [(alias("keystore.p12", other), False, 1, None) for other in others]
        + [(alias("truststore.p12", certificate), False, 1, None) for certificate in trusted]
    )


def test_the_store_password_is_in_no_reason(tmp_path: Path) -> None:
    (tmp_path / "other-password.p12").write_bytes(vector("pkcs12/name-1-pwd.p12"))
    (tmp_path / "not-a-pfx.pfx").write_bytes(b"\x04\x02 hello")

    entries = inventory(tmp_path, password="hunter2-secret")

    assert len(entries) == 2
    assert all(entry.error and "hunter2" not in entry.error for entry in entries)


# -- CA bundles --------------------------------------------------------------------------------


@pytest.mark.skipif(not CA_BUNDLE.is_file(), reason="no system CA bundle on this machine")
def test_a_ca_bundle_is_one_entry_per_distinct_certificate(tmp_path: Path) -> None:
    text = CA_BUNDLE.read_bytes()
    digests = {
        sha256(certificate.public_bytes(Encoding.DER)) for certificate in pem_certificates(text)
    }
    (tmp_path / "ca-certificates.crt").write_bytes(text + text)  # every certificate twice

    entries = inventory(tmp_path)

    assert len(digests) > 20  # more than the platform accepts as one chain
    assert shape(entries) == sorted(
        (f"ca-certificates.crt#{digest}", False, 1, None) for digest in digests
    )
    assert {sha256(der_of(entry.certificates[0])) for entry in entries} == digests


@pytest.mark.skipif(not CA_BUNDLE.is_file(), reason="no system CA bundle on this machine")
def test_a_bundle_store_reads_a_ca_bundle_as_one_entry_per_certificate() -> None:
    digests = {
        sha256(certificate.public_bytes(Encoding.DER))
        for certificate in pem_certificates(CA_BUNDLE.read_bytes())
    }

    entries = inventory(CA_BUNDLE)

    assert [entry.alias for entry in entries] == sorted(digests)


def test_a_bundle_store_may_be_a_pkcs7_or_pkcs12_file(tmp_path: Path) -> None:
    (tmp_path / "roots.p7b").write_bytes(vector("pkcs7/amazon-roots.p7b"))
    (tmp_path / "keystore.pfx").write_bytes(vector("pkcs12/cert-key-aes256cbc.p12"))
    roots = pkcs7_certificates("pkcs7/amazon-roots.p7b")
    [keyed] = pkcs12_certificates("pkcs12/cert-key-aes256cbc.p12", VECTOR_PASSWORD)

    assert [entry.alias for entry in inventory(tmp_path / "roots.p7b")] == sorted(
        sha256(root.public_bytes(Encoding.DER)) for root in roots
    )
    assert shape(inventory(tmp_path / "keystore.pfx", password=VECTOR_PASSWORD)) == [
        (sha256(keyed.public_bytes(Encoding.DER)), True, 1, None)
    ]


# -- a mixed folder, patterns and rejections ---------------------------------------------------


def test_a_mixed_folder_reports_every_file_it_matches(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "deeper").mkdir(parents=True)
    (root / "leaf.PEM").write_bytes(vector("x509/cryptography.io.pem").replace(b"\n", b"\r\n"))
    (root / "chain.crt").write_bytes(vector("x509/cryptography.io.chain.pem"))
    (root / "binary.cer").write_bytes(vector("x509/e-trust.ru.der"))
    (root / "roots.P7B").write_bytes(vector("pkcs7/amazon-roots.p7b"))
    (root / "isrg.p7c").write_bytes(vector("pkcs7/isrg.pem"))
    (root / "server.pfx").write_bytes(vector("pkcs12/cert-key-aes256cbc.p12"))
    (root / "deeper" / "old.pem").write_bytes(vector("x509/cryptography.io.old_header.pem"))
    (root / "key.crt").write_bytes(vector("asymmetric/PKCS8/unenc-rsa-pkcs8.pem"))
    (root / "request.pem").write_bytes(vector("x509/requests/rsa_sha256.pem"))
    (root / "empty.pem").write_bytes(b"")
    (root / "notes.der").write_bytes(b"not a certificate\n")
    (root / "cut-off.pem").write_bytes(vector("x509/cryptography.io.pem")[:700])
    (root / "readme.txt").write_bytes(vector("x509/cryptography.io.pem"))
    (root / "cert.pem.bak").write_bytes(vector("x509/cryptography.io.pem"))
    roots = sorted(
        sha256(certificate.public_bytes(Encoding.DER))
        for certificate in pkcs7_certificates("pkcs7/amazon-roots.p7b")
    )

    entries = inventory(root, password=VECTOR_PASSWORD, recursive=True)

    assert shape(entries) == [
        ("binary.cer", False, 1, None),
        ("chain.crt", False, 2, None),
        ("cut-off.pem", False, 0, "holds no certificate (a PEM block without its END line)"),
        ("deeper/old.pem", False, 1, None),
        ("empty.pem", False, 0, "is empty"),
        ("isrg.p7c", False, 1, None),
        ("key.crt", False, 0, "holds no certificate (a private key only)"),
        ("leaf.PEM", False, 1, None),
        ("notes.der", False, 0, "is not PEM, DER, PKCS#7 or PKCS#12 data"),
        (
            "request.pem",
            False,
            0,
            "holds no certificate (only PEM blocks of type CERTIFICATE REQUEST)",
        ),
        (f"roots.P7B#{roots[0]}", False, 1, None),
        (f"roots.P7B#{roots[1]}", False, 1, None),
        ("server.pfx", True, 1, None),
    ]
    assert sum(entry.rejected for entry in entries) == 5


def test_a_txt_file_is_read_only_when_the_patterns_name_it(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_bytes(vector("x509/cryptography.io.pem"))
    (tmp_path / "NOTES.TXT").write_bytes(vector("x509/cryptography.io.pem"))

    by_default = inventory(tmp_path)
    with_txt = inventory(tmp_path, file_patterns=f"{DEFAULT_FILE_PATTERNS},*.txt")
    only_txt = inventory(tmp_path, file_patterns=" *.txt ")

    assert [entry.alias for entry in by_default] == ["cert.pem"]
    assert [entry.alias for entry in with_txt] == ["NOTES.TXT", "cert.pem"]
    assert [entry.alias for entry in only_txt] == ["NOTES.TXT"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_rejected_not_skipped(tmp_path: Path) -> None:
    locked = tmp_path / "locked.pem"
    locked.write_bytes(vector("x509/cryptography.io.pem"))
    locked.chmod(0)
    try:
        entries = inventory(tmp_path)
    finally:
        locked.chmod(0o600)

    assert shape(entries) == [("locked.pem", False, 0, "cannot be read: permission denied")]


def test_a_file_the_agent_may_not_read_is_rejected_even_when_run_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "locked.pem").write_bytes(vector("x509/cryptography.io.pem"))
    (tmp_path / "open.pem").write_bytes(vector("x509/cryptography.io.pem"))

    def open_unless_locked(path: str, mode: str = "r") -> Any:
        if path.endswith("locked.pem"):
            raise PermissionError(13, "Permission denied", path)
        return open(path, mode)

    monkeypatch.setattr(pem_files, "open", open_unless_locked, raising=False)

    entries = inventory(tmp_path)

    assert shape(entries) == [
        ("locked.pem", False, 0, "cannot be read: permission denied"),
        ("open.pem", False, 1, None),
    ]


# -- the wire ----------------------------------------------------------------------------------


def test_a_rejected_entry_goes_on_the_wire_with_its_reason_and_no_certificates() -> None:
    rejected = InventoryEntry("empty.pem", False, [], error="is empty")
    recorded = InventoryEntry("cert.pem", True, ["-----BEGIN CERTIFICATE-----..."])

    assert rejected.to_wire() == {
        "alias": "empty.pem",
        "private_key": False,
        "certificates": [],
        "error": "is empty",
    }
    assert recorded.to_wire() == {
        "alias": "cert.pem",
        "private_key": True,
        "certificates": ["-----BEGIN CERTIFICATE-----..."],
    }
    assert (rejected.rejected, recorded.rejected) == (True, False)


def test_the_helpers_read_every_certificate_header() -> None:
    old = vector("x509/cryptography.io.old_header.pem").decode()
    garbage = vector("x509/cryptography.io.with_garbage.pem").decode()

    assert certificate_blocks(old) == certificate_blocks(garbage)
    assert has_private_key(garbage) and not has_private_key(old)
