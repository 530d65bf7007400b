"""A small codec for Java's proprietary keystores, JKS and JCEKS, built on ``cryptography``.

Why our own: pyjks is unmaintained and its C extension no longer builds; its pure-Python fork
``purejks`` still pulls in ``pycryptodomex`` (compiled), ``pyasn1`` and ``javaobj``. The
formats are small and the JDK's ``keytool`` judges the result in the tests.

File layout (big-endian; ``UTF`` is Java's ``DataOutput.writeUTF``: a u2 length and modified
UTF-8)::

    magic u4 (0xFEEDFEED JKS, 0xCECECECE JCEKS) | version u4 (1 or 2) | count u4
    count x entry:
        tag u4 | alias UTF | timestamp i8 (ms since 1970)
        tag 1, private key:  u4 length + EncryptedPrivateKeyInfo DER | u4 chain length |
                             chain x (version 2: type UTF) u4 length + certificate
        tag 2, trusted cert: (version 2: type UTF) u4 length + certificate
        tag 3, secret key (JCEKS only): a Java serialization stream (a SealedObject)
    SHA-1(password as UTF-16BE + b"Mighty Aphrodite" + everything above)  (20 bytes)

Key protection:

- JKS (and readable in JCEKS): Sun's ``KeyProtector``, OID 1.3.6.1.4.1.42.2.17.1.1: salt(20)
  + PKCS#8 XOR a SHA-1 keystream + SHA-1(password + PKCS#8); password as UTF-16BE.
- JCEKS: ``PBEWithMD5AndTripleDES``, OID 1.3.6.1.4.1.42.2.19.1, Sun's own MD5 derivation;
  the password must be printable ASCII (Java refuses others).

Every entry read keeps its exact bytes (:attr:`Entry.raw`), so a rewrite leaves the entries it
did not touch — secret keys included, which this codec does not decrypt — byte for byte.
Nothing here trusts the file: every length is checked against what remains, and a file this
codec cannot fully account for raises :class:`KeystoreError` (the caller then never
overwrites it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass, field, replace
from typing import Literal

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, modes

JKS_MAGIC = 0xFEEDFEED
JCEKS_MAGIC = 0xCECECECE
KeystoreKind = Literal["JKS", "JCEKS"]
MAGIC: dict[KeystoreKind, int] = {"JKS": JKS_MAGIC, "JCEKS": JCEKS_MAGIC}

TAG_PRIVATE_KEY = 1
TAG_TRUSTED_CERT = 2
TAG_SECRET_KEY = 3

SUN_JKS_KEY_PROTECTOR_OID = "1.3.6.1.4.1.42.2.17.1.1"
PBE_MD5_TRIPLE_DES_OID = "1.3.6.1.4.1.42.2.19.1"
# The JDK's default (jdk.jceks.iterationCount) and the most it accepts on reading.
JCEKS_ITERATIONS = 200_000
JCEKS_MAX_ITERATIONS = 5_000_000

_WHITENER = b"Mighty Aphrodite"
_DIGEST_LENGTH = 20


# SHA-1 and MD5 are what Java's formats fix; they are not our choice of hash.
def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()  # noqa: S324 (the JKS format's hash)


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()  # noqa: S324 (Sun's PBEWithMD5AndTripleDES)


class KeystoreError(ValueError):
    """The bytes are not a keystore this codec can read or write; the message says why."""


class IntegrityError(KeystoreError):
    """The integrity digest does not match: a wrong store password, or a damaged file."""


class KeyPasswordError(KeystoreError):
    """A key entry does not decrypt with the password given."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One keystore entry.

    Attributes:
        tag: :data:`TAG_PRIVATE_KEY`, :data:`TAG_TRUSTED_CERT` or :data:`TAG_SECRET_KEY`.
        alias: The alias as stored (Java stores them lowercase).
        timestamp: Creation time, milliseconds since 1970.
        certificates: ``(type, encoded)`` pairs: the chain of a key entry (leaf first), the
            certificate of a trusted entry; empty for a secret key.
        encrypted_key: A key entry's EncryptedPrivateKeyInfo DER.
        raw: The entry's exact bytes as read (tag to last byte); None for a new entry.
    """

    tag: int
    alias: str
    timestamp: int
    certificates: tuple[tuple[str, bytes], ...] = ()
    encrypted_key: bytes = field(default=b"", repr=False)
    raw: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def leaf(self) -> bytes | None:
        """The DER of the entry's (first) certificate, or None (secret key)."""
        return self.certificates[0][1] if self.certificates else None


