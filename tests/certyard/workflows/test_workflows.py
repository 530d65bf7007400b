"""Events, handler registrations and runs, in process (the worker's side is in tests/e2e).

The handler classes come from real entry points: Certyard's built-ins and the test
package in tests/plugins (installed by `make test`), which misbehaves on purpose.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from certyard.fleet.models import Orchestrator
from certyard.jobs.models import Job
from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
from certyard.workflows.runner import event_runs_execute, run_execute, runs_stuck_fail
from certyard.workflows.services import event_emit, registration_config, registration_save
from certyard.workflows.tasks import (
    enqueue_event_runs,
    event_runs,
    history_prune,
    runs_due_enqueue,
)
from handlers.base import EventKind
from handlers.parameters import ParameterError

pytestmark = pytest.mark.django_db


def register(
    handler: str, name: str | None = None, values: dict[str, Any] | None = None, **fields: Any
) -> HandlerRegistration:
    registration = HandlerRegistration(name=name or handler, handler=handler, **fields)
    return registration_save(registration=registration, values=values or {})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_an_event_nobody_listens_to_is_recorded_with_no_runs() -> None:
    event = event_emit(kind=EventKind.JOB_COMPLETED, subject_type="job", subject_id="j1")
    assert Event.objects.get() == event
    assert not HandlerRun.objects.exists()


def test_runs_are_queued_for_the_registrations_an_event_matches(tmp_path: Path) -> None:
    path = str(tmp_path / "events.jsonl")
    listens = register("test.record", "any event", {"path": path})
    register("test.record", "other kind", {"path": path}, events=["certificate.expiring"])
    register("test.record", "other store type", {"path": path}, store_types=["JKS"])
    register("test.record", "disabled", {"path": path}, enabled=False)
    event = event_emit(
        kind=EventKind.CERTIFICATES_ADDED,
        subject_type="store",
        subject_id=7,
        data={"store_type": "PEM"},
    )
    assert [run.registration for run in HandlerRun.objects.filter(event=event)] == [listens]
    assert HandlerRun.objects.get().state == HandlerRun.State.QUEUED


def test_a_run_records_its_inputs_result_and_duration(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    register("test.record", values={"path": str(path)})
    event = event_emit(
        kind=EventKind.ORCHESTRATOR_APPROVED,
        subject_type="orchestrator",
        subject_id="o-1",
        subject_label="web-1",
        data={"name": "web-1"},
    )
    assert event_runs_execute(event.pk) == 1
    run = HandlerRun.objects.get()
    assert run.state == HandlerRun.State.SUCCEEDED
    assert run.message == "recorded orchestrator.approved"
    assert run.output == {"kind": "orchestrator.approved"}
    assert run.inputs == {"event": "orchestrator.approved", "subject": "web-1"}
    assert run.duration_ms is not None and run.finished_at is not None
    [received] = lines(path)
    assert received["data"] == {"name": "web-1"} and received["attempt"] == 1


def test_a_handler_that_raises_is_recorded_failed_and_retried_later() -> None:
    register("test.raises", max_attempts=2, retry_backoff_seconds=30)
    event = event_emit(kind=EventKind.JOB_COMPLETED, subject_type="job", subject_id="j")
    event_runs_execute(event.pk)
    first, retry = HandlerRun.objects.order_by("attempt")
    assert first.state == HandlerRun.State.FAILED
    assert first.error == "RuntimeError: boom on job.completed"
    assert "Traceback" in first.traceback and "boom on" in first.traceback
    assert retry.attempt == 2 and retry.state == HandlerRun.State.QUEUED
    assert retry.not_before > timezone.now() + dt.timedelta(seconds=25)
    # Not due yet: nothing runs; once due, the sweep hands it over and it fails for good.
    assert run_execute(retry.pk) is None
    HandlerRun.objects.filter(pk=retry.pk).update(not_before=timezone.now())
    run_execute(retry.pk)
    retry.refresh_from_db()
    assert retry.state == HandlerRun.State.FAILED
    assert HandlerRun.objects.count() == 2  # max_attempts reached: no third


def test_a_permanent_handler_error_is_not_retried() -> None:
    register("test.raises", values={"handler_error": True, "permanent": True})
    event = event_emit(kind=EventKind.JOB_COMPLETED, subject_type="job", subject_id="j")
    event_runs_execute(event.pk)
    run = HandlerRun.objects.get()
    assert run.state == HandlerRun.State.FAILED
    assert run.error == "the ticket system refused us"


def test_a_handler_that_hangs_is_failed_at_its_timeout() -> None:
    register("test.hangs", timeout_seconds=1, max_attempts=1)
    event = event_emit(kind=EventKind.JOB_COMPLETED, subject_type="job", subject_id="j")
    started = time.monotonic()
    event_runs_execute(event.pk)
    assert time.monotonic() - started < 5
    run = HandlerRun.objects.get()
    assert run.state == HandlerRun.State.FAILED
    assert run.error == "timed out after 1 s"


def test_a_registration_whose_class_disappeared_fails_its_runs_without_retry() -> None:
    registration = register("test.raises")
    HandlerRegistration.objects.filter(pk=registration.pk).update(handler="gone.uninstalled")
    event = event_emit(kind=EventKind.JOB_COMPLETED, subject_type="job", subject_id="j")
    event_runs_execute(event.pk)
    run = HandlerRun.objects.get()
    assert run.state == HandlerRun.State.FAILED
    assert run.error.startswith("handler gone.uninstalled is missing")


def test_a_broken_class_cannot_be_registered() -> None:
    with pytest.raises(Exception, match=r"cannot be imported|not installed or is broken"):
        register("test.broken_import")


def test_parameters_are_checked_and_secrets_kept_apart() -> None:
    with pytest.raises(ParameterError) as refused:
        register("certyard.webhook", values={"url": "not a url", "attempts": 99})
    assert set(refused.value.errors) >= {"url", "secret", "attempts"}
    registration = register(
        "certyard.webhook", values={"url": "https://hooks.example.test/x", "secret": "s3cr3t"}
    )
    registration.refresh_from_db()
    assert "secret" not in registration.parameters
    with connection.cursor() as cursor:
        table = HandlerRegistration._meta.db_table
        cursor.execute(
            f"SELECT secrets, parameters FROM {table} WHERE id = %s",  # noqa: S608
            [registration.pk],
        )
        stored = " ".join(str(column) for column in cursor.fetchone())
    assert "s3cr3t" not in stored and "hooks.example.test" in stored
    assert registration_config(registration)["secret"] == "s3cr3t"
    # An empty secret when editing keeps the stored one.
    registration_save(
        registration=registration, values={"url": "https://hooks.example.test/y", "secret": ""}
    )
    assert registration_config(registration)["secret"] == "s3cr3t"


def test_context_updates_reach_the_handlers_that_run_after(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    register("test.record", "second", {"path": str(path)}, order=20)
    register("test.suppress", "first", order=10)
    event = event_emit(
        kind=EventKind.CERTIFICATE_EXPIRING, subject_type="certificate", subject_id=1
    )
    event_runs_execute(event.pk)
    [received] = lines(path)
    assert received["context"] == {"suppress_email": True}


def test_a_job_complete_handler_gets_the_job_and_can_schedule_a_follow_up(
    tmp_path: Path, store: Any, agent: Any
) -> None:
    from certyard.jobs.services import job_complete, job_inventory_request, job_lease_next
    from orchestrators.protocol import JobOutcome

    path = tmp_path / "jobs.jsonl"
    register(
        "test.follow_up", values={"path": str(path)}, job_types=["inventory"], store_types=["PEM"]
    )
    job, _ = job_inventory_request(store=store, source=Job.Source.ADMIN)
    Job.objects.filter(pk=job.pk).update(max_attempts=1)
    assert job_lease_next(orchestrator=agent.orchestrator).pk == job.pk
    job_complete(
        orchestrator=agent.orchestrator, job_id=job.pk, outcome=JobOutcome.FAILURE, message="disk"
    )
    event = Event.objects.get(kind=EventKind.JOB_COMPLETED)
    assert event.data["store_type"] == "PEM" and event.data["job"]["final"] is True
    event_runs_execute(event.pk)
    run = HandlerRun.objects.get()
    assert run.state == HandlerRun.State.SUCCEEDED, run.error
    follow_up = Job.objects.exclude(pk=job.pk).get()
    assert run.output["actions"] == [
        {
            "action": "schedule_job",
            "store_id": str(store.pk),
            "job_type": "inventory",
            "delay_seconds": 0,
            # The id schedule_job returned; provenance (tests/certyard/jobs/test_provenance.py).
            "job_id": str(follow_up.pk),
            "retry_of": None,
            "by": run.registration_name,
            "registration_id": run.registration_id,
        }
    ]
    assert lines(path) == [
        {"job_id": str(job.pk), "type": "inventory", "outcome": "failure", "attempt": 1}
    ]
    assert follow_up.source == Job.Source.HANDLER and follow_up.state == Job.State.PENDING


def test_runs_whose_worker_died_are_failed_and_retried() -> None:
    registration = register("test.raises", timeout_seconds=5, max_attempts=2)
    event = event_emit(kind=EventKind.JOB_COMPLETED, subject_type="job", subject_id="j")
    long_ago = timezone.now() - dt.timedelta(hours=1)
    HandlerRun.objects.filter(event=event).update(
        state=HandlerRun.State.RUNNING, started_at=long_ago
    )
    assert runs_stuck_fail() == 1
    lost = HandlerRun.objects.get(attempt=1)
    assert lost.state == HandlerRun.State.FAILED and "worker" in lost.error
    assert HandlerRun.objects.get(attempt=2).registration == registration


def test_due_runs_are_handed_to_the_queue_once() -> None:
    from django_q.models import OrmQ

    register("test.raises")
    event = event_emit(kind=EventKind.JOB_COMPLETED, subject_type="job", subject_id="j")
    # The emitting transaction never committed here (a test transaction), so the run
    # was never handed over: the sweep does it, once.
    assert HandlerRun.objects.get(event=event).enqueued_at is None
    assert runs_due_enqueue() == 1
    assert runs_due_enqueue() == 0
    assert OrmQ.objects.count() == 1


def test_history_older_than_the_retention_is_pruned(settings: Any) -> None:
    settings.CERTYARD_RUN_RETENTION_DAYS = 30
    register("test.raises", max_attempts=1)
    old = event_emit(kind=EventKind.JOB_COMPLETED, subject_type="job", subject_id="old")
    event_runs_execute(old.pk)
    recent = event_emit(kind=EventKind.JOB_COMPLETED, subject_type="job", subject_id="new")
    long_ago = timezone.now() - dt.timedelta(days=31)
    Event.objects.filter(pk=old.pk).update(occurred_at=long_ago)
    HandlerRun.objects.filter(event=old).update(queued_at=long_ago)
    assert history_prune() == 2
    assert list(Event.objects.all()) == [recent]
    assert HandlerRun.objects.get().event == recent


# --- Registration handlers ------------------------------------------------------------


def _register_agent(make_token: Any, name: str = "web-1", **token: Any) -> Orchestrator:
    from certyard.fleet.services import orchestrator_register
    from tests.certs import agent_key, csr_pem

    return orchestrator_register(
        token=make_token(**token),
        name=name,
        client_machine=f"{name}.example.test",
        agent_version="1",
        capabilities=["PEM.Inventory"],
        client_parameters={"site": "lab"},
        csr_pem=csr_pem(agent_key(), name),
        source_address="10.1.2.3",
    ).orchestrator


def test_the_first_handler_that_allows_approves_and_is_recorded(make_token: Any) -> None:
    register("test.decide", "defers", {"verdict": "defer"}, order=1)
    register("test.decide", "allows", {"verdict": "allow"}, order=2)
    register("test.decide", "never asked", {"verdict": "deny"}, order=3)
    orchestrator = _register_agent(make_token)
    assert orchestrator.status == Orchestrator.Status.APPROVED
    assert orchestrator.metadata == {"decided": "fixed"}
    runs = HandlerRun.objects.filter(subject_id=str(orchestrator.pk)).order_by("pk")
    assert [(r.registration_name, r.state, r.output["verdict"]) for r in runs] == [
        ("defers", "succeeded", "defer"),
        ("allows", "succeeded", "allow"),
    ]
    assert runs[1].inputs["client_parameters"] == {"site": "lab"}
    assert runs[1].inputs["source_address"] == "10.1.2.3"
    kinds = list(Event.objects.order_by("pk").values_list("kind", flat=True))
    assert kinds == ["orchestrator.registered", "orchestrator.approved"]


def test_a_deny_disapproves_even_with_a_pre_approving_token(make_token: Any) -> None:
    register("test.decide", "denies", {"verdict": "deny"})
    orchestrator = _register_agent(make_token, approve=True)
    assert orchestrator.status == Orchestrator.Status.DISAPPROVED


def test_garbage_a_hang_and_a_missing_class_each_count_as_defer(make_token: Any) -> None:
    register("test.garbage_registration", "garbage", order=1)
    register("test.hanging_registration", "hangs", order=2, timeout_seconds=1)
    missing = register("test.decide", "missing", {"verdict": "allow"}, order=3)
    HandlerRegistration.objects.filter(pk=missing.pk).update(handler="gone.uninstalled")
    started = time.monotonic()
    orchestrator = _register_agent(make_token)
    assert time.monotonic() - started < 5
    assert orchestrator.status == Orchestrator.Status.NEW  # left to an administrator
    runs = HandlerRun.objects.filter(subject_id=str(orchestrator.pk)).order_by("pk")
    assert [(r.registration_name, r.state) for r in runs] == [
        ("garbage", "failed"),
        ("hangs", "failed"),
        ("missing", "failed"),
    ]
    assert runs[0].error == "returned dict, not a RegistrationDecision: counted as defer"
    assert runs[1].error == "timed out after 1 s"
    assert "missing" in runs[2].error


def test_the_handlers_share_one_time_budget(make_token: Any, settings: Any) -> None:
    settings.CERTYARD_REGISTRATION_HANDLERS_SECONDS = 1
    register("test.hanging_registration", "hangs", order=1, timeout_seconds=30)
    register("test.decide", "too late", {"verdict": "allow"}, order=2)
    orchestrator = _register_agent(make_token)
    assert orchestrator.status == Orchestrator.Status.NEW
    late = HandlerRun.objects.get(registration_name="too late")
    assert late.error.startswith("not asked")


def test_a_withheld_certificate_records_the_orchestrator_without_identity(
    make_token: Any,
) -> None:
    from certyard.errors import ServiceError

    register("test.decide", values={"verdict": "defer", "issue_certificate": False})
    register("test.decide", "allow but withhold", {"verdict": "allow", "issue_certificate": False})
    with pytest.raises(ServiceError) as refused:
        _register_agent(make_token)
    assert refused.value.code == "certificate_withheld" and refused.value.http_status == 403
    orchestrator = Orchestrator.objects.get()
    assert not orchestrator.has_identity and orchestrator.status == Orchestrator.Status.NEW
    assert orchestrator.last_error.endswith("allow but withhold")


def test_many_events_are_handed_over_in_few_tasks(tmp_path: Path) -> None:
    from django_q.models import OrmQ

    path = tmp_path / "events.jsonl"
    register("test.record", values={"path": str(path)}, timeout_seconds=600)
    events = [
        event_emit(kind=EventKind.CERTIFICATE_EXPIRING, subject_type="certificate", subject_id=n)
        for n in range(12)
    ]
    # 600 s each: four events fit under the task ceiling of 3,000 s (less a margin).
    assert enqueue_event_runs([event.pk for event in events]) == 3
    assert OrmQ.objects.count() == 3
    assert event_runs([event.pk for event in events]) == 12
    assert len(lines(path)) == 12


def test_a_retry_sees_the_context_of_the_runs_ahead_of_it(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    register("test.suppress", "first", order=10)
    record = register("test.record", "second", {"path": str(path)}, order=20)
    event = event_emit(
        kind=EventKind.CERTIFICATE_EXPIRING, subject_type="certificate", subject_id=1
    )
    event_runs_execute(event.pk)
    # A later attempt of the second registration, run on its own (as the sweep does).
    retry = HandlerRun.objects.get(registration=record)
    retry.pk, retry.attempt, retry.state = None, 2, HandlerRun.State.QUEUED
    retry.save()
    run_execute(retry.pk)
    assert [line["context"] for line in lines(path)] == [{"suppress_email": True}] * 2


def test_a_lapsed_lease_that_fails_the_job_reaches_job_complete_handlers(
    tmp_path: Path, store: Any, agent: Any
) -> None:
    from certyard.jobs.services import job_inventory_request, job_lease_next, jobs_release_lapsed

    job, _ = job_inventory_request(store=store, source=Job.Source.ADMIN)
    Job.objects.filter(pk=job.pk).update(max_attempts=1)
    job_lease_next(orchestrator=agent.orchestrator)
    past = timezone.now() - dt.timedelta(minutes=1)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=past, picked_up_at=past)
    assert jobs_release_lapsed() == 1
    event = Event.objects.get(kind=EventKind.JOB_COMPLETED)
    assert event.data["job"]["outcome"] == "failure" and event.data["job"]["final"] is True


def test_a_deny_at_registration_emits_disapproved(make_token: Any) -> None:
    register("test.decide", "denies", {"verdict": "deny"})
    _register_agent(make_token)
    kinds = list(Event.objects.order_by("pk").values_list("kind", flat=True))
    assert kinds == ["orchestrator.registered", "orchestrator.disapproved"]
