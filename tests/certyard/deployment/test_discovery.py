"""Discovery: a person asks an agent to search folders, the agent reports candidates
(attacker-written: checked strictly, recorded as data), an admin approves candidates into
stores one by one or all of a kind."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from certyard.deployment.models import DiscoveryCandidate
from certyard.deployment.services.discovery import (
    discovery_candidate_approve,
    discovery_candidates_approve_kind,
    discovery_report_record,
    discovery_request,
)
from certyard.errors import ServiceError
from certyard.inventory.models import CertificateStore
from certyard.jobs import services as job_services
from certyard.jobs.models import Job
from orchestrators.protocol import JobType, capability_name
from tests.certs import agent_key, csr_pem
from tests.certyard.conftest import ADMIN, AGENT, error_of
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db

STORE_TYPES = ("PEM", "PKCS12", "JKS", "JCEKS")
OPERATIONS = ("inventory", "add", "remove", "create", "discovery", "reenrollment")


@pytest.fixture
def register_full(db: None) -> Callable[[str], RegisteredAgent]:
    """An approved orchestrator offering every operation on the built-in store types."""
    from certyard.fleet.services import orchestrator_register, registration_token_create

    def register(name: str = "finder") -> RegisteredAgent:
        _, token = registration_token_create(
            description="t", valid_for=dt.timedelta(hours=1), approve_on_register=True
        )
        key = agent_key()
        registration = orchestrator_register(
            token=token,
            name=name,
            client_machine=f"{name}.example.test",
            agent_version="test",
            capabilities=[capability_name(t, op) for t in STORE_TYPES for op in OPERATIONS],
            client_parameters={},
            csr_pem=csr_pem(key, name),
            source_address="127.0.0.1",
        )
        return RegisteredAgent(registration.orchestrator, key)

    return register


@pytest.fixture
def finder(register_full: Callable[[str], RegisteredAgent]) -> RegisteredAgent:
    return register_full("finder")


@pytest.fixture
def adder(django_user_model: Any) -> Any:
    """May add stores (and see candidates), nothing else."""
    user = django_user_model.objects.create_user("adder", "adder@example.test")
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["add_certificatestore", "view_discoverycandidate"])
    )
    return user


@pytest.fixture
def adder_api(adder: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(adder)
    return client


def _leased(orchestrator: Any) -> Job:
    """Lease the orchestrator's next job and pick it up, as the agent does."""
    job = job_services.job_lease_next(orchestrator=orchestrator)
    assert job is not None
    job_services.job_configuration(orchestrator=orchestrator, job_id=job.pk)
    job.refresh_from_db()
    return job


def _candidate(path: str, kind: str = "pem", **overrides: Any) -> dict[str, Any]:
    store_type = {"pem": "PEM", "pkcs12": "PKCS12", "jks": "JKS", "jceks": "JCEKS"}.get(kind)
    return {
        "path": path,
        "kind": kind,
        "store_type": store_type,
        "certificate_count": 1,
        "private_key": False,
        "password_needed": False,
        "error": None,
        **overrides,
    }


def _discovery_job(orchestrator: Any, actor: Any, **options: Any) -> Job:
    # Other queued work (an approved store's inventory) waits: this lease is the discovery.
    Job.objects.filter(orchestrator=orchestrator, state=Job.State.PENDING).update(
        available_at=timezone.now() + dt.timedelta(days=1)
    )
    discovery_request(
        orchestrator=orchestrator,
        directories=options.pop("directories", ["/etc/ssl"]),
        file_patterns=options.pop("file_patterns", []),
        ignored_directories=options.pop("ignored_directories", []),
        follow_links=False,
        max_depth=8,
        actor=actor,
        **options,
    )
    return _leased(orchestrator)


# --- Asking for a discovery ----------------------------------------------------------------


