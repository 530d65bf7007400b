from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrators import protocol
from orchestrators.agent.client import session_assertion


def test_signing_input_is_purpose_id_time_nonce() -> None:
    signing_input = protocol.session_signing_input(
        orchestrator_id="orc-1", issued_at=1700000000, nonce="abc"
    )

    assert signing_input == b"certyard-session-v1\norc-1\n1700000000\nabc"


def test_assertion_signature_verifies_with_the_public_key(
    agent_key: ec.EllipticCurvePrivateKey,
) -> None:
    assertion = session_assertion(orchestrator_id="orc-1", private_key=agent_key)

    assert set(assertion) == {"orchestrator_id", "issued_at", "nonce", "signature"}
    signing_input = protocol.session_signing_input(
        orchestrator_id="orc-1", issued_at=assertion["issued_at"], nonce=assertion["nonce"]
    )
    signature = base64.b64decode(assertion["signature"], validate=True)
    # Raises InvalidSignature if the agent signed anything else.
    agent_key.public_key().verify(signature, signing_input, ec.ECDSA(hashes.SHA256()))


def test_issued_at_strictly_increases_within_one_second(
    agent_key: ec.EllipticCurvePrivateKey,
) -> None:
    def frozen_clock() -> float:
        return 1700000000.5

    first = session_assertion(orchestrator_id="orc-1", private_key=agent_key, clock=frozen_clock)
    second = session_assertion(orchestrator_id="orc-1", private_key=agent_key, clock=frozen_clock)

    assert first["issued_at"] >= 1700000000
    assert second["issued_at"] > first["issued_at"]
    assert second["nonce"] != first["nonce"]
