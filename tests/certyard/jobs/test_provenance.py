"""Job provenance: who asked for each job (schedule, person, API token, handler), what it
retries, and how handlers see it (``JobCompleteContext``, the ``job.completed`` event)."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from certyard.accounts.services import api_token_create
from certyard.errors import ServiceError
from certyard.inventory.services import store_schedule_inventory
from certyard.jobs.models import Job
from certyard.jobs.selectors import CHAIN_LIMIT, job_chain, job_provenance
from certyard.jobs.services import (
    job_complete,
    job_inventory_request,
    job_lease_next,
    job_request_for_handler,
    job_source_context,
)
from certyard.jobs.tasks import MAINTENANCE_SCHEDULE_NAME, maintenance
from certyard.workflows.actions import PlatformRequests, actions_apply
from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
from certyard.workflows.runner import event_runs_execute
from certyard.workflows.services import registration_save
from orchestrators.protocol import JobOutcome

pytestmark = pytest.mark.django_db


def _fail_for_good(job: Job, agent: Any) -> Event:
    """Lease the job and fail its only attempt: its ``job.completed`` event."""
    Job.objects.filter(pk=job.pk).update(max_attempts=1, available_at=timezone.now())
    assert job_lease_next(orchestrator=agent.orchestrator).pk == job.pk
    job_complete(
        orchestrator=agent.orchestrator, job_id=job.pk, outcome=JobOutcome.FAILURE, message="EIO"
    )
    return Event.objects.filter(kind="job.completed").latest("pk")


def _retry_registration(name: str = "retry once") -> HandlerRegistration:
    registration = HandlerRegistration(
        name=name, handler="example.retry_failed_inventory", job_types=["inventory"]
    )
    return registration_save(registration=registration, values={"delay_minutes": 1})


# --- Each source -----------------------------------------------------------------------------


def test_a_schedule_records_its_django_q2_schedule(store: Any) -> None:
    store_schedule_inventory(store=store, interval_minutes=60)
    maintenance()
    job = Job.objects.get()
    assert job.source == Job.Source.SCHEDULE
    assert job.source_detail == f"{MAINTENANCE_SCHEDULE_NAME}: every 60 min"
    assert job.retry_of is None and job.source_registration is None


def test_a_person_in_the_console_is_recorded_and_a_retry_names_the_retried_job(
    store: Any, superuser: Any
) -> None:
    client = Client()
    client.force_login(superuser)
    client.post(reverse("console:store-inventory-now", args=[store.pk]))
    job = Job.objects.get()
    assert (job.source, job.source_detail, job.requested_by) == ("admin", "root", superuser)

    Job.objects.filter(pk=job.pk).update(state=Job.State.FAILED, completed_at=timezone.now())
    response = client.post(reverse("console:job-retry", args=[job.pk]))
    retry = Job.objects.exclude(pk=job.pk).get()
    assert response.status_code == 302 and response["Location"].endswith(f"{retry.pk}/")
    assert (retry.source, retry.source_detail, retry.retry_of) == ("admin", "root", job)

    # Both pages show it: the retry links back, the first lists its retries.
    page = client.get(reverse("console:job-detail", args=[retry.pk])).content.decode()
    assert 'data-source="admin"' in page and "Admin by root" in page
    assert reverse("console:job-detail", args=[job.pk]) in page
    page = client.get(reverse("console:job-detail", args=[job.pk])).content.decode()
    assert 'data-testid="job-retries"' in page
    assert reverse("console:job-detail", args=[retry.pk]) in page


def test_an_api_token_is_recorded_by_name_and_prefix(store: Any, superuser: Any) -> None:
    token, value = api_token_create(user=superuser, name="ci pipeline", expires_in=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {value}")
    response = client.post(f"/api/v1/stores/{store.pk}/inventory-now/")
    assert response.status_code == 201, response.content
    job = Job.objects.get()
    expected = f"token ci pipeline ({token.token_key}…) of root"
    assert (job.source, job.source_detail) == ("api", expected)
    assert response.json()["source_detail"] == expected
    assert value not in job.source_detail  # the prefix only, never the token

    Job.objects.filter(pk=job.pk).update(state=Job.State.FAILED, completed_at=timezone.now())
    response = client.post(f"/api/v1/jobs/{job.pk}/retry/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["source"], body["source_detail"], body["retry_of"]) == (
        "api",
        expected,
        str(job.pk),
    )
    detail = client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert detail["retries"] == [body["id"]] and detail["retry_of"] is None
    assert detail["source_registration"] is None


def test_an_api_session_records_the_user_name(store: Any, admin_api: APIClient) -> None:
    assert admin_api.post(f"/api/v1/stores/{store.pk}/inventory-now/").status_code == 201
    assert Job.objects.values_list("source", "source_detail").get() == ("api", "root")


def test_a_handler_action_records_its_registration_and_what_it_retries(store: Any) -> None:
    registration = _retry_registration()
    first, _ = job_inventory_request(store=store, source=Job.Source.ADMIN)
    Job.objects.filter(pk=first.pk).update(state=Job.State.FAILED)
    platform = PlatformRequests(registration.name, registration.pk)

    job_id = platform.schedule_job(store_id=str(store.pk), job_type="inventory", retry_of=first.pk)

    assert uuid.UUID(job_id) and platform.actions[0]["job_id"] == job_id
    actions_apply(platform.actions)
    job = Job.objects.get(pk=job_id)  # created with the id the handler was given
    assert (job.source, job.source_detail) == ("handler", registration.name)
    assert job.source_registration == registration and job.retry_of == first
    assert "existing_job_id" not in platform.actions[0]
    assert list(first.retries.all()) == [job]


def test_work_done_for_a_handler_through_other_apps_records_it(store: Any) -> None:
    registration = _retry_registration()
    with job_source_context(detail=registration.name, registration_id=registration.pk):
        job, _ = job_inventory_request(store=store, source=Job.Source.HANDLER)
    assert (job.source_detail, job.source_registration) == (registration.name, registration)
    # Outside the block, nothing lingers.
    Job.objects.all().delete()
    job, _ = job_inventory_request(store=store, source=Job.Source.HANDLER)
    assert (job.source_detail, job.source_registration) == ("", None)


def test_the_returned_id_of_a_job_not_created_is_recorded_as_such(store: Any) -> None:
    """The store's open inventory job stands: the recorded action names it."""
    open_job, _ = job_inventory_request(store=store, source=Job.Source.SCHEDULE)
    platform = PlatformRequests("retry once")
    job_id = platform.schedule_job(store_id=str(store.pk), job_type="inventory")
    actions_apply(platform.actions)
    assert platform.actions[0]["existing_job_id"] == str(open_job.pk)
    assert not Job.objects.filter(pk=job_id).exists()
    open_job.refresh_from_db()
    assert (open_job.source, open_job.retry_of) == ("schedule", None)  # left as it was


