"""The built-in ``JKS`` and ``JCEKS`` store types: one Java keystore file per store.

The file is read and written with :mod:`orchestrators.stores.jks_codec`; writes go through
:func:`orchestrators.stores.atomic.write_file_atomically` and are re-read with the store
password before the rename.

- Inventory: one entry per alias. A key entry reports ``private_key`` true and its chain
  (leaf first); a trusted certificate entry its certificate; a JCEKS secret key is a
  rejected entry ("a secret key, not a certificate").
- Aliases are compared as Java does: case-insensitively, and written lowercase (Java's JKS and
  JCEKS lowercase every alias they store). ``add`` returns the alias as stored.
- A key entry is protected with ``entry_parameters["entry_password"]``, or the store password
  when that is empty; JKS with Sun's ``KeyProtector``, JCEKS with ``PBEWithMD5AndTripleDES``.
- Entries a write does not touch (secret keys included) are kept byte for byte. A keystore
  that does not parse, or whose integrity check fails, is never overwritten.
- Store properties: ``backup``, ``file_mode``, ``file_group`` (see ``atomic``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orchestrators.declarations import (
    JCEKS_DECLARATION,
    JKS_DECLARATION,
    StoreTypeDeclaration,
)
from orchestrators.protocol import StoreOperation
from orchestrators.sdk import (
    CertificateMaterial,
    InventoryEntry,
    JobConfiguration,
    StoreError,
    StoreTypeExtension,
    os_error_transient,
    path_within_roots,
)
from orchestrators.stores import jks_codec
from orchestrators.stores.atomic import store_write_options, write_file_atomically
from orchestrators.stores.pem_files import der_to_pem

# Far above any real keystore; a bigger file is refused rather than read whole.
MAX_KEYSTORE_BYTES = 64 * 1024 * 1024
INTEGRITY_CHECK_FAILED = (
    "the keystore password is wrong, or the file is damaged (integrity check failed)"
)
NOT_A_CERTIFICATE = "a secret key, not a certificate"


def _sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class JavaKeystore(StoreTypeExtension):
    """A JKS or JCEKS keystore file (subclasses set :attr:`kind`); see the module docstring."""

    kind: ClassVar[jks_codec.KeystoreKind]
    operations: ClassVar[frozenset[StoreOperation]] = frozenset(
        {
            StoreOperation.INVENTORY,
            StoreOperation.ADD,
            StoreOperation.REMOVE,
            StoreOperation.CREATE,
            StoreOperation.REENROLLMENT,
        }
    )

    # -- reading -------------------------------------------------------------------------------

    def _path(self, job: JobConfiguration) -> Path:
        path = Path(job.store.store_path)
        if not job.store.store_path or not path.is_absolute():
            raise StoreError(f"store path {job.store.store_path!r} is not an absolute path")
        if not path_within_roots(path, job.store_roots):
            raise StoreError(f"store path {path} is outside the orchestrator's store roots")
        return path

    def _read_bytes(self, job: JobConfiguration, path: Path) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        limit = min(job.max_file_bytes or MAX_KEYSTORE_BYTES, MAX_KEYSTORE_BYTES)
        try:
            if path.is_dir():
                raise StoreError(f"store path {path} is a folder, not a keystore file")
            size = path.stat().st_size
            if size > limit:
                raise StoreError(
                    f"store path {path} is larger than the agent's limit ({limit} bytes)"
                )
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise StoreError(f"cannot read store path {path}: permission denied") from exc
        except OSError as exc:
            raise StoreError(
                f"cannot read store path {path}: {exc.strerror or exc}",
                transient=os_error_transient(exc),
            ) from exc

    def _parse(self, data: bytes, path: Path, password: str | None) -> jks_codec.Keystore:
        """The keystore in ``data``; StoreError naming what is wrong otherwise."""
        found = jks_codec.detect_kind(data)
        if found is None:
            if not data:
                raise StoreError(f"store path {path} is an empty file, not a {self.kind} keystore")
            if data[:1] == b"\x30":
                raise StoreError(
                    f"store path {path} looks like a PKCS#12 file, not a {self.kind} keystore; "
                    "configure it as a PKCS12 store"
                )
            raise StoreError(f"store path {path} is not a {self.kind} keystore")
        if found != self.kind:
            raise StoreError(
                f"store path {path} is a {found} keystore, not {self.kind}; "
                f"configure it as a {found} store"
            )
        try:
            return jks_codec.load(data, password)
        except jks_codec.IntegrityError:
            raise StoreError(INTEGRITY_CHECK_FAILED) from None
        except jks_codec.KeystoreError as exc:
            raise StoreError(
                f"store path {path} is a damaged {self.kind} keystore: {exc}"
            ) from None

    def _load_existing(self, job: JobConfiguration, path: Path) -> jks_codec.Keystore | None:
        data = self._read_bytes(job, path)
        return None if data is None else self._parse(data, path, job.store.password)

    def inventory(self, job: JobConfiguration) -> list[InventoryEntry]:
        """Every alias of the keystore (see the module docstring).

        Without a store password the integrity check is skipped (as Java does with a null
        password): certificates are not encrypted in these formats.
        """
        path = self._path(job)
        keystore = self._load_existing(job, path)
        if keystore is None:
            raise StoreError(f"store path {path} does not exist")
        return [self._entry(entry) for entry in keystore.entries]

    @staticmethod
    def _entry(entry: jks_codec.Entry) -> InventoryEntry:
        private_key = entry.tag == jks_codec.TAG_PRIVATE_KEY
        if entry.tag == jks_codec.TAG_SECRET_KEY:
            return InventoryEntry(entry.alias, False, [], error=NOT_A_CERTIFICATE)
        if not entry.certificates:
            return InventoryEntry(entry.alias, private_key, [], error="a key without a certificate")
        odd = sorted({cert_type for cert_type, _ in entry.certificates if cert_type != "X.509"})
        if odd:
            return InventoryEntry(
                entry.alias,
                private_key,
                [],
                error=f"holds a certificate of type {odd[0]!r}, not X.509",
            )
        return InventoryEntry(
            entry.alias, private_key, [der_to_pem(der) for _, der in entry.certificates]
        )

    # -- writing -------------------------------------------------------------------------------

    def _store_password(self, job: JobConfiguration) -> str:
        password = job.store.password
        if password is None:
            raise StoreError(f"a {self.kind} keystore needs a store password to be written")
        return password

    def _write(
        self,
        job: JobConfiguration,
        path: Path,
        keystore: jks_codec.Keystore,
        *,
        check: Any = None,
    ) -> None:
        """Write ``keystore`` atomically; the bytes are re-read with the store password (and
        ``check(keystore)`` run on them) before they replace the file."""
        password = self._store_password(job)
        try:
            data = jks_codec.dump(keystore, password)
        except jks_codec.KeystoreError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from None

        def verify(written: bytes) -> None:
            reread = self._parse(written, path, password)
            if len(reread.entries) != len(keystore.entries):
                raise StoreError(f"the keystore written to {path} does not read back")
            if check is not None:
                check(reread)

        write_file_atomically(
            path, data, verify=verify, private=True, **store_write_options(job.store.properties)
        )

    def add(self, job: JobConfiguration, material: CertificateMaterial) -> str:
        """Install the certificate (with its key and chain when given) at the Java alias."""
        path = self._path(job)
        if not material.alias:
            raise StoreError(f"a {self.kind} store needs an alias for every entry; none was given")
        alias = jks_codec.java_alias(material.alias)
        try:
            certificate = x509.load_pem_x509_certificate(material.certificate.encode())
            chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in material.chain]
        except (ValueError, TypeError) as exc:
            raise StoreError(f"the certificate to add is not valid PEM: {exc}") from None
        leaf_der = certificate.public_bytes(serialization.Encoding.DER)
        sha256 = _sha256(leaf_der)
        if material.certificate_sha256 and material.certificate_sha256.lower() != sha256:
            raise StoreError("the certificate does not match its announced SHA-256")

        password = self._store_password(job)
        keystore = self._load_existing(job, path)
        if keystore is None:
            if not job.payload.get("create_store"):
                raise StoreError(
                    f"store path {path} does not exist (set create_store to create it)"
                )
            keystore = jks_codec.Keystore(kind=self.kind)

        existing = keystore.find(alias)
        if existing is not None:
            if existing.tag == jks_codec.TAG_SECRET_KEY:
                # A secret key is invisible to the platform (a rejected entry): never replace it.
                raise StoreError(f"alias {existing.alias} holds a secret key; it is not replaced")
            if existing.leaf is not None and _sha256(existing.leaf) == sha256:
                return existing.alias
            if not material.overwrite:
                raise StoreError(
                    f"alias {existing.alias} already holds another certificate; "
                    "set overwrite to replace it"
                )

        chain_der = [leaf_der] + [c.public_bytes(serialization.Encoding.DER) for c in chain]
        entry_password = str(material.entry_parameters.get("entry_password") or "") or password
        try:
            if material.private_key is not None:
                entry = jks_codec.private_key_entry(
                    alias,
                    _pkcs8(material.private_key, certificate),
                    chain_der,
                    kind=self.kind,
                    password=entry_password,
                )
            else:
                entry = jks_codec.trusted_cert_entry(alias, leaf_der)
        except jks_codec.KeystoreError as exc:
            raise StoreError(str(exc)) from None

        def check(reread: jks_codec.Keystore) -> None:
            found = reread.find(alias)
            if found is None or found.leaf != leaf_der:
                raise StoreError(f"the keystore written to {path} does not hold the new entry")
            if found.tag == jks_codec.TAG_PRIVATE_KEY:
                try:
                    jks_codec.decrypt_private_key(found.encrypted_key, entry_password)
                except jks_codec.KeystoreError as exc:
                    raise StoreError(f"the key written to {path} does not read back") from exc

        self._write(job, path, keystore.with_entry(entry), check=check)
        return alias

    def remove(
        self, job: JobConfiguration, *, alias: str | None, certificate_sha256: str | None
    ) -> bool:
        """Remove the entry at ``alias`` (Java-compared), or every entry whose certificate has
        the SHA-256 ``certificate_sha256``; with both, the entry at ``alias`` only if it holds
        that certificate. A missing keystore or entry: nothing removed, no error."""
        if not alias and not certificate_sha256:
            raise StoreError("a remove job needs an alias or a certificate fingerprint")
        path = self._path(job)
        keystore = self._load_existing(job, path)
        if keystore is None:
            return False
        wanted = certificate_sha256.lower() if certificate_sha256 else None
        doomed: set[str] = set()
        for entry in keystore.entries:
            if alias and jks_codec.java_alias(entry.alias) != jks_codec.java_alias(alias):
                continue
            if entry.tag == jks_codec.TAG_SECRET_KEY:
                if alias:
                    raise StoreError(f"alias {entry.alias} holds a secret key; it is not removed")
                continue
            if wanted and (entry.leaf is None or _sha256(entry.leaf) != wanted):
                continue
            doomed.add(entry.alias)
        if not doomed:
            return False

        def check(reread: jks_codec.Keystore) -> None:
            if any(reread.find(gone) is not None for gone in doomed):
                raise StoreError(f"the keystore written to {path} still holds a removed entry")

        self._write(job, path, keystore.without(doomed), check=check)
        return True

    def create(self, job: JobConfiguration) -> bool:
        """Create an empty keystore; False when the file already exists (it is left alone)."""
        path = self._path(job)
        if os.path.lexists(path):
            # Parsed all the same, so a "create" on a file that is not this keystore says so.
            self._load_existing(job, path)
            return False
        self._write(job, path, jks_codec.Keystore(kind=self.kind))
        return True


def _pkcs8(private_key: Any, certificate: x509.Certificate) -> bytes:
    """The key as unencrypted PKCS#8 DER, after checking it belongs to ``certificate``."""
    if isinstance(private_key, (str, bytes)):
        raw = private_key.encode() if isinstance(private_key, str) else private_key
        try:
            private_key = serialization.load_pem_private_key(raw, password=None)
        except (ValueError, TypeError):
            raise StoreError("the private key to add is not an unencrypted PEM key") from None
    try:
        public = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    except (AttributeError, ValueError, TypeError):
        raise StoreError("the private key to add is not a key this agent can write") from None
    expected = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != expected:
        raise StoreError("the private key does not belong to the certificate")
    return der


class JksStore(JavaKeystore):
    """A Java JKS keystore (magic 0xFEEDFEED)."""

    short_name: ClassVar[str] = "JKS"
    kind: ClassVar[jks_codec.KeystoreKind] = "JKS"
    declaration: ClassVar[StoreTypeDeclaration | None] = JKS_DECLARATION


class JceksStore(JavaKeystore):
    """A Java JCEKS keystore (magic 0xCECECECE; may also hold secret keys, kept untouched)."""

    short_name: ClassVar[str] = "JCEKS"
    kind: ClassVar[jks_codec.KeystoreKind] = "JCEKS"
    declaration: ClassVar[StoreTypeDeclaration | None] = JCEKS_DECLARATION
