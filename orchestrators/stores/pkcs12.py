"""The built-in ``PKCS12`` store type: one ``.p12``/``.pfx`` keystore holding several entries.

Entries and aliases: an entry's alias is its friendly name (a certificate without one is
aliased by its SHA-256). Aliases are compared without regard to case, as Java does (its
PKCS#12 keystores lower-case them), and written as given.

- A **key entry** is a private key, its certificate and its chain; a file holds any
  number of them (Java keystores made by ``keytool`` often do). Reading: ``cryptography``
  (OpenSSL) decrypts the certificates, and each key bag the DER walk finds is decrypted on
  its own (``load_der_private_key``); a key is linked to the certificate holding its public
  key (the one with the key's friendly name when there are several), and its chain is the
  issuers found among the other certificates: nameless ones (openssl's and this agent's
  chains) or ones keytool names by their subject. A key that cannot be decrypted, or has
  no certificate, is a rejected entry, and the file is then never rewritten, so no key is
  lost.
- A **trusted entry** is a certificate with a friendly name and no key. It is written with
  Java's trusted-certificate attribute (``cryptography``'s ``serialize_java_truststore``),
  so ``keytool -list`` shows ``trustedCertEntry``.

Writing: ``cryptography`` writes each key entry as a PKCS#12 file of its own (shrouded key
bag, certificate bag and chain, linked by a localKeyId, friendlyName the alias) and the
trusted entries as a truststore, all encrypted with the store password in the chosen
profile; their AuthenticatedSafe contents are joined into one, and a new MAC is computed
with the PKCS#12 key derivation of RFC 7292, appendix B (:func:`pkcs12_kdf`). Each key
entry's localKeyId is unique in the file (:func:`serialize_keystore`).

Encryption profiles (store property ``profile``):

- ``aes256``: PBES2 with AES-256-CBC and PBKDF2-HMAC-SHA256, HMAC-SHA256 MAC (the default
  of OpenSSL 3);
- ``3des``: PBE-SHA1-3DES for keys and certificates, HMAC-SHA1 MAC (OpenSSL's ``-legacy``
  key encryption; Java 8 and old Windows read it);
- ``rc2``: refused. ``cryptography`` cannot write RC2 (``openssl -legacy`` encrypts the
  certificates with RC2-40 and the keys with 3DES); ``3des`` serves the same consumers;
- ``found`` (default): keep the scheme the file was found in, read from the file's
  AuthenticatedSafe algorithm identifiers with a minimal DER walk (:func:`pkcs12_layout`);
  AES-256 for a new file, and 3DES for a file found with RC2-encrypted certificates.

2048 iterations are used for the key derivations and the MAC (OpenSSL's default).

Opening errors never guess: when the MAC checks out with the store password but the
contents cannot be decrypted, the message names the scheme (``"is encrypted with
RC2-40-CBC, which this agent's OpenSSL cannot decrypt"``); when the MAC does not, the store
password is wrong.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from orchestrators.declarations import PKCS12_DECLARATION, StoreTypeDeclaration
from orchestrators.protocol import StoreOperation
from orchestrators.sdk import (
    CertificateMaterial,
    InventoryEntry,
    JobConfiguration,
    StoreError,
    StoreTypeExtension,
    os_error_transient,
)
from orchestrators.stores.atomic import store_write_options, write_file_atomically
from orchestrators.stores.pkcs12_format import (
    _OID_AES256_CBC,
    _OID_DATA,
    _OID_LOCAL_KEY_ID,
    _OID_PBE_SHA1_3DES,
    _OID_PBES2,
    _OID_PBKDF2,
    _PRF_HASHES,
    ITERATIONS,
    KeyBag,
    Pkcs12Layout,
    _children,
    _DerError,
    _encode_oid,
    _joined,
    _oid,
    _tlv,
    mac_matches,
    pkcs12_kdf,
    pkcs12_layout,
)

MAX_FILE_BYTES = 64 * 1024 * 1024
_ALIAS_CHARACTER = re.compile(r"[^a-z0-9._-]")

# -- reading -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    alias: str
    certificate: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)
    key: Any = field(default=None, repr=False)

    @property
    def sha256(self) -> str:
        return _sha256(self.certificate)


@dataclass(slots=True)
class _Keystore:
    entries: list[_Entry]
    layout: Pkcs12Layout
    # (alias, why) of key entries that could not be read: inventoried as rejected entries,
    # and the file is never rewritten (that would lose the key).
    problems: list[tuple[str, str]] = field(default_factory=list)

    def find(self, alias: str) -> _Entry | None:
        folded = alias.casefold()
        return next((entry for entry in self.entries if entry.alias.casefold() == folded), None)


def open_keystore(data: bytes, password: str | None, where: str) -> _Keystore:
    """Read every entry of a PKCS#12 file; StoreError with a precise reason otherwise."""
    try:
        layout = pkcs12_layout(data)
    except ValueError as exc:
        raise StoreError(f"{where} is not a PKCS#12 file the agent can read ({exc})") from None
    opened = mac_matches(layout, password)
    if opened is False:
        if password:
            raise StoreError(f"the store password does not open {where}")
        raise StoreError(f"{where} needs a password and the store has none")
    attempts: list[bytes | None] = [password.encode()] if password else [None, b""]
    bundle = None
    failure: Exception | None = None
    for attempt in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bundle = pkcs12.load_pkcs12(data, attempt)
            break
        except (ValueError, UnsupportedAlgorithm) as exc:
            failure = exc
    if bundle is None:
        if opened:
            raise StoreError(
                f"{where} is encrypted with {layout.schemes}, which this agent's OpenSSL "
                "cannot decrypt"
            ) from failure
        raise StoreError(
            f"{where} cannot be opened: the store password is wrong, or it is encrypted with "
            f"{layout.schemes}, which this agent's OpenSSL cannot decrypt"
        ) from failure
    instances: list[tuple[str | None, x509.Certificate]] = []
    if bundle.cert is not None:
        instances.append((_friendly(bundle.cert), bundle.cert.certificate))
    instances.extend((_friendly(extra), extra.certificate) for extra in bundle.additional_certs)
    keys: list[tuple[str | None, Any]] = [
        (bag.friendly_name, _open_key(bag, attempts)) for bag in layout.keys
    ]
    if not keys and bundle.key is not None:
        # A key the DER walk did not see (inside encrypted contents): the one openssl read.
        keys.append((_friendly(bundle.cert) if bundle.cert else None, bundle.key))
    entries: list[_Entry] = []
    problems: list[tuple[str, str]] = []
    taken: set[int] = set()
    for number, (name, key) in enumerate(keys, start=1):
        label = name or f"(key entry {number})"
        if key is None:
            problems.append(
                (label, f"its private key is encrypted with {layout.schemes}, which this "
                 "agent's OpenSSL cannot decrypt")
            )  # fmt: skip
            continue
        index = _certificate_of(key, name, instances, taken)
        if index is None:
            problems.append((label, "the file holds no certificate for its private key"))
            continue
        taken.add(index)
        cert_name, certificate = instances[index]
        entries.append(_Entry(name or cert_name or _sha256(certificate), certificate, [], key))
    in_chains: set[int] = set()
    for entry in entries:
        entry.chain = _chain_of(entry.certificate, instances, taken, in_chains)
    placed = {entry.sha256 for entry in entries} | {
        _sha256(c) for entry in entries for c in entry.chain
    }
    leftover = [i for i in range(len(instances)) if i not in taken and i not in in_chains]
    # A copy of a certificate already placed, named as chain is, is one more copy of a chain
    # (each key entry carries its own); other nameless certificates still travel with the
    # first key, as found, or are entries of their own in a file without keys.
    leftover = [
        i for i in leftover
        if not (_is_chain_name(instances[i]) and _sha256(instances[i][1]) in placed)
    ]  # fmt: skip
    named = [instances[i] for i in leftover if instances[i][0] is not None]
    nameless = [instances[i][1] for i in leftover if instances[i][0] is None]
    if entries:
        entries[0].chain.extend(nameless)
    else:
        named.extend((_sha256(c), c) for c in nameless)
    seen = {entry.alias.casefold() for entry in entries}
    for alias, certificate in named:
        assert alias is not None
        if alias.casefold() in seen:
            alias = f"{alias}#{_sha256(certificate)}"
        seen.add(alias.casefold())
        entries.append(_Entry(alias, certificate))
    return _Keystore(entries, layout, problems)


