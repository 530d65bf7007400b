"""Agent registration (token + CSR) and sessions opened by proof of the agent's key."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.utils import timezone

from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.fleet.services import (
    orchestrator_approve,
    orchestrator_reset,
    registration_token_create,
    registration_token_revoke,
)
from certyard.pki.models import CertificateAuthority
from tests.certs import agent_key, csr_pem, issue, private_key, session_assertion
from tests.certyard.conftest import AGENT, error_of, register_body
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db

REGISTER = f"{AGENT}register"
SESSION = f"{AGENT}session"
HEARTBEAT = f"{AGENT}heartbeat"


def _spki(key) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _token_row(value: str) -> RegistrationToken:
    return RegistrationToken.objects.get(token_prefix=value[:8])


# --- Registration -----------------------------------------------------------------


def test_registration_records_a_new_orchestrator_certified_by_the_orchestrator_ca(
    api,
    make_token,
) -> None:
    token = make_token()
    key = agent_key()
    body = register_body(token, "web-01", key=key)
    # The CSR asks for another name: the platform decides what the certificate says.
    body["csr"] = csr_pem(key, "i-want-to-be-someone-else")

    response = api.post(REGISTER, body, format="json")

    assert response.status_code == 201, response.content
    answer = response.json()
    assert answer["status"] == "new"
    orchestrator = Orchestrator.objects.get(pk=answer["orchestrator_id"])
    assert orchestrator.status == Orchestrator.Status.NEW
    assert (orchestrator.name, orchestrator.client_machine) == ("web-01", "web-01.example.test")
    assert orchestrator.capabilities == ["PEM.Inventory"]
    assert orchestrator.client_parameters == {"site": "lab"}
    assert orchestrator.agent_version == "1.0-test"
    assert orchestrator.source_address == "127.0.0.1"
    assert orchestrator.has_identity
    assert orchestrator.registration_token == _token_row(token)
    assert _token_row(token).use_count == 1

    certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
    ca_certificate = x509.load_pem_x509_certificate(answer["ca_chain"][0].encode())
    stored_ca = CertificateAuthority.objects.get(purpose=CertificateAuthority.Purpose.ORCHESTRATORS)
    assert answer["ca_chain"] == [stored_ca.certificate_pem]
    # Signed by the orchestrator CA's key.
    ca_key = ca_certificate.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    ca_key.verify(
        certificate.signature,
        certificate.tbs_certificate_bytes,
        ec.ECDSA(certificate.signature_hash_algorithm),
    )
    certificate.verify_directly_issued_by(ca_certificate)
    assert certificate.issuer == ca_certificate.subject
    # For the CSR's key, as a TLS client, not a CA, named by the platform.
    assert _spki(certificate.public_key()) == _spki(key.public_key())
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == "web-01"
    assert orchestrator.certificate_pem == answer["certificate"]
    assert orchestrator.certificate_not_after == certificate.not_valid_after_utc
    assert _spki(serialization.load_pem_public_key(orchestrator.public_key_pem.encode())) == _spki(
        key.public_key()
    )


def test_a_token_that_approves_on_register_gives_an_approved_orchestrator(
    api,
    make_token,
) -> None:
    response = api.post(REGISTER, register_body(make_token(approve=True), "auto-01"), format="json")

    assert response.status_code == 201
    assert response.json()["status"] == "approved"
    assert Orchestrator.objects.get(name="auto-01").status == Orchestrator.Status.APPROVED


def test_one_time_token_used_twice_is_refused_the_second_time(api, make_token) -> None:
    token = make_token()
    assert api.post(REGISTER, register_body(token, "first"), format="json").status_code == 201

    response = api.post(REGISTER, register_body(token, "second"), format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "token_used"
    assert list(Orchestrator.objects.values_list("name", flat=True)) == ["first"]
    assert _token_row(token).use_count == 1


def test_expired_token_is_refused(api) -> None:
    row, token = registration_token_create(description="old", valid_for=dt.timedelta(hours=1))
    RegistrationToken.objects.filter(pk=row.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )

    response = api.post(REGISTER, register_body(token, "late"), format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "token_expired"
    assert not Orchestrator.objects.exists()
    assert _token_row(token).use_count == 0


def test_revoked_token_is_refused(api) -> None:
    row, token = registration_token_create(description="revoked", valid_for=dt.timedelta(hours=1))
    registration_token_revoke(token=row)

    response = api.post(REGISTER, register_body(token, "refused"), format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "token_invalid"
    assert not Orchestrator.objects.exists()


def test_unknown_token_is_refused(api) -> None:
    response = api.post(REGISTER, register_body("cyreg_made-up", "nobody"), format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "token_invalid"
    assert not Orchestrator.objects.exists()


def test_reusable_token_registers_two_orchestrators(api, make_token) -> None:
    token = make_token(reusable=True)

    first = api.post(REGISTER, register_body(token, "fleet-a"), format="json")
    second = api.post(REGISTER, register_body(token, "fleet-b"), format="json")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["orchestrator_id"] != second.json()["orchestrator_id"]
    assert sorted(Orchestrator.objects.values_list("name", flat=True)) == ["fleet-a", "fleet-b"]
    row = _token_row(token)
    assert row.use_count == 2 and row.last_used_at is not None


def _rsa_csr() -> str:
    return csr_pem(private_key("rsa"), "rsa-agent")


def _p521_csr() -> str:
    return csr_pem(private_key("ec521"), "p521-agent")


def _ed25519_csr() -> str:
    return csr_pem(private_key("ed25519"), "ed-agent")


def _bad_signature_csr() -> str:
    """A CSR whose signature does not match its key: the last signature byte flipped."""
    der = bytearray(
        x509.load_pem_x509_csr(csr_pem(agent_key(), "tampered").encode()).public_bytes(
            serialization.Encoding.DER
        )
    )
    der[-1] ^= 0x01
    csr = x509.load_der_x509_csr(bytes(der))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("make_csr", "words"),
    [
        (lambda: "this is not a CSR", "csr"),
        (lambda: issue("a-certificate").pem, "csr"),
        (_rsa_csr, "EC P-256"),
        (_p521_csr, "EC P-256"),
        (_ed25519_csr, "EC P-256"),
        (_bad_signature_csr, "signature"),
    ],
    ids=["garbage", "certificate-not-csr", "rsa-key", "p521-key", "ed25519-key", "bad-signature"],
)
def test_bad_csr_is_refused_and_nothing_is_written(api, make_token, make_csr, words) -> None:
    token = make_token()

    response = api.post(REGISTER, register_body(token, "bad-csr", csr=make_csr()), format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert words in error["message"]
    assert not Orchestrator.objects.exists()
    assert _token_row(token).use_count == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "has spaces"),
        ("name", ""),
        ("capabilities", ["not a capability"]),
        ("capabilities", "PEM.Inventory"),
        ("client_parameters", ["a", "list"]),
        ("client_machine", ""),
    ],
)
def test_registration_field_errors_name_the_field(api, make_token, field, value) -> None:
    token = make_token()
    body = {**register_body(token, "fields"), field: value}

    response = api.post(REGISTER, body, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and field in error["fields"]
    assert not Orchestrator.objects.exists()
    assert _token_row(token).use_count == 0


def test_client_parameter_value_with_a_nul_character_is_refused(api, make_token) -> None:
    body = register_body(make_token(), "nul-value", client_parameters={"site": "l\x00ab"})

    response = api.post(REGISTER, body, format="json")

    assert response.status_code == 400
    assert "client_parameters" in error_of(response)["fields"]
    assert not Orchestrator.objects.exists()


def test_client_parameter_key_with_a_nul_character_is_not_a_server_error(
    api,
    make_token,
) -> None:
    token = make_token()
    body = register_body(token, "nul-key", client_parameters={"si\x00te": "lab"})

    response = api.post(REGISTER, body, format="json")

    # Refusing the key or storing it are both fine; failing inside the database is not.
    assert response.status_code in (201, 400)
    if response.status_code == 400:
        assert error_of(response)["code"] == "invalid"
        assert _token_row(token).use_count == 0


def test_same_name_and_machine_registering_again_is_a_conflict(
    api,
    make_token,
) -> None:
    first = api.post(REGISTER, register_body(make_token(), "dup-01"), format="json")
    assert first.status_code == 201
    original = Orchestrator.objects.get()
    second_token = make_token()

    response = api.post(REGISTER, register_body(second_token, "dup-01"), format="json")

    assert response.status_code == 409
    assert error_of(response)["code"] == "already_registered"
    assert Orchestrator.objects.count() == 1
    current = Orchestrator.objects.get()
    assert current.public_key_sha256 == original.public_key_sha256
    assert current.certificate_pem == original.certificate_pem
    assert _token_row(second_token).use_count == 0  # the refusal spent nothing


def test_after_a_reset_the_agent_registers_again_as_the_same_orchestrator(
    api,
    make_token,
    register_agent,
    pem_store,
) -> None:
    registered = register_agent("again-01")
    store = pem_store(registered.orchestrator)
    old_key_hash = registered.orchestrator.public_key_sha256
    orchestrator_reset(orchestrator=registered.orchestrator, actor=None)
    new_key = agent_key()

    response = api.post(
        REGISTER, register_body(make_token(), "again-01", key=new_key), format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["orchestrator_id"] == str(registered.orchestrator.pk)
    orchestrator = Orchestrator.objects.get()
    assert orchestrator.status == Orchestrator.Status.NEW
    assert orchestrator.has_identity and orchestrator.public_key_sha256 != old_key_hash
    certificate = x509.load_pem_x509_certificate(response.json()["certificate"].encode())
    assert _spki(certificate.public_key()) == _spki(new_key.public_key())
    store.refresh_from_db()
    assert store.orchestrator_id == orchestrator.pk  # its stores are kept


# --- Sessions ----------------------------------------------------------------------


def _heartbeat(api, token: str):
    return api.post(HEARTBEAT, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_valid_assertion_opens_a_session(api, agent: RegisteredAgent) -> None:
    assertion = agent.assertion()

    response = api.post(SESSION, assertion, format="json")

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["status"] == "approved" and answer["expires_in"] > 0
    assert _heartbeat(api, answer["token"]).status_code == 200
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.last_assertion_at == assertion["issued_at"]


def test_a_new_orchestrator_may_open_a_session_and_sees_its_status(
    api,
    register_agent,
) -> None:
    waiting = register_agent("waiting-01", approved=False)

    response = api.post(SESSION, waiting.assertion(), format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "new"
    heartbeat = _heartbeat(api, response.json()["token"])
    assert heartbeat.status_code == 200 and heartbeat.json()["status"] == "new"


def test_replayed_assertion_is_refused(api, agent: RegisteredAgent) -> None:
    assertion = agent.assertion()
    assert api.post(SESSION, assertion, format="json").status_code == 200

    response = api.post(SESSION, assertion, format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "replayed"


def test_an_older_assertion_is_refused_after_a_newer_one(api, agent: RegisteredAgent) -> None:
    now = int(time.time())
    older = session_assertion(agent.key, str(agent.orchestrator.pk), now - 5, nonce="older-nonce")
    newer = session_assertion(agent.key, str(agent.orchestrator.pk), now, nonce="newer-nonce")
    assert api.post(SESSION, newer, format="json").status_code == 200

    response = api.post(SESSION, older, format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "replayed"


def test_assertion_signed_by_another_key_is_refused(api, agent: RegisteredAgent) -> None:
    forged = session_assertion(agent_key(), str(agent.orchestrator.pk), int(time.time()))

    response = api.post(SESSION, forged, format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "identity_rejected"
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.last_assertion_at == 0  # a forgery moves nothing


def test_assertion_for_another_orchestrator_id_is_refused(
    api,
    register_agent,
) -> None:
    alice, bob = register_agent("alice"), register_agent("bob")
    # Alice signs, but claims to be Bob.
    claim = session_assertion(alice.key, str(bob.orchestrator.pk), int(time.time()))

    response = api.post(SESSION, claim, format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "identity_rejected"


@pytest.mark.parametrize("offset", [-600, 600])
def test_assertion_ten_minutes_off_is_refused_for_clock_skew(
    api,
    agent: RegisteredAgent,
    offset: int,
) -> None:
    skewed = session_assertion(agent.key, str(agent.orchestrator.pk), int(time.time()) + offset)

    response = api.post(SESSION, skewed, format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "clock_skew"
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.last_assertion_at == 0


@pytest.mark.parametrize(
    "change",
    [
        {"signature": "not base64!!"},
        {"signature": ""},
        {"orchestrator_id": "not-a-uuid"},
        {"issued_at": "soon"},
        {"nonce": "short"},
    ],
)
def test_malformed_assertion_is_refused_with_json(api, agent: RegisteredAgent, change) -> None:
    assertion = {**agent.assertion(), **change}

    response = api.post(SESSION, assertion, format="json")

    assert response.status_code in (400, 401)
    assert error_of(response)["code"] in ("invalid", "identity_rejected")


def test_session_for_an_unknown_orchestrator_is_refused(api) -> None:
    claim = session_assertion(agent_key(), "00000000-0000-4000-8000-000000000000", int(time.time()))

    response = api.post(SESSION, claim, format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "identity_rejected"


def test_session_token_stops_working_after_reset(api, agent: RegisteredAgent) -> None:
    token = api.post(SESSION, agent.assertion(), format="json").json()["token"]
    assert _heartbeat(api, token).status_code == 200

    orchestrator_reset(orchestrator=agent.orchestrator, actor=None)

    response = _heartbeat(api, token)
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"
    # Nor can the old key open a new session.
    refused = api.post(SESSION, agent.assertion(), format="json")
    assert refused.status_code == 401 and error_of(refused)["code"] == "identity_rejected"


def test_old_session_token_stays_dead_after_registering_again_with_a_new_key(
    api,
    agent: RegisteredAgent,
    make_token,
) -> None:
    old_token = api.post(SESSION, agent.assertion(), format="json").json()["token"]
    orchestrator_reset(orchestrator=agent.orchestrator, actor=None)
    new_key = agent_key()
    body = register_body(make_token(), agent.orchestrator.name, key=new_key)
    body["client_machine"] = agent.orchestrator.client_machine
    assert api.post(REGISTER, body, format="json").status_code == 201
    orchestrator_approve(orchestrator=Orchestrator.objects.get(), actor=None)

    assert _heartbeat(api, old_token).status_code == 401
    renewed = RegisteredAgent(Orchestrator.objects.get(), new_key)
    new_token = api.post(SESSION, renewed.assertion(), format="json").json()["token"]
    assert _heartbeat(api, new_token).status_code == 200


def test_tampered_session_token_is_refused(api, agent: RegisteredAgent) -> None:
    token = api.post(SESSION, agent.assertion(), format="json").json()["token"]
    position = len(token) // 2
    tampered = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]

    for bad in (tampered, token + "x", token[:-3]):
        response = _heartbeat(api, bad)
        assert response.status_code == 401, bad
        assert error_of(response)["code"] == "authentication_failed"
    assert _heartbeat(api, token).status_code == 200
