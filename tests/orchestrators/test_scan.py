"""What a scan store's targets and ports say, and what an agent's allowance lets through."""

from __future__ import annotations

import ipaddress

import pytest

from orchestrators.scan import (
    ScanAllowance,
    ScanTargetError,
    endpoint_alias,
    endpoint_count,
    ports_parse,
    sni_names_parse,
    targets_parse,
)


def test_targets_are_names_addresses_and_ranges_in_any_separator() -> None:
    targets = targets_parse("www.Example.com, 192.0.2.7\n10.0.5.0/30  [2001:db8::1]")

    assert [t.name for t in targets] == ["www.example.com", None, None, None]
    assert targets[1].address == ipaddress.ip_address("192.0.2.7")
    assert [str(a) for a in targets[2].addresses()] == ["10.0.5.1", "10.0.5.2"]
    assert targets[3].address == ipaddress.ip_address("2001:db8::1")
    # A /32 or /31 is its addresses, not "no host".
    assert [str(a) for a in targets_parse("192.0.2.9/32")[0].addresses()] == ["192.0.2.9"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "give at least one target"),
        ("10.0.0.0/19", "holds 8192 addresses"),
        ("10.0.0.300/24", "is not an address range"),
        ("bad_host!", "is not a host name"),
        ("-lead.example.com", "is not a host name"),
        ("x" * 1025, "longer than 1024 characters"),
    ],
)
def test_bad_targets_are_refused_in_words(text: str, message: str) -> None:
    with pytest.raises(ScanTargetError, match=message):
        targets_parse(text)


def test_ports_and_ranges_keep_their_order_once_each() -> None:
    assert ports_parse("443, 8443 8000-8002,443") == [443, 8443, 8000, 8001, 8002]
    for bad, message in (("", "at least one port"), ("0", "1 to 65535"), ("9-3", "low to high")):
        with pytest.raises(ScanTargetError, match=message):
            ports_parse(bad)


def test_server_names_are_host_names() -> None:
    assert sni_names_parse("A.example.com, b.example.com.") == ["a.example.com", "b.example.com"]
    with pytest.raises(ScanTargetError, match="not a host name"):
        sni_names_parse("a b/c")


def test_an_endpoint_count_multiplies_addresses_ports_and_names() -> None:
    targets = targets_parse("www.example.com 10.0.0.0/29")
    assert endpoint_count(targets, [443, 8443], ["a.test", "b.test"]) == (1 + 6) * 2 * 2


def test_aliases_bracket_v6_and_name_the_sni_only_when_it_differs() -> None:
    assert endpoint_alias("192.0.2.7", 443, None) == "192.0.2.7:443"
    assert endpoint_alias("2001:db8::1", 443, None) == "[2001:db8::1]:443"
    assert endpoint_alias("www.example.com", 443, "www.example.com") == "www.example.com:443"
    assert endpoint_alias("192.0.2.7", 8443, "a.test") == "192.0.2.7:8443/a.test"


def test_nothing_is_allowed_until_the_administrator_allows_it() -> None:
    nothing = ScanAllowance.parse([], "")
    assert nothing.empty
    problem = nothing.target_problem(targets_parse("127.0.0.1")[0])
    assert problem is not None and "scan-allow" in problem


def test_an_allowance_holds_networks_patterns_and_ports() -> None:
    allowance = ScanAllowance.parse(
        ["10.0.0.0/15", "*.example.com", "2001:db8::/64"], "443,8000-8100"
    )

    inside = targets_parse("10.0.4.0/24")[0]
    across = targets_parse("10.2.0.0/24")[0]
    assert allowance.target_problem(inside) is None
    problem = allowance.target_problem(across)
    assert problem is not None and "10.2.0.0/24 is outside" in problem
    assert allowance.address_allowed(ipaddress.ip_address("2001:db8::5"))
    assert allowance.address_allowed(ipaddress.ip_address("10.1.0.1"))
    assert not allowance.address_allowed(ipaddress.ip_address("10.2.0.1"))
    # '*' is one label: never a dot, never the bare domain.
    assert allowance.name_allowed("www.example.com")
    assert not allowance.name_allowed("a.b.example.com")
    assert not allowance.name_allowed("example.com")
    assert allowance.port_allowed(8050) and not allowance.port_allowed(22)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "bad pattern!", "*.exa mple.com"])
def test_a_malformed_allowance_is_refused(bad: str) -> None:
    with pytest.raises(ScanTargetError):
        ScanAllowance.parse([bad], "443")
