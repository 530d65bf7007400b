"""TLS endpoint discovery, the part both sides share: what a scan store's targets and ports
say, what an agent's administrator allows it to scan, and what a scan reports per endpoint.

A *TLS scan store* (store type ``TLS``) names network targets instead of a file: its store
path is a list of host names, addresses and address ranges (``www.example.com, 10.0.4.7,
10.0.5.0/28``), its ``ports`` property the ports to try (``443, 8443, 9000-9010``). The
agent's inventory of such a store connects to each endpoint and reports what it serves.

The platform never decides alone what an agent connects to. The agent's administrator
lists what it may scan in its own configuration (``certyard-orchestrator scan-allow``:
networks, host-name patterns and ports, :class:`ScanAllowance`), and the agent refuses a
job naming anything else before it opens a connection, whatever the platform says. An
agent with nothing listed scans nothing. This module stays free of Django: the platform
uses the same parsers to refuse a malformed store before it is saved.
"""

from __future__ import annotations

import enum
import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A range larger than this is refused: one store is one inventory job, and a /16 would be
# 65,534 addresses times every port. Split a big network into several stores.
MAX_RANGE_ADDRESSES = 4096
# Endpoints one store may expand to (addresses x ports x SNI names).
MAX_ENDPOINTS = 65536
MAX_TARGETS_TEXT = 1024  # the store path's own limit
MAX_SNI_NAMES = 16
MAX_REASON_LENGTH = 300

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_PATTERN_LABEL = re.compile(r"(?:\*|(?!-)[A-Za-z0-9_*-]{1,63}(?<!-))")


class EndpointStatus(enum.StrEnum):
    """How connecting to one endpoint ended."""

    OK = "ok"  # a TLS handshake completed and the server presented certificates
    REFUSED = "refused"  # nothing listens on the port
    TIMEOUT = "timeout"  # no connection, or a connection and no handshake, in time
    UNREACHABLE = "unreachable"  # no route, or the name does not resolve
    PLAINTEXT_HTTP = "plaintext_http"  # the port answers plain HTTP
    NO_TLS = "no_tls"  # the port answers, but not TLS or HTTP
    HANDSHAKE_FAILED = "handshake_failed"  # TLS, but no handshake this client can finish
    INVALID_CERTIFICATE = "invalid_certificate"  # the platform could not read what it served


class ScanTargetError(ValueError):
    """A target list, port list or allowance that does not parse; the message says which
    part and why, for a person."""


@dataclass(frozen=True, slots=True)
class Target:
    """One item of a target list: a host name, an address, or a network (a range)."""

    text: str
    name: str | None = None
    address: IPAddress | None = None
    network: IPNetwork | None = None

    def addresses(self) -> Iterable[IPAddress]:
        """The addresses of an address or network target (none for a name)."""
        if self.address is not None:
            yield self.address
        elif self.network is not None:
            if self.network.num_addresses <= 2:
                yield from self.network
            else:
                yield from self.network.hosts()


def host_name_valid(name: str) -> bool:
    """Whether ``name`` is a DNS host name (letters, digits, ``-``, ``_``; dotted labels)."""
    labels = name.rstrip(".").split(".")
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def targets_parse(text: str) -> list[Target]:
    """The targets of a scan store's path: names, addresses and ranges (CIDR), separated by
    commas, spaces or line breaks.

    Raises:
        ScanTargetError: an item that is none of those, a range of more than
            ``MAX_RANGE_ADDRESSES`` addresses, or no target at all.
    """
    if len(text) > MAX_TARGETS_TEXT:
        raise ScanTargetError(f"the target list is longer than {MAX_TARGETS_TEXT} characters")
    items = [item for item in re.split(r"[\s,]+", text.strip()) if item]
    if not items:
        raise ScanTargetError(
            "give at least one target: a host name, an address or a range such as 10.0.5.0/28"
        )
    targets: list[Target] = []
    for item in items:
        if "/" in item:
            try:
                network = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ScanTargetError(
                    f"{item!r} is not an address range (write it as 10.0.5.0/28)"
                ) from None
            if network.num_addresses > MAX_RANGE_ADDRESSES:
                raise ScanTargetError(
                    f"{item} holds {network.num_addresses} addresses; a store scans at most "
                    f"{MAX_RANGE_ADDRESSES} per range (split it into several stores)"
                )
            targets.append(Target(item, network=network))
            continue
        try:
            targets.append(Target(item, address=ipaddress.ip_address(item.strip("[]"))))
            continue
        except ValueError:
            pass
        if not host_name_valid(item):
            raise ScanTargetError(f"{item!r} is not a host name, an address or an address range")
        targets.append(Target(item, name=item.rstrip(".").lower()))
    return targets


def port_ranges_parse(text: str) -> list[tuple[int, int]]:
    """``443, 8443, 9000-9010`` as (low, high) ranges, in order.

    Raises:
        ScanTargetError: not ports (1-65535) or ranges of them.
    """
    ranges: list[tuple[int, int]] = []
    for item in (item for item in re.split(r"[\s,]+", str(text).strip()) if item):
        low_text, _, high_text = item.partition("-")
        try:
            low, high = int(low_text), int(high_text or low_text)
        except ValueError:
            raise ScanTargetError(
                f"{item!r} is not a port or a port range (443, 9000-9010)"
            ) from None
        if not 1 <= low <= high <= 65535:
            raise ScanTargetError(f"{item!r}: ports run from 1 to 65535, low to high")
        ranges.append((low, high))
    return ranges