def test_a_handler_cannot_name_a_job_that_does_not_exist(store: Any) -> None:
    platform = PlatformRequests("retry once")
    with pytest.raises(ValueError, match="retry_of must be a job's id"):
        platform.schedule_job(store_id=str(store.pk), job_type="inventory", retry_of="nope")
    with pytest.raises(ServiceError, match="there is no job"):
        job_request_for_handler(
            store_id=str(store.pk), job_type="inventory", retry_of=str(uuid.uuid4())
        )
    assert not Job.objects.exists()


def test_the_other_facade_actions_return_what_they_act_on() -> None:
    platform = PlatformRequests("approver")
    enrollment = str(uuid.uuid4())
    assert platform.approve_enrollment(enrollment_id=enrollment) == enrollment
    assert platform.deny_enrollment(enrollment_id=enrollment, comment="no") == enrollment
    assert platform.set_metadata(certificate_sha256="ab" * 32, values={}) is None
    assert platform.renew_certificate(certificate_sha256="ab" * 32) is None
    assert platform.renew_and_replace(certificate_sha256="ab" * 32) is None


# --- The chain, the event and the handler's context --------------------------------------------


def test_the_chain_follows_retry_of_back_oldest_first_and_at_most_20(store: Any) -> None:
    previous = None
    for n in range(CHAIN_LIMIT + 5):
        previous = Job.objects.create(
            type="inventory",
            store=store,
            orchestrator=store.orchestrator,
            state=Job.State.FAILED,
            outcome="failure",
            source="admin" if n == 0 else "handler",
            source_detail=f"step {n}",
            retry_of=previous,
            available_at=timezone.now(),
        )
    chain = job_chain(previous)
    assert len(chain) == CHAIN_LIMIT
    assert chain[-1] == {
        "id": str(previous.pk),
        "type": "inventory",
        "source": "handler",
        "source_detail": f"step {CHAIN_LIMIT + 4}",
        "state": "failed",
        "outcome": "failure",
        "retry_of": str(previous.retry_of_id),
    }
    assert [link["source_detail"] for link in chain] == [
        f"step {n}" for n in range(5, CHAIN_LIMIT + 5)
    ]
    assert all(a["id"] == b["retry_of"] for a, b in itertools.pairwise(chain))
    first = Job.objects.get(source_detail="step 0")
    assert job_chain(first) == [job_chain(first)[0]] and job_chain(first)[0]["retry_of"] is None


