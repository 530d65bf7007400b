"""Writing to ``PEM`` stores: add, remove and create (``PemStore`` delegates here).

Folder store (``store_path`` is a folder):

- The alias of a file is its path relative to the folder. Without an alias, ``add`` names
  the file ``<common name>.pem`` (characters other than letters, digits, ``.``, ``_``, ``-``
  become ``_``), or ``<sha256[:16]>.pem`` for a certificate without a common name. An alias
  that is absolute, holds ``..``, or leads (links resolved) outside the store folder or the
  agent's roots is refused. Its folder must exist.
- ``add`` writes the certificate, then its chain (store property ``include_chain``), then
  its private key when the job carries one: in the same file, or in ``<alias stem>.key``
  beside it (property ``key_file``: ``same`` | ``separate``).
- A key replacing a key already there keeps the format found: PKCS#1 (``RSA PRIVATE KEY``),
  SEC1 (``EC PRIVATE KEY``), PKCS#8 (``PRIVATE KEY``), or encrypted PKCS#8 (``ENCRYPTED
  PRIVATE KEY``, or a traditional key with ``Proc-Type: 4,ENCRYPTED``) re-encrypted with the
  store password. A new key takes ``key_format`` (``pkcs8`` | ``pkcs1`` | ``sec1``; pkcs1 and
  sec1 are OpenSSL's traditional format, which is PKCS#1 for RSA and SEC1 for EC; an Ed25519
  key is always PKCS#8), unencrypted. A new file holding a key, and every new ``.key`` file,
  is created 0600.
- ``remove`` by alias deletes the file and its ``<stem>.key``; an alias ``<file>#<sha256>``
  (one certificate of a multi-certificate file) rewrites that file without the certificate.
  By fingerprint it deletes every matching file whose first certificate is it.
- ``create`` makes the folder (its parent must exist).

Bundle store (``store_path`` is a file, or a missing path whose name ends in a certificate
suffix such as ``.pem``): the alias of an entry is its SHA-256. ``add`` appends the
certificate (alone: a bundle is a list of certificates, so no chain and no key); an alias
naming another certificate of the bundle with ``overwrite`` replaces that one in place.
``remove`` drops the certificate's blocks and keeps every other byte of the file. Only PEM
text bundles are written; a DER, PKCS#7 or PKCS#12 bundle is refused.

Every write goes through :mod:`orchestrators.stores.atomic` (temporary file, re-read and
checked, rename), and a file the store cannot parse is never overwritten.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from orchestrators.sdk import (
    CertificateMaterial,
    JobConfiguration,
    StoreError,
    os_error_transient,
    path_within_roots,
)
from orchestrators.stores.atomic import (
    remove_file_atomically,
    store_write_options,
    write_file_atomically,
)
from orchestrators.stores.pem_files import (
    CERTIFICATE_SUFFIXES,
    DEFAULT_FILE_PATTERNS,
    MAX_FILE_BYTES,
    FileContents,
    block_fingerprint,
    file_name_matcher,
    read_certificates,
)

_ALIAS_CHARACTER = re.compile(r"[^A-Za-z0-9._-]")
_ANY_BLOCK = re.compile(r"-----BEGIN ([^\n-]+)-----[^-]*-----END \1-----\n?")
_KEY_BLOCK = re.compile(r"-----BEGIN ([^\n-]*PRIVATE KEY)-----([^-]*)-----END \1-----")
_CERTIFICATE_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"})


def is_bundle_path(path: Path) -> bool:
    """Whether ``path`` is (or, missing, will be) a bundle file rather than a folder."""
    if path.is_dir():
        return False
    return path.exists() or path.suffix.lower() in CERTIFICATE_SUFFIXES


def pem_add(job: JobConfiguration, material: CertificateMaterial) -> str:
    """``PemStore.add``: see the module docstring."""
    root = Path(job.store.store_path)
    certificate = _load_certificate(material.certificate)
    sha256 = material.certificate_sha256 or _sha256(certificate)
    if is_bundle_path(root):
        return _bundle_add(job, root, material, certificate, sha256)
    if not root.is_dir():
        if not job.payload.get("create_store"):
            raise StoreError(f"store path {root} does not exist")
        pem_create(job)
    return _folder_add(job, root, material, certificate, sha256)


def pem_remove(job: JobConfiguration, *, alias: str | None, certificate_sha256: str | None) -> bool:
    """``PemStore.remove``: see the module docstring."""
    root = Path(job.store.store_path)
    options = store_write_options(job.store.properties)
    if is_bundle_path(root):
        if not root.exists():
            return False
        target = (alias or certificate_sha256 or "").lower()
        return _bundle_rewrite_without(job, root, target, options)
    if not root.is_dir():
        return False
    if alias:
        name, _, fingerprint = alias.partition("#")
        path = _alias_path(job, root, name)
        if fingerprint:
            return _bundle_rewrite_without(job, path, fingerprint.lower(), options)
        removed = remove_file_atomically(path, backup=options["backup"])
        removed |= remove_file_atomically(_key_path(path), backup=options["backup"])
        return removed
    if not certificate_sha256:
        raise StoreError("a removal names an alias or a certificate fingerprint")
    removed = False
    for path in _matching_files(job, root):
        contents = _read(path, job.store.password)
        if contents is None or contents.error or not contents.certificates:
            continue
        if contents.certificates[0].fingerprint == certificate_sha256.lower():
            removed |= remove_file_atomically(path, backup=options["backup"])
            removed |= remove_file_atomically(_key_path(path), backup=options["backup"])
    return removed


def pem_create(job: JobConfiguration) -> bool:
    """``PemStore.create``: the folder, or an empty bundle file; False when it exists."""
    root = Path(job.store.store_path)
    if root.exists():
        return False
    if not root.parent.is_dir():
        raise StoreError(f"cannot create {root}: folder {root.parent} does not exist")
    if not path_within_roots(root.parent, job.store_roots):
        raise StoreError(f"cannot create {root}: outside the orchestrator's store roots")
    if is_bundle_path(root):
        options = store_write_options(job.store.properties)
        write_file_atomically(root, b"", verify=lambda data: None, **options)
        return True
    try:
        root.mkdir(mode=0o755)
    except FileExistsError:
        return False
    except PermissionError as exc:
        raise StoreError(f"cannot write in {root.parent}: permission denied") from exc
    except OSError as exc:
        raise StoreError(
            f"cannot create {root}: {exc.strerror or exc}", transient=os_error_transient(exc)
        ) from exc
    return True


# -- folder store ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _KeyFormat:
    """How a key is written: its serialisation format and whether it is encrypted."""

    format: serialization.PrivateFormat
    encrypted: bool


def _folder_add(
    job: JobConfiguration,
    root: Path,
    material: CertificateMaterial,
    certificate: x509.Certificate,
    sha256: str,
) -> str:
    properties = job.store.properties
    options = store_write_options(properties)
    alias = material.alias or default_alias(certificate, sha256)
    if "#" in alias:
        raise StoreError(f"alias {alias!r} names one certificate of a file; give a file name")
    alias = _alias_readable(alias, properties.get("file_patterns"))
    path = _alias_path(job, root, alias)
    separate = str(properties.get("key_file") or "same") == "separate"
    key_path = _key_path(path)
    password = job.store.password

    found_format: _KeyFormat | None = None
    if path.exists():
        contents = _read(path, password)
        if contents is not None and contents.error != "is empty":
            if contents.error is not None and not contents.certificates:
                raise StoreError(
                    f"file {alias} {contents.error}; the store does not overwrite a file "
                    "it cannot parse"
                )
            if b"-----BEGIN" not in path.read_bytes()[:65536]:
                raise StoreError(
                    f"file {alias} is not PEM text (DER, PKCS#7 or PKCS#12); the agent writes "
                    "only PEM files and leaves it as is"
                )
            leaf = contents.certificates[0].fingerprint if contents.certificates else None
            if leaf == sha256:
                return alias
            if not material.overwrite:
                raise StoreError(
                    f"alias {alias} already holds another certificate; set overwrite to replace it"
                )
        found_format = _found_key_format(path)
    if separate and key_path.exists():
        found_format = _found_key_format(key_path) or found_format

    key = _load_key(material.private_key)
    key_pem = b""
    if key is not None:
        key_pem = _key_bytes(key, found_format, properties.get("key_format"), password)
    text = certificate.public_bytes(serialization.Encoding.PEM)
    if _truthy(properties.get("include_chain", True)):
        for pem in material.chain:
            text += _load_certificate(pem).public_bytes(serialization.Encoding.PEM)

    def verify_certificate(data: bytes) -> None:
        contents = read_certificates(data, password=password)
        if not contents.certificates or contents.certificates[0].fingerprint != sha256:
            raise StoreError(f"file {alias} did not read back as written; nothing changed")

    if key is not None and separate:
        # The key first: a reader between the two renames sees the old certificate with the
        # new key only for that instant, and a failed certificate write leaves a key whose
        # certificate is the job's (offered again, it writes the certificate).
        write_file_atomically(
            key_path,
            key_pem,
            verify=lambda data: _verify_key(data, key, password),
            private=True,
            backup=options["backup"],
            file_group=options["file_group"],
        )
        write_file_atomically(path, text, verify=verify_certificate, private=False, **options)
    elif key is not None:
        combined = text + key_pem

        def verify_combined(data: bytes) -> None:
            verify_certificate(data)
            match = _KEY_BLOCK.search(data.decode("ascii", "replace"))
            if match is None:
                raise StoreError(f"file {alias} did not read back with its key; nothing changed")
            _verify_key(match.group(0).encode(), key, password)

        write_file_atomically(path, combined, verify=verify_combined, private=True, **options)
    else:
        write_file_atomically(path, text, verify=verify_certificate, private=False, **options)
    return alias


def default_alias(certificate: x509.Certificate, sha256: str) -> str:
    """``<common name>.pem`` made safe for a file name, or ``<sha256[:16]>.pem``."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    stem = _ALIAS_CHARACTER.sub("_", common_name).lstrip(".")[:100]
    return f"{stem or sha256[:16]}.pem"


