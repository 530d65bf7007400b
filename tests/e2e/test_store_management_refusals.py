"""Bad input a store cannot take, end to end (issue 16): a read-only folder, a PKCS#12 in a
legacy scheme the agent's OpenSSL cannot decrypt, a key sent to a store type that forbids
keys, and a missing required entry parameter. Each ends with a clear message (the job
failed, or the request refused before any job), and nothing in the store is lost.

The KEYLESS store type (tests/plugins) is loaded only by the tests' agents; it declares
itself to the platform like any third-party store type, which these tests rely on.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.certs import Issued, issue
from tests.e2e.conftest import AgentProcess, LivePlatform, orchestrator_approved, wait_for
from tests.e2e.keystores import openssl_pkcs12
from tests.e2e.management import (
    Pki,
    batch_finished,
    deployed,
    expect,
    job_finished,
    job_message,
    pfx_certificate,
    pki_made,
    store_made,
)

pytestmark = pytest.mark.e2e

PASSWORD = "refusal-pass-5d21"


@dataclass
class Refusals:
    platform: LivePlatform
    agent: AgentProcess
    orchestrator: dict[str, Any]
    pki: Pki
    folder: Path
    old: Issued


@pytest.fixture(scope="module")
def refusals(live_platform: LivePlatform, module_agents: Callable[..., AgentProcess]) -> Refusals:
    folder = module_agents.base / "refusals"  # type: ignore[attr-defined]
    folder.mkdir()
    agent = module_agents("refusals-a", folder=folder)
    agent.start()
    with live_platform.api() as api:
        orchestrator = orchestrator_approved(api, "refusals-a")
    pki = pki_made(live_platform, label="Refusals")
    ca = issue("Refusals Root", ca=True)
    return Refusals(live_platform, agent, orchestrator, pki, folder, issue("old.r.test", issuer=ca))


def _one_failed_deployment(api: Any, batch: dict[str, Any], agent: AgentProcess) -> str:
    done = batch_finished(api, batch["id"], agents=(agent,))
    [deployment] = done["deployments"]
    assert deployment["state"] == "failed", deployment
    job = job_finished(api, deployment["job"])
    assert job["outcome"] == "failure", job_message(job)
    message = f"{deployment['message']}\n{job_message(job)}"
    assert "Traceback" not in message
    return message


@pytest.fixture
def immutable_folder(refusals: Refusals) -> Iterator[Path]:
    """A PEM folder nobody may write in, root included (the tests run as root, whom file
    modes do not stop): Linux's immutable attribute."""
    folder = refusals.folder / "read-only"
    folder.mkdir()
    (folder / "old.pem").write_text(refusals.old.pem + refusals.old.key_pem)
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not allowed here: {made.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_folder_fails_the_job_and_keeps_what_is_there(
    refusals: Refusals, immutable_folder: Path
) -> None:
    before = {path.name: path.read_bytes() for path in immutable_folder.iterdir()}
    with refusals.platform.api() as api:
        store = store_made(api, refusals.orchestrator["id"], "PEM", str(immutable_folder))
        web = pfx_certificate(api, refusals.pki, "read-only")
        message = _one_failed_deployment(
            api, deployed(api, web["certificate"], [store["id"]], alias="web.pem"), refusals.agent
        )
    assert "cannot write in" in message, message
    assert {path.name: path.read_bytes() for path in immutable_folder.iterdir()} == before


def test_a_legacy_pkcs12_this_agent_cannot_decrypt_is_named_not_called_a_wrong_password(
    refusals: Refusals, module_agents: Callable[..., AgentProcess]
) -> None:
    """An agent whose OpenSSL has no legacy provider (as OpenSSL 3 ships by default) and a
    file `openssl pkcs12 -export -legacy` made (RC2-40 certificates, 3DES keys)."""
    folder = refusals.folder / "no-legacy"
    folder.mkdir()
    path = openssl_pkcs12(
        folder / "legacy.p12", certificate=refusals.old, password=PASSWORD, name="old", legacy=True
    )
    before = path.read_bytes()
    agent = module_agents(
        "refusals-nolegacy", folder=folder, env={"CRYPTOGRAPHY_OPENSSL_NO_LEGACY": "1"}
    )
    agent.start()
    with refusals.platform.api() as api:
        orchestrator = orchestrator_approved(api, "refusals-nolegacy")
        store = store_made(api, orchestrator["id"], "PKCS12", str(path), password=PASSWORD)
        web = pfx_certificate(api, refusals.pki, "legacy")
        message = _one_failed_deployment(
            api, deployed(api, web["certificate"], [store["id"]], alias="web"), agent
        )
    assert "RC2" in message and "cannot decrypt" in message, message
    assert "password does not open" not in message
    assert path.read_bytes() == before


def _keyless_declared(api: Any, agent: AgentProcess) -> dict[str, Any]:
    """The KEYLESS store type as the platform made it from the agent's declaration."""

    def declared() -> dict[str, Any] | None:
        found = expect(api.get("store-types/", params={"page_size": 500}), 200)["results"]
        return next((t for t in found if t["short_name"] == "KEYLESS"), None)

    return wait_for(
        declared, timeout=30, what=f"the agent's KEYLESS declaration\n{agent.log()[-3000:]}"
    )


def test_a_store_type_that_forbids_keys_and_requires_an_entry_parameter(
    refusals: Refusals,
) -> None:
    folder = refusals.folder / "keyless"
    folder.mkdir()
    with refusals.platform.api() as api:
        store_type = _keyless_declared(api, refusals.agent)
        assert store_type["private_key"] == "forbidden"
        assert [p["name"] for p in store_type["entry_parameters"]] == ["slot"]
        store = store_made(api, refusals.orchestrator["id"], "KEYLESS", str(folder))
        web = pfx_certificate(api, refusals.pki, "keyless")

        # The required entry parameter missing: refused before any job, naming it.
        refused = api.post(
            f"certificates/{web['certificate']}/deployments/",
            json={"stores": [store["id"]], "alias": "web"},
        )
        assert refused.status_code == 400, refused.text
        assert "slot" in refused.text.lower(), refused.text
        assert list(folder.iterdir()) == []

        # Given: the certificate goes without its key, though the platform holds one.
        batch = deployed(
            api,
            web["certificate"],
            [store["id"]],
            alias="web",
            entry_parameters={"slot": "7"},
        )
        done = batch_finished(api, batch["id"], agents=(refusals.agent,))
        [deployment] = done["deployments"]
        assert deployment["state"] == "written" and deployment["key_origin"] == "none"
        assert (folder / "web.slot").read_text() == "7"
        written = {path.name: path.read_bytes() for path in folder.iterdir()}
        assert b"PRIVATE KEY" not in b"".join(written.values())

        # The platform's record of the type goes stale (an admin allows keys): the agent,
        # which knows its store type forbids them, refuses the key and writes nothing.
        expect(api.patch("store-types/KEYLESS/", json={"private_key": "optional"}), 200)
        try:
            other = pfx_certificate(api, refusals.pki, "keyless-2")
            message = _one_failed_deployment(
                api,
                deployed(
                    api,
                    other["certificate"],
                    [store["id"]],
                    alias="other",
                    entry_parameters={"slot": "8"},
                ),
                refusals.agent,
            )
        finally:
            expect(
                api.patch("store-types/KEYLESS/", json={"private_key": "forbidden"}),
                200,
            )
    assert "does not take private keys; nothing was written" in message, message
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == written
