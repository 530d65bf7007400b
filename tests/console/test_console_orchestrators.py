"""Orchestrators: the list and each one's page; approve, disapprove and reset; tokens."""

import hashlib
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.fleet.services import orchestrator_reset
from certyard.inventory.selectors import orchestrator_expiry_counts
from certyard.inventory.services import store_inventory_status_record
from certyard.jobs.models import Job
from certyard.jobs.services import job_inventory_request


def _htmx_post(client: Client, url: str, data: dict | None = None):
    return client.post(url, data or {}, HTTP_HX_REQUEST="true")


@pytest.mark.django_db
def test_list_shows_each_orchestrator(
    admin_web: Client, waiting_orchestrator: Orchestrator, approved_orchestrator: Orchestrator
) -> None:
    page = admin_web.get(reverse("console:orchestrator-list")).content.decode()

    assert re.findall(r'data-testid="orchestrator-row" data-name="([^"]+)"', page) == [
        "approved-agent",
        "waiting-agent",
    ]
    assert "waiting-agent.example.test" in page
    assert "PEM.Inventory" in page
    assert "0.1.0" in page


@pytest.mark.django_db
def test_approve_via_htmx_returns_the_row_and_approves(
    admin_web: Client, admin_user_: User, waiting_orchestrator: Orchestrator
) -> None:
    url = reverse("console:orchestrator-approve", args=[waiting_orchestrator.pk])

    response = _htmx_post(admin_web, url)

    assert response.status_code == 200
    row = response.content.decode().strip()
    assert row.startswith("<tr") and row.endswith("</tr>")
    assert "<html" not in row
    assert 'data-name="waiting-agent"' in row
    assert 'data-status="approved"' in row
    assert ">Approved</span>" in row
    assert ">Approve</button>" not in row  # nothing left to approve
    waiting_orchestrator.refresh_from_db()
    assert waiting_orchestrator.status == Orchestrator.Status.APPROVED
    assert waiting_orchestrator.status_changed_by == admin_user_


@pytest.mark.django_db
def test_approve_without_htmx_redirects_with_a_message(
    admin_web: Client, waiting_orchestrator: Orchestrator
) -> None:
    url = reverse("console:orchestrator-approve", args=[waiting_orchestrator.pk])

    response = admin_web.post(url, follow=True)

    assert response.redirect_chain == [(reverse("console:orchestrator-list"), 302)]
    assert "waiting-agent: approved." in response.content.decode()


@pytest.mark.django_db
def test_disapprove_and_reset(admin_web: Client, approved_orchestrator: Orchestrator) -> None:
    pk = approved_orchestrator.pk

    row = _htmx_post(admin_web, reverse("console:orchestrator-disapprove", args=[pk]))
    assert 'data-status="disapproved"' in row.content.decode()
    approved_orchestrator.refresh_from_db()
    assert approved_orchestrator.status == Orchestrator.Status.DISAPPROVED

    row = _htmx_post(admin_web, reverse("console:orchestrator-reset", args=[pk]))
    assert 'data-status="new"' in row.content.decode()
    approved_orchestrator.refresh_from_db()
    assert approved_orchestrator.status == Orchestrator.Status.NEW
    assert not approved_orchestrator.has_identity


@pytest.mark.django_db
def test_a_refusal_from_the_service_shows_in_the_row(
    admin_web: Client, admin_user_: User, waiting_orchestrator: Orchestrator
) -> None:
    orchestrator_reset(orchestrator=waiting_orchestrator, actor=admin_user_)
    url = reverse("console:orchestrator-approve", args=[waiting_orchestrator.pk])

    response = _htmx_post(admin_web, url)

    assert response.status_code == 200
    row = response.content.decode()
    assert 'class="row-note row-error"' in row
    assert "must register again before it can be approved" in row
    waiting_orchestrator.refresh_from_db()
    assert waiting_orchestrator.status == Orchestrator.Status.NEW

    # Without htmx the same refusal comes back as a message on the list.
    page = admin_web.post(url, follow=True).content.decode()
    assert "must register again before it can be approved" in page


@pytest.mark.django_db
def test_unknown_orchestrator_is_404(admin_web: Client) -> None:
    url = reverse("console:orchestrator-approve", args=["00000000-0000-0000-0000-000000000000"])
    assert _htmx_post(admin_web, url).status_code == 404


# --- Registration tokens -------------------------------------------------------------


@pytest.mark.django_db
def test_token_value_is_shown_once_then_only_its_prefix(
    admin_web: Client, admin_user_: User
) -> None:
    response = admin_web.post(
        reverse("console:registration-token-create"),
        {"description": "lab agents", "valid_hours": "48", "reusable": "on"},
    )

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    value = re.search(r'data-testid="token-value">(cyreg_[^<]+)</pre>', page).group(1)
    assert "will not be shown again" in page
    token = RegistrationToken.objects.get()
    assert token.token_hash == hashlib.sha256(value.encode()).hexdigest()
    assert token.description == "lab agents"
    assert token.reusable and not token.approve_on_register
    assert token.created_by == admin_user_

    listing = admin_web.get(reverse("console:registration-token-list")).content.decode()
    assert value not in listing
    assert f"<code>{token.token_prefix}…</code>" in listing
    assert 'data-testid="token-value"' not in listing


