"""Where `make run` listens, what it advertises and which Host headers it answers
(certyard.run.addresses, issue 17): a wildcard is never advertised, loopback stays
allowed for the supervisor's own health check, and the public URL's host is allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from certyard.run.addresses import (
    allowed_hosts,
    bind_address,
    default_public_url,
    host_is_loopback,
    host_is_wildcard,
    local_url,
    public_url_host,
    public_url_missing_message,
    public_url_problem,
)

ROOT = Path(__file__).resolve().parents[3]
EVERYWHERE = "0.0.0.0"  # noqa: S104 (what is checked, never bound here)


@pytest.mark.parametrize("host", [EVERYWHERE, "::", "[::]", "0000::0"])
def test_wildcards_are_recognised(host: str) -> None:
    assert host_is_wildcard(host)
    assert not host_is_loopback(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_addresses_and_names(host: str) -> None:
    assert host_is_loopback(host)
    assert not host_is_wildcard(host)


@pytest.mark.parametrize("host", ["192.0.2.10", "certyard.example.com", "2001:db8::1"])
def test_other_addresses_reach_beyond_this_machine(host: str) -> None:
    assert not host_is_loopback(host) and not host_is_wildcard(host)


def test_the_local_url_of_a_wildcard_is_loopback_of_its_family() -> None:
    assert local_url(EVERYWHERE, 8123) == "http://127.0.0.1:8123"
    assert local_url("::", 8123) == "http://[::1]:8123"
    assert local_url("127.0.0.1", 8123) == "http://127.0.0.1:8123"
    assert local_url("192.0.2.10", 8123) == "http://192.0.2.10:8123"
    assert default_public_url(EVERYWHERE, "8000") == "http://127.0.0.1:8000"


def test_bind_addresses_put_ipv6_in_brackets() -> None:
    assert bind_address(EVERYWHERE, 80) == f"{EVERYWHERE}:80"
    assert bind_address("::", 80) == "[::]:80"
    assert bind_address("[::1]", 80) == "[::1]:80"


def test_a_wildcard_bind_keeps_loopback_and_adds_the_public_host() -> None:
    hosts = allowed_hosts(
        configured="certyard.example.com",
        bind_host=EVERYWHERE,
        public_url="http://Certyard.Example.com:8000",
    )
    assert hosts == ["certyard.example.com", "localhost", "127.0.0.1", "[::1]"]
    assert EVERYWHERE not in hosts


def test_a_specific_bind_and_an_ipv6_public_url_are_allowed() -> None:
    hosts = allowed_hosts(
        configured=None, bind_host="192.0.2.10", public_url="https://[2001:db8::5]/"
    )
    assert hosts == ["localhost", "127.0.0.1", "[::1]", "192.0.2.10", "[2001:db8::5]"]
    assert public_url_host("http://192.0.2.10:8000") == "192.0.2.10"
    assert public_url_host("not a url") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://0.0.0.0:8000", "names no machine"),
        ("http://[::]:8000", "names no machine"),
        ("certyard.example.com:8000", "http:// or https://"),
        ("ftp://certyard.example.com", "http:// or https://"),
        ("http://certyard.example.com:99999", "not a URL"),
        ("http://admin:pw@certyard.example.com", "plain base URL"),
        ("https://certyard.example.com/?x=1", "plain base URL"),
    ],
)
def test_public_urls_that_cannot_be_advertised_are_refused(value: str, expected: str) -> None:
    problem = public_url_problem(value)
    assert problem is not None and expected in problem
    assert "CERTYARD_PUBLIC_URL" in problem


@pytest.mark.parametrize(
    "value", ["http://certyard.example.com:8000", "https://certyard.example.com/", "http://[::1]"]
)
def test_public_urls_that_can_be_advertised(value: str) -> None:
    assert public_url_problem(value) is None


def test_the_missing_public_url_message_says_what_to_set() -> None:
    message = public_url_missing_message(EVERYWHERE, 8123)
    assert "CERTYARD_PUBLIC_URL=http://certyard.example.com:8123" in message
    assert f"listening on {EVERYWHERE}" in message


def _settings_of(**env: str) -> list[str]:
    """ALLOWED_HOSTS and CERTYARD_PUBLIC_URL as a fresh process computes them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CERTYARD_")}
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "shell",
            "-c",
            "from django.conf import settings as s; "
            "print(','.join(s.ALLOWED_HOSTS)); print(s.CERTYARD_PUBLIC_URL)",
        ],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip().splitlines()[-2:]


def test_settings_listening_everywhere_allow_loopback_and_the_public_host(
    tmp_path: Path,
) -> None:
    hosts, public_url = _settings_of(
        CERTYARD_DATA_DIR=str(tmp_path),
        CERTYARD_HOST=EVERYWHERE,
        CERTYARD_PORT="8123",
        CERTYARD_PUBLIC_URL="http://certyard.example.com:8123",
    )
    assert hosts.split(",") == ["localhost", "127.0.0.1", "[::1]", "certyard.example.com"]
    assert public_url == "http://certyard.example.com:8123"

    # Without a public URL (commands other than `make run`), never 0.0.0.0.
    hosts, public_url = _settings_of(
        CERTYARD_DATA_DIR=str(tmp_path), CERTYARD_HOST=EVERYWHERE, CERTYARD_PORT="8123"
    )
    assert public_url == "http://127.0.0.1:8123"
    assert EVERYWHERE not in hosts.split(",")
