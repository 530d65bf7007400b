"""The console's store management (issue 16): the store page, add to / remove from stores,
renew and replace, the certificate list's bulk actions, discovery, and batch progress."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from certyard.deployment.models import Deployment, DeploymentBatch, DiscoveryCandidate
from certyard.enrollment.models import Template
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.inventory.services import store_create
from certyard.jobs.models import Job
from certyard.pki import services as pki_services
from certyard.pki.models import KeyAlgorithm
from tests.console.conftest import Inventory

pytestmark = pytest.mark.django_db

SECRET = "store-pass-Zq81!never-shown"
HTMX = {"HTTP_HX_REQUEST": "true"}


def _text(response: Any) -> str:
    return response.content.decode()


# What a current agent advertises: every operation on every built-in store type.
CAPABILITIES = tuple(
    f"{store_type}.{operation}"
    for store_type in ("PEM", "PKCS12", "JKS", "JCEKS")
    for operation in ("Inventory", "Add", "Remove", "Create", "Discovery", "Reenrollment")
)


@pytest.fixture
def approved_orchestrator(register: Callable[..., Orchestrator]) -> Orchestrator:
    """The console's approved agent, here offering every store management operation."""
    return register("approved-agent", approve=True, capabilities=CAPABILITIES)


@pytest.fixture
def pkcs12_store(approved_orchestrator: Orchestrator) -> CertificateStore:
    """A PKCS#12 store with its password set (to check it is never shown)."""
    return store_create(
        store_type=CertificateStoreType.objects.get(short_name="PKCS12"),
        store_path="/srv/tls/app.p12",
        orchestrator=approved_orchestrator,
        password=SECRET,
    )


@pytest.fixture
def template(db: None) -> Template:
    ca = pki_services.ca_create(name="Root", key_algorithm=KeyAlgorithm.EC_P256, path_length=0)
    return Template.objects.create(name="web", ca=ca, allowed_domains=["example.test"])


def _deploy(admin_web: Client, inventory: Inventory, cn: str = "soon.example.test") -> Any:
    certificate = inventory.certificate(cn)
    return admin_web.post(
        f"/certificates/{certificate.pk}/add-to-stores/",
        {"deploy-stores": [str(inventory.store.pk)], "deploy-alias": "app"},
    )


# --- The store page ------------------------------------------------------------------


def test_the_store_page_shows_entries_with_certificate_links(
    admin_web: Client, inventory: Inventory
) -> None:
    response = admin_web.get(f"/stores/{inventory.store.pk}/")
    assert response.status_code == 200
    page = _text(response)
    assert page.count('data-testid="entry-row"') == 6
    certificate = inventory.certificate("soon.example.test")
    assert f'href="/certificates/{certificate.pk}/"' in page
    assert 'data-testid="no-history"' in page  # no job has run yet


def test_an_empty_store_page_says_it_was_never_inventoried(
    admin_web: Client, store: CertificateStore
) -> None:
    page = _text(admin_web.get(f"/stores/{store.pk}/"))
    assert 'data-testid="no-entries"' in page
    assert "not been inventoried yet" in page
    assert 'data-testid="no-jobs"' in page


def test_a_store_password_is_shown_as_set_never_as_its_value(
    admin_web: Client, pkcs12_store: CertificateStore
) -> None:
    page = _text(admin_web.get(f"/stores/{pkcs12_store.pk}/"))
    assert 'data-testid="store-password">set<' in page
    assert SECRET not in page


def test_the_store_page_lists_its_jobs_newest_first_and_pages_them(
    admin_web: Client, store: CertificateStore
) -> None:
    admin_web.post(f"/stores/{store.pk}/inventory-now/")
    admin_web.post(f"/stores/{store.pk}/create-store/")
    page = _text(admin_web.get(f"/stores/{store.pk}/"))
    assert page.count('data-testid="store-job-row"') == 2
    assert page.index(">Create<") < page.index(">Inventory<")
    # A page number that is not one is page one, never a 500.
    assert admin_web.get(f"/stores/{store.pk}/?jobs=abc&entries=-3").status_code == 200


def test_create_store_queues_a_create_job(admin_web: Client, store: CertificateStore) -> None:
    response = admin_web.post(f"/stores/{store.pk}/create-store/")
    assert response.status_code == 302
    assert Job.objects.filter(store=store, type="create").count() == 1


