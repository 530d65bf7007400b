"""Account keys and JWS (RFC 7515, 7517, 7518, 7638): what signs every ACME request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# How Certyard names itself on the wire: to the CA, and from the http-01 server.
USER_AGENT = "Certyard-ACME/1"


def _b64(data: bytes) -> str:
    """base64url without padding, as JOSE writes every binary value."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_decode(text: str) -> bytes:
    """base64url (or plain base64, as some CAs hand out EAB keys), padding optional."""
    cleaned = "".join(text.split()).replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def account_key_generate() -> str:
    """A new ACME account key: EC P-256, unencrypted PKCS#8 PEM.

    Paste it into ``account_key_pem``. The key *is* the account: the CA finds the account
    by it, and only that account can revoke what it ordered, so keep it for as long as the
    certificates it issued matter.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


_EC_ALGORITHMS: dict[str, tuple[str, hashes.HashAlgorithm, int]] = {
    # curve name: (JWS alg, hash, coordinate size in bytes)
    "secp256r1": ("ES256", hashes.SHA256(), 32),
    "secp384r1": ("ES384", hashes.SHA384(), 48),
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384"}


@dataclass(frozen=True, slots=True)
class AccountKey:
    """An account's private key with what JWS needs of it (RFC 7515, 7517, 7518, 7638).

    Attributes:
        private_key: EC P-256 (ES256), EC P-384 (ES384) or RSA of 2048 bits or more (RS256).
        alg: The JWS algorithm the key signs with.
        jwk: The public key as a JWK, with only the members RFC 7638 hashes (so the same
            dict is both the ``jwk`` header and the thumbprint's input).
    """

    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    alg: str
    jwk: dict[str, str]

    @classmethod
    def from_pem(cls, pem: str) -> AccountKey:
        """The key in ``pem``; ``ValueError`` with a sentence when it cannot be used."""
        try:
            key = serialization.load_pem_private_key(pem.strip().encode("utf-8"), password=None)
        except TypeError as exc:
            raise ValueError("is encrypted: paste the key without a passphrase") from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ValueError("is not a PEM private key") from exc
        if isinstance(key, ec.EllipticCurvePrivateKey):
            algorithm = _EC_ALGORITHMS.get(key.curve.name)
            if algorithm is None:
                raise ValueError(f"is an EC key on {key.curve.name}: use P-256 or P-384")
            size = algorithm[2]
            numbers = key.public_key().public_numbers()
            jwk = {
                "crv": _CURVE_NAMES[key.curve.name],
                "kty": "EC",
                "x": _b64(numbers.x.to_bytes(size, "big")),
                "y": _b64(numbers.y.to_bytes(size, "big")),
            }
            return cls(key, algorithm[0], jwk)
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 2048:
                raise ValueError(f"is an RSA key of {key.key_size} bits: use 2048 or more")
            numbers = key.public_key().public_numbers()
            jwk = {
                "e": _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
                "kty": "RSA",
                "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            }
            return cls(key, "RS256", jwk)
        raise ValueError("is neither an EC (P-256, P-384) nor an RSA key")

    @property
    def thumbprint(self) -> str:
        """RFC 7638: SHA-256 of the JWK's required members, sorted, without whitespace."""
        return _b64(hashlib.sha256(_json_bytes(self.jwk)).digest())

    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature: for EC the raw ``r || s`` of fixed size, not DER."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        _, digest, size = _EC_ALGORITHMS[self.private_key.curve.name]
        der = self.private_key.sign(signing_input, ec.ECDSA(digest))
        r, s = decode_dss_signature(der)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def jws(
        self, url: str, payload: Mapping[str, Any] | None, *, nonce: str, kid: str | None
    ) -> dict[str, str]:
        """A flattened JWS for one ACME request (RFC 8555 section 6.2).

        ``payload`` None makes a POST-as-GET (empty payload). ``kid`` None puts the public
        key in the header (``jwk``): only for newAccount, and for the key's own lookups.
        """
        header: dict[str, Any] = {"alg": self.alg, "nonce": nonce, "url": url}
        if kid is None:
            header["jwk"] = self.jwk
        else:
            header["kid"] = kid
        protected = _b64(_json_bytes(header))
        body = "" if payload is None else _b64(_json_bytes(payload))
        signature = self.sign(f"{protected}.{body}".encode("ascii"))
        return {"protected": protected, "payload": body, "signature": _b64(signature)}


def external_account_binding(
    account_key: AccountKey, *, kid: str, hmac_key: bytes, url: str
) -> dict[str, str]:
    """RFC 8555 section 7.3.4: the account's JWK, signed with the CA's MAC key (HS256)."""
    protected = _b64(_json_bytes({"alg": "HS256", "kid": kid, "url": url}))
    payload = _b64(_json_bytes(account_key.jwk))
    mac = hmac.new(hmac_key, f"{protected}.{payload}".encode("ascii"), hashlib.sha256)
    return {"protected": protected, "payload": payload, "signature": _b64(mac.digest())}
