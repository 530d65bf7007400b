"""Enrollment through CA gateways against real CAs started here: Pebble (ACME) and
``cfssl serve``. Issue, renew, revoke, synchronize into the inventory; and a gateway that is
unreachable, misconfigured, raising, hanging or answering garbage fails the request with a
clear reason and issues nothing."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certyard.enrollment import services
from certyard.enrollment.gateways import GatewayFailed, gateway_ping
from certyard.enrollment.models import EnrollmentRequest, GatewayRecord, GatewaySync, Template
from certyard.enrollment.services import template_errors
from certyard.enrollment.sync import gateway_sync_run, gateway_sync_start, gateway_syncs_resume
from certyard.errors import ServiceError
from certyard.inventory.models import Certificate
from certyard.workflows.models import Event, HandlerRegistration
from certyard.workflows.services import registration_save
from handlers.builtin.acme import account_key_generate
from tests.certs import csr_for
from tests.servers.cfssl import CfsslServer, cfssl_server
from tests.servers.pebble import PebbleServer, free_port, pebble_server

pytestmark = pytest.mark.django_db
BLOCKED = "blocked.example.test"  # Pebble's policy refuses it
State = EnrollmentRequest.State


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PebbleServer]:
    with pebble_server(tmp_path_factory.mktemp("pebble"), blocked_domains=(BLOCKED,)) as server:
        yield server


@pytest.fixture(scope="module")
def cfssl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CfsslServer]:
    with cfssl_server(tmp_path_factory.mktemp("cfssl")) as server:
        yield server


def gateway(name: str, handler: str, timeout: int = 20, **values: Any) -> HandlerRegistration:
    registration = HandlerRegistration(name=name, handler=handler, timeout_seconds=timeout)
    return registration_save(registration=registration, values=values)


def template(name: str, registration: HandlerRegistration, **fields: Any) -> Template:
    candidate = Template(
        name=name,
        gateway=registration,
        product_id=fields.pop("product_id", "default"),
        allowed_domains=["example.test"],
        **fields,
    )
    errors = template_errors(candidate)
    assert not errors, errors
    candidate.save()
    return candidate


@pytest.fixture
def acme(pebble: PebbleServer) -> Template:
    registration = gateway(
        "Pebble",
        "certyard.acme",
        directory_url=pebble.directory_url,
        account_key_pem=account_key_generate(),
        ca_bundle=pebble.ca_bundle_pem,
        challenge_solver="none",
    )
    return template("acme-web", registration)


@pytest.fixture
def cfssl_template(cfssl: CfsslServer) -> Template:
    registration = gateway(
        "CFSSL",
        "certyard.cfssl",
        url=cfssl.url,
        profiles=["default", "client"],
        certdb_path=str(cfssl.certdb_path),
    )
    return template("cfssl-web", registration)


def _verify(tmp_path: Path, leaf: str, chain: str, root: str) -> None:
    (tmp_path / "root.pem").write_text(root)
    (tmp_path / "chain.pem").write_text(chain or root)
    (tmp_path / "leaf.pem").write_text(leaf)
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_acme_issue_renew_revoke_through_the_service(
    acme: Template, pebble: PebbleServer, tmp_path: Path
) -> None:
    issued = services.enrollment_submit_csr(
        template_name="acme-web", csr_pem=csr_for("www.example.test", "api.example.test")
    )
    assert issued.state == State.ISSUED, issued.failure_reason
    assert issued.ca_request_id.startswith("https://127.0.0.1:")
    _verify(tmp_path, issued.certificate_pem, issued.chain_pem, pebble.root_pem())
    certificate = Certificate.objects.get(pk=issued.certificate_id)
    record = GatewayRecord.objects.get(certificate=certificate)
    assert record.gateway.name == "Pebble" and record.status == "issued"

    renewed = services.certificate_renew(
        certificate=certificate, actor=None, csr_pem=csr_for("www.example.test")
    ).request
    assert renewed.state == State.ISSUED and renewed.serial_number != issued.serial_number

    services.certificate_revoke(certificate=certificate, reason=1)
    assert pebble.certificate_status(issued.serial_number)["Status"] == "Revoked"
    record.refresh_from_db()
    assert record.revoked_at is not None and record.revocation_reason == 1
    kinds = list(Event.objects.values_list("kind", flat=True).order_by("pk"))
    assert kinds == ["certificate.issued", "certificate.renewed", "certificate.revoked"]


def test_acme_refusal_by_the_ca_is_recorded(acme: Template) -> None:
    with pytest.raises(services.EnrollmentRefused) as refused:
        services.enrollment_submit_csr(template_name="acme-web", csr_pem=csr_for(BLOCKED))
    request = EnrollmentRequest.objects.get(pk=refused.value.details["enrollment_id"])
    assert request.state == State.FAILED
    assert "Pebble" in request.failure_reason and request.certificate_id is None


def test_cfssl_issue_renew_revoke_and_synchronize(
    cfssl_template: Template, cfssl: CfsslServer, tmp_path: Path
) -> None:
    issued = [
        services.enrollment_submit_csr(
            template_name="cfssl-web", csr_pem=csr_for(f"host{n}.example.test")
        )
        for n in range(3)
    ]
    assert all(r.state == State.ISSUED for r in issued), [r.failure_reason for r in issued]
    _verify(tmp_path, issued[0].certificate_pem, "", cfssl.ca_pem)
    first = Certificate.objects.get(pk=issued[0].certificate_id)
    renewed = services.certificate_renew(
        certificate=first, actor=None, csr_pem=csr_for("host0.example.test")
    ).request
    assert renewed.state == State.ISSUED
    services.certificate_revoke(certificate=first, reason=4)
    status = cfssl.ocsp_statuses()[
        x509.load_pem_x509_certificate(issued[0].certificate_pem.encode()).serial_number
    ]
    assert status.certificate_status.name == "REVOKED"

    # Certificates issued at the CA behind the platform's back: the sync brings them in.
    from handlers.builtin.cfssl import CfsslGateway
    from handlers.gateways import EnrollmentType, GatewayEnrollment
    from handlers.parameters import parameters_check

    direct = CfsslGateway(parameters_check(CfsslGateway.parameters, {"url": cfssl.url}))
    outside = [
        direct.enroll(
            GatewayEnrollment(
                request_id=f"outside-{n}",
                type=EnrollmentType.NEW,
                product_id="default",
                csr_pem=csr_for(f"outside{n}.example.test"),
                subject=f"CN=outside{n}.example.test",
                sans=(f"DNS:outside{n}.example.test",),
            )
        )
        for n in range(5)
    ]
    registration = cfssl_template.gateway
    sync = gateway_sync_start(registration=registration, full=True)
    with pytest.raises(ServiceError, match="already being synchronized"):
        gateway_sync_start(registration=registration)
    assert gateway_sync_run(sync.pk) == 9  # 3 + 1 renewal + 5 outside
    sync.refresh_from_db()
    assert sync.state == GatewaySync.State.FINISHED and sync.processed == 9
    assert sync.added == 5  # the platform's own were in the inventory already
    for record in outside:
        assert Certificate.objects.filter(serial_number__iexact=record.serial_number).exists()
    revoked = GatewayRecord.objects.get(certificate=first)
    assert revoked.status == "revoked" and revoked.revocation_reason == 4
    # An incremental sync starts after the last cursor: nothing new, nothing stored twice.
    again = gateway_sync_start(registration=registration)
    assert gateway_sync_run(again.pk) == 0
    assert GatewayRecord.objects.filter(gateway=registration).count() == 9


def test_a_gateway_enrollment_reads_its_csr_once(
    cfssl_template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CSR the policy parsed is the one the CA's answer is checked against."""
    from certyard.enrollment import policy

    parse = policy.csr_parse
    read: list[str] = []

    def counted(text: str) -> Any:
        read.append(text)
        return parse(text)

    monkeypatch.setattr(policy, "csr_parse", counted)
    issued = services.enrollment_submit_csr(
        template_name="cfssl-web", csr_pem=csr_for("once.example.test")
    )
    assert issued.state == State.ISSUED, issued.failure_reason
    assert len(read) == 1


