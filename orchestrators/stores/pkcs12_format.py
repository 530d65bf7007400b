"""The PKCS#12 file format below what ``cryptography`` offers: a minimal DER walk of the
AuthenticatedSafe (which scheme encrypts what, where the key bags are), the RFC 7292
appendix B key derivation, the MAC, and joining several files' contents into one.

Used by the ``PKCS12`` store type (``orchestrators.stores.pkcs12``), which explains why.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes

ITERATIONS = 2048

_OID_DATA = "1.2.840.113549.1.7.1"
_OID_ENCRYPTED_DATA = "1.2.840.113549.1.7.6"
_OID_KEY_BAG = "1.2.840.113549.1.12.10.1.1"
_OID_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
_OID_PBES2 = "1.2.840.113549.1.5.13"
_OID_PBKDF2 = "1.2.840.113549.1.5.12"
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"
_OID_PBE_SHA1_3DES = "1.2.840.113549.1.12.1.3"
_OID_FRIENDLY_NAME = "1.2.840.113549.1.9.20"
_OID_LOCAL_KEY_ID = "1.2.840.113549.1.9.21"
_PRF_HASHES = {
    "1.2.840.113549.2.7": hashes.SHA1,
    "1.2.840.113549.2.9": hashes.SHA256,
    "1.2.840.113549.2.10": hashes.SHA384,
    "1.2.840.113549.2.11": hashes.SHA512,
}
_SCHEMES = {
    "1.2.840.113549.1.12.1.1": "RC4-128",
    "1.2.840.113549.1.12.1.2": "RC4-40",
    "1.2.840.113549.1.12.1.3": "3DES-CBC",
    "1.2.840.113549.1.12.1.4": "2-key 3DES-CBC",
    "1.2.840.113549.1.12.1.5": "RC2-128-CBC",
    "1.2.840.113549.1.12.1.6": "RC2-40-CBC",
    "2.16.840.1.101.3.4.1.2": "PBES2 AES-128-CBC",
    "2.16.840.1.101.3.4.1.22": "PBES2 AES-192-CBC",
    "2.16.840.1.101.3.4.1.42": "PBES2 AES-256-CBC",
    "1.2.840.113549.3.7": "PBES2 3DES-CBC",
}
# (hashlib name, output bytes u, block bytes v) of the MAC digests RFC 7292's KDF uses.
_MAC_HASHES = {
    "1.3.14.3.2.26": ("sha1", 20, 64),
    "2.16.840.1.101.3.4.2.4": ("sha224", 28, 64),
    "2.16.840.1.101.3.4.2.1": ("sha256", 32, 64),
    "2.16.840.1.101.3.4.2.2": ("sha384", 48, 128),
    "2.16.840.1.101.3.4.2.3": ("sha512", 64, 128),
}
_MAC_OIDS = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1"}


class _DerError(ValueError):
    pass


# -- a minimal DER walk ------------------------------------------------------------------------


def _tlv(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the element at ``offset``; DER lengths only."""
    if offset + 2 > end:
        raise _DerError("truncated")
    tag = data[offset]
    length = data[offset + 1]
    start = offset + 2
    if length == 0x80:
        raise _DerError("indefinite length")
    if length & 0x80:
        count = length & 0x7F
        if count > 4 or start + count > end:
            raise _DerError("bad length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    if start + length > end:
        raise _DerError("truncated")
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, value start, value end, element start) of each element in ``data[start:end]``."""
    found = []
    offset = start
    while offset < end:
        tag, value_start, value_end = _tlv(data, offset, end)
        found.append((tag, value_start, value_end, offset))
        offset = value_end
    return found


def _oid(value: bytes) -> str:
    if not value:
        raise _DerError("empty OID")
    numbers = [value[0] // 40, value[0] % 40] if value[0] < 80 else [2, value[0] - 80]
    current = 0
    for byte in value[1:]:
        current = (current << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(current)
            current = 0
    return ".".join(str(number) for number in numbers)


def _encode(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + content


def _encode_oid(dotted: str) -> bytes:
    numbers = [int(part) for part in dotted.split(".")]
    body = bytearray([numbers[0] * 40 + numbers[1]])
    for number in numbers[2:]:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        body.extend(reversed(chunk))
    return _encode(0x06, bytes(body))


@dataclass(slots=True)
class KeyBag:
    """One key bag of the unencrypted SafeContents, as the DER walk found it.

    Attributes:
        der: The bag's value: an EncryptedPrivateKeyInfo (shrouded) or a PrivateKeyInfo.
        shrouded: Whether ``der`` is encrypted.
        friendly_name: The bag's friendlyName attribute (the alias), or None.
        local_key_id: The bag's localKeyId attribute, or None.
    """

    der: bytes
    shrouded: bool
    friendly_name: str | None = None
    local_key_id: bytes | None = None


@dataclass(slots=True)
class Pkcs12Layout:
    """What the DER walk learnt of a PKCS#12 file, without decrypting anything.

    Attributes:
        content_infos: The raw DER of each ContentInfo of the AuthenticatedSafe.
        authenticated_safe: The bytes the MAC covers.
        key_bags: How many key bags the unencrypted SafeContents hold.
        keys: Those key bags, in file order.
        certificate_scheme: How the certificates are encrypted (``"RC2-40-CBC"``), or None.
        key_scheme: How the keys are encrypted, or None.
        mac_hash: hashlib name of the MAC digest, or None (no MAC, or one this walk does not
            know, such as PBMAC1).
    """

    content_infos: list[bytes] = field(default_factory=list)
    authenticated_safe: bytes = b""
    key_bags: int = 0
    keys: list[KeyBag] = field(default_factory=list)
    certificate_scheme: str | None = None
    key_scheme: str | None = None
    mac_hash: str | None = None
    mac_digest: bytes = b""
    mac_salt: bytes = b""
    mac_iterations: int = 1

    @property
    def profile(self) -> str | None:
        """The write profile matching the file: ``aes256``, ``3des``, ``rc2`` or None."""
        scheme = self.certificate_scheme or self.key_scheme or ""
        if "AES" in scheme:
            return "aes256"
        if "RC2" in scheme:
            return "rc2"
        if "3DES" in scheme:
            return "3des"
        return None

    @property
    def schemes(self) -> str:
        """The encryption schemes named for a person (``"RC2-40-CBC and 3DES-CBC"``)."""
        names = [name for name in (self.certificate_scheme, self.key_scheme) if name]
        return " and ".join(dict.fromkeys(names)) or "an unknown scheme"


def _algorithm(data: bytes, start: int, end: int) -> str | None:
    """The scheme name of an AlgorithmIdentifier (PBES2: its cipher)."""
    parts = _children(data, start, end)
    oid = _oid(data[parts[0][1] : parts[0][2]])
    if oid == _OID_PBES2 and len(parts) > 1:
        params = _children(data, parts[1][1], parts[1][2])
        cipher = _children(data, params[1][1], params[1][2])
        cipher_oid = _oid(data[cipher[0][1] : cipher[0][2]])
        return _SCHEMES.get(cipher_oid, f"PBES2 {cipher_oid}")
    return _SCHEMES.get(oid, oid)


def pkcs12_layout(data: bytes) -> Pkcs12Layout:
    """Walk a PKCS#12 file's DER: its ContentInfos, schemes, key count and MAC.

    Raises:
        ValueError: the data is not a DER PKCS#12 file laid out as RFC 7292 says.
    """
    try:
        return _layout(data)
    except (_DerError, IndexError) as exc:
        raise ValueError(f"not a PKCS#12 file this agent can walk ({exc})") from None


def _layout(data: bytes) -> Pkcs12Layout:
    layout = Pkcs12Layout()
    tag, start, end = _tlv(data, 0, len(data))
    if tag != 0x30:
        raise _DerError("not a SEQUENCE")
    top = _children(data, start, end)
    auth_safe = _children(data, top[1][1], top[1][2])
    if _oid(data[auth_safe[0][1] : auth_safe[0][2]]) != _OID_DATA:
        raise _DerError("signed PKCS#12 files are not supported")
    explicit = _children(data, auth_safe[1][1], auth_safe[1][2])
    octets = explicit[0]
    layout.authenticated_safe = data[octets[1] : octets[2]]
    safe = layout.authenticated_safe
    _, seq_start, seq_end = _tlv(safe, 0, len(safe))
    for _tag, ci_start, ci_end, element_start in _children(safe, seq_start, seq_end):
        layout.content_infos.append(safe[element_start:ci_end])
        parts = _children(safe, ci_start, ci_end)
        kind = _oid(safe[parts[0][1] : parts[0][2]])
        inner = _children(safe, parts[1][1], parts[1][2])[0]
        if kind == _OID_DATA:
            _, bags_start, bags_end = _tlv(safe, inner[1], inner[2])
            for _b, bag_start, bag_end, _e in _children(safe, bags_start, bags_end):
                bag = _children(safe, bag_start, bag_end)
                bag_id = _oid(safe[bag[0][1] : bag[0][2]])
                if bag_id in {_OID_KEY_BAG, _OID_SHROUDED_KEY_BAG}:
                    layout.key_bags += 1
                    value = _children(safe, bag[1][1], bag[1][2])[0]
                    key_bag = KeyBag(
                        safe[value[3] : value[2]], shrouded=bag_id == _OID_SHROUDED_KEY_BAG
                    )
                    if len(bag) > 2:
                        _bag_attributes(safe, bag[2][1], bag[2][2], key_bag)
                    layout.keys.append(key_bag)
                if bag_id == _OID_SHROUDED_KEY_BAG:
                    shrouded = _children(safe, bag[1][1], bag[1][2])[0]
                    algorithm = _children(safe, shrouded[1], shrouded[2])[0]
                    layout.key_scheme = _algorithm(safe, algorithm[1], algorithm[2])
        elif kind == _OID_ENCRYPTED_DATA:
            encrypted = _children(safe, inner[1], inner[2])
            content_info = _children(safe, encrypted[1][1], encrypted[1][2])
            algorithm = content_info[1]
            layout.certificate_scheme = _algorithm(safe, algorithm[1], algorithm[2])
    if len(top) > 2:
        mac = _children(data, top[2][1], top[2][2])
        digest_info = _children(data, mac[0][1], mac[0][2])
        algorithm = _children(data, digest_info[0][1], digest_info[0][2])
        hash_oid = _oid(data[algorithm[0][1] : algorithm[0][2]])
        layout.mac_hash = _MAC_HASHES.get(hash_oid, (None,))[0]
        layout.mac_digest = data[digest_info[1][1] : digest_info[1][2]]
        layout.mac_salt = data[mac[1][1] : mac[1][2]]
        if len(mac) > 2:
            layout.mac_iterations = int.from_bytes(data[mac[2][1] : mac[2][2]], "big")
    return layout


def _bag_attributes(data: bytes, start: int, end: int, key_bag: KeyBag) -> None:
    """Fill ``key_bag``'s friendlyName and localKeyId from a SET OF Attribute."""
    for _tag, attr_start, attr_end, _e in _children(data, start, end):
        attribute = _children(data, attr_start, attr_end)
        kind = _oid(data[attribute[0][1] : attribute[0][2]])
        values = _children(data, attribute[1][1], attribute[1][2])
        if not values:
            continue
        value = data[values[0][1] : values[0][2]]
        if kind == _OID_FRIENDLY_NAME and values[0][0] == 0x1E:
            key_bag.friendly_name = value.decode("utf-16-be", "replace")
        elif kind == _OID_LOCAL_KEY_ID and values[0][0] == 0x04:
            key_bag.local_key_id = value


