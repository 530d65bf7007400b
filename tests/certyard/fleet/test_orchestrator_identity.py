"""Orchestrator identities: the agent renews its own certificate; revocation locks it out."""

from __future__ import annotations

import datetime as dt
import logging
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from certyard.fleet.models import Orchestrator
from certyard.fleet.services import orchestrator_disapprove, orchestrator_reset
from certyard.jobs.models import Job
from certyard.jobs.services import job_configuration, job_inventory_request, job_lease_next
from certyard.pki.models import CertificateAuthority, IssuedCertificate
from orchestrators.agent.client import IdentityRejected, PlatformClient
from orchestrators.agent.config import AgentConfig, save_pending_key, save_registration
from orchestrators.agent.renewal import CertificateRenewer, csr_for
from orchestrators.agent.runner import Runner
from tests.certs import agent_key, csr_pem, issue
from tests.certyard.conftest import ADMIN, AGENT, error_of, register_body
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db

SESSION = f"{AGENT}session"
HEARTBEAT = f"{AGENT}heartbeat"
CERTIFICATE = f"{AGENT}certificate"
REGISTER = f"{AGENT}register"
REVOKED_MESSAGE = "this orchestrator's certificate was revoked"


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _orchestrator_ca() -> CertificateAuthority:
    return CertificateAuthority.objects.get(purpose=CertificateAuthority.Purpose.ORCHESTRATORS)


def _session(api: APIClient, registered: RegisteredAgent) -> str:
    response = api.post(SESSION, registered.assertion(), format="json")
    assert response.status_code == 200, response.content
    return response.json()["token"]


def _heartbeat(api: APIClient, token: str) -> Any:
    return api.post(HEARTBEAT, HTTP_AUTHORIZATION=f"Bearer {token}")


def _renew(api: APIClient, token: str, csr: str) -> Any:
    return api.post(CERTIFICATE, {"csr": csr}, format="json", HTTP_AUTHORIZATION=f"Bearer {token}")


def _revoke(client: APIClient, orchestrator: Orchestrator, **body: Any) -> Any:
    return client.post(
        f"{ADMIN}orchestrators/{orchestrator.pk}/revoke-certificate/", body, format="json"
    )


def _assert_revoked_refusal(response: Any) -> None:
    assert response.status_code == 401, response.content
    error = error_of(response)
    assert error["code"] == "identity_rejected"
    assert error["message"] == REVOKED_MESSAGE
    assert error["reason"] == "certificate_revoked"


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- Renewal ------------------------------------------------------------------------


def test_renewal_certifies_the_new_key_without_re_approval(api, agent: RegisteredAgent) -> None:
    old_token = _session(api, agent)
    orchestrator = Orchestrator.objects.get(pk=agent.orchestrator.pk)
    old_pem, old_status_changed_at = orchestrator.certificate_pem, orchestrator.status_changed_at
    new_key = agent_key()

    response = _renew(api, old_token, csr_pem(new_key, "whatever-the-csr-says"))

    assert response.status_code == 200, response.content
    answer = response.json()
    certificate = _certificate(answer["certificate"])
    # For the new key, named as before, by the orchestrator CA, as a TLS client.
    assert _spki(certificate.public_key()) == _spki(new_key.public_key())
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == orchestrator.name
    ca = _orchestrator_ca()
    certificate.verify_directly_issued_by(_certificate(ca.certificate_pem))
    assert answer["ca_chain"] == [ca.certificate_pem]
    assert _time(answer["not_after"]) == certificate.not_valid_after_utc
    assert _time(answer["renew_after"]) < certificate.not_valid_after_utc
    # Recorded; the status is untouched: no re-approval.
    orchestrator.refresh_from_db()
    assert orchestrator.status == Orchestrator.Status.APPROVED
    assert orchestrator.status_changed_at == old_status_changed_at
    assert orchestrator.certificate_pem == answer["certificate"]
    assert orchestrator.certificate_not_after == certificate.not_valid_after_utc
    assert _spki(serialization.load_pem_public_key(orchestrator.public_key_pem.encode())) == (
        _spki(new_key.public_key())
    )
    # The previous certificate is superseded, not revoked: it expires on its own.
    old_sha = _certificate(old_pem).fingerprint(hashes.SHA256()).hex()
    assert IssuedCertificate.objects.get(sha256=old_sha).revoked_at is None
    assert IssuedCertificate.objects.filter(
        sha256=certificate.fingerprint(hashes.SHA256()).hex()
    ).exists()

    # The old session ended with the old certificate; the old key opens none.
    refused = _heartbeat(api, old_token)
    assert refused.status_code == 401
    assert error_of(refused)["code"] == "authentication_failed"
    old_key_session = api.post(SESSION, agent.assertion(), format="json")
    assert old_key_session.status_code == 401
    assert error_of(old_key_session)["code"] == "identity_rejected"
    # The new key does, and works.
    renewed = RegisteredAgent(orchestrator, new_key, agent._last_issued_at)
    new_token = _session(api, renewed)
    heartbeat = _heartbeat(api, new_token)
    assert heartbeat.status_code == 200 and heartbeat.json()["status"] == "approved"


