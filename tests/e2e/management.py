"""Store management (issue 16) over HTTP, for the end-to-end tests: a built-in CA with a
key-archiving template, certificates whose key the platform holds, deployments, removals,
renew-and-replace and their jobs, and a store's inventory as the API reports it.

Everything goes through the public REST API (`/api/v1/`), except the template, which has
no API yet and is made in the platform's own environment as an operator would."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from tests.e2e.conftest import AgentProcess, LivePlatform, platform_python, wait_for

DOMAIN = "mgmt.e2e.test"
FINISHED_JOB_STATES = ("succeeded", "failed", "cancelled")
# Deployment states that will not change any more (design16: pending, running and
# awaiting_approval move on; these are the ends).
FINISHED_DEPLOYMENT_STATES = ("deployed", "written", "warning", "failed", "cancelled")

TEMPLATE_SETUP = """
import json
from certyard.enrollment.models import Template
from certyard.enrollment.services import template_errors
template, _ = Template.objects.get_or_create(
    name={name!r},
    defaults=dict(ca_id={ca_id}, allowed_domains=[{domain!r}], validity_days=30,
                  archive_keys=True, require_approval={approval!r}),
)
assert not template_errors(template), template_errors(template)
print(json.dumps({{"template": template.name}}))
"""


@dataclass
class Pki:
    """A built-in CA chain and a template on it that keeps the keys it makes."""

    root: dict[str, Any]
    issuing: dict[str, Any]
    template: str


def expect(answer: httpx.Response, *codes: int) -> Any:
    """The JSON of an answer with one of ``codes`` (assert, with the body, if not)."""
    assert answer.status_code in codes, f"{answer.request.method} {answer.request.url}: " + (
        f"{answer.status_code} {answer.text[:2000]}"
    )
    return answer.json() if answer.content else None


def pki_made(platform: LivePlatform, *, label: str, approval: bool = False) -> Pki:
    """A root and an issuing CA of the platform's own, and a key-archiving template."""
    with platform.api() as api:
        root = expect(api.post("cas/", json={"name": f"{label} Root", "path_length": 1}), 201)
        issuing = expect(
            api.post(
                "cas/",
                json={"name": f"{label} Issuing", "key_algorithm": "EC-P256", "parent": root["id"]},
            ),
            201,
        )
    name = f"{label.lower().replace(' ', '-')}-web"
    out = platform_python(
        platform,
        TEMPLATE_SETUP.format(name=name, ca_id=issuing["id"], domain=DOMAIN, approval=approval),
    )
    return Pki(root, issuing, json.loads(out.strip().splitlines()[-1])["template"])


def pfx_certificate(api: httpx.Client, pki: Pki, host: str) -> dict[str, Any]:
    """A certificate the built-in CA issued with a key the platform made and archived:
    the enrollment (with ``certificate`` id and ``certificate_pem``)."""
    made = expect(
        api.post(
            "enrollments/pfx/",
            json={
                "template": pki.template,
                "common_name": f"{host}.{DOMAIN}",
                "sans": [f"{host}.{DOMAIN}"],
                "password": "pfx-download-pw",
            },
        ),
        201,
    )
    enrollment = made["enrollment"]
    assert enrollment["state"] == "issued", enrollment
    assert enrollment["key_archived"], enrollment
    return enrollment


def job_finished(api: httpx.Client, job_id: str, *, agent: AgentProcess | None = None) -> dict:
    def finished() -> dict | None:
        job = expect(api.get(f"jobs/{job_id}/"), 200)
        return job if job["state"] in FINISHED_JOB_STATES else None

    return wait_for(
        finished,
        timeout=90,
        what=f"job {job_id} to end\n{agent.log()[-3000:] if agent else ''}",
        every=0.3,
    )


def batch_finished(
    api: httpx.Client, batch_id: str, *, agents: tuple[AgentProcess, ...] = (), timeout: float = 120
) -> dict:
    """Wait until every deployment of the batch has ended; the batch with its deployments."""

    def finished() -> dict | None:
        batch = expect(api.get(f"deployment-batches/{batch_id}/"), 200)
        states = [d["state"] for d in batch["deployments"]]
        return batch if states and all(s in FINISHED_DEPLOYMENT_STATES for s in states) else None

    return wait_for(
        finished,
        timeout=timeout,
        what=f"batch {batch_id}\n" + "\n".join(a.log()[-2000:] for a in agents),
        every=0.3,
    )


def deployed(
    api: httpx.Client, certificate_id: int, stores: list[str], **options: Any
) -> dict[str, Any]:
    """``POST certificates/<id>/deployments``: the batch (202)."""
    return expect(
        api.post(f"certificates/{certificate_id}/deployments/", json={"stores": stores, **options}),
        202,
    )


def removed(api: httpx.Client, certificate_id: int, stores: list[str]) -> dict[str, Any]:
    return expect(
        api.post(f"certificates/{certificate_id}/removals/", json={"stores": stores}), 202
    )


def store_made(
    api: httpx.Client, orchestrator_id: str, store_type: str, path: str, **extra: Any
) -> dict[str, Any]:
    return expect(
        api.post(
            "stores/",
            json={
                "store_type": store_type,
                "store_path": path,
                "orchestrator": orchestrator_id,
                **extra,
            },
        ),
        201,
    )


def store_inventory(api: httpx.Client, store_id: str) -> dict[str, str]:
    """The store's entries as the platform's inventory holds them: {alias: leaf SHA-256}."""
    entries: dict[str, str] = {}
    for certificate in expect(
        api.get("certificates/", params={"store": store_id, "page_size": 500}), 200
    )["results"]:
        detail = expect(api.get(f"certificates/{certificate['id']}/"), 200)
        for location in detail["locations"]:
            if location["store_id"] == store_id:
                entries[location["alias"]] = certificate["sha256"]
    return entries


def inventory_now(api: httpx.Client, store_id: str, agent: AgentProcess) -> dict:
    # 200: an inventory of the store was already queued (approving a discovered store
    # schedules one); the same job is answered.
    job = expect(api.post(f"stores/{store_id}/inventory-now/"), 200, 201)
    return job_finished(api, job["id"], agent=agent)


def job_message(job: dict) -> str:
    """Everything a person reads about how a job ended: its message, its history's."""
    parts = [str(job.get("message") or ""), json.dumps(job.get("result") or {})]
    parts += [str(h.get("message") or "") for h in job.get("history", [])]
    return "\n".join(parts)
