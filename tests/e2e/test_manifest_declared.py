"""The example MANIFEST store type, installed next to a real agent (examples/, installed
in the environment the agents run from): the agent declares it when it connects, the
platform makes its store type from that declaration (nothing made by hand), and a store of
it is inventoried using the declared property."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    AgentProcess,
    LivePlatform,
    inventory_finished,
    orchestrator_approved,
    wait_for,
)
from tests.e2e.management import expect, store_made

pytestmark = pytest.mark.e2e


def test_the_example_manifest_store_type_is_declared_by_the_agent_and_works(
    live_platform: LivePlatform, module_agents: Callable[..., AgentProcess]
) -> None:
    folder = module_agents.base / "manifest"  # type: ignore[attr-defined]
    folder.mkdir()
    leaf = issue("manifest.e2e.test")
    (folder / "web.pem").write_text(leaf.pem)
    manifest = folder / "deployed.json"
    # The declared property names the list's key: this tool calls it "certificates".
    manifest.write_text(json.dumps({"certificates": [{"alias": "web", "certificate": "web.pem"}]}))
    agent = module_agents("manifest-a", folder=folder)
    agent.start()
    with live_platform.api() as api:
        orchestrator = orchestrator_approved(api, "manifest-a")

        def declared() -> dict[str, Any] | None:
            answer = expect(api.get("store-types/MANIFEST/"), 200, 404)
            return answer if answer and answer.get("short_name") == "MANIFEST" else None

        store_type = wait_for(
            declared, timeout=30, what=f"the MANIFEST declaration\n{agent.log()[-3000:]}"
        )
        # Declared by an agent, not made by hand: this one, or one an earlier test of the
        # session started (every agent here has the examples installed).
        assert store_type["declared_by"] is not None
        assert store_type["declared_at"]
        assert store_type["declaration_warning"] == ""
        assert [p["name"] for p in store_type["properties"]] == ["entries_key"]
        assert store_type["supports_inventory"] and not store_type["supports_add"]

        store = store_made(
            api,
            orchestrator["id"],
            "MANIFEST",
            str(manifest),
            properties={"entries_key": "certificates"},
        )
        job = inventory_finished(api, store["id"], agent)
        assert job["outcome"] == "success", job
        found = expect(api.get("certificates/", params={"store": store["id"]}), 200)["results"]
        assert [c["sha256"] for c in found] == [leaf.sha256]
