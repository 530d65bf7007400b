"""A store type and a declaration that disagree: recorded on the type and shown as a
warning in Django admin (list and change form), cleared when a declaration is applied;
and the example MANIFEST store type, made from its declaration when an agent connects."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from certyard.inventory.declarations import CHANGED_BY_HAND, store_type_declare
from certyard.inventory.models import CertificateStoreType
from certyard.inventory.services import store_create
from orchestrators.agent.store_types import declarations_wire, load_store_types
from orchestrators.declarations import PropertySpec, PropertyType, StoreTypeDeclaration
from orchestrators.protocol import StoreOperation
from tests.certyard.conftest import AGENT

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:inventory_certificatestoretype_changelist")


def _appliance(version: int = 1, **extra: Any) -> StoreTypeDeclaration:
    return StoreTypeDeclaration(
        short_name="ACME_APPLIANCE",
        name=extra.pop("name", "ACME appliance slot"),
        schema_version=version,
        operations=frozenset({StoreOperation.INVENTORY}),
        properties=(PropertySpec("port", "Port", PropertyType.INT, default=443),),
        **extra,
    )


def _type() -> CertificateStoreType:
    return CertificateStoreType.objects.get(short_name="ACME_APPLIANCE")


@pytest.fixture
def admin_web(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def _warnings(response: Any) -> list[str]:
    return [m.message for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]


def _change_form(store_type: CertificateStoreType, **changes: Any) -> dict[str, Any]:
    data = {
        "short_name": store_type.short_name,
        "name": store_type.name,
        "supports_inventory": "on" if store_type.supports_inventory else "",
        "supports_add": "on" if store_type.supports_add else "",
        "supports_remove": "",
        "supports_create": "",
        "supports_discovery": "",
        "supports_reenrollment": "",
        "private_key": store_type.private_key,
        "custom_alias": store_type.custom_alias,
        "store_path_type": store_type.store_path_type,
        "store_path_hint": store_type.store_path_hint,
        "properties": json.dumps(store_type.properties),
        "entry_parameters": json.dumps(store_type.entry_parameters),
        "password_supported": "",
        "password_required": "",
        "_save": "Save",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


# --- Ignored declarations --------------------------------------------------------------


def test_an_agreeing_type_has_no_warning(agent) -> None:
    store_type_declare(declaration=_appliance(), orchestrator=agent.orchestrator)
    store_type_declare(declaration=_appliance(), orchestrator=agent.orchestrator)
    assert _type().declaration_warning == "" and _type().declaration_warning_at is None


def test_the_same_version_with_other_content_is_recorded_then_cleared_by_a_greater_one(
    agent,
) -> None:
    store_type_declare(declaration=_appliance(), orchestrator=agent.orchestrator)

    result = store_type_declare(
        declaration=_appliance(name="Renamed"), orchestrator=agent.orchestrator
    )

    warning = _type().declaration_warning
    assert result.ignored and "raise schema_version" in warning
    assert f"orchestrator {agent.orchestrator}" in warning
    assert "it differs in: name" in warning
    assert _type().declaration_warning_at is not None and _type().name == "ACME appliance slot"

    applied = store_type_declare(
        declaration=_appliance(2, name="Renamed"), orchestrator=agent.orchestrator
    )
    assert applied.updated
    assert (_type().name, _type().declaration_warning, _type().declaration_warning_at) == (
        "Renamed",
        "",
        None,
    )


def test_an_older_schema_version_is_recorded(agent) -> None:
    store_type_declare(declaration=_appliance(3), orchestrator=agent.orchestrator)
    store_type_declare(declaration=_appliance(2), orchestrator=agent.orchestrator)
    assert "schema version 2 is older than the recorded 3" in _type().declaration_warning


# --- Changed by hand in Django admin ---------------------------------------------------


def test_an_edit_in_admin_is_warned_of_kept_by_the_same_declaration_and_undone_by_a_greater(
    agent, admin_web: Client
) -> None:
    store_type_declare(declaration=_appliance(), orchestrator=agent.orchestrator)
    store_type = _type()
    change = reverse("admin:inventory_certificatestoretype_change", args=[store_type.pk])

    response = admin_web.post(change, _change_form(store_type, name="Edited"), follow=True)

    assert response.status_code == 200
    [warning] = _warnings(response)
    assert warning.startswith(f"ACME_APPLIANCE: {CHANGED_BY_HAND} (schema version 1): name")
    assert _type().name == "Edited" and _type().declaration_warning.startswith(CHANGED_BY_HAND)

    # The agent declares the same version again: the edit stays, and so does the warning.
    result = store_type_declare(declaration=_appliance(), orchestrator=agent.orchestrator)
    assert result.ignored is None and not result.updated
    assert _type().name == "Edited" and _type().declaration_warning.startswith(CHANGED_BY_HAND)

    # Shown in the list and on the change form.
    page = admin_web.get(CHANGELIST).content.decode()
    assert re.search(r'class="declaration-warning" title="Changed by hand[^"]*">⚠ disagrees', page)
    response = admin_web.get(change)
    assert [w for w in _warnings(response) if CHANGED_BY_HAND in w]
    assert "differs from the declaration" in response.content.decode()

    # A greater schema version replaces the edit and clears the warning.
    store_type_declare(declaration=_appliance(2), orchestrator=agent.orchestrator)
    assert (_type().name, _type().declaration_warning) == ("ACME appliance slot", "")
    assert "⚠ disagrees" not in admin_web.get(CHANGELIST).content.decode()


def test_undoing_the_edit_in_admin_clears_its_warning(agent, admin_web: Client) -> None:
    store_type_declare(declaration=_appliance(), orchestrator=agent.orchestrator)
    change = reverse("admin:inventory_certificatestoretype_change", args=[_type().pk])
    admin_web.post(change, _change_form(_type(), name="Edited"), follow=True)
    assert _type().declaration_warning

    response = admin_web.post(
        change, _change_form(_type(), name="ACME appliance slot"), follow=True
    )

    assert _warnings(response) == []
    assert _type().declaration_warning == ""


def test_a_type_made_by_hand_without_a_declaration_has_no_warning(admin_web: Client) -> None:
    CertificateStoreType.objects.create(short_name="HANDMADE", name="Made by hand")
    page = admin_web.get(CHANGELIST).content.decode()
    assert "by hand" in page and "⚠ disagrees" not in page


# --- The example MANIFEST store type ----------------------------------------------------


def test_the_manifest_example_is_created_from_its_declaration_when_its_agent_connects(
    agent, agent_api: Any
) -> None:
    store_types = load_store_types()  # what an agent with the examples installed carries
    assert "MANIFEST" in store_types
    client: APIClient = agent_api(agent)

    response = client.post(
        f"{AGENT}store-types", {"store_types": declarations_wire(store_types)}, format="json"
    )

    assert response.status_code == 200, response.content
    answers = {item["short_name"]: item for item in response.json()["store_types"]}
    assert answers["MANIFEST"]["created"] is True
    made = CertificateStoreType.objects.get(short_name="MANIFEST")
    assert made.declaration == store_types["MANIFEST"].declaration.to_wire()
    assert made.supports_inventory and not made.supports_add
    assert [(p["name"], p["type"], p["default"]) for p in made.properties] == [
        ("entries_key", "string", "entries")
    ]
    assert made.declared_by == agent.orchestrator and made.declaration_warning == ""

    # A store of the type gets the property's default; connecting again changes nothing.
    orchestrator = agent.orchestrator
    orchestrator.capabilities = [*orchestrator.capabilities, "MANIFEST.Inventory"]
    orchestrator.save(update_fields=["capabilities"])
    store = store_create(
        store_type=made,
        orchestrator=orchestrator,
        client_machine=orchestrator.client_machine,
        store_path="/srv/app/manifest.json",
    )
    assert store.properties == {"entries_key": "entries"}
    again = client.post(
        f"{AGENT}store-types", {"store_types": declarations_wire(store_types)}, format="json"
    ).json()["store_types"]
    manifest = next(item for item in again if item["short_name"] == "MANIFEST")
    assert (manifest["created"], manifest["updated"], manifest["ignored"]) == (False, False, None)


def test_a_manifest_type_made_by_hand_earlier_is_filled_in_by_the_declaration(
    agent, agent_api: Any
) -> None:
    CertificateStoreType.objects.create(short_name="MANIFEST", name="Manifest")
    client: APIClient = agent_api(agent)
    response = client.post(
        f"{AGENT}store-types", {"store_types": declarations_wire(load_store_types())}, format="json"
    )
    assert response.status_code == 200
    made = CertificateStoreType.objects.get(short_name="MANIFEST")
    assert made.name == "Certificates listed in a JSON manifest (example)"
    assert made.properties[0]["name"] == "entries_key"
