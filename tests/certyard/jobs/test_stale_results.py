"""An earlier attempt's result never ends a later attempt (service level).

The end-to-end sequence, with real processes, is tests/e2e/test_stale_report.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.inventory.models import CertificateLocation
from certyard.jobs.models import Job, JobHistory
from certyard.jobs.services import (
    job_complete,
    job_configuration,
    job_inventory_report,
    job_inventory_request,
    job_lease_next,
)
from orchestrators.protocol import JobOutcome
from tests.certs import issue
from tests.conftest import entry

pytestmark = pytest.mark.django_db


def _attempt(orchestrator: Any) -> Job:
    """Lease the next job and fetch its configuration, as the agent does."""
    job = job_lease_next(orchestrator=orchestrator)
    assert job is not None
    job_configuration(orchestrator=orchestrator, job_id=job.pk)
    return job


def _lapse(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))


@pytest.fixture
def second_attempt(agent, store) -> dict[str, Any]:
    """Attempt 1 reported ``old`` and its lease lapsed before it said it was done;
    attempt 2 holds the lease now."""
    job, _created = job_inventory_request(store=store, source=Job.Source.ADMIN)
    orchestrator = agent.orchestrator
    assert _attempt(orchestrator).attempts == 1
    old = issue("old.stale.test")
    report = job_inventory_report(
        orchestrator=orchestrator, job_id=job.pk, entries=[entry("old", old)], attempt=1
    )
    assert report.summary["added"] == 1
    _lapse(job)
    assert _attempt(orchestrator).attempts == 2
    return {"job": job, "orchestrator": orchestrator, "store": store}


@pytest.mark.parametrize("outcome", [JobOutcome.SUCCESS, JobOutcome.FAILURE])
def test_an_earlier_attempts_result_does_not_end_the_current_attempt(
    second_attempt: dict[str, Any], outcome: JobOutcome
) -> None:
    job, orchestrator = second_attempt["job"], second_attempt["orchestrator"]
    before = Job.objects.values().get(pk=job.pk)

    with pytest.raises(ServiceError) as refused:
        job_complete(
            orchestrator=orchestrator,
            job_id=job.pk,
            outcome=outcome,
            message="1 entries",
            attempt=1,
        )

    assert refused.value.code == "stale_attempt" and refused.value.http_status == 409
    assert Job.objects.values().get(pk=job.pk) == before  # nothing changed
    assert (before["state"], before["attempts"]) == (Job.State.LEASED, 2)
    current = JobHistory.objects.get(job=job, attempt=2)
    assert (current.finished_at, current.outcome) == (None, "")

    # The current attempt reports and ends the job: its report, its message.
    new = issue("new.stale.test")
    job_inventory_report(
        orchestrator=orchestrator, job_id=job.pk, entries=[entry("new", new)], attempt=2
    )
    finished, duplicate = job_complete(
        orchestrator=orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.SUCCESS,
        message="2nd attempt",
        attempt=2,
    )

    assert not duplicate
    assert (finished.state, finished.outcome, finished.message) == (
        Job.State.SUCCEEDED,
        JobOutcome.SUCCESS,
        "2nd attempt",
    )
    assert finished.result["inventory"]["added_aliases"] == ["new"]
    assert finished.result["inventory"]["removed_aliases"] == ["old"]
    store = second_attempt["store"]
    assert list(
        CertificateLocation.objects.filter(store=store).values_list("alias", flat=True)
    ) == ["new"]
    history = JobHistory.objects.filter(job=job).order_by("attempt")
    assert [(h.attempt, h.outcome, h.message) for h in history][1] == (
        2,
        "success",
        "2nd attempt",
    )


def test_after_the_job_ended_an_earlier_attempts_result_is_stale_and_a_repeat_a_duplicate(
    second_attempt: dict[str, Any],
) -> None:
    job, orchestrator = second_attempt["job"], second_attempt["orchestrator"]
    job_inventory_report(orchestrator=orchestrator, job_id=job.pk, entries=[], attempt=2)
    job_complete(
        orchestrator=orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.SUCCESS,
        message="empty now",
        attempt=2,
    )

    with pytest.raises(ServiceError) as refused:
        job_complete(
            orchestrator=orchestrator,
            job_id=job.pk,
            outcome=JobOutcome.SUCCESS,
            message="1 entries",
            attempt=1,
        )
    repeat, duplicate = job_complete(
        orchestrator=orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.FAILURE,
        message="a different repeat",
        attempt=2,
    )

    assert refused.value.code == "stale_attempt"
    assert duplicate and (repeat.outcome, repeat.message) == (JobOutcome.SUCCESS, "empty now")


def test_a_result_that_names_no_attempt_is_taken_as_before(second_attempt: dict[str, Any]) -> None:
    """Agents that do not send the attempt yet: their result ends the current attempt."""
    job, orchestrator = second_attempt["job"], second_attempt["orchestrator"]

    finished, duplicate = job_complete(
        orchestrator=orchestrator, job_id=job.pk, outcome=JobOutcome.SUCCESS, message="done"
    )

    assert not duplicate and finished.state == Job.State.SUCCEEDED
