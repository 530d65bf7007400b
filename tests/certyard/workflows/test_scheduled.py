"""Running the platform's scheduled work now: the registry, the command and the API.

Real components throughout: the tasks the apps register, the django-q2 schedules their
migrations made, the ORM broker's queue, a real inventory for the expiry scan.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from rest_framework.test import APIClient

from certyard.inventory.ingest import inventory_submit
from certyard.inventory.models import CertificateStore
from certyard.jobs.models import Job
from certyard.workflows.models import Event
from certyard.workflows.scheduled import (
    ScheduledTask,
    ScheduledTaskUnknown,
    scheduled_task_enqueue,
    scheduled_task_execute,
    scheduled_task_may_run,
    scheduled_task_run,
    scheduled_task_states,
    scheduled_tasks,
)
from tests.certs import issue
from tests.conftest import RegisteredAgent, entry

pytestmark = pytest.mark.django_db

EXPECTED = {
    "expiry-scan",
    "metadata-new",
    "metadata-backfill",
    "crl-refresh",
    "gateway-sync",
    "gateway-upkeep",
    "retention",
    "job-schedules",
    "handler-runs",
}


@pytest.fixture
def expiring_store(
    register_agent: Callable[..., RegisteredAgent], pem_store: Callable[..., CertificateStore]
) -> CertificateStore:
    """A store holding a certificate 5 days from expiry, reported by a real inventory."""
    agent = register_agent()
    store = pem_store(agent.orchestrator, "/etc/ssl/run-now")
    leaf = issue("soon.example.test", days=5)
    assert not inventory_submit(store=store, entries=[entry("soon", leaf)]).rejected
    return store


def _user(name: str, *, staff: bool = False, superuser: bool = False, perm: bool = False):
    user = get_user_model().objects.create_user(name, password="a-long-test-password-7")
    user.is_staff, user.is_superuser = staff or superuser, superuser
    user.save()
    if perm:
        user.user_permissions.add(Permission.objects.get(codename="run_scheduled_task"))
    return get_user_model().objects.get(pk=user.pk)  # no cached permissions


# --- Registry ------------------------------------------------------------------------


def test_every_platform_schedule_has_a_task() -> None:
    names = {task.name for task in scheduled_tasks()}
    assert names == EXPECTED
    # Each django-q2 schedule the migrations create is runnable by some task's name.
    schedules = set(
        Schedule.objects.filter(name__startswith="certyard:").values_list("name", flat=True)
    )
    named = {task.schedule_name for task in scheduled_tasks() if task.schedule_name}
    assert schedules and schedules <= named
    assert named <= schedules
    # The function a task runs is the schedule's own, where the schedule runs one.
    by_schedule = {s.name: s.func for s in Schedule.objects.filter(name__in=named)}
    expiry = next(task for task in scheduled_tasks() if task.name == "expiry-scan")
    assert by_schedule[expiry.schedule_name] == "certyard.jobs.tasks.expiry_scan_daily"
    assert (
        expiry.function().__module__ + "." + expiry.function().__name__
        == (by_schedule[expiry.schedule_name])
    )


def test_a_task_name_is_a_slug() -> None:
    with pytest.raises(ValueError, match="lowercase"):
        ScheduledTask(name="Expiry Scan", label="x", description="x", func=print)


def test_expiry_scan_run_now_emits_the_warning_and_names_its_actor(
    expiring_store: CertificateStore, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(CERTYARD_EXPIRY_THRESHOLDS=(1, 7, 30, 90)):
        result = scheduled_task_run("expiry-scan", actor="tester")
    assert result["task"] == "expiry-scan"
    assert result["actor"] == "tester"
    assert result["result"]["events_emitted"] == 1
    assert result["result"]["by_threshold"]["7"] == 1
    (event,) = Event.objects.filter(kind="certificate.expiring")
    # The nearest threshold only: not 90 and 30 as well.
    assert event.data["days"] == 7
    assert "run now by tester" in caplog.text
    # Running it again emits nothing new.
    with override_settings(CERTYARD_EXPIRY_THRESHOLDS=(1, 7, 30, 90)):
        again = scheduled_task_run("expiry-scan", actor="tester")
    assert again["result"]["events_emitted"] == 0


def test_a_user_actor_is_named_by_user_name_and_a_backfill_is_theirs() -> None:
    admin = _user("boss", superuser=True)
    with pytest.raises(Exception, match="no metadata generator is registered"):
        scheduled_task_run("metadata-backfill", actor=admin)
    result = scheduled_task_run("retention", actor=admin)
    assert result["actor"] == "boss"
    assert result["result"] == {"rows_pruned": 0}


def test_an_unknown_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ScheduledTaskUnknown, match="expiry-scan"):
        scheduled_task_run("nope")
    with pytest.raises(ScheduledTaskUnknown):
        scheduled_task_enqueue("nope")


def test_enqueue_hands_the_task_to_the_cluster_and_the_worker_side_runs_it() -> None:
    admin = _user("boss", superuser=True)
    task_id = scheduled_task_enqueue("crl-refresh", actor=admin)
    (queued,) = OrmQ.objects.all()
    assert queued.task_id() == task_id
    assert queued.func() == "certyard.workflows.scheduled.scheduled_task_execute"
    assert queued.task["args"] == ("crl-refresh", "boss", admin.pk)
    assert queued.task["group"] == "run now: crl-refresh"
    # What the worker calls.
    result = scheduled_task_execute(*queued.task["args"])
    assert result["actor"] == "boss"
    assert result["result"] == 0


def test_states_list_schedules_and_next_runs() -> None:
    states = {state.task.name: state for state in scheduled_task_states()}
    assert states["expiry-scan"].schedule_label == "daily"
    assert states["expiry-scan"].next_run is not None
    assert states["handler-runs"].schedule_label == "every 1 minute"
    assert states["metadata-backfill"].schedule_label == "on demand only"
    assert states["metadata-backfill"].next_run is None


def test_who_may_run() -> None:
    assert scheduled_task_may_run(_user("root", superuser=True))
    assert scheduled_task_may_run(_user("ops", staff=True, perm=True))
    assert not scheduled_task_may_run(_user("staff", staff=True))
    assert not scheduled_task_may_run(_user("granted-not-staff", perm=True))
    assert not scheduled_task_may_run(None)


# --- Command -------------------------------------------------------------------------


def test_command_lists_the_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("certyard_task", "list", "--json")
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} == EXPECTED
    call_command("certyard_task", "list")
    out = capsys.readouterr().out
    assert "expiry-scan" in out and "certificate.expiring" in out


def test_command_runs_a_task_as_json(
    expiring_store: CertificateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    with override_settings(CERTYARD_EXPIRY_THRESHOLDS=(1, 7, 30, 90)):
        call_command("certyard_task", "run", "expiry-scan", "--json")
    result = json.loads(capsys.readouterr().out)
    assert result["result"]["events_emitted"] == 1
    assert result["actor"].startswith("manage.py certyard_task (")


def test_command_refuses_an_unknown_name_with_exit_code_1() -> None:
    with pytest.raises(CommandError, match="no scheduled task is named 'nope'") as raised:
        call_command("certyard_task", "run", "nope")
    assert raised.value.returncode == 1


def test_command_reports_a_refusal_with_exit_code_1() -> None:
    with pytest.raises(CommandError, match="metadata-backfill: no metadata generator") as raised:
        call_command("certyard_task", "run", "metadata-backfill")
    assert raised.value.returncode == 1


# --- API -----------------------------------------------------------------------------


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_lists_the_tasks_for_a_superuser() -> None:
    response = _api(_user("root", superuser=True)).get("/api/v1/scheduled-tasks/")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()}
    assert set(rows) == EXPECTED
    assert rows["expiry-scan"]["events"] == ["certificate.expiring"]
    assert rows["expiry-scan"]["schedule"] == "certyard: expiration scan"
    assert rows["expiry-scan"]["next_run"]
    assert rows["metadata-backfill"]["schedule"] is None
    assert rows["expiry-scan"]["last_run"] is None


def test_api_run_queues_the_task_and_answers_202() -> None:
    response = _api(_user("ops", staff=True, perm=True)).post(
        "/api/v1/scheduled-tasks/expiry-scan/run/"
    )
    assert response.status_code == 202
    body = response.json()
    assert body["task"] == "expiry-scan" and body["actor"] == "ops"
    assert OrmQ.objects.get().task_id() == body["task_id"]


def test_api_refuses_an_unknown_name_with_a_json_404() -> None:
    response = _api(_user("root", superuser=True)).post("/api/v1/scheduled-tasks/nope/run/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "expiry-scan" in response.json()["error"]["message"]


@pytest.mark.parametrize("kind", ["plain", "staff", "granted-not-staff"])
def test_api_refuses_whoever_may_not(kind: str) -> None:
    user = _user(kind, staff=kind == "staff", perm=kind == "granted-not-staff")
    client = _api(user)
    assert client.get("/api/v1/scheduled-tasks/").status_code == 403
    response = client.post("/api/v1/scheduled-tasks/expiry-scan/run/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not OrmQ.objects.exists()


def test_api_needs_credentials() -> None:
    assert APIClient().get("/api/v1/scheduled-tasks/").status_code == 401
    assert APIClient().post("/api/v1/scheduled-tasks/expiry-scan/run/").status_code == 401


def test_gateway_sync_starts_every_gateway_that_can_sync_once() -> None:
    from certyard.workflows.models import HandlerRegistration
    from certyard.workflows.services import registration_save

    registration_save(
        registration=HandlerRegistration(name="CFSSL", handler="certyard.cfssl"),
        values={"url": "http://127.0.0.1:9"},  # never called: the sync only starts here
    )
    admin = _user("boss", superuser=True)
    first = scheduled_task_run("gateway-sync", actor=admin)["result"]
    assert [started["gateway"] for started in first["started"]] == ["CFSSL"]
    # Still running: the next run-now says so rather than starting it twice.
    again = scheduled_task_run("gateway-sync", actor=admin)["result"]
    assert again["started"] == []
    assert again["skipped"] == [
        {"gateway": "CFSSL", "reason": "CFSSL is already being synchronized"}
    ]


def test_job_schedules_run_now_opens_due_inventories_naming_who_ran_it(
    register_agent: Callable[..., RegisteredAgent], pem_store: Callable[..., CertificateStore]
) -> None:
    store = pem_store(register_agent().orchestrator, "/etc/ssl/due")
    CertificateStore.objects.filter(pk=store.pk).update(
        inventory_interval_minutes=60, inventory_next_run=timezone.now()
    )
    admin = _user("ops", superuser=True)

    result = scheduled_task_run("job-schedules", actor=admin)

    assert result["result"]["scheduled_jobs"] == 1
    job = Job.objects.get(store=store)
    assert job.source == Job.Source.SCHEDULE
    assert job.source_detail == ("certyard: job schedules and leases, run now by ops: every 60 min")
