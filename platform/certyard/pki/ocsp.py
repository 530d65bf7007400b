"""The OCSP responder (RFC 6960, nonces by RFC 8954): every well-formed request answered,
at most one signature per request, answers cached until shortly before their next
update, new signatures rate-limited per client address (docs/architecture.md, "The OCSP
responder")."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from certyard.pki import crypto
from certyard.pki.material import ca_material, public_key_der
from certyard.pki.models import CertificateAuthority, IssuedCertificate

# RFC 8954: a nonce is 1 to 32 octets; a responder need not echo (and sign) anything longer.
OCSP_NONCE_MAX_BYTES = 32
# An OCSP request is a few hundred bytes; anything far larger is not one.
OCSP_REQUEST_MAX_BYTES = 16 * 1024
# RFC 5280: a serial number is positive and at most 20 octets. Others cannot be ours.
_SERIAL_LIMIT = 1 << 159
# What a CertID may name.
_HASH_CLASSES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_OCSP_HASHES = tuple(_HASH_CLASSES)
# A cached answer is served until this long before its nextUpdate, so no client receives
# one about to expire (a tenth of the answer's life, at most 5 minutes).
_OCSP_CACHE_MARGIN = dt.timedelta(minutes=5)


def _ocsp_error(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


def ocsp_error_malformed() -> bytes:
    """The unsigned ``malformedRequest`` answer, for what is no OCSP request at all."""
    return _ocsp_error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)


def _ocsp_cache_key(ca_id: int, crl_number: int, algorithm: str, serial: int) -> str:
    # The CRL number is part of the key: every revocation regenerates the CRL, so the
    # answers cached before it are never read again, whatever the timing (an answer
    # signed from the rows read before the revocation committed is written under the
    # old number). Explicit deletion (certificate_revoke) only frees the space early.
    return f"pki-ocsp:{ca_id}:{crl_number}:{algorithm}:{serial:x}"


def ocsp_answers_forget(ca_id: int, crl_number: int, serial: int) -> None:

    cache.delete_many([_ocsp_cache_key(ca_id, crl_number, a, serial) for a in _OCSP_HASHES])


def _ocsp_rate_spend(client_address: str) -> bool:
    """Count one new signature for this client address; False past CERTYARD_OCSP_RATE.

    A fixed one-minute window on the shared cache (the database table or Redis), so the
    limit holds across every web process. The address is hashed into the key: it may come
    from X-Forwarded-For, and cache keys must stay short and plain.
    """

    limit = settings.CERTYARD_OCSP_RATE
    if limit <= 0:
        return True  # 0 turns the limit off
    window = int(timezone.now().timestamp() // 60)
    address = hashlib.sha256(client_address.encode()).hexdigest()[:32]
    key = f"pki-ocsp-rate:{address}:{window}"
    spent = cache.get(key)
    if spent is not None and spent >= limit:
        return False  # a flood past the limit costs one cache read per request, no write
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # culled between add and incr: start the window again
        cache.set(key, 1, timeout=120)
        count = 1
    return count <= limit


@dataclass(frozen=True)
class _OcspQuestion:
    """What one well-formed OCSP request asks: the CertID and its nonce."""

    algorithm: hashes.HashAlgorithm
    name_hash: bytes
    key_hash: bytes
    serial: int
    nonce: bytes | None


def _ocsp_question(request_der: bytes) -> _OcspQuestion | None:
    """Read a request; None when it is not one this responder can answer (malformed)."""
    if not request_der or len(request_der) > OCSP_REQUEST_MAX_BYTES:
        return None
    try:
        # NotImplementedError: cryptography reads one CertID per request, and its
        # response builder writes one SingleResponse, so a request naming several
        # certificates is answered malformedRequest (documented in docs/architecture.md).
        request = ocsp.load_der_ocsp_request(request_der)
        algorithm = request.hash_algorithm
        name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
        serial = request.serial_number
        extensions = request.extensions
    except (ValueError, NotImplementedError, UnsupportedAlgorithm):
        return None
    nonce: bytes | None = None
    for extension in extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            nonce = extension.value.nonce
            # RFC 8954 section 2.1: 1 to 32 octets; a longer one is refused, not echoed.
            if not 1 <= len(nonce) <= OCSP_NONCE_MAX_BYTES:
                return None
        elif extension.critical:
            return None  # RFC 6960 section 4.4: a critical extension we do not understand
    if algorithm.name not in _OCSP_HASHES or serial < 0:
        return None  # a negative INTEGER cannot be written back into the answer's CertID
    return _OcspQuestion(algorithm, name_hash, key_hash, serial, nonce)


@functools.lru_cache(maxsize=256)
def _issuer_hashes(ca_certificate: x509.Certificate, algorithm_name: str) -> tuple[bytes, bytes]:
    """The CertID's issuerNameHash and issuerKeyHash for this CA (cached per process:
    every request needs them, and they depend on the certificate alone)."""
    algorithm = _HASH_CLASSES[algorithm_name]()
    name_hash = hashes.Hash(algorithm)
    name_hash.update(ca_certificate.subject.public_bytes())
    return name_hash.finalize(), _issuer_key_hash(ca_certificate.public_key(), algorithm)


def ocsp_respond(
    ca: CertificateAuthority, request_der: bytes, *, client_address: str | None = None
) -> bytes:
    """Answer one OCSP request (RFC 6960) about a certificate this CA issued.

    The CA signs the responses itself (no delegated responder), so a client that trusts
    the CA needs nothing more. Every failure is an OCSP answer, never an exception:
    ``malformedRequest`` for what cannot be read (several CertIDs, a nonce over 32 octets,
    a negative serial), ``unauthorized`` for another issuer (unsigned), ``tryLater``
    (unsigned) when ``client_address`` has made CERTYARD_OCSP_RATE new signatures this
    minute. The answer's CertID is the request's own (hash algorithm, hashes and serial).

    At most one signature per request. A good or revoked answer without a nonce is cached
    on the shared cache per (CA, hash algorithm, serial) until shortly before its
    nextUpdate, and the same signed bytes are served to every such request meanwhile,
    whatever the rate: a flood of requests costs cache reads, not signatures. Unknown
    serials are not cached (see below); the rate bounds what they cost. A request with a
    nonce gets a fresh answer echoing it, within the rate; past the rate it gets the
    cached answer without its nonce when there is one (as RFC 5019 allows), ``tryLater``
    otherwise.
    ``client_address`` None (internal callers) is not limited.
    """

    question = _ocsp_question(request_der)
    if question is None:
        return ocsp_error_malformed()
    ca_certificate, ca_key = ca_material(ca)
    if (question.name_hash, question.key_hash) != _issuer_hashes(
        ca_certificate, question.algorithm.name
    ):
        return _ocsp_error(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    key = _ocsp_cache_key(ca.pk, ca.crl_number, question.algorithm.name, question.serial)
    if question.nonce is None and (cached := cache.get(key)) is not None:
        return bytes(cached)
    if client_address is not None and not _ocsp_rate_spend(client_address):
        cached = cache.get(key) if question.nonce is not None else None
        if cached is not None:
            return bytes(cached)
        return _ocsp_error(ocsp.OCSPResponseStatus.TRY_LATER)
    status, revoked_at, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
    if 0 < question.serial < _SERIAL_LIMIT:  # only those can be a certificate we issued
        issued = (
            IssuedCertificate.objects.filter(ca=ca, serial_number=format(question.serial, "x"))
            .only("revoked_at", "revocation_reason")
            .first()
        )
        if issued is not None and issued.revoked_at is not None:
            status, revoked_at = ocsp.OCSPCertStatus.REVOKED, issued.revoked_at
            reason = crypto.REASON_FLAGS.get(issued.revocation_reason)
        elif issued is not None:
            status = ocsp.OCSPCertStatus.GOOD
    this_update = crypto.now().replace(microsecond=0)
    lifetime = dt.timedelta(hours=settings.CERTYARD_OCSP_HOURS)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=question.name_hash,
            issuer_key_hash=question.key_hash,
            serial_number=question.serial,
            algorithm=question.algorithm,
            cert_status=status,
            this_update=this_update,
            next_update=this_update + lifetime,
            revocation_time=revoked_at,
            revocation_reason=reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, ca_certificate)
    )
    if question.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(question.nonce), critical=False)
    der = builder.sign(ca_key, crypto.signing_hash(ca_key)).public_bytes(  # type: ignore[arg-type]
        serialization.Encoding.DER
    )
    # Not the unknown answers: random serials are what a flood asks about, and caching
    # each would let a few addresses fill the shared cache (on the database table it
    # culls at MAX_ENTRIES, rate-limit counters included); their signatures are bounded
    # by the rate limit instead.
    if question.nonce is None and status != ocsp.OCSPCertStatus.UNKNOWN:
        keep = lifetime - min(_OCSP_CACHE_MARGIN, lifetime / 10)
        cache.set(key, der, timeout=max(1, int(keep.total_seconds())))
    return der


def _issuer_key_hash(public_key: Any, algorithm: hashes.HashAlgorithm) -> bytes:
    """Hash of the subjectPublicKey BIT STRING's contents (RFC 6960's CertID)."""
    digest = hashes.Hash(algorithm)
    digest.update(_spki_bit_string(public_key_der(public_key)))
    return digest.finalize()


def _der_length(data: bytes, offset: int) -> tuple[int, int]:
    """The DER length at ``offset``, and where the value starts."""
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    count = first & 0x7F
    return int.from_bytes(data[offset + 1 : offset + 1 + count], "big"), offset + 1 + count


def _spki_bit_string(spki: bytes) -> bytes:
    """The key bits of a SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier, BIT STRING }."""
    _, algorithm_start = _der_length(spki, 1)
    algorithm_length, algorithm_body = _der_length(spki, algorithm_start + 1)
    bit_string_start = algorithm_body + algorithm_length
    length, body = _der_length(spki, bit_string_start + 1)
    return spki[body + 1 : body + length]  # after the unused-bits byte
