"""Issue 14, finding 3: the console and admin logins and API tokens are throttled.

Wrong passwords lock the username from that address (django-axes, counting in the shared
database) until the cool-off ends or an administrator unlocks it; the right password is
refused meanwhile with a page that says so (429). Refused API tokens are answered 429 with
Retry-After once an address has sent too many. The limits are the real ones from settings.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.apps import apps
from django.conf import settings
from django.test import AsyncClient, Client
from rest_framework.test import APIClient

from certyard.accounts.services import api_token_create
from tests.certyard.conftest import ADMIN, error_of

PASSWORD = "the-right-password-4711"
WRONG = "a-wrong-password"
CONSOLE_LOGIN = "/login/"
ADMIN_LOGIN = "/admin/login/"
PROBE = f"{ADMIN}store-types/"
LOCKED_TEXT = "Login locked"


def _failure_limit() -> int:
    # The documented defaults where a platform has no such setting (the code before the
    # fix): there the test fails on what happens, not on a missing name.
    return getattr(settings, "CERTYARD_LOGIN_FAILURE_LIMIT", 5)


def _token_limit() -> int:
    return getattr(settings, "CERTYARD_TOKEN_FAILURE_LIMIT", 20)


def _attempts() -> Any:
    # Looked up when the test runs: on a platform without django-axes, the test fails
    # rather than the whole module failing to import.
    return apps.get_model("axes", "AccessAttempt").objects


@pytest.fixture
def person(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("alice", "alice@example.test", PASSWORD)


def _login(client: Client, path: str, password: str, username: str = "alice") -> Any:
    return client.post(path, {"username": username, "password": password})


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _assert_locked_page(response: Any, username: str | None = "alice") -> str:
    assert response.status_code == 429, response.status_code
    page = response.content.decode()
    assert LOCKED_TEXT in page
    assert username is None or username in page
    assert "Try again after" in page
    assert int(response["Retry-After"]) > 0
    # The console's look: its stylesheet, through the base template.
    assert "certyard/console.css" in page
    return page


@pytest.mark.django_db
@pytest.mark.parametrize("path", [CONSOLE_LOGIN, ADMIN_LOGIN])
def test_wrong_passwords_up_to_the_limit_lock_the_login_and_the_right_one_is_refused(
    person: Any, path: str
) -> None:
    limit = _failure_limit()
    client = Client()
    answers = [_login(client, path, WRONG).status_code for _ in range(limit)]
    # Every failure but the one that reaches the limit is the form again with its error.
    assert answers == [200] * (limit - 1) + [429]

    refused = _login(client, path, PASSWORD)
    _assert_locked_page(refused)
    assert not _logged_in(client)
    # The lockout is a row in the database every web process shares, not process memory.
    row = _attempts().get(username="alice", ip_address="127.0.0.1")
    assert row.failures_since_start == limit
    # Under ASGI (the platform's server) the same page, through the async middleware path.
    asgi = async_to_sync(AsyncClient().post)(path, {"username": "alice", "password": PASSWORD})
    _assert_locked_page(asgi)


@pytest.mark.django_db
def test_the_lock_holds_for_that_address_only_and_forwarded_for_does_not_escape_it(
    person: Any,
) -> None:
    """An attacker locks the account only where they are: its owner logs in from elsewhere."""
    limit = _failure_limit()
    attacker = Client(REMOTE_ADDR="192.0.2.66")
    for _ in range(limit):
        _login(attacker, CONSOLE_LOGIN, WRONG)
    # A made-up X-Forwarded-For changes nothing (CERTYARD_TRUSTED_PROXIES is 0).
    spoofed = attacker.post(
        CONSOLE_LOGIN,
        {"username": "alice", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="198.51.100.9",
    )
    _assert_locked_page(spoofed)

    owner = Client(REMOTE_ADDR="198.51.100.9")
    assert _login(owner, CONSOLE_LOGIN, PASSWORD).status_code == 302
    assert _logged_in(owner)


@pytest.mark.django_db
def test_many_usernames_from_one_address_lock_the_address(
    person: Any, settings: Any, django_user_model: Any
) -> None:
    """Password spraying: one password over many accounts stops at the address's limit."""
    address_limit = settings.CERTYARD_LOGIN_ADDRESS_FAILURE_LIMIT = _failure_limit() + 2
    sprayer = Client(REMOTE_ADDR="192.0.2.77")
    answers = [
        _login(sprayer, CONSOLE_LOGIN, WRONG, username=f"user{n}").status_code
        for n in range(address_limit)
    ]
    assert answers[-1] == 429 and set(answers[:-1]) == {200}
    page = _assert_locked_page(_login(sprayer, CONSOLE_LOGIN, PASSWORD), username=None)
    assert "from your address" in page and "no account can log in from it" in page
    assert not _logged_in(sprayer)


@pytest.mark.django_db
def test_an_administrator_unlocks_in_django_admin(person: Any, django_user_model: Any) -> None:
    limit = _failure_limit()
    client = Client()
    for _ in range(limit):
        _login(client, CONSOLE_LOGIN, WRONG)
    _assert_locked_page(_login(client, CONSOLE_LOGIN, PASSWORD))

    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", "r@example.test", None))
    listing = admin.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "alice" in listing.content.decode()
    row = _attempts().get(username="alice")
    unlocked = admin.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert unlocked.status_code == 302
    assert not _attempts().filter(username="alice").exists()

    assert _login(client, CONSOLE_LOGIN, PASSWORD).status_code == 302
    assert _logged_in(client)