def test_cfssl_sync_resumes_after_its_worker_died(
    cfssl_template: Template, cfssl: CfsslServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(7):
        services.enrollment_submit_csr(
            template_name="cfssl-web", csr_pem=csr_for(f"r{n}.example.test")
        )
    total = GatewayRecord.objects.count()
    registration = cfssl_template.gateway
    sync = gateway_sync_start(registration=registration, full=True)
    # The worker stores two batches of three, then dies (the task is killed mid-stream).
    import certyard.enrollment.sync as sync_module

    monkeypatch.setattr(sync_module, "SYNC_BATCH", 3)
    stored = 0
    real = sync_module._batch_store

    def dies_after_two(current: GatewaySync, batch: list[Any]) -> None:
        nonlocal stored
        if stored == 2:
            raise KeyboardInterrupt  # what a killed worker looks like from inside
        real(current, batch)
        stored += 1

    monkeypatch.setattr(sync_module, "_batch_store", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        gateway_sync_run(sync.pk)
    monkeypatch.setattr(sync_module, "_batch_store", real)
    sync.refresh_from_db()
    assert sync.state == GatewaySync.State.RUNNING and sync.processed == 6
    # The every-minute schedule finds it quiet and hands it over; it resumes at its cursor.
    an_hour_ago = sync.heartbeat_at - dt.timedelta(hours=1)
    GatewaySync.objects.filter(pk=sync.pk).update(heartbeat_at=an_hour_ago)
    assert gateway_syncs_resume() == 1
    gateway_sync_run(sync.pk)
    sync.refresh_from_db()
    assert sync.state == GatewaySync.State.FINISHED
    rows = GatewayRecord.objects.filter(gateway=registration).count()
    assert sync.processed == rows >= total  # every certdb row once, none twice


def test_unreachable_and_misconfigured_gateways(acme: Template, cfssl: CfsslServer) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = gateway("Nowhere", "certyard.cfssl", url=closed, timeout=5)
    # Saved directly: the template form would refuse it, the CA being unreachable.
    Template.objects.create(
        name="nowhere", gateway=unreachable, product_id="default", allowed_domains=["example.test"]
    )
    with pytest.raises(GatewayFailed) as ping:
        gateway_ping(unreachable)
    assert closed in ping.value.message
    with pytest.raises(services.EnrollmentRefused) as refused:
        services.enrollment_submit_csr(template_name="nowhere", csr_pem=csr_for("a.example.test"))
    assert closed in refused.value.message and refused.value.http_status == 502
    # A template naming a product the CA does not offer is refused when it is saved.
    wrong = Template(name="x", gateway=acme.gateway, product_id="gold")
    assert "offers no product 'gold'" in template_errors(wrong)["product_id"]
    # A registration whose class is no longer installed.
    HandlerRegistration.objects.filter(pk=unreachable.pk).update(handler="gone.away")
    with pytest.raises(services.EnrollmentRefused, match="cannot be loaded"):
        services.enrollment_submit_csr(template_name="nowhere", csr_pem=csr_for("a.example.test"))


@pytest.mark.parametrize(
    ("handler", "values", "message", "status"),
    [
        ("test.gateway_raises", {}, "RuntimeError: the gateway's own bug", 502),
        ("test.gateway_hangs", {}, "did not answer enroll within 2 s", 504),
        ("test.gateway_garbage", {"answer": "text"}, "answered enroll with str", 502),
        ("test.gateway_garbage", {"answer": "other_key"}, "for another key", 502),
    ],
)
def test_gateways_that_raise_hang_or_answer_garbage(
    handler: str, values: dict[str, Any], message: str, status: int
) -> None:
    registration = gateway("Bad", handler, timeout=2, **values)
    Template.objects.create(
        name="bad", gateway=registration, product_id="default", allowed_domains=["example.test"]
    )
    with pytest.raises(services.EnrollmentRefused) as refused:
        services.enrollment_submit_csr(template_name="bad", csr_pem=csr_for("a.example.test"))
    assert message in refused.value.message
    assert refused.value.http_status == status
    request = EnrollmentRequest.objects.get(pk=refused.value.details["enrollment_id"])
    assert request.state == State.FAILED and message in request.failure_reason
    assert not Certificate.objects.exists() and not GatewayRecord.objects.exists()


def test_sync_refused_for_a_ca_that_cannot_list(acme: Template) -> None:
    with pytest.raises(ServiceError, match="cannot be synchronized"):
        gateway_sync_start(registration=acme.gateway)


def test_template_admin_checks_the_product_with_the_gateway(admin_client: Any) -> None:
    """The admin form asks the CA about the product (outside the admin's transaction)."""
    registration = gateway("Answering", "test.gateway_raises", timeout=5)
    form = {
        "name": "via-admin",
        "enabled": "on",
        "gateway": registration.pk,
        "product_parameters": "{}",
        "validity_days": 30,
        "key_usage": "digital_signature",
        "extended_key_usage": "server_auth",
        "allowed_key_types": "EC-P256",
        "max_sans": 10,
    }
    refused = admin_client.post("/admin/enrollment/template/add/", {**form, "product_id": "gold"})
    assert refused.status_code == 200
    assert "offers no product" in refused.content.decode()
    assert not Template.objects.filter(name="via-admin").exists()
    saved = admin_client.post("/admin/enrollment/template/add/", {**form, "product_id": "default"})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert Template.objects.get(name="via-admin").gateway == registration