def test_a_discovery_request_queues_a_discovery_job_without_a_store(
    finder: RegisteredAgent, adder: Any
) -> None:
    job = discovery_request(
        orchestrator=finder.orchestrator,
        directories=["/etc/ssl", "/opt/app/conf"],
        file_patterns=["*.pem", "*.p12"],
        ignored_directories=["private", "/etc/ssl/old"],
        follow_links=True,
        max_depth=4,
        actor=adder,
    )
    assert job.type == JobType.DISCOVERY and job.store is None
    assert job.payload == {
        "directories": ["/etc/ssl", "/opt/app/conf"],
        "file_patterns": ["*.pem", "*.p12"],
        "ignored_directories": ["private", "/etc/ssl/old"],
        "follow_links": True,
        "max_depth": 4,
    }
    config = job_services.job_configuration(
        orchestrator=finder.orchestrator, job_id=_leased(finder.orchestrator).pk
    )
    assert config["store"] is None and config["payload"]["directories"] == [
        "/etc/ssl",
        "/opt/app/conf",
    ]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"directories": []}, "directories"),
        ({"directories": ["etc/ssl"]}, "directories"),
        ({"directories": ["/etc/\x00ssl"]}, "directories"),
        ({"directories": ["/etc/ssl/../shadow"]}, "directories"),
        ({"directories": ["/" + "a" * 5000]}, "directories"),
        ({"directories": ["/x"] * 65}, "directories"),
        ({"directories": "/etc/ssl"}, "directories"),
        ({"file_patterns": ["certs/*.pem"]}, "file_patterns"),
        ({"file_patterns": [""]}, "file_patterns"),
        ({"ignored_directories": ["a/b"]}, "ignored_directories"),
        ({"ignored_directories": [".."]}, "ignored_directories"),
        ({"max_depth": 65}, "max_depth"),
        ({"max_depth": -1}, "max_depth"),
        ({"max_depth": True}, "max_depth"),
        ({"follow_links": "yes"}, "follow_links"),
    ],
)
def test_a_discovery_request_with_bad_input_is_refused_naming_the_field(
    finder: RegisteredAgent, adder: Any, options: dict[str, Any], field: str
) -> None:
    arguments: dict[str, Any] = {
        "directories": ["/etc/ssl"],
        "file_patterns": [],
        "ignored_directories": [],
        "follow_links": False,
        "max_depth": 8,
        **options,
    }
    with pytest.raises(ServiceError) as refused:
        discovery_request(orchestrator=finder.orchestrator, actor=adder, **arguments)
    assert refused.value.http_status == 400
    assert field in refused.value.fields
    assert not Job.objects.exists()


def test_a_discovery_needs_an_orchestrator_that_offers_discovery(
    register_agent: Callable[..., RegisteredAgent], adder: Any
) -> None:
    inventory_only = register_agent("inventory-only")  # PEM.Inventory only
    with pytest.raises(ServiceError) as refused:
        discovery_request(
            orchestrator=inventory_only.orchestrator, directories=["/etc"], actor=adder
        )
    assert refused.value.code == "capability_missing"


def test_the_api_queues_a_discovery_for_someone_who_may_add_stores(
    finder: RegisteredAgent, adder_api: APIClient, viewer_api: APIClient
) -> None:
    url = f"{ADMIN}orchestrators/{finder.orchestrator.pk}/discovery/"
    body = {"directories": ["/etc/ssl"], "file_patterns": ["*.pem"]}
    refused = viewer_api.post(url, body, format="json")
    assert refused.status_code == 403, refused.content
    assert error_of(refused)["code"] == "permission_denied"
    answer = adder_api.post(url, body, format="json")
    assert answer.status_code == 202, answer.content
    assert answer.json()["type"] == "discovery"
    assert answer.json()["payload"]["max_depth"] == 8
    bad = adder_api.post(url, {"directories": ["relative"]}, format="json")
    assert bad.status_code == 400 and "directories" in error_of(bad)["fields"]
    not_json_object = adder_api.post(url, ["/etc"], format="json")
    assert not_json_object.status_code == 400
    missing = adder_api.post(
        f"{ADMIN}orchestrators/00000000-0000-0000-0000-000000000000/discovery/",
        body,
        format="json",
    )
    assert missing.status_code == 404