def _friendly(certificate: pkcs12.PKCS12Certificate) -> str | None:
    name = certificate.friendly_name
    return name.decode("utf-8", "replace") if name else None


def _open_key(bag: KeyBag, attempts: list[bytes | None]) -> Any:
    """The bag's private key, or None when it cannot be decrypted."""
    for attempt in attempts if bag.shrouded else [None]:
        try:
            return serialization.load_der_private_key(bag.der, attempt)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return None


def _public_der(public_key: Any) -> bytes | None:
    try:
        return public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, TypeError, UnsupportedAlgorithm, AttributeError):
        return None


def _certificate_of(
    key: Any,
    name: str | None,
    instances: list[tuple[str | None, x509.Certificate]],
    taken: set[int],
) -> int | None:
    """The index of the key's certificate: its public key, and the key's name if it has one.

    Keys are linked to their certificates by public key rather than localKeyId: the
    certificate bags are read (decrypted) by OpenSSL, which does not return localKeyId. The
    friendly name picks among several certificates of one key (the same certificate under
    two aliases, each with its own bag).
    """
    wanted = _public_der(key.public_key())
    if wanted is None:
        return None
    matches = [i for i, (_n, c) in enumerate(instances) if _public_der_of(c) == wanted]
    free = [i for i in matches if i not in taken]
    folded = name.casefold() if name else None
    for candidates in (free, matches):
        same_name = [
            i for i in candidates if folded and (instances[i][0] or "").casefold() == folded
        ]
        if same_name or candidates:
            return (same_name or candidates)[0]
    return None


