"""schemathesis against the project's own OpenAPI schema, in-process: every operation of
both APIs, fed valid and invalid input, answers without a server error, only with the
statuses and content types the schema documents, with bodies and headers as it describes;
refuses what the schema says is invalid and accepts what it says is valid. Every check
schemathesis ships runs (``CHECKS``), in the example, coverage and fuzzing phases (one test
per operation) and in the stateful phase (chains of calls over the links between
operations, ``test_the_api_holds_up_over_chains_of_calls``).

The schema is generated here as `/api/schema/` serves it; the requests go through Django's
WSGI handler (the whole middleware stack, as a web server runs it) on the test database.
The people's API is called as a superuser (a session cookie and its CSRF token), the
agent API with the session token of a registered, approved orchestrator, with a store, a
certificate and jobs for ids to name. No operation is left out. Examples are bounded and
derandomized: the same cases every run. ``benchmarks/schemathesis_deep.py`` runs the same
tests deeper and counts what they did.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
from django.test import Client
from django.utils.crypto import get_random_string
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.parameters import ParameterLocation

from certyard.inventory.models import Certificate
from certyard.jobs.models import Job
from certyard.jobs.services import (
    job_complete,
    job_inventory_report,
    job_inventory_request,
    job_lease_next,
)
from orchestrators.protocol import API_PREFIX, MAX_POLL_WAIT_SECONDS
from tests.certs import issue
from tests.conftest import RegisteredAgent, entry

pytestmark = pytest.mark.django_db

# Per operation; with ~85 operations and every phase the whole run takes about a minute on
# two cores. A deeper run, random rather than the same cases each time:
# CERTYARD_SCHEMATHESIS_EXAMPLES=200 CERTYARD_SCHEMATHESIS_RANDOM=1 pytest <this file>
# (benchmarks/schemathesis_deep.py does that and counts what it did).
MAX_EXAMPLES = int(os.environ.get("CERTYARD_SCHEMATHESIS_EXAMPLES", "25"))
DETERMINISTIC = not os.environ.get("CERTYARD_SCHEMATHESIS_RANDOM")
# Scenarios of the stateful phase, each a chain of calls along the schema's links.
STATEFUL_EXAMPLES = int(os.environ.get("CERTYARD_SCHEMATHESIS_STATEFUL", str(MAX_EXAMPLES)))
# Calls per scenario at most.
STATEFUL_STEPS = 10

# Every check schemathesis has (`--checks all`): a newer schemathesis that ships another
# one turns it on here too.
load_all_checks()
CHECKS = REGISTERED_CHECKS.get_all()

# Operations whose input, however well it matches the schema, can still be refused (400)
# for what no schema can say: that a named object exists, that a CSR or key is one, that
# the platform is set up for it. Everywhere else, input the schema calls valid is never a
# 400 (`positive_data_acceptance`), and input it calls invalid always is (or 401/403/404:
# `negative_data_rejection`).
BEYOND_THE_SCHEMA = {
    f"POST {API_PREFIX}register": "the CSR must be a PEM certificate signing request",
    f"POST {API_PREFIX}certificate": "the CSR must be a PEM certificate signing request",
    "POST /api/v1/blueprints/": "the orchestrator must exist",
    "POST /api/v1/cas/import/": "a PKCS#12 file, or a certificate and its private key",
    "GET /api/v1/certificates/": "metadata_field must name a metadata field",
    "PATCH /api/v1/certificates/{id}/metadata/": "each name a field, each value of its type",
    "POST /api/v1/enrollments/": "the template must exist, the CSR must be one",
    "POST /api/v1/enrollments/pfx/": "the template must exist and allow the subject",
    "POST /api/v1/metadata-fields/": "only a choice field has choices",
    "POST /api/v1/metadata/backfills/": "a metadata generator must be registered",
    "POST /api/v1/cas/": "the parent CA must exist",
    "POST /api/v1/store-types/": "each property declaration is checked for its type and name",
    "PUT /api/v1/store-types/{short_name}/": "each property declaration is checked, too",
    "PATCH /api/v1/store-types/{short_name}/": "each property declaration is checked, too",
    f"POST {API_PREFIX}jobs/{{job_id}}/inventory": "each entry's certificates must be PEM",
    "POST /api/v1/registration-tokens/": "the blueprint named must exist",
    # 400 not_registered: the orchestrator's state (a 409 would say it better; issue 15).
    "POST /api/v1/orchestrators/{id}/approve/": "the orchestrator must have registered",
    "POST /api/v1/stores/": "the store type and the orchestrator must exist",
    # Issue 21: OpenAPI 3.0 has no propertyNames; the size is of the whole object's JSON.
    "PATCH /api/v1/orchestrators/{id}/": "each metadata key a letter, then letters, digits, "
    "_, - or . (at most 64); no NUL in a value; at most 8 KiB of JSON",
    "PUT /api/v1/stores/{id}/": "the store type must exist and have the properties given",
    "PATCH /api/v1/stores/{id}/": "the store type must have the properties given",
    # Issue 16's operations. Their schemas say what is checked field by field; these are the
    # rules across fields, or on what exists, that no schema can say.
    f"POST {API_PREFIX}store-types": "a declaration's choices, defaults and depends_on fit "
    "its properties, and no property or store type is declared twice",
    "POST /api/v1/certificates/{id}/deployments/": "each store's type decides the alias and "
    "entry parameters it takes; a store_filter must match a store",
    "POST /api/v1/certificates/{id}/renew-and-replace/": "the template must exist",
    "POST /api/v1/orchestrators/{id}/discovery/": "each directory is an absolute path "
    "without '..' or control characters, each file pattern a file name",
    # Issue 17: a schema counts characters; the file system's limit is in bytes.
    f"POST {API_PREFIX}limits": "each store root is at most 4096 bytes in UTF-8",
}
# What input the schema calls valid may be answered: accepted, or refused for who asks,
# what exists, or the object's state (never a 400, which says the input was wrong).
_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]
_ACCEPTED_OR_REFUSED_BEYOND_THE_SCHEMA = [*_ACCEPTED, "400"]
# A report whose every entry is refused is a 422 naming each entry and why (documented).
_ALSO_REFUSED_AS = {f"POST {API_PREFIX}jobs/{{job_id}}/inventory": ["422"]}
# A PKCS#12 is handed out once: collecting it again is 410 Gone, whatever the body.
_ALSO_REFUSED_AS["POST /api/v1/enrollments/{id}/collect/"] = ["410"]

_CONFIG = {
    "operations": [
        {
            "include-name": name,
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": [
                        *(
                            _ACCEPTED_OR_REFUSED_BEYOND_THE_SCHEMA
                            if name in BEYOND_THE_SCHEMA
                            else _ACCEPTED
                        ),
                        *_ALSO_REFUSED_AS.get(name, []),
                    ]
                }
            },
        }
        for name in sorted(set(BEYOND_THE_SCHEMA) | set(_ALSO_REFUSED_AS))
    ],
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "deterministic": DETERMINISTIC,
        # Our credentials only (the auth provider below): made-up ones would only ever be
        # answered 401. Whether each operation refuses none or wrong ones is `ignored_auth`.
        "with-security-parameters": False,
        # No NUL characters in generated text: the APIs refuse a NUL anywhere in a body or
        # query string (400, tests/certyard/api/test_nul_characters.py), which an open object's
        # schema (additionalProperties) cannot say of the keys and values it allows.
        "allow-x00": False,
    },
    "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
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
# Not when the path itself is the invalid part of the case: swapped, it would be valid.
_EXISTING: dict[str, list[str]] = {}


@schema.hook("flatmap_case")
def _sometimes_an_existing_object(context: Any, case: Any) -> Any:
    existing = next((ids for prefix, ids in _EXISTING.items() if case.path.startswith(prefix)), [])
    parameters = dict(case.path_parameters or {})
    negative_path = case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH)
    if not existing or len(parameters) != 1 or negative_path:
        return st.just(case)
    (name,) = parameters

    def naming(value: Any) -> Any:
        case.path_parameters = {name: value}
        return case

    return st.sampled_from([parameters[name], *existing]).map(naming)


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


# The current test's credentials, set by the `credentials` fixture.
_CREDENTIALS: list[Credentials] = []


# Given to schemathesis as the credentials of every case, it knows them for ours: its
# `ignored_auth` check then sends each call again without them and with wrong ones, and
# expects a 401 or 403. Not cached: each test opens sessions of its own.
@schema.auth(refresh_interval=None)
class _OurCredentials:
    def get(self, case: Any, context: Any) -> Credentials | None:
        return _CREDENTIALS[-1] if _CREDENTIALS else None

    def set(self, case: Any, data: Credentials, context: Any) -> None:
        headers, cookies = data.for_path(case.path)
        case.headers = {**(case.headers or {}), **headers}
        case.cookies = {**(case.cookies or {}), **cookies}


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
            # Queued only (no worker runs in this test): the 202 path, not just the 404.
            "/api/v1/scheduled-tasks/{name}": ["crl-refresh", "expiry-scan"],
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
    _CREDENTIALS.append(Credentials(cookies, csrf_secret, opened.json()["token"]))
    try:
        yield _CREDENTIALS[-1]
    finally:
        _CREDENTIALS.clear()
        _EXISTING.clear()
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _bounded_long_poll(case: Any) -> None:
    """`jobs/next?wait=N` waits up to N seconds (30 at most) when no job is there; whole
    numbers from 2 to 30 become 1, so a run is not mostly sleeping. Everything else about
    the parameter (above 30, negative, not a number) is sent as generated, to be refused;
    waiting itself has tests of its own (the long-poll tests)."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int) and not isinstance(wait, bool) and 1 < wait <= MAX_POLL_WAIT_SECONDS:
        case.query["wait"] = 1


