"""Inventory reports in chunks through the agent API: staging, commit, attempts, fingerprints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from certyard.inventory.models import Certificate, CertificateLocation, InventoryStagedEntry
from certyard.jobs.models import Job, JobHistory
from certyard.jobs.services import job_inventory_request, jobs_release_lapsed
from tests.certs import issue
from tests.certyard.conftest import AGENT, error_of
from tests.conftest import RegisteredAgent, entry

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(agent: RegisteredAgent, agent_api: Callable[[RegisteredAgent], APIClient]) -> APIClient:
    return agent_api(agent)


def _lease(client: APIClient, store: Any) -> Job:
    job, _ = job_inventory_request(store=store, source=Job.Source.API)
    assert client.get(f"{AGENT}jobs/next", {"wait": 0}).status_code == 200
    assert client.get(f"{AGENT}jobs/{job.pk}/config").status_code == 200  # picked up
    job.refresh_from_db()
    return job


def _chunk(client: APIClient, job: Job, sequence: int, entries: list, first_index: int = 0):
    return client.post(
        f"{AGENT}jobs/{job.pk}/inventory/chunks",
        {
            "attempt": job.attempts,
            "sequence": sequence,
            "first_index": first_index,
            "entries": entries,
        },
        format="json",
    )


def _commit(client: APIClient, job: Job, chunks: int, **extra: Any):
    return client.post(
        f"{AGENT}jobs/{job.pk}/inventory/commit",
        {"attempt": job.attempts, "chunks": chunks, **extra},
        format="json",
    )


def _aliases(store: Any) -> set[str]:
    return set(CertificateLocation.objects.filter(store=store).values_list("alias", flat=True))


def test_a_report_in_three_chunks_is_applied_once_at_commit(client, store) -> None:
    certs = [issue(f"chunk{i}.example.test") for i in range(6)]
    job = _lease(client, store)

    for sequence in range(3):
        part = [entry(f"e{i}", certs[i]) for i in range(sequence * 2, sequence * 2 + 2)]
        answer = _chunk(client, job, sequence, part, first_index=sequence * 2)
        assert answer.status_code == 200, answer.content
        assert answer.json()["accepted"] == 2 and answer.json()["new_certificates"] == 2
        assert not _aliases(store), "nothing is recorded before the commit"

    committed = _commit(client, job, 3)

    assert committed.status_code == 200, committed.content
    body = committed.json()
    assert (body["added"], body["entries"], body["recorded"]) == (6, 6, True)
    assert _aliases(store) == {f"e{i}" for i in range(6)}
    assert not InventoryStagedEntry.objects.exists(), "staging is emptied by the commit"
    again = _commit(client, job, 3)
    assert again.status_code == 200 and again.json()["duplicate"] is True


def test_a_missing_chunk_refuses_the_commit_and_nothing_changes(client, store) -> None:
    job = _lease(client, store)
    _chunk(client, job, 0, [entry("a", issue("a.example.test"))])

    refused = _commit(client, job, 2)

    assert refused.status_code == 409
    error = error_of(refused)
    assert error["code"] == "chunks_missing" and error["missing"] == [1]
    assert not _aliases(store)
    _chunk(client, job, 1, [entry("b", issue("b.example.test"))], first_index=1)
    assert _commit(client, job, 2).json()["added"] == 2


def test_a_chunk_sent_again_replaces_itself(client, store) -> None:
    job = _lease(client, store)
    _chunk(client, job, 0, [entry("first-try", issue("try1.example.test"))])
    _chunk(client, job, 0, [entry("second-try", issue("try2.example.test"))])

    assert _commit(client, job, 1).status_code == 200
    assert _aliases(store) == {"second-try"}


def test_an_alias_in_two_chunks_is_rejected_the_second_time(client, store) -> None:
    first, second = issue("dup1.example.test"), issue("dup2.example.test")
    job = _lease(client, store)
    _chunk(client, job, 0, [entry("same", first)])
    _chunk(client, job, 1, [entry("same", second)], first_index=1)

    answer = _commit(client, job, 2)

    assert answer.status_code == 422
    assert [(r["index"], r["alias"]) for r in answer.json()["rejected"]] == [(1, "same")]
    location = CertificateLocation.objects.get(store=store, alias="same")
    assert location.certificate.sha256 == first.sha256


def test_entries_named_by_fingerprint_are_recorded_without_sending_certificates(
    client, store
) -> None:
    cert = issue("known.example.test")
    job = _lease(client, store)
    _chunk(client, job, 0, [entry("k", cert)])
    _commit(client, job, 1)
    Job.objects.filter(pk=job.pk).update(state=Job.State.SUCCEEDED)

    job = _lease(client, store)
    by_fingerprint = {"alias": "k", "private_key": True, "sha256": [cert.sha256.upper()]}
    answer = _chunk(client, job, 0, [by_fingerprint])

    assert answer.json()["accepted"] == 1 and answer.json()["unknown"] == []
    committed = _commit(client, job, 1).json()
    assert committed["changed"] == 1  # the private-key flag changed
    assert CertificateLocation.objects.get(store=store, alias="k").has_private_key is True


def test_an_unknown_fingerprint_asks_for_the_entry_in_full_and_keeps_the_location(
    client, store
) -> None:
    kept, unknown = issue("kept.example.test"), issue("unknown.example.test")
    job = _lease(client, store)
    _chunk(client, job, 0, [entry("kept", kept), entry("other", unknown)])
    _commit(client, job, 1)
    Job.objects.filter(pk=job.pk).update(state=Job.State.SUCCEEDED)
    Certificate.objects.filter(sha256=unknown.sha256).delete()  # e.g. deleted by an admin
    job = _lease(client, store)

    answer = _chunk(
        client,
        job,
        0,
        [
            {"alias": "kept", "sha256": [kept.sha256]},
            {"alias": "again", "sha256": [unknown.sha256]},
        ],
    )

    assert answer.json()["unknown"] == [1]
    assert "in full" in answer.json()["rejected"][0]["error"]
    resent = _chunk(
        client, job, 0, [{"alias": "kept", "sha256": [kept.sha256]}, entry("again", unknown)]
    )
    assert resent.json()["unknown"] == [] and resent.json()["accepted"] == 2
    assert _commit(client, job, 1).status_code == 200
    assert _aliases(store) == {"kept", "again"}


@pytest.mark.parametrize(
    "fingerprints",
    [[], ["not-hex"], ["ab" * 31], "ab" * 32, [42]],
    ids=["empty", "not-hex", "short", "not-a-list", "not-a-string"],
)
def test_malformed_fingerprints_are_rejected_with_a_reason(client, store, fingerprints) -> None:
    job = _lease(client, store)
    _chunk(client, job, 0, [{"alias": "x", "sha256": fingerprints}, entry("ok", issue("ok.test"))])

    answer = _commit(client, job, 1)

    assert answer.status_code == 422
    rejected = answer.json()["rejected"]
    assert [r["alias"] for r in rejected] == ["x"]
    assert "sha256" in rejected[0]["error"] or "certificates" in rejected[0]["error"]


def test_a_report_for_an_earlier_attempt_is_refused_and_the_later_one_wins(client, store) -> None:
    """The stale-report sequence: the agent's report for attempt 1 arrives after its lease
    lapsed and the job moved on; attempt 2's report is the one applied."""
    old, new = issue("old.example.test"), issue("new.example.test")
    job = _lease(client, store)
    _chunk(client, job, 0, [entry("web", old)])
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert jobs_release_lapsed() == 1
    attempt_1 = job.attempts
    job = _lease(client, store)
    assert job.attempts == attempt_1 + 1

    stale = client.post(
        f"{AGENT}jobs/{job.pk}/inventory/commit", {"attempt": attempt_1, "chunks": 1}, format="json"
    )
    assert stale.status_code == 409 and error_of(stale)["code"] == "stale_attempt"
    assert not InventoryStagedEntry.objects.filter(upload__endswith=f":{attempt_1}").exists()

    _chunk(client, job, 0, [entry("web", new)])
    applied = _commit(client, job, 1)

    assert applied.status_code == 200 and applied.json()["duplicate"] is False
    location = CertificateLocation.objects.get(store=store, alias="web")
    assert location.certificate.sha256 == new.sha256
    job.refresh_from_db()
    assert job.result["inventory"]["added"] == 1