def test_a_new_orchestrator_may_renew_and_stays_new(api, register_agent) -> None:
    waiting = register_agent("waiting-renew", approved=False)
    token = _session(api, waiting)

    response = _renew(api, token, csr_pem(agent_key(), "waiting-renew"))

    assert response.status_code == 200, response.content
    assert Orchestrator.objects.get(pk=waiting.orchestrator.pk).status == Orchestrator.Status.NEW


def test_renewal_for_the_same_key_is_accepted(api, agent: RegisteredAgent) -> None:
    token = _session(api, agent)
    before = Orchestrator.objects.get(pk=agent.orchestrator.pk).certificate_pem

    response = _renew(api, token, csr_pem(agent.key, "agent-1"))

    assert response.status_code == 200, response.content
    after = Orchestrator.objects.get(pk=agent.orchestrator.pk)
    assert after.certificate_pem == response.json()["certificate"] != before
    # A new certificate, so a new session, signed by the same key.
    assert _heartbeat(api, token).status_code == 401
    assert _heartbeat(api, _session(api, agent)).status_code == 200


def test_a_disapproved_orchestrator_may_not_renew(api, agent: RegisteredAgent) -> None:
    token = _session(api, agent)
    orchestrator_disapprove(orchestrator=agent.orchestrator, actor=None)
    before = Orchestrator.objects.values().get(pk=agent.orchestrator.pk)

    response = _renew(api, token, csr_pem(agent_key(), "agent-1"))

    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "disapproved" and "disapproved" in error["message"]
    assert Orchestrator.objects.values().get(pk=agent.orchestrator.pk) == before


def _bad_signature_csr() -> str:
    """A CSR whose signature does not match its key: the last signature byte flipped."""
    der = bytearray(
        x509.load_pem_x509_csr(csr_pem(agent_key(), "tampered").encode()).public_bytes(
            serialization.Encoding.DER
        )
    )
    der[-1] ^= 0x01
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("make_csr", "words"),
    [
        (lambda: "this is not a CSR", "not a valid PEM certificate signing request"),
        (lambda: issue("a-certificate").pem, "not a valid PEM certificate signing request"),
        (lambda: csr_pem(issue("rsa", rsa_bits=2048).key, "rsa"), "EC P-256"),
        (_bad_signature_csr, "the signature does not match its public key"),
    ],
    ids=["garbage", "certificate-not-csr", "rsa-key", "bad-signature"],
)
def test_a_bad_csr_is_a_400_and_changes_nothing(
    api, agent: RegisteredAgent, make_csr: Callable[[], str], words: str
) -> None:
    token = _session(api, agent)
    before = Orchestrator.objects.values().get(pk=agent.orchestrator.pk)
    issued = IssuedCertificate.objects.count()

    response = _renew(api, token, make_csr())

    assert response.status_code == 400
    error = error_of(response)
    assert words in error["message"] and error["message"].startswith("csr:")
    assert Orchestrator.objects.values().get(pk=agent.orchestrator.pk) == before
    assert IssuedCertificate.objects.count() == issued
    assert _heartbeat(api, token).status_code == 200  # the session stands


