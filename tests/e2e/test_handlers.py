"""Handlers invoked by their real triggers, run by a real django-q2 cluster.

A real agent registers (registration handlers), a real inventory job completes (job
complete and event handlers), the worker ingests new certificates (metadata
generators), and the worker's own expiration scan finds a certificate crossing a
threshold. Handlers that raise, hang, exit non-zero or answer garbage are recorded as
failed while the flow that triggered them completes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    LivePlatform,
    certificates_listed,
    console_client,
    file_store_created,
    inventory_finished,
    orchestrator_approved,
    orchestrator_named,
    platform_python,
    start_platform,
    stop_platform,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """A platform of its own: the registrations here would change other tests' agents."""
    base = tmp_path_factory.mktemp("handlers")
    scripts = base / "scripts"
    scripts.mkdir()
    (scripts / "ticket.sh").write_text(
        '#!/bin/sh\necho "opening a ticket for $CERTYARD_EVENT_KIND"\n'
        "echo 'no route to the ticket system' >&2\nexit 3\n"
    )
    live = start_platform(base, env_overrides={"CERTYARD_SCRIPTS_DIR": str(scripts)})
    yield live
    stop_platform(live)


def handler_registered(
    platform: LivePlatform, handler: str, name: str, values: dict[str, Any], **fields: Any
) -> None:
    """Register a handler class as an administrator would, through the platform's service."""
    platform_python(
        platform,
        "import json\n"
        "from certyard.workflows.models import HandlerRegistration\n"
        "from certyard.workflows.services import registration_save\n"
        f"registration = HandlerRegistration(name={name!r}, handler={handler!r}, "
        f"**json.loads({json.dumps(fields)!r}))\n"
        f"values = json.loads({json.dumps(values)!r})\n"
        "registration_save(registration=registration, values=values)\n",
    )


def runs(platform: LivePlatform, **filters: str) -> dict[str, dict[str, Any]]:
    """The handler runs recorded, by registration name (the latest attempt of each)."""
    out = platform_python(
        platform,
        "import json\n"
        "from certyard.workflows.models import HandlerRun\n"
        f"rows = HandlerRun.objects.filter(**json.loads({json.dumps(filters)!r})).order_by('pk')\n"
        "print(json.dumps({r.registration_name: {'state': r.state, 'error': r.error, "
        "'message': r.message, 'output': r.output, 'subject_id': r.subject_id} for r in rows}))\n",
    )
    return json.loads(out.strip().splitlines()[-1])


def finished_runs(platform: LivePlatform, names: set[str], **filters: str) -> dict[str, Any]:
    def all_finished() -> dict[str, Any] | None:
        found = runs(platform, **filters)
        done = {n: r for n, r in found.items() if r["state"] in ("succeeded", "failed")}
        return found if names <= set(done) else None

    return wait_for(all_finished, timeout=120, every=2, what=f"the runs of {sorted(names)}")


def test_a_rule_approves_a_real_agent_which_gets_the_blueprints_stores_and_inventories(
    platform: LivePlatform, agent_factory: Any, tmp_path: Path
) -> None:
    api = platform.api()
    # A reference orchestrator whose store is saved as the blueprint "web servers".
    source_folder = tmp_path / "stores" / "source-1"
    source_folder.mkdir(parents=True)
    (source_folder / "site.pem").write_text(issue("source.e2e.test").pem)
    agent_factory("source-1", platform=platform)
    source = orchestrator_approved(api, "source-1")
    file_store_created(api, source, source_folder)
    saved = api.post("blueprints/", json={"orchestrator": source["id"], "name": "web servers"})
    assert saved.status_code == 201, saved.text

    handler_registered(platform, "test.garbage_registration", "garbage first", {}, order=1)
    handler_registered(
        platform,
        "certyard.registration_rules",
        "web rule",
        # role=web is the agent's claim; the loopback source is what the platform verifies.
        {
            "client_parameters": ["role=web"],
            "source_networks": ["127.0.0.0/8", "::1/128"],
            "blueprint": "web servers",
        },
        order=2,
    )
    # The new agent's folder, where the blueprint's path leads once rewritten.
    web_folder = tmp_path / "stores" / "web-7"
    web_folder.mkdir(parents=True)
    (web_folder / "shop.pem").write_text(issue("shop.e2e.test").pem)

    agent = agent_factory("web-7", platform=platform, params={"role": "web"})
    web = orchestrator_named(api, "web-7")
    assert web["status"] == "approved", agent.registration_output
    recorded = runs(platform, subject_id=web["id"])
    assert recorded["garbage first"]["state"] == "failed"
    assert "not a RegistrationDecision" in recorded["garbage first"]["error"]
    assert recorded["web rule"]["state"] == "succeeded"
    assert recorded["web rule"]["output"]["blueprint"] == "web servers"

    def web_stores() -> list[dict[str, Any]]:
        listed = api.get("stores/", params={"page_size": 500}).json()["results"]
        return [s for s in listed if s["orchestrator"] == web["id"]]

    stores = wait_for(
        web_stores,
        timeout=30,
        what="the blueprint's stores on the new orchestrator",
    )
    assert [s["store_path"] for s in stores] == [str(web_folder)]
    agent.start()
    found = wait_for(
        lambda: certificates_listed(api, search="shop.e2e.test"),
        timeout=90,
        what=f"the blueprint store's inventory\n{agent.log()[-2000:]}",
    )
    assert found[0]["common_name"] == "shop.e2e.test"

    # An agent the rule does not match is left to an administrator.
    agent_factory("db-1", platform=platform, params={"role": "db"})
    assert orchestrator_named(api, "db-1")["status"] == "new"

    with closing(console_client(platform)) as console:
        page = console.get(f"/orchestrators/{web['id']}/").text
    assert "web rule" in page and "garbage first" in page


