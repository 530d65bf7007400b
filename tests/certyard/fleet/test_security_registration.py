"""Issue 14, finding 2: registration trusts only what it can verify.

Each test is a regression test for one part of the finding, driven through the real agent
API (Django's test client): a rule that approves on what the agent claims, a token
restricted to machines and a blueprint, store paths rewritten out of the blueprint's
folder, globs matching across lines, a re-registration inheriting an orchestrator's row,
and rules that match what the platform verified (token labels, source address).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client, TestCase, override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from certyard.blueprints.models import Blueprint
from certyard.blueprints.services import blueprint_apply, blueprint_save
from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.fleet.services import (
    orchestrator_certificate_revoke,
    orchestrator_reset,
    registration_token_create,
)
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.inventory.services import store_create
from certyard.jobs.models import Job
from certyard.workflows.models import HandlerRegistration, HandlerRun
from certyard.workflows.services import registration_save
from handlers.base import RegistrationRequest, Verdict
from handlers.builtin._common import glob_compile, glob_regex
from handlers.builtin.registration_rules import RuleBasedApproval
from handlers.parameters import ParameterError
from tests.certs import agent_key
from tests.certyard.conftest import ADMIN, AGENT, error_of, register_body
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db

REGISTER = f"{AGENT}register"
TOKENS = f"{ADMIN}registration-tokens/"
SECRET = "prod-web-store-password-4711"
RULES = "certyard.registration_rules"


@pytest.fixture
def prod_web(register_agent: Callable[..., RegisteredAgent], superuser: Any) -> Blueprint:
    """The blueprint "prod-web": one PEM store under /srv/certs/<machine>/pki, with a password."""
    source = register_agent("src-1").orchestrator
    store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        store_path=f"/srv/certs/{source.client_machine}/pki",
        orchestrator=source,
        password=SECRET,
    )
    blueprint = blueprint_save(orchestrator=source, name="prod-web", actor=superuser)
    assert blueprint.stores.get().store_path == "/srv/certs/{client_machine}/pki"
    return blueprint


def _token(**options: Any) -> str:
    _, value = registration_token_create(
        description="handed to an agent", valid_for=dt.timedelta(hours=1), **options
    )
    return value


def _rule(name: str = "prod rule", **values: Any) -> HandlerRegistration:
    return registration_save(
        registration=HandlerRegistration(name=name, handler=RULES), values=values
    )


def _token_row(value: str) -> RegistrationToken:
    return RegistrationToken.objects.get(token_prefix=value[:8])


def _stores_of(orchestrator_id: str) -> list[CertificateStore]:
    return list(CertificateStore.objects.filter(orchestrator_id=orchestrator_id))


def _register(api: APIClient, token: str, name: str, machine: str, **extra: Any) -> Any:
    """Register through the agent API; what runs after the commit (applying a blueprint)
    runs before this returns, as it would outside the test's transaction."""
    body = register_body(token, name, client_machine=machine)
    with TestCase.captureOnCommitCallbacks(execute=True):
        return api.post(REGISTER, body, format="json", **extra)


# --- A rule or a token approving on what the agent claims ----------------------------


def test_a_rule_approving_on_the_claimed_machine_alone_can_neither_be_saved_nor_approve(
    api: APIClient, prod_web: Blueprint
) -> None:
    """The finding: ``*.prod.example.test → allow, blueprint prod-web`` approved anyone
    holding a non-approving token who claimed such a machine, and handed over the store
    password."""
    claims_only = {
        "client_machine_pattern": "*.prod.example.test",
        "verdict": "allow",
        "blueprint": "prod-web",
    }
    with pytest.raises(ParameterError) as refused:
        _rule(**claims_only)
    assert "condition the platform verifies" in refused.value.errors["token_labels"]
    # One saved before the upgrade (its parameters were not checked then) decides nothing.
    HandlerRegistration.objects.create(
        name="old rule", handler=RULES, kind="registration", parameters=claims_only
    )

    response = _register(api, _token(), "intruder", "x.prod.example.test")

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "new"
    intruder = Orchestrator.objects.get(name="intruder")
    assert _stores_of(intruder.pk) == []
    assert not Job.objects.filter(store__orchestrator=intruder).exists()
    run = HandlerRun.objects.get(registration_name="old rule")
    assert run.state == HandlerRun.State.FAILED and "verifies" in run.error


