"""Verified deployment end to end (issue 16): a certificate the built-in CA issues goes into
a folder a real nginx serves from, the agent reloads nginx (with the command in its OWN
local configuration) and checks over TLS that nginx serves it; renewing it replaces it in
three stores of three formats on two agents, with keys made on the device that the
platform never saw (searched for in its database and its log).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    AgentProcess,
    LivePlatform,
    agent_reload_command_set,
    orchestrator_approved,
    platform_python,
    wait_for,
)
from tests.e2e.keystores import keytool_entries, openssl_pkcs12_contents, pem_folder_contents
from tests.e2e.management import (
    DOMAIN,
    Pki,
    batch_finished,
    deployed,
    expect,
    job_finished,
    job_message,
    pfx_certificate,
    pki_made,
    store_inventory,
    store_made,
)
from tests.servers.nginx import NginxServer

pytestmark = pytest.mark.e2e

PASSWORD = "store-pass-91b0"
SNI = f"site.{DOMAIN}"


@dataclass
class Site:
    platform: LivePlatform
    pki: Pki
    a: AgentProcess
    b: AgentProcess
    a_id: str
    b_id: str
    site: Path  # agent a's PEM folder nginx serves web.pem from
    nginx: NginxServer
    b_folder: Path


@pytest.fixture(scope="module")
def site(
    live_platform: LivePlatform,
    module_agents: Callable[..., AgentProcess],
    nginx_factory: Callable[..., NginxServer],
) -> Site:
    base: Path = module_agents.base  # type: ignore[attr-defined]
    a_folder, b_folder = base / "host-a", base / "host-b"
    site_folder = a_folder / "site"
    site_folder.mkdir(parents=True)
    b_folder.mkdir()
    # What nginx served before Certyard: a self-signed certificate, key in the same file.
    before = issue(SNI, sans=(SNI,))
    (site_folder / "web.pem").write_text(before.pem + before.key_pem)
    nginx = nginx_factory(site_folder / "web.pem", site_folder / "web.pem")
    assert nginx.served_sha256() == before.sha256

    a = module_agents("vd-a", folder=a_folder)
    b = module_agents("vd-b", folder=b_folder)
    agent_reload_command_set(a, site_folder, nginx.reload_command)
    # b's PEM store "broken-reload" has a reload command that always fails.
    (b_folder / "broken-reload").mkdir()
    agent_reload_command_set(b, b_folder / "broken-reload", ["/bin/false"])
    a.start()
    b.start()
    with live_platform.api() as api:
        a_id = orchestrator_approved(api, "vd-a")["id"]
        b_id = orchestrator_approved(api, "vd-b")["id"]
    pki = pki_made(live_platform, label="Verified")
    return Site(live_platform, pki, a, b, a_id, b_id, site_folder, nginx, b_folder)


def nginx_store(api: Any, site: Site) -> dict[str, Any]:
    existing = expect(api.get("stores/", params={"page_size": 500}), 200)["results"]
    for store in existing:
        if store["store_path"] == str(site.site):
            return store
    return store_made(
        api,
        site.a_id,
        "PEM",
        str(site.site),
        endpoint_host=site.nginx.host,
        endpoint_port=site.nginx.port,
        endpoint_sni=SNI,
    )


def test_enrolled_with_a_target_store_delivered_reloaded_and_served(site: Site) -> None:
    with site.platform.api() as api:
        store = nginx_store(api, site)
        enrollment = expect(
            api.post(
                "enrollments/pfx/",
                json={
                    "template": site.pki.template,
                    "common_name": SNI,
                    "sans": [SNI],
                    "password": "pfx-download-pw",
                    "target_stores": [store["id"]],
                },
            ),
            201,
        )["enrollment"]
        assert enrollment["state"] == "issued", enrollment
        # The enrollment's delivery is a deployment of the new certificate to the store.
        listed = expect(
            api.get(
                "deployments/",
                params={"certificate": enrollment["certificate"], "store": store["id"]},
            ),
            200,
        )
        batch_id = listed["results"][0]["batch"]
        done = batch_finished(api, batch_id, agents=(site.a,))
        [delivery] = [d for d in done["deployments"] if d["store"] == store["id"]]
        assert delivery["state"] in ("written", "deployed", "warning"), delivery
        job = job_finished(api, delivery["job"])
        assert job["outcome"] in ("success", "warning"), job_message(job)
        # Into web.pem (what nginx serves) with an explicit alias and overwrite: served.
        served = batch_finished(
            api,
            deployed(
                api, enrollment["certificate"], [store["id"]], alias="web.pem", overwrite=True
            )["id"],
            agents=(site.a,),
        )
        [deployment] = served["deployments"]
        job = job_finished(api, deployment["job"])
        assert deployment["state"] == "deployed", (deployment, job_message(job))
        assert job["outcome"] == "success" and "served" in job["message"], job_message(job)
        verification = job["result"]["verification"]
        assert verification["served"] is True, verification
        assert verification["served_sha256"] == verification["expected_sha256"]
        assert job["result"]["reload"]["ran"] is True
        assert job["result"]["reload"]["exit_code"] == 0
        certificate = expect(api.get(f"certificates/{enrollment['certificate']}/"), 200)
        # nginx itself, asked by the test: it serves the new certificate.
        assert site.nginx.served_sha256(sni=SNI) == certificate["sha256"]
        assert pem_folder_contents(site.site)["web.pem"][0] == certificate["sha256"]


def test_renew_and_replace_in_three_formats_on_two_agents_with_device_keys(site: Site) -> None:
    p12 = site.site.parent / "app.p12"
    jks = site.b_folder / "app.jks"
    with site.platform.api() as api:
        pem_store = nginx_store(api, site)
        p12_store = store_made(api, site.a_id, "PKCS12", str(p12), password=PASSWORD)
        jks_store = store_made(api, site.b_id, "JKS", str(jks), password=PASSWORD)
        for store in (p12_store, jks_store):
            created = expect(api.post(f"stores/{store['id']}/create/"), 202)
            assert job_finished(api, created["job"])["state"] == "succeeded"

        web = pfx_certificate(api, site.pki, "site")
        first = [
            deployed(api, web["certificate"], [pem_store["id"]], alias="web.pem", overwrite=True),
            deployed(api, web["certificate"], [p12_store["id"], jks_store["id"]], alias="web"),
        ]
        for batch in first:
            done = batch_finished(api, batch["id"], agents=(site.a, site.b))
            assert {d["state"] for d in done["deployments"]} <= {"deployed", "written"}, done
        old_sha = expect(api.get(f"certificates/{web['certificate']}/"), 200)["sha256"]
        assert site.nginx.served_sha256(sni=SNI) == old_sha

        renewal = expect(
            api.post(
                f"certificates/{web['certificate']}/renew-and-replace/",
                json={"template": site.pki.template},
            ),
            202,
        )
        done = batch_finished(api, renewal["id"], agents=(site.a, site.b), timeout=180)
        by_store = {d["store"]: d for d in done["deployments"]}
        assert set(by_store) == {pem_store["id"], p12_store["id"], jks_store["id"]}, done
        for deployment in by_store.values():
            assert deployment["key_origin"] == "device", deployment
        assert by_store[pem_store["id"]]["state"] == "deployed", by_store
        assert by_store[p12_store["id"]]["state"] == "written", by_store
        assert by_store[jks_store["id"]]["state"] == "written", by_store
        # A key made on each device: each location has a certificate of its own.
        new = {
            store_id: expect(api.get(f"certificates/{d['certificate']}/"), 200)["sha256"]
            for store_id, d in by_store.items()
        }
        assert len(set(new.values())) == 3 and old_sha not in new.values(), new
        # The agent's probe saw the new certificate; a connection nginx's old worker still
        # accepts during its graceful reload may see the old one for a moment (as the
        # harness test below allows).
        wait_for(
            lambda: site.nginx.served_sha256(sni=SNI) == new[pem_store["id"]],
            timeout=15,
            what="nginx serving the renewed certificate",
        )

        # Each store, read by the tools, holds its new certificate where the old one was.
        assert pem_folder_contents(site.site)["web.pem"][0] == new[pem_store["id"]]
        assert new[p12_store["id"]] in openssl_pkcs12_contents(p12, password=PASSWORD)[0]
        jks_entries = keytool_entries(jks, store_type="JKS", password=PASSWORD)
        assert jks_entries["web"].sha256 == new[jks_store["id"]]
        for store in (pem_store, p12_store, jks_store):
            assert new[store["id"]] in store_inventory(api, store["id"]).values()
            assert old_sha not in store_inventory(api, store["id"]).values()

        jobs = [by_store[s]["job"] for s in by_store]
        enrollments = [d["enrollment"] for d in by_store.values() if d.get("enrollment")]

    # The key made on agent a's machine: the platform never held it.
    found = re.search(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----",
        (site.site / "web.pem").read_text(),
        re.S,
    )
    assert found, "the PEM store holds the device key beside the certificate"
    key_pem = found.group(0)
    key_body = [
        line
        for line in key_pem.splitlines()
        if line and not line.startswith("-----") and len(line) >= 40
    ]
    assert "PRIVATE KEY" in key_pem and key_body
    rows = json.loads(
        platform_python(
            site.platform,
            ROWS.format(jobs=[str(j) for j in jobs], enrollments=[str(e) for e in enrollments]),
        )
        .strip()
        .splitlines()[-1]
    )
    for table, text in rows.items():
        assert "PRIVATE KEY" not in text, table
        for line in key_body:
            assert line not in text, table
    log = site.platform.log()
    for line in key_body:
        assert line not in log


# Every text column of the renewal's jobs (and their history), deployments and
# enrollments, as the database holds them (encrypted fields as stored, and decrypted).
ROWS = """
import json
from django.db import connection
from certyard.deployment.models import Deployment
from certyard.enrollment.models import EnrollmentRequest
from certyard.jobs.models import Job, JobHistory

