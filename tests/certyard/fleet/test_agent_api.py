"""The agent API over HTTP: the happy path, and bad input that must get a clear 4xx."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.fleet.services import orchestrator_approve
from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateStore,
    CertificateStoreType,
)
from certyard.inventory.services import store_create
from certyard.jobs.models import Job, JobHistory
from certyard.jobs.services import job_inventory_request
from tests.certs import Issued, agent_key, issue
from tests.certyard.conftest import AGENT, error_of, register_body
from tests.conftest import RegisteredAgent, entry

pytestmark = pytest.mark.django_db

BROKEN = {"alias": "broken", "private_key": False, "certificates": ["-----BEGIN CERTIFICATE-----"]}


def _job_url(job_id: object, what: str) -> str:
    return f"{AGENT}jobs/{job_id}/{what}"


def _locations(store: CertificateStore) -> dict[str, str]:
    return dict(
        CertificateLocation.objects.filter(store=store).values_list("alias", "certificate__sha256")
    )


@pytest.fixture
def client(agent: RegisteredAgent, agent_api: Callable[[RegisteredAgent], APIClient]) -> APIClient:
    """The approved agent's client, with an open session."""
    return agent_api(agent)


@pytest.fixture
def leased(client: APIClient, store: CertificateStore) -> Job:
    """An inventory job for ``store``, leased to the agent over the API."""
    job, _ = job_inventory_request(store=store, source=Job.Source.API)
    response = client.get(f"{AGENT}jobs/next", {"wait": 0})
    assert response.status_code == 200 and response.json()["id"] == str(job.pk)
    job.refresh_from_db()
    return job


def _recorded(store: CertificateStore, job: Job, certs: dict[str, Issued]) -> None:
    """Put ``certs`` in the store through a completed job, so a later report has history."""
    from certyard.jobs.services import job_complete, job_inventory_report

    job_inventory_report(
        orchestrator=job.orchestrator,
        job_id=job.pk,
        entries=[entry(alias, cert) for alias, cert in certs.items()],
    )
    job_complete(orchestrator=job.orchestrator, job_id=job.pk, outcome="success", message="")


def _next_leased(client: APIClient, store: CertificateStore) -> Job:
    job, created = job_inventory_request(store=store, source=Job.Source.API)
    assert created
    assert client.get(f"{AGENT}jobs/next", {"wait": 0}).status_code == 200
    job.refresh_from_db()
    return job


# --- Happy path ------------------------------------------------------------------------


def test_happy_path_from_registration_to_completion(api: APIClient, make_token) -> None:
    key = agent_key()
    registered = api.post(
        f"{AGENT}register", register_body(make_token(), "happy", key=key), format="json"
    )
    assert registered.status_code == 201, registered.content
    answer = registered.json()
    assert answer["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert len(answer["ca_chain"]) == 1 and "BEGIN CERTIFICATE" in answer["ca_chain"][0]
    orchestrator = Orchestrator.objects.get(pk=answer["orchestrator_id"])
    agent = RegisteredAgent(orchestrator, key)

    session = api.post(f"{AGENT}session", agent.assertion(), format="json")
    assert session.status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session.json()['token']}")

    heartbeat = client.post(f"{AGENT}heartbeat")
    assert heartbeat.status_code == 200
    assert heartbeat.json()["status"] == "new" and heartbeat.json()["server_time"]
    orchestrator_approve(orchestrator=orchestrator, actor=None)

    assert client.get(f"{AGENT}jobs/next", {"wait": 0}).status_code == 204

    store = store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        client_machine=orchestrator.client_machine,
        store_path="/srv/tls",
        orchestrator=orchestrator,
        properties={"recursive": True},
        password="store-secret-123",
    )
    job, created = job_inventory_request(store=store, source=Job.Source.API)
    assert created
    summary = client.get(f"{AGENT}jobs/next", {"wait": 0})
    assert summary.status_code == 200
    body = summary.json()
    assert body["id"] == str(job.pk) and body["type"] == "inventory" and body["attempt"] == 1
    assert body["lease_expires_at"]
    assert body["store"] == {
        "id": str(store.pk),
        "store_type": "PEM",
        "client_machine": orchestrator.client_machine,
        "store_path": "/srv/tls",
    }

    config = client.get(_job_url(job.pk, "config"))
    assert config.status_code == 200
    assert config.json()["job_id"] == str(job.pk) and config.json()["attempt"] == 1
    assert config.json()["store"]["store_path"] == "/srv/tls"
    assert config.json()["store"]["password"] == "store-secret-123"
    assert config.json()["store"]["properties"]["recursive"] is True

    ca = issue("Happy CA", ca=True)
    leaf = issue("happy.example.test", issuer=ca)
    report = client.post(
        _job_url(job.pk, "inventory"),
        {"entries": [entry("leaf", leaf, ca, private_key=True), entry("ca", ca)]},
        format="json",
    )
    assert report.status_code == 200, report.content
    counts = report.json()
    assert counts["duplicate"] is False
    assert (counts["added"], counts["changed"], counts["removed"]) == (2, 0, 0)
    assert counts["new_certificates"] == 2 and counts["rejected_count"] == 0
    assert _locations(store) == {"leaf": leaf.sha256, "ca": ca.sha256}

    done = client.post(
        _job_url(job.pk, "complete"), {"status": "success", "message": "ok"}, format="json"
    )
    assert done.status_code == 200
    assert done.json() == {
        "job_id": str(job.pk),
        "state": "succeeded",
        "acknowledged": True,
        "duplicate": False,
    }
    again = client.post(_job_url(job.pk, "complete"), {"status": "success"}, format="json")
    assert again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["state"] == "succeeded"
    assert JobHistory.objects.filter(job=job).count() == 1
    repeat = client.post(_job_url(job.pk, "inventory"), {"entries": []}, format="json")
    assert repeat.status_code == 200 and repeat.json()["duplicate"] is True
    assert len(_locations(store)) == 2