def _public_der_of(certificate: x509.Certificate) -> bytes | None:
    try:
        return _public_der(certificate.public_key())
    except (ValueError, UnsupportedAlgorithm):
        return None


def _is_chain_name(instance: tuple[str | None, x509.Certificate]) -> bool:
    """Whether the certificate is named as chain is: no name, or its subject (keytool's).

    Java lower-cases the aliases of its entries; a chain certificate's name is its subject
    as written (``CN=Root,O=Example``), so the comparison keeps case.
    """
    name, certificate = instance
    return name is None or name == certificate.subject.rfc4514_string()


def _chain_of(
    leaf: x509.Certificate,
    instances: list[tuple[str | None, x509.Certificate]],
    taken: set[int],
    in_chains: set[int],
) -> list[x509.Certificate]:
    """The key entry's issuers from ``instances``; their indexes are added to ``in_chains``.

    openssl and this agent write a chain without friendly names, keytool names each chain
    certificate by its subject (without Java's trust attribute, which only a decrypting
    reader would see); each key entry carries its own copies. So an issuer of the key's
    certificate is chain whatever its name, preferred in this order: a copy no chain took
    yet (nameless, then named by its subject), a copy another chain took, a copy with
    another name (so that a trusted entry that is also the issuer stays an entry when both
    are there), another key entry's certificate.
    """

    def rank(index: int) -> int:
        if index in taken:
            return 6
        shared = 2 if index in in_chains else 0
        if _is_chain_name(instances[index]):
            return shared + (0 if instances[index][0] is None else 1)
        return 4 if shared else 5

    chain: list[x509.Certificate] = []
    current = leaf
    while len(chain) < 10 and current.issuer != current.subject:
        candidates = [i for i, (_n, c) in enumerate(instances) if c.subject == current.issuer]
        if not candidates:
            break
        index = min(candidates, key=rank)
        # A certificate under a name of its own (an alias, not a chain copy's subject) is
        # a trusted entry: it serves as the chain and stays an entry.
        if index not in taken and _is_chain_name(instances[index]):
            in_chains.add(index)
        chain.append(instances[index][1])
        current = instances[index][1]
    return chain