# --- Recording a report --------------------------------------------------------------------


def test_a_report_records_new_candidates_then_known_and_gone_ones(
    finder: RegisteredAgent, adder: Any
) -> None:
    orchestrator = finder.orchestrator
    job = _discovery_job(orchestrator, adder)
    first = discovery_report_record(
        orchestrator=orchestrator,
        job_id=job.pk,
        attempt=job.attempts,
        candidates=[
            _candidate("/etc/ssl/a.pem"),
            _candidate("/etc/ssl/b.p12", "pkcs12", password_needed=True, certificate_count=0),
            _candidate("/etc/ssl/c.key", "key_only", certificate_count=0, private_key=True),
        ],
    )
    assert first.as_dict() == {"new": 3, "gone": 0, "known": 0}
    b = DiscoveryCandidate.objects.get(path="/etc/ssl/b.p12")
    assert (b.kind, b.store_type, b.password_needed, b.state) == ("pkcs12", "PKCS12", True, "new")
    assert b.job_id == job.pk

    job = _discovery_job(orchestrator, adder)
    second = discovery_report_record(
        orchestrator=orchestrator,
        job_id=job.pk,
        attempt=job.attempts,
        candidates=[
            _candidate("/etc/ssl/a.pem", certificate_count=3),
            _candidate("/etc/ssl/d.jks", "jks"),
        ],
    )
    assert second.as_dict() == {"new": 1, "gone": 2, "known": 1}
    states = dict(DiscoveryCandidate.objects.values_list("path", "state"))
    assert states == {
        "/etc/ssl/a.pem": "new",
        "/etc/ssl/b.p12": "gone",
        "/etc/ssl/c.key": "gone",
        "/etc/ssl/d.jks": "new",
    }
    assert DiscoveryCandidate.objects.get(path="/etc/ssl/a.pem").certificate_count == 3

    job = _discovery_job(orchestrator, adder)
    back = discovery_report_record(
        orchestrator=orchestrator,
        job_id=job.pk,
        attempt=job.attempts,
        candidates=[_candidate("/etc/ssl/a.pem"), _candidate("/etc/ssl/b.p12", "pkcs12")],
    )
    assert back.as_dict() == {"new": 1, "gone": 1, "known": 1}  # b is back, d is gone


def test_only_what_the_search_looked_at_goes_gone(finder: RegisteredAgent, adder: Any) -> None:
    orchestrator = finder.orchestrator
    job = _discovery_job(orchestrator, adder, directories=["/etc", "/opt"])
    discovery_report_record(
        orchestrator=orchestrator,
        job_id=job.pk,
        attempt=job.attempts,
        candidates=[
            _candidate("/etc/ssl/a.pem"),
            _candidate("/etc/ssl/b.crt"),
            _candidate("/etc/old/c.pem"),
            _candidate("/opt/d.pem"),
            _candidate("/etc/ssl/private/e.pem"),
        ],
    )
    job = _discovery_job(
        orchestrator,
        adder,
        directories=["/etc"],
        file_patterns=["*.pem"],
        ignored_directories=["/etc/old", "private"],
    )
    counts = discovery_report_record(
        orchestrator=orchestrator, job_id=job.pk, attempt=job.attempts, candidates=[]
    )
    # Only a.pem was looked at and not found: b.crt does not match the pattern, /etc/old
    # and private/ were ignored, /opt was not searched.
    assert counts.as_dict() == {"new": 0, "gone": 1, "known": 0}
    assert DiscoveryCandidate.objects.get(state="gone").path == "/etc/ssl/a.pem"


