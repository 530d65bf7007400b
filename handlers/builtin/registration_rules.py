"""The built-in rule-based registration handler ("certyard.registration_rules")."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers.base import (
    HandlerError,
    RegistrationDecision,
    RegistrationHandler,
    RegistrationRequest,
    Verdict,
)
from handlers.builtin._common import glob_compile, key_value_lines, setting
from handlers.helpers import key_values
from handlers.parameters import Parameter, ParameterError, ParameterType

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
CONDITIONS = (
    "token_labels",
    "source_networks",
    "client_machine_pattern",
    "client_parameters",
    "capabilities",
)
# What the platform verified itself; the other conditions test what the agent claims.
VERIFIED_CONDITIONS = ("token_labels", "source_networks")


def _network(text: str) -> IPNetwork:
    """One CIDR (or a bare address, meaning that address alone); ValueError says why not."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 network (e.g. 10.0.0.0/8)") from None
    raise ValueError(f"{text!r} has bits set after the prefix: did you mean {loose}?")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class _Rules:
    """The parameters, parsed once."""

    token_labels: tuple[str, ...]
    client_machine_glob: str
    client_machine: re.Pattern[str] | None
    networks: tuple[IPNetwork, ...]
    client_parameters: tuple[tuple[str, str, re.Pattern[str]], ...]
    capabilities: tuple[str, ...]
    verdict: Verdict
    blueprint: str | None
    metadata: dict[str, str]


def _rules(config: Mapping[str, Any]) -> _Rules:
    """The rules of a configuration; ParameterError naming each wrong parameter."""
    errors: dict[str, str] = {}
    pattern = str(config.get("client_machine_pattern") or "").strip()
    token_labels = tuple(
        dict.fromkeys(str(item).strip() for item in config.get("token_labels") or [])
    )
    token_labels = tuple(label for label in token_labels if label)

    networks: list[IPNetwork] = []
    problems = []
    for line in config.get("source_networks") or []:
        try:
            networks.append(_network(line.strip()))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        errors["source_networks"] = "; ".join(problems)

    client_parameters: list[tuple[str, str, re.Pattern[str]]] = []
    try:
        pairs = key_value_lines(
            config.get("client_parameters") or [], what="key=value", value_required=False
        )
    except ValueError as exc:
        errors["client_parameters"] = str(exc)
    else:
        # A value compares as a glob, case-sensitively: parameters are the agent
        # administrator's exact words.
        client_parameters = [
            (key, value, glob_compile(value, ignore_case=False)) for key, value in pairs
        ]

    metadata: dict[str, str] = {}
    try:
        metadata = key_values(config.get("metadata") or [])
    except ValueError as exc:
        errors["metadata"] = str(exc)

    capabilities = tuple(item.strip() for item in config.get("capabilities") or [] if item.strip())
    verdict_text = str(config.get("verdict") or Verdict.ALLOW.value)
    if verdict_text not in (Verdict.ALLOW.value, Verdict.DENY.value):
        errors["verdict"] = "must be allow or deny"
    blueprint = str(config.get("blueprint") or "").strip() or None
    if blueprint and verdict_text == Verdict.DENY.value:
        errors["blueprint"] = "a blueprint is given only to an allowed orchestrator"
    if not (token_labels or pattern or networks or client_parameters or capabilities or errors):
        errors["client_machine_pattern"] = (
            "give at least one condition (token labels, source networks, client machine "
            "pattern, client parameters or capabilities): without one, every agent would match"
        )
    elif verdict_text == Verdict.ALLOW.value and not (token_labels or networks or errors):
        # The machine name, parameters and capabilities are the agent's own words: anyone
        # holding any registration token could claim them.
        unverified = (
            "a rule that allows needs a condition the platform verifies: token labels "
            "(set on the registration token when it is made) or source networks; the client "
            "machine, parameters and capabilities are only what the agent claims"
        )
        errors["token_labels"] = unverified
    if errors:
        raise ParameterError(errors)
    return _Rules(
        token_labels=token_labels,
        client_machine_glob=pattern,
        client_machine=glob_compile(pattern) if pattern else None,
        networks=tuple(networks),
        client_parameters=tuple(client_parameters),
        capabilities=capabilities,
        verdict=Verdict(verdict_text),
        blueprint=blueprint,
        metadata=metadata,
    )