@pytest.mark.django_db
def test_token_form_errors(admin_web: Client) -> None:
    response = admin_web.post(
        reverse("console:registration-token-create"), {"description": "", "valid_hours": "0"}
    )
    assert response.status_code == 200
    assert 'class="field-error"' in response.content.decode()
    assert not RegistrationToken.objects.exists()


@pytest.mark.django_db
def test_token_create_needs_permission(plain_web: Client) -> None:
    response = plain_web.post(
        reverse("console:registration-token-create"),
        {"description": "sneaky", "valid_hours": "1"},
    )
    assert response.status_code == 403
    assert not RegistrationToken.objects.exists()


@pytest.mark.django_db
def test_token_revoke(admin_web: Client, waiting_orchestrator: Orchestrator) -> None:
    token = waiting_orchestrator.registration_token

    response = admin_web.post(
        reverse("console:registration-token-revoke", args=[token.pk]), follow=True
    )

    token.refresh_from_db()
    assert token.revoked
    assert f"Token {token.token_prefix}" in response.content.decode()
    assert ">Revoked</span>" in response.content.decode()


# --- The orchestrator's page ---------------------------------------------------------------


def _tile(page: str, testid: str) -> int:
    match = re.search(rf'data-testid="{testid}"><span class="tile-number">(\d+)</span>', page)
    assert match, testid
    return int(match.group(1))


