"""The console's metadata: the certificate's panel and its edit form, the list's metadata
filter, and the Metadata page with its backfill progress."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from certyard.inventory.metadata import metadata_field_create, metadata_values_set
from certyard.inventory.metadata.generators import metadata_backfill_run
from certyard.inventory.models import CertificateMetadata, MetadataBackfill, MetadataField
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.services import registration_save
from tests.console.conftest import Inventory

pytestmark = pytest.mark.django_db

Field = MetadataField.Type


@pytest.fixture
def fields() -> None:
    metadata_field_create(name="owner", label="Owner", type=Field.STRING)
    metadata_field_create(name="review", label="Review date", type=Field.DATE)
    metadata_field_create(name="tier", type=Field.CHOICE, choices=["gold", "silver"])


def _listed(page: str) -> list[str]:
    return re.findall(r'data-testid="certificate-row" data-cn="([^"]*)"', page)


def test_the_certificate_page_shows_each_field_its_value_and_who_set_it(
    admin_web: Client, inventory: Inventory, fields: None
) -> None:
    certificate = inventory.certificate("month.example.test")
    metadata_values_set(certificates=[certificate], values={"owner": "alice"}, source="fields")
    metadata_values_set(certificates=[certificate], values={"tier": "gold"}, source="user:root")
    page = admin_web.get(reverse("console:certificate-detail", args=[certificate.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    owner = re.search(r'data-field="owner">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "alice" in owner and "generator</span> fields" in owner and "<time" in owner
    tier = re.search(r'data-field="tier">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "gold" in tier and "person</span> root" in tier
    review = re.search(r'data-field="review">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "—" in review
    assert 'data-testid="metadata-edit"' in html


def test_a_bad_value_is_shown_beside_its_field_and_nothing_is_saved(
    admin_web: Client, inventory: Inventory, fields: None
) -> None:
    certificate = inventory.certificate("month.example.test")
    url = reverse("console:certificate-metadata-edit", args=[certificate.pk])
    answer = admin_web.post(
        url, {"metadata-owner": "bob", "metadata-review": "next tuesday", "metadata-tier": ""}
    )
    assert answer.status_code == 200
    html = answer.content.decode()
    error = re.search(
        r'name="metadata-review".*?<p class="field-error" role="alert">(.*?)</p>', html, re.DOTALL
    )
    assert error and "must be a date as YYYY-MM-DD" in error.group(1)
    assert 'value="bob"' in html  # what was typed stays in the form
    assert not CertificateMetadata.objects.exists()


def test_saving_changes_only_what_was_changed_and_records_the_person(
    admin_web: Client, inventory: Inventory, fields: None
) -> None:
    certificate = inventory.certificate("month.example.test")
    metadata_values_set(certificates=[certificate], values={"tier": "silver"}, source="fields")
    url = reverse("console:certificate-metadata-edit", args=[certificate.pk])
    form = admin_web.get(url).content.decode()
    assert '<option value="silver" selected>' in form
    answer = admin_web.post(
        url, {"metadata-owner": "bob", "metadata-review": "2027-01-31", "metadata-tier": "silver"}
    )
    assert answer.status_code == 302
    values = {
        value.field.name: (value.value, value.source)
        for value in CertificateMetadata.objects.select_related("field")
    }
    assert values == {
        "owner": ("bob", "user:root"),
        "review": ("2027-01-31", "user:root"),
        "tier": ("silver", "fields"),  # untouched: still the generator's
    }
    # Under htmx the panel comes back in place; an emptied field clears its value.
    panel = admin_web.post(
        url,
        {"metadata-owner": "", "metadata-review": "2027-01-31", "metadata-tier": "silver"},
        headers={"HX-Request": "true"},
    )
    assert panel.status_code == 200
    assert 'id="metadata-panel"' in panel.content.decode() and "<html" not in panel.content.decode()
    assert not CertificateMetadata.objects.filter(field__name="owner").exists()


def test_editing_metadata_needs_its_change_permission(
    viewer_web: Client, inventory: Inventory, fields: None
) -> None:
    certificate = inventory.certificate("month.example.test")
    page = viewer_web.get(reverse("console:certificate-detail", args=[certificate.pk]))
    assert 'data-testid="metadata-panel"' in page.content.decode()
    assert 'data-testid="metadata-edit"' not in page.content.decode()
    url = reverse("console:certificate-metadata-edit", args=[certificate.pk])
    assert viewer_web.post(url, {"metadata-owner": "me"}).status_code == 403


def test_the_list_filters_by_a_metadata_value_or_its_absence(
    admin_web: Client, inventory: Inventory, fields: None
) -> None:
    month = inventory.certificate("month.example.test")
    soon = inventory.certificate("soon.example.test")
    metadata_values_set(certificates=[month], values={"owner": "alice"}, source="g")
    metadata_values_set(certificates=[soon], values={"owner": "bob"}, source="g")
    url = reverse("console:certificate-list")

    def listed(**params: str) -> list[str]:
        answer = admin_web.get(url, params)
        assert answer.status_code == 200
        return _listed(answer.content.decode())

    assert 'data-testid="metadata-filter"' in admin_web.get(url).content.decode()
    assert listed(metadata_field="owner", metadata_value="alice") == ["month.example.test"]
    assert listed(metadata_field="owner") == ["soon.example.test", "month.example.test"]
    empty = listed(metadata_field="owner", metadata_empty="on")
    assert "month.example.test" not in empty and "quarter.example.test" in empty
    assert listed(metadata_field="owner", metadata_value="alice", q="soon") == []
    refused = admin_web.get(url, {"metadata_field": "review", "metadata_value": "soon"})
    assert "Value: must be a date as YYYY-MM-DD" in refused.content.decode()
    unknown = admin_web.get(url, {"metadata_field": "nope", "metadata_value": "x"})
    assert "There is no such metadata field" in unknown.content.decode()


def test_the_metadata_page_starts_a_backfill_and_shows_its_progress(
    admin_web: Client, viewer_web: Client, inventory: Inventory, fields: None
) -> None:
    registration_save(
        registration=HandlerRegistration(name="crypto", handler="certyard.crypto_strength"),
        values={},
    )
    page = admin_web.get(reverse("console:metadata")).content.decode()
    assert 'data-testid="backfill-none"' in page
    assert re.search(r'data-name="owner"', page) and "certyard.crypto_strength" in page
    assert viewer_web.post(reverse("console:metadata-backfill-start")).status_code == 403

    started = admin_web.post(reverse("console:metadata-backfill-start"), follow=True)
    html = started.content.decode()
    assert "Backfill" in html and "started over 6 certificates" in html
    backfill = MetadataBackfill.objects.get()
    card = re.search(r'<section class="card" id="backfill".*?>', html, re.DOTALL).group(0)
    assert 'data-state="queued"' in card and 'hx-trigger="every 2s"' in card
    # Starting again while it runs says why not.
    again = admin_web.post(reverse("console:metadata-backfill-start"), follow=True)
    assert "wait for it, or cancel it" in again.content.decode()

    metadata_backfill_run(backfill.pk)
    progress = admin_web.get(reverse("console:metadata-backfill-progress", args=[backfill.pk]))
    card = progress.content.decode()
    assert 'data-state="succeeded"' in card and "hx-trigger" not in card  # polling stops
    assert 'data-processed="6" data-total="6"' in card
    assert "<strong>6</strong> of <strong>6</strong> certificates (100%)" in card


def test_metadata_pages_need_a_login(client: Client) -> None:
    url = reverse("console:metadata")
    answer = client.get(url)
    assert answer.status_code == 302 and answer["Location"].startswith(reverse("login"))
    assert client.post(reverse("console:metadata-backfill-start")).status_code == 302
    assert not MetadataBackfill.objects.exists()


def test_metadata_pages_need_their_view_permission(plain_web: Client) -> None:
    assert plain_web.get(reverse("console:metadata")).status_code == 403
    assert plain_web.get(reverse("console:metadata-backfill-progress", args=[1])).status_code == 403