def test_an_approved_candidate_stays_approved_with_its_store(
    finder: RegisteredAgent, adder: Any
) -> None:
    orchestrator = finder.orchestrator
    job = _discovery_job(orchestrator, adder)
    discovery_report_record(
        orchestrator=orchestrator,
        job_id=job.pk,
        attempt=job.attempts,
        candidates=[_candidate("/etc/ssl/a.pem")],
    )
    approved = discovery_candidate_approve(candidate=DiscoveryCandidate.objects.get(), actor=adder)
    job = _discovery_job(orchestrator, adder)
    counts = discovery_report_record(
        orchestrator=orchestrator, job_id=job.pk, attempt=job.attempts, candidates=[]
    )
    assert counts.as_dict() == {"new": 0, "gone": 0, "known": 0}
    approved.refresh_from_db()
    assert approved.state == "approved" and approved.store is not None
    job = _discovery_job(orchestrator, adder)
    again = discovery_report_record(
        orchestrator=orchestrator,
        job_id=job.pk,
        attempt=job.attempts,
        candidates=[_candidate("/etc/ssl/a.pem", certificate_count=2)],
    )
    assert again.as_dict() == {"new": 0, "gone": 0, "known": 1}
    approved.refresh_from_db()
    assert approved.state == "approved" and approved.certificate_count == 2


def test_the_same_attempts_report_again_gets_the_first_answer_unapplied(
    finder: RegisteredAgent, adder: Any, agent_api: Callable[[RegisteredAgent], APIClient]
) -> None:
    job = _discovery_job(finder.orchestrator, adder)
    client = agent_api(finder)
    url = f"{AGENT}jobs/{job.pk}/discovery"
    body = {"attempt": job.attempts, "candidates": [_candidate("/etc/ssl/a.pem")]}
    first = client.post(url, body, format="json")
    assert first.status_code == 200, first.content
    assert first.json() == {"new": 1, "gone": 0, "known": 0, "duplicate": False}
    repeat = client.post(url, body, format="json")
    assert repeat.json() == {"new": 1, "gone": 0, "known": 0, "duplicate": True}
    assert DiscoveryCandidate.objects.count() == 1


def test_a_discovery_job_ends_like_any_other(
    finder: RegisteredAgent, adder: Any, agent_api: Callable[[RegisteredAgent], APIClient]
) -> None:
    job = _discovery_job(finder.orchestrator, adder)
    client = agent_api(finder)
    client.post(
        f"{AGENT}jobs/{job.pk}/discovery",
        {"attempt": job.attempts, "candidates": [_candidate("/etc/ssl/a.pem")]},
        format="json",
    )
    done = client.post(
        f"{AGENT}jobs/{job.pk}/complete",
        {"attempt": job.attempts, "status": "success", "message": "1 candidate"},
        format="json",
    )
    assert done.status_code == 200, done.content
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    late = client.post(
        f"{AGENT}jobs/{job.pk}/discovery",
        {"attempt": job.attempts, "candidates": [_candidate("/etc/ssl/z.pem")]},
        format="json",
    )
    # The report was recorded before the job ended: its answer, not a second recording.
    assert late.status_code == 200 and late.json()["duplicate"] is True


BAD_CANDIDATES = [
    pytest.param("not a list", id="not-a-list"),
    pytest.param(["/etc/ssl/a.pem"], id="not-an-object"),
    pytest.param([{"path": "/etc/ssl/a.pem"}], id="no-kind"),
    pytest.param([_candidate("/etc/ssl/a.pem", kind="exe")], id="unknown-kind"),
    pytest.param([_candidate("/etc/ssl/a.pem", store_type="Shell")], id="unknown-store-type"),
    pytest.param([_candidate("etc/ssl/a.pem")], id="relative"),
    pytest.param([_candidate("/etc/ssl/a\x00.pem")], id="nul"),
    pytest.param([_candidate("/etc/ssl/a\u202e.pem")], id="bidi-override"),
    pytest.param([_candidate("/etc/ssl/../shadow")], id="dot-dot"),
    pytest.param([_candidate("/etc/ssl/" + "a" * 4100)], id="too-long"),
    pytest.param([_candidate("/root/a.pem")], id="outside-the-search"),
    pytest.param([_candidate("/etc/ssl/a.pem", certificate_count="1")], id="count-text"),
    pytest.param([_candidate("/etc/ssl/a.pem", certificate_count=True)], id="count-bool"),
    pytest.param([_candidate("/etc/ssl/a.pem", certificate_count=-1)], id="count-negative"),
    pytest.param([_candidate("/etc/ssl/a.pem", private_key="yes")], id="flag-text"),
    pytest.param([_candidate("/etc/ssl/a.pem", error=["x"])], id="error-list"),
    pytest.param([{**_candidate("/etc/ssl/a.pem"), "owner": "root"}], id="unknown-field"),
    pytest.param([_candidate("/etc/ssl/a.pem"), _candidate("/etc/ssl/a.pem")], id="twice"),
]


