"""Re-enrollment with a key made on the device: the agent's CSR goes through enrollment
(template rules, approval) as the deployment's requester, must ask for exactly what the
job asked, and the platform never holds the key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.db import models
from rest_framework.test import APIClient

from certyard.deployment.models import Deployment, DeploymentBatch
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.enrollment.services import enrollment_approve, enrollment_submit_csr
from certyard.inventory.models import Certificate, CertificateStore
from certyard.jobs import services as job_services
from certyard.jobs.models import Job
from orchestrators.protocol import JobType
from tests.certs import csr, csr_for, private_key
from tests.certyard.conftest import AGENT, error_of
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db

NAME = "www.example.test"


@pytest.fixture
def requester(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice", password="pw")


@pytest.fixture
def old_certificate(web: Template, requester: Any) -> Certificate:
    request = enrollment_submit_csr(template_name="web", csr_pem=csr_for(NAME), actor=requester)
    assert request.certificate is not None
    return request.certificate


@pytest.fixture
def device_store(make_store: Callable[..., CertificateStore]) -> CertificateStore:
    return make_store("DEVICE", "/etc/nginx/site.pem")


def _reenrollment(
    store: CertificateStore,
    template: Template,
    old: Certificate,
    requester: Any,
    *,
    names: tuple[str, ...] = (NAME,),
    key_type: str = "EC",
    key_size: int = 256,
) -> tuple[Deployment, Job]:
    """A re-enrollment deployment and its job, leased and picked up by the agent, as
    renew-and-replace queues them."""
    batch = DeploymentBatch.objects.create(
        kind=DeploymentBatch.Kind.RENEW_REPLACE, certificate=old, template=template
    )
    deployment = Deployment.objects.create(
        batch=batch,
        store=store,
        action=Deployment.Action.REENROLL,
        alias="site",
        key_origin=Deployment.KeyOrigin.DEVICE,
        overwrite=True,
        requested_by=requester,
    )
    deployment.job = job_services.job_request(
        orchestrator=store.orchestrator,
        store=store,
        type=JobType.REENROLLMENT,
        payload={
            "template_id": template.pk,
            "renewal_of": old.pk,
            "alias": "site",
            "overwrite": True,
            "key_type": key_type,
            "key_size": key_size,
            "subject": f"CN={names[0]}",
            "sans": [{"type": "dns", "value": n} for n in names],
            "entry_parameters": {},
        },
        actor=requester,
        source=Job.Source.API,
        deployment_id=deployment.pk,
    )
    deployment.save()
    job = job_services.job_lease_next(orchestrator=store.orchestrator)
    assert job is not None and job.pk == deployment.job.pk
    job_services.job_configuration(orchestrator=store.orchestrator, job_id=job.pk)
    job.refresh_from_db()
    return deployment, job


def _post_csr(client: APIClient, job: Job, csr_pem: str, attempt: int | None = None) -> Any:
    return client.post(
        f"{AGENT}jobs/{job.pk}/csr",
        {"attempt": attempt or job.attempts, "csr": csr_pem},
        format="json",
    )


def _key_pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _text_columns(model: type[models.Model]) -> list[str]:
    return [
        f.attname
        for f in model._meta.concrete_fields
        if isinstance(f, models.TextField | models.CharField | models.JSONField)
    ]


def test_an_issued_reenrollment_answers_the_certificate_for_the_devices_key(
    manager: RegisteredAgent,
    agent_api: Callable[[RegisteredAgent], APIClient],
    device_store: CertificateStore,
    web: Template,
    old_certificate: Certificate,
    requester: Any,
) -> None:
    deployment, job = _reenrollment(device_store, web, old_certificate, requester)
    key = private_key("ec")
    answer = _post_csr(agent_api(manager), job, csr_for(NAME, key=key))
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["state"] == "issued" and body["chain"]
    issued = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert issued.public_key() == key.public_key()
    request = EnrollmentRequest.objects.get(pk=body["enrollment_id"])
    assert request.type == "renew" and request.renewal_of == old_certificate
    assert request.requested_by == requester and request.template == web
    assert request.private_key_pem == ""
    deployment.refresh_from_db()
    assert deployment.enrollment == request and deployment.key_origin == "device"
    assert deployment.certificate == request.certificate
    assert deployment.batch.new_certificate_id is None or (
        DeploymentBatch.objects.get(pk=deployment.batch_id).new_certificate == request.certificate
    )
    # The platform never held the key the device made: not in any text of the rows.
    secret = _key_pem(key)
    for model, row in (
        (EnrollmentRequest, request),
        (Deployment, deployment),
        (Job, Job.objects.get(pk=job.pk)),
    ):
        for column in _text_columns(model):
            value = str(getattr(row, column))
            assert "PRIVATE KEY" not in value, (model.__name__, column)
            assert secret.splitlines()[1] not in value


def test_the_same_attempts_csr_again_gets_the_same_enrollment(
    manager: RegisteredAgent,
    agent_api: Callable[[RegisteredAgent], APIClient],
    device_store: CertificateStore,
    web: Template,
    old_certificate: Certificate,
    requester: Any,
) -> None:
    _, job = _reenrollment(device_store, web, old_certificate, requester)
    client = agent_api(manager)
    first = _post_csr(client, job, csr_for(NAME))
    before = EnrollmentRequest.objects.count()
    # A retry after a lost answer (even with another CSR): the first answer, nothing new.
    again = _post_csr(client, job, csr_for(NAME))
    assert again.status_code == 200
    assert again.json() == first.json()
    assert EnrollmentRequest.objects.count() == before


@pytest.mark.parametrize(
    ("make_csr", "why"),
    [
        pytest.param(lambda: csr_for(NAME, "api.example.test"), "names not asked for", id="extra"),
        pytest.param(lambda: csr("api.example.test", NAME), "subject", id="subject"),
        pytest.param(lambda: csr(NAME), "names missing", id="no-san"),
        pytest.param(
            lambda: csr_for(NAME, key=private_key("rsa")), "EC P-256", id="wrong-key-type"
        ),
        pytest.param(lambda: csr_for(NAME, key=private_key("ec384")), "EC P-256", id="wrong-curve"),
    ],
)
def test_a_csr_for_other_names_or_another_key_is_refused_before_enrollment(
    manager: RegisteredAgent,
    agent_api: Callable[[RegisteredAgent], APIClient],
    device_store: CertificateStore,
    web: Template,
    old_certificate: Certificate,
    requester: Any,
    make_csr: Callable[[], str],
    why: str,
) -> None:
    deployment, job = _reenrollment(device_store, web, old_certificate, requester)
    before = EnrollmentRequest.objects.count()
    answer = _post_csr(agent_api(manager), job, make_csr())
    assert answer.status_code == 400, answer.content
    error = error_of(answer)
    assert error["code"] == "csr_mismatch" and why in error["message"]
    assert EnrollmentRequest.objects.count() == before
    deployment.refresh_from_db()
    assert deployment.enrollment is None and deployment.state == "pending"
    # Corrected, the same attempt may still send its CSR.
    assert _post_csr(agent_api(manager), job, csr_for(NAME)).status_code == 200


def test_garbage_instead_of_a_csr_is_a_400(
    manager: RegisteredAgent,
    agent_api: Callable[[RegisteredAgent], APIClient],
    device_store: CertificateStore,
    web: Template,
    old_certificate: Certificate,
    requester: Any,
) -> None:
    _, job = _reenrollment(device_store, web, old_certificate, requester)
    client = agent_api(manager)
    for body in (
        {"attempt": job.attempts, "csr": "not a csr"},
        {"attempt": job.attempts, "csr": ["x"]},
        {"attempt": job.attempts},
        {"attempt": "1", "csr": csr_for(NAME)},
        [],
    ):
        answer = client.post(f"{AGENT}jobs/{job.pk}/csr", body, format="json")
        assert answer.status_code == 400, (body, answer.content)
        error_of(answer)


def test_a_reenrollment_waiting_for_approval_is_delivered_with_the_devices_key(
    manager: RegisteredAgent,
    agent_api: Callable[[RegisteredAgent], APIClient],
    device_store: CertificateStore,
    web: Template,
    old_certificate: Certificate,
    requester: Any,
    superuser: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    Template.objects.filter(pk=web.pk).update(require_approval=True)
    web.refresh_from_db()
    deployment, job = _reenrollment(device_store, web, old_certificate, requester)
    client = agent_api(manager)
    answer = _post_csr(client, job, csr_for(NAME))
    assert answer.status_code == 202, answer.content
    assert answer.json()["state"] == "pending"
    enrollment_id = answer.json()["enrollment_id"]
    deployment.refresh_from_db()
    assert deployment.state == "awaiting_approval"
    assert str(deployment.enrollment_id) == enrollment_id
    assert _post_csr(client, job, csr_for(NAME)).json() == answer.json()
    done = client.post(
        f"{AGENT}jobs/{job.pk}/complete",
        {
            "attempt": job.attempts,
            "status": "success",
            "message": "waiting for approval",
            "result": {"awaiting_approval": True, "enrollment_id": enrollment_id},
        },
        format="json",
    )
    assert done.status_code == 200, done.content
    request = EnrollmentRequest.objects.get(pk=enrollment_id)
    with django_capture_on_commit_callbacks(execute=True):
        enrollment_approve(request=request, actor=superuser)
    request.refresh_from_db()
    assert request.state == "issued"
    add = Job.objects.get(type=JobType.ADD, store=device_store)
    assert add.payload["device_key"] == enrollment_id
    assert add.payload["key_source"] is None
    # The add job's configuration names the device's key and carries none.
    leased = job_services.job_lease_next(orchestrator=manager.orchestrator)
    assert leased is not None and leased.pk == add.pk
    config = job_services.job_configuration(orchestrator=manager.orchestrator, job_id=add.pk)
    assert config["payload"]["device_key"] == enrollment_id
    assert config["payload"]["private_key"] is None


def test_a_request_the_template_refuses_fails_the_deployment_with_the_templates_reason(
    manager: RegisteredAgent,
    agent_api: Callable[[RegisteredAgent], APIClient],
    device_store: CertificateStore,
    web: Template,
    old_certificate: Certificate,
    requester: Any,
) -> None:
    deployment, job = _reenrollment(
        device_store, web, old_certificate, requester, names=("www.elsewhere.test",)
    )
    client = agent_api(manager)
    answer = _post_csr(client, job, csr_for("www.elsewhere.test"))
    assert answer.status_code == 400, answer.content
    error = error_of(answer)
    assert error["code"] == "enrollment_refused" and "outside the domains" in error["message"]
    deployment.refresh_from_db()
    assert deployment.state == "failed" and "outside the domains" in deployment.message
    again = _post_csr(client, job, csr_for("www.elsewhere.test"))
    assert again.status_code == 400 and error_of(again)["message"] == error["message"]


def test_csrs_for_the_wrong_job_or_attempt_are_refused(
    manager: RegisteredAgent,
    register_agent: Callable[..., RegisteredAgent],
    agent_api: Callable[[RegisteredAgent], APIClient],
    device_store: CertificateStore,
    web: Template,
    old_certificate: Certificate,
    requester: Any,
) -> None:
    _, job = _reenrollment(device_store, web, old_certificate, requester)
    other = register_agent("other")
    assert _post_csr(agent_api(other), job, csr_for(NAME)).status_code == 404
    client = agent_api(manager)
    stale = _post_csr(client, job, csr_for(NAME), attempt=job.attempts + 1)
    assert stale.status_code == 409 and error_of(stale)["code"] == "stale_attempt"
    job_services.job_cancel(job=job, actor=None)
    cancelled = _post_csr(client, job, csr_for(NAME))
    assert cancelled.status_code == 409
    assert not EnrollmentRequest.objects.filter(renewal_of=old_certificate).exists()


def test_a_csr_for_a_job_of_another_type_is_refused(
    manager: RegisteredAgent,
    agent_api: Callable[[RegisteredAgent], APIClient],
    device_store: CertificateStore,
) -> None:
    job_services.job_inventory_request(store=device_store, source=Job.Source.ADMIN)
    job = job_services.job_lease_next(orchestrator=manager.orchestrator)
    assert job is not None
    answer = _post_csr(agent_api(manager), job, csr_for(NAME))
    assert answer.status_code == 409 and error_of(answer)["code"] == "wrong_job_type"


def test_an_rsa_job_takes_an_rsa_csr_of_that_size(
    manager: RegisteredAgent,
    agent_api: Callable[[RegisteredAgent], APIClient],
    device_store: CertificateStore,
    web: Template,
    old_certificate: Certificate,
    requester: Any,
) -> None:
    Template.objects.filter(pk=web.pk).update(allowed_key_types=["RSA-2048", "EC-P256"])
    _, job = _reenrollment(
        device_store, web, old_certificate, requester, key_type="RSA", key_size=2048
    )
    key = private_key("rsa")
    assert isinstance(key, rsa.RSAPrivateKey) and not isinstance(key, ec.EllipticCurvePrivateKey)
    answer = _post_csr(agent_api(manager), job, csr_for(NAME, key=key))
    assert answer.status_code == 200, answer.content
