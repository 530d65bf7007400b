"""A management job survives the agent's death (issue 16): the agent is killed with
SIGKILL while its atomic writer has the new keystore written and verified but not yet
renamed (the ``CERTYARD_AGENT_WRITE_PAUSE_SECONDS`` seam). The store must be intact (the
old one, readable by openssl and keytool), the job offered again once its lease lapses,
and the restarted agent must apply it exactly once: one entry, one location, one success.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    LivePlatform,
    agent_killed,
    agent_registered,
    orchestrator_approved,
    start_platform,
    stop_platform,
    wait_for,
)
from tests.e2e.keystores import keytool_entries, openssl_pkcs12, openssl_pkcs12_contents
from tests.e2e.management import (
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

pytestmark = pytest.mark.e2e

PAUSE_ENV = "CERTYARD_AGENT_WRITE_PAUSE_SECONDS"
PASSWORD = "crash-pass-2c8e"
# Short, so the job is offered again soon after the agent died; long enough for a write.
LEASE_SECONDS = "15"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    live = start_platform(
        tmp_path_factory.mktemp("crash"),
        env_overrides={"CERTYARD_JOB_LEASE_SECONDS": LEASE_SECONDS},
    )
    yield live
    stop_platform(live)


def test_killed_mid_write_leaves_the_old_store_and_the_job_is_applied_once_after_its_lease(
    platform: LivePlatform, tmp_path: Path
) -> None:
    folder = tmp_path / "stores"
    folder.mkdir()
    ca = issue("Crash Root", ca=True)
    old = issue("old.crash.test", issuer=ca)
    path = openssl_pkcs12(
        folder / "app.p12", certificate=old, password=PASSWORD, name="old", chain=(ca,)
    )
    original = path.read_bytes()

    agent = agent_registered(platform, "crash-a", tmp_path, store_roots=(folder,))
    agent.env[PAUSE_ENV] = "120"
    agent.start()
    try:
        with platform.api() as api:
            orchestrator = orchestrator_approved(api, "crash-a")
            store = store_made(api, orchestrator["id"], "PKCS12", str(path), password=PASSWORD)
            pki = pki_made(platform, label="Crash")
            web = pfx_certificate(api, pki, "crash")
            batch = deployed(api, web["certificate"], [store["id"]], alias="web")

            # The new file is written and checked beside the old one, and the agent waits
            # before the rename: kill it there.
            wait_for(
                lambda: list(folder.glob(".app.p12.certyard-tmp-*")),
                timeout=60,
                what=f"the agent's temporary file\n{agent.log()[-3000:]}",
                every=0.1,
            )
            agent_killed(agent)

            # The store is the old one, whole: byte for byte, and both tools read it.
            assert path.read_bytes() == original
            assert len(openssl_pkcs12_contents(path, password=PASSWORD)[0]) == 2
            assert set(keytool_entries(path, store_type="PKCS12", password=PASSWORD)) == {"old"}

            # Restarted without the pause: the job comes back after its lease and ends once.
            agent.env.pop(PAUSE_ENV)
            agent.start()
            done = batch_finished(api, batch["id"], agents=(agent,), timeout=180)
            [deployment] = done["deployments"]
            assert deployment["state"] == "written", deployment
            job = job_finished(api, deployment["job"])
            assert job["state"] == "succeeded", job_message(job)
            outcomes = [h["outcome"] for h in job["history"]]
            assert outcomes.count("success") == 1, job["history"]
            assert "lease_expired" in outcomes, job["history"]
            assert job["attempts"] >= 2

            entries = keytool_entries(path, store_type="PKCS12", password=PASSWORD)
            certificate = expect(api.get(f"certificates/{web['certificate']}/"), 200)
            assert {a: e.sha256 for a, e in entries.items()} == {
                "old": old.sha256,
                "web": certificate["sha256"],
            }
            assert store_inventory(api, store["id"]) == {
                "old": old.sha256,
                "web": certificate["sha256"],
            }
            assert [loc["store_id"] for loc in certificate["locations"]] == [store["id"]]
            # The crashed write's leftover was cleaned up by the next write.
            assert not list(folder.glob(".app.p12.certyard-tmp-*"))
    finally:
        if agent.process is not None and agent.process.poll() is None:
            agent.stop()
