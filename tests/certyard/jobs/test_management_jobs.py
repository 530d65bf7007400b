"""Management jobs (add, remove, create, reenrollment, discovery) in the jobs layer.

Their creation and its refusals, the payload resolvers and finished hooks that upper apps
register, the agent's result, the re-read inventory after a write, and discovery jobs
that have no store. Through the services, and through the agent API where the wire is
what is being shown.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateLocation, CertificateStoreType
from certyard.jobs import hooks, services
from certyard.jobs.hooks import (
    job_attempt_outcome,
    job_finished_hook_register,
    job_payload_resolver_register,
)
from certyard.jobs.models import Job, JobHistory
from certyard.jobs.services import (
    job_cancel,
    job_complete,
    job_configuration,
    job_lease_next,
    job_request,
    jobs_release_lapsed,
)
from orchestrators.protocol import JobOutcome, JobType
from tests.certs import issue
from tests.certyard.conftest import ADMIN, AGENT, error_of
from tests.conftest import RegisteredAgent, entry

pytestmark = pytest.mark.django_db

_CAPABILITIES = ["PEM.Inventory", "PEM.Add", "PEM.Remove", "PEM.Create", "PEM.Discovery"]


@pytest.fixture(autouse=True)
def _own_registries() -> Iterator[None]:
    """The registries are process-wide and upper apps fill them in ``ready``: each test
    starts with none and leaves them as it found them."""
    resolvers = dict(hooks._payload_resolvers)
    finished = list(hooks._finished_hooks)
    hooks._payload_resolvers.clear()
    hooks._finished_hooks.clear()
    yield
    hooks._payload_resolvers.clear()
    hooks._payload_resolvers.update(resolvers)
    hooks._finished_hooks[:] = finished


@pytest.fixture
def manager(agent: RegisteredAgent) -> RegisteredAgent:
    """An approved orchestrator that advertises managing PEM stores."""
    Orchestrator.objects.filter(pk=agent.orchestrator.pk).update(capabilities=_CAPABILITIES)
    agent.orchestrator.refresh_from_db()
    return agent


@pytest.fixture
def pem_manageable(db: None) -> CertificateStoreType:
    """The PEM store type supporting every management operation."""
    CertificateStoreType.objects.filter(short_name="PEM").update(
        supports_add=True, supports_remove=True, supports_create=True, supports_discovery=True
    )
    return CertificateStoreType.objects.get(short_name="PEM")


@pytest.fixture
def mstore(manager: RegisteredAgent, pem_manageable: Any, pem_store: Callable[..., Any]) -> Any:
    return pem_store(manager.orchestrator, "/etc/ssl/managed")


@pytest.fixture
def finished() -> list[tuple[str, int, str, str]]:
    """What the finished hook heard: (job id, attempt, attempt outcome, job state)."""
    calls: list[tuple[str, int, str, str]] = []

    def hook(job: Job) -> None:
        calls.append((str(job.pk), job.attempts, job_attempt_outcome(job), job.state))

    job_finished_hook_register(hook)
    job_finished_hook_register(hook)  # twice: still called once
    return calls


def _add_job(store: Any, **payload: Any) -> Job:
    return job_request(
        orchestrator=store.orchestrator,
        store=store,
        type=JobType.ADD,
        payload={"certificate_id": "c-1", "alias": "www", **payload},
        source=Job.Source.API,
    )


def _discovery_job(orchestrator: Orchestrator) -> Job:
    return job_request(
        orchestrator=orchestrator,
        store=None,
        type=JobType.DISCOVERY,
        payload={"directories": ["/etc/ssl"], "file_patterns": ["*.pem"], "max_depth": 4},
        source=Job.Source.API,
    )


def _lease(orchestrator: Orchestrator) -> Job:
    job = job_lease_next(orchestrator=orchestrator)
    assert job is not None
    job_configuration(orchestrator=orchestrator, job_id=job.pk)
    return job


def _available(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(available_at=timezone.now() - dt.timedelta(seconds=1))


def _lapse(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))


# --- job_request ---------------------------------------------------------------------------


def test_a_management_job_is_queued_with_its_references(mstore: Any) -> None:
    job = job_request(
        orchestrator=mstore.orchestrator,
        store=mstore,
        type="add",
        payload={"certificate_id": "c-1", "alias": None, "private_key": None, "overwrite": False},
        source=Job.Source.API,
        deployment_id="d-42",
    )

    job.refresh_from_db()
    assert (job.type, job.state, job.store, job.attempts) == ("add", "pending", mstore, 0)
    assert job.payload["deployment_id"] == "d-42"
    assert job.payload["certificate_id"] == "c-1"


def test_job_request_refuses_what_cannot_run(
    mstore: Any, manager: RegisteredAgent, register_agent: Callable[..., RegisteredAgent]
) -> None:
    orchestrator = manager.orchestrator

    def refusal(**overrides: Any) -> str:
        kwargs: dict[str, Any] = {
            "orchestrator": orchestrator,
            "store": mstore,
            "type": "add",
            "payload": {"alias": "a"},
            "source": Job.Source.API,
            **overrides,
        }
        with pytest.raises(ServiceError) as caught:
            job_request(**kwargs)
        assert caught.value.message
        return caught.value.code

    assert refusal(type="frobnicate") == "invalid_job_type"
    assert refusal(type="inventory") == "invalid_job_type"
    assert refusal(type="discovery") == "store_not_allowed"
    assert refusal(store=None) == "store_required"
    other = register_agent("agent-2").orchestrator
    assert refusal(orchestrator=other) == "wrong_orchestrator"
    assert refusal(payload=["not", "an", "object"]) == "invalid_payload"
    assert refusal(payload={"blob": "x" * 70_000}) == "invalid_payload"

    # The store type does not support the operation.
    CertificateStoreType.objects.filter(pk=mstore.store_type_id).update(supports_remove=False)
    mstore.store_type.refresh_from_db()
    assert refusal(type="remove") == "operation_unsupported"

    # The agent does not advertise it.
    Orchestrator.objects.filter(pk=orchestrator.pk).update(capabilities=["PEM.Inventory"])
    orchestrator.refresh_from_db()
    assert refusal() == "capability_missing"
    assert refusal(type="discovery", store=None) == "capability_missing"

    Orchestrator.objects.filter(pk=orchestrator.pk).update(status=Orchestrator.Status.DISAPPROVED)
    orchestrator.refresh_from_db()
    assert refusal() == "not_approved"
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"entry_parameters": {"store_password": "hunter2"}},
        {"password": "hunter2"},
        {"private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"},
        {"private_key": {"ciphertext": "abc"}},
        {"notes": ["-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----"]},
    ],
)
def test_a_payload_holds_references_never_a_secret(mstore: Any, payload: dict[str, Any]) -> None:
    with pytest.raises(ServiceError) as caught:
        _add_job(mstore, **payload)

    assert caught.value.code == "secret_in_payload"
    assert "hunter2" not in caught.value.message and "MII" not in caught.value.message
    assert not Job.objects.exists()


# --- payload resolvers -----------------------------------------------------------------------


def test_the_types_resolver_makes_the_agents_payload_and_the_store_carries_its_endpoint(
    mstore: Any, manager: RegisteredAgent, agent_api: Callable[..., Any]
) -> None:
    seen: list[tuple[str, int, str]] = []

    def resolve(job: Job, orchestrator: Orchestrator) -> dict[str, Any]:
        seen.append((str(job.pk), job.attempts, str(orchestrator.pk)))
        return {**job.payload, "certificate": "PEM here", "private_key": None}

    job_payload_resolver_register(JobType.ADD, resolve)
    job = _add_job(mstore)
    client = agent_api(manager)
    assert client.get(f"{AGENT}jobs/next?wait=0").json()["id"] == str(job.pk)

    config = client.get(f"{AGENT}jobs/{job.pk}/config").json()

    assert seen == [(str(job.pk), 1, str(manager.orchestrator.pk))]
    assert config["payload"] == {
        "certificate_id": "c-1",
        "alias": "www",
        "certificate": "PEM here",
        "private_key": None,
    }
    assert config["store"]["endpoint"] is None  # none set on the store
    job.refresh_from_db()
    assert "certificate" not in job.payload  # what the resolver adds is never stored


def test_a_store_endpoint_is_in_the_config(mstore: Any, manager: RegisteredAgent) -> None:
    if not hasattr(mstore, "endpoint_host"):
        pytest.skip("the store's endpoint fields have not landed")
    type(mstore).objects.filter(pk=mstore.pk).update(
        endpoint_host="127.0.0.1", endpoint_port=8443, endpoint_sni="www.example.test"
    )
    _add_job(mstore)
    job = job_lease_next(orchestrator=manager.orchestrator)

    config = job_configuration(orchestrator=manager.orchestrator, job_id=job.pk)

    assert config["store"]["endpoint"] == {
        "host": "127.0.0.1",
        "port": 8443,
        "sni": "www.example.test",
    }


def test_a_resolvers_refusal_refuses_the_fetch_with_its_message(
    mstore: Any, manager: RegisteredAgent, agent_api: Callable[..., Any]
) -> None:
    def resolve(job: Job, orchestrator: Orchestrator) -> dict[str, Any]:
        raise ServiceError("the private key is no longer held", code="key_gone", http_status=409)

    job_payload_resolver_register(JobType.ADD, resolve)
    job = _add_job(mstore)
    client = agent_api(manager)
    client.get(f"{AGENT}jobs/next?wait=0")

    answer = client.get(f"{AGENT}jobs/{job.pk}/config")

    assert answer.status_code == 409
    error = error_of(answer)
    assert (error["code"], error["message"]) == ("key_gone", "the private key is no longer held")
    (kept,) = JobHistory.objects.get(job=job, attempt=1).report_errors
    assert kept["error"].endswith("refused: the private key is no longer held")
    # The agent ends the attempt; its failure is recorded as any other.
    done = client.post(
        f"{AGENT}jobs/{job.pk}/complete",
        {"status": "failure", "message": "cannot run job: key gone", "attempt": 1},
        format="json",
    )
    assert done.status_code == 200 and done.json()["state"] == "pending"


def test_without_a_resolver_the_stored_payload_is_sent(mstore: Any, manager: Any) -> None:
    _add_job(mstore, overwrite=True)
    job = job_lease_next(orchestrator=manager.orchestrator)

    config = job_configuration(orchestrator=manager.orchestrator, job_id=job.pk)

    assert config["payload"] == {"certificate_id": "c-1", "alias": "www", "overwrite": True}


# --- finished hooks --------------------------------------------------------------------------


def test_the_hook_hears_every_ended_attempt_once(
    mstore: Any, manager: RegisteredAgent, finished: list[tuple[str, int, str, str]]
) -> None:
    orchestrator = manager.orchestrator
    job = _add_job(mstore)
    jid = str(job.pk)

    _lease(orchestrator)
    job_complete(orchestrator=orchestrator, job_id=jid, outcome=JobOutcome.FAILURE, message="no")
    assert finished == [(jid, 1, "failure", "pending")]  # retried

    _available(job)
    _lease(orchestrator)
    _lapse(job)
    assert jobs_release_lapsed() == 1
    assert finished[-1] == (jid, 2, "lease_expired", "pending")  # retried again

    _available(job)
    _lease(orchestrator)
    job_complete(orchestrator=orchestrator, job_id=jid, outcome=JobOutcome.FAILURE, message="no")
    assert finished[-1] == (jid, 3, "failure", "failed")  # out of attempts: final

    # A repeat of the result is a duplicate: not heard again.
    job_complete(orchestrator=orchestrator, job_id=jid, outcome=JobOutcome.FAILURE, message="no")
    assert len(finished) == 3


def test_the_hook_hears_a_success_a_warning_and_a_final_lapse(
    mstore: Any, manager: RegisteredAgent, finished: list[tuple[str, int, str, str]]
) -> None:
    orchestrator = manager.orchestrator
    ok, warned, lapsed = _add_job(mstore), _add_job(mstore), _add_job(mstore)
    Job.objects.filter(pk=lapsed.pk).update(max_attempts=1)

    for _ in range(3):
        _lease(orchestrator)
    job_complete(orchestrator=orchestrator, job_id=ok.pk, outcome=JobOutcome.SUCCESS, message="")
    job_complete(
        orchestrator=orchestrator,
        job_id=warned.pk,
        outcome=JobOutcome.WARNING,
        message="written, endpoint still serves the old certificate",
    )
    _lapse(lapsed)
    jobs_release_lapsed()

    assert finished == [
        (str(ok.pk), 1, "success", "succeeded"),
        (str(warned.pk), 1, "warning", "succeeded"),
        (str(lapsed.pk), 1, "lease_expired", "failed"),
    ]


def test_the_hook_hears_a_cancel_running_or_not_yet_run(
    mstore: Any,
    manager: RegisteredAgent,
    superuser: Any,
    finished: list[tuple[str, int, str, str]],
) -> None:
    running, waiting = _add_job(mstore), _add_job(mstore)
    Job.objects.filter(pk=waiting.pk).update(available_at=timezone.now() + dt.timedelta(hours=1))
    _lease(manager.orchestrator)

    job_cancel(job=running, actor=superuser)
    job_cancel(job=waiting, actor=superuser)

    assert finished == [
        (str(running.pk), 1, "released", "cancelled"),
        (str(waiting.pk), 0, "cancelled", "cancelled"),
    ]


def test_a_failing_hook_does_not_stop_the_job_ending(
    mstore: Any, manager: RegisteredAgent, finished: list[tuple[str, int, str, str]]
) -> None:
    def broken(job: Job) -> None:
        Job.objects.filter(pk=job.pk).update(message="written by a broken hook")
        raise RuntimeError("a consumer's bug")

    hooks._finished_hooks.insert(0, broken)
    job = _add_job(mstore)
    _lease(manager.orchestrator)

    job_complete(
        orchestrator=manager.orchestrator, job_id=job.pk, outcome=JobOutcome.SUCCESS, message="ok"
    )

    job.refresh_from_db()
    assert (job.state, job.message) == ("succeeded", "ok")  # the broken hook's write undone
    assert finished == [(str(job.pk), 1, "success", "succeeded")]  # the next hook still ran


# --- the agent's result ----------------------------------------------------------------------

_RESULT = {
    "alias": "www",
    "certificate_sha256": "ab" * 32,
    "written": True,
    "key_origin": "platform",
    "reload": {"ran": True, "exit_code": 0, "output": ""},
    "verification": None,
}


def test_the_result_is_kept_on_the_job_and_its_attempt_and_shown(
    mstore: Any,
    manager: RegisteredAgent,
    agent_api: Callable[..., Any],
    admin_api: Any,
    ca: Any,
) -> None:
    job = _add_job(mstore)
    client = agent_api(manager)
    client.get(f"{AGENT}jobs/next?wait=0")
    client.get(f"{AGENT}jobs/{job.pk}/config")
    # The re-read after the write: the store's inventory, as for an inventory job.
    leaf = issue("www.example.test", issuer=ca)
    report = client.post(
        f"{AGENT}jobs/{job.pk}/inventory",
        {"attempt": 1, "entries": [entry("www", leaf, ca, private_key=True)]},
        format="json",
    )
    assert report.status_code == 200, report.content

    done = client.post(
        f"{AGENT}jobs/{job.pk}/complete",
        {"status": "success", "message": "written", "attempt": 1, "result": _RESULT},
        format="json",
    )

    assert done.status_code == 200, done.content
    job.refresh_from_db()
    assert job.state == "succeeded"
    assert {k: v for k, v in job.result.items() if k != "inventory"} == _RESULT
    assert job.result["inventory"]["added"] == 1  # the platform's summary kept beside it
    assert JobHistory.objects.get(job=job, attempt=1).result == _RESULT
    shown = admin_api.get(f"{ADMIN}jobs/{job.pk}/").json()
    assert shown["result"]["written"] is True
    assert shown["history"][0]["result"] == _RESULT
    listed = admin_api.get(f"{ADMIN}jobs/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert rows[0]["result"]["alias"] == "www"


@pytest.mark.parametrize(
    ("result", "words"),
    [
        (["not", "an", "object"], "must be a JSON object"),
        ("written", "must be a JSON object"),
        ({"output": "x" * (64 * 1024)}, "the limit is 65536"),
    ],
)
def test_a_bad_result_is_a_400_and_ends_nothing(
    mstore: Any,
    manager: RegisteredAgent,
    agent_api: Callable[..., Any],
    result: Any,
    words: str,
) -> None:
    job = _add_job(mstore)
    client = agent_api(manager)
    client.get(f"{AGENT}jobs/next?wait=0")

    answer = client.post(
        f"{AGENT}jobs/{job.pk}/complete",
        {"status": "success", "message": "", "attempt": 1, "result": result},
        format="json",
    )

    assert answer.status_code == 400
    error = error_of(answer)
    assert words in json.dumps(error)
    job.refresh_from_db()
    assert job.state == "leased"


def test_a_result_with_nan_is_refused(
    mstore: Any, manager: RegisteredAgent, agent_api: Callable[..., Any]
) -> None:
    job = _add_job(mstore)
    client = agent_api(manager)
    client.get(f"{AGENT}jobs/next?wait=0")

    answer = client.post(
        f"{AGENT}jobs/{job.pk}/complete",
        '{"status": "success", "attempt": 1, "result": {"x": NaN}}',
        content_type="application/json",
    )

    assert answer.status_code == 400
    error_of(answer)


def test_an_agent_result_cannot_overwrite_the_platforms_inventory_summary(
    mstore: Any, manager: RegisteredAgent, ca: Any
) -> None:
    orchestrator = manager.orchestrator
    job = _add_job(mstore)
    _lease(orchestrator)
    services.job_inventory_report(
        orchestrator=orchestrator,
        job_id=job.pk,
        attempt=1,
        entries=[entry("www", issue("w.example.test", issuer=ca), ca)],
    )

    job_complete(
        orchestrator=orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.SUCCESS,
        message="",
        result={"removed": False, "inventory": {"added": 999}},
    )

    job.refresh_from_db()
    assert job.result["inventory"]["added"] == 1
    assert job.result["removed"] is False


# --- the re-read inventory of a management job --------------------------------------------


def test_a_re_offered_add_jobs_new_attempt_reports_afresh(
    mstore: Any, manager: RegisteredAgent, ca: Any
) -> None:
    """The first attempt wrote and reported, then its lease lapsed; the second attempt's
    add is a no-op on the agent and its report is applied again, as its own."""
    orchestrator = manager.orchestrator
    first, second = issue("a.example.test", issuer=ca), issue("b.example.test", issuer=ca)
    job = _add_job(mstore)
    _lease(orchestrator)
    services.job_inventory_report(
        orchestrator=orchestrator, job_id=job.pk, attempt=1, entries=[entry("a", first, ca)]
    )
    _lapse(job)
    jobs_release_lapsed()
    _available(job)
    _lease(orchestrator)

    with pytest.raises(ServiceError) as stale:  # the first attempt's report is refused now
        services.job_inventory_report(
            orchestrator=orchestrator, job_id=job.pk, attempt=1, entries=[entry("a", first, ca)]
        )
    assert stale.value.code == "stale_attempt"
    report = services.job_inventory_report(
        orchestrator=orchestrator,
        job_id=job.pk,
        attempt=2,
        entries=[entry("a", first, ca), entry("b", second, ca)],
    )

    assert not report.duplicate and report.summary["added"] == 1
    assert CertificateLocation.objects.filter(store=mstore).count() == 2
    # The same report again in this attempt: a duplicate, not applied twice.
    again = services.job_inventory_report(
        orchestrator=orchestrator,
        job_id=job.pk,
        attempt=2,
        entries=[entry("a", first, ca), entry("b", second, ca)],
    )
    assert again.duplicate


def test_a_remove_job_reports_in_chunks(
    mstore: Any, manager: RegisteredAgent, agent_api: Callable[..., Any], ca: Any
) -> None:
    job = job_request(
        orchestrator=manager.orchestrator,
        store=mstore,
        type=JobType.REMOVE,
        payload={"alias": "www", "certificate_sha256": None},
        source=Job.Source.API,
    )
    client = agent_api(manager)
    client.get(f"{AGENT}jobs/next?wait=0")
    client.get(f"{AGENT}jobs/{job.pk}/config")

    chunk = client.post(
        f"{AGENT}jobs/{job.pk}/inventory/chunks",
        {"attempt": 1, "sequence": 0, "entries": [entry("kept", issue("k.test", issuer=ca), ca)]},
        format="json",
    )
    commit = client.post(
        f"{AGENT}jobs/{job.pk}/inventory/commit", {"attempt": 1, "chunks": 1}, format="json"
    )

    assert chunk.status_code == 200, chunk.content
    assert commit.status_code == 200 and commit.json()["added"] == 1


# --- discovery: a job without a store ------------------------------------------------------


def test_a_discovery_job_runs_without_a_store(
    manager: RegisteredAgent,
    pem_manageable: Any,
    agent_api: Callable[..., Any],
    admin_api: Any,
    finished: list[tuple[str, int, str, str]],
) -> None:
    job = _discovery_job(manager.orchestrator)
    client = agent_api(manager)

    summary = client.get(f"{AGENT}jobs/next?wait=0").json()
    config = client.get(f"{AGENT}jobs/{job.pk}/config").json()
    report = client.post(
        f"{AGENT}jobs/{job.pk}/inventory", {"attempt": 1, "entries": []}, format="json"
    )
    done = client.post(
        f"{AGENT}jobs/{job.pk}/complete",
        {"status": "success", "message": "3 candidates", "attempt": 1, "result": {"found": 3}},
        format="json",
    )

    assert (summary["id"], summary["type"], summary["store"]) == (str(job.pk), "discovery", None)
    assert config["store"] is None
    assert config["payload"]["directories"] == ["/etc/ssl"]
    assert report.status_code == 400 and error_of(report)["code"] == "no_store"
    assert done.status_code == 200 and done.json()["state"] == "succeeded"
    assert finished == [(str(job.pk), 1, "success", "succeeded")]
    shown = admin_api.get(f"{ADMIN}jobs/{job.pk}/").json()
    assert (shown["store"], shown["store_path"], shown["result"]) == (None, None, {"found": 3})
    assert admin_api.get(f"{ADMIN}jobs/?type=discovery").status_code == 200


def test_a_discovery_jobs_lease_lapses_and_it_ends_failed(
    manager: RegisteredAgent, finished: list[tuple[str, int, str, str]], client: Any, superuser: Any
) -> None:
    job = _discovery_job(manager.orchestrator)
    Job.objects.filter(pk=job.pk).update(max_attempts=1)
    _lease(manager.orchestrator)
    _lapse(job)

    assert jobs_release_lapsed() == 1

    job.refresh_from_db()
    assert (job.state, job.outcome) == ("failed", "failure")
    assert finished == [(str(job.pk), 1, "lease_expired", "failed")]
    client.force_login(superuser)
    assert client.get("/jobs/").status_code == 200
    assert client.get(f"/jobs/{job.pk}/").status_code == 200


def test_each_attempt_starts_without_the_last_ones_result(
    mstore: Any, manager: RegisteredAgent, finished: list[tuple[str, int, str, str]]
) -> None:
    orchestrator = manager.orchestrator
    job = _add_job(mstore)
    _lease(orchestrator)
    job_complete(
        orchestrator=orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.FAILURE,
        message="the folder is read-only",
        result={"written": False},
    )
    _available(job)

    _lease(orchestrator)
    _lapse(job)
    jobs_release_lapsed()

    job.refresh_from_db()
    assert job.result == {}  # the lapsed second attempt sent none
    assert [h.result for h in job.history.all()] == [{"written": False}, {}]


def test_a_management_jobs_re_read_is_the_stores_inventory_status(
    mstore: Any, manager: RegisteredAgent, ca: Any
) -> None:
    orchestrator = manager.orchestrator
    refused, written = _add_job(mstore), _add_job(mstore)
    _lease(orchestrator)
    job_complete(
        orchestrator=orchestrator, job_id=refused.pk, outcome=JobOutcome.FAILURE, message="no"
    )
    mstore.refresh_from_db()
    assert mstore.inventory_status == "never"  # a refused write says nothing of reading it

    _lease(orchestrator)
    services.job_inventory_report(
        orchestrator=orchestrator,
        job_id=written.pk,
        attempt=1,
        entries=[entry("www", issue("w.example.test", issuer=ca), ca)],
    )
    job_complete(
        orchestrator=orchestrator,
        job_id=written.pk,
        outcome=JobOutcome.WARNING,
        message="written; the reload command failed",
    )

    mstore.refresh_from_db()
    assert (mstore.inventory_status, mstore.inventory_message) == (
        "ok",
        "read again after the add job",
    )


def test_retrying_a_management_job_checks_it_again(
    mstore: Any, manager: RegisteredAgent, superuser: Any
) -> None:
    job = _add_job(mstore, overwrite=True)
    job_cancel(job=job, actor=superuser)

    retried, created = services.job_retry(job=job, actor=superuser)
    assert created and retried.pk != job.pk
    assert (retried.type, retried.payload, retried.store) == ("add", job.payload, mstore)

    Orchestrator.objects.filter(pk=manager.orchestrator.pk).update(capabilities=["PEM.Inventory"])
    job_cancel(job=retried, actor=superuser)
    retried.refresh_from_db()
    with pytest.raises(ServiceError) as caught:
        services.job_retry(job=retried, actor=superuser)
    assert caught.value.code == "capability_missing"


@pytest.mark.parametrize(("final", "state"), [(True, "failed"), (False, "pending")])
def test_a_final_failure_ends_the_job_without_its_remaining_attempts(
    mstore: Any,
    manager: RegisteredAgent,
    agent_api: Callable[..., Any],
    final: bool,
    state: str,
) -> None:
    job = _add_job(mstore)
    client = agent_api(manager)
    client.get(f"{AGENT}jobs/next?wait=0")
    client.get(f"{AGENT}jobs/{job.pk}/config")
    done = client.post(
        f"{AGENT}jobs/{job.pk}/complete",
        {"status": "failure", "message": "the store password is wrong", "attempt": 1}
        | ({"final": True} if final else {}),
        format="json",
    )
    assert done.status_code == 200, done.content
    job.refresh_from_db()
    assert (job.state, job.attempts) == (state, 1)
    assert job.max_attempts > 1  # attempts remained: the agent's word ended it
