"""The job lifecycle at the service level, and the maintenance task that drives it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.fleet.services import (
    orchestrator_approve,
    orchestrator_disapprove,
    orchestrator_reset,
)
from certyard.inventory.models import CertificateLocation
from certyard.inventory.services import store_schedule_inventory
from certyard.jobs.models import Job, JobHistory
from certyard.jobs.services import (
    job_cancel,
    job_complete,
    job_configuration,
    job_inventory_report,
    job_inventory_request,
    job_lease_next,
)
from certyard.jobs.tasks import maintenance
from orchestrators.protocol import JobOutcome, JobType
from tests.certs import issue
from tests.conftest import entry

pytestmark = pytest.mark.django_db


def _lapse(job: Job) -> None:
    """Let the job's lease run out, as if the agent went silent."""
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))


def _leased_and_picked_up(orchestrator: Any) -> Job | None:
    """Lease the next job and fetch its configuration, as the agent does."""
    job = job_lease_next(orchestrator=orchestrator)
    if job is not None:
        job_configuration(orchestrator=orchestrator, job_id=job.pk)
    return job


def _make_available(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(available_at=timezone.now() - dt.timedelta(seconds=1))


def _open_job(store) -> Job:
    job, created = job_inventory_request(store=store, source=Job.Source.ADMIN)
    assert created
    return job


# --- Schedules ------------------------------------------------------------------------


def test_due_schedule_opens_exactly_one_job_and_not_another_while_it_is_open(store) -> None:
    store_schedule_inventory(store=store, interval_minutes=60)

    first = maintenance()

    assert first["scheduled_jobs"] == 1
    job = Job.objects.get()
    assert (job.type, job.state, job.source) == (JobType.INVENTORY, Job.State.PENDING, "schedule")
    assert job.store == store and job.orchestrator == store.orchestrator
    store.refresh_from_db()
    assert store.inventory_next_run > timezone.now() + dt.timedelta(minutes=59)

    # Due again while the first job is still open (pending, then leased): no second job.
    for _ in range(2):
        type(store).objects.filter(pk=store.pk).update(
            inventory_next_run=timezone.now() - dt.timedelta(minutes=1)
        )
        assert maintenance()["scheduled_jobs"] == 0
        assert Job.objects.count() == 1
        job_lease_next(orchestrator=store.orchestrator)

    # Once it is finished, the next due run opens a new job.
    job_complete(
        orchestrator=store.orchestrator, job_id=job.pk, outcome=JobOutcome.SUCCESS, message=""
    )
    type(store).objects.filter(pk=store.pk).update(
        inventory_next_run=timezone.now() - dt.timedelta(minutes=1)
    )
    assert maintenance()["scheduled_jobs"] == 1
    assert Job.objects.filter(state=Job.State.PENDING).count() == 1
    assert Job.objects.count() == 2


def test_schedule_not_yet_due_or_stopped_opens_nothing(store) -> None:
    store_schedule_inventory(store=store, interval_minutes=30)
    type(store).objects.filter(pk=store.pk).update(
        inventory_next_run=timezone.now() + dt.timedelta(minutes=5)
    )
    assert maintenance()["scheduled_jobs"] == 0

    store_schedule_inventory(store=store, interval_minutes=None)
    store.refresh_from_db()
    assert store.inventory_next_run is None
    assert maintenance()["scheduled_jobs"] == 0
    assert not Job.objects.exists()


def test_schedule_of_an_orchestrator_that_is_not_approved_opens_nothing(
    agent,
    store,
) -> None:
    store_schedule_inventory(store=store, interval_minutes=15)
    orchestrator_disapprove(orchestrator=agent.orchestrator, actor=None)

    assert maintenance()["scheduled_jobs"] == 0
    assert not Job.objects.exists()
    # Approved again, the due schedule opens its job.
    orchestrator_approve(orchestrator=agent.orchestrator, actor=None)
    type(store).objects.filter(pk=store.pk).update(inventory_next_run=timezone.now())
    assert maintenance()["scheduled_jobs"] == 1


def test_the_database_allows_one_open_inventory_job_per_store(store) -> None:
    job = _open_job(store)
    fields = {
        "type": JobType.INVENTORY,
        "store": store,
        "orchestrator": store.orchestrator,
        "available_at": timezone.now(),
    }

    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(**fields, state=Job.State.LEASED)

    # Finished jobs do not count; asking again answers with the open one.
    Job.objects.create(**fields, state=Job.State.SUCCEEDED)
    Job.objects.create(**fields, state=Job.State.FAILED)
    again, created = job_inventory_request(store=store, source=Job.Source.API)
    assert again == job and not created
    assert Job.objects.filter(state__in=Job.OPEN_STATES).count() == 1


# --- Leasing -------------------------------------------------------------------------


def test_lease_goes_to_the_owner_only_and_is_recorded(
    register_agent,
    pem_store,
    settings,
) -> None:
    settings.CERTYARD_JOB_LEASE_SECONDS = 120
    settings.CERTYARD_JOB_PICKUP_SECONDS = 10
    owner, other = register_agent("owner"), register_agent("other")
    job = _open_job(pem_store(owner.orchestrator))

    assert job_lease_next(orchestrator=other.orchestrator) is None
    before = timezone.now()
    leased = job_lease_next(orchestrator=owner.orchestrator)

    assert leased is not None and leased.pk == job.pk
    job.refresh_from_db()
    assert job.state == Job.State.LEASED and job.attempts == 1
    # Short until the agent fetches the job; a whole lease from then on.
    assert job.picked_up_at is None
    assert before + dt.timedelta(seconds=10) <= job.lease_expires_at
    assert job.lease_expires_at <= timezone.now() + dt.timedelta(seconds=10)
    with pytest.raises(ServiceError):
        job_configuration(orchestrator=other.orchestrator, job_id=job.pk)
    config = job_configuration(orchestrator=owner.orchestrator, job_id=job.pk)
    job.refresh_from_db()
    assert job.picked_up_at is not None
    assert config["lease_expires_at"] == job.lease_expires_at.isoformat()
    assert job.lease_expires_at >= before + dt.timedelta(seconds=120)
    assert job.lease_expires_at <= timezone.now() + dt.timedelta(seconds=120)
    history = JobHistory.objects.get(job=job)
    assert (history.attempt, history.orchestrator_id) == (1, owner.orchestrator.pk)
    assert history.finished_at is None and history.outcome == ""
    # Leased: not offered again, to anyone.
    assert job_lease_next(orchestrator=owner.orchestrator) is None
    assert job_lease_next(orchestrator=other.orchestrator) is None


def test_oldest_available_job_is_leased_first(agent, pem_store) -> None:
    older = _open_job(pem_store(agent.orchestrator, "/one"))
    newer = _open_job(pem_store(agent.orchestrator, "/two"))
    Job.objects.filter(pk=older.pk).update(available_at=timezone.now() - dt.timedelta(minutes=5))

    assert job_lease_next(orchestrator=agent.orchestrator).pk == older.pk
    assert job_lease_next(orchestrator=agent.orchestrator).pk == newer.pk
    assert job_lease_next(orchestrator=agent.orchestrator) is None


def test_new_orchestrator_gets_no_job(register_agent) -> None:
    waiting = register_agent("waiting", approved=False)

    with pytest.raises(ServiceError) as refused:
        job_lease_next(orchestrator=waiting.orchestrator)

    assert refused.value.code == "not_approved" and refused.value.http_status == 403
    assert "approve" in refused.value.message


def test_disapproved_orchestrator_gets_no_job(agent, store) -> None:
    job = _open_job(store)
    orchestrator_disapprove(orchestrator=agent.orchestrator, actor=None)

    with pytest.raises(ServiceError) as refused:
        job_lease_next(orchestrator=agent.orchestrator)

    assert refused.value.code == "not_approved" and refused.value.http_status == 403
    job.refresh_from_db()
    assert job.state == Job.State.PENDING and job.attempts == 0
    assert not JobHistory.objects.exists()


def test_lapsed_lease_is_offered_again_as_a_new_attempt(agent, store) -> None:
    job = _open_job(store)
    _leased_and_picked_up(agent.orchestrator)
    _lapse(job)

    again = job_lease_next(orchestrator=agent.orchestrator)

    assert again is not None and again.pk == job.pk and again.attempts == 2
    first, second = JobHistory.objects.filter(job=job).order_by("attempt")
    assert first.attempt == 1 and first.outcome == JobHistory.Outcome.LEASE_EXPIRED
    assert first.finished_at is not None and "lease lapsed" in first.message
    assert second.attempt == 2 and second.outcome == "" and second.finished_at is None


def test_a_job_never_picked_up_is_offered_again_without_costing_an_attempt(
    agent, store, settings
) -> None:
    settings.CERTYARD_JOB_MAX_ATTEMPTS = 1
    job = _open_job(store)
    for missed in (1, 2):  # handed to polls whose agent had gone
        assert job_lease_next(orchestrator=agent.orchestrator).pk == job.pk
        _lapse(job)
        assert maintenance()["lapsed_leases"] == 1
        job.refresh_from_db()
        assert job.state == Job.State.PENDING and job.missed_pickups == missed

    again = _leased_and_picked_up(agent.orchestrator)

    assert again is not None and again.attempts == 3
    outcomes = list(JobHistory.objects.filter(job=job).values_list("attempt", "outcome"))
    assert outcomes == [
        (1, JobHistory.Outcome.NOT_PICKED_UP),
        (2, JobHistory.Outcome.NOT_PICKED_UP),
        (3, ""),
    ]
    assert "did not pick the job up" in JobHistory.objects.get(job=job, attempt=1).message
    # The one real attempt lapses: now the job has used its attempts.
    _lapse(job)
    maintenance()
    job.refresh_from_db()
    assert job.state == Job.State.FAILED


def test_maintenance_releases_lapsed_leases(agent, store) -> None:
    job = _open_job(store)
    _leased_and_picked_up(agent.orchestrator)
    assert maintenance()["lapsed_leases"] == 0
    _lapse(job)

    assert maintenance() == {"scheduled_jobs": 0, "lapsed_leases": 1}

    job.refresh_from_db()
    assert job.state == Job.State.PENDING and job.lease_expires_at is None
    assert "lease lapsed on attempt 1 of 3" in job.message
    assert JobHistory.objects.get(job=job).outcome == JobHistory.Outcome.LEASE_EXPIRED


def test_job_fails_after_max_attempts_lapse(agent, store, settings) -> None:
    settings.CERTYARD_JOB_MAX_ATTEMPTS = 3
    job = _open_job(store)
    assert job.max_attempts == 3

    for attempt in (1, 2, 3):
        leased = _leased_and_picked_up(agent.orchestrator)
        assert leased is not None and leased.attempts == attempt
        _lapse(job)
    maintenance()

    job.refresh_from_db()
    assert job.state == Job.State.FAILED and job.outcome == JobOutcome.FAILURE
    assert job.completed_at is not None
    assert "lease lapsed on attempt 3 of 3" in job.message
    assert job_lease_next(orchestrator=agent.orchestrator) is None
    outcomes = list(JobHistory.objects.filter(job=job).values_list("attempt", "outcome"))
    assert outcomes == [(n, JobHistory.Outcome.LEASE_EXPIRED) for n in (1, 2, 3)]


# --- Reports ---------------------------------------------------------------------------


def test_failure_is_retried_after_a_delay_until_the_last_attempt(
    agent,
    store,
    settings,
) -> None:
    settings.CERTYARD_JOB_RETRY_DELAY_SECONDS = 60
    job = _open_job(store)

    for attempt in (1, 2):
        leased = job_lease_next(orchestrator=agent.orchestrator)
        assert leased is not None and leased.attempts == attempt
        before = timezone.now()
        finished, duplicate = job_complete(
            orchestrator=agent.orchestrator,
            job_id=job.pk,
            outcome=JobOutcome.FAILURE,
            message=f"store unreadable ({attempt})",
        )
        assert not duplicate
        assert finished.state == Job.State.PENDING and finished.lease_expires_at is None
        assert finished.available_at >= before + dt.timedelta(seconds=60 * attempt)
        # Not offered before the delay has passed.
        assert job_lease_next(orchestrator=agent.orchestrator) is None
        _make_available(job)

    leased = job_lease_next(orchestrator=agent.orchestrator)
    assert leased is not None and leased.attempts == 3
    finished, duplicate = job_complete(
        orchestrator=agent.orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.FAILURE,
        message="permission denied: /etc/ssl/certs",
    )

    assert not duplicate
    assert finished.state == Job.State.FAILED and finished.outcome == JobOutcome.FAILURE
    assert finished.message == "permission denied: /etc/ssl/certs"
    assert finished.completed_at is not None
    _make_available(job)
    assert job_lease_next(orchestrator=agent.orchestrator) is None
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    history = list(JobHistory.objects.filter(job=job).values_list("attempt", "outcome", "message"))
    assert history == [
        (1, "failure", "store unreadable (1)"),
        (2, "failure", "store unreadable (2)"),
        (3, "failure", "permission denied: /etc/ssl/certs"),
    ]
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.last_error == "permission denied: /etc/ssl/certs"


@pytest.mark.parametrize(
    ("outcome", "state"),
    [(JobOutcome.SUCCESS, Job.State.SUCCEEDED), (JobOutcome.WARNING, Job.State.SUCCEEDED)],
)
def test_completing_twice_is_a_duplicate_and_history_is_not_doubled(
    agent,
    store,
    outcome: JobOutcome,
    state: str,
) -> None:
    job = _open_job(store)
    job_lease_next(orchestrator=agent.orchestrator)

    first, first_duplicate = job_complete(
        orchestrator=agent.orchestrator, job_id=job.pk, outcome=outcome, message="done"
    )
    history_after_first = list(JobHistory.objects.filter(job=job).values())
    second, second_duplicate = job_complete(
        orchestrator=agent.orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.FAILURE,
        message="a late, different report",
    )

    assert (first_duplicate, second_duplicate) == (False, True)
    assert first.state == second.state == state
    assert second.outcome == outcome and second.message == "done"
    assert list(JobHistory.objects.filter(job=job).values()) == history_after_first
    assert len(history_after_first) == 1 and history_after_first[0]["outcome"] == outcome
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.last_error == ""  # the ignored failure left no trace


def test_completing_another_orchestrators_job_is_not_found(
    register_agent,
    pem_store,
) -> None:
    owner, other = register_agent("owner"), register_agent("other")
    job = _open_job(pem_store(owner.orchestrator))
    job_lease_next(orchestrator=owner.orchestrator)

    with pytest.raises(ServiceError) as refused:
        job_complete(
            orchestrator=other.orchestrator, job_id=job.pk, outcome=JobOutcome.SUCCESS, message=""
        )

    assert refused.value.code == "not_found" and refused.value.http_status == 404
    job.refresh_from_db()
    assert job.state == Job.State.LEASED


def test_inventory_report_is_applied_once(agent, store) -> None:
    first_cert, second_cert = issue("one.example.test"), issue("two.example.test")
    job = _open_job(store)
    job_lease_next(orchestrator=agent.orchestrator)
    entries = [entry("one", first_cert), entry("two", second_cert)]

    report = job_inventory_report(orchestrator=agent.orchestrator, job_id=job.pk, entries=entries)

    assert not report.duplicate
    assert report.summary["added"] == 2
    job.refresh_from_db()
    assert job.report_received_at is not None
    assert job.result["inventory"]["added_aliases"] == ["one", "two"]
    # Someone removes a location meanwhile; the repeated report must not bring it back.
    CertificateLocation.objects.filter(store=store, alias="one").delete()

    repeat = job_inventory_report(orchestrator=agent.orchestrator, job_id=job.pk, entries=entries)

    assert repeat.duplicate
    assert repeat.summary == report.summary
    assert list(
        CertificateLocation.objects.filter(store=store).values_list("alias", flat=True)
    ) == ["two"]
    # A different repeated report is not applied either.
    job_inventory_report(orchestrator=agent.orchestrator, job_id=job.pk, entries=[])
    assert CertificateLocation.objects.filter(store=store).count() == 1


def test_inventory_report_after_the_job_finished_is_refused(agent, store) -> None:
    job = _open_job(store)
    job_lease_next(orchestrator=agent.orchestrator)
    job_cancel(job=job, actor="an admin")

    with pytest.raises(ServiceError) as refused:
        job_inventory_report(
            orchestrator=agent.orchestrator, job_id=job.pk, entries=[entry("a", issue("a"))]
        )

    assert refused.value.http_status == 409
    assert not CertificateLocation.objects.exists()


def test_a_failed_attempt_lets_the_next_attempt_report_inventory(agent, store) -> None:
    cert = issue("retry.example.test")
    job = _open_job(store)
    job_lease_next(orchestrator=agent.orchestrator)
    job_inventory_report(orchestrator=agent.orchestrator, job_id=job.pk, entries=[])
    job_complete(
        orchestrator=agent.orchestrator, job_id=job.pk, outcome=JobOutcome.FAILURE, message="x"
    )
    _make_available(job)
    job_lease_next(orchestrator=agent.orchestrator)

    report = job_inventory_report(
        orchestrator=agent.orchestrator, job_id=job.pk, entries=[entry("retry", cert)]
    )

    assert not report.duplicate and report.summary["added"] == 1
    assert CertificateLocation.objects.get(store=store).alias == "retry"


# --- Approval changes ------------------------------------------------------------------


def test_disapprove_releases_a_leased_job_back_to_pending(agent, store) -> None:
    job = _open_job(store)
    job_lease_next(orchestrator=agent.orchestrator)

    orchestrator_disapprove(orchestrator=agent.orchestrator, actor=None)

    job.refresh_from_db()
    assert job.state == Job.State.PENDING and job.lease_expires_at is None
    assert job.available_at <= timezone.now()
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.status == Orchestrator.Status.DISAPPROVED
    with pytest.raises(ServiceError):
        job_lease_next(orchestrator=agent.orchestrator)
    # Approved again, the agent gets the job back as its next attempt.
    orchestrator_approve(orchestrator=agent.orchestrator, actor=None)
    again = job_lease_next(orchestrator=agent.orchestrator)
    assert again is not None and again.pk == job.pk and again.attempts == 2


def test_reset_releases_leases_and_refuses_approval_until_registered_again(
    agent,
    store,
) -> None:
    job = _open_job(store)
    job_lease_next(orchestrator=agent.orchestrator)

    orchestrator_reset(orchestrator=agent.orchestrator, actor=None)

    job.refresh_from_db()
    assert job.state == Job.State.PENDING
    agent.orchestrator.refresh_from_db()
    assert agent.orchestrator.status == Orchestrator.Status.NEW
    assert not agent.orchestrator.has_identity
    with pytest.raises(ServiceError) as refused:
        orchestrator_approve(orchestrator=agent.orchestrator, actor=None)
    assert refused.value.code == "not_registered"


def test_released_attempt_is_closed_in_the_history(agent, store) -> None:
    job = _open_job(store)
    job_lease_next(orchestrator=agent.orchestrator)

    orchestrator_disapprove(orchestrator=agent.orchestrator, actor=None)

    history = JobHistory.objects.get(job=job, attempt=1)
    assert history.finished_at is not None
    assert history.outcome != ""


def test_disapproved_orchestrator_cannot_complete_a_job(agent, store) -> None:
    job = _open_job(store)
    job_lease_next(orchestrator=agent.orchestrator)
    orchestrator_disapprove(orchestrator=agent.orchestrator, actor=None)

    try:
        job_complete(
            orchestrator=agent.orchestrator, job_id=job.pk, outcome=JobOutcome.SUCCESS, message=""
        )
    except ServiceError as refused:
        assert refused.code == "not_approved"
    job.refresh_from_db()
    assert job.state == Job.State.PENDING
