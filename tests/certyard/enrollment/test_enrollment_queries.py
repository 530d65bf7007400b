"""The enrollment path's database round trips, pinned (issue 22).

``POST /api/v1/enrollments/`` with an API token, issued at once by a built-in CA, as an
API client automating renewals sends it. Transactional, so that the transactions are the
real ones and not the test's savepoints: the issuance is one transaction, and what runs
after it commits (the metadata generators' cursor, the delivery to target stores) costs
a query or two when there is nothing for it to do.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from certyard.accounts.services import api_token_create
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.pki import services as pki_services
from certyard.pki.models import KeyAlgorithm
from tests.certs import csr_for

# serialized_rollback: the database is left as it was found, as the suite's other
# transactional tests leave it (a plain flush would give content types new ids).
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# The statements of one enrollment, past the first (which records the token's first use):
# - the token lockout count (the cache) and the token with its user: authentication;
# - the template with its CA, the metadata fields required at enrollment;
# - in one transaction: the request, the CA's issued-certificate record, the inventory
#   (the known certificates, the new one, its id, the link to its issuer, the metadata
#   generators: none, so on SQLite the new-certificate cursor moves here), the event and
#   the event handlers it goes to;
# - after it: on PostgreSQL the cursor's move, whether anything waits for the
#   certificate (deployments, target stores), and the request as saved.
# On PostgreSQL the new certificate goes into the inventory by COPY, which Django's query
# log does not show: one statement fewer there.
ENROLLMENT_STATEMENTS = {"sqlite": 16, "postgresql": 15}
# With an Idempotency-Key: one more, the look-up of an earlier submission with the key.
# The key itself is taken by the request's insert, in the issuing transaction.
ENROLLMENT_STATEMENTS_WITH_KEY = {"sqlite": 17, "postgresql": 16}

_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


@pytest.fixture
def client(django_user_model: Any) -> APIClient:
    ca = pki_services.ca_create(name="Issuing", key_algorithm=KeyAlgorithm.EC_P256)
    Template.objects.create(name="web", ca=ca, allowed_domains=["example.test"])
    user = django_user_model.objects.create_superuser("automation", "a@example.test", "pw")
    _token, value = api_token_create(user=user, name="renewals", expires_in=dt.timedelta(days=1))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {value}")
    return api


def _enrolled(client: APIClient, name: str, **headers: str) -> tuple[list[str], dict]:
    body = {"template": "web", "csr": csr_for(name)}
    with CaptureQueriesContext(connection) as captured:
        answer = client.post("/api/v1/enrollments/", body, format="json", **headers)
    assert answer.status_code == 201, answer.content
    assert answer.json()["state"] == "issued"
    return [q["sql"] for q in captured.captured_queries], answer.json()


def _transactions(queries: list[str]) -> int:
    return sum(q.upper().startswith("BEGIN") for q in queries)


def _statements(queries: list[str]) -> list[str]:
    return [q for q in queries if not q.upper().startswith(_TRANSACTION_CONTROL)]


def test_an_enrollment_is_one_transaction_and_a_pinned_number_of_statements(
    client: APIClient,
) -> None:
    _enrolled(client, "first.example.test")
    for name in ("second.example.test", "third.example.test"):
        queries, answer = _enrolled(client, name)
        assert len(_statements(queries)) == ENROLLMENT_STATEMENTS[connection.vendor], "\n".join(
            queries
        )
        assert _transactions(queries) == 1, "\n".join(queries)
        assert answer["requested_by"] == "automation"
    assert EnrollmentRequest.objects.filter(state="issued").count() == 3


def test_an_enrollment_with_an_idempotency_key_adds_its_look_up_and_stays_one_transaction(
    client: APIClient,
) -> None:
    _enrolled(client, "first.example.test")
    queries, first = _enrolled(client, "keyed.example.test", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    assert len(_statements(queries)) == ENROLLMENT_STATEMENTS_WITH_KEY[connection.vendor], (
        "\n".join(queries)
    )
    assert _transactions(queries) == 1, "\n".join(queries)
    assert first["state"] == "issued"


def test_the_look_up_by_idempotency_key_reads_the_unique_index(client: APIClient) -> None:
    """Not every request of the requester: an automation account's thousands of earlier
    enrollments would each be read again by every new one."""
    _enrolled(client, "first.example.test", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    queries, _ = _enrolled(client, "keyed.example.test", HTTP_IDEMPOTENCY_KEY="plan-1")
    look_up = next(q for q in queries if q.startswith("SELECT") and "plan-1" in q)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {look_up}")
        else:  # a table this small is read whole unless told otherwise
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {look_up}")
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "enrollment_idempotency_key_per_requester" in plan, plan
