"""The built-in CAs' own key and certificate, loaded once per process.

Decrypting and parsing a CA key costs more than signing with it, so the issuing
services and the OCSP responder share this cache (a module of its own: both import it,
neither imports the other).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certyard.pki import crypto
from certyard.pki.models import CertificateAuthority

_loaded: dict[tuple[int, str], tuple[x509.Certificate, crypto.PrivateKey]] = {}
_loaded_lock = threading.Lock()


def ca_material(ca: CertificateAuthority) -> tuple[x509.Certificate, crypto.PrivateKey]:
    """The CA's certificate and decrypted key, cached per process (decrypting and parsing
    a key costs more than signing with it). Keyed by the certificate's fingerprint, so a
    CA whose certificate changes is loaded again."""
    key = (ca.pk, ca.sha256 or hashlib.sha256(ca.certificate_pem.encode()).hexdigest())
    with _loaded_lock:
        found = _loaded.get(key)
    if found is not None:
        return found
    certificate = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    private_key = serialization.load_pem_private_key(ca.private_key_pem.encode(), password=None)
    with _loaded_lock:
        _loaded[key] = (certificate, private_key)  # type: ignore[assignment]
    return certificate, private_key  # type: ignore[return-value]


def public_key_der(public_key: Any) -> bytes:
    """A public key as DER SubjectPublicKeyInfo (what is compared and hashed)."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
