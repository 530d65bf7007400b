"""schemathesis against the project's own OpenAPI schema, in-process: every operation of
both APIs, fed valid and invalid input, answers without a server error, only with the
statuses and content types the schema documents, with bodies and headers as it describes.

The schema is generated here as `/api/schema/` serves it; the requests go through Django's
WSGI handler (the whole middleware stack, as a web server runs it) on the test database.
The people's API is called as a superuser (a session cookie and its CSRF token), the
agent API with the session token of a registered, approved orchestrator, with a store, a
certificate and jobs for ids to name. No operation is left out. Examples are bounded and
derandomized: the same cases every run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
from django.test import Client
from django.utils.crypto import get_random_string
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from certyard.inventory.models import Certificate
from certyard.jobs.models import Job
from certyard.jobs.services import (
    job_complete,
    job_inventory_report,
    job_inventory_request,
    job_lease_next,
)
from orchestrators.protocol import API_PREFIX
from tests.certs import issue
from tests.conftest import RegisteredAgent, entry

pytestmark = pytest.mark.django_db

# Per operation; with ~40 operations and both generation modes the whole run takes well
# under a minute on two cores. A deeper run, random rather than the same cases each time:
# CERTYARD_SCHEMATHESIS_EXAMPLES=200 CERTYARD_SCHEMATHESIS_RANDOM=1 pytest <this file>
MAX_EXAMPLES = int(os.environ.get("CERTYARD_SCHEMATHESIS_EXAMPLES", "25"))
DETERMINISTIC = not os.environ.get("CERTYARD_SCHEMATHESIS_RANDOM")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

_CONFIG = {
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "deterministic": DETERMINISTIC,
        # Our credentials only: made-up ones would only ever be answered 401.
        "with-security-parameters": False,
    },
    "suppress-health-check": ["all"],
}


def _api_schema() -> Any:
    document = SchemaGenerator().get_schema(request=None, public=True)
    # As the schema view serves it: plain JSON, nothing lazy left in it.
    raw = json.loads(OpenApiJsonRenderer().render(document, renderer_context={}))
    loaded = schemathesis.openapi.from_dict(raw, config=SchemathesisConfig.from_dict(_CONFIG))
    loaded.app = WSGIHandler()
    return loaded


# Loaded as the module is collected (one test per operation). Not through a fixture
# (schemathesis.pytest.from_fixture): with pytest 9 that integration fails on
# ``Function._nodeid``, which pytest no longer has.
schema = _api_schema()

# Objects in the test's database, by the path that names them. A generated id names none
# of them, so most of the time a path parameter is swapped for one that does: the calls
# then get past the 404 into the views and services, the rest of the request still fuzzed.
_EXISTING: dict[str, list[str]] = {}


@schema.hook("flatmap_path_parameters")
def _sometimes_an_existing_object(context: Any, path_parameters: dict[str, Any]) -> Any:
    path = context.operation.path
    existing = next((ids for prefix, ids in _EXISTING.items() if path.startswith(prefix)), [])
    if not existing or len(path_parameters or {}) != 1:
        return st.just(path_parameters)
    (name,) = path_parameters
    return st.sampled_from([path_parameters, *({name: value} for value in existing)])


@dataclass
class Credentials:
    session_cookies: dict[str, str]
    csrf_token: str
    agent_token: str

    def for_path(self, path: str) -> tuple[dict[str, str], dict[str, str]]:
        """The headers and cookies to send to an operation on ``path``."""
        if path.startswith(API_PREFIX):
            return {"Authorization": f"Bearer {self.agent_token}"}, {}
        return {"X-CSRFToken": self.csrf_token}, self.session_cookies


@pytest.fixture
def credentials(
    db: None, superuser: Any, register_agent: Any, pem_store: Any
) -> Iterator[Credentials]:
    people = Client()
    people.force_login(superuser)
    csrf_secret = get_random_string(CSRF_SECRET_LENGTH, allowed_chars=CSRF_ALLOWED_CHARS)
    cookies = {
        settings.SESSION_COOKIE_NAME: people.cookies[settings.SESSION_COOKIE_NAME].value,
        settings.CSRF_COOKIE_NAME: csrf_secret,
    }
    agent: RegisteredAgent = register_agent("schemathesis-agent")
    orchestrator = agent.orchestrator
    store = pem_store(orchestrator)
    # A finished inventory job that recorded a certificate, and one leased to the agent.
    finished, _ = job_inventory_request(store=store, source=Job.Source.API)
    assert job_lease_next(orchestrator=orchestrator) == finished
    certificate = issue("schemathesis.example.test")
    job_inventory_report(
        orchestrator=orchestrator, job_id=finished.pk, entries=[entry("a", certificate)]
    )
    job_complete(orchestrator=orchestrator, job_id=finished.pk, outcome="success", message="")
    leased, _ = job_inventory_request(store=store, source=Job.Source.API)
    assert job_lease_next(orchestrator=orchestrator) == leased
    jobs = [str(finished.pk), str(leased.pk)]
    _EXISTING.update(
        {
            "/api/v1/stores/{id}": [str(store.pk)],
            "/api/v1/orchestrators/{id}": [str(orchestrator.pk)],
            "/api/v1/jobs/{id}": jobs,
            "/api/v1/certificates/{id}": [
                str(Certificate.objects.get(sha256=certificate.sha256).pk)
            ],
            "/api/v1/registration-tokens/{id}": [str(orchestrator.registration_token_id)],
            "/api/v1/store-types/{short_name}": ["PEM"],
            f"{API_PREFIX}jobs/{{job_id}}": jobs,
        }
    )
    opened = APIClient().post(f"{API_PREFIX}session", agent.assertion(), format="json")
    assert opened.status_code == 200, opened.content
    # Django's test client keeps request_finished from closing the connection that holds
    # the test's transaction, around each of its own requests; a bare WSGI handler needs
    # the same for as long as the test runs (after the test client's last request).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield Credentials(cookies, csrf_secret, opened.json()["token"])
    finally:
        _EXISTING.clear()
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _bounded_long_poll(case: Any) -> None:
    """`jobs/next?wait=N` waits up to N seconds (30 at most) when no job is there; whole
    numbers above 1 become 1, so a run is not mostly sleeping. Everything else about the
    parameter (negative numbers, not a number) is sent as generated; waiting itself has
    tests of its own (the long-poll tests)."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int) and not isinstance(wait, bool) and wait > 1:
        case.query["wait"] = 1


