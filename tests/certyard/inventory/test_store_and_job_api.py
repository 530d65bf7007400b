"""The API's store edit and delete, job retry and cancel, and the non-conformant filter."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from certyard.inventory.ingest import inventory_submit
from certyard.inventory.models import Certificate, CertificateLocation, CertificateStore
from certyard.inventory.services import store_inventory_status_record
from certyard.jobs.models import Job
from certyard.jobs.services import (
    job_complete,
    job_inventory_request,
    job_lease_next,
    job_report_errors_record,
)
from certyard.x509 import der_to_pem, pem_to_der
from tests.certs import Issued, issue
from tests.certyard.conftest import ADMIN, error_of
from tests.conftest import entry

pytestmark = pytest.mark.django_db


def _nonconformant_pem(issued: Issued) -> str:
    """The certificate with its version field set to 6, which X.509 does not have."""
    der = pem_to_der(issued.pem)
    at = der.index(bytes.fromhex("a003020102"))
    return der_to_pem(der[:at] + bytes.fromhex("a003020105") + der[at + 5 :])


# --- Stores: status, edit, delete --------------------------------------------------------


def test_store_answer_includes_its_inventory_status(admin_api: APIClient, store) -> None:
    store_inventory_status_record(
        store_id=store.pk, status="failing", message="store path /etc/ssl/certs does not exist"
    )

    body = admin_api.get(f"{ADMIN}stores/{store.pk}/").json()

    assert body["inventory_status"] == "failing"
    assert body["inventory_message"] == "store path /etc/ssl/certs does not exist"
    assert body["inventory_checked_at"]


def test_patch_changes_only_the_fields_sent(admin_api: APIClient, store) -> None:
    url = f"{ADMIN}stores/{store.pk}/"
    scheduled = admin_api.patch(url, {"inventory_interval_minutes": 30}, format="json")
    assert scheduled.status_code == 200, scheduled.content
    assert scheduled.json()["inventory_interval_minutes"] == 30

    response = admin_api.patch(
        url,
        {"store_path": "/srv/moved", "properties": {"recursive": False}, "password": "pw-1"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["store_path"] == "/srv/moved"
    assert body["properties"]["recursive"] is False
    assert body["has_password"] is True and "password" not in body
    assert "pw-1" not in response.content.decode()
    assert body["inventory_interval_minutes"] == 30  # not sent: unchanged
    store.refresh_from_db()
    assert store.password == "pw-1"


def test_patch_null_interval_stops_the_schedule_and_empty_password_clears_it(
    admin_api: APIClient, store
) -> None:
    url = f"{ADMIN}stores/{store.pk}/"
    admin_api.patch(url, {"inventory_interval_minutes": 5, "password": "pw"}, format="json")

    response = admin_api.patch(
        url, {"inventory_interval_minutes": None, "password": ""}, format="json"
    )

    assert response.status_code == 200
    store.refresh_from_db()
    assert store.inventory_interval_minutes is None and store.inventory_next_run is None
    assert store.password == ""
    assert response.json()["has_password"] is False


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"properties": ["not", "an", "object"]}, 400, "invalid"),
        ({"properties": {"no_such_property": 1}}, 400, "invalid"),
        ({"properties": {"recursive": "yes"}}, 400, "invalid"),
        ({"store_path": "   "}, 400, "invalid"),
        ({"store_path": "x" * 2000}, 400, "invalid"),
        ({"inventory_interval_minutes": 0}, 400, "invalid"),
        ({"inventory_interval_minutes": "soon"}, 400, "invalid"),
    ],
)
def test_patch_with_bad_input_is_a_json_error_and_changes_nothing(
    admin_api: APIClient, store, body: dict[str, Any], status: int, code: str
) -> None:
    before = (store.store_path, store.properties)

    response = admin_api.patch(f"{ADMIN}stores/{store.pk}/", body, format="json")

    assert response.status_code == status, response.content
    assert error_of(response)["code"] == code
    store.refresh_from_db()
    assert (store.store_path, store.properties) == before


def test_patch_onto_another_stores_path_is_a_409(admin_api: APIClient, agent, pem_store) -> None:
    pem_store(agent.orchestrator, "/taken")
    other = pem_store(agent.orchestrator, "/free")

    response = admin_api.patch(
        f"{ADMIN}stores/{other.pk}/", {"store_path": "/taken"}, format="json"
    )

    assert response.status_code == 409
    assert error_of(response)["code"] == "duplicate"


def test_put_is_not_offered(admin_api: APIClient, store) -> None:
    response = admin_api.put(f"{ADMIN}stores/{store.pk}/", {"store_path": "/x"}, format="json")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_delete_forgets_the_store_and_its_locations_but_keeps_certificates(
    admin_api: APIClient, store, ca: Issued
) -> None:
    leaf = issue("deleted-store.example.test", issuer=ca, days=30)
    inventory_submit(store=store, entries=[entry("leaf", leaf, ca)])
    job_inventory_request(store=store, source=Job.Source.API)

    response = admin_api.delete(f"{ADMIN}stores/{store.pk}/")

    assert response.status_code == 204
    assert not CertificateStore.objects.filter(pk=store.pk).exists()
    assert not CertificateLocation.objects.exists()
    assert not Job.objects.exists()
    assert Certificate.objects.filter(sha256=leaf.sha256).exists()
    again = admin_api.delete(f"{ADMIN}stores/{store.pk}/")
    assert again.status_code == 404 and error_of(again)["code"] == "not_found"


@pytest.mark.parametrize("client_name", ["viewer_api", "nobody_api"])
def test_edit_and_delete_need_their_permissions(
    request: pytest.FixtureRequest, store, client_name: str
) -> None:
    client: APIClient = request.getfixturevalue(client_name)
    url = f"{ADMIN}stores/{store.pk}/"

    patched = client.patch(url, {"store_path": "/stolen"}, format="json")
    deleted = client.delete(url)

    assert patched.status_code == 403 and error_of(patched)["code"] == "permission_denied"
    assert deleted.status_code == 403 and error_of(deleted)["code"] == "permission_denied"
    store.refresh_from_db()
    assert store.store_path == "/etc/ssl/certs"


def test_create_on_a_machine_the_orchestrator_does_not_serve_names_the_field(
    admin_api: APIClient, agent
) -> None:
    response = admin_api.post(
        f"{ADMIN}stores/",
        {
            "store_type": "PEM",
            "client_machine": "elsewhere.example.test",
            "store_path": "/etc/pki",
            "orchestrator": str(agent.orchestrator.pk),
        },
        format="json",
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "wrong_machine"
    assert "client_machine" in error["fields"]


def test_create_without_a_client_machine_uses_the_orchestrators(
    admin_api: APIClient, agent
) -> None:
    response = admin_api.post(
        f"{ADMIN}stores/",
        {"store_type": "PEM", "store_path": "/etc/pki", "orchestrator": str(agent.orchestrator.pk)},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["client_machine"] == agent.orchestrator.client_machine
    assert response.json()["inventory_status"] == "never"


# --- Jobs: retry and cancel -----------------------------------------------------------------


@pytest.fixture
def failed_job(store, agent, settings) -> Job:
    """An inventory job that failed on its only attempt, with a failed report submission."""
    settings.CERTYARD_JOB_MAX_ATTEMPTS = 1
    job, _ = job_inventory_request(store=store, source=Job.Source.SCHEDULE)
    job_lease_next(orchestrator=agent.orchestrator)
    job.refresh_from_db()
    job_report_errors_record(job=job, errors=[{"at": "2025-01-01T00:00:00Z", "error": "HTTP 502"}])
    job, _ = job_complete(
        orchestrator=agent.orchestrator,
        job_id=job.pk,
        outcome="failure",
        message="store path /etc/ssl/certs does not exist",
    )
    assert job.state == Job.State.FAILED
    return job


def test_retry_of_a_failed_job_opens_a_new_one(
    admin_api: APIClient, failed_job: Job, superuser
) -> None:
    response = admin_api.post(f"{ADMIN}jobs/{failed_job.pk}/retry/")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] != str(failed_job.pk)
    # Asked through the API: its provenance says so, and names the job it retries.
    assert body["state"] == "pending" and body["source"] == "api"
    assert body["retry_of"] == str(failed_job.pk) and body["source_detail"] == "root"
    assert Job.objects.get(pk=body["id"]).requested_by == superuser
    failed_job.refresh_from_db()
    assert failed_job.state == Job.State.FAILED  # the failed job keeps its history

    # While that one is open, a retry answers with it instead of a second job.
    again = admin_api.post(f"{ADMIN}jobs/{failed_job.pk}/retry/")
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    assert Job.objects.count() == 2


def test_retry_of_an_open_job_is_a_409(admin_api: APIClient, store) -> None:
    job, _ = job_inventory_request(store=store, source=Job.Source.API)

    response = admin_api.post(f"{ADMIN}jobs/{job.pk}/retry/")

    assert response.status_code == 409
    assert error_of(response)["code"] == "not_finished"


def test_retry_and_cancel_need_change_permission(
    viewer_api: APIClient, nobody_api: APIClient, failed_job: Job
) -> None:
    for client in (viewer_api, nobody_api):
        for action in ("retry", "cancel"):
            response = client.post(f"{ADMIN}jobs/{failed_job.pk}/{action}/")
            assert response.status_code == 403, (action, response.status_code)
            assert error_of(response)["code"] == "permission_denied"
    assert Job.objects.count() == 1


def test_retry_and_cancel_of_an_unknown_job_are_json_404s(admin_api: APIClient) -> None:
    for action in ("retry", "cancel"):
        response = admin_api.post(f"{ADMIN}jobs/00000000-0000-4000-8000-000000000000/{action}/")
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"


def test_cancel_then_retry(admin_api: APIClient, store) -> None:
    job, _ = job_inventory_request(store=store, source=Job.Source.API)

    cancelled = admin_api.post(f"{ADMIN}jobs/{job.pk}/cancel/")
    retried = admin_api.post(f"{ADMIN}jobs/{job.pk}/retry/")

    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert retried.status_code == 201 and retried.json()["state"] == "pending"


def test_job_detail_lists_each_attempts_report_errors(
    admin_api: APIClient, failed_job: Job
) -> None:
    history = admin_api.get(f"{ADMIN}jobs/{failed_job.pk}/").json()["history"]

    assert history[0]["report_errors"] == [{"at": "2025-01-01T00:00:00Z", "error": "HTTP 502"}]


# --- Certificates: conformance ----------------------------------------------------------


@pytest.fixture
def mixed_inventory(store, ca: Issued) -> dict[str, Issued]:
    good = issue("good.example.test", issuer=ca, days=30, sans=("good.example.test",))
    odd = issue("odd.example.test", issuer=ca, days=60, sans=("odd.example.test",))
    entries = [
        entry("good", good),
        {"alias": "odd", "private_key": False, "certificates": [_nonconformant_pem(odd)]},
    ]
    outcome = inventory_submit(store=store, entries=entries)
    assert not outcome.rejected
    return {"good": good, "odd": odd}


def _common_names(response: Any) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["common_name"] for row in response.json()["results"]}


def test_conformant_filter(admin_api: APIClient, mixed_inventory) -> None:
    url = f"{ADMIN}certificates/"
    assert _common_names(admin_api.get(url, {"conformant": "false"})) == {"odd.example.test"}
    assert _common_names(admin_api.get(url, {"conformant": "true"})) == {"good.example.test"}
    assert _common_names(admin_api.get(url)) == {"good.example.test", "odd.example.test"}


def test_bad_conformant_value_is_a_json_400(admin_api: APIClient, mixed_inventory) -> None:
    response = admin_api.get(f"{ADMIN}certificates/", {"conformant": "maybe"})
    assert response.status_code == 400
    assert "conformant" in error_of(response)["fields"]


def test_certificate_answers_carry_conformance_and_details(
    admin_api: APIClient, mixed_inventory
) -> None:
    listed = admin_api.get(f"{ADMIN}certificates/", {"conformant": "false"}).json()["results"]
    assert listed[0]["conformant"] is False
    assert listed[0]["parse_warnings"] and "version" in listed[0]["parse_warnings"][0]

    detail = admin_api.get(f"{ADMIN}certificates/{listed[0]['id']}/").json()

    assert detail["conformant"] is False
    assert detail["parse_warnings"] == listed[0]["parse_warnings"]
    details = detail["details"]
    assert details["sans"] == {"DNS names": ["odd.example.test"]}
    for key in (
        "key_usage",
        "extended_key_usage",
        "basic_constraints",
        "policies",
        "authority_information_access",
        "crl_distribution_points",
        "other_extensions",
        "warnings",
    ):
        assert key in details, key
    assert details["warnings"]