@pytest.mark.django_db
def test_list_links_each_orchestrator_to_its_page(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    page = admin_web.get(reverse("console:orchestrator-list")).content.decode()
    url = reverse("console:orchestrator-detail", args=[approved_orchestrator.pk])
    assert f'<a href="{url}">approved-agent</a>' in page


@pytest.mark.django_db
def test_orchestrator_page_shows_it_its_stores_jobs_and_expiry(
    admin_web: Client, inventory, admin_user_: User
) -> None:
    orchestrator = inventory.store.orchestrator
    Orchestrator.objects.filter(pk=orchestrator.pk).update(client_parameters={"site": "lab-3"})
    store_inventory_status_record(
        store_id=inventory.store.pk, status="failing", message="permission denied"
    )
    job_inventory_request(store=inventory.store, source=Job.Source.ADMIN, requested_by=admin_user_)

    response = admin_web.get(reverse("console:orchestrator-detail", args=[orchestrator.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    fields = re.search(r'data-testid="orchestrator-fields">(.*?)</dl>\s*</section>', page, re.S)
    for text in ["approved-agent.example.test", "127.0.0.1", "0.1.0", "PEM.Inventory", "lab-3"]:
        assert text in fields.group(1), text
    assert 'data-status="approved"' in page and ">Approved</span>" in page
    assert 'data-action="disapprove"' in page and 'data-action="reset"' in page
    assert 'data-action="approve"' not in page

    stores = re.findall(r'data-testid="store-row".*?</tr>', page, re.S)
    assert len(stores) == 1
    assert "/etc/ssl/certs" in stores[0] and ">Failing</span>" in stores[0]
    assert "permission denied" in stores[0]
    assert page.count('data-testid="job-row"') == 1

    # Five leaves (one expired; 3, 20, 60 and 200 days left) and the CA.
    assert _tile(page, "count-total") == 6
    assert _tile(page, "count-expired") == 1
    assert _tile(page, "count-7") == 1
    assert _tile(page, "count-30") == 2
    assert _tile(page, "count-90") == 3


@pytest.mark.django_db
def test_orchestrator_expiry_counts_only_its_own_stores(inventory, register) -> None:
    other = register("other-agent", approve=True)
    assert orchestrator_expiry_counts(orchestrator_id=other.pk)["total"] == 0
    assert orchestrator_expiry_counts(orchestrator_id=inventory.store.orchestrator_id)["total"] == 6


@pytest.mark.django_db
def test_orchestrator_page_of_a_new_orchestrator(
    admin_web: Client, waiting_orchestrator: Orchestrator
) -> None:
    page = admin_web.get(
        reverse("console:orchestrator-detail", args=[waiting_orchestrator.pk])
    ).content.decode()

    assert 'data-action="approve"' in page
    assert "has no store yet." in page
    assert "No job for waiting-agent yet." in page
    assert _tile(page, "count-total") == 0


@pytest.mark.django_db
def test_approve_from_the_orchestrator_page_comes_back_to_it(
    admin_web: Client, waiting_orchestrator: Orchestrator
) -> None:
    detail = reverse("console:orchestrator-detail", args=[waiting_orchestrator.pk])

    response = admin_web.post(
        reverse("console:orchestrator-approve", args=[waiting_orchestrator.pk]),
        {"return_to": "detail"},
        follow=True,
    )

    assert response.redirect_chain == [(detail, 302)]
    assert "waiting-agent: approved." in response.content.decode()
    waiting_orchestrator.refresh_from_db()
    assert waiting_orchestrator.status == Orchestrator.Status.APPROVED

    reset = admin_web.post(
        reverse("console:orchestrator-reset", args=[waiting_orchestrator.pk]),
        {"return_to": "detail"},
        HTTP_HX_REQUEST="true",
    )
    assert reset["HX-Redirect"] == detail


@pytest.mark.django_db
def test_orchestrator_page_needs_view_permission_and_exists(
    plain_web: Client, admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    url = reverse("console:orchestrator-detail", args=[approved_orchestrator.pk])
    assert plain_web.get(url).status_code == 403
    missing = reverse("console:orchestrator-detail", args=["00000000-0000-0000-0000-000000000000"])
    assert admin_web.get(missing).status_code == 404


@pytest.mark.django_db
def test_a_viewer_sees_the_orchestrator_page_without_actions(
    viewer_web: Client, approved_orchestrator: Orchestrator
) -> None:
    url = reverse("console:orchestrator-detail", args=[approved_orchestrator.pk])
    page = viewer_web.get(url).content.decode()
    assert "approved-agent" in page
    assert "data-action" not in page


# --- Metadata ------------------------------------------------------------------------


def _metadata_rows(page: str) -> list[str]:
    return re.findall(r'data-testid="metadata-row" data-key="([^"]+)"', page)


@pytest.mark.django_db
def test_an_orchestrator_without_metadata_says_so(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    page = admin_web.get(
        reverse("console:orchestrator-detail", args=[approved_orchestrator.pk])
    ).content.decode()
    assert 'data-testid="metadata-empty"' in page
    assert "No metadata." in page
    assert 'data-testid="metadata-edit"' in page


@pytest.mark.django_db
def test_metadata_is_shown_as_keys_and_values_and_saved_from_the_form(
    admin_web: Client, admin_user_: User, approved_orchestrator: Orchestrator
) -> None:
    detail = reverse("console:orchestrator-detail", args=[approved_orchestrator.pk])
    url = reverse("console:orchestrator-metadata", args=[approved_orchestrator.pk])

    response = admin_web.post(url, {"metadata": '{"team": "web", "rack": 12, "pci": true}'})

    assert response.status_code == 302 and response.url == detail
    approved_orchestrator.refresh_from_db()
    assert approved_orchestrator.metadata == {"team": "web", "rack": 12, "pci": True}
    assert approved_orchestrator.metadata_changed_by == admin_user_
    page = admin_web.get(detail).content.decode()
    assert _metadata_rows(page) == ["team", "rack", "pci"]
    assert "<td>true</td>" in page and "<td>12</td>" in page
    assert "Set by root on" in page
    assert "metadata saved." in page
    # The form shows what is stored, as JSON to edit.
    assert "&quot;team&quot;: &quot;web&quot;" in page

    # Empty removes it all.
    assert admin_web.post(url, {"metadata": ""}).status_code == 302
    approved_orchestrator.refresh_from_db()
    assert approved_orchestrator.metadata == {}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"team": ', "This is not valid JSON (line 1, column"),
        ('["team"]', "metadata must be a JSON object"),
        ('{"1team": "web"}', "key &#x27;1team&#x27;: a letter, then letters"),
        ('{"team": {"a": 1}}', "key &#x27;team&#x27;: a string, a number or true/false, not dict"),
        ('{"team": null}', "not null"),
        ("{" + ", ".join(f'"k{i}": 1' for i in range(51)) + "}", "at most 50 keys"),
        ('{"notes": "' + "x" * 9000 + '"}', "at most 8192 bytes"),
    ],
)
def test_metadata_the_service_refuses_is_shown_beside_the_field_and_nothing_changes(
    admin_web: Client, approved_orchestrator: Orchestrator, text: str, error: str
) -> None:
    approved_orchestrator.metadata = {"team": "ops"}
    approved_orchestrator.save()
    url = reverse("console:orchestrator-metadata", args=[approved_orchestrator.pk])

    response = admin_web.post(url, {"metadata": text})

    assert response.status_code == 400
    page = response.content.decode()
    assert 'class="field-error"' in page and error in page
    assert '<details data-testid="metadata-edit" open>' in page
    assert _metadata_rows(page) == ["team"]  # the stored metadata, not what was refused
    approved_orchestrator.refresh_from_db()
    assert approved_orchestrator.metadata == {"team": "ops"}


@pytest.mark.django_db
def test_editing_metadata_needs_the_change_permission_and_a_csrf_token(
    viewer_web: Client, admin_user_: User, approved_orchestrator: Orchestrator
) -> None:
    detail = reverse("console:orchestrator-detail", args=[approved_orchestrator.pk])
    url = reverse("console:orchestrator-metadata", args=[approved_orchestrator.pk])

    page = viewer_web.get(detail).content.decode()
    assert 'data-testid="metadata-edit"' not in page
    assert "or add it below" not in page
    assert viewer_web.post(url, {"metadata": '{"a": "b"}'}).status_code == 403

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user_)
    assert strict.post(url, {"metadata": '{"a": "b"}'}).status_code == 403
    assert strict.get(url).status_code == 405
    approved_orchestrator.refresh_from_db()
    assert approved_orchestrator.metadata == {}