def _alias_readable(alias: str, file_patterns: Any) -> str:
    """The alias as a file name the store's own inventory reads back: ``shop`` becomes
    ``shop.pem``; a name with another suffix the patterns do not match is refused (the file
    would be written and then never seen)."""
    matches = file_name_matcher(file_patterns)
    name = Path(alias).name
    if matches(name):
        return alias
    if not Path(name).suffix and matches(f"{name}.pem"):
        return f"{alias}.pem"
    raise StoreError(
        f"alias {alias!r} does not match the store's file patterns "
        f"({file_patterns or DEFAULT_FILE_PATTERNS}): its inventory would never read the file; "
        "choose a name that matches, such as one ending in .pem"
    )


def _alias_path(job: JobConfiguration, root: Path, alias: str) -> Path:
    """The file for ``alias`` under ``root``, refused when it would leave the folder."""
    if not alias or "\x00" in alias or len(alias) > 1024:
        raise StoreError("alias must be a file name relative to the store folder")
    parts = Path(alias).parts
    if Path(alias).is_absolute() or ".." in parts or alias.endswith("/"):
        raise StoreError(
            f"alias {alias!r} must be a file name relative to the store folder, without '..'"
        )
    path = root / alias
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise StoreError(f"alias {alias!r} leads outside the store folder {root}")
    if not path_within_roots(real, job.store_roots):
        raise StoreError(f"alias {alias!r} leads outside the orchestrator's store roots")
    if not path.parent.is_dir():
        raise StoreError(f"cannot write {alias}: folder {path.parent} does not exist")
    return path


