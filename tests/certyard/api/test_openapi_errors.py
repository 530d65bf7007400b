"""The OpenAPI schema documents the error answers of every operation, with one error body."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from certyard.api.schema import ERROR_SCHEMA

ERROR_REF = {"$ref": "#/components/schemas/Error"}
AGENT = "/api/orchestrator/v1"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


def _error_schema(response: dict[str, Any]) -> dict[str, Any]:
    return response["content"]["application/json"]["schema"]


def test_the_error_body_is_one_component(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert error == ERROR_SCHEMA
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]


def test_the_error_component_names_every_member_and_allows_no_other() -> None:
    error = ERROR_SCHEMA["properties"]["error"]
    assert error["additionalProperties"] is False
    assert set(error["properties"]) == {
        "code",
        "message",
        "fields",
        "enrollment_id",
        "missing",
        "reason",
        "rejected",
    }
    fields = error["properties"]["fields"]
    assert fields["type"] == "object"
    assert fields["additionalProperties"] == {"type": "array", "items": {"type": "string"}}


def test_every_operation_documents_its_error_answers(schema: dict[str, Any]) -> None:
    operations = _operations(schema)
    assert len(operations) > 30
    for method, path, operation in operations:
        responses = operation["responses"]
        where = f"{method} {path}"
        assert "500" in responses and "400" in responses, where
        # Every error answer is the JSON error body, but for the inventory reports' 422
        # (the answer with the rejected entries, documented by its view).
        for status, response in responses.items():
            if status >= "400" and not (status == "422" and "/inventory" in path):
                assert _error_schema(response) == ERROR_REF, (where, status)
        secured = [r for r in operation.get("security", []) if r]
        if secured:
            assert {"401", "403"} <= set(responses), where
        if "{" in path:
            assert "404" in responses, where
        if "requestBody" in operation:
            assert "415" in responses, where
        if method == "GET":
            assert "409" not in responses or path.endswith("/config"), where


def test_detail_authenticated_and_throttled_operations(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    store = paths["/api/v1/stores/{id}/"]
    assert {"400", "401", "403", "404", "500"} <= set(store["get"]["responses"])
    assert {"404", "409"} <= set(store["delete"]["responses"])
    assert "429" not in store["get"]["responses"]  # the people's API is not throttled
    # A list pages: a page past the end is a 404.
    assert "404" in paths["/api/v1/certificates/"]["get"]["responses"]

    for endpoint in ("register", "session"):
        responses = paths[f"{AGENT}/{endpoint}"]["post"]["responses"]
        throttled = responses["429"]
        assert _error_schema(throttled) == ERROR_REF
        assert throttled["headers"]["Retry-After"]["required"] is True
        # No credentials up front, but the token or the proof in the body can be refused.
        assert "401" in responses and "403" not in responses
    assert "409" in paths[f"{AGENT}/register"]["post"]["responses"]
    assert "409" not in paths[f"{AGENT}/session"]["post"]["responses"]

    next_job = paths[f"{AGENT}/jobs/next"]["get"]["responses"]
    assert {"200", "204", "400", "401", "403", "500"} <= set(next_job)
    assert next_job["401"]["headers"]["WWW-Authenticate"]["schema"] == {"type": "string"}
    heartbeat = paths[f"{AGENT}/heartbeat"]["post"]["responses"]
    assert "401" in heartbeat and "409" not in heartbeat and "429" not in heartbeat


def test_a_views_own_responses_are_kept(schema: dict[str, Any]) -> None:
    inventory = schema["paths"][f"{AGENT}/jobs/{{job_id}}/inventory"]["post"]["responses"]
    assert _error_schema(inventory["422"]) == {"$ref": "#/components/schemas/InventoryAnswer"}
    assert _error_schema(inventory["413"]) == ERROR_REF
    retry = schema["paths"]["/api/v1/jobs/{id}/retry/"]["post"]["responses"]
    assert retry["201"]["description"] == "A new job was opened."
    assert {"200", "201", "409"} <= set(retry)
