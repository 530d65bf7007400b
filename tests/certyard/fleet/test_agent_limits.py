"""POST limits: the agent reports its store roots and file size limit; the platform keeps
them and shows them in the orchestrator API."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from tests.certyard.conftest import ADMIN, AGENT, error_of
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db

LIMITS = f"{AGENT}limits"


@pytest.fixture
def client(agent: RegisteredAgent, agent_api: Callable[[RegisteredAgent], APIClient]) -> APIClient:
    return agent_api(agent)


def test_reported_limits_are_kept_and_shown_in_the_orchestrator_api(
    agent: RegisteredAgent, client: APIClient, admin_api: APIClient
) -> None:
    before = admin_api.get(f"{ADMIN}orchestrators/{agent.orchestrator.pk}/").json()
    assert before["store_roots"] is None and before["max_file_bytes"] is None
    assert before["limits_reported_at"] is None

    body = {"store_roots": ["/etc/ssl", "/srv/certs", "/etc/ssl"], "max_file_bytes": 1048576}
    response = client.post(LIMITS, body, format="json")

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["store_roots"] == ["/etc/ssl", "/srv/certs"]  # duplicate dropped
    assert answer["max_file_bytes"] == 1048576 and answer["reported_at"]
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.store_roots == ["/etc/ssl", "/srv/certs"]
    assert agent.orchestrator.max_file_bytes == 1048576
    shown = admin_api.get(f"{ADMIN}orchestrators/{agent.orchestrator.pk}/").json()
    assert shown["store_roots"] == ["/etc/ssl", "/srv/certs"]
    assert shown["max_file_bytes"] == 1048576 and shown["limits_reported_at"]


def test_a_later_report_replaces_the_earlier_one_whole(
    agent: RegisteredAgent, client: APIClient
) -> None:
    client.post(LIMITS, {"store_roots": ["/a", "/b"], "max_file_bytes": 10}, format="json")
    response = client.post(LIMITS, {"store_roots": [], "max_file_bytes": 20}, format="json")

    assert response.status_code == 200
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.store_roots == [] and agent.orchestrator.max_file_bytes == 20


def test_limits_need_an_agent_session(api: APIClient, admin_api: APIClient) -> None:
    body = {"store_roots": ["/etc/ssl"], "max_file_bytes": 1}
    anonymous = api.post(LIMITS, body, format="json")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    # A person's credentials are no agent session either.
    assert admin_api.post(LIMITS, body, format="json").status_code in (401, 403)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"store_roots": ["relative/path"], "max_file_bytes": 1}, "store_roots"),
        ({"store_roots": ["/etc/../root"], "max_file_bytes": 1}, "store_roots"),
        ({"store_roots": ["/" + "a" * 4096], "max_file_bytes": 1}, "store_roots"),
        ({"store_roots": ["/" + "é" * 2100], "max_file_bytes": 1}, "store_roots"),  # 4201 B
        ({"store_roots": [f"/r{i}" for i in range(65)], "max_file_bytes": 1}, "store_roots"),
        ({"store_roots": "/etc/ssl", "max_file_bytes": 1}, "store_roots"),
        ({"store_roots": [7], "max_file_bytes": 1}, "store_roots"),
        ({"store_roots": [""], "max_file_bytes": 1}, "store_roots"),
        ({"store_roots": ["/etc/ssl"], "max_file_bytes": 0}, "max_file_bytes"),
        ({"store_roots": ["/etc/ssl"], "max_file_bytes": -5}, "max_file_bytes"),
        ({"store_roots": ["/etc/ssl"], "max_file_bytes": "big"}, "max_file_bytes"),
        ({"store_roots": ["/etc/ssl"], "max_file_bytes": 2**70}, "max_file_bytes"),
        ({"max_file_bytes": 1}, "store_roots"),
        ({"store_roots": ["/etc/ssl"]}, "max_file_bytes"),
    ],
)
def test_malformed_limits_are_a_400_naming_the_field(
    agent: RegisteredAgent, client: APIClient, body: dict, field: str
) -> None:
    response = client.post(LIMITS, body, format="json")

    assert response.status_code == 400, response.content
    assert field in error_of(response).get("fields", {})
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.store_roots is None  # nothing kept from a refused report


def test_a_body_that_is_no_object_is_a_400(client: APIClient) -> None:
    response = client.post(LIMITS, ["/etc/ssl"], format="json")
    assert response.status_code == 400
    error_of(response)


def test_sixty_four_roots_of_4096_bytes_are_accepted(
    agent: RegisteredAgent, client: APIClient
) -> None:
    roots = [f"/{i:02d}" + "x" * 4093 for i in range(64)]
    assert all(len(root.encode()) == 4096 for root in roots)
    response = client.post(LIMITS, {"store_roots": roots, "max_file_bytes": 1}, format="json")
    assert response.status_code == 200, response.content
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.store_roots == roots
