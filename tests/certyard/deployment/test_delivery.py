"""Delivering certificates into stores, removing them, and what the jobs' ends mean.

Real database, real enrollment through the built-in CA, the jobs app's real leasing and
completion; the agent's side is played by the services it calls (its key opens what the
platform sealed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certyard.deployment import services
from certyard.deployment.models import Deployment, DeploymentBatch
from certyard.enrollment import services as enrollment
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.errors import ServiceError
from certyard.inventory.models import Certificate, CertificateLocation, CertificateStore
from certyard.jobs.models import Job
from certyard.jobs.services import job_complete, job_configuration, job_lease_next
from orchestrators.protocol import JobOutcome, JobType
from orchestrators.transit import TransitError, open_sealed, transit_context
from tests.certs import csr_for
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db

MakeStore = Callable[..., CertificateStore]


def _pfx(alice: Any, name: str = "app.example.test") -> EnrollmentRequest:
    submitted = enrollment.enrollment_submit_pfx(
        template_name="web", common_name=name, password="password1", actor=alice
    )
    assert submitted.request.state == EnrollmentRequest.State.ISSUED
    return submitted.request


def _csr(alice: Any, name: str = "www.example.test") -> EnrollmentRequest:
    request = enrollment.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for(name), actor=alice
    )
    assert request.state == EnrollmentRequest.State.ISSUED
    return request


def _fetch(agent: RegisteredAgent) -> dict[str, Any]:
    """Lease the next job and fetch its configuration, as the agent does."""
    job = job_lease_next(orchestrator=agent.orchestrator)
    assert job is not None
    return job_configuration(orchestrator=agent.orchestrator, job_id=job.pk)


def _raw_rows(table: str) -> list[Any]:
    """The table as stored (encrypted fields still encrypted)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 (a fixed table name)
        return list(cursor.fetchall())


def _no_secret_in(*values: Any) -> None:
    text = json.dumps(values, default=str)
    assert "PRIVATE KEY" not in text and "s3cret-entry" not in text


def test_deploy_with_the_platform_key_stores_references_and_seals_to_the_agent(
    web: Template, alice: Any, manager: RegisteredAgent, make_store: MakeStore
) -> None:
    request = _pfx(alice)
    store = make_store("PEM", owner=alice)
    batch = services.certificate_deploy(
        certificate=request.certificate, stores=[store.pk], actor=alice, source="api"
    )
    (deployment,) = batch.deployments.all()
    assert deployment.key_origin == "platform" and deployment.state == "pending"
    job = deployment.job
    assert job.type == JobType.ADD and job.store == store
    assert job.payload["key_source"] == {"kind": "enrollment", "id": str(request.pk)}
    assert job.payload["deployment_id"] == str(deployment.pk)
    _no_secret_in(job.payload, _raw_rows("deployment_deployment"), list(Job.objects.values()))

    config = _fetch(manager)
    payload = config["payload"]
    assert payload["certificate_sha256"] == request.certificate.sha256
    assert x509.load_pem_x509_certificate(payload["certificate"].encode()).fingerprint
    assert payload["chain"], "the issuing CA's chain goes with it"
    context = transit_context(job_id=config["job_id"], attempt=config["attempt"])
    key_pem = open_sealed(payload["private_key"], manager.key, context=context)
    key = serialization.load_pem_private_key(key_pem, None)
    issued = x509.load_pem_x509_certificate(request.certificate_pem.encode())
    assert key.public_key() == issued.public_key()
    assert b"BEGIN PRIVATE KEY" in key_pem  # unencrypted PKCS#8
    # Sealed to this attempt: another context does not open it.
    with pytest.raises(TransitError):
        open_sealed(
            payload["private_key"],
            manager.key,
            context=transit_context(job_id=config["job_id"], attempt=config["attempt"] + 1),
        )
    _no_secret_in(list(Job.objects.values()))


def test_without_a_platform_key_only_the_certificate_goes(
    web: Template, alice: Any, manager: RegisteredAgent, make_store: MakeStore
) -> None:
    request = _csr(alice)
    store = make_store("PEM", owner=alice)
    batch = services.certificate_deploy(
        certificate=request.certificate, stores=[store], actor=alice, source="api"
    )
    assert batch.deployments.get().key_origin == "none"
    payload = _fetch(manager)["payload"]
    assert payload["private_key"] is None


