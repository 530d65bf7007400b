"""Discovery: find certificate stores in a machine's folders and classify each file by content.

A discovery job names folders, file-name patterns, folders to skip, whether to follow links
and how deep to go. The agent walks only inside its own store roots (a folder outside them is
skipped with a note; a link leading outside them is never followed), opens regular files
only (never a FIFO or a device), reads no file larger than its limit, and classifies what it
finds by content, whatever the file's name says:

``pem`` certificates in PEM (perhaps with a key), ``der`` one DER certificate, ``pkcs7`` a
PKCS#7 bundle (PEM or DER), ``pkcs12`` a PKCS#12 file (``password_needed`` when neither no
password nor the empty one opens it), ``jks`` / ``jceks`` a Java keystore (its magic number;
certificates counted without the password, which Java keystores keep in clear), ``key_only``
a private key without a certificate, ``unknown`` a file named like a certificate that is none
of these (reported with an error). Any other file is not reported.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from orchestrators.sdk import path_within_roots

MAX_CANDIDATES = 20_000
MAX_DEPTH_LIMIT = 64
DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024
JKS_MAGIC = b"\xfe\xed\xfe\xed"
JCEKS_MAGIC = b"\xce\xce\xce\xce"
# A file named like one of these is reported as "unknown" when its content is not recognised.
CERTIFICATE_NAMES = (
    "*.pem", "*.crt", "*.cer", "*.der", "*.p7b", "*.p7c", "*.p12", "*.pfx", "*.jks",
    "*.jceks", "*.keystore", "*.truststore", "*.key",
)  # fmt: skip
STORE_TYPE_OF_KIND = {
    "pem": "PEM",
    "der": "PEM",
    "pkcs7": "PEM",
    "pkcs12": "PKCS12",
    "jks": "JKS",
    "jceks": "JCEKS",
}
_PKCS7_DATA_OID = bytes.fromhex("06092a864886f70d010701")
_PKCS7_SIGNED_OID = bytes.fromhex("06092a864886f70d010702")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file discovery found, with the evidence of what it is (the wire form of one
    ``candidates`` item of ``POST jobs/<id>/discovery``)."""

    path: str
    kind: str
    certificate_count: int = 0
    private_key: bool = False
    password_needed: bool = False
    error: str | None = None

    @property
    def store_type(self) -> str | None:
        return STORE_TYPE_OF_KIND.get(self.kind)

    def to_wire(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "store_type": self.store_type,
            "certificate_count": self.certificate_count,
            "private_key": self.private_key,
            "password_needed": self.password_needed,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class DiscoveryRequest:
    """A discovery job's payload, checked."""

    directories: tuple[str, ...]
    file_patterns: tuple[str, ...] = ()
    ignored_directories: tuple[str, ...] = ()
    follow_links: bool = False
    max_depth: int = 8

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DiscoveryRequest:
        """Raises ValueError for a payload of the wrong shape."""

        def strings(name: str) -> tuple[str, ...]:
            value = payload.get(name) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of strings")
            return tuple(value)

        try:
            max_depth = int(payload.get("max_depth", 8))
        except (TypeError, ValueError) as exc:
            raise ValueError("max_depth must be an integer") from exc
        directories = strings("directories")
        if not directories:
            raise ValueError("a discovery needs at least one directory")
        return cls(
            directories=directories,
            file_patterns=strings("file_patterns"),
            ignored_directories=strings("ignored_directories"),
            follow_links=bool(payload.get("follow_links", False)),
            max_depth=max(0, min(max_depth, MAX_DEPTH_LIMIT)),
        )


@dataclass(slots=True)
class DiscoveryResult:
    candidates: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files_examined: int = 0


def _is_certificate_name(name: str) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatch(lowered, pattern) for pattern in CERTIFICATE_NAMES)


