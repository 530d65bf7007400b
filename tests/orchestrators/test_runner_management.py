"""The runner dispatches management and discovery jobs, re-reads the store after a write,
sends its declarations, and refuses stores outside its roots.

The platform here is a recorder of the wire (httpx's in-process transport answering as
design16 says): the platform's side of these endpoints has its own tests, and the whole loop
with a real platform and a real agent process runs in tests/e2e.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrators.agent.client import NotApproved, PlatformClient
from orchestrators.agent.runner import Runner
from orchestrators.agent.store_types import declarations_wire
from orchestrators.declarations import declaration_from_wire
from orchestrators.protocol import StoreOperation
from orchestrators.transit import seal, transit_context
from tests.certs import Issued, agent_key, issue
from tests.orchestrators.management_support import FolderStore, files_below


class RecordingPlatform:
    """Answers the agent API from a table of job configurations; records every request."""

    def __init__(self, configs: dict[str, dict[str, Any]]) -> None:
        self.configs = configs
        self.requests: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/orchestrator/v1/")
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, path, body))
        if path == "session":
            return httpx.Response(200, json={"token": "t", "expires_in": 300, "status": "approved"})
        if path == "heartbeat":
            return httpx.Response(200, json={"status": "approved"})
        if path == "store-types":
            return httpx.Response(200, json={"store_types": []})
        if path == "jobs/next":
            return httpx.Response(204)
        job_id = path.split("/")[1] if path.startswith("jobs/") else ""
        if path.endswith("/config"):
            return httpx.Response(200, json=self.configs[job_id])
        if path.endswith("/inventory/chunks"):
            return httpx.Response(200, json={"accepted": len(body["entries"])})
        if path.endswith("/inventory/commit"):
            return httpx.Response(200, json={"recorded": True})
        if path.endswith("/discovery"):
            return httpx.Response(200, json={"new": len(body["candidates"]), "gone": 0, "known": 0})
        if path.endswith("/complete"):
            return httpx.Response(200, json={"status": body["status"]})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})

    def sent(self, suffix: str) -> list[Any]:
        return [body for _, path, body in self.requests if path.endswith(suffix)]


def runner_for(
    platform: RecordingPlatform,
    key: ec.EllipticCurvePrivateKey,
    roots: tuple[str, ...],
    state: Path,
) -> Runner:
    client = PlatformClient(
        "http://platform.test",
        orchestrator_id="orch-1",
        private_key=key,
        transport=httpx.MockTransport(platform),
    )
    return Runner(
        client,
        {"FOLDER": FolderStore},
        state_root=state,
        store_roots=roots,
        identity_keys=lambda: [key],
    )


def config(job_id: str, job_type: str, store_path: str | None, payload: dict[str, Any]) -> dict:
    store = (
        None
        if store_path is None
        else {
            "id": "store-1",
            "store_type": "FOLDER",
            "client_machine": "here",
            "store_path": store_path,
            "properties": {},
            "password": None,
            "endpoint": None,
        }
    )
    return {"job_id": job_id, "type": job_type, "attempt": 1, "store": store, "payload": payload}


def test_an_add_job_writes_rereads_the_store_and_completes_with_its_result(
    tmp_path: Path, ca: Issued
) -> None:
    key = agent_key()
    store = tmp_path / "roots" / "store"
    store.mkdir(parents=True)
    leaf = issue("site.example", issuer=ca)
    envelope = seal(
        leaf.key_pem.encode(), key.public_key(), context=transit_context(job_id="j1", attempt=1)
    )
    payload = {
        "alias": "site",
        "certificate": leaf.pem,
        "chain": [ca.pem],
        "certificate_sha256": leaf.sha256,
        "entry_parameters": {"entry_password": "pw"},
        "private_key": envelope,
    }
    platform = RecordingPlatform({"j1": config("j1", "add", str(store), payload)})
    runner = runner_for(platform, key, (str(tmp_path / "roots"),), tmp_path / "state")

    runner._run_job({"id": "j1", "type": "add", "attempt": 1})

    (chunk,) = platform.sent("/inventory/chunks")
    assert [(e["alias"], e["private_key"], len(e["certificates"])) for e in chunk["entries"]] == [
        ("site", True, 2)
    ]
    assert len(platform.sent("/inventory/commit")) == 1
    (complete,) = platform.sent("/complete")
    assert complete["status"] == "success"
    assert complete["message"] == "written"
    assert complete["result"]["key_origin"] == "platform"
    assert complete["result"]["written"] is True
    assert "PRIVATE KEY" not in json.dumps(platform.sent("/complete"))


@pytest.mark.parametrize("how", ["direct", "dotdot", "symlink"])
def test_a_store_outside_the_roots_is_refused_before_any_write(
    tmp_path: Path, ca: Issued, how: str
) -> None:
    roots, outside = tmp_path / "roots", tmp_path / "outside"
    roots.mkdir()
    outside.mkdir()
    (roots / "link").symlink_to(outside)
    store_path = {
        "direct": str(outside),
        "dotdot": f"{roots}/../outside",
        "symlink": str(roots / "link"),
    }[how]
    leaf = issue("site.example", issuer=ca)
    payload = {"alias": "site", "certificate": leaf.pem, "entry_parameters": {}}
    platform = RecordingPlatform({"j1": config("j1", "add", store_path, payload)})
    runner = runner_for(platform, agent_key(), (str(roots),), tmp_path / "state")

    runner._run_job({"id": "j1", "type": "add", "attempt": 1})

    (complete,) = platform.sent("/complete")
    assert complete["status"] == "failure"
    assert complete["final"] is True  # no attempt is spent on it
    expected = {
        "direct": "is outside the folders this orchestrator may read",
        "dotdot": "contains '..': name the folder itself",
        "symlink": "is outside the folders this orchestrator may read",
    }[how]
    assert expected in complete["message"]
    assert files_below(outside) == set()
    assert platform.sent("/inventory/chunks") == []


def test_a_job_type_the_store_type_does_not_carry_is_refused(tmp_path: Path) -> None:
    class InventoryOnly(FolderStore):
        operations = frozenset({"inventory"})

    platform = RecordingPlatform({"j1": config("j1", "remove", str(tmp_path), {"alias": "x"})})
    runner = runner_for(platform, agent_key(), (str(tmp_path),), tmp_path / "state")
    runner._store_types = {"FOLDER": InventoryOnly}

    runner._run_job({"id": "j1", "type": "remove", "attempt": 1})

    assert platform.sent("/complete")[0]["message"] == (
        "job type remove is not supported for store type FOLDER by this orchestrator"
    )


def test_a_discovery_job_reports_its_candidates(tmp_path: Path, ca: Issued) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "site.pem").write_text(ca.pem)
    payload = {
        "directories": [str(tmp_path / "etc"), "/proc"],
        "file_patterns": [],
        "ignored_directories": [],
        "follow_links": False,
        "max_depth": 4,
    }
    platform = RecordingPlatform({"j1": config("j1", "discovery", None, payload)})
    runner = runner_for(platform, agent_key(), (str(tmp_path),), tmp_path / "state")

    runner._run_job({"id": "j1", "type": "discovery", "attempt": 1})

    (report,) = platform.sent("/discovery")
    assert report["attempt"] == 1
    assert [(c["path"], c["kind"], c["store_type"]) for c in report["candidates"]] == [
        (str(tmp_path / "etc" / "site.pem"), "pem", "PEM")
    ]
    (complete,) = platform.sent("/complete")
    assert complete["status"] == "warning"  # /proc was skipped: outside the roots
    assert complete["result"] == {
        "candidates": 1,
        "notes": ["/proc: skipped, outside this orchestrator's roots"],
    }


def test_the_store_types_are_declared_once_after_the_session_opens(tmp_path: Path) -> None:
    platform = RecordingPlatform({})
    runner = runner_for(platform, agent_key(), (str(tmp_path),), tmp_path / "state")

    runner._step()
    runner._step()

    (declared,) = platform.sent("store-types")
    assert [item["short_name"] for item in declared["store_types"]] == ["FOLDER"]
    assert declared["store_types"][0]["entry_parameters"][0]["name"] == "entry_password"


def test_an_orchestrator_approved_after_its_session_opened_declares_on_its_next_poll(
    tmp_path: Path,
) -> None:
    platform = RecordingPlatform({})
    answer = platform.__call__
    approved = {"now": False}

    def approving_later(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/session"):
            platform.requests.append(("POST", "session", None))
            return httpx.Response(200, json={"token": "t", "expires_in": 300, "status": "new"})
        if path.endswith("/heartbeat") and not approved["now"]:
            platform.requests.append(("POST", "heartbeat", None))
            return httpx.Response(200, json={"status": "new"})
        if path.endswith("/jobs/next") and not approved["now"]:
            platform.requests.append(("GET", "jobs/next", None))
            return httpx.Response(
                403, json={"error": {"code": "not_approved", "message": "not approved yet"}}
            )
        return answer(request)

    client = PlatformClient(
        "http://platform.test",
        orchestrator_id="orch-1",
        private_key=agent_key(),
        transport=httpx.MockTransport(approving_later),
    )
    runner = Runner(client, {"FOLDER": FolderStore}, store_roots=(str(tmp_path),))
    runner._back_off = lambda reason: None  # type: ignore[method-assign]

    for _ in range(2):
        # The runner's loop handles the refusal (and waits); here the poll just ends.
        with contextlib.suppress(NotApproved):
            runner._step()
    assert platform.sent("store-types") == []
    approved["now"] = True
    runner._step()  # the poll is answered: approved
    runner._step()
    assert len(platform.sent("store-types")) == 1


def test_a_refused_declaration_is_logged_and_the_agent_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    platform = RecordingPlatform({})
    answer = platform.__call__

    def refusing(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/store-types"):
            platform.requests.append(("POST", "store-types", None))
            return httpx.Response(
                400, json={"error": {"code": "invalid", "message": "bad declaration"}}
            )
        return answer(request)

    client = PlatformClient(
        "http://platform.test",
        orchestrator_id="orch-1",
        private_key=agent_key(),
        transport=httpx.MockTransport(refusing),
    )
    runner = Runner(client, {"FOLDER": FolderStore}, store_roots=(str(tmp_path),))

    runner._step()
    runner._step()

    assert len(platform.sent("store-types")) == 1
    assert "refused the store type declarations: bad declaration" in caplog.text


def test_a_store_type_without_a_declaration_is_declared_from_its_name_and_operations() -> None:
    class Bare(FolderStore):
        short_name = "BARE"
        operations = frozenset({StoreOperation.INVENTORY, StoreOperation.ADD})
        declaration = None

    (wire,) = declarations_wire({"BARE": Bare})

    assert wire["short_name"] == "BARE"
    assert wire["operations"] == ["add", "inventory"]
    assert declaration_from_wire(wire).name == "BARE"
