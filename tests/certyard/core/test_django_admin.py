"""Django admin: every page of every registered model answers, and never shows a secret."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group
from django.db.models import Model
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task
from django_q.signing import SignedPackage

from certyard.accounts.models import ApiToken
from certyard.accounts.services import api_token_create
from certyard.blueprints.services import blueprint_save
from certyard.fleet.models import Orchestrator
from certyard.inventory.ingest import inventory_submit
from certyard.inventory.metadata import metadata_field_create
from certyard.inventory.models import CertificateStore, CertificateStoreType, MetadataBackfill
from certyard.inventory.services import store_create
from certyard.jobs.models import Job
from certyard.jobs.services import (
    job_complete,
    job_inventory_request,
    job_lease_next,
    job_report_errors_record,
)
from certyard.pki.models import CertificateAuthority
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.services import registration_save
from orchestrators.protocol import JobOutcome
from tests.certs import Issued, issue
from tests.conftest import RegisteredAgent, entry

pytestmark = pytest.mark.django_db

STORE_SECRET = "store-secret-never-shown-4711"
WEBHOOK_SECRET = "webhook-secret-never-shown-4711"
GATEWAY_SECRET = "00112233445566778899aabbccddeeff"  # a CFSSL auth key (hex)
ENTRY_SECRET = "entry-password-never-shown"


@pytest.fixture
def admin_web(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def orchestrator(register_agent: Callable[..., RegisteredAgent]) -> Orchestrator:
    return register_agent("admin-agent").orchestrator


@pytest.fixture
def secret_store(orchestrator: Orchestrator) -> CertificateStore:
    return store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        store_path="/etc/admin-walk",
        orchestrator=orchestrator,
        password=STORE_SECRET,
    )


@pytest.fixture
def api_token(superuser: Any) -> tuple[ApiToken, str]:
    """A person's API token and its value (which no admin page may show)."""
    return api_token_create(user=superuser, name="admin walk", expires_in=dt.timedelta(days=1))


@pytest.fixture
def one_of_each(
    superuser: Any, secret_store: CertificateStore, ca: Issued, api_token: tuple[ApiToken, str]
) -> None:
    """At least one row of every model the admin shows."""
    orchestrator = secret_store.orchestrator
    leaf = issue("admin-walk.example.test", issuer=ca, days=40, sans=("admin-walk.example.test",))
    inventory_submit(store=secret_store, entries=[entry("leaf", leaf, ca)])
    job, _created = job_inventory_request(store=secret_store, source=Job.Source.ADMIN)
    job_lease_next(orchestrator=orchestrator)
    job.refresh_from_db()
    job_report_errors_record(
        job=job, errors=[{"at": "2025-01-01T00:00:00Z", "error": "the platform said 500"}]
    )
    # A handler with a secret parameter; the job's end queues a run of it (an event too).
    registration_save(
        registration=HandlerRegistration(
            name="admin walk", handler="certyard.webhook", events=["job.completed"]
        ),
        values={"url": "https://hooks.example.test/walk", "secret": WEBHOOK_SECRET},
    )
    job_complete(
        orchestrator=orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.FAILURE,
        message="disk on fire",
    )
    Group.objects.create(name="operators")
    # A copy of the store's password travels with the blueprint: no page may show it either.
    blueprint_save(orchestrator=orchestrator, name="admin walk", actor=superuser)
    now = timezone.now()
    for success in (True, False):
        Task.objects.create(
            id=uuid.uuid4().hex,
            name=f"task-{success}",
            func="math.copysign",
            started=now,
            stopped=now,
            success=success,
        )
    OrmQ.objects.create(
        key="certyard",
        payload=SignedPackage.dumps({"id": "t1", "name": "queued", "func": "math.copysign"}),
    )
    # Metadata: a field, and a backfill (those start from the console or the API).
    metadata_field_create(name="owner")
    MetadataBackfill.objects.create(total=1)
    assert Schedule.objects.exists()  # the maintenance schedule, from a migration
    assert CertificateAuthority.objects.exists()  # the orchestrator CA, from registration
    # PKI: a built-in CA, a template, an archived PFX key, a gateway with a secret, its
    # record and a sync: no page may show a key or the gateway's secret.
    from certyard.enrollment.models import GatewayRecord, GatewaySync, Template
    from certyard.enrollment.services import enrollment_submit_pfx
    from certyard.pki.services import ca_create

    issuing = ca_create(name="Admin walk CA", key_algorithm="EC-P256")
    Template.objects.create(name="walk", ca=issuing, archive_keys=True)
    enrollment_submit_pfx(
        template_name="walk",
        common_name="walk.example.test",
        password="walk-password",
        actor=superuser,
    )
    gateway = registration_save(
        registration=HandlerRegistration(name="walk gateway", handler="certyard.cfssl"),
        values={"url": "http://127.0.0.1:9", "auth_key": GATEWAY_SECRET},
    )
    GatewayRecord.objects.create(gateway=gateway, ca_request_id="1:aa", status="issued")
    GatewaySync.objects.create(gateway=gateway, state=GatewaySync.State.FINISHED)
    # Store management: a delivery with a secret entry parameter, and a discovery candidate.
    import json

    from certyard.deployment.models import Deployment, DeploymentBatch, DiscoveryCandidate
    from certyard.inventory.models import Certificate

    delivered = Certificate.objects.first()
    batch = DeploymentBatch.objects.create(kind=DeploymentBatch.Kind.ADD, certificate=delivered)
    Deployment.objects.create(
        batch=batch,
        certificate=delivered,
        store=secret_store,
        action=Deployment.Action.ADD,
        alias="walk.pem",
        secret_entry_parameters=json.dumps({"entry_password": ENTRY_SECRET}),
    )
    DiscoveryCandidate.objects.create(
        orchestrator=orchestrator,
        path="/etc/ssl/found.p12",
        kind="pkcs12",
        store_type="PKCS12",
        password_needed=True,
        first_seen=now,
        last_seen=now,
    )
    # Login throttling (django-axes): a failed and a successful login, through the login page.
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("walker", password="walk-login-password-7")
    login = Client()
    assert login.post("/login/", {"username": "stranger", "password": "wrong"}).status_code == 200
    answer = login.post("/login/", {"username": "walker", "password": "walk-login-password-7"})
    assert answer.status_code == 302