@dataclass(frozen=True, slots=True)
class Keystore:
    """A JKS or JCEKS keystore: its kind, format version, and entries in file order."""

    kind: KeystoreKind
    version: int = 2
    entries: tuple[Entry, ...] = ()

    def find(self, alias: str) -> Entry | None:
        """The entry at ``alias`` compared as Java does (case-insensitively), or None."""
        wanted = java_alias(alias)
        return next((entry for entry in self.entries if java_alias(entry.alias) == wanted), None)

    def with_entry(self, entry: Entry) -> Keystore:
        """A copy where ``entry`` replaces the one at its alias (same place), or is appended."""
        wanted = java_alias(entry.alias)
        entries = list(self.entries)
        for index, existing in enumerate(entries):
            if java_alias(existing.alias) == wanted:
                entries[index] = entry
                return replace(self, entries=tuple(entries))
        return replace(self, entries=(*entries, entry))

    def without(self, aliases: set[str]) -> Keystore:
        """A copy without the entries at ``aliases`` (Java-compared)."""
        drop = {java_alias(alias) for alias in aliases}
        return replace(
            self,
            entries=tuple(entry for entry in self.entries if java_alias(entry.alias) not in drop),
        )


def java_alias(alias: str) -> str:
    """The alias as Java's JKS and JCEKS keep it: ``alias.toLowerCase(Locale.ENGLISH)``."""
    return alias.lower()


def detect_kind(data: bytes) -> KeystoreKind | None:
    """``"JKS"`` or ``"JCEKS"`` from the magic number, or None for anything else."""
    if len(data) < 4:
        return None
    magic = struct.unpack(">I", data[:4])[0]
    return next((kind for kind, value in MAGIC.items() if value == magic), None)


# -- reading -----------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or self.offset + count > len(self.data):
            raise KeystoreError(f"the file is truncated (reading {what} at byte {self.offset})")
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def u1(self, what: str) -> int:
        return self.take(1, what)[0]

    def u2(self, what: str) -> int:
        return struct.unpack(">H", self.take(2, what))[0]

    def u4(self, what: str) -> int:
        return struct.unpack(">I", self.take(4, what))[0]

    def i8(self, what: str) -> int:
        return struct.unpack(">q", self.take(8, what))[0]

    def utf(self, what: str) -> str:
        return decode_modified_utf8(self.take(self.u2(what), what), what)


def decode_modified_utf8(data: bytes, what: str = "a string") -> str:
    """Decode Java's modified UTF-8 (NUL as C0 80, supplementary characters as surrogates)."""
    try:
        text = data.replace(b"\xc0\x80", b"\x00").decode("utf-8", "surrogatepass")
        # Surrogate pairs encoded one by one (CESU-8) join into the character they make.
        return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be")
    except UnicodeError as exc:
        raise KeystoreError(f"{what} is not valid modified UTF-8") from exc


def encode_modified_utf8(text: str) -> bytes:
    """Java's ``writeUTF`` body (without the length)."""
    units = text.encode("utf-16-be", "surrogatepass")
    out = bytearray()
    for index in range(0, len(units), 2):
        unit = (units[index] << 8) | units[index + 1]
        if 0 < unit < 0x80:
            out.append(unit)
        elif unit < 0x800:
            out += bytes((0xC0 | (unit >> 6), 0x80 | (unit & 0x3F)))
        else:
            out += bytes((0xE0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3F), 0x80 | (unit & 0x3F)))
    return bytes(out)


def _utf(text: str) -> bytes:
    body = encode_modified_utf8(text)
    if len(body) > 0xFFFF:
        raise KeystoreError("an alias or type name is too long for a Java keystore")
    return struct.pack(">H", len(body)) + body


def password_bytes(password: str) -> bytes:
    """The password as Java feeds it to SHA-1 in JKS: each ``char`` as two bytes."""
    return password.encode("utf-16-be", "surrogatepass")


def integrity_digest(data: bytes, password: str) -> bytes:
    """SHA-1(password as UTF-16BE + ``b"Mighty Aphrodite"`` + ``data``)."""
    return _sha1(password_bytes(password) + _WHITENER + data)