# -- writing -----------------------------------------------------------------------------------


def _encryption(profile: str, password: str) -> serialization.KeySerializationEncryption:
    builder = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(ITERATIONS)
    if profile == "3des":
        # SHA-1 and 3DES: the legacy profile that old consumers need, chosen by the admin.
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(
            hashes.SHA1()  # noqa: S303
        )
    else:
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(
            hashes.SHA256()
        )
    return builder.build(password.encode())


def write_profile(properties: dict[str, Any], found: Pkcs12Layout | None) -> str:
    """The profile to write with: ``aes256`` or ``3des`` (see the module docstring)."""
    profile = str(properties.get("profile") or "found")
    if profile == "rc2":
        raise StoreError(
            "profile rc2: this agent cannot write RC2-encrypted PKCS#12 files (its cryptography "
            "library has no RC2); choose 3des, which the consumers of RC2 files also read"
        )
    if profile == "found":
        seen = found.profile if found is not None else None
        if seen == "rc2":
            return "3des"  # the nearest scheme we can write; RC2 readers read it
        return seen or "aes256"
    if profile not in {"aes256", "3des"}:
        raise StoreError(
            f"store property profile {profile[:20]!r} is not found, aes256, 3des or rc2"
        )
    return profile


def serialize_keystore(entries: list[_Entry], profile: str, password: str) -> bytes:
    """A PKCS#12 file of ``entries``, encrypted per ``profile``.

    Each key entry is written by ``cryptography`` (its shrouded key bag, its certificate bag
    and its chain, linked by a localKeyId: the SHA-1 of the certificate), the trusted
    entries by ``serialize_java_truststore``; their ContentInfos are joined into one
    AuthenticatedSafe with a fresh MAC. Two key entries holding the same certificate would
    share a localKeyId, so the later one is given another (:func:`_relinked`).
    """
    encryption = _encryption(profile, password)
    keyed = [entry for entry in entries if entry.key is not None]
    trusted = [entry for entry in entries if entry.key is None]
    mac_hash = "sha1" if profile == "3des" else "sha256"
    if not entries:
        # cryptography writes no empty file; an AuthenticatedSafe without contents is one
        # (keytool and openssl read it as an empty keystore).
        return _joined([], password, mac_hash)
    parts: list[bytes] = []
    content_infos: list[bytes] = []
    key_ids: set[bytes] = set()
    for entry in keyed:
        part = pkcs12.serialize_key_and_certificates(
            entry.alias.encode(), entry.key, entry.certificate, entry.chain or None, encryption
        )
        layout = pkcs12_layout(part)
        infos = layout.content_infos
        key_id = layout.keys[0].local_key_id if layout.keys else None
        if key_id is None:
            raise StoreError("the PKCS#12 writer linked no key to its certificate; nothing changed")
        if key_id in key_ids:
            fresh = _fresh_key_id(entry, key_ids)
            infos = [_relinked(info, key_id, fresh, password) for info in infos]
            key_id = fresh
        key_ids.add(key_id)
        parts.append(part)
        content_infos.extend(infos)
    if trusted:
        part = pkcs12.serialize_java_truststore(
            [pkcs12.PKCS12Certificate(e.certificate, e.alias.encode()) for e in trusted],
            encryption,
        )
        parts.append(part)
        content_infos.extend(pkcs12_layout(part).content_infos)
    if len(parts) == 1:
        return parts[0]
    return _joined(content_infos, password, mac_hash)