def test_a_token_restricted_to_a_machine_pattern_refuses_other_claimed_machines(
    api: APIClient, prod_web: Blueprint
) -> None:
    _rule(token_labels=["prod-web"], verdict="allow", blueprint="prod-web")
    token = _token(labels=["prod-web"], machine_pattern="*.prod.example.test")

    refused = _register(api, token, "intruder", "db-1.staging.example.test")

    assert refused.status_code == 403, refused.content
    error = error_of(refused)
    assert error["code"] == "machine_not_allowed"
    assert "*.prod.example.test" in error["message"]
    assert not Orchestrator.objects.filter(name="intruder").exists()
    assert _token_row(token).use_count == 0  # not spent

    allowed = _register(api, token, "web-1", "web-1.prod.example.test")

    assert allowed.status_code == 201, allowed.content
    assert allowed.json()["status"] == "approved"
    [store] = _stores_of(allowed.json()["orchestrator_id"])
    assert store.store_path == "/srv/certs/web-1.prod.example.test/pki"


def test_a_token_restricted_to_a_blueprint_lets_no_approval_apply_another(
    api: APIClient, prod_web: Blueprint, register_agent: Callable[..., RegisteredAgent]
) -> None:
    lab = register_agent("lab-0").orchestrator
    store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        store_path="/srv/lab",
        orchestrator=lab,
    )
    blueprint_save(orchestrator=lab, name="lab-only", actor=None)
    _rule(token_labels=["lab"], verdict="allow", blueprint="prod-web")
    token = _token(labels=["lab"], blueprint="lab-only")

    response = _register(api, token, "lab-1", "lab-1.example.test")

    assert response.status_code == 201, response.content
    orchestrator = Orchestrator.objects.get(pk=response.json()["orchestrator_id"])
    assert orchestrator.status == Orchestrator.Status.NEW  # left to an administrator
    assert "allows only 'lab-only'" in orchestrator.last_error
    assert _stores_of(orchestrator.pk) == []


# --- Claimed machine names and blueprint paths --------------------------------------


@pytest.mark.parametrize(
    "machine",
    [
        "../../../../etc/cron.d/x.prod.example.test",
        "evil.test\n.prod.example.test",
        "<img src=x onerror=alert(1)>.prod.example.test",
        "gpj.\u202eexe.prod.example.test",
        "x.prod.example.test ",
        "a b.prod.example.test",
        "C:\\Windows\\x.prod.example.test",
        "x" * 64 + ".prod.example.test",
        "a." * 130 + "test",
    ],
)
def test_a_claimed_machine_that_is_no_host_name_or_address_is_a_400(
    api: APIClient, machine: str
) -> None:
    token = _token(approve_on_register=True)

    response = _register(api, token, "intruder", machine)

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid"
    assert "client_machine" in str(error)
    assert not Orchestrator.objects.exists()
    assert _token_row(token).use_count == 0


@pytest.mark.parametrize(
    "machine", ["web-1.prod.example.test", "10.20.1.2", "2001:db8::7", "WIN_SRV01"]
)
def test_host_names_and_addresses_are_accepted(api: APIClient, machine: str) -> None:
    response = _register(api, _token(), "web-1", machine)
    assert response.status_code == 201, response.content
    assert Orchestrator.objects.get().client_machine == machine


def test_blueprint_paths_are_normalised_and_never_leave_the_blueprints_folder(
    api: APIClient, prod_web: Blueprint
) -> None:
    """An orchestrator recorded before machine names were checked cannot lead a blueprint's
    store (and its password) out of the blueprint's folder."""
    response = _register(api, _token(approve_on_register=True), "x", "x.prod.example.test")
    assert response.status_code == 201, response.content
    orchestrator = Orchestrator.objects.get(pk=response.json()["orchestrator_id"])
    Orchestrator.objects.filter(pk=orchestrator.pk).update(
        client_machine="../../../../etc/cron.d/x.prod.example.test"
    )
    orchestrator.refresh_from_db()

    application = blueprint_apply(blueprint=prod_web, orchestrator=orchestrator, actor=None)

    assert application.created == []
    [refusal] = application.refused
    assert refusal.code == "path_escape"
    assert "leave the blueprint's folder" in refusal.reason
    assert _stores_of(orchestrator.pk) == []
    assert not CertificateStore.objects.filter(store_path__contains="..").exists()


def test_a_filled_in_path_is_normalised(register_agent: Callable[..., RegisteredAgent]) -> None:
    source = register_agent("n-1").orchestrator
    store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        store_path="/srv//certs/./n-1/pki/",
        orchestrator=source,
    )
    blueprint = blueprint_save(orchestrator=source, name="dots", actor=None)
    target = register_agent("n-2").orchestrator

    application = blueprint_apply(blueprint=blueprint, orchestrator=target, actor=None)

    assert [store.store_path for store in application.created] == ["/srv/certs/n-2/pki"]