def _java_keystore_evidence(data: bytes) -> tuple[int, bool, str | None]:
    """(certificates, private key entries?, error) of a JKS/JCEKS file, read without the
    password: Java keystores keep certificates in clear (only the integrity check and the
    keys need it). A JCEKS secret-key entry (a serialised Java object) stops the count."""
    position = 4

    def take(size: int) -> bytes:
        nonlocal position
        if position + size > len(data):
            raise ValueError("truncated")
        chunk = data[position : position + size]
        position += size
        return chunk

    def utf() -> None:
        take(struct.unpack(">H", take(2))[0])

    def certificate(version: int) -> None:
        if version == 2:
            utf()  # the certificate type, "X.509"
        take(struct.unpack(">I", take(4))[0])

    certificates, has_key = 0, False
    try:
        version, count = struct.unpack(">II", take(8))
        for _ in range(count):
            tag = struct.unpack(">I", take(4))[0]
            utf()  # alias
            take(8)  # timestamp
            if tag == 1:
                has_key = True
                take(struct.unpack(">I", take(4))[0])  # the encrypted key
                for _ in range(struct.unpack(">I", take(4))[0]):
                    certificate(version)
                    certificates += 1
            elif tag == 2:
                certificate(version)
                certificates += 1
            elif tag == 3:
                has_key = True  # a secret key: not a certificate, and not countable further
                break
            else:
                return certificates, has_key, f"unknown keystore entry type {tag}"
    except (ValueError, struct.error):
        return certificates, has_key, "the keystore is truncated or damaged"
    return certificates, has_key, None


def _looks_like_pkcs12(data: bytes) -> bool:
    # PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo (pkcs7-data or -signed) }
    head = data[:40]
    return (
        data[:1] == b"\x30"
        and b"\x02\x01\x03\x30" in head
        and (_PKCS7_DATA_OID in head or _PKCS7_SIGNED_OID in head)
    )


def _pkcs12_evidence(data: bytes) -> Candidate | None:
    for password in (None, b""):
        try:
            loaded = pkcs12.load_pkcs12(data, password)
        except (ValueError, TypeError):
            continue
        count = len(loaded.additional_certs) + (1 if loaded.cert is not None else 0)
        return Candidate("", "pkcs12", count, loaded.key is not None)
    return None


def classify(path: str, data: bytes) -> Candidate | None:
    """What ``data`` (a file's whole content) is, or None when it is nothing to report."""
    if data.startswith(JKS_MAGIC) or data.startswith(JCEKS_MAGIC):
        kind = "jks" if data.startswith(JKS_MAGIC) else "jceks"
        count, has_key, error = _java_keystore_evidence(data)
        return Candidate(path, kind, count, has_key, True, error)
    if b"-----BEGIN " in data:
        return _classify_pem(path, data)
    if data[:1] == b"\x30":
        if _looks_like_pkcs12(data):
            found = _pkcs12_evidence(data)
            if found is not None:
                return Candidate(path, "pkcs12", found.certificate_count, found.private_key)
            return Candidate(path, "pkcs12", password_needed=True)
        try:
            x509.load_der_x509_certificate(data)
            return Candidate(path, "der", 1)
        except ValueError:
            pass
        if _PKCS7_SIGNED_OID in data[:40]:
            try:
                return Candidate(path, "pkcs7", len(pkcs7.load_der_pkcs7_certificates(data)))
            except ValueError:
                pass
        try:
            serialization.load_der_private_key(data, password=None)
            return Candidate(path, "key_only", private_key=True)
        except (ValueError, TypeError):
            pass
    if _is_certificate_name(os.path.basename(path)):
        return Candidate(path, "unknown", error="not a certificate, key or keystore format")
    return None


def _classify_pem(path: str, data: bytes) -> Candidate | None:
    has_key = b"PRIVATE KEY-----" in data
    encrypted_key = (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data
    )
    if b"-----BEGIN PKCS7-----" in data:
        try:
            count = len(pkcs7.load_pem_pkcs7_certificates(data))
            return Candidate(path, "pkcs7", count)
        except ValueError:
            return Candidate(path, "unknown", error="a PKCS#7 block that does not parse")
    if b"-----BEGIN CERTIFICATE-----" in data or b"-----BEGIN TRUSTED CERTIFICATE-----" in data:
        try:
            count = len(x509.load_pem_x509_certificates(data))
        except ValueError:
            return Candidate(
                path, "unknown", private_key=has_key, error="a PEM certificate that does not parse"
            )
        return Candidate(path, "pem", count, has_key, encrypted_key)
    if has_key:
        return Candidate(path, "key_only", private_key=True, password_needed=encrypted_key)
    if _is_certificate_name(os.path.basename(path)):
        return Candidate(path, "unknown", error="PEM without a certificate or key")
    return None