@pytest.mark.parametrize("body", [{}, {"csr": ""}, {"csr": ["a"]}, ["not", "an", "object"]])
def test_a_renewal_without_a_csr_is_a_400(api, agent: RegisteredAgent, body: Any) -> None:
    token = _session(api, agent)

    response = api.post(CERTIFICATE, body, format="json", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"


def test_renewal_needs_a_session(api) -> None:
    response = api.post(CERTIFICATE, {"csr": csr_pem(agent_key(), "x")}, format="json")

    assert response.status_code == 401
    assert not IssuedCertificate.objects.exists()


@override_settings(CERTYARD_AGENT_RENEW_FRACTION=0.25)
def test_session_and_heartbeat_say_when_to_renew(api, agent: RegisteredAgent) -> None:
    certificate = _certificate(Orchestrator.objects.get(pk=agent.orchestrator.pk).certificate_pem)
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    expected_renew_after = certificate.not_valid_after_utc - lifetime * 0.25

    session = api.post(SESSION, agent.assertion(), format="json").json()
    heartbeat = _heartbeat(api, session["token"]).json()

    for answer in (session, heartbeat):
        assert _time(answer["certificate_not_after"]) == certificate.not_valid_after_utc
        assert _time(answer["renew_after"]) == expected_renew_after


# --- Revocation ---------------------------------------------------------------------


def test_revoking_locks_the_agent_out_at_once(
    api, admin_api: APIClient, agent: RegisteredAgent, superuser
) -> None:
    token = _session(api, agent)
    assert _heartbeat(api, token).status_code == 200

    response = _revoke(admin_api, agent.orchestrator, reason=1)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "approved" and body["has_identity"] is True
    assert "revoked by root" in body["last_error"] and "Key compromise" in body["last_error"]
    # The open session is refused at once, and so is a new one, saying why.
    _assert_revoked_refusal(_heartbeat(api, token))
    _assert_revoked_refusal(api.post(SESSION, agent.assertion(), format="json"))
    _assert_revoked_refusal(
        api.post(
            CERTIFICATE,
            {"csr": csr_pem(agent_key(), "x")},
            format="json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
    )
    orchestrator = Orchestrator.objects.get(pk=agent.orchestrator.pk)
    assert orchestrator.status == Orchestrator.Status.APPROVED  # status is another matter
    sha = _certificate(orchestrator.certificate_pem).fingerprint(hashes.SHA256()).hex()
    issued = IssuedCertificate.objects.get(sha256=sha)
    assert issued.revoked_at is not None and issued.revocation_reason == 1


def test_a_forged_assertion_is_not_told_about_the_revocation(
    api, admin_api: APIClient, agent: RegisteredAgent
) -> None:
    assert _revoke(admin_api, agent.orchestrator).status_code == 200
    forged = RegisteredAgent(agent.orchestrator, agent_key())

    response = api.post(SESSION, forged.assertion(), format="json")

    assert response.status_code == 401
    assert error_of(response)["message"] != REVOKED_MESSAGE


def test_revoking_twice_is_a_409(admin_api: APIClient, agent: RegisteredAgent) -> None:
    assert _revoke(admin_api, agent.orchestrator).status_code == 200

    response = _revoke(admin_api, agent.orchestrator)

    assert response.status_code == 409
    assert error_of(response)["code"] == "already_revoked"


def test_revoking_a_reset_orchestrator_is_a_409(admin_api: APIClient, agent) -> None:
    orchestrator_reset(orchestrator=agent.orchestrator, actor=None)

    response = _revoke(admin_api, agent.orchestrator)

    assert response.status_code == 409
    assert error_of(response)["code"] == "not_registered"


def test_revoking_a_certificate_the_ca_never_recorded_is_a_409(
    admin_api: APIClient, agent: RegisteredAgent
) -> None:
    """Certificates issued before the platform kept them cannot be revoked: reset instead."""
    IssuedCertificate.objects.all().delete()

    response = _revoke(admin_api, agent.orchestrator)

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "certificate_unknown" and "reset" in error["message"]


@pytest.mark.parametrize("reason", [7, 8, 11, -1, "compromised", None])
def test_revoking_with_a_bad_reason_is_a_400(
    admin_api: APIClient, agent: RegisteredAgent, reason: Any
) -> None:
    response = _revoke(admin_api, agent.orchestrator, reason=reason)

    assert response.status_code == 400
    assert "reason" in error_of(response).get("fields", {})
    assert not IssuedCertificate.objects.filter(revoked_at__isnull=False).exists()


@pytest.mark.parametrize("who", ["viewer", "nobody"])
def test_revoking_needs_the_change_permission(
    request: pytest.FixtureRequest, api, agent: RegisteredAgent, who: str
) -> None:
    client = request.getfixturevalue(f"{who}_api")
    before = Orchestrator.objects.values().get(pk=agent.orchestrator.pk)

    response = _revoke(client, agent.orchestrator)

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert Orchestrator.objects.values().get(pk=agent.orchestrator.pk) == before
    assert not IssuedCertificate.objects.filter(revoked_at__isnull=False).exists()
    assert _heartbeat(api, _session(api, agent)).status_code == 200


def test_revoking_without_credentials_is_a_401(api, agent: RegisteredAgent) -> None:
    response = _revoke(api, agent.orchestrator)

    assert response.status_code == 401
    assert not IssuedCertificate.objects.filter(revoked_at__isnull=False).exists()


def test_the_revoked_certificate_is_on_the_orchestrator_cas_crl(
    admin_api: APIClient, agent: RegisteredAgent
) -> None:
    certificate = _certificate(Orchestrator.objects.get(pk=agent.orchestrator.pk).certificate_pem)

    assert _revoke(admin_api, agent.orchestrator, reason=4).status_code == 200

    ca = _orchestrator_ca()
    crl = x509.load_der_x509_crl(bytes(ca.crl_der))
    assert crl.is_signature_valid(_certificate(ca.certificate_pem).public_key())
    entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.superseded


def test_a_renewed_away_certificate_stays_off_the_crl_and_the_new_one_is_revoked(
    api, admin_api: APIClient, agent: RegisteredAgent
) -> None:
    old = _certificate(Orchestrator.objects.get(pk=agent.orchestrator.pk).certificate_pem)
    renewed = _renew(api, _session(api, agent), csr_pem(agent_key(), "agent-1")).json()

    assert _revoke(admin_api, agent.orchestrator).status_code == 200

    crl = x509.load_der_x509_crl(bytes(_orchestrator_ca().crl_der))
    assert crl.get_revoked_certificate_by_serial_number(old.serial_number) is None
    new_serial = _certificate(renewed["certificate"]).serial_number
    assert crl.get_revoked_certificate_by_serial_number(new_serial) is not None


def test_revoking_puts_the_agents_jobs_back_in_the_queue(
    admin_api: APIClient, agent: RegisteredAgent, store
) -> None:
    job, _ = job_inventory_request(store=store, source=Job.Source.ADMIN)
    assert job_lease_next(orchestrator=agent.orchestrator).pk == job.pk
    job_configuration(orchestrator=agent.orchestrator, job_id=job.pk)

    assert _revoke(admin_api, agent.orchestrator).status_code == 200

    job.refresh_from_db()
    assert job.state == Job.State.PENDING


def test_a_revoked_orchestrator_registers_again_without_a_reset(
    api, admin_api: APIClient, agent: RegisteredAgent, make_token
) -> None:
    assert _revoke(admin_api, agent.orchestrator).status_code == 200
    # With the key it had (the CSR proves possession); a new key may not take the row over
    # (tests/certyard/fleet/test_security_registration.py).
    new_key = agent.key
    body = register_body(make_token(), agent.orchestrator.name, key=new_key)
    body["client_machine"] = agent.orchestrator.client_machine

    response = api.post(REGISTER, body, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["orchestrator_id"] == str(agent.orchestrator.pk)
    orchestrator = Orchestrator.objects.get(pk=agent.orchestrator.pk)
    assert orchestrator.last_error == ""
    # Registered again with a token that does not approve: an administrator decides again.
    assert orchestrator.status == Orchestrator.Status.NEW
    again = RegisteredAgent(orchestrator, new_key)
    assert _heartbeat(api, _session(api, again)).status_code == 200


# --- Console ------------------------------------------------------------------------


@pytest.fixture
def console(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def test_console_revokes_a_certificate_with_a_reason(
    console: Client, api, agent: RegisteredAgent
) -> None:
    detail = f"/orchestrators/{agent.orchestrator.pk}/"
    page = console.get(detail).content.decode()
    assert 'data-action="revoke-certificate"' in page and 'name="reason"' in page
    assert "csrfmiddlewaretoken" in page and "hx-confirm" in page

    answer = console.post(
        f"{detail}revoke-certificate/", {"reason": "5", "return_to": "detail"}, follow=True
    )

    assert answer.status_code == 200
    text = answer.content.decode()
    assert "certificate revoked" in text and 'data-testid="certificate-revoked"' in text
    assert 'data-action="revoke-certificate"' not in text  # nothing more to revoke
    _assert_revoked_refusal(api.post(SESSION, agent.assertion(), format="json"))
    sha = (
        _certificate(Orchestrator.objects.get(pk=agent.orchestrator.pk).certificate_pem)
        .fingerprint(hashes.SHA256())
        .hex()
    )
    assert IssuedCertificate.objects.get(sha256=sha).revocation_reason == 5


def test_console_shows_why_a_revocation_failed(console: Client, agent: RegisteredAgent) -> None:
    url = f"/orchestrators/{agent.orchestrator.pk}/revoke-certificate/"

    answer = console.post(url, {"reason": "8", "return_to": "detail"}, follow=True)

    assert answer.status_code == 200
    assert "removeFromCRL" in answer.content.decode()
    assert not IssuedCertificate.objects.filter(revoked_at__isnull=False).exists()


def test_console_revocation_needs_the_change_permission(viewer, agent: RegisteredAgent) -> None:
    client = Client()
    client.force_login(viewer)
    detail = f"/orchestrators/{agent.orchestrator.pk}/"
    assert 'data-action="revoke-certificate"' not in client.get(detail).content.decode()

    answer = client.post(f"{detail}revoke-certificate/", {"reason": "0"})

    assert answer.status_code == 403
    assert not IssuedCertificate.objects.filter(revoked_at__isnull=False).exists()


# --- The agent, in process ----------------------------------------------------------


class DjangoTransport(httpx.BaseTransport):
    """Sends the agent's requests to the platform under test, without a network."""

    def __init__(self) -> None:
        self.client = Client()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = {
            "HTTP_" + name.upper().replace("-", "_"): value
            for name, value in request.headers.items()
            if name.lower() not in ("content-type", "content-length", "host")
        }
        answer = self.client.generic(
            request.method,
            request.url.raw_path.decode(),
            data=request.read(),
            content_type=request.headers.get("content-type", "application/octet-stream"),
            **headers,
        )
        return httpx.Response(
            answer.status_code, headers=dict(answer.items()), content=answer.content
        )


@pytest.fixture
def agent_home(tmp_path: Path, agent: RegisteredAgent) -> AgentConfig:
    """The agent's configuration directory, as `register` leaves it."""
    orchestrator = Orchestrator.objects.get(pk=agent.orchestrator.pk)
    config = AgentConfig(
        config_dir=tmp_path / "agent",
        platform_url="http://testserver",
        orchestrator_id=str(orchestrator.pk),
        name=orchestrator.name,
        client_machine=orchestrator.client_machine,
    )
    save_registration(
        config,
        private_key=agent.key,
        certificate=orchestrator.certificate_pem,
        ca_chain=_orchestrator_ca().certificate_pem,
    )
    return config


def _platform_client(config: AgentConfig) -> PlatformClient:
    return PlatformClient(
        config.platform_url,
        orchestrator_id=config.orchestrator_id,
        private_key=config.private_key(),
        transport=DjangoTransport(),
    )


@override_settings(CERTYARD_AGENT_RENEW_FRACTION=1.0)
def test_the_agent_renews_when_due_and_keeps_working(agent_home: AgentConfig) -> None:
    old_key_pem = agent_home.key_path.read_bytes()
    with _platform_client(agent_home) as client:
        renewer = CertificateRenewer(client, agent_home)
        assert not renewer.due()  # nothing known before the platform says
        assert client.open_session() == "approved"
        assert renewer.due()

        assert renewer.renew_if_due() is True

        # The new key and its certificate are on disk, private, and agree.
        new_key = agent_home.private_key()
        assert agent_home.key_path.read_bytes() != old_key_pem
        assert stat.S_IMODE(agent_home.key_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(agent_home.cert_path.stat().st_mode) == 0o600
        assert not agent_home.pending_key_path.exists()
        certificate = _certificate(agent_home.cert_path.read_text())
        assert _spki(certificate.public_key()) == _spki(new_key.public_key())
        orchestrator = Orchestrator.objects.get(pk=agent_home.orchestrator_id)
        assert orchestrator.certificate_pem == agent_home.cert_path.read_text()
        assert orchestrator.status == Orchestrator.Status.APPROVED
        # Not again at once, whatever the platform says (a fraction of 1 asks for it).
        assert not renewer.due()
        # The next call opens a session signed by the new key.
        assert client.heartbeat()["status"] == "approved"
        assert client.certificate_not_after == certificate.not_valid_after_utc


def test_a_failed_renewal_is_retried_later_and_the_old_key_keeps_working(
    agent_home: AgentConfig, caplog: pytest.LogCaptureFixture
) -> None:
    old_key_pem = agent_home.key_path.read_bytes()
    with _platform_client(agent_home) as client:
        renewer = CertificateRenewer(client, agent_home)
        client.open_session()
        orchestrator_disapprove(
            orchestrator=Orchestrator.objects.get(pk=agent_home.orchestrator_id), actor=None
        )
        client.renew_after = timezone.now() - dt.timedelta(seconds=1)

        with caplog.at_level(logging.WARNING, logger="orchestrators.agent.renewal"):
            assert renewer.renew_if_due() is False

        assert "client certificate renewal failed" in caplog.text
        assert "trying again in 60 s" in caplog.text
        assert not renewer.due()  # backing off
        assert agent_home.key_path.read_bytes() == old_key_pem
        assert client.heartbeat()["status"] == "disapproved"


def test_a_renewal_whose_answer_was_lost_is_recovered(agent_home: AgentConfig) -> None:
    """The platform certified the pending key, but the agent never heard: when the platform
    refuses the old key, the agent tries the pending one and keeps it."""
    with _platform_client(agent_home) as client:
        client.open_session()
        pending = agent_key()
        save_pending_key(agent_home, pending)
        client.renew_certificate(csr_for(pending, agent_home.name))  # the answer "is lost"
        with pytest.raises(IdentityRejected) as rejected:
            client.heartbeat()  # the old session and the old key are refused
        assert not rejected.value.revoked
        runner = Runner(client, {}, renewer=CertificateRenewer(client, agent_home))

        assert runner._identity_recovered(rejected.value) is True

        assert _spki(agent_home.private_key().public_key()) == _spki(pending.public_key())
        assert not agent_home.pending_key_path.exists()
        certificate = _certificate(agent_home.cert_path.read_text())
        assert _spki(certificate.public_key()) == _spki(pending.public_key())
        assert client.heartbeat()["status"] == "approved"


def test_a_revoked_agent_says_so_and_stops(
    agent_home: AgentConfig, agent: RegisteredAgent, caplog: pytest.LogCaptureFixture
) -> None:
    admin = APIClient()
    admin.force_authenticate(get_user_model().objects.create_superuser("admin2", "a@b.test", None))
    with _platform_client(agent_home) as client:
        client.open_session()
        assert _revoke(admin, agent.orchestrator).status_code == 200

        with pytest.raises(IdentityRejected) as rejected:
            client.heartbeat()
        assert rejected.value.revoked
        runner = Runner(client, {}, renewer=CertificateRenewer(client, agent_home))
        with caplog.at_level(logging.ERROR, logger="orchestrators.agent.runner"):
            assert runner._identity_recovered(rejected.value) is False

    assert "this orchestrator's certificate was revoked; register again" in caplog.text