@pytest.mark.django_db
def test_a_successful_login_clears_the_failures_before_it(person: Any) -> None:
    limit = _failure_limit()
    client = Client()
    for _ in range(limit - 1):
        assert _login(client, CONSOLE_LOGIN, WRONG).status_code == 200
    assert _login(client, CONSOLE_LOGIN, PASSWORD).status_code == 302
    assert not _attempts().filter(username="alice").exists()
    client.post("/logout/")

    # The count starts again: one more failure does not lock...
    assert _login(client, CONSOLE_LOGIN, WRONG).status_code == 200
    assert _login(client, CONSOLE_LOGIN, PASSWORD).status_code == 302
    client.post("/logout/")
    # ...a whole limit's worth does.
    answers = [_login(client, CONSOLE_LOGIN, WRONG).status_code for _ in range(limit)]
    assert answers[-1] == 429
    _assert_locked_page(_login(client, CONSOLE_LOGIN, PASSWORD))


@pytest.mark.django_db
def test_refused_api_tokens_from_one_address_are_throttled_with_429(person: Any) -> None:
    limit = _token_limit()
    _, valid = api_token_create(user=person, name="script", expires_in=dt.timedelta(days=1))
    guesser = APIClient(REMOTE_ADDR="192.0.2.88")

    def get(token: str, client: APIClient = guesser) -> Any:
        return client.get(PROBE, HTTP_AUTHORIZATION=f"Token {token}")

    answers = [get(f"cyd_guess{n:040d}").status_code for n in range(limit)]
    assert answers == [401] * limit

    throttled = get("cyd_guess-once-more")
    assert throttled.status_code == 429
    assert error_of(throttled)["code"] == "throttled"
    assert "Too many refused API tokens" in error_of(throttled)["message"]
    assert (
        0
        < int(throttled["Retry-After"])
        <= getattr(settings, "CERTYARD_LOGIN_COOLOFF_MINUTES", 15) * 60
    )
    # While throttled, a guess that happens to be right is no use either.
    assert get(valid).status_code == 429
    # Other addresses are not affected.
    assert get(valid, APIClient(REMOTE_ADDR="192.0.2.89")).status_code == 200


@pytest.mark.django_db
def test_requests_without_a_token_are_not_counted(person: Any) -> None:
    client = APIClient(REMOTE_ADDR="192.0.2.90")
    for _ in range(_token_limit() + 1):
        assert client.get(PROBE).status_code == 401
    _, valid = api_token_create(user=person, name="script", expires_in=dt.timedelta(days=1))
    assert client.get(PROBE, HTTP_AUTHORIZATION=f"Token {valid}").status_code == 200


# --- Across processes: the platform as `make run` starts it, and a second web process ---


@pytest.fixture(scope="module")
def two_web_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    from tests.e2e.conftest import ROOT, _free_port, start_platform, stop_platform, wait_for

    base: Path = tmp_path_factory.mktemp("login-lockout")
    platform = start_platform(
        base,
        env_overrides={"CERTYARD_LOGIN_FAILURE_LIMIT": "3", "CERTYARD_TOKEN_FAILURE_LIMIT": "3"},
    )
    second_url = f"http://127.0.0.1:{_free_port()}"
    log_path = base / "second-web.log"
    second = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "certyard.wsgi",
            "--pythonpath",
            str(ROOT / "platform"),
            "--bind",
            second_url.removeprefix("http://"),
            "--workers",
            "1",
            "--no-control-socket",
        ],
        cwd=ROOT,
        env=platform.env,  # the same data directory and database
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )

    def healthy() -> bool:
        if second.poll() is not None:
            raise AssertionError(f"the second web process exited:\n{log_path.read_text()}")
        try:
            return httpx.get(f"{second_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=60, what="the second web process to answer /healthz")
        yield platform, second_url
    finally:
        second.terminate()
        second.wait(timeout=30)
        stop_platform(platform)


def _web_login(base_url: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.get(CONSOLE_LOGIN)
        return client.post(
            CONSOLE_LOGIN,
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Referer": f"{base_url}{CONSOLE_LOGIN}"},
        )


@pytest.mark.e2e
def test_a_lockout_made_in_one_web_process_holds_in_another(
    two_web_processes: tuple[Any, str],
) -> None:
    platform, second_url = two_web_processes
    # Three failures on the ASGI server `make run` starts...
    answers = [
        _web_login(platform.url, platform.admin_username, WRONG).status_code for _ in range(3)
    ]
    assert answers == [200, 200, 429]
    # ...and the right password is refused by the other process, a WSGI server.
    refused = _web_login(second_url, platform.admin_username, platform.admin_password)
    assert refused.status_code == 429
    assert LOCKED_TEXT in refused.text and int(refused.headers["Retry-After"]) > 0

    # Refused API tokens too: counted on one, throttled on the other.
    for _ in range(3):
        answer = httpx.get(f"{platform.url}{PROBE}", headers={"Authorization": "Token cyd_x"})
        assert answer.status_code == 401
    throttled = httpx.get(
        f"{second_url}{PROBE}", headers={"Authorization": f"Token {platform.api_token}"}
    )
    assert throttled.status_code == 429, throttled.text
    assert throttled.json()["error"]["code"] == "throttled"
    assert int(throttled.headers["Retry-After"]) > 0
