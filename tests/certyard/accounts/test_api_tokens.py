"""People's API tokens (django-rest-knox): stored as a hash, shown once, with a prefix, an
expiry and a last-used time; nothing secret in the database, Django admin or the output."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from certyard.accounts.models import ApiToken
from certyard.accounts.services import (
    LAST_USED_RESOLUTION,
    MAX_TOKENS_PER_USER,
    api_token_create,
    api_token_default_expiry,
    api_token_revoke,
)
from certyard.errors import ServiceError
from tests.certyard.conftest import ADMIN, error_of

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)
PROBE = f"{ADMIN}store-types/"  # any people's API endpoint


@pytest.fixture
def person(django_user_model: Any) -> Any:
    """A person who may view store types, so a valid token gets a 200."""
    user = django_user_model.objects.create_user("person", "person@example.test")
    user.user_permissions.add(Permission.objects.get(codename="view_certificatestoretype"))
    return user


def _get(value: str, path: str = PROBE) -> Any:
    return APIClient().get(path, HTTP_AUTHORIZATION=f"Token {value}")


def _database_text() -> str:
    """Every row of every table as text (and, on SQLite, the whole database as SQL)."""
    parts: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            parts.extend(repr(row) for row in cursor.fetchall())
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        parts.extend(connection.connection.iterdump())
    return "\n".join(parts)


# --- Creation and storage ------------------------------------------------------------------


def test_the_value_is_never_stored_only_its_digest(person: Any) -> None:
    token, value = api_token_create(user=person, name="CI deploys", expires_in=DAY)

    assert value.startswith("cyd_") and len(value) == 4 + 64
    assert token.token_key == value[:15]  # the prefix a person recognises it by
    assert token.digest == hashlib.sha512(value.encode()).hexdigest()
    dump = _database_text()
    assert token.digest in dump
    assert token.token_key in dump
    assert value not in dump
    assert value[15:] not in dump  # not even the part after the shown prefix
    tables = connection.introspection.table_names()
    assert "authtoken_token" not in tables and "knox_authtoken" not in tables


def test_a_token_expires_after_the_default_unless_told_otherwise(person: Any) -> None:
    assert api_token_default_expiry() == dt.timedelta(days=90)
    before = timezone.now()

    default, _ = api_token_create(user=person, name="d", expires_in=api_token_default_expiry())
    week, _ = api_token_create(user=person, name="w", expires_in=dt.timedelta(days=7))
    never, _ = api_token_create(user=person, name="n", expires_in=None)

    assert before + dt.timedelta(days=90) <= default.expiry <= timezone.now() + dt.timedelta(90)
    assert week.expiry - week.created == pytest.approx(dt.timedelta(days=7), abs=DAY / 24)
    assert never.expiry is None


@pytest.mark.parametrize(
    ("name", "expires_in", "message"),
    [
        ("", DAY, "needs a name"),
        ("   ", DAY, "needs a name"),
        ("x" * 101, DAY, "at most 100 characters"),
        ("ok", dt.timedelta(0), "1 to 365 days"),
        ("ok", -DAY, "1 to 365 days"),
        ("ok", dt.timedelta(days=366), "1 to 365 days"),
    ],
    ids=["empty", "blank", "too-long", "zero", "negative", "over-a-year"],
)
def test_create_refuses_bad_input(
    person: Any, name: str, expires_in: dt.timedelta, message: str
) -> None:
    with pytest.raises(ServiceError, match=message):
        api_token_create(user=person, name=name, expires_in=expires_in)
    assert not ApiToken.objects.exists()


def test_create_has_no_default_expiry_argument(person: Any) -> None:
    # "Never expires" is only ever asked for explicitly.
    with pytest.raises(TypeError):
        api_token_create(user=person, name="implicit")  # type: ignore[call-arg]


def test_a_person_has_a_bounded_number_of_tokens(person: Any) -> None:
    for n in range(MAX_TOKENS_PER_USER):
        api_token_create(user=person, name=f"t{n}", expires_in=DAY)

    with pytest.raises(ServiceError, match="at most"):
        api_token_create(user=person, name="one too many", expires_in=DAY)
    assert ApiToken.objects.filter(user=person).count() == MAX_TOKENS_PER_USER


# --- Authentication --------------------------------------------------------------------------


def test_the_value_authenticates_and_the_request_acts_as_its_owner(person: Any) -> None:
    _token, value = api_token_create(user=person, name="t", expires_in=DAY)

    response = _get(value)

    assert response.status_code == 200, response.content
    nobody_here = _get(value, f"{ADMIN}orchestrators/")  # the owner may not view these
    assert nobody_here.status_code == 403
    assert error_of(nobody_here)["code"] == "permission_denied"


@pytest.mark.parametrize(
    "header",
    [
        "Token not-the-key",
        "Token cyd_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "Token",
        "Token a b",
        "Token cyd_\xff\xfe-not-utf-8",
    ],
    ids=["unknown", "well-formed-unknown", "no-value", "two-values", "not-utf-8"],
)
def test_a_bad_token_is_a_401(person: Any, header: str) -> None:
    api_token_create(user=person, name="t", expires_in=DAY)

    response = APIClient().get(PROBE, HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert error_of(response)["code"] == "authentication_failed"


def test_a_token_with_the_right_prefix_and_a_wrong_rest_is_refused(person: Any) -> None:
    _, value = api_token_create(user=person, name="t", expires_in=DAY)
    forged = value[:15] + ("0" if value[15] != "0" else "1") + value[16:]

    assert _get(forged).status_code == 401
    assert _get(value).status_code == 200


def test_missing_credentials_are_a_401_naming_the_token_scheme() -> None:
    response = APIClient().get(PROBE)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert error_of(response)["code"] == "not_authenticated"


def test_an_expired_token_is_refused(person: Any) -> None:
    token, value = api_token_create(user=person, name="old", expires_in=DAY)
    ApiToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - dt.timedelta(seconds=1))

    response = _get(value)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert error_of(response)["code"] == "authentication_failed"
    assert not ApiToken.objects.filter(pk=token.pk).exists()  # knox forgets it


def test_a_token_costs_one_token_query_and_the_users_expired_tokens_go_when_its_use_is_recorded(
    person: Any,
) -> None:
    token, value = api_token_create(user=person, name="in use", expires_in=DAY)
    old, _ = api_token_create(user=person, name="old", expires_in=DAY)
    ApiToken.objects.filter(pk=old.pk).update(expiry=timezone.now() - dt.timedelta(seconds=1))
    assert _get(value).status_code == 200  # records the use: the expired token goes
    assert not ApiToken.objects.filter(pk=old.pk).exists()

    with CaptureQueriesContext(connection) as queries:
        assert _get(value).status_code == 200
    token_queries = [q["sql"] for q in queries if "accounts_apitoken" in q["sql"]]
    # The token with its user, in one indexed look-up (knox also read all the user's).
    assert len(token_queries) == 1, token_queries
    assert "token_key" in token_queries[0] and "auth_user" in token_queries[0]
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_a_token_that_never_expires_works(person: Any) -> None:
    _, value = api_token_create(user=person, name="forever", expires_in=None)

    assert _get(value).status_code == 200


def test_an_inactive_persons_token_is_refused(person: Any) -> None:
    _, value = api_token_create(user=person, name="t", expires_in=DAY)
    person.is_active = False
    person.save(update_fields=["is_active"])

    assert _get(value).status_code == 401


def test_last_used_is_set_on_use_at_most_once_a_minute(person: Any) -> None:
    token, value = api_token_create(user=person, name="t", expires_in=DAY)
    assert token.last_used_at is None

    assert _get(value).status_code == 200
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None and timezone.now() - first < dt.timedelta(seconds=30)

    with CaptureQueriesContext(connection) as queries:
        assert _get(value).status_code == 200
    writes = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert not writes, writes
    token.refresh_from_db()
    assert token.last_used_at == first

    earlier = first - LAST_USED_RESOLUTION - dt.timedelta(seconds=1)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=earlier)
    with CaptureQueriesContext(connection) as queries:
        assert _get(value).status_code == 200
    writes = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert len(writes) == 1 and "last_used_at" in writes[0]
    token.refresh_from_db()
    assert token.last_used_at > first


def test_a_revoked_token_stops_working(person: Any) -> None:
    token, value = api_token_create(user=person, name="t", expires_in=DAY)
    _other, other_value = api_token_create(user=person, name="other", expires_in=DAY)
    assert _get(value).status_code == 200

    api_token_revoke(token=token)

    assert _get(value).status_code == 401
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    assert _get(other_value).status_code == 200  # the person's other tokens still work


# --- Django admin --------------------------------------------------------------------------


@pytest.fixture
def admin_web(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def test_django_admin_shows_neither_digest_nor_value(admin_web: Client, superuser: Any) -> None:
    token, value = api_token_create(user=superuser, name="admin sees this", expires_in=DAY)
    api_token_create(user=superuser, name="forever", expires_in=None)
    _get(value)  # sets last_used_at

    pages = {
        "list": admin_web.get(reverse("admin:accounts_apitoken_changelist")),
        "search": admin_web.get(reverse("admin:accounts_apitoken_changelist"), {"q": "admin"}),
        "change": admin_web.get(reverse("admin:accounts_apitoken_change", args=[token.pk])),
        "delete": admin_web.get(reverse("admin:accounts_apitoken_delete", args=[token.pk])),
        "history": admin_web.get(reverse("admin:accounts_apitoken_history", args=[token.pk])),
    }

    for what, response in pages.items():
        assert response.status_code == 200, what
        page = response.content.decode()
        assert token.digest not in page, what
        assert value not in page, what
        assert value[15:] not in page, what
        assert "igest" not in page, what  # no field, column or label named after it
    listing = pages["list"].content.decode()
    assert "admin sees this" in listing and token.token_key in listing
    for column in ("Name", "User", "Token key", "Created", "Expiry", "Last used at"):
        assert column in listing, column
    assert 'name="digest"' not in pages["change"].content.decode()
    # No add page: a token made there could not be shown once.
    assert admin_web.get(reverse("admin:accounts_apitoken_add")).status_code == 403


def test_knox_registers_no_admin_of_its_own() -> None:
    from django.contrib import admin

    labels = {model._meta.label for model in admin.site._registry}
    assert "accounts.ApiToken" in labels
    assert not {label for label in labels if label.startswith(("knox.", "authtoken."))}


def test_django_admin_change_keeps_the_secret_fields(admin_web: Client, superuser: Any) -> None:
    token, value = api_token_create(user=superuser, name="before", expires_in=DAY)
    url = reverse("admin:accounts_apitoken_change", args=[token.pk])

    response = admin_web.post(url, {"name": "after", "_save": "Save"})

    assert response.status_code == 302, response.content.decode()[:2000]
    changed = ApiToken.objects.get(pk=token.pk)
    assert changed.name == "after"
    assert (changed.digest, changed.token_key, changed.expiry) == (
        token.digest,
        token.token_key,
        token.expiry,
    )
    assert _get(value).status_code == 200  # still authenticates


# --- certyard_bootstrap --api-token-file ---------------------------------------------------


def test_bootstrap_writes_a_private_token_file_that_authenticates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTYARD_ADMIN_USER", "boot-admin")
    monkeypatch.setenv("CERTYARD_ADMIN_PASSWORD", "a-long-boot-password-1")
    path = tmp_path / "secrets" / "api-token"
    out = io.StringIO()

    call_command("certyard_bootstrap", "--api-token-file", str(path), stdout=out)

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    value = path.read_text()
    assert value.startswith("cyd_")
    assert value not in out.getvalue() and value[15:] not in out.getvalue()
    assert _get(value, f"{ADMIN}orchestrators/").status_code == 200
    token = ApiToken.objects.get()
    assert token.user.username == "boot-admin" and token.expiry is not None
    assert value not in _database_text()

    # Again, over a file someone made readable: a new token, the old one revoked, 0600 again.
    path.chmod(0o644)
    call_command("certyard_bootstrap", "--api-token-file", str(path), stdout=io.StringIO())

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = path.read_text()
    assert second != value
    assert _get(value).status_code == 401
    assert _get(second, f"{ADMIN}orchestrators/").status_code == 200
    assert ApiToken.objects.count() == 1


# --- Old plaintext DRF tokens ----------------------------------------------------------------

_FORGET = importlib.import_module(
    "certyard.accounts.migrations.0002_forget_plaintext_drf_tokens"
).forget_plaintext_drf_tokens


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_deletes_and_drops_the_old_plaintext_token_table(person: Any) -> None:
    """A database from before knox: its DRF tokens (value as key) are gone afterwards."""
    old_value = "0123456789abcdef0123456789abcdef01234567"
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {quote('authtoken_token')} (key varchar(40) PRIMARY KEY, "
            "created timestamp NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [old_value, timezone.now(), person.pk],
        )
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
            ["authtoken", "0001_initial", timezone.now()],
        )
    assert old_value in _database_text()

    with connection.schema_editor() as editor:
        _FORGET(apps, editor)

    tables = connection.introspection.table_names()
    assert "authtoken_token" not in tables and "knox_authtoken" not in tables
    assert old_value not in _database_text()
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM django_migrations WHERE app = %s", ["authtoken"])
        assert cursor.fetchone()[0] == 0
    # And on a database that never had it, nothing happens.
    with connection.schema_editor() as editor:
        _FORGET(apps, editor)