def _fresh_key_id(entry: _Entry, taken: set[bytes]) -> bytes:
    """A 20-byte localKeyId (the size of the one it replaces) no other entry uses."""
    seed = entry.alias.casefold().encode() + entry.certificate.public_bytes(
        serialization.Encoding.DER
    )
    counter = 0
    while True:
        # An identifier, as OpenSSL's SHA-1 of the certificate is, not a secret.
        candidate = hashlib.sha1(
            b"certyard localKeyId %d " % counter + seed, usedforsecurity=False
        ).digest()
        if candidate not in taken:
            return candidate
        counter += 1


def _relinked(info: bytes, old: bytes, new: bytes, password: str) -> bytes:
    """``info`` (a ContentInfo this module just had written) with localKeyId ``old`` as ``new``.

    The key bag's attributes are in the clear; the certificate bag's are inside the
    EncryptedData, which is decrypted, changed and encrypted again with the same key and IV
    (that ciphertext was never written anywhere). ``new`` has the length of ``old``, so no
    DER length changes.
    """
    if len(new) != len(old) or len(old) >= 0x80:
        raise StoreError("cannot relink a key entry's localKeyId; nothing changed")
    prefix = _encode_oid(_OID_LOCAL_KEY_ID) + bytes([0x31, len(old) + 2, 0x04, len(old)])

    def swap(plain: bytes) -> bytes:
        if plain.count(prefix + old) != 1:
            raise StoreError("cannot relink a key entry's localKeyId; nothing changed")
        return plain.replace(prefix + old, prefix + new)

    try:
        _, start, end = _tlv(info, 0, len(info))
        parts = _children(info, start, end)
        if _oid(info[parts[0][1] : parts[0][2]]) == _OID_DATA:
            return swap(info)
        encrypted_data = _children(info, parts[1][1], parts[1][2])[0]
        encrypted = _children(info, encrypted_data[1], encrypted_data[2])
        content_info = _children(info, encrypted[1][1], encrypted[1][2])
        algorithm, content = content_info[1], content_info[2]
        if content[0] != 0x80:
            raise _DerError("constructed encrypted content")
        cipher, block_bits = _content_cipher(info, algorithm[1], algorithm[2], password)
    except (_DerError, IndexError) as exc:
        raise StoreError(
            f"cannot relink a key entry's localKeyId ({exc}); nothing changed"
        ) from None
    decryptor = cipher.decryptor()
    try:
        padded = decryptor.update(info[content[1] : content[2]]) + decryptor.finalize()
        unpadder = padding.PKCS7(block_bits).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise StoreError("cannot relink a key entry's localKeyId; nothing changed") from None
    plain = swap(plain)
    padder = padding.PKCS7(block_bits).padder()
    encryptor = cipher.encryptor()
    sealed = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    return info[: content[1]] + sealed + info[content[2] :]


def _content_cipher(data: bytes, start: int, end: int, password: str) -> tuple[Cipher, int]:
    """The cipher of an EncryptedData written in one of this module's profiles."""
    parts = _children(data, start, end)
    oid = _oid(data[parts[0][1] : parts[0][2]])
    if oid == _OID_PBES2:
        params = _children(data, parts[1][1], parts[1][2])
        kdf = _children(data, params[0][1], params[0][2])
        if _oid(data[kdf[0][1] : kdf[0][2]]) != _OID_PBKDF2:
            raise _DerError("not PBKDF2")
        kdf_params = _children(data, kdf[1][1], kdf[1][2])
        salt = data[kdf_params[0][1] : kdf_params[0][2]]
        iterations = int.from_bytes(data[kdf_params[1][1] : kdf_params[1][2]], "big")
        prf: type[hashes.HashAlgorithm] = hashes.SHA1
        for tag, value_start, value_end, _e in kdf_params[2:]:
            if tag == 0x30:
                prf_oid = _children(data, value_start, value_end)[0]
                prf = _PRF_HASHES.get(_oid(data[prf_oid[1] : prf_oid[2]]), prf)
        scheme = _children(data, params[1][1], params[1][2])
        if _oid(data[scheme[0][1] : scheme[0][2]]) != _OID_AES256_CBC:
            raise _DerError("not AES-256-CBC")
        iv = data[scheme[1][1] : scheme[1][2]]
        key = PBKDF2HMAC(prf(), 32, salt, iterations).derive(password.encode())
        return Cipher(algorithms.AES(key), modes.CBC(iv)), 128
    if oid == _OID_PBE_SHA1_3DES:
        params = _children(data, parts[1][1], parts[1][2])
        salt = data[params[0][1] : params[0][2]]
        iterations = int.from_bytes(data[params[1][1] : params[1][2]], "big")
        key = pkcs12_kdf(password, salt, iterations, 1, 24, "sha1")
        iv = pkcs12_kdf(password, salt, iterations, 2, 8, "sha1")
        return Cipher(TripleDES(key), modes.CBC(iv)), 64
    raise _DerError(f"unexpected scheme {oid}")