def load(data: bytes, password: str | None) -> Keystore:
    """Parse a JKS or JCEKS keystore.

    Args:
        data: The whole file.
        password: The store password; None skips the integrity check (as Java does for a
            null password), which only reading certificates can afford.

    Raises:
        IntegrityError: the digest does not match (wrong password, or damaged file).
        KeystoreError: anything else that is not a keystore; the message says what.
    """
    kind = detect_kind(data)
    if kind is None:
        raise KeystoreError("the file is not a JKS or JCEKS keystore (unknown magic number)")
    reader = _Reader(data, 4)
    version = reader.u4("the version")
    if version not in (1, 2):
        raise KeystoreError(f"unsupported keystore version {version}")
    count = reader.u4("the entry count")
    entries: list[Entry] = []
    seen: set[str] = set()
    for number in range(count):
        if len(data) - reader.offset < _DIGEST_LENGTH:
            raise KeystoreError(
                f"the file is truncated: it announces {count} entries, and ends after {number}"
            )
        entry = _read_entry(reader, kind=kind, version=version, number=number)
        if java_alias(entry.alias) in seen:
            raise KeystoreError(f"alias {entry.alias!r} appears twice")
        seen.add(java_alias(entry.alias))
        entries.append(entry)
    body_end = reader.offset
    stored = reader.take(_DIGEST_LENGTH, "the integrity digest")
    if reader.offset != len(data):
        raise KeystoreError(
            f"{len(data) - reader.offset} unexpected bytes follow the integrity digest"
        )
    if password is not None and not hmac.compare_digest(
        stored, integrity_digest(data[:body_end], password)
    ):
        raise IntegrityError("the integrity check failed")
    return Keystore(kind=kind, version=version, entries=tuple(entries))


def _read_certificate(reader: _Reader, version: int, what: str) -> tuple[str, bytes]:
    cert_type = reader.utf(f"the type of {what}") if version == 2 else "X.509"
    return cert_type, reader.take(reader.u4(f"the length of {what}"), what)


def _read_entry(reader: _Reader, *, kind: KeystoreKind, version: int, number: int) -> Entry:
    start = reader.offset
    tag = reader.u4(f"the tag of entry {number + 1}")
    alias = reader.utf(f"the alias of entry {number + 1}")
    timestamp = reader.i8(f"the date of {alias!r}")
    certificates: tuple[tuple[str, bytes], ...] = ()
    encrypted_key = b""
    if tag == TAG_PRIVATE_KEY:
        encrypted_key = reader.take(reader.u4(f"the key of {alias!r}"), f"the key of {alias!r}")
        chain_length = reader.u4(f"the chain length of {alias!r}")
        certificates = tuple(
            _read_certificate(reader, version, f"certificate {index + 1} of {alias!r}")
            for index in range(chain_length)
        )
    elif tag == TAG_TRUSTED_CERT:
        certificates = (_read_certificate(reader, version, f"the certificate of {alias!r}"),)
    elif tag == TAG_SECRET_KEY and kind == "JCEKS":
        reader.offset = skip_java_serialization(reader.data, reader.offset)
    else:
        raise KeystoreError(f"entry {alias!r} has an unknown tag {tag}")
    return Entry(
        tag=tag,
        alias=alias,
        timestamp=timestamp,
        certificates=certificates,
        encrypted_key=encrypted_key,
        raw=reader.data[start : reader.offset],
    )


# -- writing -----------------------------------------------------------------------------------


def _certificate_bytes(cert_type: str, encoded: bytes, version: int) -> bytes:
    prefix = _utf(cert_type) if version == 2 else b""
    return prefix + struct.pack(">I", len(encoded)) + encoded


def _entry_bytes(entry: Entry, version: int) -> bytes:
    head = struct.pack(">I", entry.tag) + _utf(entry.alias) + struct.pack(">q", entry.timestamp)
    if entry.tag == TAG_PRIVATE_KEY:
        return (
            head
            + struct.pack(">I", len(entry.encrypted_key))
            + entry.encrypted_key
            + struct.pack(">I", len(entry.certificates))
            + b"".join(_certificate_bytes(t, c, version) for t, c in entry.certificates)
        )
    if entry.tag == TAG_TRUSTED_CERT:
        cert_type, encoded = entry.certificates[0]
        return head + _certificate_bytes(cert_type, encoded, version)
    raise KeystoreError(f"entry {entry.alias!r} (tag {entry.tag}) can only be kept as read")


