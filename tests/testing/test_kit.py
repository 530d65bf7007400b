"""certyard.testing against the platform itself: its builders give what the real flows give,
its recording platform records what the real facade records, and its fixtures run handlers
along the platform's own paths."""

from __future__ import annotations

import datetime as dt
import json
import smtplib
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certyard.fleet.services.registration import spki_sha256
from certyard.inventory.ingest import inventory_submit
from certyard.inventory.metadata.generators import _certificate_rows, _infos
from certyard.inventory.models import Certificate, MetadataField
from certyard.jobs.expiry import expiry_scan
from certyard.testing import (
    IssuedCertificate,
    RecordingPlatform,
    SentMail,
    certificate_info,
    event_context,
    expiring_event,
    gateway_enrollment,
    handler_make,
    job_complete_context,
    key_of,
    make_certificate,
    registration_request,
)
from certyard.workflows.actions import PlatformRequests
from certyard.workflows.models import Event, HandlerRun
from handlers.base import (
    EventHandler,
    EventKind,
    HandlerResult,
    JobCompleteContext,
    JobCompleteHandler,
    Platform,
)
from handlers.parameters import Parameter, ParameterError, ParameterType
from handlers.registry import HandlerClass, handler_classes
from tests.conftest import entry

# --- Builders -------------------------------------------------------------------------------


def test_a_certificate_is_real_and_says_what_was_asked() -> None:
    ca = make_certificate("Test CA", is_ca=True, days=3650, key_type="rsa")
    leaf = make_certificate(
        "www.example.com",
        sans=("www.example.com", "IP:192.0.2.1", "email:ops@example.com", "URI:https://x.test/"),
        issuer=ca,
        days=-3,
        email="ops@example.com",
        ou=("web", "ops"),
        organization="Example",
        key_type="ed25519",
    )
    assert isinstance(leaf, IssuedCertificate)
    leaf.certificate.verify_directly_issued_by(ca.certificate)
    assert leaf.certificate.not_valid_after_utc < dt.datetime.now(dt.UTC)
    assert leaf.chain_pem == leaf.pem + ca.pem
    assert key_of(leaf) is leaf.key
    assert serialization.load_pem_private_key(leaf.key_pem.encode(), None).public_key() == (
        leaf.certificate.public_key()
    )
    info = certificate_info(leaf.pem)
    assert info.sans == (
        "DNS:www.example.com",
        "IP:192.0.2.1",
        "email:ops@example.com",
        "URI:https://x.test/",
    )
    # As the inventory writes a subject: RFC 4514, the e-mail address by its dotted OID.
    assert (
        info.subject
        == "1.2.840.113549.1.9.1=ops@example.com,CN=www.example.com,OU=ops,OU=web,O=Example"
    )
    assert (info.key_algorithm, info.is_ca, info.self_signed) == ("Ed25519", False, False)
    assert certificate_info(ca.certificate).is_ca
    assert certificate_info(ca.der).key_size == 2048
    with pytest.raises(ValueError, match="unknown key type"):
        make_certificate(key_type="dsa")


@pytest.mark.django_db
def test_certificate_info_is_what_a_generator_gets_from_the_inventory(store: Any) -> None:
    made = [
        make_certificate("www.example.com", sans=("www.example.com", "IP:10.0.0.1")),
        make_certificate("", sans=("email:a@example.com",), email="a@example.com", key_type="rsa"),
        make_certificate("Root", is_ca=True, key_type="ec384"),
    ]
    inventory_submit(store=store, entries=[entry(f"{i}.pem", c) for i, c in enumerate(made)])
    rows = _certificate_rows(after_id=0, upper_id=None, limit=10)
    from_inventory = {info.sha256: info for info in _infos(rows, {row[0]: {} for row in rows})}
    for certificate in made:
        assert certificate_info(certificate) == from_inventory[certificate.sha256]
    overridden = certificate_info(made[0], metadata={"team": "web"})
    assert overridden.metadata == {"team": "web"}
    with pytest.raises(TypeError, match="no field colour"):
        certificate_info(made[0], colour="red")