class Pkcs12Store(StoreTypeExtension):
    """One PKCS#12 keystore file of several entries (see the module docstring)."""

    short_name: ClassVar[str] = "PKCS12"
    operations: ClassVar[frozenset[StoreOperation]] = frozenset(
        {
            StoreOperation.INVENTORY,
            StoreOperation.ADD,
            StoreOperation.REMOVE,
            StoreOperation.CREATE,
            StoreOperation.REENROLLMENT,
        }
    )
    declaration: ClassVar[StoreTypeDeclaration | None] = PKCS12_DECLARATION

    def inventory(self, job: JobConfiguration) -> Iterator[InventoryEntry]:
        """Every entry of the keystore; a key entry that cannot be read is a rejected entry."""
        path = Path(job.store.store_path)
        keystore = self._open(job, path)
        for entry in keystore.entries:
            yield InventoryEntry(
                entry.alias,
                entry.key is not None,
                [_pem(entry.certificate), *(_pem(c) for c in entry.chain)],
            )
        for alias, why in keystore.problems:
            yield InventoryEntry(alias, True, [], error=f"key entry {alias}: {why}")

    def add(self, job: JobConfiguration, material: CertificateMaterial) -> str:
        """Add a key entry (material with a key) or a trusted entry (without)."""
        path = Path(job.store.store_path)
        password = self._password(job)
        certificate = _load_certificate(material.certificate)
        sha256 = material.certificate_sha256 or _sha256(certificate)
        if path.exists():
            keystore = self._open(job, path, for_write=True)
        elif job.payload.get("create_store"):
            keystore = _Keystore([], Pkcs12Layout())
        else:
            raise StoreError(f"store path {path} does not exist")
        alias = material.alias or default_alias(certificate, sha256)
        existing = keystore.find(alias)
        if existing is not None:
            if existing.sha256 == sha256:
                return existing.alias
            if not material.overwrite:
                raise StoreError(
                    f"alias {alias} already holds another certificate; set overwrite to replace it"
                )
        key = _load_key(material.private_key)
        chain = [_load_certificate(pem) for pem in material.chain] if key is not None else []
        entry = _Entry(alias, certificate, chain, key)
        if existing is not None:
            # A replaced entry keeps its place among the others.
            keystore.entries[keystore.entries.index(existing)] = entry
        else:
            keystore.entries.append(entry)
        self._write(job, path, keystore, password)
        return alias

    def remove(
        self, job: JobConfiguration, *, alias: str | None, certificate_sha256: str | None
    ) -> bool:
        """Remove the entry at ``alias``, or every entry whose certificate is the fingerprint."""
        path = Path(job.store.store_path)
        if not path.exists():
            return False
        password = self._password(job)
        keystore = self._open(job, path, for_write=True)
        if alias:
            doomed = [e for e in keystore.entries if e.alias.casefold() == alias.casefold()]
        elif certificate_sha256:
            doomed = [e for e in keystore.entries if e.sha256 == certificate_sha256.lower()]
        else:
            raise StoreError("a removal names an alias or a certificate fingerprint")
        if not doomed:
            return False
        keystore.entries = [e for e in keystore.entries if e not in doomed]
        self._write(job, path, keystore, password)
        return True

    def create(self, job: JobConfiguration) -> bool:
        """An empty keystore protected by the store password; False when the file exists."""
        path = Path(job.store.store_path)
        if path.exists():
            return False
        self._write(job, path, _Keystore([], Pkcs12Layout()), self._password(job))
        return True

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _password(job: JobConfiguration) -> str:
        if not job.store.password:
            raise StoreError("a PKCS#12 store needs a store password to write with")
        return job.store.password

    @staticmethod
    def _open(job: JobConfiguration, path: Path, *, for_write: bool = False) -> _Keystore:
        limit = job.max_file_bytes or MAX_FILE_BYTES
        try:
            with path.open("rb") as file:
                data = file.read(limit + 1)
        except FileNotFoundError:
            raise StoreError(f"store path {path} does not exist") from None
        except IsADirectoryError:
            raise StoreError(f"store path {path} is a folder, not a PKCS#12 file") from None
        except PermissionError:
            raise StoreError(f"cannot read store path {path}: permission denied") from None
        except OSError as exc:
            raise StoreError(
                f"cannot read store path {path}: {exc.strerror or exc}",
                transient=os_error_transient(exc),
            ) from None
        if len(data) > limit:
            raise StoreError(f"store path {path} is larger than the agent's limit ({limit} bytes)")
        keystore = open_keystore(data, job.store.password, f"store path {path}")
        if for_write and keystore.problems:
            alias, why = keystore.problems[0]
            raise StoreError(
                f"{path} holds a key entry this agent cannot read ({alias}: {why}); it leaves "
                "the file as is rather than lose that key"
            )
        return keystore

    @staticmethod
    def _write(job: JobConfiguration, path: Path, keystore: _Keystore, password: str) -> None:
        options = store_write_options(job.store.properties)
        found = keystore.layout if keystore.layout.content_infos else None
        profile = write_profile(job.store.properties, found)
        data = serialize_keystore(keystore.entries, profile, password)
        expected = _signature(keystore.entries)

        def verify(written: bytes) -> None:
            reread = open_keystore(written, password, f"the new {path.name}")
            if reread.problems or _signature(reread.entries) != expected:
                raise StoreError(f"{path} did not read back as written; nothing changed")

        has_key = any(entry.key is not None for entry in keystore.entries)
        write_file_atomically(path, data, verify=verify, private=has_key, **options)


def _signature(entries: list[_Entry]) -> set[tuple[str, str, str | None]]:
    """What a rewrite must read back: each alias, its certificate and its key."""
    return {
        (
            e.alias.casefold(),
            e.sha256,
            None
            if e.key is None
            else hashlib.sha256(_public_der(e.key.public_key()) or b"").hexdigest(),
        )
        for e in entries
    }


def default_alias(certificate: x509.Certificate, sha256: str) -> str:
    """The certificate's common name in lower case (as Java would store it), made safe, or
    the first 16 hex digits of its SHA-256."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value).lower() if names else ""
    return _ALIAS_CHARACTER.sub("_", common_name)[:100] or sha256[:16]


def _load_key(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str | bytes):
        data = value.encode() if isinstance(value, str) else value
        try:
            return serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise StoreError("the job's private key is not an unencrypted PEM key") from exc
    return value


def _load_certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError) as exc:
        raise StoreError("the job's certificate is not a PEM certificate") from exc


def _sha256(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii").strip()


__all__ = [
    "Pkcs12Layout",
    "Pkcs12Store",
    "default_alias",
    "mac_matches",
    "open_keystore",
    "pkcs12_kdf",
    "pkcs12_layout",
    "serialize_keystore",
    "write_profile",
]
