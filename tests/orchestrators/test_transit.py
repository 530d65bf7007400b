"""Private keys in transit (orchestrators/transit.py): sealed to one agent key, one job attempt."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrators.transit import (
    TRANSIT_SCHEME,
    TransitError,
    open_sealed,
    public_key_sha256,
    seal,
    sealed_for,
    transit_context,
)

KEY_PEM = b"-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def agent_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_the_agent_opens_what_was_sealed_for_it(agent_key):
    context = transit_context(job_id="j1", attempt=1)
    envelope = seal(KEY_PEM, agent_key.public_key(), context=context)
    assert envelope["scheme"] == TRANSIT_SCHEME
    assert sealed_for(envelope) == public_key_sha256(agent_key.public_key())
    assert b"secret" not in base64.b64decode(envelope["ciphertext"])
    assert open_sealed(envelope, agent_key, context=context) == KEY_PEM


def test_every_envelope_is_fresh(agent_key):
    context = transit_context(job_id="j1", attempt=1)
    first = seal(KEY_PEM, agent_key.public_key(), context=context)
    second = seal(KEY_PEM, agent_key.public_key(), context=context)
    assert first["ephemeral_public_key"] != second["ephemeral_public_key"]
    assert first["ciphertext"] != second["ciphertext"]


def test_another_agent_cannot_open_it(agent_key):
    context = transit_context(job_id="j1", attempt=1)
    envelope = seal(KEY_PEM, agent_key.public_key(), context=context)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TransitError, match="another orchestrator key"):
        open_sealed(envelope, other, context=context)
    # Even when the envelope lies about its recipient, the key derivation refuses it.
    forged = dict(envelope, recipient_spki_sha256=public_key_sha256(other.public_key()))
    with pytest.raises(TransitError, match="does not open"):
        open_sealed(forged, other, context=context)


@pytest.mark.parametrize(
    ("job_id", "attempt"), [("j2", 1), ("j1", 2)], ids=["another job", "another attempt"]
)
def test_an_envelope_is_bound_to_its_job_attempt(agent_key, job_id, attempt):
    envelope = seal(
        KEY_PEM, agent_key.public_key(), context=transit_context(job_id="j1", attempt=1)
    )
    with pytest.raises(TransitError, match="does not open"):
        open_sealed(envelope, agent_key, context=transit_context(job_id=job_id, attempt=attempt))


def test_an_altered_envelope_is_refused(agent_key):
    context = transit_context(job_id="j1", attempt=1)
    envelope = seal(KEY_PEM, agent_key.public_key(), context=context)
    raw = bytearray(base64.b64decode(envelope["ciphertext"]))
    raw[0] ^= 1
    altered = dict(envelope, ciphertext=base64.b64encode(bytes(raw)).decode())
    with pytest.raises(TransitError, match="does not open"):
        open_sealed(altered, agent_key, context=context)


@pytest.mark.parametrize(
    "envelope",
    [
        None,
        "text",
        {"scheme": "RSA-OAEP"},
        {"scheme": TRANSIT_SCHEME},
        {"scheme": TRANSIT_SCHEME, "recipient_spki_sha256": "x"},
    ],
)
def test_malformed_envelopes_are_refused(agent_key, envelope):
    with pytest.raises(TransitError):
        open_sealed(envelope, agent_key, context=b"c")


def test_garbage_fields_are_refused(agent_key):
    good = seal(KEY_PEM, agent_key.public_key(), context=b"c")
    for field_name in ("ephemeral_public_key", "nonce", "ciphertext"):
        with pytest.raises(TransitError):
            open_sealed(dict(good, **{field_name: "!!not base64"}), agent_key, context=b"c")
    with pytest.raises(TransitError, match="malformed"):
        open_sealed(
            dict(good, ephemeral_public_key=base64.b64encode(b"\x04" + b"\x00" * 64).decode()),
            agent_key,
            context=b"c",
        )


def test_only_p256_recipients():
    with pytest.raises(TransitError, match="P-256"):
        seal(KEY_PEM, ec.generate_private_key(ec.SECP384R1()).public_key(), context=b"c")