def _read_regular(path: str, *, follow_links: bool, limit: int) -> bytes | str:
    """The file's content, or why it was not read (a str). Never blocks on a FIFO."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return f"cannot open: {exc.strerror or exc}"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size > limit:
            return f"larger than the agent's file size limit ({limit} bytes)"
        chunks, remaining = [], limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            return f"larger than the agent's file size limit ({limit} bytes)"
        return data
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    finally:
        os.close(fd)


def discover(
    request: DiscoveryRequest,
    *,
    roots: tuple[str, ...] | None,
    max_file_bytes: int | None = None,
) -> DiscoveryResult:
    """Walk ``request.directories`` inside ``roots`` and classify the files found."""
    result = DiscoveryResult()
    limit = max_file_bytes or DEFAULT_MAX_FILE_BYTES
    ignored_names = {d for d in request.ignored_directories if os.sep not in d}
    ignored_paths = {os.path.realpath(d) for d in request.ignored_directories if os.path.isabs(d)}
    seen_files: set[str] = set()
    seen_dirs: set[tuple[int, int]] = set()
    for directory in request.directories:
        if not os.path.isabs(directory):
            result.notes.append(f"{directory}: skipped, not an absolute path")
            continue
        if not path_within_roots(directory, roots):
            result.notes.append(f"{directory}: skipped, outside this orchestrator's roots")
            continue
        if not os.path.isdir(directory):
            result.notes.append(f"{directory}: skipped, not a folder")
            continue
        start = os.path.realpath(directory)
        for path in _walk(start, request, roots, ignored_names, ignored_paths, seen_dirs, result):
            if path in seen_files:
                continue
            seen_files.add(path)
            if len(result.candidates) >= MAX_CANDIDATES:
                result.notes.append(f"stopped at {MAX_CANDIDATES} candidates")
                return result
            result.files_examined += 1
            data = _read_regular(path, follow_links=request.follow_links, limit=limit)
            if isinstance(data, str):
                if _is_certificate_name(os.path.basename(path)):
                    result.candidates.append(Candidate(path, "unknown", error=data))
                continue
            candidate = classify(path, data)
            if candidate is not None:
                result.candidates.append(candidate)
    return result


def _walk(
    start: str,
    request: DiscoveryRequest,
    roots: tuple[str, ...] | None,
    ignored_names: set[str],
    ignored_paths: set[str],
    seen_dirs: set[tuple[int, int]],
    result: DiscoveryResult,
) -> Iterator[str]:
    """The paths of the files to examine below ``start`` (a real path), depth first."""
    stack: list[tuple[str, int]] = [(start, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            info = os.stat(folder)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen_dirs:
            continue  # a loop of links, or a folder named twice
        seen_dirs.add((info.st_dev, info.st_ino))
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            result.notes.append(f"{folder}: cannot list ({exc.strerror or exc})")
            continue
        subfolders = []
        for entry in entries:
            path = os.path.join(folder, entry.name)
            try:
                is_link = entry.is_symlink()
                if is_link and not request.follow_links:
                    continue
                if is_link:
                    # Follow a link only to where the agent may read.
                    path = os.path.realpath(path)
                    if not path_within_roots(path, roots):
                        continue
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = entry.is_file(follow_symlinks=True)
            except OSError:
                continue
            if is_dir:
                if entry.name in ignored_names or os.path.realpath(path) in ignored_paths:
                    continue
                if depth < request.max_depth:
                    subfolders.append((path, depth + 1))
            elif is_file and _name_matches(entry.name, request.file_patterns):
                yield path
        stack.extend(reversed(subfolders))


def _name_matches(name: str, patterns: Sequence[str]) -> bool:
    return not patterns or any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