def dump(keystore: Keystore, password: str) -> bytes:
    """The keystore's bytes, integrity digest included. Entries read from a file are
    written back exactly as read; new ones in the keystore's version."""
    body = bytearray(
        struct.pack(">III", MAGIC[keystore.kind], keystore.version, len(keystore.entries))
    )
    for entry in keystore.entries:
        body += entry.raw if entry.raw is not None else _entry_bytes(entry, keystore.version)
    return bytes(body) + integrity_digest(bytes(body), password)


def now_ms() -> int:
    """The current time as a keystore timestamp."""
    return int(time.time() * 1000)


def trusted_cert_entry(
    alias: str, certificate_der: bytes, *, timestamp: int | None = None
) -> Entry:
    """A new trusted-certificate entry (the alias lowercased, as Java stores it)."""
    return Entry(
        tag=TAG_TRUSTED_CERT,
        alias=java_alias(alias),
        timestamp=now_ms() if timestamp is None else timestamp,
        certificates=(("X.509", certificate_der),),
    )


def private_key_entry(
    alias: str,
    pkcs8_der: bytes,
    chain_der: list[bytes],
    *,
    kind: KeystoreKind,
    password: str,
    timestamp: int | None = None,
    iterations: int = JCEKS_ITERATIONS,
) -> Entry:
    """A new key entry: the PKCS#8 key protected as ``kind``'s JDK does, and its chain.

    Raises:
        KeystoreError: a JCEKS key password that is not printable ASCII.
    """
    if kind == "JKS":
        encrypted = protect_jks_key(pkcs8_der, password)
    else:
        encrypted = protect_jceks_key(pkcs8_der, password, iterations=iterations)
    return Entry(
        tag=TAG_PRIVATE_KEY,
        alias=java_alias(alias),
        timestamp=now_ms() if timestamp is None else timestamp,
        certificates=tuple(("X.509", der) for der in chain_der),
        encrypted_key=encrypted,
    )


# -- key protection ----------------------------------------------------------------------------


def protect_jks_key(pkcs8_der: bytes, password: str) -> bytes:
    """Sun's JKS ``KeyProtector``: an EncryptedPrivateKeyInfo DER."""
    secret = password_bytes(password)
    salt = os.urandom(20)
    protected = salt + _xor(pkcs8_der, _jks_keystream(secret, salt, len(pkcs8_der)))
    protected += _sha1(secret + pkcs8_der)
    algorithm = _der(0x30, _der_oid(SUN_JKS_KEY_PROTECTOR_OID) + b"\x05\x00")
    return _der(0x30, algorithm + _der(0x04, protected))