def test_config_without_a_password_says_none(client: APIClient, leased: Job) -> None:
    config = client.get(_job_url(leased.pk, "config"))

    assert config.status_code == 200
    assert config.json()["store"]["password"] is None


# --- Inventory reports with bad entries -------------------------------------------------


def test_malformed_pem_is_rejected_per_entry_and_valid_entries_are_recorded(
    client: APIClient,
    leased: Job,
    store: CertificateStore,
) -> None:
    good1, good2 = issue("g1.example.test"), issue("g2.example.test")
    entries = [entry("g1", good1), BROKEN, entry("g2", good2), {"alias": "no-certs"}]

    response = client.post(_job_url(leased.pk, "inventory"), {"entries": entries}, format="json")

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_entries"
    assert "2 of 4" in error["message"]
    assert [(r["index"], r["alias"]) for r in error["rejected"]] == [(1, "broken"), (3, "no-certs")]
    assert all(r["error"] for r in error["rejected"])
    body = response.json()
    assert body["added"] == 2 and body["rejected_count"] == 2 and body["duplicate"] is False
    assert _locations(store) == {"g1": good1.sha256, "g2": good2.sha256}
    leased.refresh_from_db()
    assert leased.report_received_at is not None
    assert leased.result["inventory"]["rejected_count"] == 2


def test_all_malformed_report_records_nothing_and_keeps_existing_locations(
    client: APIClient,
    leased: Job,
    store: CertificateStore,
) -> None:
    kept1, kept2 = issue("k1.example.test"), issue("k2.example.test")
    _recorded(store, leased, {"k1": kept1, "k2": kept2})
    job = _next_leased(client, store)
    entries = [{**BROKEN, "alias": "k1"}, {"alias": "k2", "certificates": "nope"}]

    response = client.post(_job_url(job.pk, "inventory"), {"entries": entries}, format="json")

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_entries" and "nothing was recorded" in error["message"]
    assert len(error["rejected"]) == 2
    assert response.json()["removed"] == 0 and response.json()["added"] == 0
    assert _locations(store) == {"k1": kept1.sha256, "k2": kept2.sha256}
    assert Certificate.objects.count() == 2


def test_all_malformed_report_at_other_aliases_keeps_existing_locations(
    client: APIClient,
    leased: Job,
    store: CertificateStore,
) -> None:
    kept1, kept2 = issue("k1.example.test"), issue("k2.example.test")
    _recorded(store, leased, {"k1": kept1, "k2": kept2})
    job = _next_leased(client, store)

    response = client.post(_job_url(job.pk, "inventory"), {"entries": [BROKEN]}, format="json")

    assert response.status_code == 422
    assert "nothing was recorded" in error_of(response)["message"]
    assert _locations(store) == {"k1": kept1.sha256, "k2": kept2.sha256}