def test_property_problems_are_flagged(admin_web: Client, store: CertificateStore) -> None:
    CertificateStore.objects.filter(pk=store.pk).update(
        property_problems=["mode: the choice <b>0640</b> was removed"]
    )
    page = _text(admin_web.get(f"/stores/{store.pk}/"))
    assert 'data-testid="property-problems"' in page
    assert "&lt;b&gt;0640&lt;/b&gt;" in page


def test_the_store_list_links_to_the_store_page(admin_web: Client, store: CertificateStore) -> None:
    assert f'href="/stores/{store.pk}/"' in _text(admin_web.get("/stores/"))


def test_a_viewer_sees_the_store_page_without_its_buttons(
    viewer_web: Client, store: CertificateStore
) -> None:
    page = _text(viewer_web.get(f"/stores/{store.pk}/"))
    assert 'data-action="create-store"' not in page
    assert viewer_web.post(f"/stores/{store.pk}/create-store/").status_code == 403


# --- Add to stores, remove from, renew and replace -----------------------------------


def test_the_certificate_page_offers_add_remove_and_renew(
    admin_web: Client, inventory: Inventory
) -> None:
    certificate = inventory.certificate("soon.example.test")
    page = _text(admin_web.get(f"/certificates/{certificate.pk}/"))
    assert 'data-testid="deploy-form"' in page
    assert 'data-testid="undeploy-form"' in page
    assert 'data-testid="renew-replace-form"' in page
    assert 'data-testid="no-deployments"' in page


def test_add_to_stores_makes_a_batch_and_shows_its_progress(
    admin_web: Client, inventory: Inventory
) -> None:
    response = _deploy(admin_web, inventory)
    assert response.status_code == 302, _text(response)[:2000]
    batch = DeploymentBatch.objects.get()
    assert response["Location"] == f"/deployments/{batch.pk}/"
    deployment = batch.deployments.get()
    assert deployment.store == inventory.store and deployment.alias == "app"
    assert "PRIVATE KEY" not in str(deployment.job.payload)
    page = _text(admin_web.get(f"/deployments/{batch.pk}/"))
    assert page.count('data-testid="deployment-row"') == 1
    assert 'hx-trigger="every 2s"' in page
    # The certificate page lists the deployment and its state.
    certificate = inventory.certificate("soon.example.test")
    page = _text(admin_web.get(f"/certificates/{certificate.pk}/"))
    assert 'data-testid="certificate-deployment-row" data-state="pending"' in page


def test_add_to_stores_by_a_filter(admin_web: Client, inventory: Inventory) -> None:
    certificate = inventory.certificate("soon.example.test")
    response = admin_web.post(
        f"/certificates/{certificate.pk}/add-to-stores/",
        {"deploy-filter_store_type": "PEM", "deploy-filter_path_contains": "ssl"},
    )
    assert response.status_code == 302
    assert Deployment.objects.get().store == inventory.store


@pytest.mark.parametrize(
    "body, error",
    [
        ({}, "Choose at least one store"),
        ({"deploy-stores": ["not-a-uuid"]}, "not-a-uuid"),
        ({"deploy-filter_path_contains": "/nowhere/"}, "No store you may act on matches"),
        ({"deploy-stores": ["STORE"], "deploy-filter_store_type": "PEM"}, "not both"),
    ],
)
def test_add_to_stores_refuses_bad_input_with_a_form_error(
    admin_web: Client, inventory: Inventory, body: dict[str, Any], error: str
) -> None:
    certificate = inventory.certificate("soon.example.test")
    body = {k: [str(inventory.store.pk)] if v == ["STORE"] else v for k, v in body.items()}
    response = admin_web.post(f"/certificates/{certificate.pk}/add-to-stores/", body)
    assert response.status_code == 200
    assert error in _text(response)
    assert not DeploymentBatch.objects.exists()


def test_remove_from_every_location(admin_web: Client, inventory: Inventory) -> None:
    certificate = inventory.certificate("soon.example.test")
    response = admin_web.post(
        f"/certificates/{certificate.pk}/remove-from-stores/", {"undeploy-everywhere": "on"}
    )
    assert response.status_code == 302
    deployment = Deployment.objects.get()
    assert deployment.action == "remove" and deployment.job.type == "remove"