class RuleBasedApproval(RegistrationHandler):
    """Allows (or denies) the agents that meet every condition given; defers the others.

    Conditions, each optional but at least one required; all those given must match.
    Verified by the platform (a rule whose verdict is ``allow`` needs at least one):

    - **token_labels**: labels the registration token used must all carry (set by whoever
      made the token, e.g. ``prod-web``; the agent cannot choose them).
    - **source_networks**: one network per line, IPv4 or IPv6 (``10.20.0.0/16``,
      ``2001:db8::/32``, or a single address); the request must come from one of them (the
      address as the platform determines it, trusted proxies honoured).

    Claimed by the agent (narrow a rule down with them; never the only reason to allow):

    - **client_machine_pattern**: a glob on the agent's machine name, ignoring case:
      ``*.prod.example.com`` (``*`` matches any text, dots included but never a line break;
      ``?`` one character).
    - **client_parameters**: ``key=value`` lines the agent's own parameters must all have;
      the value may be a glob and is compared exactly (case counts): ``env=prod*``.
    - **capabilities**: capabilities the agent must all advertise, e.g. ``PEM.Inventory``.

    When every condition matches, the decision is **verdict** (``allow`` or ``deny``); an
    allowed orchestrator receives the stores and schedules of **blueprint** (its name, if
    given) and the **metadata** ``key=value`` lines. When a condition does not match, the
    decision is deferred to the next handler (and to an administrator at the end), naming
    the first condition that failed.

    Example: token labels ``prod-web``, client machine pattern ``*.prod.example.com``,
    source networks ``10.20.0.0/16``, verdict ``allow``, blueprint ``linux-web``.
    """

    label = "Approve by rules"
    parameters = (
        Parameter(
            "token_labels",
            ParameterType.LIST,
            help="Labels the registration token must all carry, one per line (verified: set "
            "when the token was made).",
        ),
        Parameter(
            "client_machine_pattern",
            ParameterType.STRING,
            help="A glob the agent's machine name must match, e.g. *.prod.example.com "
            "(claimed by the agent).",
        ),
        Parameter(
            "source_networks",
            ParameterType.LIST,
            help="Networks the request must come from, one CIDR per line (IPv4 or IPv6; verified).",
        ),
        Parameter(
            "client_parameters",
            ParameterType.LIST,
            help="key=value lines the agent's parameters must all match (value: a glob; "
            "claimed by the agent).",
        ),
        Parameter(
            "capabilities",
            ParameterType.LIST,
            help="Capabilities the agent must all advertise, one per line (claimed).",
        ),
        Parameter(
            "verdict",
            ParameterType.CHOICE,
            help="The decision when every condition matches.",
            default=Verdict.ALLOW.value,
            choices=(Verdict.ALLOW.value, Verdict.DENY.value),
        ),
        Parameter(
            "blueprint",
            ParameterType.STRING,
            help="The blueprint an allowed orchestrator receives (its name).",
        ),
        Parameter(
            "metadata",
            ParameterType.LIST,
            help="key=value lines recorded on the orchestrator.",
        ),
    )

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        _rules(config)

    def decide(self, request: RegistrationRequest) -> RegistrationDecision:
        config = {parameter.name: setting(self, parameter.name) for parameter in self.parameters}
        try:
            rules = _rules(config)
        except ParameterError as exc:
            raise HandlerError(f"the rules are misconfigured: {exc}", permanent=True) from exc
        unmatched = self._first_unmatched(rules, request)
        if unmatched:
            return RegistrationDecision(Verdict.DEFER, reason=unmatched)
        given = [name.replace("_", " ") for name in CONDITIONS if config.get(name)]
        return RegistrationDecision(
            rules.verdict,
            reason=f"{rules.verdict.value}: matched every condition ({', '.join(given)})",
            blueprint=rules.blueprint if rules.verdict == Verdict.ALLOW else None,
            metadata=dict(rules.metadata),
        )

    @staticmethod
    def _first_unmatched(rules: _Rules, request: RegistrationRequest) -> str | None:
        """Why the request does not match, for the first condition it fails; None if none."""
        carried = set(request.token_labels)
        missing_labels = [label for label in rules.token_labels if label not in carried]
        if missing_labels:
            return f"the registration token lacks the labels: {', '.join(missing_labels)}"
        if rules.client_machine and not rules.client_machine.fullmatch(request.client_machine):
            return (
                f"client machine {request.client_machine!r} does not match "
                f"{rules.client_machine_glob!r}"
            )
        if rules.networks:
            address = _address(request.source_address or "")
            if address is None:
                shown = request.source_address or "unknown"
                return f"source address {shown!r} is not an IP address in the source networks"
            if not any(address in network for network in rules.networks):
                return f"source address {address} is not in the source networks"
        for key, value, pattern in rules.client_parameters:
            actual = request.client_parameters.get(key)
            if actual is None:
                return f"client parameter {key!r} is missing (wanted {value!r})"
            if not pattern.fullmatch(str(actual)):
                return f"client parameter {key}={actual!r} does not match {value!r}"
        advertised = set(request.capabilities)
        missing = [item for item in rules.capabilities if item not in advertised]
        if missing:
            return f"capabilities not advertised: {', '.join(missing)}"
        return None