def test_the_completed_event_and_the_handler_get_the_provenance(store: Any, agent: Any) -> None:
    registration = _retry_registration()
    first, _ = job_inventory_request(store=store, source=Job.Source.ADMIN)
    event = _fail_for_good(first, agent)
    assert event.data["provenance"] == {
        "source": "admin",
        "source_detail": "",
        "retry_of": None,
        "chain": job_chain(Job.objects.get(pk=first.pk)),
    }

    event_runs_execute(event.pk)  # the real runner: event → run → action → job
    run = HandlerRun.objects.get(event=event)
    retry = Job.objects.get(pk=run.output["job_id"])
    assert run.output["actions"][0]["job_id"] == str(retry.pk)
    assert (retry.retry_of, retry.source_registration) == (first, registration)

    event = _fail_for_good(retry, agent)
    provenance = event.data["provenance"]
    assert provenance["source"] == "handler" and provenance["source_detail"] == "retry once"
    assert provenance["retry_of"] == str(first.pk)
    assert [(link["id"], link["state"]) for link in provenance["chain"]] == [
        (str(first.pk), "failed"),
        (str(retry.pk), "failed"),
    ]
    assert provenance == job_provenance(Job.objects.get(pk=retry.pk))
    event_runs_execute(event.pk)
    run = HandlerRun.objects.get(event=event)
    # The handler saw source, retry_of and the chain in its JobCompleteContext.
    assert run.output == {"first_job_id": str(first.pk), "jobs_in_chain": 2}
    assert Job.objects.count() == 2


def test_a_handler_run_records_the_open_job_that_stood_instead(store: Any, agent: Any) -> None:
    _retry_registration()
    first, _ = job_inventory_request(store=store, source=Job.Source.ADMIN)
    event = _fail_for_good(first, agent)
    standing, _ = job_inventory_request(store=store, source=Job.Source.SCHEDULE)
    event_runs_execute(event.pk)
    run = HandlerRun.objects.get(event=event)
    assert run.state == HandlerRun.State.SUCCEEDED, run.error
    [action] = run.output["actions"]
    assert action["existing_job_id"] == str(standing.pk)
    assert not Job.objects.filter(pk=action["job_id"]).exists()
    assert Job.objects.count() == 2


def test_django_admin_shows_the_provenance(store: Any, superuser: Any) -> None:
    registration = _retry_registration()
    first, _ = job_inventory_request(store=store, source=Job.Source.ADMIN, requested_by=superuser)
    Job.objects.filter(pk=first.pk).update(state=Job.State.FAILED)
    answer = job_request_for_handler(
        store_id=str(store.pk),
        job_type="inventory",
        job_id=str(uuid.uuid4()),
        retry_of=str(first.pk),
        by=registration.name,
        registration_id=registration.pk,
    )
    assert answer is None  # created: nothing to add to the action
    retry = Job.objects.get(retry_of=first)
    client = Client()
    client.force_login(superuser)
    listing = client.get(reverse("admin:jobs_job_changelist")).content.decode()
    assert "retry once" in listing
    page = client.get(reverse("admin:jobs_job_change", args=[first.pk])).content.decode()
    assert reverse("admin:jobs_job_change", args=[retry.pk]) in page  # its retries, linked
    page = client.get(reverse("admin:jobs_job_change", args=[retry.pk])).content.decode()
    assert "retry once" in page and str(first.pk) in page
