"""Issue 14, finding 8: the OpenAPI schema says what the APIs accept, and they refuse what
it calls invalid (400, never a quiet default or a coerced value).

Each test pins one mismatch schemathesis reported (tests/certyard/api/test_api_schemathesis.py
runs every check it has over both APIs; benchmarks/schemathesis_deep.py runs it deep).
"""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import load_all_checks

from certyard.api import schema as api_schema
from certyard.fleet.models import RegistrationToken
from certyard.jobs.models import Job
from certyard.jobs.services import job_inventory_request, job_lease_next
from tests.certyard.conftest import ADMIN, AGENT, error_of
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def _query_parameter(schema: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    parameters = schema["paths"][path]["get"]["parameters"]
    return next(p["schema"] for p in parameters if p["name"] == name)


# Pagination: `page_size=null` was served as the default page, `page=last` as the last.


@pytest.mark.parametrize(
    "query",
    [
        {"page_size": "null"},
        {"page_size": "0"},
        {"page_size": "-5"},
        {"page_size": "2.0"},
        {"page": "0"},
        {"page": "last"},
        {"page": "abc"},
    ],
)
def test_a_page_or_page_size_that_is_no_whole_number_from_1_is_refused(
    admin_api: APIClient, query: dict[str, str]
) -> None:
    answer = admin_api.get(f"{ADMIN}orchestrators/", query)
    assert answer.status_code == 400, answer.content
    error = error_of(answer)
    assert error["code"] == "invalid" and set(error["fields"]) == set(query)


def test_pagination_parameters_are_declared_with_their_bounds(schema: dict[str, Any]) -> None:
    page = _query_parameter(schema, "/api/v1/orchestrators/", "page")
    page_size = _query_parameter(schema, "/api/v1/orchestrators/", "page_size")
    assert page["type"] == "integer" and page["minimum"] == 1
    assert page_size == {"type": "integer", "minimum": 1}


# JSON bodies: DRF took 0 for false, "24" for 24 and 12 for "12".


@pytest.mark.parametrize(
    "wrong",
    [{"approve_on_register": 0}, {"reusable": "true"}, {"valid_hours": "24"}, {"description": 7}],
)
def test_a_json_value_of_the_wrong_type_is_refused_not_coerced(
    admin_api: APIClient, wrong: dict[str, Any]
) -> None:
    body = {"description": "x", "valid_hours": 24, "reusable": False, **wrong}
    answer = admin_api.post(f"{ADMIN}registration-tokens/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert set(error_of(answer)["fields"]) == set(wrong)
    assert not RegistrationToken.objects.exists()  # nothing half-written


def test_the_same_values_well_typed_are_accepted(admin_api: APIClient) -> None:
    body = {"description": "7", "valid_hours": 24, "reusable": True, "approve_on_register": False}
    answer = admin_api.post(f"{ADMIN}registration-tokens/", body, format="json")
    assert answer.status_code == 201, answer.content


def test_an_attempt_of_the_wrong_type_is_refused(
    agent: RegisteredAgent, agent_api: Any, store: Any
) -> None:
    job, _ = job_inventory_request(store=store, source=Job.Source.API)
    assert job_lease_next(orchestrator=agent.orchestrator) == job
    answer = agent_api(agent).post(
        f"{AGENT}jobs/{job.pk}/inventory", {"attempt": True, "entries": []}, format="json"
    )
    assert answer.status_code == 400, answer.content
    assert "attempt" in error_of(answer)["message"]


def test_text_that_trims_to_nothing_is_refused_and_the_schema_says_so(
    admin_api: APIClient, schema: dict[str, Any]
) -> None:
    store_type = schema["components"]["schemas"]["StoreTypeRequest"]["properties"]
    assert store_type["name"].get("pattern") == getattr(api_schema, "NON_BLANK_TEXT_PATTERN", 0)
    assert "anyOf" in store_type["properties"]  # any JSON value but null
    answer = admin_api.post(
        f"{ADMIN}store-types/", {"short_name": "X1", "name": " \n\u3000"}, format="json"
    )
    assert answer.status_code == 400 and "name" in error_of(answer)["fields"]


# Query filters: an empty or out-of-range value was ignored, a long one cut short.


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("jobs/", {"store": ""}),
        ("jobs/", {"type": "no-such-type"}),
        ("certificates/", {"store": ""}),
        ("certificates/", {"expired": "null"}),
        ("handler-runs/", {"subject_id": "x" * 65}),
        ("handler-runs/", {"state": ""}),
        ("orchestrators/", {"status": ""}),
    ],
)
def test_a_filter_the_schema_calls_invalid_is_refused(
    admin_api: APIClient, path: str, query: dict[str, str]
) -> None:
    answer = admin_api.get(f"{ADMIN}{path}", query)
    assert answer.status_code == 400, answer.content


def test_filters_are_declared_with_their_real_types(schema: dict[str, Any]) -> None:
    assert _query_parameter(schema, "/api/v1/jobs/", "store")["format"] == "uuid"
    assert _query_parameter(schema, "/api/v1/certificates/", "store")["format"] == "uuid"
    assert _query_parameter(schema, "/api/v1/handler-runs/", "subject_id")["maxLength"] == 64
    expires = _query_parameter(schema, "/api/v1/certificates/", "expires_within_days")
    assert (expires["minimum"], expires["maximum"]) == (0, 36_500)


@pytest.mark.parametrize("wait", ["31", "-1", "+5", "1.0"])
def test_a_long_poll_wait_outside_0_to_30_is_refused(
    agent: RegisteredAgent, agent_api: Any, wait: str
) -> None:
    answer = agent_api(agent).get(f"{AGENT}jobs/next", {"wait": wait})
    assert answer.status_code == 400, answer.content
    assert "wait" in error_of(answer)["message"]


def test_every_check_schemathesis_has_runs_on_both_apis() -> None:
    from tests.certyard.api import test_api_schemathesis as run

    load_all_checks()
    assert {c.__name__ for c in run.CHECKS} >= set(REGISTERED_CHECKS.get_all_names())
    assert hasattr(run, "test_the_api_holds_up_over_chains_of_calls")  # the stateful phase


def test_revoking_an_agents_certificate_with_a_body_that_is_no_object_is_refused(
    admin_api: Any, agent: Any
) -> None:
    # The stateful phase found `[]` accepted as if no body had been sent (an empty list is
    # falsy): the schema says the body is an object.
    url = f"/api/v1/orchestrators/{agent.orchestrator.pk}/revoke-certificate/"

    answer = admin_api.post(url, [], format="json")

    assert answer.status_code == 400, answer.content
    assert admin_api.post(url, format="json").status_code == 200
