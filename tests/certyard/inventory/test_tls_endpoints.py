"""TLS endpoint discovery on the platform: what a scan store's report records (endpoints,
locations, one certificate wherever it is seen), what it refuses, and how the API and the
console show it. The agent's side, against real servers, is tests/orchestrators/test_tls_scan.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from certyard.inventory.models import (
    CertificateLocation,
    CertificateStore,
    CertificateStoreType,
    TlsEndpoint,
)
from certyard.inventory.services import store_create
from certyard.jobs.models import Job
from certyard.jobs.services import job_inventory_request
from certyard.x509.names import host_name_matches
from orchestrators.scan import endpoint_alias
from tests.certs import Issued, issue
from tests.certyard.conftest import AGENT, error_of
from tests.conftest import RegisteredAgent, entry

pytestmark = pytest.mark.django_db

SNI = "site.certyard.test"


@pytest.fixture
def scanner(agent: RegisteredAgent) -> RegisteredAgent:
    agent.orchestrator.capabilities = [*agent.orchestrator.capabilities, "TLS.Inventory"]
    agent.orchestrator.save(update_fields=["capabilities"])
    return agent


@pytest.fixture
def client(
    scanner: RegisteredAgent, agent_api: Callable[[RegisteredAgent], APIClient]
) -> APIClient:
    return agent_api(scanner)


def _scan_store(orchestrator: Any, targets: str = "127.0.0.1", ports: str = "443,8443") -> Any:
    return store_create(
        store_type=CertificateStoreType.objects.get(short_name="TLS"),
        store_path=targets,
        orchestrator=orchestrator,
        properties={"ports": ports, "sni_names": SNI},
    )


def _served(host: str, port: int, *chain: Issued, version: str = "TLSv1.2") -> dict[str, Any]:
    alias = endpoint_alias(host, port, SNI)
    return {
        **entry(alias, *chain),
        "endpoint": {
            "host": host,
            "port": port,
            "sni": SNI,
            "status": "ok",
            "reason": "",
            "tls_version": version,
            "cipher": "ECDHE-ECDSA-AES128-GCM-SHA256",
        },
    }


def _failed(host: str, port: int, status: str, reason: str) -> dict[str, Any]:
    return {
        "alias": endpoint_alias(host, port, SNI),
        "private_key": False,
        "certificates": [],
        "endpoint": {"host": host, "port": port, "sni": SNI, "status": status, "reason": reason},
    }


def _report(client: APIClient, store: Any, entries: list[dict[str, Any]]) -> Any:
    job, _ = job_inventory_request(store=store, source=Job.Source.API)
    assert client.get(f"{AGENT}jobs/next", {"wait": 0}).status_code == 200
    assert client.get(f"{AGENT}jobs/{job.pk}/config").status_code == 200
    job.refresh_from_db()
    chunk = client.post(
        f"{AGENT}jobs/{job.pk}/inventory/chunks",
        {"attempt": job.attempts, "sequence": 0, "first_index": 0, "entries": entries},
        format="json",
    )
    assert chunk.status_code == 200, chunk.content
    commit = client.post(
        f"{AGENT}jobs/{job.pk}/inventory/commit",
        {"attempt": job.attempts, "chunks": 1},
        format="json",
    )
    assert commit.status_code in (200, 422), commit.content  # 422: some entries rejected
    assert client.post(
        f"{AGENT}jobs/{job.pk}/complete",
        {"attempt": job.attempts, "status": "success", "message": "scanned"},
        format="json",
    ).status_code in (200, 201)
    return chunk.json()


def _endpoint(store: Any, port: int) -> TlsEndpoint:
    return TlsEndpoint.objects.get(store=store, port=port)


def test_a_served_endpoint_is_a_location_and_a_failed_one_only_an_endpoint(client, scanner) -> None:
    store = _scan_store(scanner.orchestrator)
    root = issue("Zoo Root", ca=True, days=3650)
    intermediate = issue("Zoo Intermediate", issuer=root, ca=True, days=1000)
    leaf = issue(SNI, issuer=intermediate, sans=(SNI,))

    _report(
        client,
        store,
        [
            _served("127.0.0.1", 443, leaf, intermediate),
            _failed("127.0.0.1", 8443, "refused", "connection refused"),
        ],
    )

    served = _endpoint(store, 443)
    assert served.status == "ok" and served.tls_version == "TLSv1.2"
    assert served.chain == [leaf.sha256, intermediate.sha256]
    assert served.certificate is not None and served.certificate.sha256 == leaf.sha256
    # The whole chain is recorded, and the leaf knows its issuer.
    assert served.certificate.issuer_certificate.sha256 == intermediate.sha256
    refused = _endpoint(store, 8443)
    assert refused.status == "refused" and refused.reason == "connection refused"
    assert refused.certificate is None and refused.chain == []
    locations = CertificateLocation.objects.filter(store=store)
    assert [(loc.alias, loc.certificate.sha256) for loc in locations] == [
        (f"127.0.0.1:443/{SNI}", leaf.sha256)
    ]


def test_one_certificate_in_a_file_and_on_a_port_has_two_locations(
    client, scanner, pem_store
) -> None:
    leaf = issue(SNI, sans=(SNI,))
    files = pem_store(scanner.orchestrator, "/etc/ssl/site")
    _report(client, files, [entry("site.pem", leaf)])
    scan = _scan_store(scanner.orchestrator)
    _report(
        client, scan, [_served("127.0.0.1", 443, leaf), _failed("127.0.0.1", 8443, "timeout", "x")]
    )

    locations = CertificateLocation.objects.filter(certificate__sha256=leaf.sha256)
    assert sorted((loc.store_id == scan.pk, loc.alias) for loc in locations) == [
        (False, "site.pem"),
        (True, f"127.0.0.1:443/{SNI}"),
    ]


def test_an_endpoint_that_stops_serving_keeps_what_it_served_and_loses_its_location(
    client, scanner
) -> None:
    store = _scan_store(scanner.orchestrator)
    leaf = issue(SNI, sans=(SNI,))
    _report(
        client, store, [_served("127.0.0.1", 443, leaf), _failed("127.0.0.1", 8443, "refused", "r")]
    )
    first = _endpoint(store, 443)

    _report(
        client,
        store,
        [_failed("127.0.0.1", 443, "timeout", "connected, but no TLS handshake within 5 s"),
         _failed("127.0.0.1", 8443, "refused", "r")],
    )  # fmt: skip

    later = _endpoint(store, 443)
    assert later.status == "timeout" and "no TLS handshake" in later.reason
    assert later.certificate_id == first.certificate_id and later.chain == [leaf.sha256]
    assert later.last_ok_at == first.last_ok_at and later.scanned_at > first.scanned_at
    assert later.first_seen == first.first_seen
    assert not CertificateLocation.objects.filter(store=store).exists()


def test_endpoints_no_longer_scanned_are_forgotten_at_commit(client, scanner) -> None:
    store = _scan_store(scanner.orchestrator)
    leaf = issue(SNI, sans=(SNI,))
    _report(
        client, store, [_served("127.0.0.1", 443, leaf), _failed("127.0.0.1", 8443, "refused", "r")]
    )
    store.properties = {**store.properties, "ports": "443"}
    store.save(update_fields=["properties"])

    _report(client, store, [_served("127.0.0.1", 443, leaf)])

    assert list(TlsEndpoint.objects.filter(store=store).values_list("port", flat=True)) == [443]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": 0}, "endpoint.port must be a port number"),
        ({"port": "443"}, "endpoint.port must be a port number"),
        ({"host": "bad host/../x"}, "endpoint.host must be a host name or an IP address"),
        ({"status": "splendid"}, "endpoint.status must be one of"),
        # The platform's verdict on what was served, never the agent's word.
        ({"status": "invalid_certificate"}, "endpoint.status must be one of"),
        ({"tls_version": "TLSv9"}, "endpoint.tls_version must be one of"),
        ({"cipher": "x" * 101}, "endpoint.cipher must be a cipher suite name"),
        ({"cipher": "a\nb"}, "endpoint.cipher must be a cipher suite name"),
        ({"sni": "not a name"}, "endpoint.sni must be empty or a host name"),
        ({"port": 8443}, "the alias of an endpoint must be '127.0.0.1:8443/site.certyard.test'"),
    ],
)
def test_a_malformed_endpoint_is_rejected_with_its_reason(
    client, scanner, change: dict[str, Any], message: str
) -> None:
    store = _scan_store(scanner.orchestrator)
    good = issue(SNI, sans=(SNI,))
    bad = _served("127.0.0.1", 443, good)
    bad["endpoint"].update(change)

    answer = _report(client, store, [bad, _served("127.0.0.1", 8443, good)])

    assert [(r["alias"], r["error"][: len(message)]) for r in answer["rejected"]] == [
        (f"127.0.0.1:443/{SNI}", message)
    ]
    # Nothing of the rejected endpoint was recorded; the good one was.
    assert list(TlsEndpoint.objects.filter(store=store).values_list("port", flat=True)) == [8443]


def test_one_endpoint_named_twice_in_two_cases_is_one_row(client, scanner) -> None:
    store = store_create(
        store_type=CertificateStoreType.objects.get(short_name="TLS"),
        store_path="www.example.com",
        orchestrator=scanner.orchestrator,
        properties={"ports": "443"},
    )
    leaf = issue("www.example.com", sans=("www.example.com",))
    upper, lower = (
        {
            **entry(f"{host}:443", leaf),
            "endpoint": {"host": host, "port": 443, "sni": host, "status": "ok"},
        }
        for host in ("WWW.example.com", "www.example.com")
    )

    _report(client, store, [upper, lower])

    assert TlsEndpoint.objects.filter(store=store).count() == 1


def test_an_endpoint_object_that_is_no_object_is_rejected(client, scanner) -> None:
    store = _scan_store(scanner.orchestrator)
    good = issue(SNI, sans=(SNI,))
    answer = _report(
        client,
        store,
        [{**entry("127.0.0.1:443", good), "endpoint": "ok"}, _served("127.0.0.1", 8443, good)],
    )
    assert answer["rejected"][0]["error"].startswith("endpoint must be an object")


def test_garbage_served_as_a_certificate_makes_the_endpoint_invalid(client, scanner) -> None:
    store = _scan_store(scanner.orchestrator)
    good = issue(SNI, sans=(SNI,))
    garbage = _served("127.0.0.1", 443, good)
    garbage["certificates"] = [
        "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    ]

    _report(client, store, [garbage, _served("127.0.0.1", 8443, good)])

    endpoint = _endpoint(store, 443)
    assert endpoint.status == "invalid_certificate" and endpoint.reason
    assert endpoint.certificate is None


@pytest.mark.parametrize(
    ("host", "sans", "common_name", "matches"),
    [
        ("www.example.com", ["DNS:www.example.com"], "", True),
        ("WWW.Example.com.", ["DNS:www.example.com"], "", True),
        ("www.example.com", ["DNS:*.example.com"], "", True),
        ("a.b.example.com", ["DNS:*.example.com"], "", False),
        ("example.com", ["DNS:*.example.com"], "", False),
        ("www.example.com", ["DNS:*.com"], "", False),
        ("www.example.com", ["DNS:other.example.com"], "www.example.com", False),
        ("www.example.com", [], "www.example.com", True),
        ("192.0.2.7", ["IP:192.0.2.7"], "", True),
        ("192.0.2.7", ["DNS:192.0.2.7"], "", False),
        ("2001:db8::1", ["IP:2001:db8:0:0:0:0:0:1"], "", True),
    ],
)
def test_host_names_match_as_tls_clients_read_them(
    host: str, sans: list[str], common_name: str, matches: bool
) -> None:
    assert host_name_matches(host, sans, common_name) is matches


def test_the_api_lists_a_stores_endpoints_with_their_verdicts(client, scanner, admin_api) -> None:
    store = _scan_store(scanner.orchestrator, ports="443,8443,9443")
    valid = issue(SNI, sans=(SNI,), days=200)
    wrong = issue("other.certyard.test", sans=("other.certyard.test",), days=-3)
    _report(
        client,
        store,
        [
            _served("127.0.0.1", 443, valid, version="TLSv1.3"),
            _served("127.0.0.1", 8443, wrong, version="TLSv1"),
            _failed("127.0.0.1", 9443, "plaintext_http", "the port answers plain HTTP, not TLS"),
        ],
    )

    answer = admin_api.get(f"/api/v1/stores/{store.pk}/endpoints/")

    assert answer.status_code == 200, answer.content
    rows = {row["port"]: row for row in answer.json()["results"]}
    assert rows[443]["name_matches"] is True and rows[443]["certificate_status"] == "valid"
    assert rows[443]["self_signed"] is True and rows[443]["tls_version"] == "TLSv1.3"
    assert rows[443]["alias"] == f"127.0.0.1:443/{SNI}"
    assert rows[8443]["name_matches"] is False and rows[8443]["certificate_status"] == "expired"
    assert rows[8443]["tls_version"] == "TLSv1"
    assert rows[9443]["status"] == "plaintext_http" and rows[9443]["certificate"] is None
    assert rows[9443]["name_matches"] is None
    only = admin_api.get(f"/api/v1/stores/{store.pk}/endpoints/", {"status": "plaintext_http"})
    assert [row["port"] for row in only.json()["results"]] == [9443]


def test_the_endpoint_list_refuses_a_bad_filter_and_people_without_the_right(
    scanner, admin_api, nobody_api
) -> None:
    store = _scan_store(scanner.orchestrator)
    bad = admin_api.get(f"/api/v1/stores/{store.pk}/endpoints/", {"status": "weird"})
    assert bad.status_code == 400 and "status" in str(error_of(bad))
    assert nobody_api.get(f"/api/v1/stores/{store.pk}/endpoints/").status_code == 403


@pytest.mark.parametrize(
    ("targets", "ports", "message"),
    [
        (" , ", "443", "give at least one target"),
        ("10.0.0.0/8", "443", "holds 16777216 addresses"),
        ("www.example.com/../x", "443", "is not an address range"),
        ("not_a host!", "443", "is not a host name, an address or an address range"),
        ("10.0.0.1", "0", "ports run from 1 to 65535"),
        ("10.0.0.1", "https", "is not a port or a port range"),
        ("10.0.0.0/20", "1-20", "a store scans at most 65536"),
    ],
)
def test_a_scan_store_with_bad_targets_or_ports_is_refused_with_the_reason(
    scanner, admin_api, targets: str, ports: str, message: str
) -> None:
    answer = admin_api.post(
        "/api/v1/stores/",
        {
            "store_type": "TLS",
            "orchestrator": str(scanner.orchestrator.pk),
            "store_path": targets,
            "properties": {"ports": ports},
        },
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert message in str(error_of(answer))
    assert not CertificateStore.objects.filter(store_type__short_name="TLS").exists()


def test_a_scan_store_is_made_through_the_api_without_a_path_rule(scanner, admin_api) -> None:
    # Not a path: no store root applies (the agent checks what it may scan instead).
    scanner.orchestrator.store_roots = ["/srv/certs"]
    scanner.orchestrator.save(update_fields=["store_roots"])
    answer = admin_api.post(
        "/api/v1/stores/",
        {
            "store_type": "TLS",
            "orchestrator": str(scanner.orchestrator.pk),
            "store_path": "www.example.com, 192.0.2.0/29",
            "properties": {"ports": "443, 8443-8444"},
        },
        format="json",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["properties"]["ports"] == "443, 8443-8444"


def test_the_store_page_shows_each_endpoint(client, scanner, superuser) -> None:
    store = _scan_store(scanner.orchestrator, ports="443,8443")
    wrong = issue("other.certyard.test", sans=("other.certyard.test",))
    _report(
        client,
        store,
        [
            _served("127.0.0.1", 443, wrong),
            _failed("127.0.0.1", 8443, "refused", "connection refused"),
        ],
    )
    django_client = Client()
    django_client.force_login(superuser)

    page = django_client.get(f"/stores/{store.pk}/").content.decode()

    assert 'data-testid="endpoint-table"' in page
    assert 'data-status="ok"' in page and 'data-status="refused"' in page
    assert "mismatch" in page and "connection refused" in page


def test_an_unscanned_store_page_says_what_to_do(scanner, superuser) -> None:
    store = _scan_store(scanner.orchestrator)
    django_client = Client()
    django_client.force_login(superuser)
    page = django_client.get(f"/stores/{store.pk}/").content.decode()
    assert 'data-testid="no-endpoints"' in page and "scan-allow" in page


def _zoo_report(client: APIClient, scanner: RegisteredAgent) -> Any:
    store = _scan_store(scanner.orchestrator, ports="443,8443,9443,10443,11443")
    root = issue("Endpoint List Root", ca=True, days=3650)
    _report(
        client,
        store,
        [
            _served(
                "127.0.0.1", 443, issue(SNI, issuer=root, sans=(SNI,), days=200), version="TLSv1.3"
            ),
            _served("127.0.0.1", 8443, issue(SNI, sans=(SNI,), days=-2)),
            _served("127.0.0.1", 9443, issue(SNI, sans=(SNI,), days=10), version="TLSv1.1"),
            _served("127.0.0.1", 10443, issue(SNI, sans=(SNI,), days=300)),  # self-signed
            _failed("127.0.0.1", 11443, "refused", "connection refused"),
        ],
    )
    return store


def _ports(page: str) -> list[int]:
    rows = re.findall(r'data-testid="endpoint-row"[^>]*data-port="(\d+)"', page)
    return sorted(int(port) for port in rows)


def test_the_endpoint_list_filters_by_the_problems_people_look_for(
    client, scanner, superuser
) -> None:
    _zoo_report(client, scanner)
    web = Client()
    web.force_login(superuser)

    def listed(**query: str) -> list[int]:
        answer = web.get("/endpoints/", query)
        assert answer.status_code == 200
        return _ports(answer.content.decode())

    assert listed() == [443, 8443, 9443, 10443, 11443]
    assert listed(problem="not_serving") == [11443]
    assert listed(problem="expired") == [8443]
    assert listed(problem="expiring") == [9443]
    assert listed(problem="old_tls") == [9443]
    # issue() signs a leaf with its own key unless given an issuer: all but 443's.
    assert listed(problem="self_signed") == [8443, 9443, 10443]
    assert listed(status="refused") == [11443]
    assert listed(host="127.0.0") == [443, 8443, 9443, 10443, 11443]
    assert listed(host="nowhere.test") == []
    page = web.get("/endpoints/").content.decode()
    assert "4 endpoints serving TLS, 1 not" in page


def test_the_endpoint_list_refuses_bad_filters_and_people_without_the_right(
    client, scanner, superuser, django_user_model
) -> None:
    web = Client()
    web.force_login(superuser)
    empty = web.get("/endpoints/").content.decode()
    assert 'data-testid="no-endpoints"' in empty and "scan-allow" in empty
    bad = web.get("/endpoints/", {"problem": "haunted", "page": "0"})
    assert bad.status_code == 200 and 'data-testid="filter-errors"' in bad.content.decode()

    nobody = django_user_model.objects.create_user("nobody-endpoints", password="x-1-y-2-z-3")
    web.force_login(nobody)
    assert web.get("/endpoints/").status_code == 403
