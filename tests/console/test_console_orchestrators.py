"""Orchestrators: approve, disapprove and reset in place; registration tokens."""

import hashlib
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.fleet.services import orchestrator_reset


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
