"""A store password (or a secret property) given as a reference the agent resolves: kept as
given, shown as a reference (it is no secret), sent to the agent as is, and refused in
words when malformed. The agent's side is tests/orchestrators/test_secret_providers.py and
tests/e2e/test_agent_secrets.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from certyard.inventory.models import CertificateStore
from certyard.inventory.properties import properties_check
from certyard.jobs.models import Job
from certyard.jobs.services import job_inventory_request
from orchestrators.declarations import PropertySpec, PropertyType
from tests.certyard.conftest import AGENT, error_of
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db


@pytest.fixture
def keystore_agent(agent: RegisteredAgent) -> RegisteredAgent:
    agent.orchestrator.capabilities = [*agent.orchestrator.capabilities, "PKCS12.Inventory"]
    agent.orchestrator.save(update_fields=["capabilities"])
    return agent


def _create(api: Any, agent: RegisteredAgent, password: str) -> Any:
    return api.post(
        "/api/v1/stores/",
        {
            "store_type": "PKCS12",
            "orchestrator": str(agent.orchestrator.pk),
            "store_path": "/srv/app/keystore.p12",
            "password": password,
        },
        format="json",
    )


def test_a_reference_is_kept_shown_and_sent_to_the_agent_as_is(
    admin_api, keystore_agent, agent_api, superuser
) -> None:
    reference = "ref+agent:pass:certyard/web-p12"
    made = _create(admin_api, keystore_agent, reference)
    assert made.status_code == 201, made.content
    assert made.json()["password_reference"] == reference and made.json()["has_password"]

    store = CertificateStore.objects.get(pk=made.json()["id"])
    job, _ = job_inventory_request(store=store, source=Job.Source.API)
    client = agent_api(keystore_agent)
    assert client.get(f"{AGENT}jobs/next", {"wait": 0}).status_code == 200
    config = client.get(f"{AGENT}jobs/{job.pk}/config").json()
    assert config["store"]["password"] == reference

    web = Client()
    web.force_login(superuser)
    page = web.get(f"/stores/{store.pk}/").content.decode()
    assert f"a reference, <code>{reference}</code>" in page


def test_a_plain_password_is_never_shown(admin_api, keystore_agent) -> None:
    made = _create(admin_api, keystore_agent, "plain-secret-8Hj")
    assert made.status_code == 201
    assert made.json()["password_reference"] is None
    assert "plain-secret-8Hj" not in made.content.decode()


@pytest.mark.parametrize(
    "bad", ["ref+agent:", "ref+agent:Vault:x", "ref+agent:env:", "ref+agent:env:a\tb"]
)
def test_a_malformed_reference_is_refused_in_words(admin_api, keystore_agent, bad: str) -> None:
    answer = _create(admin_api, keystore_agent, bad)
    assert answer.status_code == 400, answer.content
    error = error_of(answer)
    assert "ref+agent:<provider>:<name>" in error["message"]
    assert "password" in error.get("fields", {}) or error.get("field") == "password"
    assert not CertificateStore.objects.exists()


def test_a_secret_property_may_be_a_reference_but_not_a_malformed_one() -> None:
    specs = (PropertySpec("token", "Token", PropertyType.SECRET),)
    checked, errors = properties_check(specs, {"token": "ref+agent:env:TOKEN"})
    assert not errors and set(checked["token"]) == {"encrypted"}
    _, errors = properties_check(specs, {"token": "ref+agent:env:"})
    assert "property token: a secret reference is ref+agent:<provider>:<name>" in errors["token"]