def _key_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.key") if path.suffix else path.with_name(f"{path.name}.key")


def _matching_files(job: JobConfiguration, root: Path) -> list[Path]:
    matches = file_name_matcher(job.store.properties.get("file_patterns"))
    recursive = _truthy(job.store.properties.get("recursive", False))
    found: list[Path] = []
    for folder, folders, files in os.walk(root):
        found.extend(Path(folder) / name for name in sorted(files) if matches(name))
        if not recursive:
            break
        folders[:] = [name for name in folders if not os.path.islink(os.path.join(folder, name))]
    return [
        path for path in found if not path.is_symlink() or path_within_roots(path, job.store_roots)
    ]


# -- bundle store ------------------------------------------------------------------------------


def _bundle_add(
    job: JobConfiguration,
    root: Path,
    material: CertificateMaterial,
    certificate: x509.Certificate,
    sha256: str,
) -> str:
    if material.private_key is not None:
        raise StoreError(
            f"store path {root} is a bundle of certificates; it cannot hold a private key"
        )
    if not root.exists() and not job.payload.get("create_store"):
        raise StoreError(f"store path {root} does not exist")
    text = _bundle_text(root, job.store.password)
    present = _fingerprints(text)
    if sha256 in present:
        return sha256
    replaced = (material.alias or "").lower()
    if replaced and replaced != sha256 and replaced in present:
        if not material.overwrite:
            raise StoreError(
                f"alias {replaced} already holds another certificate; set overwrite to replace it"
            )
        text = _without(text, replaced)
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    if text and not text.endswith("\n"):
        text += "\n"
    text += pem
    _write_bundle(job, root, text, expect_present={sha256}, expect_absent=set())
    return sha256


def _bundle_rewrite_without(
    job: JobConfiguration, path: Path, sha256: str, options: dict[str, Any]
) -> bool:
    if not path.exists():
        return False
    text = _bundle_text(path, job.store.password)
    if sha256 not in _fingerprints(text):
        return False
    _write_bundle(job, path, _without(text, sha256), expect_present=set(), expect_absent={sha256})
    return True