@pytest.mark.parametrize("candidates", BAD_CANDIDATES)
def test_a_malformed_report_is_refused_whole_and_records_nothing(
    finder: RegisteredAgent,
    adder: Any,
    agent_api: Callable[[RegisteredAgent], APIClient],
    candidates: Any,
) -> None:
    job = _discovery_job(finder.orchestrator, adder)
    answer = agent_api(finder).post(
        f"{AGENT}jobs/{job.pk}/discovery",
        {"attempt": job.attempts, "candidates": candidates},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    error_of(answer)
    assert not DiscoveryCandidate.objects.exists()


def test_a_report_over_the_candidate_limit_is_refused(
    finder: RegisteredAgent, adder: Any, agent_api: Callable[[RegisteredAgent], APIClient]
) -> None:
    job = _discovery_job(finder.orchestrator, adder)
    many = [{"path": f"/etc/ssl/{i}.pem", "kind": "pem"} for i in range(20_001)]
    answer = agent_api(finder).post(
        f"{AGENT}jobs/{job.pk}/discovery",
        {"attempt": job.attempts, "candidates": many},
        format="json",
    )
    assert answer.status_code == 413, answer.content
    assert not DiscoveryCandidate.objects.exists()


def test_attacker_text_in_an_error_is_kept_render_safe_and_bounded(
    finder: RegisteredAgent, adder: Any
) -> None:
    job = _discovery_job(finder.orchestrator, adder)
    discovery_report_record(
        orchestrator=finder.orchestrator,
        job_id=job.pk,
        attempt=job.attempts,
        candidates=[
            _candidate("/etc/ssl/<script>.pem", error="bad\x1b[31m\r\n<b>x</b>" + "y" * 5000)
        ],
    )
    candidate = DiscoveryCandidate.objects.get()
    assert candidate.path == "/etc/ssl/<script>.pem"  # data, escaped wherever it is shown
    assert "\x1b" not in candidate.error and "\n" not in candidate.error
    assert len(candidate.error) == 1000


def test_reports_for_the_wrong_job_or_attempt_are_refused(
    finder: RegisteredAgent,
    register_full: Callable[[str], RegisteredAgent],
    adder: Any,
    agent_api: Callable[[RegisteredAgent], APIClient],
) -> None:
    job = _discovery_job(finder.orchestrator, adder)
    body = {"attempt": job.attempts, "candidates": [_candidate("/etc/ssl/a.pem")]}
    other = register_full("other")
    theirs = agent_api(other).post(f"{AGENT}jobs/{job.pk}/discovery", body, format="json")
    assert theirs.status_code == 404, theirs.content
    client = agent_api(finder)
    stale = client.post(
        f"{AGENT}jobs/{job.pk}/discovery", {**body, "attempt": job.attempts + 1}, format="json"
    )
    assert stale.status_code == 409 and error_of(stale)["code"] == "stale_attempt"
    no_attempt = client.post(f"{AGENT}jobs/{job.pk}/discovery", {"candidates": []}, format="json")
    assert no_attempt.status_code == 400
    bool_attempt = client.post(
        f"{AGENT}jobs/{job.pk}/discovery", {**body, "attempt": True}, format="json"
    )
    assert bool_attempt.status_code == 400
    assert DiscoveryCandidate.objects.count() == 0
    pending = _discovery_job(finder.orchestrator, adder)
    job_services.job_cancel(job=pending, actor=None)
    cancelled = client.post(
        f"{AGENT}jobs/{pending.pk}/discovery",
        {"attempt": pending.attempts, "candidates": []},
        format="json",
    )
    assert cancelled.status_code == 409 and error_of(cancelled)["code"] == "not_leased"


def test_an_inventory_job_takes_no_discovery_report(
    agent: RegisteredAgent,
    store: CertificateStore,
    agent_api: Callable[[RegisteredAgent], APIClient],
) -> None:
    job_services.job_inventory_request(store=store, source=Job.Source.ADMIN)
    job = _leased(agent.orchestrator)
    answer = agent_api(agent).post(
        f"{AGENT}jobs/{job.pk}/discovery",
        {"attempt": job.attempts, "candidates": []},
        format="json",
    )
    assert answer.status_code == 409 and error_of(answer)["code"] == "wrong_job_type"


# --- Approving candidates ------------------------------------------------------------------


def _found(finder: RegisteredAgent, adder: Any, *candidates: dict[str, Any]) -> None:
    job = _discovery_job(finder.orchestrator, adder)
    discovery_report_record(
        orchestrator=finder.orchestrator,
        job_id=job.pk,
        attempt=job.attempts,
        candidates=list(candidates),
    )


def test_approving_a_candidate_makes_a_store_and_schedules_its_inventory(
    finder: RegisteredAgent, adder: Any
) -> None:
    _found(finder, adder, _candidate("/etc/ssl/a.pem"))
    candidate = discovery_candidate_approve(candidate=DiscoveryCandidate.objects.get(), actor=adder)
    store = candidate.store
    assert candidate.state == "approved"
    assert (store.store_type.short_name, store.store_path) == ("PEM", "/etc/ssl/a.pem")
    assert store.orchestrator_id == finder.orchestrator.pk and store.created_by == adder
    assert Job.objects.filter(store=store, type=JobType.INVENTORY, state="pending").exists()
    with pytest.raises(ServiceError) as twice:
        discovery_candidate_approve(candidate=candidate, actor=adder)
    assert twice.value.code == "not_new"


def test_a_candidate_that_needs_a_password_is_approved_only_with_one(
    finder: RegisteredAgent, adder: Any
) -> None:
    _found(finder, adder, _candidate("/etc/ssl/b.p12", "pkcs12", password_needed=True))
    candidate = DiscoveryCandidate.objects.get()
    with pytest.raises(ServiceError) as refused:
        discovery_candidate_approve(candidate=candidate, actor=adder)
    assert refused.value.code == "password_required" and "password" in refused.value.fields
    assert not CertificateStore.objects.exists()
    approved = discovery_candidate_approve(candidate=candidate, actor=adder, password="s3cret!")
    assert approved.store.password == "s3cret!"


def test_a_candidate_of_no_known_type_needs_a_store_type(
    finder: RegisteredAgent, adder: Any
) -> None:
    _found(finder, adder, _candidate("/etc/ssl/x.der", "der"))
    candidate = DiscoveryCandidate.objects.get()
    with pytest.raises(ServiceError) as refused:
        discovery_candidate_approve(candidate=candidate, actor=adder)
    assert refused.value.code == "store_type_required"
    approved = discovery_candidate_approve(candidate=candidate, actor=adder, store_type="PEM")
    assert approved.store.store_type.short_name == "PEM" and approved.store_type == "PEM"


def test_approving_needs_the_permission_to_add_stores(
    finder: RegisteredAgent, adder: Any, viewer: Any
) -> None:
    _found(finder, adder, _candidate("/etc/ssl/a.pem"))
    with pytest.raises(ServiceError) as refused:
        discovery_candidate_approve(candidate=DiscoveryCandidate.objects.get(), actor=viewer)
    assert refused.value.http_status == 403
    assert not CertificateStore.objects.exists()


def test_approving_all_of_a_kind_reports_each_failure_and_keeps_the_others(
    finder: RegisteredAgent, adder: Any
) -> None:
    _found(
        finder,
        adder,
        _candidate("/etc/ssl/a.pem"),
        _candidate("/etc/ssl/b.pem"),
        _candidate("/etc/ssl/c.pem", password_needed=True),  # an encrypted key
        _candidate("/etc/ssl/d.p12", "pkcs12"),
    )
    outcome = discovery_candidates_approve_kind(
        orchestrator=finder.orchestrator, kind="pem", actor=adder
    )
    assert len(outcome.approved) == 2
    assert [f["path"] for f in outcome.failed] == ["/etc/ssl/c.pem"]
    assert "password" in outcome.failed[0]["error"]
    states = dict(DiscoveryCandidate.objects.values_list("path", "state"))
    assert states == {
        "/etc/ssl/a.pem": "approved",
        "/etc/ssl/b.pem": "approved",
        "/etc/ssl/c.pem": "new",
        "/etc/ssl/d.p12": "new",
    }
    with_password = discovery_candidates_approve_kind(
        orchestrator=finder.orchestrator, kind="pem", actor=adder, password="changeit"
    )
    assert len(with_password.approved) == 1 and not with_password.failed
    assert CertificateStore.objects.filter(store_type__short_name="PEM").count() == 3
    # A PKCS#12 store needs a password whatever the agent said.
    without = discovery_candidates_approve_kind(
        orchestrator=finder.orchestrator, kind="pkcs12", actor=adder
    )
    assert not without.approved and "PKCS12 requires one" in without.failed[0]["error"]


def test_the_api_lists_and_approves_candidates(
    finder: RegisteredAgent, adder: Any, adder_api: APIClient, viewer_api: APIClient
) -> None:
    _found(
        finder,
        adder,
        _candidate("/etc/ssl/a.pem"),
        _candidate("/etc/ssl/b.jks", "jks", password_needed=True),
        _candidate("/etc/ssl/c.jks", "jks", password_needed=True),
    )
    listed = adder_api.get(
        f"{ADMIN}discovery-candidates/",
        {"orchestrator": str(finder.orchestrator.pk), "kind": "jks"},
    )
    assert listed.status_code == 200, listed.content
    assert [c["path"] for c in listed.json()["results"]] == ["/etc/ssl/b.jks", "/etc/ssl/c.jks"]
    assert adder_api.get(f"{ADMIN}discovery-candidates/", {"state": "nope"}).status_code == 400
    a = DiscoveryCandidate.objects.get(path="/etc/ssl/a.pem")
    refused = viewer_api.post(f"{ADMIN}discovery-candidates/{a.pk}/approve/", {}, format="json")
    assert refused.status_code == 403
    approved = adder_api.post(f"{ADMIN}discovery-candidates/{a.pk}/approve/", {}, format="json")
    assert approved.status_code == 201, approved.content
    assert approved.json()["state"] == "approved" and approved.json()["store"]
    again = adder_api.post(f"{ADMIN}discovery-candidates/{a.pk}/approve/", {}, format="json")
    assert again.status_code == 409
    assert adder_api.post(f"{ADMIN}discovery-candidates/999999/approve/", {}).status_code == 404
    assert adder_api.post(f"{ADMIN}discovery-candidates/x/approve/", {}).status_code == 404
    all_jks = adder_api.post(
        f"{ADMIN}discovery-candidates/approve-all/",
        {"orchestrator": str(finder.orchestrator.pk), "kind": "jks", "password": "changeit"},
        format="json",
    )
    assert all_jks.status_code == 200, all_jks.content
    assert all_jks.json()["approved"] == 2 and all_jks.json()["failed"] == 0
    bad_kind = adder_api.post(
        f"{ADMIN}discovery-candidates/approve-all/",
        {"orchestrator": str(finder.orchestrator.pk), "kind": "exe"},
        format="json",
    )
    assert bad_kind.status_code == 400
    no_orchestrator = adder_api.post(
        f"{ADMIN}discovery-candidates/approve-all/",
        {"orchestrator": "00000000-0000-0000-0000-000000000000", "kind": "jks"},
        format="json",
    )
    assert no_orchestrator.status_code == 404
    # The password never comes back.
    assert "changeit" not in all_jks.content.decode()
