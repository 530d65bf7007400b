"""The tutorial (docs/tutorial.md), followed as a newcomer would, so it cannot rot.

Every fenced block of the tutorial whose info string names a file (```` ```python
file=acme_certyard/retry.py ````) is written into a temporary folder: that is the whole
package, `acme-certyard`, outside the repository. It is installed with pip into a folder
of its own (``pip install --no-deps --target``), seen through ``PYTHONPATH`` by the
subprocesses alone: never by this process or the other tests, which must not find its
entry points. Then, as the tutorial does:

1. its own tests run (pytest, in a subprocess, with the ``certyard.testing`` plugin that
   pytest loads by itself) and pass;
2. ``manage.py certyard_extensions check`` exits 0 and ``list`` names its five extensions;
3. a live platform (web server and django-q2 worker) and a real agent with the package
   installed: the tutorial's ``register.py`` registers the handlers, and each runs by its
   real cause: an agent registering with a labelled token is approved with the site as
   metadata, the agent declares the store type, an inventory of the tutorial's demo store
   reads it and the generator fills ``owner``, the expiry scan run now
   (``certyard_task run expiry-scan``) reaches the expiry handler, and an inventory of a
   store that does not exist is retried exactly once by the job complete handler, which
   knows to stop from the job's provenance alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    MANAGE,
    ROOT,
    LivePlatform,
    certificates_listed,
    console_client,
    inventory_finished,
    job_if_finished,
    orchestrator_named,
    start_platform,
    stop_platform,
    wait_for,
)

pytestmark = pytest.mark.e2e

TUTORIAL = ROOT / "docs" / "tutorial.md"
# ```python file=acme_certyard/retry.py  ...  ``` (the closing fence alone on its line).
FILE_BLOCK = re.compile(
    r"^```(?P<language>[\w-]+)[ \t]+file=(?P<path>\S+)[^\n]*\n(?P<body>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
HANDLERS = ("acme.site_from_token", "acme.owner", "acme.expiry_log", "acme.retry_inventory_once")
STORE_TYPE = "ACME_CRTDIR"
# What the platform's settings come from in a subprocess that configures them itself.
PLATFORM_VARIABLES = ("DJANGO_SETTINGS_MODULE", "CERTYARD_DATA_DIR", "DATABASE_URL")


def tutorial_files() -> dict[str, str]:
    """The files the tutorial builds, by path relative to the package's folder."""
    files: dict[str, str] = {}
    for match in FILE_BLOCK.finditer(TUTORIAL.read_text(encoding="utf-8")):
        path = match.group("path")
        assert path not in files, f"the tutorial shows {path} twice"
        assert not Path(path).is_absolute() and ".." not in Path(path).parts, path
        files[path] = match.group("body")
    return files


@dataclass(frozen=True)
class Package:
    folder: Path  # the package's source, as the tutorial builds it
    site: Path  # where pip installed it
    files: dict[str, str]

    @property
    def python_path(self) -> str:
        """``PYTHONPATH`` for a process that sees the package (and what it saw before)."""
        return os.pathsep.join(p for p in (str(self.site), os.environ.get("PYTHONPATH")) if p)

    def env(self) -> dict[str, str]:
        """This process's environment, with the package on ``PYTHONPATH``."""
        return {**os.environ, "PYTHONPATH": self.python_path}


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    """The tutorial's package, written from its blocks and installed into a folder of its own."""
    base = tmp_path_factory.mktemp("tutorial")
    folder, site = base / "acme-certyard", base / "site"
    files = tutorial_files()
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    # Not into .venv: the other tests must not find these entry points.
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (site / "acme_certyard" / "retry.py").is_file(), sorted(p.name for p in site.iterdir())
    return Package(folder, site, files)