def ports_parse(text: str) -> list[int]:
    """The ports of ``443, 8443, 9000-9010`` in order, each once (at least one).

    Raises:
        ScanTargetError: not ports (1-65535) or ranges of them, or none.
    """
    ranges = port_ranges_parse(text)
    if not ranges:
        raise ScanTargetError("give at least one port, such as 443")
    ports = dict.fromkeys(port for low, high in ranges for port in range(low, high + 1))
    return list(ports)


def sni_names_parse(text: str) -> list[str]:
    """The extra server names (SNI) to ask each endpoint for, from a comma-separated list."""
    names = [item.rstrip(".").lower() for item in re.split(r"[\s,]+", str(text).strip()) if item]
    for name in names:
        if not host_name_valid(name):
            raise ScanTargetError(f"{name!r} is not a host name to send as SNI")
    if len(names) > MAX_SNI_NAMES:
        raise ScanTargetError(f"at most {MAX_SNI_NAMES} SNI names per store")
    return list(dict.fromkeys(names))


def endpoint_count(
    targets: Sequence[Target], ports: Sequence[int], sni_names: Sequence[str]
) -> int:
    """How many endpoints a store expands to (a name counts once, whatever it resolves to)."""
    addresses = sum(
        1 if target.name or target.address else len(list(target.addresses())) for target in targets
    )
    return addresses * len(ports) * max(1, len(sni_names))


def endpoint_alias(host: str, port: int, sni: str | None) -> str:
    """The alias of an endpoint's location: ``host:port``, ``[v6]:port``, and ``/sni`` when
    the server name asked for is not the host itself."""
    shown = f"[{host}]" if ":" in host else host
    alias = f"{shown}:{port}"
    if sni and sni != host:
        alias += f"/{sni}"
    return alias


@dataclass(frozen=True, slots=True)
class ScanAllowance:
    """What an agent's administrator allows it to scan: address networks, host-name
    patterns (``*.example.com``; ``*`` never crosses a dot) and ports.

    An address is allowed inside one of ``networks``. A name is allowed when it matches one
    of ``names``, or when every address it resolves to is inside ``networks``. Nothing
    listed: nothing is allowed.
    """

    networks: tuple[IPNetwork, ...] = ()
    names: tuple[str, ...] = ()
    ports: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, targets: Iterable[str], ports: str) -> ScanAllowance:
        """From the configuration's lists; raises :class:`ScanTargetError` when malformed."""
        networks: list[IPNetwork] = []
        names: list[str] = []
        for item in targets:
            item = item.strip()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            labels = item.rstrip(".").lower().split(".")
            if not all(_PATTERN_LABEL.fullmatch(label) for label in labels):
                raise ScanTargetError(
                    f"{item!r} is neither a network (10.0.0.0/8, 192.0.2.7) nor a host-name "
                    "pattern (www.example.com, *.example.com)"
                )
            names.append(".".join(labels))
        ranges = port_ranges_parse(ports)
        return cls(tuple(networks), tuple(names), tuple(ranges))

    @property
    def empty(self) -> bool:
        return not (self.networks or self.names) or not self.ports

    def describe(self) -> str:
        targets = [str(network) for network in self.networks] + list(self.names)
        ports = ",".join(str(low) if low == high else f"{low}-{high}" for low, high in self.ports)
        return f"{', '.join(targets) or 'no targets'} on ports {ports or 'none'}"

    def port_allowed(self, port: int) -> bool:
        return any(low <= port <= high for low, high in self.ports)

    def address_allowed(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)

    def name_allowed(self, name: str) -> bool:
        name = name.rstrip(".").lower()
        labels = name.split(".")
        for pattern in self.names:
            pattern_labels = pattern.split(".")
            if len(pattern_labels) == len(labels) and all(
                fnmatch.fnmatchcase(label, wanted)
                for label, wanted in zip(labels, pattern_labels, strict=True)
            ):
                return True
        return False

    def target_problem(self, target: Target) -> str | None:
        """Why ``target`` may not be scanned by this agent (None: it may, as far as can be
        told before resolving a name that no pattern allows)."""
        if self.empty:
            return (
                "this orchestrator's configuration allows no scan targets: its administrator "
                "allows some with `certyard-orchestrator scan-allow --add <network or name> "
                "--ports <ports>`"
            )
        if target.network is not None:
            network = target.network
            if not any(
                network.version == allowed.version and network.subnet_of(allowed)  # type: ignore[arg-type]
                for allowed in self.networks
            ):
                return (
                    f"{target.text} is outside what this orchestrator may scan ({self.describe()})"
                )
        elif target.address is not None and not self.address_allowed(target.address):
            return f"{target.text} is outside what this orchestrator may scan ({self.describe()})"
        return None