@pytest.mark.parametrize(
    "body",
    ["{not json", '{"entries": [', "\x00\x01binary", ""],
    ids=["garbage", "truncated", "binary", "empty"],
)
def test_garbage_json_is_a_400_and_writes_nothing(
    client: APIClient,
    leased: Job,
    store: CertificateStore,
    body: str,
) -> None:
    response = client.post(_job_url(leased.pk, "inventory"), body, content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] in ("parse_error", "invalid")
    leased.refresh_from_db()
    assert leased.report_received_at is None and leased.state == Job.State.LEASED
    assert not CertificateLocation.objects.exists() and not Certificate.objects.exists()


@pytest.mark.parametrize(
    "body",
    [[], {"entries": "x"}, {"entries": {"a": 1}}, {"items": []}, "entries", 42],
    ids=["list", "entries-string", "entries-object", "no-entries", "string", "number"],
)
def test_inventory_body_of_the_wrong_shape_is_a_400(
    client: APIClient,
    leased: Job,
    body: object,
) -> None:
    response = client.post(
        _job_url(leased.pk, "inventory"), json.dumps(body), content_type="application/json"
    )

    assert response.status_code == 400
    assert "entries" in error_of(response)["message"]
    leased.refresh_from_db()
    assert leased.report_received_at is None


@pytest.mark.parametrize("path", ["complete", "session", "register"])
def test_garbage_json_elsewhere_is_a_400(
    client: APIClient,
    leased: Job,
    make_token,
    path: str,
) -> None:
    url = _job_url(leased.pk, "complete") if path == "complete" else f"{AGENT}{path}"
    token = make_token()

    for body in ("{not json", "[1, 2]", '"text"'):
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 400, (path, body)
        assert error_of(response)["code"] in ("parse_error", "invalid")

    leased.refresh_from_db()
    assert leased.state == Job.State.LEASED
    assert Orchestrator.objects.count() == 1
    assert RegistrationToken.objects.get(token_prefix=token[:8]).use_count == 0


def test_inventory_over_the_byte_limit_is_a_413_and_writes_nothing(
    client: APIClient,
    leased: Job,
    store: CertificateStore,
    settings,
) -> None:
    settings.CERTYARD_INVENTORY_MAX_BYTES = 2048
    entries = [entry(f"e{i}", issue(f"e{i}.example.test")) for i in range(4)]
    assert len(json.dumps({"entries": entries})) > 2048

    response = client.post(_job_url(leased.pk, "inventory"), {"entries": entries}, format="json")

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "too_large" and "CERTYARD_INVENTORY_MAX_BYTES" in error["message"]
    leased.refresh_from_db()
    assert leased.report_received_at is None and leased.result == {}
    assert not CertificateLocation.objects.exists() and not Certificate.objects.exists()
    # The job still takes a report that fits.
    fits = client.post(_job_url(leased.pk, "inventory"), {"entries": entries[:1]}, format="json")
    assert fits.status_code == 200 and fits.json()["added"] == 1


def test_inventory_over_the_entry_limit_is_a_413_and_writes_nothing(
    client: APIClient,
    leased: Job,
    settings,
) -> None:
    settings.CERTYARD_INVENTORY_MAX_ENTRIES = 2
    cert = issue("many.example.test")
    entries = [entry(f"m{i}", cert) for i in range(3)]

    response = client.post(_job_url(leased.pk, "inventory"), {"entries": entries}, format="json")

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "too_large" and "CERTYARD_INVENTORY_MAX_ENTRIES" in error["message"]
    leased.refresh_from_db()
    assert leased.report_received_at is None
    assert not CertificateLocation.objects.exists() and not Certificate.objects.exists()
    fits = client.post(_job_url(leased.pk, "inventory"), {"entries": entries[:2]}, format="json")
    assert fits.status_code == 200


def _nul_alias_entries(good: Issued) -> list[Any]:
    return [entry("bad\x00alias", issue("nul-alias.example.test")), entry("good", good)]


def _nul_common_name_entries(good: Issued) -> list[Any]:
    return [entry("nul-cn", issue("evil.example.test\x00.attacker.test")), entry("good", good)]


@pytest.mark.parametrize(
    "make_entries",
    [
        pytest.param(
            _nul_alias_entries,
            id="nul-in-alias",
        ),
        pytest.param(
            _nul_common_name_entries,
            id="nul-in-common-name",
        ),
    ],
)
def test_text_the_database_cannot_hold_does_not_fail_the_report(
    client: APIClient,
    leased: Job,
    store: CertificateStore,
    make_entries: Callable[[Issued], list[Any]],
) -> None:
    good = issue("good.example.test")

    response = client.post(
        _job_url(leased.pk, "inventory"), {"entries": make_entries(good)}, format="json"
    )

    # Rejecting the odd entry or recording it are both fine; a server error is not.
    assert response.status_code in (200, 422)
    assert _locations(store)["good"] == good.sha256