@pytest.mark.django_db
def test_expiring_event_carries_the_data_the_expiry_scan_emits(store: Any) -> None:
    certificate = make_certificate("www.example.com", days=20)
    inventory_submit(store=store, entries=[entry("www.pem", certificate)])
    expiry_scan()
    emitted = Event.objects.get(kind=EventKind.CERTIFICATE_EXPIRING)
    data = emitted.data
    built = expiring_event(
        certificate,
        data["days"],
        now=emitted.occurred_at,
        store_type=data["store_type"],
        client_machine=data["client_machine"],
        store_path=data["store_path"],
        alias=data["alias"],
        certificate_id=data["certificate_id"],
        location_id=data["location_id"],
        store_id=data["store_id"],
        orchestrator_id=data["orchestrator_id"],
    )
    assert dict(built.data) == data
    assert (built.subject_type, built.subject_id, built.subject_label) == (
        emitted.subject_type,
        emitted.subject_id,
        emitted.subject_label,
    )
    # Other names set data keys; the context's own fields set the context.
    quiet = expiring_event(certificate, 7, alias="other.pem", attempt=2, context={"a": 1})
    assert (quiet.data["alias"], quiet.attempt, quiet.context) == ("other.pem", 2, {"a": 1})
    assert expiring_event(make_certificate(days=-1), 0).data["expired"] is True


def test_event_context_uses_the_platform_subject_of_each_kind() -> None:
    assert event_context(EventKind.JOB_COMPLETED).subject_type == "job"
    assert event_context("enrollment.pending", data={"template": "web"}).data == {"template": "web"}
    assert event_context("certificates.added", subject_id="7").subject_id == "7"


def test_a_registration_request_carries_a_real_csr_and_keeps_its_key() -> None:
    request = registration_request(name="web-1", token_labels=("environment=prod",))
    csr = x509.load_pem_x509_csr(request.csr_pem.encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=web-1"
    assert request.client_machine == "web-1.example.test"
    # The fingerprint the registration service computes.
    assert request.public_key_sha256 == spki_sha256(key_of(request).public_key())
    other = registration_request(csr_common_name="impostor")
    assert x509.load_pem_x509_csr(other.csr_pem.encode()).subject.rfc4514_string() == (
        "CN=impostor"
    )


def test_a_gateway_enrollment_carries_a_csr_for_its_names() -> None:
    request = gateway_enrollment(common_name="api.example.com", sans=("DNS:api.example.com",))
    csr = x509.load_pem_x509_csr(request.csr_pem.encode())
    assert csr.is_signature_valid
    names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["api.example.com"]
    assert (request.subject, request.sans) == ("CN=api.example.com", ("DNS:api.example.com",))
    # A fake CA in a test issues for the CSR's key.
    assert key_of(request).public_key() == csr.public_key()


def test_a_job_complete_context_has_the_platform_provenance() -> None:
    first = job_complete_context(outcome="failure", message="unreachable")
    assert (first.source, first.retry_of) == ("schedule", None)
    assert [link["id"] for link in first.chain] == [first.job_id]
    assert first.chain[-1]["state"] == "failed"
    retry = job_complete_context(outcome="failure", retry_of=first.job_id)
    assert retry.source == "handler"
    assert [link["id"] for link in retry.chain] == [first.job_id, retry.job_id]
    assert job_complete_context(final=False, outcome="failure").chain[-1]["state"] == "pending"
    assert job_complete_context(store=None).store is None


class _Mailer(EventHandler):
    parameters = (
        Parameter("to", ParameterType.EMAIL, required=True),
        Parameter("days", ParameterType.INTEGER, default=30, minimum=1),
    )

    def handle(self, event: Any) -> HandlerResult:
        self.platform.send_mail(subject="expiring", body=event.kind, to=[self.config["to"]])
        return HandlerResult()


def test_handler_make_checks_values_as_the_platform_does() -> None:
    handler = handler_make(_Mailer, to="ops@example.com")
    assert handler.config == {"to": "ops@example.com", "days": 30}
    assert isinstance(handler.platform, RecordingPlatform)
    handler.handle(event_context("certificate.expiring"))
    assert handler.platform.mails == [
        SentMail("expiring", "certificate.expiring", ("ops@example.com",), None)
    ]
    with pytest.raises(ParameterError) as refused:
        handler_make(_Mailer, to="nobody", days=0)
    assert set(refused.value.errors) == {"to", "days"}


# --- The recording platform ----------------------------------------------------------------


def _ask(platform: Platform) -> list[Any]:
    return [
        platform.schedule_job(store_id="s-1", job_type="inventory", delay_seconds=60),
        platform.set_metadata(certificate_sha256="ab" * 32, values={"team": "web"}),
        platform.approve_enrollment(enrollment_id="e-1", comment="fine"),
        platform.deny_enrollment(enrollment_id="e-2", comment="no"),
        platform.renew_certificate(certificate_sha256="cd" * 32),
        platform.renew_and_replace(certificate_sha256="ef" * 32, template="web"),
    ]


def _without_ids(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in action.items() if k != "job_id"} for action in actions]