def test_failed_submissions_the_agent_reports_are_kept_on_the_attempt(client, store) -> None:
    job = _lease(client, store)
    _chunk(client, job, 0, [entry("a", issue("a.example.test"))])

    _commit(
        client,
        job,
        1,
        submission_errors=[{"at": "2026-12-01T00:00:00+00:00", "error": "platform answered 502"}],
    )

    history = JobHistory.objects.get(job=job, attempt=job.attempts)
    assert history.report_errors == [
        {"at": "2026-12-01T00:00:00+00:00", "error": "platform answered 502"}
    ]


def test_a_lapsed_lease_after_failed_submissions_names_the_platform(client, store) -> None:
    job = _lease(client, store)
    JobHistory.objects.filter(job=job).update(
        report_errors=[{"at": "t", "error": "platform answered 500 Internal Server Error"}]
    )
    Job.objects.filter(pk=job.pk).update(
        max_attempts=1, lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )

    jobs_release_lapsed()

    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert "platform could not take" in job.message and "500" in job.message
    store.refresh_from_db()
    assert store.inventory_status == "failing" and "500" in store.inventory_message


def test_chunk_numbers_are_checked(client, store) -> None:
    job = _lease(client, store)

    for body in (
        {"sequence": -1, "entries": []},
        {"sequence": "x", "entries": []},
        {"entries": []},
    ):
        answer = client.post(f"{AGENT}jobs/{job.pk}/inventory/chunks", body, format="json")
        assert answer.status_code == 400, body
        assert error_of(answer)["code"] == "invalid"
    no_entries = client.post(
        f"{AGENT}jobs/{job.pk}/inventory/chunks", {"sequence": 0}, format="json"
    )
    assert no_entries.status_code == 400
    commit = client.post(f"{AGENT}jobs/{job.pk}/inventory/commit", {"chunks": 0}, format="json")
    assert commit.status_code == 400


def test_chunks_of_a_report_never_committed_are_forgotten_when_the_job_ends(client, store) -> None:
    job = _lease(client, store)
    _chunk(client, job, 0, [entry("a", issue("uncommitted.example.test"))])
    assert InventoryStagedEntry.objects.exists()

    answer = client.post(
        f"{AGENT}jobs/{job.pk}/complete",
        {"status": "failure", "message": "the store went away"},
        format="json",
    )

    assert answer.status_code == 200
    assert not InventoryStagedEntry.objects.exists()
    assert not _aliases(store)