def _bundle_text(path: Path, password: str | None) -> str:
    contents = _read(path, password)
    if contents is None or contents.error == "is empty":
        return ""
    data = path.read_bytes()
    stripped = data.lstrip()
    if contents.error is not None and not contents.certificates:
        raise StoreError(
            f"file {path} {contents.error}; the store does not overwrite a file it cannot parse"
        )
    if not stripped.startswith(b"-----BEGIN") and b"-----BEGIN" not in data[:4096]:
        raise StoreError(
            f"file {path} is not PEM text; the agent writes only PEM bundles and leaves it as is"
        )
    return data.decode("utf-8", "replace").replace("\r\n", "\n")


def _fingerprints(text: str) -> set[str]:
    return {
        fingerprint
        for match in _ANY_BLOCK.finditer(text)
        if match.group(1) in _CERTIFICATE_LABELS
        and (fingerprint := block_fingerprint(match.group(0))) is not None
    }


def _without(text: str, sha256: str) -> str:
    def drop(match: re.Match[str]) -> str:
        if match.group(1) in _CERTIFICATE_LABELS and block_fingerprint(match.group(0)) == sha256:
            return ""
        return match.group(0)

    return _ANY_BLOCK.sub(drop, text)


def _write_bundle(
    job: JobConfiguration,
    path: Path,
    text: str,
    *,
    expect_present: set[str],
    expect_absent: set[str],
) -> None:
    options = store_write_options(job.store.properties)
    private = "PRIVATE KEY-----" in text

    def verify(data: bytes) -> None:
        found = _fingerprints(data.decode("utf-8", "replace"))
        if not expect_present <= found or found & expect_absent:
            raise StoreError(f"file {path} did not read back as written; nothing changed")

    write_file_atomically(path, text.encode("utf-8"), verify=verify, private=private, **options)


# -- keys and certificates ---------------------------------------------------------------------


def _found_key_format(path: Path) -> _KeyFormat | None:
    """The format of the first private key in the file at ``path``, or None."""
    try:
        text = path.read_bytes()[: MAX_FILE_BYTES + 1].decode("ascii", "replace")
    except OSError:
        return None
    match = _KEY_BLOCK.search(text)
    if match is None:
        return None
    label, body = match.group(1), match.group(2)
    if label == "ENCRYPTED PRIVATE KEY":
        return _KeyFormat(serialization.PrivateFormat.PKCS8, True)
    if label in {"RSA PRIVATE KEY", "EC PRIVATE KEY"}:
        encrypted = "Proc-Type: 4,ENCRYPTED" in body
        return _KeyFormat(serialization.PrivateFormat.TraditionalOpenSSL, encrypted)
    return _KeyFormat(serialization.PrivateFormat.PKCS8, False)


def _key_bytes(key: Any, found: _KeyFormat | None, key_format: Any, password: str | None) -> bytes:
    if found is None:
        chosen = str(key_format or "pkcs8")
        if chosen not in {"pkcs8", "pkcs1", "sec1"}:
            raise StoreError(
                f"store property key_format {chosen[:20]!r} is not pkcs8, pkcs1 or sec1"
            )
        traditional = chosen != "pkcs8"
        found = _KeyFormat(
            serialization.PrivateFormat.TraditionalOpenSSL
            if traditional
            else serialization.PrivateFormat.PKCS8,
            False,
        )
    private_format = found.format
    if private_format is serialization.PrivateFormat.TraditionalOpenSSL and not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    ):
        private_format = serialization.PrivateFormat.PKCS8  # Ed25519 has no traditional form
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if found.encrypted:
        if not password:
            raise StoreError(
                "the key there is encrypted and the store has no password to encrypt the new one"
            )
        encryption = serialization.BestAvailableEncryption(password.encode())
    return key.private_bytes(serialization.Encoding.PEM, private_format, encryption)


def _verify_key(data: bytes, key: Any, password: str | None) -> None:
    text = data.decode("ascii", "replace")
    encrypted = "ENCRYPTED" in text
    try:
        loaded = serialization.load_pem_private_key(
            data, password=password.encode() if encrypted and password else None
        )
    except (ValueError, TypeError) as exc:
        raise StoreError("the key did not read back as written; nothing changed") from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if loaded.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) != key.public_key().public_bytes(serialization.Encoding.DER, public):
        raise StoreError("the key did not read back as written; nothing changed")


def _load_key(value: Any) -> Any:
    """The job's private key as a ``cryptography`` key object (or None)."""
    if value is None:
        return None
    if isinstance(value, str | bytes):
        data = value.encode() if isinstance(value, str) else value
        try:
            return serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise StoreError("the job's private key is not an unencrypted PEM key") from exc
    if isinstance(
        value,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        return value
    raise StoreError("the job's private key is of a kind this store cannot write")


def _load_certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError) as exc:
        raise StoreError("the job's certificate is not a PEM certificate") from exc


def _sha256(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _read(path: Path, password: str | None) -> FileContents | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise StoreError(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return read_certificates(data, password=password)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)
