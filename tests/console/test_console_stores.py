"""Stores: the list and its status, the add and edit forms, delete, schedules and
"Inventory now"."""

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from certyard.console import views
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import Certificate, CertificateStore
from certyard.inventory.services import (
    store_create,
    store_inventory_status_record,
    store_update,
)
from certyard.jobs.models import Job


def _form(orchestrator: Orchestrator, **changes: str) -> dict[str, str]:
    data = {
        "store_type": "PEM",
        "orchestrator": str(orchestrator.pk),
        "client_machine": "",
        "store_path": "/srv/tls",
        "PEM__recursive": "on",  # one field per property the store type declares
        "password": "s3cret-store-password",
        "inventory_interval_minutes": "",
    }
    data.update(changes)
    return data


@pytest.mark.django_db
def test_store_list_shows_each_store(admin_web: Client, inventory) -> None:
    page = admin_web.get(reverse("console:store-list")).content.decode()

    row = re.search(r'<tr id="store-[^"]+" data-testid="store-row".*?</tr>', page, re.S).group(0)
    assert 'data-machine="approved-agent.example.test"' in row
    assert "/etc/ssl/certs" in row
    assert "approved-agent" in row
    assert ">6</a>" in row  # locations: five leaves and the CA
    assert ">Inventory now</button>" in row
    assert 'data-testid="add-store-link"' in page


