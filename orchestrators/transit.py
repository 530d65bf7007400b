"""Private keys in transit: sealed by the platform to one agent's own key, opened by that agent.

Both sides import this module (it is part of the wire protocol, like
``orchestrators.protocol``), so it uses ``cryptography`` alone and knows no Django.

Scheme ``ECDH-ES-P256+HKDF-SHA256+A256GCM`` (the ECIES construction of SEC 1 §5.1 with
RFC 5869's HKDF and AES-256-GCM, the same primitives as HPKE's DHKEM(P-256) mode_base):

- the sender makes a fresh P-256 key pair for every envelope (ephemeral-static ECDH
  against the agent's certified identity key, the one it proves at every session);
- HKDF-SHA256 derives a 256-bit key from the shared secret, salted with the ephemeral
  public key and the recipient's, and bound to :data:`TRANSIT_INFO` and the ``context``;
- AES-256-GCM encrypts, with the context as associated data: an envelope sealed for one
  job attempt cannot be replayed into another.

An envelope is JSON-safe::

    {"scheme": "...", "recipient_spki_sha256": hex, "ephemeral_public_key": b64 (X9.62
     uncompressed point), "nonce": b64, "ciphertext": b64 (with the GCM tag)}

The platform never stores an envelope: it seals when the agent holding the lease fetches the
job's configuration, from the key it keeps encrypted at rest.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TRANSIT_SCHEME = "ECDH-ES-P256+HKDF-SHA256+A256GCM"
TRANSIT_INFO = b"certyard-key-transit-v1"
_POINT = serialization.PublicFormat.UncompressedPoint


class TransitError(Exception):
    """An envelope that cannot be opened: not for this key, altered, or malformed."""


def transit_context(*, job_id: str, attempt: int) -> bytes:
    """The associated data binding an envelope to one attempt at one job."""
    return f"{TRANSIT_INFO.decode()}\njob={job_id}\nattempt={attempt}".encode()


def public_key_sha256(public_key: ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of the key's DER SubjectPublicKeyInfo (the platform's identity digest)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=hashlib.sha256(ephemeral + recipient).digest(),
        info=TRANSIT_INFO + b"\x00" + context,
    ).derive(shared)


def seal(
    plaintext: bytes, recipient: ec.EllipticCurvePublicKey, *, context: bytes
) -> dict[str, Any]:
    """Encrypt ``plaintext`` so that only the holder of ``recipient``'s private key opens it."""
    if not isinstance(recipient, ec.EllipticCurvePublicKey) or not isinstance(
        recipient.curve, ec.SECP256R1
    ):
        raise TransitError("the recipient key must be a P-256 public key")
    ephemeral_key = ec.generate_private_key(ec.SECP256R1())
    ephemeral = ephemeral_key.public_key().public_bytes(serialization.Encoding.X962, _POINT)
    recipient_point = recipient.public_bytes(serialization.Encoding.X962, _POINT)
    key = _derive(ephemeral_key.exchange(ec.ECDH(), recipient), ephemeral, recipient_point, context)
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, context)
    return {
        "scheme": TRANSIT_SCHEME,
        "recipient_spki_sha256": public_key_sha256(recipient),
        "ephemeral_public_key": base64.b64encode(ephemeral).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }


def sealed_for(envelope: Any) -> str | None:
    """The recipient digest an envelope names (to pick the right key), or None if malformed."""
    if isinstance(envelope, dict) and isinstance(envelope.get("recipient_spki_sha256"), str):
        return envelope["recipient_spki_sha256"]
    return None


def open_sealed(envelope: Any, private_key: ec.EllipticCurvePrivateKey, *, context: bytes) -> bytes:
    """Decrypt an envelope :func:`seal` made for ``private_key``'s public key.

    Raises:
        TransitError: the envelope is malformed, uses another scheme, was sealed for
            another key or another context, or was altered.
    """
    if not isinstance(envelope, dict) or envelope.get("scheme") != TRANSIT_SCHEME:
        raise TransitError(f"the key envelope is not a {TRANSIT_SCHEME} envelope")
    public_key = private_key.public_key()
    if envelope.get("recipient_spki_sha256") != public_key_sha256(public_key):
        raise TransitError("the key envelope was sealed for another orchestrator key")
    try:
        ephemeral = base64.b64decode(envelope["ephemeral_public_key"], validate=True)
        nonce = base64.b64decode(envelope["nonce"], validate=True)
        ciphertext = base64.b64decode(envelope["ciphertext"], validate=True)
        ephemeral_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ephemeral)
    except (KeyError, TypeError, ValueError) as exc:
        raise TransitError(f"the key envelope is malformed: {exc}") from exc
    recipient_point = public_key.public_bytes(serialization.Encoding.X962, _POINT)
    key = _derive(
        private_key.exchange(ec.ECDH(), ephemeral_key), ephemeral, recipient_point, context
    )
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, context)
    except (InvalidTag, ValueError) as exc:
        raise TransitError("the key envelope does not open: altered, or for another job") from exc