@dataclass
class RunFigures:
    """What a run did, for benchmarks/schemathesis_deep.py (CERTYARD_SCHEMATHESIS_FIGURES
    names the JSON file to write them to)."""

    operations: set[str] = field(default_factory=set)
    calls_by_phase: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    scenarios: int = 0
    # Distinct (check, operation): Hypothesis replays and shrinks a failing case many times.
    failures: set[tuple[str, str]] = field(default_factory=set)

    def save(self) -> None:
        if path := os.environ.get("CERTYARD_SCHEMATHESIS_FIGURES"):
            Path(path).write_text(
                json.dumps(
                    {
                        "operations": sorted(self.operations),
                        "calls_by_phase": dict(self.calls_by_phase),
                        "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                        "stateful_scenarios": self.scenarios,
                        "failures": sorted(self.failures),
                    }
                )
            )


FIGURES = RunFigures()


def _call(case: Any) -> Any:
    if case.path == f"{API_PREFIX}jobs/next":
        _bounded_long_poll(case)
    if not case._has_explicit_auth and _CREDENTIALS:
        # The coverage phase's cases are made as the module loads, before any test has
        # credentials: they get ours here, as the auth provider gives them to the others.
        _OurCredentials().set(case, _CREDENTIALS[-1], None)
        case._has_explicit_auth = True
    response = case.call()
    FIGURES.operations.add(case.operation.label)
    phase = case.meta.phase.name.value if case.meta is not None else "explicit"
    FIGURES.calls_by_phase[phase] += 1
    FIGURES.statuses[response.status_code] += 1
    return response