def text(queryset):
    out = []
    for row in queryset:
        for field in row._meta.concrete_fields:
            out.append(str(getattr(row, field.attname)))
    return "\\n".join(out)

jobs = Job.objects.filter(id__in={jobs!r})
raw = []
with connection.cursor() as cursor:
    for model in (EnrollmentRequest, Job, JobHistory, Deployment):
        table = model._meta.db_table
        cursor.execute(f"SELECT * FROM {{table}}")
        raw += ["|".join(str(v) for v in r) for r in cursor.fetchall()]
print(json.dumps({{
    "jobs": text(jobs),
    "history": text(JobHistory.objects.filter(job__in=jobs)),
    "deployments": text(Deployment.objects.filter(job__in=jobs)),
    "enrollments": text(EnrollmentRequest.objects.filter(pk__in={enrollments!r})),
    "raw": "\\n".join(raw)[:20_000_000],
}}))
"""


def test_a_failing_reload_command_and_an_endpoint_serving_something_else_are_warnings(
    site: Site,
) -> None:
    with site.platform.api() as api:
        broken = store_made(api, site.b_id, "PEM", str(site.b_folder / "broken-reload"))
        elsewhere_folder = site.b_folder / "elsewhere"
        elsewhere_folder.mkdir()
        (elsewhere_folder / "keep.pem").write_text(issue("keep.example.test").pem)
        # This store says nginx serves it, but nginx serves agent a's folder.
        elsewhere = store_made(
            api,
            site.b_id,
            "PEM",
            str(elsewhere_folder),
            endpoint_host=site.nginx.host,
            endpoint_port=site.nginx.port,
            endpoint_sni=SNI,
        )
        web = pfx_certificate(api, site.pki, "warn")
        done = batch_finished(
            api,
            deployed(api, web["certificate"], [broken["id"], elsewhere["id"]], alias="web.pem")[
                "id"
            ],
            agents=(site.b,),
        )
        by_store = {d["store"]: d for d in done["deployments"]}
        reload_job = job_finished(api, by_store[broken["id"]]["job"])
        assert by_store[broken["id"]]["state"] == "warning", by_store
        assert reload_job["outcome"] == "warning", job_message(reload_job)
        assert "reload" in reload_job["message"].lower(), job_message(reload_job)
        assert reload_job["result"]["reload"]["ran"] is True
        assert reload_job["result"]["reload"]["exit_code"] == 1

        served_job = job_finished(api, by_store[elsewhere["id"]]["job"])
        assert by_store[elsewhere["id"]]["state"] == "warning", by_store
        assert served_job["outcome"] == "warning", job_message(served_job)
        assert "still serves" in served_job["message"], job_message(served_job)
        verification = served_job["result"]["verification"]
        assert verification["served"] is False
        assert verification["served_sha256"] == site.nginx.served_sha256(sni=SNI)
        # Written all the same, and nothing already there lost.
        assert set(pem_folder_contents(elsewhere_folder)) == {"keep.pem", "web.pem"}
        assert "web.pem" in pem_folder_contents(site.b_folder / "broken-reload")


def test_the_nginx_harness_serves_the_store_file_and_reloads_it(
    nginx_factory: Callable[..., NginxServer], tmp_path: Path
) -> None:
    """The judge itself: nginx serves the file in the store folder, and its reload command
    makes it serve what was written there since."""
    first, second = issue("one.harness.test"), issue("two.harness.test")
    (tmp_path / "web.pem").write_text(first.pem + first.key_pem)
    nginx = nginx_factory(tmp_path / "web.pem", tmp_path / "web.pem")
    assert nginx.served_sha256() == first.sha256
    (tmp_path / "web.pem").write_text(second.pem + second.key_pem)
    subprocess.run(nginx.reload_command, check=True, capture_output=True, timeout=30)
    wait_for(lambda: nginx.served_sha256() == second.sha256, timeout=15, what="the reload")