# --- Globs never match across lines --------------------------------------------------


def test_globs_never_match_across_lines() -> None:
    pattern = glob_compile("*.prod.example.test")
    assert pattern.fullmatch("web-1.prod.example.test")
    for name in (
        "evil.test\n.prod.example.test",
        "evil\r.prod.example.test",
        "a\u2028.prod.example.test",
    ):
        assert not pattern.fullmatch(name), repr(name)
    assert not glob_compile("web-?.prod.example.test").fullmatch("web-\n.prod.example.test")
    assert not glob_compile("[!x]*.test").fullmatch("\nevil.test")
    # Also when a caller compiles the expression with re.DOTALL itself (metadata rules do).
    import re

    assert not re.compile(glob_regex("*.test"), re.DOTALL).fullmatch("a\nb.test")

    rule = RuleBasedApproval(
        {"client_machine_pattern": "*.prod.example.test", "source_networks": ["10.0.0.0/8"]}
    )
    request = RegistrationRequest(
        name="evil",
        client_machine="evil.test\n.prod.example.test",
        agent_version="1",
        capabilities=(),
        client_parameters={},
        csr_pem="",
        source_address="10.1.2.3",
    )
    assert rule.decide(request).verdict == Verdict.DEFER


# --- Re-registration never inherits a row ---------------------------------------------


def test_a_new_key_never_inherits_a_revoked_orchestrators_row_stores_or_secrets(
    api: APIClient,
    register_agent: Callable[..., RegisteredAgent],
    pem_store: Callable[..., Any],
) -> None:
    victim = register_agent("web-9")
    store = pem_store(victim.orchestrator, "/srv/certs/web-9")
    CertificateStore.objects.filter(pk=store.pk).update(password=SECRET)
    orchestrator_certificate_revoke(orchestrator=victim.orchestrator)
    before = Orchestrator.objects.get(pk=victim.orchestrator.pk)
    token = _token(approve_on_register=True)

    response = api.post(
        REGISTER,
        register_body(token, "web-9", key=agent_key(), client_machine="web-9.example.test"),
        format="json",
    )

    assert response.status_code == 409, response.content
    error = error_of(response)
    assert error["code"] == "identity_revoked"
    assert "only the agent holding its key" in error["message"]
    after = Orchestrator.objects.get(pk=victim.orchestrator.pk)
    assert after.public_key_sha256 == before.public_key_sha256
    assert after.certificate_pem == before.certificate_pem
    assert Orchestrator.objects.count() == 1
    assert _token_row(token).use_count == 0
    assert CertificateStore.objects.get(pk=store.pk).orchestrator_id == victim.orchestrator.pk

    # The agent that holds the key proves it with its CSR, and gets its row back.
    again = api.post(
        REGISTER,
        register_body(token, "web-9", key=victim.key, client_machine="web-9.example.test"),
        format="json",
    )
    assert again.status_code == 201, again.content
    assert again.json()["orchestrator_id"] == str(victim.orchestrator.pk)


def test_a_key_reported_compromised_cannot_take_its_row_back(
    api: APIClient, register_agent: Callable[..., RegisteredAgent]
) -> None:
    victim = register_agent("web-8")
    orchestrator_certificate_revoke(orchestrator=victim.orchestrator, reason=1)

    response = api.post(
        REGISTER,
        register_body(_token(approve_on_register=True), "web-8", key=victim.key),
        format="json",
    )

    assert response.status_code == 409, response.content
    assert error_of(response)["code"] == "identity_revoked"
    assert "compromised" in error_of(response)["message"]


def test_after_a_reset_a_new_key_waits_for_an_administrator_before_it_gets_the_stores(
    api: APIClient,
    register_agent: Callable[..., RegisteredAgent],
    pem_store: Callable[..., Any],
) -> None:
    victim = register_agent("web-7")
    pem_store(victim.orchestrator, "/srv/certs/web-7")
    orchestrator_reset(orchestrator=victim.orchestrator, actor=None)

    response = api.post(
        REGISTER,
        register_body(_token(approve_on_register=True), "web-7", key=agent_key()),
        format="json",
    )

    assert response.status_code == 201, response.content
    orchestrator = Orchestrator.objects.get(pk=victim.orchestrator.pk)
    assert orchestrator.status == Orchestrator.Status.NEW
    assert "administrator approves it" in orchestrator.last_error


# --- Rules on what the platform verified: token labels and source address -------------


