"""A registration handler: approve agents by the environment their token vouches for."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from handlers.base import RegistrationDecision, RegistrationHandler, RegistrationRequest, Verdict
from handlers.parameters import Parameter, ParameterError, ParameterType

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(lines: list[str]) -> list[Network]:
    """The CIDR lines as networks; ``ValueError`` naming the first wrong one."""
    networks = []
    for line in lines:
        try:
            networks.append(ipaddress.ip_network(line.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{line!r} is not a network such as 192.0.2.0/24") from None
    return networks


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The request's source address, or None when unknown; ``::ffff:a.b.c.d`` reads as IPv4."""
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _token_environment(labels: tuple[str, ...]) -> str:
    """The environment the token's ``environment=<name>`` label vouches for, or ""."""
    for label in labels:
        key, _, value = label.partition("=")
        if key == "environment" and value:
            return value
    return ""


def _csr_common_name(csr_pem: str) -> str:
    """The CN of the agent's CSR (the platform has already checked its signature)."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


class NameAndEnvironment(RegistrationHandler):
    """Approves agents whose registration token vouches for an allowed environment.

    What an agent says about itself (its name, its machine, its ``--param`` values) is a
    claim; the token it registered with and the address it came from are what the platform
    verified. So the environment is read from the token's labels, which only the person who
    made the token chose, never from the agent's parameters alone.

    Checks, in this order:

    1. **Deny** an agent whose request comes from one of the **denied_networks**.
    2. **Defer** unless the token carries a label ``environment=<name>`` with ``<name>`` one
       of **environments**, the agent's CSR carries its own name as common name, and the
       agent's own ``environment`` parameter, if it sent one, agrees with the token.
    3. Otherwise **allow**: the orchestrator gets the metadata ``environment=<name>`` and,
       if given, the stores and schedules of **blueprint**.

    Example: environments ``production`` and ``staging``; denied networks
    ``198.51.100.0/24``. A token made with the label ``environment=production`` registers
    agents that are approved at once; a token without that label leaves them for an
    administrator, whatever they claim.
    """

    label = "Approve by agent name and environment (example)"
    parameters = (
        Parameter(
            "environments",
            ParameterType.LIST,
            help=(
                "The environments a token may vouch for (its label environment=<name>), "
                "one per line."
            ),
            required=True,
        ),
        Parameter(
            "denied_networks",
            ParameterType.LIST,
            help="Agents registering from these networks are refused (one CIDR per line).",
        ),
        Parameter("blueprint", help="The blueprint an approved agent receives (optional)."),
    )

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        try:
            _networks(config.get("denied_networks") or [])
        except ValueError as exc:
            raise ParameterError({"denied_networks": str(exc)}) from exc

    def decide(self, request: RegistrationRequest) -> RegistrationDecision:
        address = _address(request.source_address)
        for network in _networks(self.config.get("denied_networks") or []):
            if address is not None and address in network:
                return RegistrationDecision(
                    Verdict.DENY, reason=f"registered from {address}, in denied {network}"
                )
        environment = _token_environment(request.token_labels)
        if environment not in self.config["environments"]:
            return RegistrationDecision(
                Verdict.DEFER,
                reason=f"the token vouches for no allowed environment ({environment!r})",
            )
        common_name = _csr_common_name(request.csr_pem)
        if common_name != request.name:
            return RegistrationDecision(
                Verdict.DEFER,
                reason=f"the CSR names {common_name!r}, not the agent's name {request.name!r}",
            )
        claimed = request.client_parameters.get("environment", environment)
        if claimed != environment:
            return RegistrationDecision(
                Verdict.DEFER,
                reason=f"the agent claims environment {claimed!r}, its token {environment!r}",
            )
        return RegistrationDecision(
            Verdict.ALLOW,
            reason=f"token vouches for environment {environment}; CSR matches its name",
            blueprint=self.config.get("blueprint") or None,
            metadata={"environment": environment},
        )
