"""Handler registrations and runs on the people's API: read-only, never a secret."""

from __future__ import annotations

import json
from typing import Any

import pytest

from certyard.workflows.models import HandlerRegistration
from certyard.workflows.runner import event_runs_execute
from certyard.workflows.services import event_emit, registration_save
from handlers.base import EventKind
from tests.certyard.conftest import error_of

pytestmark = pytest.mark.django_db

SECRET = "webhook-secret-not-for-the-api-4711"


@pytest.fixture
def failed_run() -> HandlerRegistration:
    """A webhook registration with a secret, and a raising handler that ran once."""
    registration_save(
        registration=HandlerRegistration(name="hook", handler="certyard.webhook"),
        values={"url": "https://hooks.example.test/x", "secret": SECRET},
    )
    HandlerRegistration.objects.filter(name="hook").update(enabled=False)
    raising = registration_save(
        registration=HandlerRegistration(name="raises", handler="test.raises", max_attempts=1),
        values={},
    )
    event = event_emit(
        kind=EventKind.JOB_COMPLETED, subject_type="job", subject_id="j-1", subject_label="a job"
    )
    event_runs_execute(event.pk)
    return raising


def test_registrations_are_listed_without_their_secrets(admin_api: Any, failed_run: Any) -> None:
    answer = admin_api.get("/api/v1/handler-registrations/")
    assert answer.status_code == 200
    by_name = {r["name"]: r for r in answer.json()["results"]}
    assert by_name["hook"]["secrets_set"] == ["secret"]
    assert by_name["hook"]["parameters"]["url"] == "https://hooks.example.test/x"
    assert SECRET not in json.dumps(answer.json())


def test_runs_are_listed_filtered_and_shown_with_their_traceback(
    admin_api: Any, failed_run: HandlerRegistration
) -> None:
    listed = admin_api.get("/api/v1/handler-runs/", {"state": "failed", "subject_id": "j-1"})
    assert listed.status_code == 200
    [run] = listed.json()["results"]
    assert run["registration"] == failed_run.pk and run["event_kind"] == "job.completed"
    assert run["error"] == "RuntimeError: boom on job.completed"
    assert "traceback" not in run
    detail = admin_api.get(f"/api/v1/handler-runs/{run['id']}/").json()
    assert "boom on job.completed" in detail["traceback"]
    assert admin_api.get("/api/v1/handler-runs/", {"state": "succeeded"}).json()["count"] == 0
    by_registration = admin_api.get("/api/v1/handler-runs/", {"registration": failed_run.pk})
    assert by_registration.json()["count"] == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"state": "exploded"}, "state must be one of"),
        ({"kind": "nope"}, "kind must be one of"),
        ({"registration": "x"}, "registration must be a registration id"),
    ],
)
def test_a_bad_filter_is_a_clear_400(admin_api: Any, params: dict[str, str], message: str) -> None:
    answer = admin_api.get("/api/v1/handler-runs/", params)
    assert answer.status_code == 400
    assert message in error_of(answer)["message"]


def test_the_api_is_read_only_and_needs_the_view_permission(
    admin_api: Any, viewer_api: Any, nobody_api: Any, failed_run: HandlerRegistration
) -> None:
    assert viewer_api.get("/api/v1/handler-runs/").status_code == 200
    assert nobody_api.get("/api/v1/handler-runs/").status_code == 403
    assert nobody_api.get("/api/v1/handler-registrations/").status_code == 403
    created = admin_api.post("/api/v1/handler-registrations/", {"name": "x"}, format="json")
    assert created.status_code == 405
    assert admin_api.delete(f"/api/v1/handler-registrations/{failed_run.pk}/").status_code == 405
