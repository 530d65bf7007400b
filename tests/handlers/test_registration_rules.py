"""Rule-based approval of registering agents."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.base import HandlerError, RegistrationRequest, Verdict
from handlers.builtin.registration_rules import RuleBasedApproval
from handlers.parameters import ParameterError, parameters_check


def request(**overrides: Any) -> RegistrationRequest:
    fields: dict[str, Any] = {
        "name": "web-1",
        "client_machine": "web-1.prod.example.com",
        "agent_version": "1.0",
        "capabilities": ("PEM.Inventory", "PEM.Add"),
        "client_parameters": {"env": "production", "team": "payments"},
        "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\n...",
        "source_address": "10.20.3.4",
    }
    fields.update(overrides)
    return RegistrationRequest(**fields)


def rules(**config: Any) -> RuleBasedApproval:
    """A handler with its configuration checked as the platform checks it."""
    checked = parameters_check(RuleBasedApproval.parameters, config)
    RuleBasedApproval.config_check(checked)
    return RuleBasedApproval(checked)


EVERY_CONDITION = {
    "client_machine_pattern": "*.PROD.example.com",
    "source_networks": ["192.0.2.0/24", "10.20.0.0/16", "2001:db8::/32"],
    "client_parameters": ["env=prod*", "team=payments"],
    "capabilities": ["PEM.Inventory"],
}


def test_an_agent_meeting_every_condition_is_allowed_with_blueprint_and_metadata() -> None:
    decision = rules(
        **EVERY_CONDITION, blueprint="linux-web", metadata=["owner=payments", "tier=1"]
    ).decide(request())

    assert decision.verdict == Verdict.ALLOW
    assert decision.blueprint == "linux-web"
    assert decision.metadata == {"owner": "payments", "tier": "1"}
    assert "client machine pattern" in decision.reason and "capabilities" in decision.reason
    assert decision.issue_certificate


def test_the_verdict_may_be_deny() -> None:
    decision = rules(client_machine_pattern="*.lab.example.com", verdict="deny").decide(
        request(client_machine="box.lab.example.com")
    )
    assert decision.verdict == Verdict.DENY
    assert decision.blueprint is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"client_machine": "web-1.test.example.com"}, "client machine 'web-1.test.example.com'"),
        ({"source_address": "10.21.0.1"}, "source address 10.21.0.1 is not in"),
        ({"source_address": None}, "source address 'unknown'"),
        ({"source_address": "not-an-ip"}, "source address 'not-an-ip'"),
        ({"client_parameters": {"team": "payments"}}, "client parameter 'env' is missing"),
        (
            {"client_parameters": {"env": "Production", "team": "payments"}},
            "client parameter env='Production' does not match 'prod*'",
        ),
        ({"capabilities": ("PEM.Add",)}, "capabilities not advertised: PEM.Inventory"),
    ],
)
def test_a_condition_that_fails_defers_naming_it(change: dict[str, Any], reason: str) -> None:
    decision = rules(**EVERY_CONDITION, blueprint="linux-web").decide(request(**change))

    assert decision.verdict == Verdict.DEFER
    assert reason in decision.reason
    assert decision.blueprint is None and decision.metadata == {}


def test_the_first_failing_condition_is_the_one_named() -> None:
    decision = rules(**EVERY_CONDITION).decide(
        request(client_machine="db.test.example.com", source_address="8.8.8.8", capabilities=())
    )
    assert decision.reason.startswith("client machine")


@pytest.mark.parametrize(
    "address", ["2001:db8:1::5", "::ffff:10.20.9.9", "192.0.2.200", "[2001:db8::1]"]
)
def test_ipv6_and_ipv4_mapped_addresses_are_matched(address: str) -> None:
    decision = rules(source_networks=EVERY_CONDITION["source_networks"]).decide(
        request(source_address=address)
    )
    assert decision.verdict == Verdict.ALLOW


def test_the_machine_pattern_ignores_case_and_star_spans_dots() -> None:
    approve = rules(client_machine_pattern="WEB-?.*.example.COM", source_networks=["10.0.0.0/8"])
    assert approve.decide(request(client_machine="web-1.eu.prod.example.com")).verdict == "allow"
    assert approve.decide(request(client_machine="web-10.example.com")).verdict == "defer"


def test_at_least_one_condition_is_required() -> None:
    with pytest.raises(ParameterError) as caught:
        rules(verdict="allow", blueprint="linux-web", metadata=["a=b"])
    assert "at least one condition" in caught.value.errors["client_machine_pattern"]


def test_each_wrong_parameter_gets_its_own_clear_message() -> None:
    with pytest.raises(ParameterError) as caught:
        rules(
            source_networks=["10.0.0.0/8", "10.1.2.3/8", "300.1.1.1/8", "fe80::/10"],
            client_parameters=["env=prod", "just a line"],
            metadata=["owner=a", "owner=b"],
            verdict="deny",
            blueprint="linux-web",
        )
    errors = caught.value.errors
    assert "did you mean 10.0.0.0/8?" in errors["source_networks"]
    assert "'300.1.1.1/8' is not an IPv4 or IPv6 network" in errors["source_networks"]
    assert "fe80" not in errors["source_networks"]
    assert "line 2 ('just a line') is not key=value" in errors["client_parameters"]
    assert "'owner' is given twice" in errors["metadata"]
    assert "only to an allowed orchestrator" in errors["blueprint"]


def test_a_handler_created_with_bad_rules_fails_permanently_instead_of_deciding() -> None:
    with pytest.raises(HandlerError) as caught:
        RuleBasedApproval({"source_networks": ["nonsense"]}).decide(request())
    assert caught.value.permanent
    assert "source_networks" in caught.value.message


def test_a_single_address_is_a_network_of_one() -> None:
    approve = rules(source_networks=["10.20.3.4"])
    assert approve.decide(request()).verdict == Verdict.ALLOW
    assert approve.decide(request(source_address="10.20.3.5")).verdict == Verdict.DEFER