def test_remove_from_one_store_and_refuse_no_choice(
    admin_web: Client, inventory: Inventory
) -> None:
    certificate = inventory.certificate("soon.example.test")
    url = f"/certificates/{certificate.pk}/remove-from-stores/"
    refused = admin_web.post(url, {})
    assert refused.status_code == 200 and "Choose a location" in _text(refused)
    done = admin_web.post(url, {"undeploy-stores": [str(inventory.store.pk)]})
    assert done.status_code == 302
    assert Deployment.objects.filter(action="remove").count() == 1


def test_renew_and_replace_refuses_an_unknown_template(
    admin_web: Client, inventory: Inventory, template: Template
) -> None:
    certificate = inventory.certificate("soon.example.test")
    response = admin_web.post(
        f"/certificates/{certificate.pk}/renew-and-replace/", {"renew_replace-template": "nope"}
    )
    assert response.status_code == 200
    assert "Select a valid choice" in _text(response)


def test_renew_and_replace_under_a_template(
    admin_web: Client, inventory: Inventory, template: Template
) -> None:
    certificate = inventory.certificate("soon.example.test")
    response = admin_web.post(
        f"/certificates/{certificate.pk}/renew-and-replace/", {"renew_replace-template": "web"}
    )
    assert response.status_code == 302
    batch = DeploymentBatch.objects.get()
    assert batch.kind == "renew_replace" and batch.template == template
    assert response["Location"] == f"/deployments/{batch.pk}/"
    page = _text(admin_web.get(f"/deployments/{batch.pk}/"))
    assert page.count('data-testid="deployment-row"') == 1
    assert "under template web" in page


def test_a_person_without_permission_cannot_deploy(plain_web: Client, inventory: Inventory) -> None:
    certificate = inventory.certificate("soon.example.test")
    response = plain_web.post(
        f"/certificates/{certificate.pk}/add-to-stores/",
        {"deploy-stores": [str(inventory.store.pk)]},
    )
    assert response.status_code == 403
    assert not DeploymentBatch.objects.exists()


def test_a_viewer_sees_no_deploy_form(viewer_web: Client, inventory: Inventory) -> None:
    certificate = inventory.certificate("soon.example.test")
    page = _text(viewer_web.get(f"/certificates/{certificate.pk}/"))
    assert 'data-testid="deploy-form"' not in page


# --- Batch progress ------------------------------------------------------------------


def test_batch_polling_stops_when_every_location_has_finished(
    admin_web: Client, inventory: Inventory
) -> None:
    _deploy(admin_web, inventory)
    batch = DeploymentBatch.objects.get()
    rows = admin_web.get(f"/deployments/{batch.pk}/rows/", **HTMX)
    assert _text(rows).lstrip().startswith("<tbody") and "every 2s" in _text(rows)
    # The agent's evidence is attacker-written: shown escaped.
    Deployment.objects.filter(batch=batch).update(
        state="warning",
        message="written, endpoint still serves the old certificate <script>x()</script>",
        evidence={
            "verification": {
                "endpoint": "127.0.0.1:8443",
                "served": False,
                "served_sha256": "<img src=x>",
                "error": None,
            }
        },
    )
    rows = _text(admin_web.get(f"/deployments/{batch.pk}/rows/", **HTMX))
    assert "every 2s" not in rows and 'data-open="false"' in rows
    assert "<script>" not in rows and "&lt;script&gt;" in rows
    assert "<img" not in rows
    assert "serves something else" in rows


def test_an_unknown_batch_is_a_404(admin_web: Client) -> None:
    assert admin_web.get("/deployments/00000000-0000-0000-0000-000000000000/").status_code == 404


# --- The certificate list's bulk actions ---------------------------------------------


def test_the_list_offers_row_selection_and_bulk_actions(
    admin_web: Client, inventory: Inventory
) -> None:
    page = _text(admin_web.get("/certificates/?q=example"))
    assert 'data-testid="bulk-form"' in page
    assert page.count('data-testid="bulk-select"') == 5
    assert 'name="query" value="q=example"' in page


def test_bulk_add_asks_for_confirmation_with_the_count_then_runs(
    admin_web: Client, inventory: Inventory
) -> None:
    ids = [str(inventory.certificate(cn).pk) for cn in ("soon.example.test", "month.example.test")]
    step_one = admin_web.post(
        "/certificates/bulk/", {"action": "add", "scope": "selected", "selected": ids}
    )
    assert step_one.status_code == 200
    assert 'data-count="2"' in _text(step_one) and "2 certificates" in _text(step_one)
    assert not DeploymentBatch.objects.exists()
    refused = admin_web.post(
        "/certificates/bulk/",
        {"action": "add", "scope": "selected", "selected": ids, "confirmed": "on"},
    )
    assert refused.status_code == 200 and "Choose at least one store" in _text(refused)
    done = admin_web.post(
        "/certificates/bulk/",
        {
            "action": "add",
            "scope": "selected",
            "selected": ids,
            "confirmed": "on",
            "stores": [str(inventory.store.pk)],
        },
    )
    assert 'data-testid="bulk-done"' in _text(done), _text(done)[-3000:]
    assert DeploymentBatch.objects.count() == 2