@pytest.fixture(scope="module")
def platform(package: Package, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """A platform of its own (its registrations would change other tests' agents), whose
    web server, worker and management commands see the package."""
    base = tmp_path_factory.mktemp("tutorial-platform")
    live = start_platform(
        base,
        env_overrides={
            "PYTHONPATH": package.python_path,
            # register.py's path for the expiry handler's file.
            "ACME_EXPIRY_LOG": str(base / "acme-expiring.jsonl"),
            # As a third party's platform: without the test suite's own (deliberately
            # broken) handlers, which the check would rightly report.
            "CERTYARD_EXTRA_HANDLER_GROUPS": "",
            "CERTYARD_EXTRA_STORE_TYPE_GROUPS": "",
        },
    )
    yield live
    stop_platform(live)


def test_the_tutorial_builds_the_whole_package() -> None:
    files = tutorial_files()
    assert {
        "pyproject.toml",
        "acme_certyard/__init__.py",
        "acme_certyard/registration.py",
        "acme_certyard/owner.py",
        "acme_certyard/expiry.py",
        "acme_certyard/retry.py",
        "acme_certyard/crtdir.py",
        "tests/test_handlers.py",
        "tests/test_crtdir.py",
        "register.py",
        "demo_store.py",
    } <= set(files)
    # It uses the public kit, never the platform's insides (register.py runs inside the
    # platform, as `manage.py shell` does; the tests may use certyard.testing).
    for path, text in files.items():
        if path.startswith("acme_certyard/"):
            assert not re.search(r"^\s*(from|import) (certyard|django)\b", text, re.M), path
        if path.startswith("tests/"):
            imported = re.findall(r"^\s*(?:from|import) (certyard[\w.]*)", text, re.M)
            assert set(imported) <= {"certyard.testing"}, (path, imported)


def test_the_tutorials_commands_are_the_ones_this_test_runs() -> None:
    """The shell steps (```` ```console ```` blocks, ``$`` lines) this test follows by other
    means (pytest, manage.py) are written as the test runs them."""
    text = TUTORIAL.read_text(encoding="utf-8")
    blocks = re.findall(r"^```console\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    typed = [
        line[2:].strip() for block in blocks for line in block.splitlines() if line[:2] == "$ "
    ]
    for command in (
        "../certyard/.venv/bin/pip install -e .",
        "../certyard/.venv/bin/python -m pytest",
        ".venv/bin/python manage.py certyard_extensions check",
        ".venv/bin/python manage.py shell < ../acme-certyard/register.py",
        ".venv/bin/python ../acme-certyard/demo_store.py /tmp/acme-stores/paris",
        ".venv/bin/python manage.py certyard_task run expiry-scan",
    ):
        assert command in typed, (command, typed)


def test_the_packages_own_tests_pass_with_the_certyard_testing_plugin(package: Package) -> None:
    # A third party's shell: no Django settings (the plugin configures them), nothing of
    # this suite's configuration (its CERTYARD_* variables).
    env = {
        name: value
        for name, value in package.env().items()
        if name not in PLATFORM_VARIABLES and not name.startswith("CERTYARD_")
    }
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=package.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    tests = sum(
        len(re.findall(r"^def test_", text, re.M))
        for path, text in package.files.items()
        if path.startswith("tests/")
    )
    [summary] = [line for line in output.splitlines() if re.search(r"\d+ passed", line)]
    assert re.search(rf"\b{tests} passed\b", summary), output
    assert "failed" not in summary and "error" not in summary, output


def test_certyard_extensions_check_finds_the_five_extensions(
    package: Package, platform: LivePlatform
) -> None:
    check = subprocess.run(
        [*MANAGE, "certyard_extensions", "check"],
        cwd=ROOT,
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "no problem found" in check.stdout, check.stdout
    listed = subprocess.run(
        [*MANAGE, "certyard_extensions", "list", "--json"],
        cwd=ROOT,
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    report = json.loads(listed.stdout)
    ours = {e["name"]: e for e in report["extensions"] if e["package"] == "acme-certyard"}
    assert set(ours) == {*HANDLERS, STORE_TYPE}, ours
    assert {name: e["kind"] for name, e in ours.items()} == {
        "acme.site_from_token": "registration",
        "acme.owner": "metadata",
        "acme.expiry_log": "event",
        "acme.retry_inventory_once": "job_complete",
        STORE_TYPE: "store_type",
    }
    assert all(not e["problems"] for e in ours.values()), ours


def _manage(platform: LivePlatform, *args: str, stdin: Path | None = None) -> str:
    """``manage.py ARGS`` in the platform's environment; its standard output."""
    with stdin.open() if stdin else open(os.devnull) as source:
        completed = subprocess.run(
            [*MANAGE, *args],
            cwd=ROOT,
            env=platform.env,
            stdin=source,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def _expect(answer: httpx.Response, *codes: int) -> Any:
    assert answer.status_code in codes, f"{answer.request.url}: {answer.status_code} {answer.text}"
    return answer.json()


def _runs(api: httpx.Client, **params: str) -> list[dict[str, Any]]:
    return _expect(api.get("handler-runs/", params={"page_size": 500, **params}), 200)["results"]


def _finished_run(api: httpx.Client, registration: str, job_id: str) -> dict[str, Any] | None:
    """The finished run of ``registration`` for the ``job.completed`` event of ``job_id``."""
    for run in _runs(api, kind="job_complete", subject_id=job_id):
        if run["registration_name"] == registration and run["state"] in ("succeeded", "failed"):
            return run
    return None


def test_each_extension_runs_on_its_real_cause(
    package: Package, platform: LivePlatform, agent_factory: Any, tmp_path: Path
) -> None:
    api = platform.api()

    # Step 9: register the handlers with the tutorial's script, through `manage.py shell`.
    out = _manage(platform, "shell", stdin=package.folder / "register.py")
    assert out.count("registered ACME") == 4, out
    fields = {f["name"]: f for f in _expect(api.get("metadata-fields/"), 200)["results"]}
    assert fields["owner"]["type"] == "string", fields  # the generator's declaration

    # An agent registers with a token labelled site=paris: the registration handler allows
    # it and records the site on the orchestrator.
    made = api.post(
        "registration-tokens/", json={"description": "Paris agents", "labels": ["site=paris"]}
    )
    agent = agent_factory("paris-1", token=_expect(made, 201)["token"], platform=platform)
    orchestrator = orchestrator_named(api, "paris-1")
    assert orchestrator["status"] == "approved", agent.registration_output
    assert orchestrator["metadata"] == {"site": "paris"}, orchestrator
    assert f"{STORE_TYPE}.Inventory" in orchestrator["capabilities"], orchestrator
    [decided] = [
        r for r in _runs(api, kind="registration") if r["registration_name"] == "ACME sites"
    ]
    assert decided["state"] == "succeeded", decided
    decision = _expect(api.get(f"handler-runs/{decided['id']}/"), 200)["output"]
    assert decision["verdict"] == "allow" and decision["metadata"] == {"site": "paris"}, decision

    # The agent connects and declares its store type: the platform's record comes from it.
    agent.start()

    def store_type() -> dict[str, Any] | None:
        listed = _expect(api.get("store-types/", params={"page_size": 500}), 200)["results"]
        return next((t for t in listed if t["short_name"] == STORE_TYPE), None)

    declared = wait_for(
        store_type, timeout=60, what=f"the {STORE_TYPE} store type\n{agent.log()[-3000:]}"
    )
    assert declared["name"] == "ACME certificate folder", declared
    assert [p["name"] for p in declared["properties"]] == ["index"], declared
    assert declared["supports_inventory"] and not declared["supports_add"], declared

    # The tutorial's demo store, inventoried: the store type reads it, the generator
    # fills owner from the OU (pay) or the e-mail address (www).
    store_folder = tmp_path / "acme-stores" / "paris"
    completed = subprocess.run(
        [sys.executable, str(package.folder / "demo_store.py"), str(store_folder)],
        env=package.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    store = _expect(
        api.post(
            "stores/",
            json={
                "store_type": STORE_TYPE,
                "store_path": str(store_folder),
                "orchestrator": orchestrator["id"],
            },
        ),
        201,
    )
    job = inventory_finished(api, store["id"], agent)
    assert job["state"] == "succeeded" and job["outcome"] == "success", job
    owners = {"pay.paris.acme.test": "Payments", "www.paris.acme.test": "web-team@acme.test"}

    def metadata(common_name: str) -> dict[str, Any] | None:
        found = certificates_listed(api, search=common_name)
        if not found:
            return None
        values = _expect(api.get(f"certificates/{found[0]['id']}/"), 200).get("metadata") or {}
        return values if "owner" in values else None

    for common_name, owner in owners.items():
        values = wait_for(
            lambda name=common_name: metadata(name),
            timeout=120,
            every=2,
            what=f"the owner of {common_name}\n{platform.log()[-3000:]}",
        )
        assert values["owner"]["value"] == owner, values
        assert values["owner"]["source"] == "ACME owner", values

    # The expiry scan, run now: pay.crt (5 days left) gets the 7-day warning, and the
    # worker runs the expiry handler, which appends its line.
    scanned = _manage(platform, "certyard_task", "run", "expiry-scan")
    assert '"events_emitted": 1' in scanned and '"7": 1' in scanned, scanned
    log = Path(platform.env["ACME_EXPIRY_LOG"])

    def logged() -> list[dict[str, Any]]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    [line] = wait_for(
        logged, timeout=120, every=1, what=f"the expiry line\n{platform.log()[-3000:]}"
    )
    assert line["common_name"] == "pay.paris.acme.test" and line["days"] == 7, line
    assert STORE_TYPE in line["store"] and str(store_folder) in line["store"], line
    # Once per threshold: the scan run again warns of nothing.
    again = _manage(platform, "certyard_task", "run", "expiry-scan")
    assert '"events_emitted": 0' in again, again

    # A store whose folder does not exist (inside the agent's roots): the store type fails
    # the inventory for good, and the job complete handler retries it exactly once.
    gone = _expect(
        api.post(
            "stores/",
            json={
                "store_type": STORE_TYPE,
                "store_path": str(tmp_path / "acme-stores" / "gone"),
                "orchestrator": orchestrator["id"],
            },
        ),
        201,
    )
    first = inventory_finished(api, gone["id"], agent)
    assert first["state"] == "failed" and first["source"] == "api", first
    assert first["retry_of"] is None, first
    assert "does not exist" in first["message"], first
    first_run = wait_for(
        lambda: _finished_run(api, "ACME retry once", first["id"]),
        timeout=120,
        what=f"the retry handler's first run\n{platform.log()[-3000:]}",
    )
    assert first_run["state"] == "succeeded", first_run
    assert first_run["message"].startswith("inventory failed ("), first_run
    assert first_run["message"].endswith("retrying in 0 min"), first_run
    detail = _expect(api.get(f"handler-runs/{first_run['id']}/"), 200)
    [scheduled] = [a for a in detail["output"]["actions"] if a["action"] == "schedule_job"]
    assert scheduled["retry_of"] == first["id"], scheduled

    def second_job() -> dict[str, Any] | None:
        jobs = _expect(api.get("jobs/", params={"store": gone["id"]}), 200)["results"]
        others = [j for j in jobs if j["id"] != first["id"]]
        return job_if_finished(api, others[0]["id"]) if others else None

    second = wait_for(second_job, timeout=120, what=f"the retry job\n{agent.log()[-3000:]}")
    assert second["id"] == scheduled["job_id"], (second, scheduled)
    assert second["state"] == "failed", second
    assert second["retry_of"] == first["id"], second
    assert second["source"] == "handler" and second["source_detail"] == "ACME retry once", second
    last_run = wait_for(
        lambda: _finished_run(api, "ACME retry once", second["id"]),
        timeout=120,
        what=f"the retry handler's second run\n{platform.log()[-3000:]}",
    )
    assert last_run["state"] == "succeeded", last_run
    assert "giving up" in last_run["message"], last_run
    chain = _expect(api.get(f"handler-runs/{last_run['id']}/"), 200)["output"]["chain"]
    assert chain == [first["id"], second["id"]], chain  # job.chain, oldest first
    # The second run opened nothing: the actions of a run are carried out with it, so
    # once it is finished the store's jobs are all there are. Allow the worker a moment.
    time.sleep(3)
    jobs = _expect(api.get("jobs/", params={"store": gone["id"]}), 200)["results"]
    assert sorted(j["id"] for j in jobs) == sorted([first["id"], second["id"]]), jobs
    assert _expect(api.get(f"jobs/{first['id']}/"), 200)["retries"] == [second["id"]]

    # What the tutorial says the console shows.
    with closing(console_client(platform)) as console:
        assert "Index file" in console.get("/stores/add/").text  # the declaration's property
        page = console.get(f"/orchestrators/{orchestrator['id']}/").text
        assert 'data-key="site"' in page and "paris" in page
        page = console.get(f"/jobs/{second['id']}/").text
        assert 'data-source="handler"' in page and "ACME retry once" in page
        assert "job-retry-of" in page and first["id"] in page
        page = console.get(f"/jobs/{first['id']}/").text
        assert "job-retries" in page and second["id"] in page
        page = console.get(f"/stores/{gone['id']}/").text
        assert page.count('data-testid="store-job-row"') == 2
