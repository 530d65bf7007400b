"""Store types declare themselves: created, updated on a greater schema version, ignored
otherwise; their stores migrated (defaults in, removed choices flagged, never emptied); the
built-in ones synced by the platform; the agent endpoint's refusals."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from certyard.inventory.declarations import (
    store_type_declare,
    store_types_builtin_sync,
)
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.inventory.services import store_create, store_update
from orchestrators.declarations import (
    BUILTIN_DECLARATIONS,
    PEM_DECLARATION,
    PropertySpec,
    PropertyType,
    StoreTypeDeclaration,
    declaration_from_wire,
)
from orchestrators.protocol import StoreOperation
from tests.certyard.conftest import ADMIN, AGENT, error_of

pytestmark = pytest.mark.django_db


def _appliance(version: int = 1, *, modes: tuple[str, ...] = ("a", "b"), **extra: Any):
    properties = extra.pop(
        "properties",
        (
            PropertySpec("port", "Port", PropertyType.INT, default=443),
            PropertySpec("mode", "Mode", PropertyType.CHOICE, choices=modes, default=modes[0]),
            PropertySpec("legacy", "Legacy flag", PropertyType.BOOL, default=False),
        ),
    )
    return StoreTypeDeclaration(
        short_name="ACME_APPLIANCE",
        name=extra.pop("name", "ACME appliance slot"),
        schema_version=version,
        operations=frozenset({StoreOperation.INVENTORY, StoreOperation.ADD}),
        properties=properties,
        **extra,
    )


def _capable(orchestrator: Any, *capabilities: str) -> Any:
    orchestrator.capabilities = [*orchestrator.capabilities, *capabilities]
    orchestrator.save(update_fields=["capabilities"])
    return orchestrator


def _declare(client: APIClient, *declarations: Any) -> Any:
    body = {"store_types": [d.to_wire() if hasattr(d, "to_wire") else d for d in declarations]}
    return client.post(f"{AGENT}store-types", body, format="json")


# --- Creating and updating -------------------------------------------------------------


def test_an_agent_declaring_a_new_store_type_creates_it_from_the_declaration(
    agent, agent_api
) -> None:
    response = _declare(agent_api(agent), _appliance())

    assert response.status_code == 200, response.content
    assert response.json() == {
        "store_types": [
            {
                "short_name": "ACME_APPLIANCE",
                "created": True,
                "updated": False,
                "migrated_stores": 0,
                "flagged_stores": 0,
                "ignored": None,
            }
        ]
    }
    made = CertificateStoreType.objects.get(short_name="ACME_APPLIANCE")
    assert made.supports_inventory and made.supports_add and not made.supports_remove
    assert made.schema_version == 1 and made.declared_by == agent.orchestrator
    assert made.declaration == _appliance().to_wire() and made.declared_at is not None
    assert [p["name"] for p in made.properties] == ["port", "mode", "legacy"]
    assert declaration_from_wire(made.declaration) == _appliance()


def test_the_same_version_with_other_content_is_ignored_and_said_so(agent) -> None:
    store_type_declare(declaration=_appliance(), orchestrator=agent.orchestrator)

    same = store_type_declare(declaration=_appliance(), orchestrator=agent.orchestrator)
    other = store_type_declare(
        declaration=_appliance(name="Renamed"), orchestrator=agent.orchestrator
    )
    older = store_type_declare(declaration=_appliance(0 + 1), orchestrator=agent.orchestrator)

    assert (same.created, same.updated, same.ignored) == (False, False, None)
    assert not other.updated and "raise schema_version" in other.ignored
    assert older.ignored is None  # the same content again: nothing to say
    assert CertificateStoreType.objects.get(short_name="ACME_APPLIANCE").name == (
        "ACME appliance slot"
    )


def test_an_older_schema_version_is_ignored(agent) -> None:
    store_type_declare(declaration=_appliance(3), orchestrator=agent.orchestrator)

    result = store_type_declare(declaration=_appliance(2), orchestrator=agent.orchestrator)

    assert "older than the recorded 3" in result.ignored
    assert CertificateStoreType.objects.get(short_name="ACME_APPLIANCE").schema_version == 3


def test_a_greater_version_migrates_stores_defaults_in_removed_choice_flagged_and_kept(
    agent,
) -> None:
    orchestrator = _capable(agent.orchestrator, "ACME_APPLIANCE.Inventory")
    store_type_declare(declaration=_appliance(modes=("a", "b")), orchestrator=orchestrator)
    store_type = CertificateStoreType.objects.get(short_name="ACME_APPLIANCE")
    on_b = store_create(
        store_type=store_type,
        store_path="/slot/1",
        orchestrator=orchestrator,
        properties={"mode": "b", "legacy": True},
    )
    on_a = store_create(
        store_type=store_type, store_path="/slot/2", orchestrator=orchestrator, properties={}
    )
    version_2 = _appliance(
        2,
        properties=(
            PropertySpec("port", "Port", PropertyType.INT, default=443),
            PropertySpec("mode", "Mode", PropertyType.CHOICE, choices=("a", "c"), default="a"),
            PropertySpec("timeout", "Timeout", PropertyType.INT, default=30),
        ),
    )

    result = store_type_declare(declaration=version_2, orchestrator=orchestrator)

    assert (result.updated, result.migrated_stores, result.flagged_stores) == (True, 2, 1)
    on_b.refresh_from_db()
    on_a.refresh_from_db()
    # The removed choice is kept and flagged, with a sentence; the removed property dropped.
    assert on_b.properties == {"port": 443, "mode": "b", "timeout": 30}
    assert len(on_b.property_problems) == 1
    assert "'b' is not one of the choices" in on_b.property_problems[0]
    assert "(a, c)" in on_b.property_problems[0]
    assert on_a.properties == {"port": 443, "mode": "a", "timeout": 30}
    assert on_a.property_problems == []
    assert CertificateStoreType.objects.get(short_name="ACME_APPLIANCE").schema_version == 2


def test_a_flagged_store_is_fixed_by_an_edit_that_passes_the_check(agent, superuser) -> None:
    orchestrator = _capable(agent.orchestrator, "ACME_APPLIANCE.Inventory")
    store_type_declare(declaration=_appliance(), orchestrator=orchestrator)
    store = store_create(
        store_type=CertificateStoreType.objects.get(short_name="ACME_APPLIANCE"),
        store_path="/slot/1",
        orchestrator=orchestrator,
        properties={"mode": "b"},
    )
    store_type_declare(declaration=_appliance(2, modes=("a", "c")), orchestrator=orchestrator)
    store.refresh_from_db()
    assert store.property_problems

    store_update(store=store, properties={"mode": "c"}, actor=superuser)

    store.refresh_from_db()
    assert store.property_problems == [] and store.properties["mode"] == "c"


def test_an_agent_cannot_change_a_built_in_store_type(agent, agent_api) -> None:
    before = CertificateStoreType.objects.get(short_name="PEM").declaration
    hijack = {**PEM_DECLARATION.to_wire(), "schema_version": 99, "name": "Mine now"}
    lower = {**hijack, "short_name": "pem"}

    response = _declare(agent_api(agent), hijack)
    response_lower = _declare(agent_api(agent), lower)

    assert response.status_code == 200, response.content
    assert response.json()["store_types"][0]["ignored"] == "built in"
    assert response_lower.json()["store_types"][0]["ignored"] == "built in"
    assert CertificateStoreType.objects.get(short_name="PEM").declaration == before
    assert not CertificateStoreType.objects.filter(short_name="pem").exists()


# --- Built-ins ---------------------------------------------------------------------------


def test_the_built_in_store_types_are_made_from_their_declarations() -> None:
    for short_name, declaration in BUILTIN_DECLARATIONS.items():
        store_type = CertificateStoreType.objects.get(short_name=short_name)
        assert store_type.builtin
        assert store_type.declaration == declaration.to_wire()
        assert store_type.schema_version == declaration.schema_version
    jks = CertificateStoreType.objects.get(short_name="JKS")
    assert jks.password_required and jks.custom_alias == "required"
    assert [p["name"] for p in jks.entry_parameters] == ["entry_password"]


def test_the_built_in_sync_is_idempotent_and_migrates_pem_stores(store) -> None:
    # The PEM type as the previous release left it, with a store of that time.
    CertificateStoreType.objects.filter(short_name="PEM").update(
        name="Certificate files (PEM, DER, PKCS#7, PKCS#12)",
        schema_version=1,
        declaration={},
        properties=[
            {"name": "recursive", "type": "bool", "required": False, "default": False},
            {"name": "file_patterns", "type": "string", "required": False, "default": "*.pem"},
        ],
    )
    CertificateStore.objects.filter(pk=store.pk).update(
        properties={"recursive": True, "file_patterns": "*.crt"}
    )

    first = {r.short_name: r for r in store_types_builtin_sync()}
    second = store_types_builtin_sync()

    assert first["PEM"].updated and first["PEM"].migrated_stores == 1
    assert not any(r.created or r.updated for r in second)
    store.refresh_from_db()
    assert store.properties["recursive"] is True  # kept as set
    assert store.properties["file_patterns"] == "*.crt"
    assert store.properties["key_file"] == "same"  # new: its default
    assert store.property_problems == []
    assert CertificateStoreType.objects.get(short_name="PEM").name == PEM_DECLARATION.name


# --- The agent endpoint's refusals -------------------------------------------------------


def test_an_unapproved_orchestrator_may_not_declare(register_agent, agent_api) -> None:
    waiting = register_agent("agent-new", approved=False)

    response = _declare(agent_api(waiting), _appliance())

    assert response.status_code == 403, response.content
    assert "approved" in error_of(response)["message"]
    assert not CertificateStoreType.objects.filter(short_name="ACME_APPLIANCE").exists()


def test_declaring_needs_a_session(api) -> None:
    response = _declare(api, _appliance())

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"short_name": "X"}, "store type X.operations: a non-empty list"),
        (
            {**_appliance().to_wire(), "properties": [{"name": "Bad Name"}]},
            "must be lowercase letters",
        ),
        (
            {
                **_appliance().to_wire(),
                "properties": [{"name": "m", "type": "choice", "choices": []}],
            },
            "a choice property needs its choices",
        ),
        ({**_appliance().to_wire(), "short_name": "../x"}, "short_name"),
        ("not an object", "store_types"),
    ],
)
def test_a_malformed_declaration_is_a_400_naming_the_field(
    agent, agent_api, declaration: Any, message: str
) -> None:
    response = _declare(agent_api(agent), declaration)

    assert response.status_code == 400, response.content
    assert message in error_of(response)["message"]
    assert not CertificateStoreType.objects.filter(short_name="ACME_APPLIANCE").exists()


def test_one_bad_declaration_refuses_the_whole_body(agent, agent_api) -> None:
    response = _declare(agent_api(agent), _appliance(), {"short_name": "Y", "name": "Y"})

    assert response.status_code == 400
    assert not CertificateStoreType.objects.filter(short_name="ACME_APPLIANCE").exists()


@pytest.mark.parametrize(
    "body",
    [
        {"store_types": [{"short_name": f"T{i}"} for i in range(51)]},
        {"store_types": []},
        {"store_types": "PEM"},
        [],
        {},
    ],
)
def test_a_body_of_the_wrong_shape_or_size_is_a_400(agent, agent_api, body: Any) -> None:
    response = agent_api(agent).post(f"{AGENT}store-types", body, format="json")

    assert response.status_code == 400, response.content
    error_of(response)


def test_the_same_type_twice_in_one_body_is_a_400(agent, agent_api) -> None:
    response = _declare(agent_api(agent), _appliance(), _appliance(2))

    assert response.status_code == 400
    assert "declared twice" in error_of(response)["message"]


def test_the_admin_api_shows_the_declaration(admin_api: APIClient, agent) -> None:
    store_type_declare(declaration=_appliance(), orchestrator=agent.orchestrator)

    body = admin_api.get(f"{ADMIN}store-types/ACME_APPLIANCE/").json()

    assert body["schema_version"] == 1
    assert body["declaration"]["short_name"] == "ACME_APPLIANCE"
    assert body["declared_by"] == str(agent.orchestrator.pk)
