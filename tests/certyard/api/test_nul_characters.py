"""A NUL character in a request is a clear 400, never a 500 from the database.

PostgreSQL refuses NUL in text (``DataError``: a 500 once it reaches a query);
schemathesis found one on PostgreSQL through a store type named with a NUL, which the
API looked up in the database. Text fields refuse NUL (Django's and DRF's own validator);
a related object named by text (a slug) refuses it before the lookup; a middleware refuses
a query string with ``%00`` for the APIs and the console alike. Run on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from certyard.inventory.models import CertificateStore, MetadataField
from tests.certyard.conftest import ADMIN, AGENT, error_of

pytestmark = pytest.mark.django_db

BODIES_WITH_NUL = {
    "in a value": {"name": "a\u0000b", "label": "x", "type": "string"},
    "in a list": {"name": "f", "label": "x", "type": "choice", "choices": ["a", "b\u0000"]},
}


@pytest.mark.parametrize("body", BODIES_WITH_NUL.values(), ids=BODIES_WITH_NUL.keys())
def test_a_text_field_with_a_nul_is_a_json_400_and_nothing_is_written(
    admin_api: APIClient, body: dict[str, Any]
) -> None:
    answer = admin_api.generic(
        "POST", f"{ADMIN}metadata-fields/", json.dumps(body), content_type="application/json"
    )

    assert answer.status_code == 400, answer.content
    assert error_of(answer)["fields"]
    assert not MetadataField.objects.exists()


def test_a_store_type_named_with_a_nul_is_a_400_not_a_lookup(
    admin_api: APIClient, agent: Any
) -> None:
    body = {
        "orchestrator": str(agent.orchestrator.pk),
        "store_type": "PE\u0000M",
        "client_machine": agent.orchestrator.client_machine,
        "store_path": "/srv/certs",
    }
    answer = admin_api.generic(
        "POST", f"{ADMIN}stores/", json.dumps(body), content_type="application/json"
    )

    assert answer.status_code == 400, answer.content
    assert "NUL" in error_of(answer)["fields"]["store_type"][0]
    assert not CertificateStore.objects.exists()


def test_an_escaped_backslash_before_u0000_is_no_nul(admin_api: APIClient) -> None:
    # "\\u0000" in JSON is a backslash followed by "u0000": text, not a NUL.
    answer = admin_api.generic(
        "POST",
        f"{ADMIN}metadata-fields/",
        '{"name": "ok", "label": "a \\\\u0000 b", "type": "string"}',
        content_type="application/json",
    )

    assert answer.status_code == 201, answer.content
    assert MetadataField.objects.get(name="ok").label == "a \\u0000 b"


@pytest.mark.parametrize(
    "path",
    [f"{ADMIN}certificates/?search=a%00b", f"{ADMIN}jobs/?state=%00", f"{AGENT}heartbeat?x=%00"],
)
def test_a_query_string_with_a_nul_is_a_json_400_on_the_apis(admin_api: APIClient, path: str):
    answer = admin_api.get(path)

    assert answer.status_code == 400
    assert error_of(answer)["code"] == "bad_request"
    assert "NUL" in error_of(answer)["message"]


def test_a_query_string_with_a_nul_is_a_400_in_the_console(superuser: Any) -> None:
    console = Client()
    console.force_login(superuser)

    answer = console.get("/certificates/?q=a%00b")

    assert answer.status_code == 400
    assert b"NUL" in answer.content
    assert console.get("/certificates/?q=ab").status_code == 200