def test_bulk_remove_on_every_certificate_matching_the_filter(
    admin_web: Client, inventory: Inventory
) -> None:
    body = {"action": "remove", "scope": "filter", "query": "q=soon.example.test"}
    step_one = admin_web.post("/certificates/bulk/", body)
    assert 'data-count="1"' in _text(step_one)
    admin_web.post("/certificates/bulk/", {**body, "confirmed": "on"})
    assert Deployment.objects.get().certificate == inventory.certificate("soon.example.test")


@pytest.mark.parametrize(
    "body, error",
    [
        ({"action": "add", "scope": "selected"}, "Select at least one certificate"),
        ({"action": "explode", "scope": "selected", "selected": ["1"]}, "valid choice"),
        ({"action": "remove", "scope": "filter", "query": "expiry=soonish"}, "cannot be used"),
        ({"action": "remove", "scope": "selected", "selected": ["999999"]}, "nothing to do"),
    ],
)
def test_bulk_refuses_bad_input(
    admin_web: Client, inventory: Inventory, body: dict[str, Any], error: str
) -> None:
    response = admin_web.post("/certificates/bulk/", body)
    assert response.status_code == 200
    assert error in _text(response)
    assert not DeploymentBatch.objects.exists()


def test_bulk_renew_needs_a_template(
    admin_web: Client, inventory: Inventory, template: Template
) -> None:
    selected = [str(inventory.certificate("soon.example.test").pk)]
    response = admin_web.post(
        "/certificates/bulk/",
        {"action": "renew_replace", "scope": "selected", "selected": selected, "confirmed": "on"},
    )
    assert "Choose the template" in _text(response)


# --- Discovery -----------------------------------------------------------------------


def _candidate(orchestrator: Orchestrator, path: str, **fields: Any) -> DiscoveryCandidate:
    now = timezone.now()
    values = {"kind": "pem", "store_type": "PEM", "certificate_count": 1, **fields}
    return DiscoveryCandidate.objects.create(
        orchestrator=orchestrator, path=path, first_seen=now, last_seen=now, **values
    )