def test_key_policies(
    web: Template, alice: Any, manager: RegisteredAgent, make_store: MakeStore
) -> None:
    csr_certificate = _csr(alice).certificate
    pfx_certificate = _pfx(alice).certificate
    needs_key = make_store("KEYREQ", "/etc/keyreq", owner=alice)
    trust_only = make_store("NOKEY", "/etc/trust", owner=alice)
    with pytest.raises(ServiceError, match="requires a private key") as refused:
        services.certificate_deploy(
            certificate=csr_certificate, stores=[needs_key], actor=alice, source="api"
        )
    assert refused.value.code == "private_key_required"
    with pytest.raises(ServiceError, match="you asked for none"):
        services.certificate_deploy(
            certificate=pfx_certificate,
            stores=[needs_key],
            actor=alice,
            include_private_key=False,
            source="api",
        )
    assert not Deployment.objects.exists() and not Job.objects.filter(type="add").exists()
    services.certificate_deploy(
        certificate=pfx_certificate, stores=[trust_only], actor=alice, source="api"
    )
    payload = _fetch(manager)["payload"]
    assert payload["private_key"] is None  # forbidden: never sent
    batch = services.certificate_deploy(
        certificate=pfx_certificate, stores=[needs_key], actor=alice, source="api"
    )
    assert batch.deployments.get().key_origin == "platform"


def test_alias_policy_and_entry_parameters(
    web: Template, alice: Any, manager: RegisteredAgent, make_store: MakeStore
) -> None:
    certificate = _pfx(alice).certificate
    java = make_store("JAVA", "/etc/app/keystore", owner=alice)
    with pytest.raises(ServiceError, match="needs an alias"):
        services.certificate_deploy(
            certificate=certificate, stores=[java], actor=alice, source="api"
        )
    with pytest.raises(ServiceError, match="entry_password") as missing:
        services.certificate_deploy(
            certificate=certificate, stores=[java], actor=alice, alias="app", source="api"
        )
    assert missing.value.code == "entry_parameter_missing"
    with pytest.raises(ServiceError, match="no entry parameter colour"):
        services.certificate_deploy(
            certificate=certificate,
            stores=[java],
            actor=alice,
            alias="app",
            entry_parameters={"colour": "red"},
            source="api",
        )
    # Without the key the entry password is not needed.
    services.certificate_deploy(
        certificate=certificate,
        stores=[java],
        actor=alice,
        alias="trust",
        include_private_key=False,
        source="api",
    )
    batch = services.certificate_deploy(
        certificate=certificate,
        stores=[java],
        actor=alice,
        alias="app",
        overwrite=True,
        entry_parameters={"entry_password": "s3cret-entry", "label": "main"},
        source="api",
    )
    deployment = batch.deployments.get()
    assert deployment.job.payload["entry_parameters"] == {"label": "main"}
    _no_secret_in(list(Job.objects.values()), _raw_rows("deployment_deployment"))
    configs = [_fetch(manager), _fetch(manager)]
    (config,) = [c for c in configs if c["payload"]["alias"] == "app"]
    assert config["payload"]["entry_parameters"] == {
        "label": "main",
        "entry_password": "s3cret-entry",
    }
    assert config["payload"]["overwrite"] is True


def test_another_persons_store_is_refused(
    web: Template, alice: Any, bob: Any, make_store: MakeStore
) -> None:
    certificate = _csr(alice).certificate
    hers = make_store("PEM", owner=alice)
    with pytest.raises(ServiceError) as refused:
        services.certificate_deploy(certificate=certificate, stores=[hers], actor=bob, source="api")
    assert refused.value.code == "not_yours" and refused.value.http_status == 403
    assert not DeploymentBatch.objects.exists()
    assert services.stores_matching(actor=bob, filter={"store_type": "PEM"}) == []
    assert services.stores_matching(actor=alice, filter={"path_contains": "SSL/S"}) == [hers]
    with pytest.raises(ServiceError, match="unknown store filter keys"):
        services.stores_matching(actor=alice, filter={"path": "/etc"})


def test_undeploy_removes_every_location_by_alias(
    web: Template, alice: Any, manager: RegisteredAgent, make_store: MakeStore
) -> None:
    from django.utils import timezone

    certificate = _csr(alice).certificate
    one = make_store("PEM", "/etc/one", owner=alice)
    two = make_store("PEM", "/etc/two", owner=alice)
    now = timezone.now()
    for store in (one, two):
        CertificateLocation.objects.create(
            store=store,
            certificate=certificate,
            alias=f"www-{store.store_path[-3:]}",
            first_seen=now,
            last_seen=now,
        )
    batch = services.certificate_undeploy(certificate=certificate, actor=alice, source="api")
    payloads = sorted(
        (d.job.payload["alias"], d.job.payload["certificate_sha256"])
        for d in batch.deployments.all()
    )
    assert payloads == [("www-one", certificate.sha256), ("www-two", certificate.sha256)]
    assert {d.action for d in batch.deployments.all()} == {"remove"}


