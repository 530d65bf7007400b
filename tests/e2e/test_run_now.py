"""Scheduled work run now, end to end: the expiry scan triggered on demand reaches a handler.

A real platform (web server and django-q2 cluster), a real agent whose store holds a
certificate 5 days from expiry, and the example event handler ``example.expiry_audit_log``
registered on ``certificate.expiring``. The daily scan's schedule is pushed a day away, so
only a run-now can warn: through the API (the cluster runs it), then the command (in its
own process), then the console page shows the run. The handler's file gets the one line.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    MANAGE,
    ROOT,
    LivePlatform,
    console_client,
    file_store_created,
    inventory_finished,
    orchestrator_approved,
    platform_python,
    start_platform,
    stop_platform,
    wait_for,
)

pytestmark = pytest.mark.e2e

SCHEDULE = "certyard: expiration scan"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """A platform of its own: its registration and warnings would show in other tests."""
    live = start_platform(tmp_path_factory.mktemp("run-now"))
    yield live
    stop_platform(live)


def _python_json(platform: LivePlatform, code: str) -> Any:
    return json.loads(platform_python(platform, code).strip().splitlines()[-1])


def _schedule_next_run(platform: LivePlatform) -> str:
    return _python_json(
        platform,
        "import json\nfrom django_q.models import Schedule\n"
        f"print(json.dumps(Schedule.objects.get(name={SCHEDULE!r}).next_run.isoformat()))\n",
    )


def _audit_runs(platform: LivePlatform) -> list[dict[str, Any]]:
    return _python_json(
        platform,
        "import json\nfrom certyard.workflows.models import HandlerRun\n"
        "rows = HandlerRun.objects.filter(registration_name='audit log').order_by('pk')\n"
        "print(json.dumps([{'state': r.state, 'error': r.error, 'subject_id': r.subject_id}"
        " for r in rows]))\n",
    )


def _manage(platform: LivePlatform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MANAGE, *args],
        cwd=ROOT,
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_expiry_scan_run_now_reaches_the_handler(
    platform: LivePlatform, agent_factory: Any, tmp_path: Path
) -> None:
    api = platform.api()
    audit_log = tmp_path / "expiring.jsonl"
    platform_python(
        platform,
        "from certyard.workflows.models import HandlerRegistration\n"
        "from certyard.workflows.services import registration_save\n"
        "registration = HandlerRegistration(name='audit log', "
        "handler='example.expiry_audit_log', events=['certificate.expiring'])\n"
        f"registration_save(registration=registration, values={{'path': {str(audit_log)!r}}})\n",
    )
    # The daily scan ran when the cluster started (nothing to warn of then); make sure the
    # scheduler cannot run it again during the test: only a run-now may warn.
    platform_python(
        platform,
        "import datetime as dt\nfrom django.utils import timezone\n"
        "from django_q.models import Schedule\n"
        f"Schedule.objects.filter(name={SCHEDULE!r})"
        ".update(next_run=timezone.now() + dt.timedelta(days=1))\n",
    )
    next_run = _schedule_next_run(platform)

    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "soon.pem").write_text(issue("soon.run-now.test", days=5).pem)
    agent = agent_factory("run-now-1", platform=platform)
    orchestrator = orchestrator_approved(api, "run-now-1")
    store = file_store_created(api, orchestrator, folder)
    agent.start()
    assert inventory_finished(api, store["id"], agent)["state"] == "succeeded"
    assert not audit_log.exists()  # nothing warned yet

    # The API lists the task with its schedule, and runs it now: 202 and the task id.
    listed = {row["name"]: row for row in api.get("scheduled-tasks/").json()}
    assert listed["expiry-scan"]["schedule"] == SCHEDULE
    assert "certificate.expiring" in listed["expiry-scan"]["events"]
    answer = api.post("scheduled-tasks/expiry-scan/run/")
    assert answer.status_code == 202, answer.text
    queued = answer.json()
    assert queued["actor"] == platform.admin_username

    # The cluster ran the scan; the event reached the handler, which wrote its line.
    def lines() -> list[dict[str, Any]] | None:
        text = audit_log.read_text() if audit_log.exists() else ""
        return [json.loads(line) for line in text.splitlines()] or None

    [line] = wait_for(lines, timeout=90, every=1, what="the audit log's line")
    assert line["common_name"] == "soon.run-now.test"
    assert line["days"] == 7  # the nearest threshold only, not 90 or 30
    assert line["store"].endswith(str(folder))
    [run] = wait_for(
        lambda: [r for r in _audit_runs(platform) if r["state"] == "succeeded"] or None,
        timeout=60,
        what="the handler run to be recorded",
    )
    assert run["error"] == ""

    # The run-now's result is the django-q2 task's, with who ran it.
    result = wait_for(
        lambda: _python_json(
            platform,
            "import json\nfrom django_q.models import Task\n"
            f"task = Task.objects.filter(id={queued['task_id']!r}).first()\n"
            "print(json.dumps(task and {'success': task.success, 'result': task.result}))\n",
        ),
        timeout=60,
        what="the run-now task's result",
    )
    assert result["success"] is True
    assert result["result"]["actor"] == platform.admin_username
    assert result["result"]["result"]["events_emitted"] == 1
    # The schedule kept its next run.
    assert _schedule_next_run(platform) == next_run
    last = next(r for r in api.get("scheduled-tasks/").json() if r["name"] == "expiry-scan")
    assert last["last_run"]["via"] == "run now" and last["last_run"]["success"] is True
    assert last["last_run"]["actor"] == platform.admin_username
    assert last["last_run"]["result"]["events_emitted"] == 1

    # The command runs it in its own process: nothing new to warn of, exit code 0.
    completed = _manage(platform, "certyard_task", "run", "expiry-scan", "--json")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert json.loads(completed.stdout)["result"]["events_emitted"] == 0
    assert len(lines() or []) == 1
    # An unknown name: a clear message and exit code 1.
    completed = _manage(platform, "certyard_task", "run", "expiry-scna")
    assert completed.returncode == 1
    assert "no scheduled task is named 'expiry-scna'" in completed.stderr

    # The console's page shows the task and its last run, the run-now.
    with closing(console_client(platform)) as console:
        page = console.get("/scheduled-tasks/").text
    assert 'data-name="expiry-scan"' in page and "succeeded" in page
    assert f"run now by {platform.admin_username}" in page