def test_the_orchestrator_page_links_to_discovery(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    page = _text(admin_web.get(f"/orchestrators/{approved_orchestrator.pk}/"))
    assert f'href="/orchestrators/{approved_orchestrator.pk}/discover/"' in page
    assert f'href="/orchestrators/{approved_orchestrator.pk}/discovery/"' in page


def test_discover_queues_a_discovery_job(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    url = f"/orchestrators/{approved_orchestrator.pk}/discover/"
    assert admin_web.get(url).status_code == 200
    response = admin_web.post(
        url,
        {
            "directories": "/etc/ssl\n/srv/tls",
            "file_patterns": "*.pem, *.p12",
            "ignored_directories": ".git",
            "follow_links": "on",
            "max_depth": "4",
        },
    )
    assert response.status_code == 302
    job = Job.objects.get(type="discovery")
    assert job.payload["directories"] == ["/etc/ssl", "/srv/tls"]
    assert job.payload["file_patterns"] == ["*.pem", "*.p12"]
    assert job.payload["follow_links"] is True and job.payload["max_depth"] == 4


@pytest.mark.parametrize(
    "body",
    [
        {"directories": "etc/ssl", "max_depth": "4"},
        {"directories": "/etc/ssl", "max_depth": "99"},
        {"directories": "", "max_depth": "4"},
    ],
)
def test_discover_refuses_bad_input_with_a_form_error(
    admin_web: Client, approved_orchestrator: Orchestrator, body: dict[str, str]
) -> None:
    response = admin_web.post(f"/orchestrators/{approved_orchestrator.pk}/discover/", body)
    assert response.status_code == 200
    assert 'class="field-error"' in _text(response) or "form-errors" in _text(response)
    assert not Job.objects.filter(type="discovery").exists()


def test_discovery_results_empty_state(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    page = _text(admin_web.get(f"/orchestrators/{approved_orchestrator.pk}/discovery/"))
    assert 'data-testid="no-candidates"' in page and "No discovery has reported yet" in page
    page = _text(admin_web.get(f"/orchestrators/{approved_orchestrator.pk}/discovery/?state=gone"))
    assert "No candidate is gone" in page


def test_discovery_results_show_candidates_escaped(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    _candidate(approved_orchestrator, "/etc/ssl/<script>a()</script>.pem")
    _candidate(approved_orchestrator, "/etc/ssl/old.pem", state="gone")
    _candidate(
        approved_orchestrator,
        "/srv/app.p12",
        kind="pkcs12",
        store_type="PKCS12",
        password_needed=True,
        private_key=True,
    )
    page = _text(admin_web.get(f"/orchestrators/{approved_orchestrator.pk}/discovery/"))
    assert page.count('data-testid="candidate-row"') == 3
    assert "<script>a()" not in page and "&lt;script&gt;" in page
    assert page.count('data-testid="approve-form"') == 2  # the gone one cannot be approved
    assert "PKCS#12 (1 new)" in page


def test_approve_a_candidate_needing_a_password(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    candidate = _candidate(
        approved_orchestrator, "/srv/app.p12", kind="pkcs12", store_type="PKCS12",
        password_needed=True,
    )  # fmt: skip
    url = f"/discovery-candidates/{candidate.pk}/approve/"
    refused = admin_web.post(url, {"store_type": "", "password": ""})
    assert refused.status_code == 200
    assert 'data-testid="approve-error"' in _text(refused)
    assert "needs its store password" in _text(refused)
    done = admin_web.post(url, {"store_type": "", "password": SECRET})
    assert done.status_code == 302
    candidate.refresh_from_db()
    assert candidate.state == "approved" and candidate.store is not None
    page = _text(admin_web.get(f"/orchestrators/{approved_orchestrator.pk}/discovery/"))
    assert SECRET not in page
    assert SECRET not in _text(admin_web.get(f"/stores/{candidate.store_id}/"))


def test_approve_refuses_an_unknown_store_type(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    candidate = _candidate(approved_orchestrator, "/etc/ssl/x.bin", kind="unknown", store_type="")
    url = f"/discovery-candidates/{candidate.pk}/approve/"
    response = admin_web.post(url, {"store_type": "NOPE"})
    assert response.status_code == 200 and "valid choice" in _text(response)
    response = admin_web.post(url, {"store_type": ""})
    assert response.status_code == 200 and "choose its store type" in _text(response)
    assert not CertificateStore.objects.filter(store_path="/etc/ssl/x.bin").exists()


def test_approve_all_of_a_kind(admin_web: Client, approved_orchestrator: Orchestrator) -> None:
    _candidate(approved_orchestrator, "/etc/ssl/a.pem")
    _candidate(approved_orchestrator, "/etc/ssl/b.pem")
    url = f"/orchestrators/{approved_orchestrator.pk}/discovery/approve-kind/"
    response = admin_web.post(url, {"kind": "pem", "password": ""})
    assert response.status_code == 200
    assert "2 candidates approved" in _text(response)
    assert DiscoveryCandidate.objects.filter(state="approved").count() == 2
    assert admin_web.post(url, {"kind": "bogus"}).status_code == 200


def test_discovery_needs_the_permission_to_add_stores(
    plain_user: User, approved_orchestrator: Orchestrator
) -> None:
    plain_user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = Client()
    client.force_login(plain_user)
    candidate = _candidate(approved_orchestrator, "/etc/ssl/a.pem")
    assert client.post(f"/discovery-candidates/{candidate.pk}/approve/", {}).status_code == 403
    url = f"/orchestrators/{approved_orchestrator.pk}/discover/"
    assert client.post(url, {"directories": "/etc", "max_depth": "1"}).status_code == 403
    page = _text(client.get(f"/orchestrators/{approved_orchestrator.pk}/discovery/"))
    assert 'data-testid="approve-form"' not in page


def test_an_old_candidate_list_pages(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    now = timezone.now() - dt.timedelta(days=1)
    DiscoveryCandidate.objects.bulk_create(
        DiscoveryCandidate(
            orchestrator=approved_orchestrator,
            path=f"/etc/ssl/{i:03}.pem",
            kind="pem",
            first_seen=now,
            last_seen=now,
        )
        for i in range(101)
    )
    url = f"/orchestrators/{approved_orchestrator.pk}/discovery/"
    first = _text(admin_web.get(url))
    assert first.count('data-testid="candidate-row"') == 100 and 'rel="next"' in first
    assert _text(admin_web.get(url + "?page=2")).count('data-testid="candidate-row"') == 1


# --- Keys and whose stores -----------------------------------------------------------


def test_a_platform_held_key_is_offered_and_never_shown(
    admin_web: Client, admin_user_: User, store: CertificateStore
) -> None:
    from certyard.enrollment import services as enrollment_services
    from certyard.inventory.models import Certificate

    ca = pki_services.ca_create(name="Keys", key_algorithm=KeyAlgorithm.EC_P256, path_length=0)
    Template.objects.create(name="keys", ca=ca, allowed_domains=["example.test"], archive_keys=True)
    request = enrollment_services.enrollment_submit_pfx(
        template_name="keys", common_name="app.example.test", password=SECRET, actor=admin_user_
    ).request
    certificate = Certificate.objects.get(pk=request.certificate_id)
    page = _text(admin_web.get(f"/certificates/{certificate.pk}/"))
    assert "holds this certificate's private key" in page
    assert 'name="deploy-include_private_key"' in page
    response = admin_web.post(
        f"/certificates/{certificate.pk}/add-to-stores/",
        {"deploy-stores": [str(store.pk)], "deploy-include_private_key": "on"},
    )
    assert response.status_code == 302, _text(response)[-2000:]
    deployment = Deployment.objects.get()
    assert "PRIVATE KEY" not in str(deployment.job.payload)
    for url in (response["Location"], f"/certificates/{certificate.pk}/", f"/stores/{store.pk}/"):
        shown = _text(admin_web.get(url))
        assert "PRIVATE KEY" not in shown and SECRET not in shown


def test_without_a_platform_key_no_key_is_offered(admin_web: Client, inventory: Inventory) -> None:
    certificate = inventory.certificate("soon.example.test")
    page = _text(admin_web.get(f"/certificates/{certificate.pk}/"))
    assert "does not hold this certificate" in page
    assert 'name="deploy-include_private_key"' not in page


def test_only_the_stores_a_person_may_act_on_are_offered(
    plain_user: User, inventory: Inventory
) -> None:
    plain_user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=["inventory", "deployment", "jobs", "enrollment"]
        ).exclude(codename__startswith="manage_any_")
    )
    client = Client()
    client.force_login(plain_user)
    certificate = inventory.certificate("soon.example.test")
    page = _text(client.get(f"/certificates/{certificate.pk}/"))
    assert 'data-testid="no-target-stores"' in page  # the store is not theirs
    CertificateStore.objects.filter(pk=inventory.store.pk).update(created_by=plain_user)
    page = _text(client.get(f"/certificates/{certificate.pk}/"))
    assert f'value="{inventory.store.pk}"' in page


def test_entry_parameters_come_from_the_store_type_declaration(
    admin_web: Client, inventory: Inventory, approved_orchestrator: Orchestrator
) -> None:
    jks = store_create(
        store_type=CertificateStoreType.objects.get(short_name="JKS"),
        store_path="/srv/app.jks",
        orchestrator=approved_orchestrator,
        password=SECRET,
    )
    certificate = inventory.certificate("soon.example.test")
    page = _text(admin_web.get(f"/certificates/{certificate.pk}/"))
    assert 'type="password" name="deploy-entry__entry_password"' in page
    url = f"/certificates/{certificate.pk}/add-to-stores/"
    entry_secret = "entry-pw-never-shown-42"
    # A parameter the PEM store's type does not take: refused by name, as a form error.
    refused = admin_web.post(
        url,
        {
            "deploy-stores": [str(inventory.store.pk)],
            "deploy-entry__entry_password": entry_secret,
        },
    )
    assert refused.status_code == 200
    assert "takes no entry parameter entry_password" in _text(refused)
    assert entry_secret not in _text(refused)
    done = admin_web.post(
        url,
        {
            "deploy-stores": [str(jks.pk)],
            "deploy-alias": "app",
            "deploy-entry__entry_password": entry_secret,
        },
    )
    assert done.status_code == 302, _text(done)[-2000:]
    deployment = Deployment.objects.get()
    assert entry_secret not in str(deployment.job.payload)
    assert entry_secret not in _text(admin_web.get(done["Location"]))