def _finish(agent: RegisteredAgent, outcome: JobOutcome, message: str = "", **result: Any) -> Job:
    job = job_lease_next(orchestrator=agent.orchestrator)
    assert job is not None
    job_configuration(orchestrator=agent.orchestrator, job_id=job.pk)
    job, _ = job_complete(
        orchestrator=agent.orchestrator,
        job_id=job.pk,
        outcome=outcome,
        message=message,
        attempt=job.attempts,
        result=result or None,
    )
    return job


def _one(
    agent: RegisteredAgent, certificate: Certificate, store: CertificateStore, alice: Any
) -> Deployment:
    batch = services.certificate_deploy(
        certificate=certificate, stores=[store], actor=alice, source="api"
    )
    return batch.deployments.get()


def test_the_jobs_end_sets_the_deployment_state(
    web: Template, alice: Any, manager: RegisteredAgent, make_store: MakeStore, settings: Any
) -> None:
    settings.CERTYARD_JOB_RETRY_DELAY_SECONDS = 0
    certificate = _csr(alice).certificate
    store = make_store("PEM", owner=alice)
    sha = certificate.sha256
    served = {
        "endpoint": "127.0.0.1:443",
        "sni": None,
        "served_sha256": sha,
        "expected_sha256": sha,
        "served": True,
        "error": None,
    }

    deployment = _one(manager, certificate, store, alice)
    _finish(
        manager,
        JobOutcome.SUCCESS,
        "deployed and served",
        alias="www",
        certificate_sha256=sha,
        written=True,
        key_origin="none",
        verification=served,
    )
    deployment.refresh_from_db()
    assert deployment.state == "deployed"
    assert deployment.evidence["verification"]["served"] is True

    deployment = _one(manager, certificate, store, alice)
    _finish(manager, JobOutcome.SUCCESS, "", alias="www", written=True, verification=None)
    deployment.refresh_from_db()
    assert (deployment.state, deployment.message) == ("written", "written")

    deployment = _one(manager, certificate, store, alice)
    stale = {**served, "served": False, "served_sha256": "00" * 32}
    _finish(
        manager,
        JobOutcome.WARNING,
        "written, endpoint still serves the old certificate",
        verification=stale,
        attacker="<script>",
    )
    deployment.refresh_from_db()
    assert deployment.state == "warning"
    assert "old certificate" in deployment.message
    assert "attacker" not in deployment.evidence  # only the known result keys are kept

    deployment = _one(manager, certificate, store, alice)
    for attempt in range(1, deployment.job.max_attempts + 1):
        job = _finish(manager, JobOutcome.FAILURE, "duplicate alias www without overwrite")
        deployment.refresh_from_db()
        if attempt < job.max_attempts:
            assert deployment.state == "pending" and "retried" in deployment.message
    assert deployment.state == "failed"
    assert deployment.message == "duplicate alias www without overwrite"
    # The hook applied again (a repeated call) changes nothing.
    services.deployment_job_finished(job)
    deployment.refresh_from_db()
    assert deployment.state == "failed"


def _inventoried(
    store: CertificateStore, alias: str, name: str = "legacy.example.test"
) -> Certificate:
    """A certificate Certyard did not issue, found by inventory in ``store``."""
    from django.utils import timezone

    from certyard.inventory.ingest import certificates_record
    from tests.certs import issue

    issued = issue(name, sans=(name, f"alt.{name}"))
    recorded = certificates_record([[issued.der]])
    certificate = Certificate.objects.get(pk=recorded.ids[issued.sha256])
    now = timezone.now()
    CertificateLocation.objects.create(
        store=store, certificate=certificate, alias=alias, first_seen=now, last_seen=now
    )
    return certificate