def test_alias_with_a_lone_surrogate_does_not_fail_the_report(
    client: APIClient,
    leased: Job,
    store: CertificateStore,
) -> None:
    good = issue("good.example.test")
    bad = {"alias": "bad\ud800", "certificates": [issue("x.example.test").pem]}
    # json.dumps escapes the lone surrogate as \ud800: valid JSON, as an agent could send it.
    body = json.dumps({"entries": [bad, entry("good", good)]})
    assert "\\ud800" in body

    response = client.post(_job_url(leased.pk, "inventory"), body, content_type="application/json")

    assert response.status_code in (200, 422)
    assert _locations(store)["good"] == good.sha256


# --- Jobs that are not yours, or not there ------------------------------------------------


@pytest.mark.parametrize("what", ["config", "inventory", "complete"])
def test_unknown_job_id_is_a_json_404(client: APIClient, what: str) -> None:
    url = _job_url(uuid.uuid4(), what)
    body = {"entries": []} if what == "inventory" else {"status": "success"}

    response = client.get(url) if what == "config" else client.post(url, body, format="json")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize("job_id", ["not-a-uuid", "123", "..", "%00"])
@pytest.mark.parametrize("what", ["config", "inventory", "complete"])
def test_job_id_that_is_not_a_uuid_is_a_json_404(client: APIClient, job_id: str, what: str) -> None:
    url = _job_url(job_id, what)

    response = client.get(url) if what == "config" else client.post(url, {}, format="json")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    assert b"<html" not in response.content.lower()


@pytest.mark.parametrize("what", ["config", "inventory", "complete"])
def test_another_orchestrators_job_is_a_404_and_stays_untouched(
    register_agent,
    pem_store,
    agent_api,
    what: str,
) -> None:
    owner, intruder = register_agent("owner"), register_agent("intruder")
    owner_store = pem_store(owner.orchestrator)
    job, _ = job_inventory_request(store=owner_store, source=Job.Source.API)
    assert agent_api(owner).get(f"{AGENT}jobs/next", {"wait": 0}).status_code == 200
    intruder_client = agent_api(intruder)
    url = _job_url(job.pk, what)

    if what == "config":
        response = intruder_client.get(url)
    elif what == "inventory":
        cert = issue("planted.example.test")
        response = intruder_client.post(url, {"entries": [entry("planted", cert)]}, format="json")
    else:
        response = intruder_client.post(url, {"status": "failure", "message": "x"}, format="json")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    assert "password" not in response.content.decode()
    job.refresh_from_db()
    assert job.state == Job.State.LEASED and job.report_received_at is None
    assert job.message == "" and job.outcome == ""
    assert not CertificateLocation.objects.exists()
    assert not Certificate.objects.exists()


def test_config_of_a_job_that_is_not_leased_is_a_409(
    client: APIClient, store: CertificateStore
) -> None:
    job, _ = job_inventory_request(store=store, source=Job.Source.API)

    response = client.get(_job_url(job.pk, "config"))

    assert response.status_code == 409
    assert error_of(response)["code"] == "not_leased"


def test_inventory_for_a_job_without_a_store_is_a_400(
    client: APIClient,
    agent: RegisteredAgent,
    store: CertificateStore,
) -> None:
    # Management jobs with a store report their re-read (tests/certyard/jobs/
    # test_management_jobs.py); a discovery job has no store to report.
    job = Job.objects.create(
        type="discovery", store=None, orchestrator=agent.orchestrator, available_at=timezone.now()
    )
    assert client.get(f"{AGENT}jobs/next", {"wait": 0}).json()["id"] == str(job.pk)

    response = client.post(
        _job_url(job.pk, "inventory"), {"entries": [entry("a", issue("a"))]}, format="json"
    )

    assert response.status_code == 400
    assert "without a store" in error_of(response)["message"]
    assert not CertificateLocation.objects.exists()