@schema.parametrize()
def test_the_api_answers_as_its_schema_says(case: Any, credentials: Credentials) -> None:
    if case.path == f"{API_PREFIX}jobs/next":
        _bounded_long_poll(case)
    headers, cookies = credentials.for_path(case.path)
    response = case.call(headers=headers, cookies=cookies)
    case.validate_response(response, checks=CHECKS, headers=headers)


# What schemathesis found, pinned here so a derandomized run need not find it again.


def test_a_chunk_index_beyond_what_the_database_holds_is_refused(
    agent: RegisteredAgent, agent_api: Any, store: Any
) -> None:
    """A first_index past 32 bits was a 500 on PostgreSQL (the staged entries' position)."""
    job, _ = job_inventory_request(store=store, source=Job.Source.API)
    assert job_lease_next(orchestrator=agent.orchestrator) == job
    answer = agent_api(agent).post(
        f"{API_PREFIX}jobs/{job.pk}/inventory/chunks",
        {"sequence": 0, "first_index": 2**40, "entries": []},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert set(answer.json()["error"]["fields"]) == {"first_index"}


def test_answers_schemathesis_found_undocumented_are_documented() -> None:
    paths = schema.raw_schema["paths"]
    # A DER download is application/pkix-cert, not PEM.
    download = paths["/api/v1/certificates/{id}/download/"]["get"]["responses"]["200"]
    assert set(download["content"]) == {"application/x-pem-file", "application/pkix-cert"}
    # An open job's outcome is "" (blank), which the enum alone left out.
    for name in ("Job", "JobHistory"):
        outcome = schema.raw_schema["components"]["schemas"][name]["properties"]["outcome"]
        assert {"$ref": "#/components/schemas/BlankEnum"} in outcome["oneOf"], name
