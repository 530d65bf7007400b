"""The example extensions (examples/), driven through the platform's real code.

`make test` installs the package (`pip install -e examples`) next to the platform, so its
entry points are found as a third party's would be. Each example is registered with
``registration_save``, reached by the flow that really calls it (an agent's registration,
the expiration scan, a finished job, an inventory), and judged by its recorded run and
its effect.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from certyard.fleet.models import Orchestrator
from certyard.fleet.services import orchestrator_register
from certyard.inventory.ingest import inventory_submit
from certyard.inventory.metadata import metadata_field_create
from certyard.inventory.metadata.generators import metadata_generate_new
from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateMetadata,
    CertificateStoreType,
)
from certyard.inventory.services import store_create
from certyard.jobs.expiry import expiry_scan
from certyard.jobs.models import Job
from certyard.jobs.services import (
    job_complete,
    job_inventory_request,
    job_lease_next,
    job_retry,
)
from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
from certyard.workflows.runner import event_runs_execute
from certyard.workflows.services import registration_save
from handlers.base import HandlerKind
from handlers.parameters import ParameterError
from handlers.registry import handler_classes
from orchestrators.agent.store_types import capabilities, load_store_types
from orchestrators.protocol import JobOutcome, JobType
from orchestrators.sdk import JobConfiguration, StoreConfiguration
from tests.certs import Issued, agent_key, csr_pem, issue
from tests.conftest import entry

pytestmark = pytest.mark.django_db

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HANDLERS = {
    "example.agent_identity": HandlerKind.REGISTRATION,
    "example.expiry_audit_log": HandlerKind.EVENT,
    "example.team_from_dns": HandlerKind.METADATA,
    "example.retry_failed_inventory": HandlerKind.JOB_COMPLETE,
}
EXPIRING = "certificate.expiring"


def register(
    handler: str, values: dict[str, Any] | None = None, **fields: Any
) -> HandlerRegistration:
    registration = HandlerRegistration(name=fields.pop("name", handler), handler=handler, **fields)
    return registration_save(registration=registration, values=values or {})


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- The package ------------------------------------------------------------------------


def test_every_example_is_found_through_its_entry_point() -> None:
    classes = handler_classes()
    for name, kind in HANDLERS.items():
        info = classes[name]
        assert info.cls is not None and info.error == "", (name, info.error)
        assert info.kind == kind
        assert info.distribution == "certyard-example-extensions"
        assert info.doc and info.label.endswith("(example)")
    store_types = load_store_types()
    assert store_types["MANIFEST"].__module__ == "certyard_examples.manifest_store"
    assert "MANIFEST.Inventory" in capabilities(store_types)


def test_the_examples_import_only_what_certyard_provides() -> None:
    allowed = {"handlers", "orchestrators", "cryptography", "certyard_examples", "__future__"}
    for path in EXAMPLES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in sys.stdlib_module_names, (path.name, name)


# --- Registration handler ----------------------------------------------------------------


def _agent_registers(
    make_token: Any,
    name: str,
    *,
    csr_name: str | None = None,
    environment: str = "production",
    vouched_environment: str = "production",
    source: str = "10.0.0.5",
) -> Orchestrator:
    labels = (f"environment={vouched_environment}",) if vouched_environment else ()
    return orchestrator_register(
        token=make_token(labels=labels),
        name=name,
        client_machine=f"{name}.example.test",
        agent_version="1.0",
        capabilities=["PEM.Inventory"],
        client_parameters={"environment": environment},
        csr_pem=csr_pem(agent_key(), csr_name or name),
        source_address=source,
    ).orchestrator


def test_registration_handler_allows_denies_and_defers(make_token: Any) -> None:
    register(
        "example.agent_identity",
        {"environments": ["production", "staging"], "denied_networks": ["198.51.100.0/24"]},
    )
    allowed = _agent_registers(make_token, "web-1")
    denied = _agent_registers(make_token, "web-2", source="::ffff:198.51.100.7")
    wrong_name = _agent_registers(make_token, "web-3", csr_name="someone-else")
    wrong_environment = _agent_registers(
        make_token, "web-4", environment="lab", vouched_environment="lab"
    )
    # The agent's own claim is not enough: the token must vouch for the environment.
    claims_only = _agent_registers(make_token, "web-5", vouched_environment="")
    claim_disagrees = _agent_registers(make_token, "web-6", environment="staging")

    assert allowed.status == Orchestrator.Status.APPROVED
    assert allowed.metadata == {"environment": "production"}
    assert denied.status == Orchestrator.Status.DISAPPROVED
    # Deferred by every handler, and the token does not pre-approve: an administrator decides.
    assert wrong_name.status == wrong_environment.status == Orchestrator.Status.NEW
    assert claims_only.status == claim_disagrees.status == Orchestrator.Status.NEW

    def run_of(orchestrator: Orchestrator) -> HandlerRun:
        return HandlerRun.objects.get(subject_id=str(orchestrator.pk))

    assert run_of(allowed).state == HandlerRun.State.SUCCEEDED
    assert run_of(allowed).output["verdict"] == "allow"
    assert run_of(denied).message == "deny: registered from 198.51.100.7, in denied 198.51.100.0/24"
    assert "'someone-else'" in run_of(wrong_name).output["reason"]
    assert run_of(wrong_environment).output == {
        "verdict": "defer",
        "reason": "the token vouches for no allowed environment ('lab')",
        "blueprint": None,
        "metadata": {},
        "issue_certificate": True,
    }
    assert "claims environment 'staging'" in run_of(claim_disagrees).output["reason"]
    registered = Event.objects.get(kind="orchestrator.registered", subject_id=str(allowed.pk))
    assert registered.data["verdict"] == "allow"
    assert registered.data["decided_by"] == "example.agent_identity"


def test_registration_handler_parameters_are_checked_when_saved() -> None:
    with pytest.raises(ParameterError) as refused:
        register("example.agent_identity", {"environments": ["prod"], "denied_networks": ["lan"]})
    assert refused.value.errors == {
        "denied_networks": "'lan' is not a network such as 192.0.2.0/24"
    }
    with pytest.raises(ParameterError) as missing:
        register("example.agent_identity", {})
    assert missing.value.errors == {"environments": "is required"}


# --- Event handler (and the expiration scan that feeds it) --------------------------------


def _expiring(store: Any, *certificates: Issued) -> list[Event]:
    """Install the certificates in the store and run the real expiration scan."""
    inventory_submit(
        store=store, entries=[entry(f"{c.certificate.serial_number}.pem", c) for c in certificates]
    )
    expiry_scan()
    return list(Event.objects.filter(kind=EXPIRING).order_by("pk"))


def test_event_handler_writes_a_line_per_warning_and_quiets_the_early_emails(
    tmp_path: Path, store: Any, mailoutbox: list[Any]
) -> None:
    log = tmp_path / "expiring.jsonl"
    register(
        "example.expiry_audit_log",
        {"path": str(log), "quiet_above_days": 7},
        events=[EXPIRING],
        order=10,
    )
    register(
        "certyard.email",
        {"recipients": ["pki@example.test"]},
        name="mail",
        events=[EXPIRING],
        order=20,
    )
    soon, later = issue("soon.example.test", days=3), issue("later.example.test", days=25)
    events = _expiring(store, soon, later)
    assert len(events) == 2
    for event in events:
        assert event_runs_execute(event.pk) == 2

    lines = {line["common_name"]: line for line in jsonl(log)}
    assert lines["soon.example.test"]["days"] == 7  # the thresholds: 90, 30, 7, 1
    assert lines["later.example.test"]["days"] == 30
    assert lines["soon.example.test"]["sha256"] == soon.sha256
    assert lines["soon.example.test"]["expired"] is False
    assert {line["event_id"] for line in lines.values()} == {event.pk for event in events}
    audit_runs = HandlerRun.objects.filter(handler="example.expiry_audit_log")
    assert {run.state for run in audit_runs} == {HandlerRun.State.SUCCEEDED}
    quieted = audit_runs.get(subject_label="later.example.test")
    assert quieted.output == {"path": str(log), "context_updates": {"suppress_email": True}}
    # Only the 7-day warning reached people; the 30-day one is in the file alone.
    assert [mail.subject for mail in mailoutbox] == [
        "[Certyard] certificate.expiring: soon.example.test"
    ]
    not_sent = HandlerRun.objects.get(registration_name="mail", subject_label="later.example.test")
    assert not_sent.output["suppressed"] is True


def test_event_handler_failing_for_good_is_not_retried(tmp_path: Path, store: Any) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    register(
        "example.expiry_audit_log", {"path": str(folder / "expiring.jsonl")}, events=[EXPIRING]
    )
    folder.rmdir()  # the folder went away after the registration was saved
    [event] = _expiring(store, issue("gone.example.test", days=3))
    event_runs_execute(event.pk)
    run = HandlerRun.objects.get()  # no second attempt queued: the error is permanent
    assert run.state == HandlerRun.State.FAILED
    assert run.error.startswith(f"cannot write {folder / 'expiring.jsonl'}")
    with pytest.raises(ParameterError):
        register("example.expiry_audit_log", {"path": "relative.jsonl"}, name="relative")


# --- Metadata generator --------------------------------------------------------------------


def test_metadata_generator_sets_the_team_of_new_certificates(store: Any) -> None:
    metadata_field_create(name="team")
    register(
        "example.team_from_dns",
        {"teams": ["example.test=platform", "*.payments.example.test=payments"]},
        name="teams",
    )
    payments = issue("www.example.test", sans=("www.example.test", "API.Payments.example.test"))
    platform_team = issue("wiki.example.test")
    nobody = issue("intranet.example.org")
    inventory_submit(
        store=store,
        entries=[entry("a.pem", payments), entry("b.pem", platform_team), entry("c.pem", nobody)],
    )
    # On PostgreSQL the generators leave certificates of the last seconds for later.
    Certificate.objects.update(first_seen=timezone.now() - dt.timedelta(minutes=1))
    assert metadata_generate_new(time_budget=None) == 3  # what the inventory commit queues

    values = {
        value.certificate.sha256: (value.value, value.source)
        for value in CertificateMetadata.objects.select_related("certificate")
    }
    assert values == {
        payments.sha256: ("payments", "teams"),
        platform_team.sha256: ("platform", "teams"),
    }
    run = HandlerRun.objects.get(kind="metadata")
    assert run.state == HandlerRun.State.SUCCEEDED
    assert run.output == {"values_set": 2, "error_count": 0, "errors": []}
    assert Event.objects.get(kind="metadata.generated").data["values_set"] == 2


def test_metadata_generator_parameters_are_checked_when_saved() -> None:
    with pytest.raises(ParameterError) as refused:
        register("example.team_from_dns", {"teams": ["payments"]})
    assert "is not suffix=team" in refused.value.errors["teams"]


# --- Job complete handler --------------------------------------------------------------------


def _attempt_fails(job: Job, agent: Any) -> Event:
    Job.objects.filter(pk=job.pk).update(available_at=timezone.now())
    assert job_lease_next(orchestrator=agent.orchestrator).pk == job.pk
    job_complete(
        orchestrator=agent.orchestrator, job_id=job.pk, outcome=JobOutcome.FAILURE, message="EIO"
    )
    return Event.objects.filter(kind="job.completed").latest("pk")


def test_job_complete_handler_schedules_an_inventory_once_the_retries_are_spent(
    store: Any, agent: Any
) -> None:
    registration = register(
        "example.retry_failed_inventory", {"delay_minutes": 10}, job_types=["inventory"]
    )
    job, _ = job_inventory_request(store=store, source=Job.Source.ADMIN)
    Job.objects.filter(pk=job.pk).update(max_attempts=2)

    first = _attempt_fails(job, agent)
    event_runs_execute(first.pk)
    run = HandlerRun.objects.get(event=first)
    assert run.state == HandlerRun.State.SUCCEEDED
    assert run.message == "attempt 1 failed; the platform retries it"
    assert "actions" not in run.output

    last = _attempt_fails(job, agent)
    event_runs_execute(last.pk)
    run = HandlerRun.objects.get(event=last)
    assert run.state == HandlerRun.State.SUCCEEDED, run.error
    assert run.message == "inventory failed (EIO); another in 10 min"
    follow_up = Job.objects.exclude(pk=job.pk).get()
    # The id schedule_job returned is the job's: in the handler's output and the action.
    assert run.output["job_id"] == str(follow_up.pk)
    assert run.output["actions"] == [
        {
            "action": "schedule_job",
            "store_id": str(store.pk),
            "job_type": "inventory",
            "delay_seconds": 600,
            "job_id": str(follow_up.pk),
            "retry_of": str(job.pk),
            "by": registration.name,
            "registration_id": registration.pk,
        }
    ]
    assert follow_up.source == Job.Source.HANDLER and follow_up.state == Job.State.PENDING
    assert follow_up.source_detail == registration.name
    assert follow_up.source_registration_id == registration.pk
    assert follow_up.retry_of_id == job.pk
    wait = follow_up.available_at - timezone.now()
    assert dt.timedelta(minutes=9) < wait <= dt.timedelta(minutes=10)


def test_job_complete_handler_retries_a_failed_inventory_exactly_once(
    store: Any, agent: Any, django_user_model: Any
) -> None:
    """Event → run → action → job, twice: the retry's own failure is not retried, and the
    handler keeps no state (provenance alone tells it the job is its retry)."""
    register("example.retry_failed_inventory", {"delay_minutes": 1}, job_types=["inventory"])
    job, _ = job_inventory_request(store=store, source=Job.Source.ADMIN)
    Job.objects.filter(pk=job.pk).update(max_attempts=1)

    event_runs_execute(_attempt_fails(job, agent).pk)
    retry = Job.objects.get(retry_of=job)
    assert retry.source == Job.Source.HANDLER

    Job.objects.filter(pk=retry.pk).update(max_attempts=1)
    failed_again = _attempt_fails(retry, agent)
    provenance = failed_again.data["provenance"]
    assert provenance["source"] == "handler" and provenance["retry_of"] == str(job.pk)
    assert [link["id"] for link in provenance["chain"]] == [str(job.pk), str(retry.pk)]
    event_runs_execute(failed_again.pk)
    run = HandlerRun.objects.get(event=failed_again)
    assert run.state == HandlerRun.State.SUCCEEDED, run.error
    assert run.message == f"the retry of {job.pk} failed too: not retried again"
    assert run.output == {"first_job_id": str(job.pk), "jobs_in_chain": 2}
    assert "actions" not in run.output
    assert Job.objects.count() == 2  # no third job, ever

    # A person's retry of the retry starts afresh: it gets its one retry too.
    person = django_user_model.objects.create_superuser("root", "root@example.test", None)
    retry.refresh_from_db()
    again, created = job_retry(job=retry, actor=person)
    assert created and again.retry_of_id == retry.pk
    assert (again.source, again.source_detail) == (Job.Source.ADMIN, "root")
    Job.objects.filter(pk=again.pk).update(max_attempts=1)
    event_runs_execute(_attempt_fails(again, agent).pk)
    assert Job.objects.filter(retry_of=again, source=Job.Source.HANDLER).count() == 1


def test_job_complete_handler_leaves_a_successful_inventory_alone(store: Any, agent: Any) -> None:
    register("example.retry_failed_inventory", job_types=["inventory"])
    job, _ = job_inventory_request(store=store, source=Job.Source.ADMIN)
    assert job_lease_next(orchestrator=agent.orchestrator).pk == job.pk
    job_complete(
        orchestrator=agent.orchestrator, job_id=job.pk, outcome=JobOutcome.SUCCESS, message=""
    )
    event_runs_execute(Event.objects.get(kind="job.completed").pk)
    assert HandlerRun.objects.get().message == "inventory ended success: nothing to do"
    assert Job.objects.count() == 1


# --- Scripts, run by the built-in script handler ---------------------------------------------


@pytest.mark.parametrize(
    ("interpreter", "script", "arguments"),
    [
        ("python", "notify.py", ["{log}", "--quiet-above=7"]),
        ("shell", "notify.sh", ["{log}", "{subject_label}", "{days}", "7"]),
    ],
)
def test_script_examples_run_through_the_script_handler(
    interpreter: str,
    script: str,
    arguments: list[str],
    tmp_path: Path,
    store: Any,
    mailoutbox: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CERTYARD_SCRIPTS_DIR", str(EXAMPLES / "scripts"))
    log = tmp_path / "notices.log"
    register(
        "certyard.script",
        {
            "interpreter": interpreter,
            "script": script,
            # {log} is ours, replaced here; the other {name}s are the handler's to replace.
            "arguments": [argument.replace("{log}", str(log)) for argument in arguments],
        },
        events=[EXPIRING],
        order=10,
    )
    register(
        "certyard.email",
        {"recipients": ["pki@example.test"]},
        name="mail",
        events=[EXPIRING],
        order=20,
    )
    events = _expiring(
        store, issue("soon.example.test", days=3), issue("later.example.test", days=25)
    )
    for event in events:
        event_runs_execute(event.pk)

    runs = {run.subject_label: run for run in HandlerRun.objects.filter(handler="certyard.script")}
    for run in runs.values():
        assert run.state == HandlerRun.State.SUCCEEDED, (run.error, run.output)
        assert run.output["exit_code"] == 0
    assert "context_updates" not in runs["soon.example.test"].output
    assert runs["later.example.test"].output["context_updates"] == {"suppress_email": True}
    assert [mail.subject for mail in mailoutbox] == [
        "[Certyard] certificate.expiring: soon.example.test"
    ]
    if script == "notify.py":
        assert (
            "soon.example.test: expires within 7 days" in runs["soon.example.test"].output["stdout"]
        )
        assert len(log.read_text().splitlines()) == 2
    else:
        assert runs["soon.example.test"].output["stdout"] == (
            f"certificate.expiring (event {events[0].pk}): soon.example.test, threshold 7 days\n"
        )
        assert [line["subject_label"] for line in jsonl(log)] == [
            "soon.example.test",
            "later.example.test",
        ]


# --- Store type (agent side) ------------------------------------------------------------------


def test_manifest_store_reports_what_it_lists_and_nothing_outside_the_roots(
    tmp_path: Path, make_token: Any
) -> None:
    root, outside = tmp_path / "deploy", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    ca = issue("Example CA", ca=True)
    leaf = issue("web.example.test", issuer=ca, sans=("web.example.test",))
    (root / "web.pem").write_text(leaf.pem + leaf.key_pem)  # the key must not leave
    (root / "web.key").write_text(leaf.key_pem)
    (root / "ca.pem").write_text(ca.pem)
    (root / "empty.pem").write_text("")
    (outside / "other.pem").write_text(issue("other.example.test").pem)
    (root / "link.pem").symlink_to(outside / "other.pem")
    manifest = root / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "entries": [
                    {
                        "alias": "web",
                        "certificate": "web.pem",
                        "chain": ["ca.pem"],
                        "key": "web.key",
                    },
                    {"alias": "outside", "certificate": str(outside / "other.pem")},
                    {"alias": "link", "certificate": "link.pem"},
                    {"alias": "missing", "certificate": "missing.pem"},
                    {"alias": "empty", "certificate": "empty.pem"},
                    {"certificate": "web.pem"},
                ]
            }
        )
    )
    job = JobConfiguration(
        job_id="j-1",
        type=JobType.INVENTORY,
        attempt=1,
        store=StoreConfiguration(
            id="s-1", store_type="MANIFEST", client_machine="host", store_path=str(manifest)
        ),
        store_roots=(os.path.realpath(root),),
        max_file_bytes=1_000_000,
    )
    store_type = load_store_types()["MANIFEST"]
    entries = list(store_type().inventory(job))

    by_alias = {item.alias: item for item in entries}
    web = by_alias["web"]
    assert web.error is None and web.private_key is True
    assert web.certificates == [leaf.pem.strip(), ca.pem.strip()]
    assert not any("PRIVATE KEY" in pem for pem in web.certificates)
    assert by_alias["outside"].error.endswith("is outside the folders this orchestrator may read")
    assert by_alias["link"].error.endswith("is outside the folders this orchestrator may read")
    assert by_alias["missing"].error.endswith("missing.pem does not exist")
    assert by_alias["empty"].error == "empty.pem holds no PEM certificate"
    assert by_alias["#5"].error == 'the entry has no "alias"'

    # The platform takes the report as it takes the built-in store's.
    store_type_row = CertificateStoreType.objects.create(short_name="MANIFEST", name="Manifest")
    orchestrator = orchestrator_register(  # as `certyard-orchestrator register` does
        token=make_token(approve=True),
        name="manifest-agent",
        client_machine="host",
        agent_version="1.0",
        capabilities=capabilities(load_store_types()),
        client_parameters={},
        csr_pem=csr_pem(agent_key(), "manifest-agent"),
        source_address="127.0.0.1",
    ).orchestrator
    platform_store = store_create(
        store_type=store_type_row, store_path=str(manifest), orchestrator=orchestrator
    )
    outcome = inventory_submit(store=platform_store, entries=[item.to_wire() for item in entries])
    assert (outcome.added_count, outcome.rejected_count) == (1, 5)
    location = CertificateLocation.objects.get(store=platform_store)
    assert location.alias == "web" and location.has_private_key
    assert location.certificate.sha256 == leaf.sha256


def test_manifest_store_fails_the_job_on_a_manifest_it_cannot_read(tmp_path: Path) -> None:
    from orchestrators.sdk import StoreError

    manifest = tmp_path / "manifest.json"
    manifest.write_text("{not json")
    job = JobConfiguration(
        job_id="j-1",
        type=JobType.INVENTORY,
        attempt=1,
        store=StoreConfiguration(
            id="s-1", store_type="MANIFEST", client_machine="host", store_path=str(manifest)
        ),
        store_roots=(os.path.realpath(tmp_path),),
    )
    with pytest.raises(StoreError, match="is not valid JSON"):
        list(load_store_types()["MANIFEST"]().inventory(job))