def _registered() -> list[tuple[type[Model], admin.ModelAdmin]]:
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def _secrets() -> list[str]:
    """Plain text that must never reach an admin page: store passwords, CA keys and the
    digests of API tokens."""
    from certyard.enrollment.models import EnrollmentRequest

    keys = [ca.private_key_pem for ca in CertificateAuthority.objects.all()]
    keys += [r.private_key_pem for r in EnrollmentRequest.objects.exclude(private_key_pem="")]
    # The PEM body of each key, without its BEGIN/END lines (which are not secret).
    bodies = [line for key in keys for line in key.splitlines()[:3] if "-----" not in line]
    digests = list(ApiToken.objects.values_list("digest", flat=True))
    return [STORE_SECRET, WEBHOOK_SECRET, GATEWAY_SECRET, ENTRY_SECRET, *bodies, *digests]


def test_every_admin_page_answers_and_shows_no_secret(
    admin_web: Client, superuser: Any, one_of_each: None, api_token: tuple[ApiToken, str]
) -> None:
    request = RequestFactory().get("/admin/")
    request.user = superuser
    secrets = [*_secrets(), api_token[1]]
    assert api_token[0].digest in secrets
    checked: list[str] = []

    def fetch(url: str, expected: int = 200) -> None:
        response = admin_web.get(url)
        assert response.status_code == expected, f"{url}: {response.status_code}"
        page = response.content.decode()
        for secret in secrets:
            assert secret not in page, f"{url} shows a secret"
        checked.append(url)

    for model, model_admin in _registered():
        info = (model._meta.app_label, model._meta.model_name)
        changelist = reverse("admin:{}_{}_changelist".format(*info))
        fetch(changelist)
        fetch(f"{changelist}?q=x")
        add_allowed = model_admin.has_add_permission(request)
        fetch(reverse("admin:{}_{}_add".format(*info)), 200 if add_allowed else 403)

        obj = model_admin.get_queryset(request).first()
        assert obj is not None, f"no {model._meta.label} to open"
        object_id = quote(obj.pk)
        fetch(reverse("admin:{}_{}_change".format(*info), args=[object_id]))
        delete_allowed = model_admin.has_delete_permission(request, obj)
        fetch(
            reverse("admin:{}_{}_delete".format(*info), args=[object_id]),
            200 if delete_allowed else 403,
        )
        fetch(reverse("admin:{}_{}_history".format(*info), args=[object_id]))

    assert len(checked) == 6 * len(admin.site._registry)


@pytest.mark.parametrize(
    "query",
    [
        "admin:inventory_certificatestore_changelist?inventory_status__exact=failing",
        "admin:inventory_certificate_changelist?conformant__exact=0",
        "admin:jobs_jobhistory_changelist?outcome__exact=failure",
    ],
)
def test_admin_filters_answer(admin_web: Client, one_of_each: None, query: str) -> None:
    name, params = query.split("?")
    response = admin_web.get(f"{reverse(name)}?{params}")
    assert response.status_code == 200