def test_a_rule_on_token_labels_and_source_networks_approves_only_what_it_verified(
    api: APIClient, prod_web: Blueprint
) -> None:
    _rule(
        token_labels=["prod-web"],
        source_networks=["10.20.0.0/16"],
        client_machine_pattern="*.prod.example.test",
        verdict="allow",
        blueprint="prod-web",
    )
    labelled = _token(labels=["prod-web"], reusable=True)

    inside = _register(api, labelled, "web-1", "web-1.prod.example.test", REMOTE_ADDR="10.20.1.2")
    outside = _register(api, labelled, "web-2", "web-2.prod.example.test", REMOTE_ADDR="192.0.2.9")
    # X-Forwarded-For is what the client wrote: without trusted proxies it is ignored.
    spoofed = _register(
        api,
        labelled,
        "web-3",
        "web-3.prod.example.test",
        REMOTE_ADDR="192.0.2.9",
        HTTP_X_FORWARDED_FOR="10.20.1.3",
    )
    unlabelled = _register(
        api, _token(), "web-4", "web-4.prod.example.test", REMOTE_ADDR="10.20.1.4"
    )

    statuses = [r.json()["status"] for r in (inside, outside, spoofed, unlabelled)]
    assert statuses == ["approved", "new", "new", "new"]
    assert len(_stores_of(inside.json()["orchestrator_id"])) == 1
    for response in (outside, spoofed, unlabelled):
        assert _stores_of(response.json()["orchestrator_id"]) == []
    runs = HandlerRun.objects.filter(registration_name="prod rule").order_by("pk")
    assert runs[0].inputs["token_labels"] == ["prod-web"]
    assert runs[0].inputs["source_address"] == "10.20.1.2"
    assert "not in the source networks" in runs[1].output["reason"]
    assert "lacks the labels: prod-web" in runs[3].output["reason"]


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_source(
    api: APIClient, prod_web: Blueprint, settings: Any
) -> None:
    _rule(token_labels=["prod-web"], source_networks=["10.20.0.0/16"], blueprint="prod-web")
    rest = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    with override_settings(REST_FRAMEWORK=rest):
        response = _register(
            api,
            _token(labels=["prod-web"]),
            "web-5",
            "web-5.prod.example.test",
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR="192.0.2.1, 10.20.7.7",
        )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "approved"
    assert Orchestrator.objects.get(name="web-5").source_address == "10.20.7.7"


# --- Creating tokens with their restrictions -----------------------------------------


def test_the_api_creates_a_token_with_labels_a_machine_pattern_and_a_blueprint(
    admin_api: APIClient, prod_web: Blueprint
) -> None:
    response = admin_api.post(
        TOKENS,
        {
            "description": "prod web",
            "labels": ["prod-web", "eu"],
            "machine_pattern": "*.prod.example.test",
            "blueprint": "PROD-web",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["labels"] == ["prod-web", "eu"]
    assert body["machine_pattern"] == "*.prod.example.test"
    assert body["blueprint"] == "prod-web"  # as the blueprint is named


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("labels", ["bad label"], "is not a label"),
        ("labels", ["ok", "<script>"], "is not a label"),
        ("machine_pattern", "../*", "host name glob"),
        ("machine_pattern", "*.prod\n.example.test", "host name glob"),
        ("blueprint", "no-such-blueprint", "no blueprint named"),
    ],
)
def test_the_api_refuses_bad_token_options_with_a_clear_400(
    admin_api: APIClient, prod_web: Blueprint, field: str, value: Any, says: str
) -> None:
    response = admin_api.post(TOKENS, {"description": "bad", field: value}, format="json")

    assert response.status_code == 400, response.content
    assert says in str(response.json())
    assert not RegistrationToken.objects.filter(description="bad").exists()


def test_the_console_creates_a_restricted_token_and_shows_field_errors(
    superuser: Any, prod_web: Blueprint
) -> None:
    console = Client()
    console.force_login(superuser)
    url = reverse("console:registration-token-create")
    form = {"description": "prod", "valid_hours": 24, "machine_pattern": "*.prod.example.test"}

    bad = console.post(url, {**form, "labels": "prod-web", "blueprint": "nope"})
    good = console.post(url, {**form, "labels": "prod-web, eu", "blueprint": "prod-web"})

    assert bad.status_code == 200
    assert "no blueprint named" in bad.content.decode()
    assert good.status_code == 200
    token = RegistrationToken.objects.get(description="prod")
    assert (token.labels, token.machine_pattern, token.blueprint) == (
        ["prod-web", "eu"],
        "*.prod.example.test",
        "prod-web",
    )
    assert "*.prod.example.test" in good.content.decode()