def test_the_recording_platform_records_what_the_platform_records() -> None:
    real, recording = PlatformRequests("audit", 7), RecordingPlatform("audit", 7)
    answers_real, answers_recorded = _ask(real), _ask(recording)
    assert isinstance(recording, PlatformRequests)
    assert _without_ids(recording.actions) == _without_ids(real.actions)
    # The same answers: ids where the platform allocates them (a new one each time).
    assert [type(a) for a in answers_recorded] == [type(a) for a in answers_real]
    assert answers_recorded[0] == recording.scheduled_jobs[0]["job_id"]
    assert answers_recorded[2:4] == ["e-1", "e-2"]
    assert [a["action"] for a in recording.renewals] == ["renew_certificate", "renew_and_replace"]
    assert recording.metadata_set[0]["values"] == {"team": "web"}
    assert (len(recording.approvals), len(recording.denials)) == (1, 1)
    recording.clear()
    assert recording.actions == []


def test_the_recording_platform_keeps_mail_or_fails_as_a_server_does() -> None:
    platform = RecordingPlatform()
    platform.send_mail(subject="s", body="b", to=["A <a@example.com>"], from_address="")
    assert platform.mails == [SentMail("s", "b", ("A <a@example.com>",), None)]
    platform.mail_error = smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no")})
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        platform.send_mail(subject="s", body="b", to=["a@example.com"])
    assert len(platform.mails) == 1


# --- The fixtures ---------------------------------------------------------------------------


class _Capture(JobCompleteHandler):
    """Keeps the context it got (a test's spy)."""

    seen: ClassVar[list[JobCompleteContext]] = []

    def handle(self, job: JobCompleteContext, platform: Platform) -> HandlerResult:
        _Capture.seen.append(job)
        platform.schedule_job(store_id=job.store["id"], job_type="inventory", retry_of=job.job_id)
        return HandlerResult(message="seen")


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> type[_Capture]:
    """``_Capture`` as if a package declared it (entry point ``tests.capture``)."""
    found = HandlerClass("tests.capture", f"{__name__}:_Capture", "tests", "0", _Capture)
    monkeypatch.setitem(handler_classes(), "tests.capture", found)
    _Capture.seen = []
    return _Capture


def test_a_job_complete_handler_gets_the_context_given(
    capture: type[_Capture], certyard_register: Any, certyard_invoke: Any, certyard_platform: Any
) -> None:
    registration = certyard_register(capture, name="spy")
    first = job_complete_context(outcome="failure")
    job = job_complete_context(outcome="failure", retry_of=first.job_id, attempt=3)
    result = certyard_invoke(registration, job)
    assert result.ok, result.error
    # The runner built it back from the job.completed event: nothing lost on the way.
    assert capture.seen == [job]
    assert result.run.inputs["job"] == {"id": job.job_id, "type": "inventory"}
    [scheduled] = certyard_platform.scheduled_jobs
    assert (scheduled["retry_of"], scheduled["by"]) == (job.job_id, "spy")
    assert scheduled["registration_id"] == registration.pk
    assert result.actions == certyard_platform.actions == result.run.output["actions"]
    # A second run adds to the platform's record; its run holds its own requests only.
    again = certyard_invoke(registration, job)
    assert len(certyard_platform.scheduled_jobs) == 2
    assert len(again.run.output["actions"]) == 1


