"""The people's API under /api/v1/, its OpenAPI schema and its docs page."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import warnings
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.paginator import UnorderedObjectListWarning
from rest_framework.test import APIClient

from certyard.accounts.services import api_token_create
from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.fleet.services import orchestrator_register, registration_token_create
from certyard.inventory.ingest import inventory_submit
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.jobs.models import Job
from certyard.jobs.services import job_complete, job_inventory_request, job_lease_next
from tests.certs import Issued, agent_key, csr_pem, issue
from tests.certyard.conftest import ADMIN, AGENT, error_of, register_body
from tests.conftest import entry

pytestmark = pytest.mark.django_db


def _results(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def _names(response: Any) -> list[str]:
    return [row["common_name"] for row in _results(response)]


# --- Authentication ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "certificates/"),
        ("get", "stores/"),
        ("get", "orchestrators/"),
        ("get", "jobs/"),
        ("get", "registration-tokens/"),
        ("post", "registration-tokens/"),
        ("post", "stores/"),
        ("get", "store-types/"),
    ],
)
def test_unauthenticated_requests_get_a_json_refusal(
    api: APIClient, method: str, path: str
) -> None:
    response = getattr(api, method)(f"{ADMIN}{path}")

    assert response.status_code in (401, 403)
    assert error_of(response)["code"] == "not_authenticated"


def test_unauthenticated_actions_change_nothing(api: APIClient, register_agent) -> None:
    waiting = register_agent("waiting", approved=False)

    response = api.post(f"{ADMIN}orchestrators/{waiting.orchestrator.pk}/approve/")

    assert response.status_code in (401, 403)
    assert error_of(response)["code"] == "not_authenticated"
    waiting.orchestrator.refresh_from_db()
    assert waiting.orchestrator.status == Orchestrator.Status.NEW


def test_api_token_authenticates_a_person(superuser, register_agent) -> None:
    register_agent("listed")
    _, value = api_token_create(user=superuser, name="test", expires_in=dt.timedelta(days=1))
    client = APIClient()

    with_token = client.get(f"{ADMIN}orchestrators/", HTTP_AUTHORIZATION=f"Token {value}")
    wrong = client.get(f"{ADMIN}orchestrators/", HTTP_AUTHORIZATION="Token not-the-key")

    assert [o["name"] for o in _results(with_token)] == ["listed"]
    assert wrong.status_code in (401, 403)
    assert error_of(wrong)["code"] == "authentication_failed"


def test_user_without_view_permission_sees_nothing(nobody_api: APIClient, agent) -> None:
    for path in ("orchestrators/", "certificates/", "jobs/", "stores/", "registration-tokens/"):
        response = nobody_api.get(f"{ADMIN}{path}")
        assert response.status_code == 403, path
        assert error_of(response)["code"] == "permission_denied"


# --- Registration tokens ------------------------------------------------------------------


def test_registration_token_value_is_shown_once(admin_api: APIClient, superuser) -> None:
    created = admin_api.post(
        f"{ADMIN}registration-tokens/",
        {"description": "rack 12", "valid_hours": 2, "reusable": True},
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    value = body["token"]
    assert value.startswith("cyreg_") and len(value) > 30
    assert body["token_prefix"] == value[:8]
    assert body["reusable"] is True and body["approve_on_register"] is False
    row = RegistrationToken.objects.get(pk=body["id"])
    assert row.created_by == superuser and row.token_hash != value
    assert value not in str(RegistrationToken.objects.values().get())

    listed = admin_api.get(f"{ADMIN}registration-tokens/")
    detail = admin_api.get(f"{ADMIN}registration-tokens/{body['id']}/")
    for response in (listed, detail):
        assert response.status_code == 200
        assert value not in response.content.decode()
    assert [t["description"] for t in _results(listed)] == ["rack 12"]
    for row_shown in (_results(listed)[0], detail.json()):
        assert "token" not in row_shown and row_shown["token_prefix"] == value[:8]
    # The value works, once shown.
    agent_client = APIClient()
    registered = agent_client.post(
        f"{AGENT}register", register_body(value, "via-api"), format="json"
    )
    assert registered.status_code == 201


@pytest.mark.parametrize(
    "body",
    [{}, {"description": "x", "valid_hours": 0}, {"description": "x", "valid_hours": "soon"}],
    ids=["no-description", "zero-hours", "hours-not-number"],
)
def test_registration_token_create_with_bad_input_is_a_400(admin_api: APIClient, body) -> None:
    response = admin_api.post(f"{ADMIN}registration-tokens/", body, format="json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"
    assert not RegistrationToken.objects.exists()


def test_registration_token_revoke(admin_api: APIClient, viewer_api: APIClient) -> None:
    row, value = registration_token_create(description="to revoke", valid_for=dt.timedelta(hours=1))
    url = f"{ADMIN}registration-tokens/{row.pk}/revoke/"

    refused = viewer_api.post(url)
    assert refused.status_code == 403 and error_of(refused)["code"] == "permission_denied"
    row.refresh_from_db()
    assert row.revoked is False

    response = admin_api.post(url)

    assert response.status_code == 200 and response.json()["revoked"] is True
    assert value not in response.content.decode()
    row.refresh_from_db()
    assert row.revoked is True
    register = APIClient().post(f"{AGENT}register", register_body(value, "too-late"), format="json")
    assert register.status_code == 401 and error_of(register)["code"] == "token_invalid"


def test_viewer_cannot_create_a_registration_token(viewer_api: APIClient) -> None:
    response = viewer_api.post(f"{ADMIN}registration-tokens/", {"description": "x"}, format="json")

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert not RegistrationToken.objects.exists()


# --- Orchestrators ----------------------------------------------------------------------


@pytest.fixture
def fleet(register_agent) -> dict[str, Any]:
    from certyard.fleet.services import orchestrator_disapprove

    approved = register_agent("approved-1")
    waiting = register_agent("waiting-1", approved=False)
    refused = register_agent("refused-1", approved=False)
    orchestrator_disapprove(orchestrator=refused.orchestrator, actor=None)
    return {"approved": approved, "waiting": waiting, "refused": refused}


def test_orchestrators_list_and_filter_by_status(admin_api: APIClient, fleet) -> None:
    everyone = _results(admin_api.get(f"{ADMIN}orchestrators/"))
    assert sorted(o["name"] for o in everyone) == ["approved-1", "refused-1", "waiting-1"]
    for row in everyone:
        assert row["has_identity"] is True
        assert not {"public_key_pem", "certificate_pem", "public_key_sha256"} & set(row)

    for status, name in (
        ("new", "waiting-1"),
        ("approved", "approved-1"),
        ("disapproved", "refused-1"),
    ):
        rows = _results(admin_api.get(f"{ADMIN}orchestrators/", {"status": status}))
        assert [o["name"] for o in rows] == [name]


@pytest.mark.parametrize("status", ["APPROVED", "pending", "x" * 200])
def test_orchestrators_invalid_status_filter_is_a_400(admin_api: APIClient, status: str) -> None:
    response = admin_api.get(f"{ADMIN}orchestrators/", {"status": status})

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and "status must be one of" in error["message"]


def test_orchestrator_approve_disapprove_reset(admin_api: APIClient, fleet, superuser) -> None:
    waiting = fleet["waiting"].orchestrator
    base = f"{ADMIN}orchestrators/{waiting.pk}"

    approved = admin_api.post(f"{base}/approve/")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    waiting.refresh_from_db()
    assert waiting.status == Orchestrator.Status.APPROVED
    assert waiting.status_changed_by == superuser

    disapproved = admin_api.post(f"{base}/disapprove/")
    assert disapproved.status_code == 200 and disapproved.json()["status"] == "disapproved"

    reset = admin_api.post(f"{base}/reset/")
    assert reset.status_code == 200
    assert reset.json()["status"] == "new" and reset.json()["has_identity"] is False
    waiting.refresh_from_db()
    assert waiting.public_key_pem == "" and waiting.certificate_pem == ""

    # A reset orchestrator cannot be approved until it registers again.
    refused = admin_api.post(f"{base}/approve/")
    assert refused.status_code == 400 and error_of(refused)["code"] == "not_registered"


@pytest.mark.parametrize("action", ["approve", "disapprove", "reset"])
@pytest.mark.parametrize("who", ["viewer", "nobody"])
def test_orchestrator_changes_need_change_permission(
    request,
    fleet,
    action: str,
    who: str,
) -> None:
    client = request.getfixturevalue(f"{who}_api")
    target = fleet["approved" if action != "approve" else "waiting"].orchestrator
    before = Orchestrator.objects.values().get(pk=target.pk)

    response = client.post(f"{ADMIN}orchestrators/{target.pk}/{action}/")

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert Orchestrator.objects.values().get(pk=target.pk) == before


def test_unknown_orchestrator_is_a_json_404(admin_api: APIClient) -> None:
    for url in (
        f"{ADMIN}orchestrators/00000000-0000-4000-8000-000000000000/",
        f"{ADMIN}orchestrators/not-a-uuid/",
    ):
        response = admin_api.get(url)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"


# --- Stores -------------------------------------------------------------------------------


def _store_body(orchestrator: Orchestrator, /, **overrides: Any) -> dict[str, Any]:
    body = {
        "store_type": "PEM",
        "client_machine": orchestrator.client_machine,
        "store_path": "/etc/pki/tls",
        "orchestrator": str(orchestrator.pk),
        "properties": {"recursive": False},
    }
    body.update(overrides)
    return body


def test_store_create_on_an_orchestrator_with_the_capability(admin_api: APIClient, agent) -> None:
    response = admin_api.post(
        f"{ADMIN}stores/",
        _store_body(agent.orchestrator, inventory_interval_minutes=60, password="hunter2-secret"),
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["store_type"] == "PEM" and body["store_path"] == "/etc/pki/tls"
    assert body["orchestrator"] == str(agent.orchestrator.pk)
    assert body["orchestrator_name"] == "agent-1"
    assert body["inventory_interval_minutes"] == 60 and body["inventory_next_run"]
    assert body["has_password"] is True and "password" not in body
    assert "hunter2-secret" not in response.content.decode()
    store = CertificateStore.objects.get(pk=body["id"])
    assert store.password == "hunter2-secret"


def test_store_create_without_the_capability_is_a_400(admin_api: APIClient) -> None:
    _, value = registration_token_create(
        description="x", valid_for=dt.timedelta(hours=1), approve_on_register=True
    )
    registration = orchestrator_register(
        token=value,
        name="jks-only",
        client_machine="jks.example.test",
        agent_version="1",
        capabilities=["JKS.Inventory", "PEM.Add"],
        client_parameters={},
        csr_pem=csr_pem(agent_key(), "jks-only"),
        source_address=None,
    )

    response = admin_api.post(
        f"{ADMIN}stores/", _store_body(registration.orchestrator), format="json"
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "capability_missing" and "PEM.Inventory" in error["message"]
    assert not CertificateStore.objects.exists()


def test_duplicate_store_is_a_409(admin_api: APIClient, agent) -> None:
    assert (
        admin_api.post(
            f"{ADMIN}stores/", _store_body(agent.orchestrator), format="json"
        ).status_code
        == 201
    )

    response = admin_api.post(f"{ADMIN}stores/", _store_body(agent.orchestrator), format="json")

    assert response.status_code == 409
    assert error_of(response)["code"] == "duplicate"
    assert CertificateStore.objects.count() == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"store_type": "NOPE"},
        {"orchestrator": "not-a-uuid"},
        {"orchestrator": "00000000-0000-4000-8000-000000000000"},
        {"store_path": ""},
        {"inventory_interval_minutes": 0},
        {"properties": ["not", "a", "dict"]},
    ],
    ids=[
        "unknown-type",
        "orchestrator-not-uuid",
        "unknown-orchestrator",
        "no-path",
        "zero-interval",
        "properties-list",
    ],
)
def test_store_create_with_bad_input_is_a_400(admin_api: APIClient, agent, overrides) -> None:
    response = admin_api.post(
        f"{ADMIN}stores/", _store_body(agent.orchestrator, **overrides), format="json"
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and error["fields"]
    assert not CertificateStore.objects.exists()


def test_store_properties_with_a_nul_character_are_not_a_server_error(
    admin_api: APIClient,
    agent,
) -> None:
    for properties in ({"recursive": "tr\x00ue"}, {"recur\x00sive": True}):
        body = _store_body(agent.orchestrator, properties=properties)

        response = admin_api.post(f"{ADMIN}stores/", body, format="json")

        # Refused or stored, never a failure inside the database (jsonb refuses NUL).
        assert response.status_code in (201, 400), properties
        if response.status_code == 400:
            assert error_of(response)["code"] == "invalid"


def test_store_on_an_orchestrator_that_is_not_approved_is_refused(
    admin_api: APIClient,
    register_agent,
) -> None:
    waiting = register_agent("waiting", approved=False)

    response = admin_api.post(f"{ADMIN}stores/", _store_body(waiting.orchestrator), format="json")

    assert 400 <= response.status_code < 500
    assert error_of(response)["code"] == "not_approved"
    assert not CertificateStore.objects.exists()


def test_inventory_now_for_a_disapproved_orchestrator_is_refused(
    admin_api: APIClient,
    agent,
    store,
) -> None:
    from certyard.fleet.services import orchestrator_disapprove

    orchestrator_disapprove(orchestrator=agent.orchestrator, actor=None)

    response = admin_api.post(f"{ADMIN}stores/{store.pk}/inventory-now/")

    assert 400 <= response.status_code < 500
    assert error_of(response)["code"] == "not_approved"
    assert not Job.objects.exists()


def test_viewer_cannot_create_stores(viewer_api: APIClient, agent) -> None:
    response = viewer_api.post(f"{ADMIN}stores/", _store_body(agent.orchestrator), format="json")

    assert response.status_code == 403
    assert not CertificateStore.objects.exists()


@pytest.mark.filterwarnings("ignore::django.core.paginator.UnorderedObjectListWarning")
def test_store_password_is_never_returned(admin_api: APIClient, agent) -> None:
    created = admin_api.post(
        f"{ADMIN}stores/",
        _store_body(agent.orchestrator, password="Pa55-w0rd-never-shown"),
        format="json",
    )
    store_id = created.json()["id"]
    no_password = admin_api.post(
        f"{ADMIN}stores/", _store_body(agent.orchestrator, store_path="/other"), format="json"
    )

    listed = admin_api.get(f"{ADMIN}stores/")
    detail = admin_api.get(f"{ADMIN}stores/{store_id}/")
    scheduled = admin_api.post(
        f"{ADMIN}stores/{store_id}/schedule-inventory/", {"interval_minutes": 5}, format="json"
    )
    for response in (created, listed, detail, scheduled):
        assert response.status_code in (200, 201)
        assert "Pa55-w0rd-never-shown" not in response.content.decode()
    for row in [*_results(listed), detail.json(), scheduled.json()]:
        assert "password" not in row
    by_id = {row["id"]: row["has_password"] for row in _results(listed)}
    assert by_id == {store_id: True, no_password.json()["id"]: False}


def test_store_list_is_paginated_in_a_stable_order(admin_api: APIClient, agent, pem_store) -> None:
    for path in ("/b", "/c", "/a"):
        pem_store(agent.orchestrator, path)

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnorderedObjectListWarning)
        response = admin_api.get(f"{ADMIN}stores/", {"page_size": 2})

    assert [row["store_path"] for row in _results(response)] == ["/a", "/b"]


def test_schedule_inventory_sets_and_stops_the_schedule(admin_api: APIClient, store) -> None:
    url = f"{ADMIN}stores/{store.pk}/schedule-inventory/"

    started = admin_api.post(url, {"interval_minutes": 120}, format="json")

    assert started.status_code == 200
    assert started.json()["inventory_interval_minutes"] == 120
    assert started.json()["inventory_next_run"] is not None
    store.refresh_from_db()
    assert store.inventory_interval_minutes == 120

    stopped = admin_api.post(url, {"interval_minutes": None}, format="json")
    assert stopped.status_code == 200
    assert stopped.json()["inventory_interval_minutes"] is None
    assert stopped.json()["inventory_next_run"] is None

    for bad in ({"interval_minutes": 0}, {"interval_minutes": "hourly"}, {}):
        response = admin_api.post(url, bad, format="json")
        assert response.status_code == 400 and error_of(response)["code"] == "invalid"


def test_inventory_now_opens_one_job_and_answers_with_it_while_open(
    admin_api: APIClient,
    store,
    superuser,
) -> None:
    url = f"{ADMIN}stores/{store.pk}/inventory-now/"

    first = admin_api.post(url)
    second = admin_api.post(url)

    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["type"] == "inventory" and first.json()["state"] == "pending"
    assert first.json()["source"] == "api"
    job = Job.objects.get()
    assert job.requested_by == superuser and job.store == store


@pytest.mark.parametrize("action", ["inventory-now", "schedule-inventory"])
def test_store_actions_need_change_permission(viewer_api: APIClient, store, action: str) -> None:
    response = viewer_api.post(
        f"{ADMIN}stores/{store.pk}/{action}/", {"interval_minutes": 5}, format="json"
    )

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert not Job.objects.exists()
    store.refresh_from_db()
    assert store.inventory_interval_minutes is None


# --- Certificates --------------------------------------------------------------------------


@dataclass
class Inventory:
    ca: Issued
    soon: Issued
    later: Issued
    expired: Issued
    elsewhere: Issued
    store: CertificateStore
    other_store: CertificateStore


@pytest.fixture
def inventory(agent, pem_store, ca) -> Inventory:
    store = pem_store(agent.orchestrator, "/etc/ssl/main")
    other_store = pem_store(agent.orchestrator, "/etc/ssl/other")
    soon = issue("soon.example.test", issuer=ca, days=5, sans=("alt-soon.example.test",))
    later = issue("later.example.test", issuer=ca, days=60, rsa_bits=2048)
    expired = issue("expired.example.test", issuer=ca, days=-10)
    elsewhere = issue("elsewhere.example.test", issuer=ca, days=200)
    inventory_submit(
        store=store,
        entries=[
            entry("soon", soon, ca, private_key=True),
            entry("later", later),
            entry("expired", expired),
        ],
    )
    inventory_submit(
        store=other_store, entries=[entry("elsewhere", elsewhere), entry("soon-too", soon)]
    )
    return Inventory(ca, soon, later, expired, elsewhere, store, other_store)


def _certificate_id(issued: Issued) -> int:
    from certyard.inventory.models import Certificate

    return Certificate.objects.get(sha256=issued.sha256).pk


def test_certificate_list_is_ordered_by_expiry(admin_api: APIClient, inventory: Inventory) -> None:
    response = admin_api.get(f"{ADMIN}certificates/")

    assert _names(response) == [
        "expired.example.test",
        "soon.example.test",
        "later.example.test",
        "elsewhere.example.test",
        "Certyard Test Root CA",
    ]
    row = _results(response)[1]
    assert row["sha256"] == inventory.soon.sha256
    assert row["sans"] == ["DNS:alt-soon.example.test"]
    assert "der" not in row and "sans_text" not in row


def _colon_hex(value: str) -> str:
    padded = value if len(value) % 2 == 0 else f"0{value}"
    return ":".join(padded[i : i + 2] for i in range(0, len(padded), 2)).upper()


def test_certificate_search(admin_api: APIClient, inventory: Inventory) -> None:
    soon = inventory.soon
    serial = format(soon.certificate.serial_number, "x")
    searches = {
        "soon.example": ["soon.example.test"],  # common name
        "SOON.EXAMPLE.TEST": ["soon.example.test"],  # case-insensitive
        "alt-soon": ["soon.example.test"],  # SAN
        serial: ["soon.example.test"],  # serial, hex
        serial.upper(): ["soon.example.test"],
        _colon_hex(serial): ["soon.example.test"],  # serial as tools print it
        soon.sha256[:16]: ["soon.example.test"],  # SHA-256 prefix
        soon.sha256[:16].upper(): ["soon.example.test"],
        _colon_hex(soon.sha256[:16]): ["soon.example.test"],
        hashlib.sha1(soon.der, usedforsecurity=False).hexdigest()[:16]: ["soon.example.test"],
        "no-such-thing.invalid": [],
    }
    for term, expected in searches.items():
        assert _names(admin_api.get(f"{ADMIN}certificates/", {"search": term})) == expected, term


def test_certificate_filters(admin_api: APIClient, inventory: Inventory) -> None:
    def names(**params: Any) -> list[str]:
        return _names(admin_api.get(f"{ADMIN}certificates/", params))

    assert names(expires_within_days=30) == ["soon.example.test"]
    assert names(expires_within_days=90) == ["soon.example.test", "later.example.test"]
    assert names(expires_within_days=0) == []
    assert names(expired="true") == ["expired.example.test"]
    assert names(expired="1") == ["expired.example.test"]
    assert names(expired="false") == [
        "soon.example.test",
        "later.example.test",
        "elsewhere.example.test",
        "Certyard Test Root CA",
    ]
    assert names(store=str(inventory.other_store.pk)) == [
        "soon.example.test",
        "elsewhere.example.test",
    ]
    assert names(store=str(inventory.store.pk), expired="false") == [
        "soon.example.test",
        "later.example.test",
    ]
    assert names(store="00000000-0000-4000-8000-000000000000") == []
    assert names(key_algorithm="rsa") == ["later.example.test"]
    assert names(key_algorithm="RSA", expires_within_days=30) == []
    assert len(names(key_algorithm="EC")) == 5 - 1
    assert names(search="example.test", expires_within_days=30, key_algorithm="ec") == [
        "soon.example.test"
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"expires_within_days": "soon"},
        {"expires_within_days": "-1"},
        {"expires_within_days": "1.5"},
        {"expires_within_days": "36501"},
        {"expires_within_days": "99999999999999999999999"},
        {"expired": "maybe"},
        {"store": "not-a-uuid"},
        {"store": "1"},
    ],
)
def test_invalid_certificate_filters_are_a_json_400(
    admin_api: APIClient,
    inventory: Inventory,
    params: dict[str, str],
) -> None:
    response = admin_api.get(f"{ADMIN}certificates/", params)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and next(iter(params)) in error["message"]


def test_certificate_list_pagination(admin_api: APIClient, store, ca) -> None:
    certs = [issue(f"page{i:03d}.example.test", issuer=ca, days=10 + i) for i in range(501)]
    inventory_submit(store=store, entries=[entry(f"p{i}", c) for i, c in enumerate(certs)])

    first = admin_api.get(f"{ADMIN}certificates/", {"page_size": 2})
    body = first.json()
    assert body["count"] == 501
    assert [r["common_name"] for r in body["results"]] == [
        "page000.example.test",
        "page001.example.test",
    ]
    assert body["previous"] is None and "page=2" in body["next"]
    second = admin_api.get(body["next"])
    assert [r["common_name"] for r in _results(second)] == [
        "page002.example.test",
        "page003.example.test",
    ]

    default = admin_api.get(f"{ADMIN}certificates/")
    assert len(_results(default)) == 50

    bounded = admin_api.get(f"{ADMIN}certificates/", {"page_size": 1000})
    assert len(_results(bounded)) == 500 and bounded.json()["next"] is not None
    last = admin_api.get(bounded.json()["next"])
    assert [r["common_name"] for r in _results(last)] == ["page500.example.test"]
    assert last.json()["next"] is None

    beyond = admin_api.get(f"{ADMIN}certificates/", {"page": 999})
    assert beyond.status_code == 404 and error_of(beyond)["code"] == "not_found"


def test_certificate_detail_has_locations_and_pem(
    admin_api: APIClient, inventory: Inventory
) -> None:
    response = admin_api.get(f"{ADMIN}certificates/{_certificate_id(inventory.soon)}/")

    assert response.status_code == 200
    body = response.json()
    assert body["sha256"] == inventory.soon.sha256
    assert body["issuer_certificate"] == _certificate_id(inventory.ca)
    parsed = x509.load_pem_x509_certificate(body["pem"].encode())
    assert (
        hashlib.sha256(parsed.public_bytes(serialization.Encoding.DER)).hexdigest()
        == body["sha256"]
    )
    locations = sorted(body["locations"], key=lambda loc: loc["alias"])
    assert [(loc["alias"], loc["store_path"], loc["has_private_key"]) for loc in locations] == [
        ("soon", "/etc/ssl/main", True),
        ("soon-too", "/etc/ssl/other", False),
    ]
    assert locations[0]["store_id"] == str(inventory.store.pk)
    assert locations[0]["store_type"] == "PEM"


def test_unknown_certificate_is_a_json_404(admin_api: APIClient) -> None:
    for url in (f"{ADMIN}certificates/999999/", f"{ADMIN}certificates/999999/download/"):
        response = admin_api.get(url)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def _fingerprint_of_pem(text: str) -> list[str]:
    return [
        hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest()
        for c in x509.load_pem_x509_certificates(text.encode())
    ]


def test_certificate_download_defaults_to_pem(admin_api: APIClient, inventory: Inventory) -> None:
    response = admin_api.get(f"{ADMIN}certificates/{_certificate_id(inventory.soon)}/download/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert 'filename="soon.example.test.pem"' in response["Content-Disposition"]
    assert _fingerprint_of_pem(response.content.decode()) == [inventory.soon.sha256]


@pytest.mark.parametrize("file_format", ["pem", "der", "chain"])
def test_certificate_download_formats_parse_back(
    admin_api: APIClient,
    inventory: Inventory,
    file_format: str,
) -> None:
    response = admin_api.get(
        f"{ADMIN}certificates/{_certificate_id(inventory.soon)}/download/", {"format": file_format}
    )

    assert response.status_code == 200
    if file_format == "der":
        assert response["Content-Type"] == "application/pkix-cert"
        parsed = x509.load_der_x509_certificate(response.content)
        assert hashlib.sha256(parsed.public_bytes(serialization.Encoding.DER)).hexdigest() == (
            inventory.soon.sha256
        )
    elif file_format == "pem":
        assert _fingerprint_of_pem(response.content.decode()) == [inventory.soon.sha256]
    else:
        assert _fingerprint_of_pem(response.content.decode()) == [
            inventory.soon.sha256,
            inventory.ca.sha256,
        ]


def test_certificate_download_bad_format_is_a_400(
    admin_api: APIClient, inventory: Inventory
) -> None:
    response = admin_api.get(
        f"{ADMIN}certificates/{_certificate_id(inventory.soon)}/download/", {"format": "xml"}
    )

    assert response.status_code == 400
    assert "format" in error_of(response)["message"]


def test_certificate_download_with_a_non_numeric_id_is_a_404(admin_api: APIClient) -> None:
    admin_api.raise_request_exception = False

    response = admin_api.get(f"{ADMIN}certificates/abc/download/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "common_name",
    ["evil\r\nSet-Cookie: x=1", 'quote"d; name', "../../etc/passwd", "ünïcødé ☃"],
    ids=["crlf", "quote", "path", "unicode"],
)
def test_certificate_download_name_is_safe_whatever_the_common_name(
    admin_api: APIClient,
    store,
    common_name: str,
) -> None:
    odd = issue(common_name)
    inventory_submit(store=store, entries=[entry("odd", odd)])

    response = admin_api.get(f"{ADMIN}certificates/{_certificate_id(odd)}/download/")

    assert response.status_code == 200
    disposition = response["Content-Disposition"]
    assert "\n" not in disposition and "\r" not in disposition and "Set-Cookie" not in response
    filename = re.fullmatch(r'attachment; filename="([^"]+)"', disposition)
    assert filename is not None, disposition
    assert "/" not in filename.group(1) and filename.group(1).endswith(".pem")
    assert _fingerprint_of_pem(response.content.decode()) == [odd.sha256]


# --- Jobs ---------------------------------------------------------------------------------


@pytest.fixture
def jobs(agent, pem_store) -> dict[str, Job]:
    first = pem_store(agent.orchestrator, "/jobs/one")
    second = pem_store(agent.orchestrator, "/jobs/two")
    failing, _ = job_inventory_request(store=first, source=Job.Source.SCHEDULE)
    waiting, _ = job_inventory_request(store=second, source=Job.Source.ADMIN)
    Job.objects.filter(pk=waiting.pk).update(available_at=failing.available_at.replace(year=2100))
    job_lease_next(orchestrator=agent.orchestrator)
    job_complete(
        orchestrator=agent.orchestrator,
        job_id=failing.pk,
        outcome="failure",
        message="disk on fire",
    )
    return {"failing": failing, "waiting": waiting}


def test_jobs_list_and_filters(admin_api: APIClient, jobs: dict[str, Job], agent) -> None:
    def ids(**params: Any) -> set[str]:
        return {row["id"] for row in _results(admin_api.get(f"{ADMIN}jobs/", params))}

    everything = _results(admin_api.get(f"{ADMIN}jobs/"))
    assert {row["id"] for row in everything} == {str(j.pk) for j in jobs.values()}
    assert all(row["orchestrator_name"] == "agent-1" for row in everything)
    assert ids(state="pending") == {str(jobs["failing"].pk), str(jobs["waiting"].pk)}
    assert ids(state="leased") == set()
    assert ids(type="inventory") == {str(j.pk) for j in jobs.values()}
    assert ids(type="add") == set()
    assert ids(store=str(jobs["failing"].store_id)) == {str(jobs["failing"].pk)}
    assert ids(orchestrator=str(agent.orchestrator.pk)) == {str(j.pk) for j in jobs.values()}
    assert ids(orchestrator="00000000-0000-4000-8000-000000000000") == set()


@pytest.mark.parametrize(
    "params",
    [{"state": "running"}, {"store": "nope"}, {"orchestrator": "12"}],
)
def test_invalid_job_filters_are_a_json_400(admin_api: APIClient, jobs, params) -> None:
    response = admin_api.get(f"{ADMIN}jobs/", params)

    assert response.status_code == 400
    assert next(iter(params)) in error_of(response)["message"]


def test_job_detail_has_history(admin_api: APIClient, jobs: dict[str, Job], agent) -> None:
    response = admin_api.get(f"{ADMIN}jobs/{jobs['failing'].pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "pending" and body["attempts"] == 1 and body["max_attempts"] == 3
    assert body["message"] == "disk on fire" and body["store_path"] == "/jobs/one"
    assert body["source"] == "schedule"
    assert "payload" in body and "result" in body
    assert len(body["history"]) == 1
    history = body["history"][0]
    assert history["attempt"] == 1 and history["outcome"] == "failure"
    assert history["message"] == "disk on fire"
    assert history["orchestrator"] == str(agent.orchestrator.pk)
    assert history["started_at"] and history["finished_at"]


def test_job_cancel(admin_api: APIClient, viewer_api: APIClient, jobs: dict[str, Job]) -> None:
    url = f"{ADMIN}jobs/{jobs['waiting'].pk}/cancel/"

    refused = viewer_api.post(url)
    assert refused.status_code == 403
    jobs["waiting"].refresh_from_db()
    assert jobs["waiting"].state == Job.State.PENDING

    cancelled = admin_api.post(url)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = admin_api.post(url)
    assert again.status_code == 409 and error_of(again)["code"] == "conflict"


# --- Store types ----------------------------------------------------------------------------


def test_store_types_are_listed(admin_api: APIClient) -> None:
    response = admin_api.get(f"{ADMIN}store-types/PEM/")

    assert response.status_code == 200
    assert response.json()["short_name"] == "PEM" and response.json()["supports_inventory"] is True


def test_deleting_a_store_type_in_use_is_a_409(admin_api: APIClient, store) -> None:
    admin_api.raise_request_exception = False

    response = admin_api.delete(f"{ADMIN}store-types/PEM/")

    assert response.status_code == 409
    assert error_of(response)["code"]
    assert CertificateStoreType.objects.filter(short_name="PEM").exists()


# --- Schema and docs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ({"format": "json"}, {}),
        ({}, {"HTTP_ACCEPT": "application/vnd.oai.openapi+json"}),
    ],
    ids=["format-param", "accept-header"],
)
def test_openapi_schema_describes_both_apis(api: APIClient, query, headers) -> None:
    response = api.get("/api/schema/", query, **headers)

    assert response.status_code == 200
    assert "json" in response["Content-Type"]
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    assert any(p.startswith("/api/v1/") for p in paths)
    assert any(p.startswith("/api/orchestrator/v1/") for p in paths)
    for expected in (
        "/api/v1/certificates/",
        "/api/v1/orchestrators/{id}/approve/",
        "/api/v1/stores/{id}/inventory-now/",
        "/api/orchestrator/v1/register",
        "/api/orchestrator/v1/session",
        "/api/orchestrator/v1/jobs/next",
        "/api/orchestrator/v1/jobs/{job_id}/inventory",
    ):
        assert expected in paths, expected


def test_api_docs_use_only_local_assets(api: APIClient) -> None:
    response = api.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    tags = re.findall(r"<(?:script|link|img)\b[^>]*>", html, flags=re.IGNORECASE)
    urls = [
        m.group(2)
        for tag in tags
        for m in re.finditer(r"\b(src|href)\s*=\s*[\"']([^\"']*)[\"']", tag, flags=re.IGNORECASE)
    ]
    assert any(u.endswith(".js") for u in urls) and any(u.endswith(".css") for u in urls)
    for url in urls:
        assert not re.match(r"^(https?:)?//", url, flags=re.IGNORECASE), url
        # Vendored assets, and the page's own script (served apart, for the CSP).
        assert url.startswith(("/static/", "/api/docs/?script")), url
    assert not re.search(r"@import\s+url\(\s*[\"']?(https?:)?//", html)
    # And the assets are really there.
    for url in urls:
        asset = api.get(url)
        assert asset.status_code == 200, url