# -- the PKCS#12 MAC ---------------------------------------------------------------------------


def pkcs12_kdf(
    password: str | None, salt: bytes, iterations: int, purpose: int, size: int, hash_name: str
) -> bytes:
    """RFC 7292 appendix B.2 key derivation (``purpose`` 3: the MAC key)."""
    _, u, v = next(spec for spec in _MAC_HASHES.values() if spec[0] == hash_name)
    secret = (password + "\0").encode("utf-16-be") if password is not None else b""

    def stretch(value: bytes) -> bytes:
        if not value:
            return b""
        length = v * -(-len(value) // v)
        return (value * -(-length // len(value)))[:length]

    diversifier = bytes([purpose]) * v
    block = bytearray(stretch(salt) + stretch(secret))
    output = b""
    while len(output) < size:
        digest = hashlib.new(hash_name, diversifier + bytes(block)).digest()
        for _ in range(iterations - 1):
            digest = hashlib.new(hash_name, digest).digest()
        output += digest
        addend = int.from_bytes((digest * -(-v // u))[:v], "big") + 1
        for offset in range(0, len(block), v):
            value = (int.from_bytes(block[offset : offset + v], "big") + addend) % (1 << (8 * v))
            block[offset : offset + v] = value.to_bytes(v, "big")
    return output[:size]


def _mac(
    layout_safe: bytes, password: str | None, salt: bytes, iterations: int, name: str
) -> bytes:
    size = hashlib.new(name).digest_size
    key = pkcs12_kdf(password, salt, iterations, 3, size, name)
    return hmac.new(key, layout_safe, name).digest()


def mac_matches(layout: Pkcs12Layout, password: str | None) -> bool | None:
    """Whether ``password`` opens the file's MAC; None when there is no MAC this code knows."""
    if layout.mac_hash is None or not layout.mac_digest:
        return None
    candidates = [password] if password else [None, ""]
    return any(
        hmac.compare_digest(
            _mac(
                layout.authenticated_safe,
                candidate,
                layout.mac_salt,
                layout.mac_iterations,
                layout.mac_hash,
            ),
            layout.mac_digest,
        )
        for candidate in candidates
    )


def _joined(content_infos: list[bytes], password: str, hash_name: str) -> bytes:
    """A PFX of ``content_infos`` with a fresh MAC (RFC 7292 section 4)."""
    safe = _encode(0x30, b"".join(content_infos))
    auth_safe = _encode(0x30, _encode_oid(_OID_DATA) + _encode(0xA0, _encode(0x04, safe)))
    salt = secrets.token_bytes(16 if hash_name == "sha256" else 8)
    digest = _mac(safe, password, salt, ITERATIONS, hash_name)
    algorithm = _encode(0x30, _encode_oid(_MAC_OIDS[hash_name]) + b"\x05\x00")
    mac_data = _encode(
        0x30,
        _encode(0x30, algorithm + _encode(0x04, digest))
        + _encode(0x04, salt)
        + _encode(0x02, ITERATIONS.to_bytes(2, "big")),
    )
    return _encode(0x30, b"\x02\x01\x03" + auth_safe + mac_data)
