"""Orchestrator metadata: what a registration handler recorded, readable and editable by
people on the API, and carried by the orchestrator events."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.fleet.services import (
    orchestrator_approve,
    orchestrator_disapprove,
    orchestrator_metadata_check,
    orchestrator_metadata_set,
    orchestrator_register,
    registration_token_create,
)
from certyard.workflows.models import Event, HandlerRegistration
from certyard.workflows.services import registration_save
from tests.certs import agent_key, csr_pem
from tests.certyard.conftest import error_of
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db


def _url(orchestrator: Orchestrator) -> str:
    return f"/api/v1/orchestrators/{orchestrator.pk}/"


def _register(name: str, *, approve: bool = False) -> Orchestrator:
    _, token = registration_token_create(
        description="test", valid_for=dt.timedelta(hours=1), approve_on_register=approve
    )
    return orchestrator_register(
        token=token,
        name=name,
        client_machine=f"{name}.example.test",
        agent_version="test",
        capabilities=["PEM.Inventory"],
        client_parameters={},
        csr_pem=csr_pem(agent_key(), name),
        source_address="127.0.0.1",
    ).orchestrator


# --- The rules ---------------------------------------------------------------------------


def test_a_flat_object_of_strings_numbers_and_booleans_is_kept_as_it_is() -> None:
    value = {"team": "web", "rack": 12, "load": 0.5, "pci": False, "a.b-c_d": ""}
    assert orchestrator_metadata_check(value) == value
    assert orchestrator_metadata_check({"k" + "x" * 63: "64 characters"})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["team"], "must be a JSON object"),
        ({"1team": "x"}, "key '1team': a letter"),
        ({"k" + "x" * 64: "x"}, "(at most 64 characters)"),
        ({"team": None}, "not null"),
        ({"team": ["a"]}, "not list"),
        ({"team": {"a": "b"}}, "not dict"),
        ({"team": float("nan")}, "not float"),
        ({"team": "a\x00b"}, "NUL"),
        ({f"k{i}": i for i in range(51)}, "at most 50 keys are allowed, 51 were given"),
        ({"notes": "é" * 4100}, "at most 8192 bytes of JSON are allowed"),
    ],
)
def test_anything_else_is_refused_naming_the_key(value: Any, problem: str) -> None:
    with pytest.raises(ServiceError) as refused:
        orchestrator_metadata_check(value)
    assert problem in refused.value.message
    assert refused.value.fields["metadata"]


def test_setting_it_records_who_and_when(
    register_agent: Callable[..., RegisteredAgent], superuser: Any
) -> None:
    orchestrator = register_agent("agent-1").orchestrator
    orchestrator_metadata_set(orchestrator=orchestrator, metadata={"team": "web"}, actor=superuser)
    orchestrator.refresh_from_db()
    assert orchestrator.metadata == {"team": "web"}
    assert orchestrator.metadata_changed_by == superuser
    assert orchestrator.metadata_changed_at is not None


# --- Events --------------------------------------------------------------------------------


def test_the_orchestrator_events_carry_the_metadata_a_handler_recorded(superuser: Any) -> None:
    registration_save(
        registration=HandlerRegistration(name="lab rules", handler="certyard.registration_rules"),
        values={"source_networks": ["127.0.0.0/8"], "metadata": ["team=web", "rack=7"]},
    )
    orchestrator = _register("agent-1")
    assert orchestrator.status == Orchestrator.Status.APPROVED
    assert orchestrator.metadata == {"team": "web", "rack": "7"}
    assert orchestrator.metadata_changed_by is None and orchestrator.metadata_changed_at

    def data(kind: str) -> dict[str, Any]:
        return Event.objects.filter(kind=kind, subject_id=str(orchestrator.pk)).latest("pk").data

    assert data("orchestrator.registered")["metadata"] == {"team": "web", "rack": "7"}
    assert data("orchestrator.approved")["metadata"] == {"team": "web", "rack": "7"}

    orchestrator_metadata_set(orchestrator=orchestrator, metadata={"team": "ops"}, actor=superuser)
    orchestrator_disapprove(orchestrator=orchestrator, actor=superuser)
    assert data("orchestrator.disapproved")["metadata"] == {"team": "ops"}
    orchestrator_approve(orchestrator=orchestrator, actor=superuser)
    assert data("orchestrator.approved")["metadata"] == {"team": "ops"}
    assert data("orchestrator.approved")["actor"] == "root"


def test_an_orchestrator_without_metadata_has_an_empty_object_in_its_events() -> None:
    orchestrator = _register("agent-2")
    event = Event.objects.get(kind="orchestrator.registered", subject_id=str(orchestrator.pk))
    assert event.data["metadata"] == {}


# --- API ------------------------------------------------------------------------------------


def test_the_api_shows_and_replaces_the_metadata(
    admin_api: APIClient, superuser: Any, register_agent: Callable[..., RegisteredAgent]
) -> None:
    orchestrator = register_agent("agent-1").orchestrator
    body = admin_api.get(_url(orchestrator)).json()
    assert body["metadata"] == {}
    assert body["metadata_changed_by"] is None

    response = admin_api.patch(
        _url(orchestrator), {"metadata": {"team": "web", "rack": 12, "pci": True}}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["metadata"] == {"team": "web", "rack": 12, "pci": True}
    assert body["metadata_changed_by"] == "root" and body["metadata_changed_at"]
    assert admin_api.get(_url(orchestrator)).json()["metadata"]["rack"] == 12
    listed = admin_api.get("/api/v1/orchestrators/").json()["results"]
    assert listed[0]["metadata"] == {"team": "web", "rack": 12, "pci": True}

    # Nothing sent, nothing changed; {} empties it.
    assert admin_api.patch(_url(orchestrator), {}, format="json").json()["metadata"]["pci"]
    emptied = admin_api.patch(_url(orchestrator), {"metadata": {}}, format="json")
    assert emptied.json()["metadata"] == {}


@pytest.mark.parametrize(
    "metadata",
    [{"1x": "y"}, {"team": {"nested": 1}}, {"team": None}, "team=web", {"a b": 1}],
)
def test_the_api_refuses_bad_metadata_with_a_400_naming_the_field(
    admin_api: APIClient, register_agent: Callable[..., RegisteredAgent], metadata: Any
) -> None:
    orchestrator = register_agent("agent-1").orchestrator
    orchestrator.metadata = {"team": "ops"}
    orchestrator.save()

    response = admin_api.patch(_url(orchestrator), {"metadata": metadata}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["fields"]["metadata"]
    orchestrator.refresh_from_db()
    assert orchestrator.metadata == {"team": "ops"}


def test_changing_metadata_needs_the_change_permission(
    viewer_api: APIClient, register_agent: Callable[..., RegisteredAgent]
) -> None:
    orchestrator = register_agent("agent-1").orchestrator
    assert viewer_api.get(_url(orchestrator)).json()["metadata"] == {}
    response = viewer_api.patch(_url(orchestrator), {"metadata": {"a": "b"}}, format="json")
    assert response.status_code == 403
    orchestrator.refresh_from_db()
    assert orchestrator.metadata == {}


def test_put_and_other_fields_are_not_how_to_change_an_orchestrator(
    admin_api: APIClient, register_agent: Callable[..., RegisteredAgent]
) -> None:
    orchestrator = register_agent("agent-1").orchestrator
    assert admin_api.put(_url(orchestrator), {"metadata": {}}, format="json").status_code == 405
    response = admin_api.patch(_url(orchestrator), {"name": "renamed"}, format="json")
    assert response.status_code == 200
    orchestrator.refresh_from_db()
    assert orchestrator.name == "agent-1"


# --- Django admin -------------------------------------------------------------------------


def test_django_admin_holds_metadata_to_the_same_rules_and_records_who(
    superuser: Any, register_agent: Callable[..., RegisteredAgent]
) -> None:
    orchestrator = register_agent("agent-1").orchestrator
    client = Client()
    client.force_login(superuser)
    url = reverse("admin:fleet_orchestrator_change", args=[orchestrator.pk])
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {
        name: form[name].value() if form[name].value() is not None else "" for name in form.fields
    }
    for name in ("capabilities", "client_parameters"):
        data[name] = json.dumps(getattr(orchestrator, name))

    refused = client.post(url, {**data, "metadata": '{"1x": {"a": 1}}'})
    assert refused.status_code == 200
    assert "key &#x27;1x&#x27;" in refused.content.decode()

    saved = client.post(url, {**data, "metadata": '{"team": "web"}'})
    assert saved.status_code == 302, saved.content.decode()[:3000]
    orchestrator.refresh_from_db()
    assert orchestrator.metadata == {"team": "web"}
    assert orchestrator.metadata_changed_by == superuser
