"""Stores: the list, the add form, schedules and "Inventory now"."""

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStore
from certyard.jobs.models import Job


def _form(orchestrator: Orchestrator, **changes: str) -> dict[str, str]:
    data = {
        "store_type": "PEM",
        "orchestrator": str(orchestrator.pk),
        "client_machine": "db01.example.test",
        "store_path": "/srv/tls",
        "properties": '{"recursive": true}',
        "password": "s3cret-store-password",
        "inventory_interval_minutes": "",
    }
    data.update(changes)
    return data


@pytest.mark.django_db
def test_store_list_shows_each_store(admin_web: Client, inventory) -> None:
    page = admin_web.get(reverse("console:store-list")).content.decode()

    row = re.search(r'<tr id="store-[^"]+" data-testid="store-row".*?</tr>', page, re.S).group(0)
    assert 'data-machine="web01.example.test"' in row
    assert "/etc/ssl/certs" in row
    assert "approved-agent" in row
    assert ">6</a>" in row  # locations: five leaves and the CA
    assert ">Inventory now</button>" in row
    assert ">Add store</button>" in page


@pytest.mark.django_db
def test_add_store(admin_web: Client, approved_orchestrator: Orchestrator) -> None:
    response = admin_web.post(
        reverse("console:store-create"),
        _form(approved_orchestrator, inventory_interval_minutes="60"),
        follow=True,
    )

    assert response.redirect_chain == [(reverse("console:store-list"), 302)]
    store = CertificateStore.objects.get()
    assert store.properties == {"recursive": True}
    assert store.password == "s3cret-store-password"
    assert store.inventory_interval_minutes == 60
    assert store.orchestrator == approved_orchestrator
    page = response.content.decode()
    assert "db01.example.test:/srv/tls added" in page
    assert "s3cret-store-password" not in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("properties", "error"),
    [
        ("{not json", "Properties must be valid JSON"),
        ('["a", "list"]', "Properties must be a JSON object"),
        ("42", "Properties must be a JSON object"),
    ],
)
def test_add_store_with_bad_properties_shows_a_form_error(
    admin_web: Client, approved_orchestrator: Orchestrator, properties: str, error: str
) -> None:
    response = admin_web.post(
        reverse("console:store-create"), _form(approved_orchestrator, properties=properties)
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert error in page
    assert 'class="field-error"' in page
    assert "s3cret-store-password" not in page  # the password is never rendered back
    assert not CertificateStore.objects.exists()


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
    page = admin_web.get(reverse("console:store-list")).content.decode()
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