def test_real_triggers_run_their_handlers_and_failures_never_break_the_flow(
    platform: LivePlatform, agent_factory: Any, tmp_path: Path
) -> None:
    api = platform.api()
    added_log, jobs_log, expiring_log = (tmp_path / n for n in ("added", "jobs", "expiring"))
    handler_registered(
        platform,
        "test.record",
        "added recorder",
        {"path": str(added_log)},
        events=["certificates.added"],
    )
    handler_registered(
        platform, "test.follow_up", "follow-up", {"path": str(jobs_log)}, job_types=["inventory"]
    )
    failing = {"events": ["job.completed"], "max_attempts": 1}
    handler_registered(platform, "test.raises", "raises", {}, **failing)
    handler_registered(platform, "test.hangs", "hangs", {}, timeout_seconds=2, **failing)
    handler_registered(
        platform,
        "certyard.script",
        "ticket script",
        {"interpreter": "shell", "script": "ticket.sh"},
        **failing,
    )
    handler_registered(
        platform,
        "test.record",
        "expiry recorder",
        {"path": str(expiring_log)},
        events=["certificate.expiring"],
    )
    # "strength" made a choice field first: registering the generator keeps it and makes
    # the fields it declares that are missing (key_strength among them).
    answer = api.post(
        "metadata-fields/",
        json={
            "name": "strength",
            "label": "strength",
            "type": "choice",
            "choices": ["weak", "acceptable", "strong"],
        },
    )
    assert answer.status_code == 201, answer.text
    handler_registered(platform, "certyard.crypto_strength", "strength", {})
    fields = {f["name"]: f["type"] for f in api.get("metadata-fields/").json()["results"]}
    assert fields["strength"] == "choice" and fields["key_strength"] == "string", fields

    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "soon.pem").write_text(issue("soon.e2e.test", days=5).pem)
    agent = agent_factory("app-1", platform=platform)
    orchestrator = orchestrator_approved(api, "app-1")
    store = file_store_created(api, orchestrator, folder)
    agent.start()

    job = inventory_finished(api, store["id"], agent)
    assert job["state"] == "succeeded", job  # whatever the handlers do

    recorded = finished_runs(
        platform,
        {"added recorder", "follow-up", "raises", "hangs", "ticket script"},
        kind__in=["event", "job_complete"],
    )
    assert recorded["added recorder"]["state"] == "succeeded"
    assert recorded["follow-up"]["state"] == "succeeded"
    assert recorded["raises"]["error"] == "RuntimeError: boom on job.completed"
    assert recorded["hangs"]["error"] == "timed out after 2 s"
    script = recorded["ticket script"]
    assert script["state"] == "failed" and "3" in script["error"]
    assert "no route to the ticket system" in script["error"] + json.dumps(script["output"])
    [added] = [json.loads(line) for line in added_log.read_text().splitlines()]
    assert added["data"]["store_id"] == store["id"] and added["data"]["added"] == 1
    [finished] = [json.loads(line) for line in jobs_log.read_text().splitlines()]
    assert finished == {
        "job_id": job["id"],
        "type": "inventory",
        "outcome": "success",
        "attempt": 1,
    }

    # The worker generated metadata for the new certificate, once.
    [certificate] = certificates_listed(api, search="soon.e2e.test")

    def metadata() -> dict[str, Any] | None:
        values = api.get(f"certificates/{certificate['id']}/").json().get("metadata") or {}
        return values if "strength" in values else None

    values = wait_for(metadata, timeout=90, every=2, what="the metadata generator's values")
    assert values["key_strength"]["value"] == "EC-256"
    assert values["key_strength"]["source"] == "strength"

    # The daily expiration scan, started by the worker's own scheduler.
    platform_python(
        platform,
        "from django.utils import timezone\n"
        "from django_q.models import Schedule\n"
        "assert Schedule.objects.filter(name='certyard: expiration scan')"
        ".update(next_run=timezone.now())\n",
    )
    finished_runs(platform, {"expiry recorder"}, kind="event", registration_name="expiry recorder")

    # Other tests' certificates on this platform expire within 90 days too, each warning its
    # own run: wait for this certificate's, not merely the first run to finish.
    def warnings_about_this_certificate() -> list[dict[str, Any]] | None:
        lines = expiring_log.read_text().splitlines() if expiring_log.exists() else []
        mine = [e for e in map(json.loads, lines) if e["subject_id"] == str(certificate["id"])]
        return mine or None

    [expiring] = wait_for(
        warnings_about_this_certificate, timeout=60, every=1, what="this certificate's warning"
    )
    assert expiring["kind"] == "certificate.expiring"
    assert expiring["data"]["days"] == 7 and expiring["data"]["store_id"] == store["id"]

    with closing(console_client(platform)) as console:
        page = console.get("/handler-runs/", params={"state": "failed"}).text
        assert "timed out after 2 s" in page and "ticket script" in page
        page = console.get(f"/certificates/{certificate['id']}/").text
        assert "expiry recorder" in page