def test_requests_are_carried_out_when_asked(
    capture: type[_Capture], certyard_register: Any, certyard_invoke: Any
) -> None:
    registration = certyard_register(capture, name="spy")
    # The store exists only in the context: the platform refuses, and the run fails.
    result = certyard_invoke(registration, job_complete_context(), apply_actions=True)
    assert result.outcome == "permanent_error"
    assert "its requests could not be carried out" in result.error


def test_an_event_runs_only_where_the_registration_applies(
    certyard_register: Any, certyard_invoke: Any, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    registration = certyard_register(
        "test.record", path=str(path), options={"store_types": ["PKCS12"]}
    )
    with pytest.raises(LookupError, match=r"does not run on this certificate\.expiring"):
        certyard_invoke(registration, expiring_event(make_certificate(days=5), 7))
    result = certyard_invoke(
        registration, expiring_event(make_certificate(days=5), 7, store_type="PKCS12", attempt=2)
    )
    assert result.ok, result.error
    received = json.loads(path.read_text())
    assert (received["attempt"], received["data"]["store_type"]) == (2, "PKCS12")
    assert received["event_id"] == result.event.pk
    assert result.run.registration_id == registration.pk


def test_a_failing_handler_is_recorded_and_retried(
    certyard_register: Any, certyard_invoke: Any
) -> None:
    registration = certyard_register("test.raises")
    result = certyard_invoke(registration, event_context("certificate.expiring"))
    assert not result.ok
    assert result.outcome in {"retryable_error", "permanent_error"}
    assert result.run.state == HandlerRun.State.FAILED
    assert result.error


def test_a_generator_value_its_field_refuses_is_an_error(
    certyard_register: Any, certyard_invoke: Any
) -> None:
    registration = certyard_register("example.team_from_dns", teams=["example.com=web"])
    MetadataField.objects.filter(name="team").update(pattern="[0-9]+")
    result = certyard_invoke(registration, certificate_info(make_certificate("www.example.com")))
    assert result.ok
    assert result.result == [{}]
    [error] = result.errors
    assert error["field"] == "team"
    assert Certificate.objects.count() == 0  # a test batch writes nothing on certificates


def test_a_gateway_call_is_recorded(certyard_register: Any, certyard_invoke: Any) -> None:
    registration = certyard_register("test.gateway_raises")
    result = certyard_invoke(registration, gateway_enrollment())
    assert result.result is None
    assert result.outcome != "ok"
    assert result.run.inputs == {"operation": "enroll"}


def test_the_kinds_must_match(certyard_register: Any, certyard_invoke: Any) -> None:
    registration = certyard_register("example.team_from_dns", teams=["example.com=web"])
    with pytest.raises(TypeError, match="metadata handler"):
        certyard_invoke(registration, registration_request())
    with pytest.raises(TypeError, match="cannot run a handler on a str"):
        certyard_invoke(registration, "nothing")


def test_a_registration_is_saved_as_admin_saves_it(certyard_register: Any) -> None:
    first = certyard_register("example.team_from_dns", teams=["example.com=web"], field="owner")
    second = certyard_register("example.team_from_dns", teams=["example.com=web"])
    assert (first.name, second.name) == ("example.team_from_dns", "example.team_from_dns 2")
    assert MetadataField.objects.filter(name__in=["owner", "team"]).count() == 2
    with pytest.raises(ParameterError):
        certyard_register("example.team_from_dns", teams=["no equals sign"])
    with pytest.raises(LookupError, match="no installed package"):
        certyard_register("acme.nothing")
