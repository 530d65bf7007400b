"""A store names its TLS endpoint (host, port, SNI), checked; store properties checked
against the type's declaration on the API, secrets never shown; bad input is a 4xx."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from certyard.inventory.declarations import store_type_declare
from certyard.inventory.models import CertificateStore
from certyard.inventory.properties import properties_for_agent, specs_of
from orchestrators.declarations import PropertySpec, PropertyType, StoreTypeDeclaration
from orchestrators.protocol import StoreOperation
from tests.certyard.conftest import ADMIN, error_of

pytestmark = pytest.mark.django_db


def _create(admin_api: APIClient, agent: Any, **fields: Any) -> Any:
    body = {
        "store_type": "PEM",
        "store_path": "/srv/tls",
        "orchestrator": str(agent.orchestrator.pk),
    }
    return admin_api.post(f"{ADMIN}stores/", {**body, **fields}, format="json")


def test_a_store_is_created_with_its_endpoint(admin_api: APIClient, agent) -> None:
    response = _create(
        admin_api, agent, endpoint_host="WWW.Example.test", endpoint_port=443, endpoint_sni=""
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["endpoint_host"], body["endpoint_port"], body["endpoint_sni"]) == (
        "www.example.test",
        443,
        "",
    )
    assert body["property_problems"] == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"endpoint_host": "bad host", "endpoint_port": 443}, "endpoint_host"),
        ({"endpoint_host": "-x.example.test", "endpoint_port": 443}, "endpoint_host"),
        ({"endpoint_host": "999.1.1.1", "endpoint_port": 443}, "endpoint_host"),
        ({"endpoint_host": "a" * 300, "endpoint_port": 443}, "endpoint_host"),
        ({"endpoint_host": "web.example.test"}, "endpoint_port"),
        ({"endpoint_port": 443}, "endpoint_host"),
        ({"endpoint_host": "web.example.test", "endpoint_port": 0}, "endpoint_port"),
        ({"endpoint_host": "web.example.test", "endpoint_port": 65536}, "endpoint_port"),
        ({"endpoint_host": "web.example.test", "endpoint_port": "x"}, "endpoint_port"),
        (
            {"endpoint_host": "127.0.0.1", "endpoint_port": 443, "endpoint_sni": "10.0.0.1"},
            "endpoint_sni",
        ),
        ({"endpoint_sni": "web.example.test"}, "endpoint_sni"),
    ],
)
def test_a_bad_endpoint_is_a_400_naming_the_field(
    admin_api: APIClient, agent, fields: dict[str, Any], field: str
) -> None:
    response = _create(admin_api, agent, **fields)

    assert response.status_code == 400, response.content
    assert field in error_of(response).get("fields", {}), error_of(response)
    assert not CertificateStore.objects.exists()


def test_an_ip_address_endpoint_with_a_server_name(admin_api: APIClient, agent) -> None:
    response = _create(
        admin_api,
        agent,
        endpoint_host="::1",
        endpoint_port=8443,
        endpoint_sni="web.example.test",
    )

    assert response.status_code == 201, response.content
    assert response.json()["endpoint_host"] == "::1"


def test_patch_changes_or_removes_the_endpoint_and_keeps_it_when_not_sent(
    admin_api: APIClient, store
) -> None:
    url = f"{ADMIN}stores/{store.pk}/"
    set_ = admin_api.patch(
        url, {"endpoint_host": "127.0.0.1", "endpoint_port": 8443}, format="json"
    )
    assert set_.status_code == 200, set_.content

    path_only = admin_api.patch(url, {"store_path": "/srv/moved"}, format="json")
    assert path_only.json()["endpoint_port"] == 8443  # not sent: kept

    half = admin_api.patch(url, {"endpoint_host": ""}, format="json")
    assert half.status_code == 400  # a port without a host
    removed = admin_api.patch(url, {"endpoint_host": "", "endpoint_port": None}, format="json")
    assert removed.status_code == 200, removed.content
    store.refresh_from_db()
    assert (store.endpoint_host, store.endpoint_port) == ("", None)


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"key_file": "elsewhere"}, "must be one of same, separate"),
        ({"recursive": "yes"}, "must be a bool"),
        ({"nonsense": 1}, "has no property nonsense"),
    ],
)
def test_properties_are_checked_against_the_declaration(
    admin_api: APIClient, agent, properties: dict[str, Any], message: str
) -> None:
    response = _create(admin_api, agent, properties=properties)

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert message in error["message"]
    assert error["fields"]["properties"]


def _vault_type(agent: Any) -> None:
    declaration = StoreTypeDeclaration(
        short_name="VAULT",
        name="A vault",
        operations=frozenset({StoreOperation.INVENTORY}),
        properties=(
            PropertySpec(
                "auth", "Auth", PropertyType.CHOICE, choices=("token", "none"), default="none"
            ),
            PropertySpec(
                "token", "Token", PropertyType.SECRET, required=True, depends_on=("auth", "token")
            ),
        ),
    )
    store_type_declare(declaration=declaration, orchestrator=agent.orchestrator)
    agent.orchestrator.capabilities = [*agent.orchestrator.capabilities, "VAULT.Inventory"]
    agent.orchestrator.save(update_fields=["capabilities"])


def test_a_secret_property_is_stored_encrypted_and_shown_only_as_set(
    admin_api: APIClient, agent
) -> None:
    _vault_type(agent)

    response = _create(
        admin_api, agent, store_type="VAULT", properties={"auth": "token", "token": "hunter2-tok"}
    )

    assert response.status_code == 201, response.content
    assert response.json()["properties"] == {"auth": "token", "token": "set"}
    assert "hunter2-tok" not in response.content.decode()
    store = CertificateStore.objects.get()
    assert "hunter2-tok" not in str(store.properties)  # encrypted at rest
    specs = specs_of(store.store_type.properties)
    assert properties_for_agent(specs, store.properties)["token"] == "hunter2-tok"
    # Left out on an edit: kept.
    patched = admin_api.patch(
        f"{ADMIN}stores/{store.pk}/", {"properties": {"auth": "token"}}, format="json"
    )
    assert patched.status_code == 200, patched.content
    store.refresh_from_db()
    assert properties_for_agent(specs, store.properties)["token"] == "hunter2-tok"


def test_a_required_property_depending_on_another_is_required_only_then(
    admin_api: APIClient, agent
) -> None:
    _vault_type(agent)

    needs = _create(admin_api, agent, store_type="VAULT", properties={"auth": "token"})
    fine = _create(admin_api, agent, store_type="VAULT", properties={"auth": "none"})

    assert needs.status_code == 400
    assert "property token is required" in error_of(needs)["message"]
    assert fine.status_code == 201, fine.content