@pytest.mark.django_db
def test_add_store(admin_web: Client, approved_orchestrator: Orchestrator) -> None:
    response = admin_web.post(
        reverse("console:store-create"),
        _form(approved_orchestrator, inventory_interval_minutes="60"),
        follow=True,
    )

    assert response.redirect_chain == [(reverse("console:store-list"), 302)]
    store = CertificateStore.objects.get()
    assert store.properties["recursive"] is True
    assert store.properties["file_patterns"].startswith("*.pem,")  # the declared default
    assert store.password == "s3cret-store-password"
    assert store.inventory_interval_minutes == 60
    assert store.orchestrator == approved_orchestrator
    page = response.content.decode()
    assert store.client_machine == "approved-agent.example.test"  # the orchestrator's own
    assert "approved-agent.example.test:/srv/tls added" in page
    assert "s3cret-store-password" not in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"PEM__key_file": "elsewhere"}, "Select a valid choice"),
        ({"endpoint_host": "bad host!", "endpoint_port": "443"}, "A DNS name or an IP address"),
        ({"endpoint_host": "web.example.test"}, "Give the endpoint&#x27;s port with its host"),
        ({"endpoint_host": "web.example.test", "endpoint_port": "70000"}, "less than or equal"),
    ],
)
def test_add_store_with_bad_properties_or_endpoint_shows_a_form_error(
    admin_web: Client, approved_orchestrator: Orchestrator, changes: dict, error: str
) -> None:
    response = admin_web.post(
        reverse("console:store-create"), _form(approved_orchestrator, **changes)
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert error in page
    assert 'class="field-error"' in page or 'class="form-errors"' in page
    assert "s3cret-store-password" not in page  # the password is never rendered back
    assert not CertificateStore.objects.exists()


@pytest.mark.django_db
def test_the_add_form_has_a_field_per_declared_property(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    page = admin_web.get(reverse("console:store-create")).content.decode()

    assert 'type="checkbox" name="PEM__recursive"' in page
    assert '<select name="PKCS12__profile"' in page
    assert 'name="endpoint_port"' in page and 'name="endpoint_host"' in page


@pytest.mark.django_db
def test_add_store_with_an_endpoint_and_another_types_properties_ignored(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    response = admin_web.post(
        reverse("console:store-create"),
        _form(
            approved_orchestrator,
            endpoint_host="Web.Example.Test",
            endpoint_port="8443",
            PKCS12__profile="rc2",
            PEM__key_file="separate",
        ),
    )

    assert response.status_code == 302, response.content.decode()
    store = CertificateStore.objects.get()
    assert (store.endpoint_host, store.endpoint_port, store.endpoint_sni) == (
        "web.example.test",
        8443,
        "",
    )
    assert store.properties["key_file"] == "separate" and "profile" not in store.properties


@pytest.mark.django_db
def test_add_store_turns_a_service_refusal_into_a_form_error(
    admin_web: Client, register: Callable[..., Orchestrator]
) -> None:
    incapable = register("no-pem-agent", approve=True, capabilities=())

    response = admin_web.post(reverse("console:store-create"), _form(incapable))

    assert response.status_code == 200
    assert "does not offer PEM.Inventory" in response.content.decode()
    assert not CertificateStore.objects.exists()


@pytest.mark.django_db
def test_add_store_refuses_a_duplicate(admin_web: Client, store: CertificateStore) -> None:
    response = admin_web.post(
        reverse("console:store-create"),
        _form(store.orchestrator, client_machine=store.client_machine, store_path=store.store_path),
    )

    assert "already exists" in response.content.decode()
    assert CertificateStore.objects.count() == 1


@pytest.mark.django_db
def test_add_store_offers_only_approved_orchestrators(
    admin_web: Client, waiting_orchestrator: Orchestrator, approved_orchestrator: Orchestrator
) -> None:
    page = admin_web.get(reverse("console:store-create")).content.decode()
    assert f'value="{approved_orchestrator.pk}"' in page
    assert f'value="{waiting_orchestrator.pk}"' not in page

    response = admin_web.post(reverse("console:store-create"), _form(waiting_orchestrator))
    assert "Select a valid choice" in response.content.decode()
    assert not CertificateStore.objects.exists()


@pytest.mark.django_db
def test_add_store_needs_permission(plain_web: Client, approved_orchestrator: Orchestrator) -> None:
    response = plain_web.post(reverse("console:store-create"), _form(approved_orchestrator))
    assert response.status_code == 403
    assert not CertificateStore.objects.exists()


@pytest.mark.django_db
def test_inventory_now_queues_one_job(
    admin_web: Client, admin_user_: User, store: CertificateStore
) -> None:
    url = reverse("console:store-inventory-now", args=[store.pk])

    first = admin_web.post(url, HTTP_HX_REQUEST="true")

    assert first.status_code == 200
    row = first.content.decode()
    assert row.strip().startswith("<tr") and "Inventory job queued." in row
    job = Job.objects.get()
    assert job.store == store
    assert job.source == Job.Source.ADMIN
    assert job.requested_by == admin_user_
    assert job.state == Job.State.PENDING

    second = admin_web.post(url, HTTP_HX_REQUEST="true")
    assert "An inventory job is already open (pending)." in second.content.decode()
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_inventory_now_without_htmx_redirects_with_a_message(
    admin_web: Client, store: CertificateStore
) -> None:
    response = admin_web.post(reverse("console:store-inventory-now", args=[store.pk]), follow=True)
    assert response.redirect_chain == [(reverse("console:store-list"), 302)]
    assert "Inventory job queued." in response.content.decode()


@pytest.mark.django_db
def test_inventory_now_needs_permission(plain_web: Client, store: CertificateStore) -> None:
    response = plain_web.post(reverse("console:store-inventory-now", args=[store.pk]))
    assert response.status_code == 403
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_schedule_inventory(admin_web: Client, store: CertificateStore) -> None:
    url = reverse("console:store-schedule", args=[store.pk])

    row = admin_web.post(url, {"interval_minutes": "15"}, HTTP_HX_REQUEST="true")
    assert "every 15 min" in row.content.decode()
    store.refresh_from_db()
    assert store.inventory_interval_minutes == 15
    assert store.inventory_next_run is not None

    row = admin_web.post(url, {"interval_minutes": "0"}, HTTP_HX_REQUEST="true")
    assert "row-error" in row.content.decode()
    store.refresh_from_db()
    assert store.inventory_interval_minutes == 15

    row = admin_web.post(url, {"interval_minutes": ""}, HTTP_HX_REQUEST="true")
    assert "Inventory schedule stopped." in row.content.decode()
    store.refresh_from_db()
    assert store.inventory_interval_minutes is None
    assert store.inventory_next_run is None


def _row(page: str, store: CertificateStore) -> str:
    match = re.search(rf'<tr id="store-{store.pk}".*?</tr>', page, re.S)
    assert match, "no row for the store"
    return match.group(0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "label", "message_shown"),
    [
        ("never", "Never run", False),
        ("ok", "OK", False),
        ("warning", "Warning", True),
        ("failing", "Failing", True),
    ],
)
def test_each_row_shows_the_inventory_status(
    admin_web: Client, store: CertificateStore, status: str, label: str, message_shown: bool
) -> None:
    if status != "never":
        store_inventory_status_record(
            store_id=store.pk, status=status, message="store path /etc/ssl/certs does not exist"
        )

    row = _row(admin_web.get(reverse("console:store-list")).content.decode(), store)

    assert f'data-status="{status}"' in row
    assert f">{label}</span>" in row
    assert ("store path /etc/ssl/certs does not exist" in row) is message_shown


@pytest.mark.django_db
def test_add_store_on_a_machine_the_orchestrator_does_not_serve_is_a_field_error(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    response = admin_web.post(
        reverse("console:store-create"),
        _form(approved_orchestrator, client_machine="db01.example.test"),
    )

    assert response.status_code == 200
    page = response.content.decode()
    field = re.search(
        r'<div class="field has-error">\s*<label for="id_client_machine">.*?</div>', page, re.S
    )
    assert field, "the error sits on the client machine field"
    assert "cannot reach a store on db01.example.test" in field.group(0)
    assert not CertificateStore.objects.exists()


@pytest.mark.django_db
def test_rows_link_to_the_orchestrator_and_offer_edit_and_delete(
    admin_web: Client, store: CertificateStore
) -> None:
    row = _row(admin_web.get(reverse("console:store-list")).content.decode(), store)

    assert f'href="{reverse("console:orchestrator-detail", args=[store.orchestrator.pk])}"' in row
    assert f'href="{reverse("console:store-edit", args=[store.pk])}"' in row
    assert f'href="{reverse("console:store-delete", args=[store.pk])}"' in row


@pytest.mark.django_db
def test_a_viewer_sees_no_store_actions(viewer_web: Client, store: CertificateStore) -> None:
    row = _row(viewer_web.get(reverse("console:store-list")).content.decode(), store)
    assert "data-action" not in row


# --- Edit -------------------------------------------------------------------------------


def _edit(**changes: str) -> dict[str, str]:
    data = {
        "store_path": "/etc/ssl/certs",
        "PEM__recursive": "on",
        "PEM__file_patterns": "*.pem",
        "password": "",
        "inventory_interval_minutes": "",
    }
    data.update(changes)
    return data


@pytest.fixture
def secret_store(store: CertificateStore) -> CertificateStore:
    return store_update(store=store, password="old-store-secret", inventory_interval_minutes=15)


@pytest.mark.django_db
def test_edit_page_shows_the_store_but_never_its_password(
    admin_web: Client, secret_store: CertificateStore
) -> None:
    response = admin_web.get(reverse("console:store-edit", args=[secret_store.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "old-store-secret" not in page
    assert 'value="/etc/ssl/certs"' in page
    assert 'name="PEM__file_patterns"' in page  # a field per declared property
    assert 'name="inventory_interval_minutes" value="15"' in page
    assert 'name="clear_password"' in page
    assert "A password is stored." in page


@pytest.mark.django_db
def test_edit_changes_path_properties_and_keeps_an_untouched_password_and_schedule(
    admin_web: Client, secret_store: CertificateStore
) -> None:
    next_run = secret_store.inventory_next_run

    response = admin_web.post(
        reverse("console:store-edit", args=[secret_store.pk]),
        _edit(
            store_path="/srv/moved",
            PEM__recursive="",
            inventory_interval_minutes="15",
        ),
        follow=True,
    )

    assert response.redirect_chain == [(reverse("console:store-list"), 302)]
    assert "saved." in response.content.decode()
    secret_store.refresh_from_db()
    assert secret_store.store_path == "/srv/moved"
    assert secret_store.properties["recursive"] is False
    assert secret_store.password == "old-store-secret"
    assert secret_store.inventory_interval_minutes == 15
    assert secret_store.inventory_next_run == next_run  # unchanged: not rescheduled


@pytest.mark.django_db
def test_edit_replaces_or_clears_the_password_and_stops_the_schedule(
    admin_web: Client, secret_store: CertificateStore
) -> None:
    url = reverse("console:store-edit", args=[secret_store.pk])

    admin_web.post(url, _edit(password="new-secret", inventory_interval_minutes="15"))
    secret_store.refresh_from_db()
    assert secret_store.password == "new-secret"

    admin_web.post(url, _edit(clear_password="on"))
    secret_store.refresh_from_db()
    assert secret_store.password == ""
    assert secret_store.inventory_interval_minutes is None
    assert secret_store.inventory_next_run is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"PEM__key_format": "nonsense"}, "Select a valid choice"),
        ({"endpoint_port": "22"}, "Give the endpoint&#x27;s host with its port"),
        ({"store_path": ""}, "This field is required."),
        ({"inventory_interval_minutes": "0"}, "greater than or equal to 1"),
        ({"password": "both", "clear_password": "on"}, "Either type a new password or clear it"),
    ],
)
def test_edit_with_bad_input_shows_a_form_error_and_changes_nothing(
    admin_web: Client, secret_store: CertificateStore, changes: dict[str, str], error: str
) -> None:
    response = admin_web.post(
        reverse("console:store-edit", args=[secret_store.pk]), _edit(**changes)
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert error in page
    assert "old-store-secret" not in page and 'value="both"' not in page
    secret_store.refresh_from_db()
    assert secret_store.password == "old-store-secret"
    assert "nonsense" not in secret_store.properties


@pytest.mark.django_db
def test_edit_onto_another_stores_path_is_refused(
    admin_web: Client, store: CertificateStore
) -> None:
    other = store_create(
        store_type=store.store_type, store_path="/srv/other", orchestrator=store.orchestrator
    )

    response = admin_web.post(
        reverse("console:store-edit", args=[other.pk]), _edit(store_path=store.store_path)
    )

    assert "already exists" in response.content.decode()
    other.refresh_from_db()
    assert other.store_path == "/srv/other"


@pytest.mark.django_db
def test_edit_needs_change_permission(viewer_web: Client, store: CertificateStore) -> None:
    url = reverse("console:store-edit", args=[store.pk])
    assert viewer_web.get(url).status_code == 403
    assert viewer_web.post(url, _edit(store_path="/stolen")).status_code == 403
    store.refresh_from_db()
    assert store.store_path == "/etc/ssl/certs"


# --- Delete -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_asks_first_then_deletes_on_post(admin_web: Client, inventory) -> None:
    store = inventory.store
    url = reverse("console:store-delete", args=[store.pk])

    confirm = admin_web.get(url)
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Delete store?" in page and "Its 6 locations" in page
    assert re.search(rf'<form method="post" action="{url}"', page)
    assert CertificateStore.objects.filter(pk=store.pk).exists()

    response = admin_web.post(url, follow=True)

    assert response.redirect_chain == [(reverse("console:store-list"), 302)]
    assert "deleted" in response.content.decode()
    assert not CertificateStore.objects.filter(pk=store.pk).exists()
    assert Certificate.objects.count() == 6  # the certificates stay
    assert admin_web.post(url).status_code == 404


@pytest.mark.django_db
def test_delete_needs_delete_permission(viewer_web: Client, store: CertificateStore) -> None:
    url = reverse("console:store-delete", args=[store.pk])
    assert viewer_web.get(url).status_code == 403
    assert viewer_web.post(url).status_code == 403
    assert CertificateStore.objects.filter(pk=store.pk).exists()


# --- Filter and pages -------------------------------------------------------------------


def _paths(page: str) -> list[str]:
    return re.findall(r'data-testid="store-row" data-machine="[^"]*" data-path="([^"]*)"', page)


@pytest.fixture
def two_stores(store: CertificateStore) -> tuple[CertificateStore, CertificateStore]:
    failing = store_create(
        store_type=store.store_type, store_path="/srv/failing", orchestrator=store.orchestrator
    )
    store_inventory_status_record(store_id=failing.pk, status="failing", message="boom")
    return store, failing


@pytest.mark.django_db
def test_status_filter(admin_web: Client, two_stores) -> None:
    url = reverse("console:store-list")
    assert _paths(admin_web.get(url, {"status": "failing"}).content.decode()) == ["/srv/failing"]
    assert _paths(admin_web.get(url, {"status": "never"}).content.decode()) == ["/etc/ssl/certs"]
    none = admin_web.get(url, {"status": "ok"}).content.decode()
    assert _paths(none) == [] and 'data-testid="no-match"' in none

    bad = admin_web.get(url, {"status": "on-fire"}).content.decode()
    assert 'data-testid="filter-errors"' in bad and _paths(bad) == []


@pytest.mark.django_db
def test_store_list_pages(admin_web: Client, two_stores, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "STORES_PER_PAGE", 1)
    url = reverse("console:store-list")

    first = admin_web.get(url).content.decode()
    second = admin_web.get(url, {"page": "2"}).content.decode()

    assert _paths(first) == ["/etc/ssl/certs"] and 'rel="next"' in first
    assert _paths(second) == ["/srv/failing"] and 'rel="prev"' in second
    assert 'rel="next"' not in second


@pytest.mark.django_db
def test_add_a_tls_scan_store_and_see_a_bad_port_as_a_form_error(
    admin_web: Client, register: Callable[..., Orchestrator]
) -> None:
    scanner = register("scanner", approve=True, capabilities=("TLS.Inventory",))
    form = {
        "store_type": "TLS",
        "orchestrator": str(scanner.pk),
        "client_machine": "",
        "store_path": "www.example.com, 192.0.2.0/29",
        "TLS__ports": "443, https",
        "TLS__concurrency": "16",
        "inventory_interval_minutes": "",
    }

    refused = admin_web.post(reverse("console:store-create"), form)

    assert refused.status_code == 200
    assert "&#x27;https&#x27; is not a port or a port range" in refused.content.decode()
    assert not CertificateStore.objects.exists()

    form["TLS__ports"] = "443, 8443"
    made = admin_web.post(reverse("console:store-create"), form, follow=True)
    assert made.redirect_chain == [(reverse("console:store-list"), 302)]
    store = CertificateStore.objects.get()
    assert store.store_path == "www.example.com, 192.0.2.0/29"
    assert store.properties["ports"] == "443, 8443" and store.properties["concurrency"] == 16