@pytest.mark.parametrize(
    "body",
    [{"status": "done"}, {}, {"status": "success", "message": ["a"]}],
    ids=["unknown-status", "missing-status", "message-not-text"],
)
def test_complete_with_a_bad_body_is_a_400(client: APIClient, leased: Job, body: dict) -> None:
    response = client.post(_job_url(leased.pk, "complete"), body, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and error["fields"]
    leased.refresh_from_db()
    assert leased.state == Job.State.LEASED


def test_wait_that_is_not_a_number_is_a_400(client: APIClient) -> None:
    response = client.get(f"{AGENT}jobs/next", {"wait": "soon"})

    assert response.status_code == 400
    assert "wait" in error_of(response)["message"]


# --- Registration tokens over HTTP ----------------------------------------------------


def test_expired_registration_token_is_a_json_401(api: APIClient, make_token) -> None:
    token = make_token()
    RegistrationToken.objects.update(expires_at=timezone.now() - dt.timedelta(minutes=1))

    response = api.post(f"{AGENT}register", register_body(token, "late"), format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "token_expired"
    assert not Orchestrator.objects.exists()


def test_used_registration_token_is_a_json_401(api: APIClient, make_token) -> None:
    token = make_token()
    assert (
        api.post(f"{AGENT}register", register_body(token, "a1"), format="json").status_code == 201
    )

    response = api.post(f"{AGENT}register", register_body(token, "a2"), format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "token_used"
    assert Orchestrator.objects.count() == 1


# --- Proof of key ------------------------------------------------------------------------


AGENT_CALLS = [
    ("post", "heartbeat"),
    ("get", "jobs/next"),
    ("get", "jobs/{job}/config"),
    ("post", "jobs/{job}/inventory"),
    ("post", "jobs/{job}/complete"),
]


@pytest.mark.parametrize(("method", "path"), AGENT_CALLS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer not-a-session-token",
        "Bearer",
        "Bearer a b",
        "Basic dXNlcjpwYXNz",
        "Token 0123456789abcdef0123456789abcdef01234567",
    ],
    ids=["none", "bogus-bearer", "bearer-alone", "bearer-two-parts", "basic", "drf-token"],
)
def test_calls_without_proof_of_key_are_refused_with_json(
    api: APIClient,
    leased: Job,
    method: str,
    path: str,
    authorization: str | None,
) -> None:
    url = f"{AGENT}{path.format(job=leased.pk)}"
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    body = {"entries": [entry("x", issue("x"))]} if "inventory" in path else {"status": "success"}

    response = getattr(api, method)(
        url, body if method == "post" else None, format="json", **headers
    )

    assert response.status_code in (401, 403)
    if authorization and authorization.startswith("Bearer"):
        assert response.status_code == 401
    assert error_of(response)["code"] in ("not_authenticated", "authentication_failed")
    leased.refresh_from_db()
    assert leased.state == Job.State.LEASED and leased.report_received_at is None
    assert not CertificateLocation.objects.exists()


def test_a_people_api_user_is_not_an_agent(admin_api: APIClient, leased: Job) -> None:
    response = admin_api.get(_job_url(leased.pk, "config"))

    assert response.status_code in (401, 403)
    assert error_of(response)["code"] in ("not_authenticated", "permission_denied")


def test_new_orchestrator_gets_403_on_jobs_next(register_agent, agent_api) -> None:
    waiting = register_agent("waiting", approved=False)
    client = agent_api(waiting)

    response = client.get(f"{AGENT}jobs/next", {"wait": 0})

    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "not_approved" and "approve" in error["message"]
    assert client.post(f"{AGENT}heartbeat").json()["status"] == "new"


def test_disapproved_orchestrator_gets_403_and_its_job_stays_pending(
    client: APIClient,
    agent: RegisteredAgent,
    store: CertificateStore,
) -> None:
    from certyard.fleet.services import orchestrator_disapprove

    job, _ = job_inventory_request(store=store, source=Job.Source.API)
    orchestrator_disapprove(orchestrator=agent.orchestrator, actor=None)

    response = client.get(f"{AGENT}jobs/next", {"wait": 0})

    assert response.status_code == 403
    assert error_of(response)["code"] == "not_approved"
    config = client.get(_job_url(job.pk, "config"))
    assert config.status_code == 403 and error_of(config)["code"] == "not_approved"
    report = client.post(_job_url(job.pk, "inventory"), {"entries": []}, format="json")
    assert report.status_code == 403
    job.refresh_from_db()
    assert job.state == Job.State.PENDING and job.attempts == 0
    assert job.report_received_at is None


def test_registration_attempts_are_rate_limited_per_address() -> None:
    from rest_framework.throttling import ScopedRateThrottle

    allowed = int(ScopedRateThrottle.THROTTLE_RATES["agent-register"].split("/")[0])
    client = APIClient()
    answers = [
        client.post(f"{AGENT}register", {"token": "cyreg_wrong"}, format="json")
        for _ in range(allowed + 1)
    ]

    assert {a.status_code for a in answers[:allowed]} == {400}
    assert answers[allowed].status_code == 429
    assert error_of(answers[allowed])["code"] == "throttled"