def test_store_admin_shows_status_and_job_history_its_report_errors(
    admin_web: Client, one_of_each: None, secret_store: CertificateStore
) -> None:
    listing = admin_web.get(reverse("admin:inventory_certificatestore_changelist"))
    assert "Failing" in listing.content.decode()

    history = Job.objects.get().history.get()
    page = admin_web.get(reverse("admin:jobs_jobhistory_change", args=[history.pk]))
    assert "the platform said 500" in page.content.decode()


# --- The store form goes through the services -------------------------------------------


def _add_form(orchestrator: Orchestrator, **changes: str) -> dict[str, str]:
    data = {
        "store_type": str(CertificateStoreType.objects.get(short_name="PEM").pk),
        "orchestrator": str(orchestrator.pk),
        "client_machine": "",
        "store_path": "/srv/admin-added",
        "properties": '{"recursive": true}',
        "password": "typed-in-admin",
        "inventory_interval_minutes": "",
        "_save": "Save",
    }
    data.update(changes)
    return data


def test_store_add_form_creates_a_store_through_the_service(
    admin_web: Client, orchestrator: Orchestrator
) -> None:
    response = admin_web.post(
        reverse("admin:inventory_certificatestore_add"), _add_form(orchestrator)
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    store = CertificateStore.objects.get()
    assert store.client_machine == orchestrator.client_machine  # defaulted by the service
    assert store.properties["recursive"] is True
    assert "file_patterns" in store.properties  # the type's declared default, filled in
    assert store.password == "typed-in-admin"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"client_machine": "elsewhere.example.test"}, "cannot reach a store on elsewhere"),
        ({"properties": '{"no_such_property": 1}'}, "has no property no_such_property"),
        ({"properties": "[1, 2]"}, "Properties must be a JSON object"),
    ],
)
def test_store_add_form_shows_a_service_refusal_as_a_form_error(
    admin_web: Client, orchestrator: Orchestrator, changes: dict[str, str], error: str
) -> None:
    response = admin_web.post(
        reverse("admin:inventory_certificatestore_add"), _add_form(orchestrator, **changes)
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert error in page
    assert "errorlist" in page
    assert "typed-in-admin" not in page  # the typed password is not rendered back
    assert not CertificateStore.objects.exists()


def _change_form(store: CertificateStore, **changes: str) -> dict[str, str]:
    data = {
        "store_path": store.store_path,
        "properties": '{"recursive": true}',
        "password": "",
        "inventory_interval_minutes": "",
        "_save": "Save",
    }
    data.update(changes)
    return data


def test_store_change_form_keeps_the_password_when_left_empty(
    admin_web: Client, secret_store: CertificateStore
) -> None:
    url = reverse("admin:inventory_certificatestore_change", args=[secret_store.pk])
    page = admin_web.get(url).content.decode()
    assert STORE_SECRET not in page
    assert 'name="password"' in page and 'type="password"' in page

    response = admin_web.post(url, _change_form(secret_store, store_path="/etc/moved"))

    assert response.status_code == 302, response.content.decode()[:2000]
    secret_store.refresh_from_db()
    assert secret_store.store_path == "/etc/moved"
    assert secret_store.password == STORE_SECRET

    admin_web.post(url, _change_form(secret_store, password="a-new-one"))
    secret_store.refresh_from_db()
    assert secret_store.password == "a-new-one"

    admin_web.post(url, _change_form(secret_store, clear_password="on"))
    secret_store.refresh_from_db()
    assert secret_store.password == ""


def test_store_change_form_refuses_what_the_service_refuses(
    admin_web: Client, secret_store: CertificateStore
) -> None:
    url = reverse("admin:inventory_certificatestore_change", args=[secret_store.pk])

    response = admin_web.post(url, _change_form(secret_store, properties='{"bogus": true}'))

    assert response.status_code == 200
    assert "has no property bogus" in response.content.decode()
    secret_store.refresh_from_db()
    assert "bogus" not in secret_store.properties
    assert secret_store.password == STORE_SECRET


def test_an_encrypted_field_never_renders_its_value_whatever_widget_is_asked() -> None:
    from django import forms
    from django.contrib.admin.widgets import AdminTextareaWidget

    field = CertificateStore._meta.get_field("password")
    for kwargs in ({}, {"widget": AdminTextareaWidget}):
        form_field = field.formfield(**kwargs)
        assert isinstance(form_field.widget, forms.PasswordInput)
        assert "hunter2" not in form_field.widget.render("password", "hunter2")