def test_renew_and_replace_an_inventoried_certificate(
    web: Template,
    alice: Any,
    superuser: Any,
    manager: RegisteredAgent,
    make_store: MakeStore,
    django_capture_on_commit_callbacks: Any,
) -> None:
    platform_store = make_store("PEM", "/etc/pem", owner=alice)
    device_store = make_store("DEVICE", "/etc/device", owner=alice)
    old = _inventoried(platform_store, "legacy")
    now = CertificateLocation.objects.get().last_seen
    CertificateLocation.objects.create(
        store=device_store, certificate=old, alias="dev-legacy", first_seen=now, last_seen=now
    )
    with django_capture_on_commit_callbacks(execute=True):
        batch = services.certificate_renew_and_replace(
            certificate=old, template="web", actor=superuser, source="api"
        )
    assert batch.kind == "renew_replace" and batch.template == web
    device = batch.deployments.get(action="reenroll")
    assert device.store == device_store and device.key_origin == "device"
    payload = device.job.payload
    assert device.job.type == JobType.REENROLLMENT
    assert payload["subject"] == "CN=legacy.example.test"
    assert payload["sans"] == [
        {"type": "dns", "value": "legacy.example.test"},
        {"type": "dns", "value": "alt.legacy.example.test"},
    ]
    assert (payload["key_type"], payload["key_size"], payload["alias"]) == ("EC", 256, "dev-legacy")
    add = batch.deployments.get(action="add")
    renewal = EnrollmentRequest.objects.get(type="renew")
    assert renewal.renewal_of == old and renewal.method == "pfx"
    assert add.certificate == renewal.certificate != old
    assert add.job.payload["alias"] == "legacy" and add.job.payload["overwrite"] is True
    assert add.key_origin == "platform"
    batch.refresh_from_db()
    assert batch.new_certificate == renewal.certificate
    new = x509.load_pem_x509_certificate(renewal.certificate_pem.encode())
    assert new.subject.rfc4514_string() == "CN=legacy.example.test"


def test_renew_and_replace_refuses_names_the_template_refuses(
    web: Template, alice: Any, superuser: Any, manager: RegisteredAgent, make_store: MakeStore
) -> None:
    store = make_store("PEM", owner=alice)
    old = _inventoried(store, "other", name="www.elsewhere.test")
    with pytest.raises(ServiceError, match="refuses the certificate's names"):
        services.certificate_renew_and_replace(
            certificate=old, template="web", actor=superuser, source="api"
        )
    assert not DeploymentBatch.objects.exists()
    assert not EnrollmentRequest.objects.exists()


def test_renew_and_replace_waits_for_approval(
    web: Template,
    alice: Any,
    manager: RegisteredAgent,
    make_store: MakeStore,
    django_capture_on_commit_callbacks: Any,
    superuser: Any,
) -> None:
    web.require_approval = True
    web.save()
    store = make_store("PEM", owner=alice)
    old = _inventoried(store, "legacy")
    with django_capture_on_commit_callbacks(execute=True):
        batch = services.certificate_renew_and_replace(
            certificate=old, template="web", actor=superuser, source="api"
        )
    waiting = batch.deployments.get()
    assert waiting.state == "awaiting_approval" and waiting.job is None
    with django_capture_on_commit_callbacks(execute=True):
        enrollment.enrollment_approve(
            request=waiting.enrollment, actor=None, comment="ok", handler="rule"
        )
    waiting.refresh_from_db()
    assert waiting.state == "pending" and waiting.job.type == JobType.ADD
    assert waiting.certificate == EnrollmentRequest.objects.get(type="renew").certificate
    assert waiting.job.payload["key_source"]["id"] == str(waiting.enrollment_id)


def test_a_denied_renewal_fails_what_waited_for_it(
    web: Template,
    alice: Any,
    manager: RegisteredAgent,
    make_store: MakeStore,
    django_capture_on_commit_callbacks: Any,
    superuser: Any,
) -> None:
    web.require_approval = True
    web.save()
    store = make_store("PEM", owner=alice)
    old = _inventoried(store, "legacy")
    with django_capture_on_commit_callbacks(execute=True):
        batch = services.certificate_renew_and_replace(
            certificate=old, template="web", actor=superuser, source="api"
        )
    waiting = batch.deployments.get()
    with django_capture_on_commit_callbacks(execute=True):
        enrollment.enrollment_deny(
            request=waiting.enrollment, actor=None, comment="not this host", handler="rule"
        )
    waiting.refresh_from_db()
    assert waiting.state == "failed" and waiting.job is None
    assert waiting.message == "the request was denied: not this host"


