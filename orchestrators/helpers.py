"""Helpers for store types: reading a store's file safely, PEM and DER, rejected entries.

Standard library only, on top of :mod:`orchestrators.sdk`, so a third-party store type
can use them without the agent (and its tests without a running one)::

    from orchestrators.helpers import pem_blocks, read_store_file, rejected
    from orchestrators.sdk import InventoryEntry, JobConfiguration, StoreTypeExtension

    class BundleStore(StoreTypeExtension):
        ...
        def inventory(self, job: JobConfiguration) -> list[InventoryEntry]:
            text = read_store_file(job.store.store_path, job).decode("ascii", "replace")
            blocks = pem_blocks(text)
            if not blocks:
                return [rejected(job.store.store_path, "holds no certificate")]
            return [InventoryEntry("bundle", False, blocks)]

What the platform makes of what a store type sends (how it parses certificates, how it
writes their subjects and SANs) is in ``docs/extending.md``, *Formats*.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import re
from pathlib import Path

from orchestrators.sdk import (
    InventoryEntry,
    JobConfiguration,
    StoreError,
    os_error_transient,
    path_within_roots,
)

__all__ = [
    "certificate_sha256",
    "der_to_pem",
    "pem_blocks",
    "pem_to_der",
    "read_store_file",
    "rejected",
]

_BEGIN_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_END_CERTIFICATE = "-----END CERTIFICATE-----"
# A block's body never holds "-": a BEGIN without its END does not swallow the next block.
_PEM_BLOCK = re.compile(r"-----BEGIN ([^\n-]+)-----([^-]*)-----END \1-----")


def read_store_file(
    path: str | Path, job: JobConfiguration, *, max_bytes: int | None = None
) -> bytes:
    """The whole file at ``path``, after the checks every store type owes the agent.

    - ``path`` (links and ``..`` resolved) must lie within ``job.store_roots``, the
      folders the agent's administrator allows stores in: check every path a store type
      reads, not only the store path (a link, a file a configuration names);
    - the file must be at most ``job.max_file_bytes`` (or ``max_bytes``, when given and
      smaller) long: it is read up to one byte more, never whole when it is too big.

    Raises :class:`~orchestrators.sdk.StoreError` with a sentence naming the path: a
    permanent one for a path outside the roots, a file too large, no such file, a folder
    or permission denied; a transient one (retried by the platform) for an I/O error, a
    busy file, a timeout (:func:`~orchestrators.sdk.os_error_transient`). A store type that
    treats a missing file as an empty store catches it first with ``os.path.exists``.
    """
    shown = os.fspath(path)
    if not path_within_roots(shown, job.store_roots):
        raise StoreError(f"{shown} is outside the orchestrator's store roots; not read")
    limits = [limit for limit in (job.max_file_bytes, max_bytes) if limit is not None]
    limit = min(limits) if limits else None
    try:
        with open(shown, "rb") as file:
            data = file.read() if limit is None else file.read(limit + 1)
    except FileNotFoundError:
        raise StoreError(f"{shown} does not exist") from None
    except IsADirectoryError:
        raise StoreError(f"{shown} is a folder, not a file") from None
    except PermissionError:
        raise StoreError(f"cannot read {shown}: permission denied") from None
    except OSError as exc:
        raise StoreError(
            f"cannot read {shown}: {exc.strerror or exc}", transient=os_error_transient(exc)
        ) from None
    if limit is not None and len(data) > limit:
        raise StoreError(f"{shown} is larger than the agent's limit ({limit} bytes); not read")
    return data


def pem_blocks(text: str | bytes, *, label: str | None = "CERTIFICATE") -> list[str]:
    """The PEM blocks of ``text`` in order, each ``-----BEGIN …-----`` to ``-----END …-----``
    with ``\\n`` line endings, as found (not decoded: the platform judges the contents).

    ``label`` picks the blocks: ``CERTIFICATE`` (default), ``PRIVATE KEY``,
    ``X509 CRL``, ...; None for every block. Text around and between blocks (comments,
    ``Bag Attributes`` lines) is left out. ``bytes`` are read as Latin-1 (PEM is ASCII).
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("latin-1")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [
        match.group(0)
        for match in _PEM_BLOCK.finditer(text)
        if label is None or match.group(1) == label
    ]


def pem_to_der(pem: str | bytes) -> bytes:
    """The DER of the first ``CERTIFICATE`` block of ``pem``.

    Raises ``ValueError`` when there is none or its body is not base64.
    """
    blocks = pem_blocks(pem)
    if not blocks:
        raise ValueError("the text holds no -----BEGIN CERTIFICATE----- block")
    body = blocks[0][len(_BEGIN_CERTIFICATE) : -len(_END_CERTIFICATE)]
    try:
        der = binascii.a2b_base64("".join(body.split()), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the certificate block is not base64: {exc}") from None
    if not der:
        raise ValueError("the certificate block is empty")
    return der


def der_to_pem(der: bytes) -> str:
    """A ``-----BEGIN CERTIFICATE-----`` block for ``der`` (64-character lines, ``\\n``,
    no newline after the END line): what ``InventoryEntry.certificates`` holds."""
    # 48 bytes make one 64-character line; b2a_base64 ends each with "\n".
    lines = [binascii.b2a_base64(der[start : start + 48]) for start in range(0, len(der), 48)]
    return f"{_BEGIN_CERTIFICATE}\n{b''.join(lines).decode('ascii')}{_END_CERTIFICATE}"


def certificate_sha256(pem_or_der: str | bytes) -> str:
    """A certificate's SHA-256 fingerprint: lowercase hex of the hash of its DER.

    The platform's key for a certificate (``CertificateInfo.sha256``, the ``sha256`` a
    ``remove`` job names, ``InventoryEntry.certificate_sha256``). Takes the DER itself,
    or PEM text (``str``, or ``bytes`` starting with ``-----BEGIN``; the first
    ``CERTIFICATE`` block counts). Raises ``ValueError`` for PEM without one.
    """
    if isinstance(pem_or_der, str) or pem_or_der.lstrip()[:11] == b"-----BEGIN ":
        pem_or_der = pem_to_der(pem_or_der)
    return hashlib.sha256(bytes(pem_or_der)).hexdigest()


def rejected(alias: str, why: str, *, private_key: bool = False) -> InventoryEntry:
    """An inventory entry the store found and cannot use: the platform records it as a
    rejected entry with ``why`` as the reason, and the job ends with a warning.

    ``why`` reads after the alias, for a person: ``"is empty"``, ``"is a PKCS#12 file and
    the store password does not open it"``; never a secret.
    """
    return InventoryEntry(alias, private_key, [], error=why)
