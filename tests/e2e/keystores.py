"""Keystores made and read by the real tools, never by the code under test.

``keytool`` (the JDK's) makes and lists JKS, JCEKS and PKCS12 keystores; ``openssl
pkcs12 -export`` makes PKCS#12 files with current (AES-256, PBKDF2) or ``-legacy``
(RC2/3DES) encryption. The readers here are the judges the end-to-end tests compare the
platform's inventory with: what a Java program or OpenSSL would see in the file.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.certs import Issued

KEYTOOL = shutil.which("keytool") or "/usr/bin/keytool"
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def run(argv: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool; raise with its output when it fails (a fixture that cannot make its
    keystore must say why)."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv[:3])} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done


def sha256_of_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def pem_sha256s(data: bytes) -> list[str]:
    """SHA-256 of every certificate in PEM text, in file order."""
    return [
        sha256_of_der(
            x509.load_pem_x509_certificate(block).public_bytes(serialization.Encoding.DER)
        )
        for block in _PEM_BLOCK.findall(data)
    ]


# --- making ------------------------------------------------------------------------------


def openssl_pkcs12(
    path: Path,
    *,
    certificate: Issued,
    password: str,
    name: str,
    chain: tuple[Issued, ...] = (),
    legacy: bool = False,
    with_key: bool = True,
) -> Path:
    """``openssl pkcs12 -export``: AES-256/PBKDF2 (OpenSSL 3's default) or, with ``legacy``,
    the RC2-40 + 3DES scheme older consumers need."""
    work = path.parent / f".{path.name}.src"
    work.mkdir(exist_ok=True)
    (work / "cert.pem").write_text(certificate.pem)
    (work / "key.pem").write_text(certificate.key_pem)
    argv = ["openssl", "pkcs12", "-export", "-in", "cert.pem", "-name", name]
    argv += ["-out", str(path), "-passout", f"pass:{password}"]
    if with_key:
        argv += ["-inkey", "key.pem"]
    else:
        argv += ["-nokeys"]
    if chain:
        (work / "chain.pem").write_text("".join(c.pem for c in chain))
        argv += ["-certfile", "chain.pem"]
    if legacy:
        argv += ["-legacy"]
    run(argv, cwd=work)
    shutil.rmtree(work)
    return path


def keytool_keystore(
    path: Path,
    *,
    store_type: str,
    password: str,
    key_entries: dict[str, Issued] | None = None,
    trusted: dict[str, Issued] | None = None,
) -> Path:
    """A keystore made by keytool: private-key entries (imported from a PKCS#12 that
    openssl made, which is how people get a key into a JKS) and trusted certificates."""
    for alias, issued in (key_entries or {}).items():
        source = path.parent / f".{path.name}.{alias}.p12"
        openssl_pkcs12(source, certificate=issued, password=password, name=alias)
        run(
            [
                KEYTOOL,
                "-importkeystore",
                "-noprompt",
                "-srckeystore",
                str(source),
                "-srcstoretype",
                "PKCS12",
                "-srcstorepass",
                password,
                "-srcalias",
                alias,
                "-destkeystore",
                str(path),
                "-deststoretype",
                store_type,
                "-deststorepass",
                password,
                "-destkeypass",
                password,
                "-destalias",
                alias,
            ]
        )
        source.unlink()
    for alias, issued in (trusted or {}).items():
        source = path.parent / f".{path.name}.{alias}.crt"
        source.write_text(issued.pem)
        run(
            [
                KEYTOOL,
                "-importcert",
                "-noprompt",
                "-alias",
                alias,
                "-file",
                str(source),
                "-keystore",
                str(path),
                "-storetype",
                store_type,
                "-storepass",
                password,
            ]
        )
        source.unlink()
    return path


# --- reading (the judges) ----------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One entry as an independent tool sees it."""

    alias: str
    kind: str  # "key" (PrivateKeyEntry) or "trusted" (trustedCertEntry)
    sha256: str  # the entry's leaf certificate


def keytool_entries(path: Path, *, store_type: str, password: str) -> dict[str, Entry]:
    """``keytool -list -rfc``: every entry by alias (Java's lower-cased aliases)."""
    listed = run(
        [
            KEYTOOL,
            "-list",
            "-rfc",
            "-keystore",
            str(path),
            "-storetype",
            store_type,
            "-storepass",
            password,
        ]
    ).stdout
    entries: dict[str, Entry] = {}
    for block in re.split(r"^Alias name: ", listed, flags=re.M)[1:]:
        alias = block.splitlines()[0].strip()
        kind_match = re.search(r"^Entry type: (\S+)", block, re.M)
        kind = "key" if kind_match and kind_match.group(1) == "PrivateKeyEntry" else "trusted"
        certificates = pem_sha256s(block.encode())
        assert certificates, f"keytool listed {alias} without a certificate:\n{block}"
        entries[alias] = Entry(alias, kind, certificates[0])
    return entries


def openssl_pkcs12_contents(path: Path, *, password: str) -> tuple[list[str], int]:
    """(SHA-256 of every certificate, number of private keys) in a PKCS#12 file as OpenSSL
    reads it; ``-legacy`` is tried when the current provider cannot decrypt it."""
    for extra in ([], ["-legacy"]):
        done = subprocess.run(
            [
                "openssl",
                "pkcs12",
                "-in",
                str(path),
                "-passin",
                f"pass:{password}",
                "-nodes",
                *extra,
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0:
            keys = len(re.findall(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----", done.stdout))
            return pem_sha256s(done.stdout), keys
    raise AssertionError(f"openssl cannot read {path}:\n{done.stderr.decode(errors='replace')}")


def pem_folder_contents(folder: Path, *, pattern: str = "*") -> dict[str, list[str]]:
    """Every PEM file of a folder (not hidden, not a backup or temporary file): its
    certificates' SHA-256 in file order."""
    return {
        path.name: pem_sha256s(path.read_bytes())
        for path in sorted(folder.glob(pattern))
        if path.is_file() and not path.name.startswith(".") and "certyard-" not in path.name
    }


def has_private_key(path: Path) -> bool:
    return b"PRIVATE KEY-----" in path.read_bytes()