def test_enrollment_target_stores_deliver_when_issued(
    web: Template,
    alice: Any,
    bob: Any,
    manager: RegisteredAgent,
    make_store: MakeStore,
    django_capture_on_commit_callbacks: Any,
    superuser: Any,
) -> None:
    store = make_store("PEM", owner=alice)
    java = make_store("JAVA", "/etc/app/trust", owner=alice)
    with django_capture_on_commit_callbacks(execute=True):
        request = enrollment.enrollment_submit_csr(
            template_name="web",
            csr_pem=csr_for("www.example.test"),
            actor=alice,
            target_stores=[str(store.pk), str(java.pk)],
        )
    batch = DeploymentBatch.objects.get(kind="enrollment")
    by_store = {d.store_id: d for d in batch.deployments.all()}
    assert by_store[store.pk].job.payload["key_source"] is None
    assert by_store[java.pk].alias == "www.example.test"  # the type needs an alias
    assert by_store[store.pk].enrollment == request

    # With approval: nothing until it is issued, then the key goes too (PFX).
    web.require_approval = True
    web.save()
    with django_capture_on_commit_callbacks(execute=True):
        pending = enrollment.enrollment_submit_pfx(
            template_name="web",
            common_name="app.example.test",
            password="password1",
            actor=alice,
            target_stores=[str(store.pk)],
        ).request
    assert pending.state == "pending" and DeploymentBatch.objects.count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        enrollment.enrollment_approve(request=pending, actor=superuser, comment="ok")
    delivered = DeploymentBatch.objects.exclude(pk=batch.pk).get().deployments.get()
    assert delivered.key_origin == "platform"
    assert delivered.job.payload["key_source"] == {"kind": "enrollment", "id": str(pending.pk)}
    # The requester collects the PKCS#12; the key stays until the delivery ended.
    enrollment.enrollment_pfx_collect(request=pending, password="password2", actor=alice)
    pending.refresh_from_db()
    assert pending.private_key_pem


def test_enrollment_target_stores_are_checked_first(
    web: Template, alice: Any, bob: Any, manager: RegisteredAgent, make_store: MakeStore
) -> None:
    needs_key = make_store("KEYREQ", "/etc/keyreq", owner=alice)
    with pytest.raises(ServiceError, match="enroll as PFX"):
        enrollment.enrollment_submit_csr(
            template_name="web",
            csr_pem=csr_for("www.example.test"),
            actor=alice,
            target_stores=[str(needs_key.pk)],
        )
    hers = make_store("PEM", "/etc/hers", owner=alice)
    with pytest.raises(ServiceError) as refused:
        enrollment.enrollment_submit_csr(
            template_name="web",
            csr_pem=csr_for("www.example.test"),
            actor=bob,
            target_stores=[str(hers.pk)],
        )
    assert refused.value.http_status == 403
    with pytest.raises(ServiceError, match="not a store id"):
        enrollment.enrollment_submit_csr(
            template_name="web",
            csr_pem=csr_for("www.example.test"),
            actor=alice,
            target_stores=["nope"],
        )
    assert not EnrollmentRequest.objects.filter(state="issued").exists()
    assert not DeploymentBatch.objects.exists()


def test_auto_renew_renews_and_replaces_where_the_certificate_is_installed(
    web: Template,
    alice: Any,
    manager: RegisteredAgent,
    make_store: MakeStore,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django.utils import timezone

    from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
    from certyard.workflows.runner import event_runs_execute
    from certyard.workflows.services import event_emit, registration_save

    registration_save(
        registration=HandlerRegistration(
            name="renew", handler="certyard.auto_renew", events=["certificate.expiring"]
        ),
        values={"days": 30},
    )
    request = _pfx(alice)
    store = make_store("PEM", owner=alice)
    now = timezone.now()
    CertificateLocation.objects.create(
        store=store, certificate=request.certificate, alias="app", first_seen=now, last_seen=now
    )
    event_emit(
        kind="certificate.expiring",
        subject_type="certificate",
        subject_id=request.certificate_id,
        data={"days": 7, "sha256": request.certificate.sha256},
    )
    for event in Event.objects.filter(kind="certificate.expiring"):
        with django_capture_on_commit_callbacks(execute=True):
            event_runs_execute(event.pk)
    (run,) = HandlerRun.objects.all()
    assert run.state == "succeeded", run.error
    batch = DeploymentBatch.objects.get(kind="renew_replace")
    deployment = batch.deployments.get()
    renewal = EnrollmentRequest.objects.get(type="renew")
    assert deployment.certificate == renewal.certificate and deployment.job.type == "add"
    assert deployment.alias == "app" and deployment.key_origin == "platform"
    # Provenance: the job was started by the handler's registration.
    assert (deployment.job.source, deployment.job.source_detail) == ("handler", "renew")
    assert deployment.job.source_registration == run.registration
