"""Bad input is a 4xx with the JSON error body: deep JSON, missing credentials, store types."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from rest_framework.test import APIClient

from certyard.api.parsers import JSON_MAX_DEPTH, json_depth_exceeds
from certyard.fleet.services import orchestrator_register, registration_token_create
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.jobs.services import job_inventory_request, job_lease_next
from orchestrators.declarations import BUILTIN_DECLARATIONS
from tests.certs import agent_key, csr_pem
from tests.certyard.conftest import ADMIN, AGENT, error_of

pytestmark = pytest.mark.django_db

DEEP_BODIES = {
    "arrays": "[" * 2048,
    "objects": '{"a":' * 2048,
    "closed arrays": "[" * 2000 + "]" * 2000,
}


def _post_raw(client: APIClient, path: str, body: str) -> Any:
    return client.generic("POST", path, body, content_type="application/json")


def _assert_too_deep(response: Any) -> None:
    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == "too_deep"


# --- Deeply nested JSON --------------------------------------------------------------------


@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
@pytest.mark.parametrize("endpoint", ["register", "session"])
def test_deeply_nested_json_to_an_unauthenticated_agent_endpoint_is_a_json_400(
    api: APIClient, endpoint: str, body: str
) -> None:
    _assert_too_deep(_post_raw(api, f"{AGENT}{endpoint}", body))


def test_deeply_nested_json_to_the_heartbeat_is_ignored_not_a_500(agent, agent_api) -> None:
    # The heartbeat takes no body and never reads one: nothing to refuse, nothing to crash.
    response = _post_raw(agent_api(agent), f"{AGENT}heartbeat", "[" * 2048)

    assert response.status_code == 200
    assert response.json()["status"] == "approved"


def test_deeply_nested_json_to_an_inventory_chunk_is_a_json_400(agent, agent_api, store) -> None:
    job, _ = job_inventory_request(store=store, source="test")
    assert job_lease_next(orchestrator=agent.orchestrator) is not None
    client = agent_api(agent)

    response = _post_raw(
        client, f"{AGENT}jobs/{job.pk}/inventory/chunks", '{"entries": ' + "[" * 2048
    )

    _assert_too_deep(response)


@pytest.mark.parametrize("path", ["stores/", "registration-tokens/", "store-types/"])
def test_deeply_nested_json_to_the_admin_api_is_a_json_400(admin_api: APIClient, path) -> None:
    _assert_too_deep(_post_raw(admin_api, f"{ADMIN}{path}", '{"a":' * 2048))


def test_nesting_up_to_the_limit_is_parsed_as_usual(admin_api: APIClient) -> None:
    body = '{"store_path": ' + "[" * (JSON_MAX_DEPTH - 1) + "]" * (JSON_MAX_DEPTH - 1) + "}"

    response = _post_raw(admin_api, f"{ADMIN}stores/", body)

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"  # read, then refused by the serializer


def test_brackets_and_escaped_quotes_inside_strings_do_not_count_as_nesting() -> None:
    inside = '"' + "[{" * 500 + '\\"' + "[" * 100 + '\\\\"'
    assert not json_depth_exceeds("[" + inside + "]")
    assert json_depth_exceeds('["\\\\"' + "," + "[" * (JSON_MAX_DEPTH + 1))
    assert not json_depth_exceeds("[" * JSON_MAX_DEPTH + "]" * JSON_MAX_DEPTH)
    assert json_depth_exceeds("[" * (JSON_MAX_DEPTH + 1))


# --- Missing credentials -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["certificates/", "store-types/", "orchestrators/"])
def test_an_anonymous_admin_request_is_a_401_naming_the_token_scheme(api: APIClient, path) -> None:
    response = api.get(f"{ADMIN}{path}")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert error_of(response)["code"] == "not_authenticated"


def test_a_signed_in_person_without_permission_still_gets_403(nobody_api: APIClient) -> None:
    response = nobody_api.get(f"{ADMIN}store-types/")

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"


def test_an_anonymous_heartbeat_is_a_401_naming_the_bearer_scheme(api: APIClient) -> None:
    response = api.post(f"{AGENT}heartbeat", {}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer ")
    assert error_of(response)["code"] == "not_authenticated"


# --- Store-type declarations ---------------------------------------------------------------


def _store_type(short_name: str = "CUSTOM", **fields: Any) -> dict[str, Any]:
    return {"short_name": short_name, "name": f"{short_name} files", **fields}


MALFORMED_DECLARATIONS = {
    "not a list": {"name": "x", "type": "string"},
    "item not an object": ["recursive"],
    "bad name": [{"name": "1st", "type": "string"}],
    "name with a dot": [{"name": "a.b", "type": "string"}],
    "name not a string": [{"name": 7, "type": "string"}],
    "unknown type": [{"name": "depth", "type": "float"}],
    "missing type": [{"name": "depth"}],
    "bool default for an int": [{"name": "depth", "type": "int", "default": True}],
    "string default for a bool": [{"name": "recursive", "type": "bool", "default": "no"}],
    "required not a bool": [{"name": "depth", "type": "int", "required": "yes"}],
    "duplicate names": [{"name": "depth", "type": "int"}, {"name": "depth", "type": "string"}],
    "unknown keys": [{"name": "depth", "type": "int", "min": 0}],
}


@pytest.mark.parametrize("field", ["properties", "entry_parameters"])
@pytest.mark.parametrize(
    "declarations", MALFORMED_DECLARATIONS.values(), ids=MALFORMED_DECLARATIONS.keys()
)
def test_a_malformed_declaration_is_a_400_and_nothing_is_saved(
    admin_api: APIClient, field: str, declarations: Any
) -> None:
    response = admin_api.post(
        f"{ADMIN}store-types/", _store_type(**{field: declarations}), format="json"
    )

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid" and error["message"].startswith(f"{field}: ")
    assert not CertificateStoreType.objects.filter(short_name="CUSTOM").exists()


def test_a_malformed_declaration_is_refused_on_update_too(admin_api: APIClient) -> None:
    before = CertificateStoreType.objects.get(short_name="PEM").properties

    response = admin_api.patch(
        f"{ADMIN}store-types/PEM/", {"properties": [{"name": "x", "type": "?"}]}, format="json"
    )

    assert response.status_code == 400
    assert "item 0 (x)" in error_of(response)["message"]
    assert CertificateStoreType.objects.get(short_name="PEM").properties == before


def test_the_builtin_declarations_pass_the_check() -> None:
    from certyard.inventory.services import store_type_properties_check

    for store_type in CertificateStoreType.objects.all():
        assert store_type_properties_check(store_type.properties) == store_type.properties
        assert (
            store_type_properties_check(store_type.entry_parameters) == store_type.entry_parameters
        )


@pytest.mark.parametrize("short_name", ["a.b", "a/b", "a\nb", "PEM\n", "-x", "", "x" * 41])
def test_a_store_type_short_name_with_unsafe_characters_is_a_400(
    admin_api: APIClient, short_name: str
) -> None:
    response = admin_api.post(f"{ADMIN}store-types/", _store_type(short_name), format="json")

    assert response.status_code == 400, response.content
    assert error_of(response)["message"].startswith("short_name: ")
    assert CertificateStoreType.objects.count() == len(BUILTIN_DECLARATIONS)  # built-ins only


def test_a_duplicate_short_name_is_a_400(admin_api: APIClient) -> None:
    response = admin_api.post(f"{ADMIN}store-types/", _store_type("PEM"), format="json")

    assert response.status_code == 400
    assert "already exists" in error_of(response)["message"]


def test_the_builtin_pem_type_cannot_be_deleted(admin_api: APIClient) -> None:
    response = admin_api.delete(f"{ADMIN}store-types/PEM/")

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "builtin" and "built in" in error["message"]
    assert CertificateStoreType.objects.get(short_name="PEM").builtin


def test_the_builtin_pem_type_cannot_be_renamed(admin_api: APIClient) -> None:
    response = admin_api.patch(f"{ADMIN}store-types/PEM/", {"short_name": "PEM2"}, format="json")

    assert response.status_code == 400
    assert "cannot be renamed" in error_of(response)["message"]
    assert CertificateStoreType.objects.filter(short_name="PEM").exists()


def test_builtin_cannot_be_set_through_the_api(admin_api: APIClient) -> None:
    response = admin_api.post(
        f"{ADMIN}store-types/", _store_type("Mine", builtin=True), format="json"
    )

    assert response.status_code == 201
    assert response.json()["builtin"] is False


def _orchestrator_offering(capability: str) -> Any:
    _, token = registration_token_create(
        description="test", valid_for=dt.timedelta(hours=1), approve_on_register=True
    )
    return orchestrator_register(
        token=token,
        name="custom-agent",
        client_machine="custom-agent.example.test",
        agent_version="test",
        capabilities=[capability],
        client_parameters={},
        csr_pem=csr_pem(agent_key(), "custom-agent"),
        source_address="127.0.0.1",
    ).orchestrator


def test_a_valid_custom_type_is_created_used_by_a_store_and_deleted_when_unused(
    admin_api: APIClient,
) -> None:
    declared = [
        {"name": "depth", "type": "int", "default": 2},
        {"name": "label_1", "type": "string", "required": True},
        {"name": "secret_key", "type": "secret", "required": False},
        {"name": "_follow", "type": "bool", "default": False},
    ]
    created = admin_api.post(
        f"{ADMIN}store-types/",
        _store_type("My-Type_2", properties=declared, entry_parameters=[]),
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["properties"][0] == {
        "name": "depth",
        "type": "int",
        "required": False,
        "default": 2,
    }
    assert admin_api.get(f"{ADMIN}store-types/My-Type_2/").status_code == 200

    orchestrator = _orchestrator_offering("My-Type_2.Inventory")
    store = admin_api.post(
        f"{ADMIN}stores/",
        {
            "store_type": "My-Type_2",
            "store_path": "/srv/certs",
            "orchestrator": str(orchestrator.pk),
            "properties": {"label_1": "web"},
        },
        format="json",
    )
    assert store.status_code == 201, store.content
    assert store.json()["properties"] == {
        "depth": 2,
        "label_1": "web",
        "_follow": False,
        "secret_key": "not set",  # a secret: only whether it is set, never its value
    }

    in_use = admin_api.delete(f"{ADMIN}store-types/My-Type_2/")
    assert in_use.status_code == 409 and error_of(in_use)["code"] == "in_use"

    CertificateStore.objects.filter(store_type__short_name="My-Type_2").delete()
    deleted = admin_api.delete(f"{ADMIN}store-types/My-Type_2/")
    assert deleted.status_code == 204
    assert not CertificateStoreType.objects.filter(short_name="My-Type_2").exists()
