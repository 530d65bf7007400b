"""TLS endpoint discovery end to end: a real agent process, allowed by its own configuration
to scan loopback, scans a real nginx serving six kinds of TLS plus a plain HTTP port, a
silent port and a closed port; the live platform records each endpoint as what it is, and a
certificate served on a port and kept in a file is one certificate with two locations. An
agent whose administrator allowed nothing refuses the scan before connecting anywhere.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import (
    AGENT,
    ROOT,
    AgentProcess,
    LivePlatform,
    file_store_created,
    inventory_finished,
    orchestrator_approved,
)
from tests.servers.nginx import nginx_executable
from tests.servers.tls_zoo import SNI, tls_zoo

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(live_platform: LivePlatform) -> Iterator[httpx.Client]:
    with live_platform.api() as client:
        yield client


def _scan_allow(agent: AgentProcess, *args: str) -> str:
    completed = subprocess.run(
        [*AGENT, "scan-allow", "--config-dir", str(agent.config_dir), *args],
        cwd=ROOT,
        env=agent.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def _scan_store(api: httpx.Client, orchestrator: dict, ports: str) -> dict:
    created = api.post(
        "stores/",
        json={
            "store_type": "TLS",
            "store_path": "127.0.0.1",
            "orchestrator": orchestrator["id"],
            "properties": {
                "ports": ports,
                "sni_names": SNI,
                "connect_timeout": 2,
                "handshake_timeout": 2,
            },
        },
    )
    assert created.status_code == 201, created.text
    return created.json()


def test_an_agent_scans_loopback_and_the_platform_records_each_endpoint(
    api: httpx.Client,
    agent_factory: Callable[..., AgentProcess],
    tmp_path: Path,
) -> None:
    if nginx_executable() is None:
        pytest.fail("nginx is not installed: run `make system-deps`")
    with tls_zoo(tmp_path / "zoo") as zoo:
        agent = agent_factory("tls-scanner")
        shown = _scan_allow(agent, "--add", "127.0.0.0/8", "--ports", "1024-65535")
        assert "127.0.0.0/8" in shown and "1024-65535" in shown
        agent.start()
        orchestrator = orchestrator_approved(api, "tls-scanner")
        # The same leaf nginx serves on the "valid" port, kept in a file too.
        site = tmp_path / "site"
        site.mkdir()
        (site / "valid.pem").write_text(zoo.served["valid"][0].pem)
        files = file_store_created(api, orchestrator, site)
        scan = _scan_store(api, orchestrator, ",".join(str(p) for p in zoo.ports.values()))

        job = inventory_finished(api, scan["id"], agent)
        assert job["state"] == "succeeded", job
        assert inventory_finished(api, files["id"], agent)["state"] == "succeeded"

        answer = api.get(f"stores/{scan['id']}/endpoints/", params={"page_size": 50})
        assert answer.status_code == 200, answer.text
        rows = {zoo.kind_of_port(row["port"]): row for row in answer.json()["results"]}

    assert set(rows) == set(zoo.ports)
    for kind, served in zoo.served.items():
        row = rows[kind]
        assert row["status"] == "ok", (kind, row)
        assert row["chain"] == [c.sha256 for c in served], kind
        assert row["certificate_sha256"] == served[0].sha256
    assert rows["valid"]["name_matches"] is True
    assert rows["valid"]["certificate_status"] == "valid"
    assert rows["valid"]["self_signed"] is False
    assert rows["expired"]["certificate_status"] == "expired"
    assert rows["self_signed"]["self_signed"] is True
    assert rows["wrong_name"]["name_matches"] is False
    assert len(rows["chain"]["chain"]) == 2
    assert rows["tls10"]["tls_version"] == "TLSv1"
    assert rows["http"]["status"] == "plaintext_http"
    assert rows["silent"]["status"] == "timeout"
    assert rows["closed"]["status"] == "refused"
    for kind in ("http", "silent", "closed"):
        assert rows[kind]["certificate"] is None and rows[kind]["reason"], kind

    # One certificate, two locations: the file and the port.
    certificate = api.get(f"certificates/{rows['valid']['certificate']}/").json()
    places = sorted((loc["store_type"], loc["alias"]) for loc in certificate["locations"])
    assert places == [("PEM", "valid.pem"), ("TLS", f"127.0.0.1:{zoo.ports['valid']}/{SNI}")]
    # Six endpoints served a leaf: six locations of the scan store.
    assert api.get(f"stores/{scan['id']}/").json()["location_count"] == 6


def test_an_agent_that_allows_nothing_refuses_the_scan(
    api: httpx.Client, agent_factory: Callable[..., AgentProcess]
) -> None:
    agent = agent_factory("tls-unallowed")
    agent.start()
    orchestrator = orchestrator_approved(api, "tls-unallowed")
    scan = _scan_store(api, orchestrator, "443")

    job = inventory_finished(api, scan["id"], agent)

    assert job["state"] == "failed"
    assert "allows no scan targets" in job["message"] and "scan-allow" in job["message"]
    assert job["attempts"] == 1  # final: another attempt would meet the same refusal
    assert api.get(f"stores/{scan['id']}/endpoints/").json()["results"] == []