def _validate(case: Any, response: Any, **kwargs: Any) -> None:
    try:
        case.validate_response(response, checks=CHECKS, **kwargs)
    except FailureGroup as group:
        FIGURES.failures.update((f.title, case.operation.label) for f in group.exceptions)
        raise
    except Failure as failure:
        FIGURES.failures.add((failure.title, case.operation.label))
        raise
    finally:
        FIGURES.save()


@schema.parametrize()
def test_the_api_answers_as_its_schema_says(case: Any, credentials: Credentials) -> None:
    _validate(case, _call(case))


class _Workflow(schema.as_state_machine()):  # type: ignore[misc]
    """Chains of calls along the schema's links (the ids one answer gives, the next call
    names), every check on each answer; the use-after-free and resource-availability
    checks look back along the chain."""

    def setup(self) -> None:
        FIGURES.scenarios += 1
        # Each scenario starts from the same database: what one created is gone before the
        # next, so the answers (and so what hypothesis draws from them) repeat when it
        # replays a scenario to shrink it, instead of depending on the scenarios before.
        self._savepoint = transaction.savepoint()

    def teardown(self) -> None:
        transaction.savepoint_rollback(self._savepoint)

    def call(self, case: Any, **kwargs: Any) -> Any:
        return _call(case)

    def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
        _validate(case, response, recorder=self.recorder)


def test_the_api_holds_up_over_chains_of_calls(credentials: Credentials) -> None:
    _Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_EXAMPLES,
            derandomize=DETERMINISTIC,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            stateful_step_count=STATEFUL_STEPS,
            database=None,
        )
    )


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
