"""The console's API tokens page: each person lists, creates and revokes their own tokens;
the value is shown once, on the page that creates it, and never the digest."""

import datetime as dt
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from certyard.accounts.models import ApiToken
from certyard.accounts.services import api_token_create

LIST = "console:api-token-list"
CREATE = "console:api-token-create"
VALUE = re.compile(r'data-testid="api-token-value">(cyd_[0-9a-f]+)</pre>')


def _works(value: str) -> bool:
    response = APIClient().get("/api/v1/orchestrators/", HTTP_AUTHORIZATION=f"Token {value}")
    return response.status_code == 200


@pytest.mark.django_db
def test_the_page_needs_a_login(client: Client) -> None:
    url = reverse(LIST)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"
    assert client.post(reverse(CREATE), {"name": "x", "expires_in_days": "1"}).status_code == 302
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_create_shows_the_value_once_then_only_its_prefix(
    admin_web: Client, admin_user_: User
) -> None:
    response = admin_web.post(reverse(CREATE), {"name": "CI deploys", "expires_in_days": "30"})

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    value = VALUE.search(page).group(1)
    assert page.count(value) == 1
    assert "it will not be shown again" in page
    token = ApiToken.objects.get()
    assert token.user == admin_user_ and token.name == "CI deploys"
    assert token.expiry - token.created == pytest.approx(dt.timedelta(days=30), abs=dt.timedelta(1))
    assert token.digest not in page
    assert _works(value)

    listing = admin_web.get(reverse(LIST)).content.decode()
    assert value not in listing
    assert value[15:] not in listing
    assert token.digest not in listing
    assert 'data-testid="api-token-value"' not in listing
    assert f"<code>{token.token_key}…</code>" in listing
    assert "CI deploys" in listing
    # The new value's row, by its prefix; it has been used once, just above.
    assert re.findall(r'data-testid="api-token-row" data-key="([^"]+)"', listing) == [
        token.token_key
    ]
    assert " ago</td>" in listing


@pytest.mark.django_db
def test_never_expires_only_when_asked_for(admin_web: Client) -> None:
    response = admin_web.post(reverse(CREATE), {"name": "forever", "never_expires": "on"})

    assert response.status_code == 200
    assert "It never expires" in response.content.decode()
    assert ApiToken.objects.get().expiry is None
    assert ">never</td>" in admin_web.get(reverse(LIST)).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"name": "", "expires_in_days": "30"}, "This field is required."),
        ({"name": "x", "expires_in_days": "0"}, "greater than or equal to 1"),
        ({"name": "x", "expires_in_days": "366"}, "less than or equal to 365"),
        ({"name": "x", "expires_in_days": "soon"}, "Enter a whole number."),
        ({"name": "x", "expires_in_days": ""}, "Give a number of days (1 to 365)."),
        ({"name": "x", "expires_in_days": "5", "never_expires": "on"}, "or tick"),
        ({"name": "x" * 101, "expires_in_days": "5"}, "at most 100 characters"),
    ],
    ids=["no-name", "zero-days", "over-a-year", "not-a-number", "no-expiry", "both", "long"],
)
def test_create_with_bad_input_shows_form_errors(admin_web: Client, data, error: str) -> None:
    response = admin_web.post(reverse(CREATE), data)

    assert response.status_code == 200
    page = response.content.decode()
    assert error in page
    assert "field-error" in page
    assert 'data-testid="api-token-value"' not in page
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_each_person_sees_and_revokes_only_their_own(
    admin_web: Client, admin_user_: User, plain_web: Client, plain_user: User
) -> None:
    mine, my_value = api_token_create(user=plain_user, name="mine", expires_in=dt.timedelta(1))
    theirs, _ = api_token_create(user=admin_user_, name="theirs", expires_in=dt.timedelta(1))

    page = plain_web.get(reverse(LIST))  # a person with no permission at all may come here
    assert page.status_code == 200
    assert "mine" in page.content.decode() and "theirs" not in page.content.decode()

    refused = plain_web.post(reverse("console:api-token-revoke", args=[theirs.pk]))
    assert refused.status_code == 404
    assert ApiToken.objects.filter(pk=theirs.pk).exists()

    response = plain_web.post(reverse("console:api-token-revoke", args=[mine.pk]), follow=True)
    assert response.redirect_chain == [(reverse(LIST), 302)]
    assert f"API token {mine.token_key}… (mine) revoked." in response.content.decode()
    assert not ApiToken.objects.filter(pk=mine.pk).exists()
    assert not _works(my_value)


@pytest.mark.django_db
def test_revoke_is_post_only_with_csrf(admin_user_: User) -> None:
    token, _ = api_token_create(user=admin_user_, name="t", expires_in=dt.timedelta(1))
    url = reverse("console:api-token-revoke", args=[token.pk])
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user_)

    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403  # no CSRF token
    assert ApiToken.objects.filter(pk=token.pk).exists()

    page = client.get(reverse(LIST)).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post(url, {"csrfmiddlewaretoken": csrf}).status_code == 302
    assert not ApiToken.objects.filter(pk=token.pk).exists()


@pytest.mark.django_db
def test_an_expired_token_is_listed_as_expired(admin_web: Client, admin_user_: User) -> None:
    token, _ = api_token_create(user=admin_user_, name="old", expires_in=dt.timedelta(1))
    ApiToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - dt.timedelta(hours=1))

    page = admin_web.get(reverse(LIST)).content.decode()

    assert ">Expired</span>" in page


@pytest.mark.django_db
def test_the_navigation_links_to_the_page(plain_web: Client) -> None:
    page = plain_web.get(reverse("console:dashboard")).content.decode()
    assert f'href="{reverse(LIST)}"' in page
