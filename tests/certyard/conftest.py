"""Fixtures for the platform's tests: API clients for people and for agents."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from orchestrators.protocol import API_PREFIX
from tests.certs import agent_key, csr_pem
from tests.conftest import RegisteredAgent

AGENT = API_PREFIX  # "/api/orchestrator/v1/"
ADMIN = "/api/v1/"
# Some input only breaks PostgreSQL (NUL characters in text and JSON).
ON_POSTGRES = connection.vendor == "postgresql"


def error_of(response: Any) -> dict[str, Any]:
    """The ``error`` object of a JSON error answer, checking the answer is JSON."""
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body.get("error"), dict), body
    assert isinstance(body["error"].get("code"), str)
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"]
    return body["error"]


def register_body(token: str, name: str, *, key: Any = None, **overrides: Any) -> dict[str, Any]:
    """A registration request as an agent sends it."""
    body: dict[str, Any] = {
        "token": token,
        "name": name,
        "client_machine": f"{name}.example.test",
        "agent_version": "1.0-test",
        "capabilities": ["PEM.Inventory"],
        "client_parameters": {"site": "lab"},
        "csr": csr_pem(key or agent_key(), name),
    }
    body.update(overrides)
    return body


@pytest.fixture
def api() -> APIClient:
    """An anonymous API client."""
    return APIClient()


@pytest.fixture
def make_token(db: None) -> Callable[..., str]:
    """Create a registration token and return its secret value."""
    from certyard.fleet.services import registration_token_create

    def make(
        *,
        reusable: bool = False,
        approve: bool = False,
        hours: int = 1,
        description: str = "t",
        labels: tuple[str, ...] = (),
    ) -> str:
        _, value = registration_token_create(
            description=description,
            valid_for=dt.timedelta(hours=hours),
            reusable=reusable,
            approve_on_register=approve,
            labels=labels,
        )
        return value

    return make


@pytest.fixture
def agent_api(db: None) -> Callable[[RegisteredAgent], APIClient]:
    """An API client holding a session opened by the agent's signed assertion."""

    def open_session(registered: RegisteredAgent) -> APIClient:
        client = APIClient()
        response = client.post(f"{AGENT}session", registered.assertion(), format="json")
        assert response.status_code == 200, response.content
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
        return client

    return open_session


@pytest.fixture
def agent(register_agent: Callable[..., RegisteredAgent]) -> RegisteredAgent:
    """An approved orchestrator offering PEM.Inventory."""
    return register_agent("agent-1")


@pytest.fixture
def store(agent: RegisteredAgent, pem_store: Callable[..., Any]) -> Any:
    """A PEM store on ``agent``."""
    return pem_store(agent.orchestrator)


@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", "root@example.test", None)


@pytest.fixture
def admin_api(superuser: Any) -> APIClient:
    """An API client authenticated as a superuser."""
    client = APIClient()
    client.force_authenticate(superuser)
    return client


@pytest.fixture
def viewer(django_user_model: Any) -> Any:
    """A user who may look at everything but change nothing."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", "viewer@example.test")
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return user


@pytest.fixture
def viewer_api(viewer: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(viewer)
    return client


@pytest.fixture
def nobody_api(django_user_model: Any) -> APIClient:
    """An API client for a signed-in user with no permissions at all."""
    user = django_user_model.objects.create_user("nobody", "nobody@example.test")
    client = APIClient()
    client.force_authenticate(user)
    return client
