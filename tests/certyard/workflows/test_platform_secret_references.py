"""``ref+platform:`` references: a handler's secret parameter and a store password kept as a
reference the platform resolves only where the value is needed (the door to extension
code; the job configuration handed to the agent). The database keeps the reference; a
reference that cannot be resolved is named in the run's error or the refusal, never a
value."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.inventory.services import store_create
from certyard.jobs.models import Job, JobHistory
from certyard.jobs.services import job_inventory_request
from certyard.workflows.invoke import Refused, handler_instance, registration_config
from certyard.workflows.models import HandlerRegistration, HandlerRun
from certyard.workflows.runner import event_runs_execute
from certyard.workflows.services import event_emit, registration_save
from handlers.base import EventKind, Handler
from handlers.parameters import ParameterError
from tests.certyard.conftest import AGENT, error_of
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "webhook-secret-from-env-3Jp"
REFERENCE = "ref+platform:env:CERTYARD_TEST_WEBHOOK_SECRET"


def _webhook(secret: str) -> HandlerRegistration:
    registration = HandlerRegistration(
        name="signed hook", handler="certyard.webhook", events=["certificate.expiring"]
    )
    # A closed port: the call fails after it started, which is all this needs.
    values = {"url": "http://127.0.0.1:9/hook", "secret": secret, "attempts": 1}
    return registration_save(registration=registration, values=values)


def test_a_handler_gets_the_secret_its_reference_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTYARD_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET)
    registration = _webhook(REFERENCE)

    assert registration_config(registration)["secret"] == REFERENCE  # what is kept
    assert handler_instance(registration, Handler).config["secret"] == WEBHOOK_SECRET
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {HandlerRegistration._meta.db_table}")  # noqa: S608
        stored = repr(cursor.fetchall())
    assert WEBHOOK_SECRET not in stored and "CERTYARD_TEST_WEBHOOK_SECRET" not in stored


def test_an_unresolvable_reference_fails_the_run_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CERTYARD_TEST_WEBHOOK_SECRET", raising=False)
    registration = _webhook(REFERENCE)
    with pytest.raises(Refused) as refused:
        handler_instance(registration, Handler)
    assert refused.value.outcome == "bad_parameters"

    event = event_emit(
        kind=EventKind.CERTIFICATE_EXPIRING, subject_type="certificate", subject_id=1
    )
    event_runs_execute(event.pk)

    run = HandlerRun.objects.get(registration=registration)
    assert run.state == "failed" and run.output["outcome"] == "bad_parameters"
    assert f"parameter secret: {REFERENCE} is unavailable" in run.error
    assert "environment variable CERTYARD_TEST_WEBHOOK_SECRET is not set" in run.error


def test_a_malformed_reference_is_refused_when_saved() -> None:
    with pytest.raises(ParameterError) as refused:
        _webhook("ref+platform:Env:X")
    assert "ref+agent:<provider>:<name>" in str(refused.value.errors["secret"])


@pytest.fixture
def keystore_agent(agent: RegisteredAgent) -> RegisteredAgent:
    agent.orchestrator.capabilities = [*agent.orchestrator.capabilities, "PKCS12.Inventory"]
    agent.orchestrator.save(update_fields=["capabilities"])
    return agent


def _config(agent_api: Any, agent: RegisteredAgent, password: str) -> Any:
    store = store_create(
        store_type=CertificateStoreType.objects.get(short_name="PKCS12"),
        store_path="/srv/app/keystore.p12",
        orchestrator=agent.orchestrator,
        password=password,
    )
    job, _ = job_inventory_request(store=store, source=Job.Source.API)
    client = agent_api(agent)
    assert client.get(f"{AGENT}jobs/next", {"wait": 0}).status_code == 200
    return job, client.get(f"{AGENT}jobs/{job.pk}/config")


def test_a_store_password_from_a_platform_file_reaches_only_the_agent(
    keystore_agent, agent_api, tmp_path: Path
) -> None:
    secret = tmp_path / "p12.pass"
    secret.write_text("p12-from-platform-file-6Tn\n")
    secret.chmod(0o600)

    _, answer = _config(agent_api, keystore_agent, f"ref+platform:file:{secret}")

    assert answer.status_code == 200
    assert answer.json()["store"]["password"] == "p12-from-platform-file-6Tn"
    assert CertificateStore.objects.get().password == f"ref+platform:file:{secret}"


def test_a_platform_command_runs_only_as_the_platforms_settings_say(
    keystore_agent, agent_api, settings: Any
) -> None:
    settings.CERTYARD_SECRET_COMMANDS = {
        "printer": [sys.executable, "-c", "import sys; print('cmd-' + sys.argv[1])"]
    }
    _, answer = _config(agent_api, keystore_agent, "ref+platform:command:printer:web")
    assert answer.json()["store"]["password"] == "cmd-web"


def test_an_unresolvable_store_password_refuses_the_fetch_naming_it(
    keystore_agent, agent_api, tmp_path: Path
) -> None:
    reference = f"ref+platform:file:{tmp_path / 'absent'}"
    job, answer = _config(agent_api, keystore_agent, reference)

    assert answer.status_code == 409
    error = error_of(answer)
    assert error["code"] == "secret_unavailable"
    assert f"store password: {reference} is unavailable" in error["message"]
    history = JobHistory.objects.get(job=job)
    assert reference in str(history.report_errors)