def protect_jceks_key(
    pkcs8_der: bytes, password: str, *, iterations: int = JCEKS_ITERATIONS
) -> bytes:
    """JCEKS' ``PBEWithMD5AndTripleDES``: an EncryptedPrivateKeyInfo DER."""
    salt = os.urandom(8)
    key, iv = _pbe_md5_3des_key(_ascii_password(password), salt, iterations)
    padder = padding.PKCS7(64).padder()
    padded = padder.update(pkcs8_der) + padder.finalize()
    encryptor = Cipher(TripleDES(key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    parameters = _der(0x30, _der(0x04, salt) + _der_integer(iterations))
    algorithm = _der(0x30, _der_oid(PBE_MD5_TRIPLE_DES_OID) + parameters)
    return _der(0x30, algorithm + _der(0x04, encrypted))


def decrypt_private_key(encrypted_key: bytes, password: str) -> bytes:
    """The PKCS#8 DER of a key entry, protected with either scheme.

    Raises:
        KeyPasswordError: the password does not open it.
        KeystoreError: the protection is malformed or of another scheme.
    """
    oid, parameters, data = _parse_encrypted_private_key_info(encrypted_key)
    if oid == SUN_JKS_KEY_PROTECTOR_OID:
        if len(data) < 40:
            raise KeystoreError("the protected key is too short")
        secret = password_bytes(password)
        salt, body, check = data[:20], data[20:-20], data[-20:]
        plain = _xor(body, _jks_keystream(secret, salt, len(body)))
        if not hmac.compare_digest(_sha1(secret + plain), check):
            raise KeyPasswordError("the key password is wrong")
        return plain
    if oid == PBE_MD5_TRIPLE_DES_OID:
        salt, iterations = _parse_pbe_parameters(parameters)
        if not 0 < iterations <= JCEKS_MAX_ITERATIONS:
            raise KeystoreError(f"the key's iteration count {iterations} is out of range")
        if len(data) == 0 or len(data) % 8:
            raise KeystoreError("the protected key is not a whole number of 3DES blocks")
        key, iv = _pbe_md5_3des_key(_ascii_password(password), salt, iterations)
        decryptor = Cipher(TripleDES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = padding.PKCS7(64).unpadder()
        try:
            plain = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise KeyPasswordError("the key password is wrong") from None
        # A wrong password gives valid-looking padding about once in 256 tries; the key
        # must also be one whole DER SEQUENCE (as Java's PKCS#8 parsing requires).
        try:
            tag, _, end = _der_read(plain, 0)
        except KeystoreError:
            tag, end = 0, -1
        if tag != 0x30 or end != len(plain):
            raise KeyPasswordError("the key password is wrong")
        return plain
    raise KeystoreError(f"the key is protected with an unknown scheme (OID {oid})")


def _jks_keystream(secret: bytes, salt: bytes, length: int) -> bytes:
    stream = bytearray()
    digest = salt
    while len(stream) < length:
        digest = _sha1(secret + digest)
        stream += digest
    return bytes(stream[:length])


def _xor(left: bytes, right: bytes) -> bytes:
    return (int.from_bytes(left, "big") ^ int.from_bytes(right, "big")).to_bytes(len(left), "big")


def _ascii_password(password: str) -> bytes:
    # Java's PBEKey refuses anything outside printable ASCII: a key Java could not open is
    # worse than a clear refusal now.
    if any(not " " <= char <= "~" for char in password):
        raise KeystoreError("a JCEKS key password must be printable ASCII (Java refuses others)")
    return password.encode("ascii")


def _pbe_md5_3des_key(secret: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """Sun's ``PBES1Core`` derivation for DESede: 24 key bytes and an 8-byte IV."""
    if len(salt) != 8:
        raise KeystoreError("the key's PBE salt is not 8 bytes")
    halves = [bytearray(salt[:4]), bytearray(salt[4:])]
    if halves[0] == halves[1]:
        # Sun's quirk: equal halves would give equal keys, so the first half is reversed.
        halves[0].reverse()
    result = b""
    for half in halves:
        digest = bytes(half)
        for _ in range(iterations):
            digest = _md5(digest + secret)
        result += digest
    return result[:24], result[24:32]


# -- minimal DER -------------------------------------------------------------------------------


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _der(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _der_length(len(content)) + content


def _der_integer(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _der_oid(dotted: str) -> bytes:
    numbers = [int(part) for part in dotted.split(".")]
    body = bytearray((numbers[0] * 40 + numbers[1],))
    for number in numbers[2:]:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, bytes(body))


def _der_read(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, content, next offset) of the DER element at ``offset``."""
    if offset + 2 > len(data):
        raise KeystoreError("the protected key is not valid DER")
    tag, first = data[offset], data[offset + 1]
    offset += 2
    if first & 0x80:
        size = first & 0x7F
        if size == 0 or size > 4 or offset + size > len(data):
            raise KeystoreError("the protected key is not valid DER")
        length = int.from_bytes(data[offset : offset + size], "big")
        offset += size
    else:
        length = first
    if offset + length > len(data):
        raise KeystoreError("the protected key is not valid DER")
    return tag, data[offset : offset + length], offset + length


def _decode_oid(body: bytes) -> str:
    if not body:
        raise KeystoreError("the protected key is not valid DER")
    numbers = [body[0] // 40, body[0] % 40]
    value = 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    return ".".join(str(number) for number in numbers)


def _parse_encrypted_private_key_info(data: bytes) -> tuple[str, bytes | None, bytes]:
    tag, outer, _ = _der_read(data, 0)
    if tag != 0x30:
        raise KeystoreError("the protected key is not valid DER")
    tag, algorithm, offset = _der_read(outer, 0)
    octet_tag, encrypted, _ = _der_read(outer, offset)
    if tag != 0x30 or octet_tag != 0x04:
        raise KeystoreError("the protected key is not valid DER")
    oid_tag, oid, offset = _der_read(algorithm, 0)
    if oid_tag != 0x06:
        raise KeystoreError("the protected key is not valid DER")
    parameters = algorithm[offset:] or None
    return _decode_oid(oid), parameters, encrypted


def _parse_pbe_parameters(parameters: bytes | None) -> tuple[bytes, int]:
    if not parameters:
        raise KeystoreError("the key's PBE parameters are missing")
    tag, sequence, _ = _der_read(parameters, 0)
    salt_tag, salt, offset = _der_read(sequence, 0)
    count_tag, count, _ = _der_read(sequence, offset)
    if tag != 0x30 or salt_tag != 0x04 or count_tag != 0x02 or not count or len(count) > 4:
        raise KeystoreError("the key's PBE parameters are malformed")
    return salt, int.from_bytes(count, "big", signed=True)


# -- Java serialization, skipped ---------------------------------------------------------------
# A JCEKS secret key is a serialized javax.crypto.SealedObject. We never decrypt it, but must
# know where it ends to read the next entry, so this walks the stream grammar (Java Object
# Serialization Specification, chapter 6) without building anything.

_TC_NULL, _TC_REFERENCE, _TC_CLASSDESC, _TC_OBJECT = 0x70, 0x71, 0x72, 0x73
_TC_STRING, _TC_ARRAY, _TC_CLASS, _TC_BLOCKDATA = 0x74, 0x75, 0x76, 0x77
_TC_ENDBLOCKDATA, _TC_RESET, _TC_BLOCKDATALONG = 0x78, 0x79, 0x7A
_TC_LONGSTRING, _TC_PROXYCLASSDESC, _TC_ENUM = 0x7C, 0x7D, 0x7E
_SC_WRITE_METHOD, _SC_SERIALIZABLE, _SC_EXTERNALIZABLE, _SC_BLOCK_DATA = 0x01, 0x02, 0x04, 0x08
_BASE_HANDLE = 0x7E0000
_PRIMITIVE_SIZES = {"B": 1, "C": 2, "D": 8, "F": 4, "I": 4, "J": 8, "S": 2, "Z": 1}
_MAX_DEPTH = 64


@dataclass
class _ClassDesc:
    name: str
    flags: int = 0
    fields: list[tuple[str, str]] = field(default_factory=list)  # (type code, class name)
    parent: _ClassDesc | None = None


class _SerializationSkipper:
    def __init__(self, data: bytes, offset: int) -> None:
        self.reader = _Reader(data, offset)
        self.handles: list[object] = []

    def fail(self, why: str) -> KeystoreError:
        return KeystoreError(f"a secret key entry is not a Java object stream ({why})")

    def new_handle(self, value: object) -> None:
        self.handles.append(value)

    def content(self, depth: int, *, allow_block: bool = True) -> object:
        if depth > _MAX_DEPTH:
            raise self.fail("nested too deeply")
        reader = self.reader
        tag = reader.u1("a secret key entry")
        if tag == _TC_RESET:
            self.handles.clear()
            return self.content(depth + 1, allow_block=allow_block)
        if tag == _TC_NULL:
            return None
        if tag == _TC_REFERENCE:
            index = reader.u4("a secret key entry") - _BASE_HANDLE
            if not 0 <= index < len(self.handles):
                raise self.fail("a reference to nothing")
            return self.handles[index]
        if tag in (_TC_CLASSDESC, _TC_PROXYCLASSDESC):
            return self.class_desc_body(tag, depth)
        if tag == _TC_STRING:
            text = reader.utf("a secret key entry")
            self.new_handle(text)
            return text
        if tag == _TC_LONGSTRING:
            length = reader.i8("a secret key entry")
            text = decode_modified_utf8(reader.take(length, "a secret key entry"))
            self.new_handle(text)
            return text
        if tag == _TC_CLASS:
            desc = self.class_desc(depth)
            self.new_handle(desc)
            return desc
        if tag == _TC_ENUM:
            self.class_desc(depth)
            self.new_handle(None)
            self.content(depth + 1)
            return None
        if tag == _TC_ARRAY:
            desc = self.class_desc(depth)
            self.new_handle(None)
            if not isinstance(desc, _ClassDesc) or not desc.name.startswith("["):
                raise self.fail("an array without an array class")
            size = reader.u4("a secret key entry")
            element = desc.name[1:2]
            if element in _PRIMITIVE_SIZES:
                reader.take(size * _PRIMITIVE_SIZES[element], "a secret key entry")
            else:
                for _ in range(size):
                    self.content(depth + 1)
            return None
        if tag == _TC_OBJECT:
            desc = self.class_desc(depth)
            self.new_handle(None)
            self.object_data(desc, depth)
            return None
        if allow_block and tag == _TC_BLOCKDATA:
            reader.take(reader.u1("a secret key entry"), "a secret key entry")
            return None
        if allow_block and tag == _TC_BLOCKDATALONG:
            reader.take(reader.u4("a secret key entry"), "a secret key entry")
            return None
        raise self.fail(f"unexpected type code 0x{tag:02x}")

    def class_desc(self, depth: int) -> _ClassDesc | None:
        value = self.content(depth + 1, allow_block=False)
        if value is not None and not isinstance(value, _ClassDesc):
            raise self.fail("a class description expected")
        return value

    def class_desc_body(self, tag: int, depth: int) -> _ClassDesc:
        reader = self.reader
        if tag == _TC_PROXYCLASSDESC:
            desc = _ClassDesc(name="<proxy>", flags=_SC_SERIALIZABLE)
            self.new_handle(desc)
            for _ in range(reader.u4("a secret key entry")):
                reader.utf("a secret key entry")
        else:
            desc = _ClassDesc(name=reader.utf("a secret key entry"))
            reader.take(8, "a secret key entry")  # serialVersionUID
            self.new_handle(desc)
            desc.flags = reader.u1("a secret key entry")
            for _ in range(reader.u2("a secret key entry")):
                type_code = chr(reader.u1("a secret key entry"))
                reader.utf("a secret key entry")
                class_name = ""
                if type_code in "[L":
                    value = self.content(depth + 1, allow_block=False)
                    if not isinstance(value, str):
                        raise self.fail("a field without its class name")
                    class_name = value
                elif type_code not in _PRIMITIVE_SIZES:
                    raise self.fail(f"unknown field type {type_code!r}")
                desc.fields.append((type_code, class_name))
        self.annotation(depth)
        desc.parent = self.class_desc(depth)
        return desc

    def annotation(self, depth: int) -> None:
        # Contents up to TC_ENDBLOCKDATA.
        while True:
            if self.reader.offset < len(self.reader.data) and (
                self.reader.data[self.reader.offset] == _TC_ENDBLOCKDATA
            ):
                self.reader.offset += 1
                return
            self.content(depth + 1)

    def object_data(self, desc: _ClassDesc | None, depth: int) -> None:
        hierarchy: list[_ClassDesc] = []
        while desc is not None:
            if len(hierarchy) > _MAX_DEPTH:
                raise self.fail("a class hierarchy too deep")
            hierarchy.append(desc)
            desc = desc.parent
        for current in reversed(hierarchy):
            if current.flags & _SC_EXTERNALIZABLE:
                if not current.flags & _SC_BLOCK_DATA:
                    raise self.fail("old-style externalizable data")
                self.annotation(depth)
                continue
            if not current.flags & _SC_SERIALIZABLE:
                continue
            for type_code, _ in current.fields:
                if type_code in _PRIMITIVE_SIZES:
                    self.reader.take(_PRIMITIVE_SIZES[type_code], "a secret key entry")
                else:
                    self.content(depth + 1, allow_block=False)
            if current.flags & _SC_WRITE_METHOD:
                self.annotation(depth)


def skip_java_serialization(data: bytes, offset: int) -> int:
    """The offset just past the one-object Java serialization stream at ``offset``.

    Raises:
        KeystoreError: it is not such a stream.
    """
    reader = _Reader(data, offset)
    if reader.take(4, "a secret key entry") != b"\xac\xed\x00\x05":
        raise KeystoreError("a secret key entry is not a Java object stream (bad header)")
    skipper = _SerializationSkipper(data, reader.offset)
    skipper.content(0, allow_block=False)
    return skipper.reader.offset
