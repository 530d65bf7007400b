"""A real agent renews its own client certificate, and is locked out once it is revoked.

The platform issues one-day certificates and asks for renewal from the start (a renew
fraction of 1): the agent renews as soon as it has a session, without an administrator,
keeps its approval and goes on working with its new key. When an administrator revokes
that certificate, the agent's next request is refused; it says why and stops.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.certs import issue, session_assertion
from tests.e2e.conftest import (
    LivePlatform,
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

NAME = "e2e-identity"
RENEWED = "client certificate renewed"
REVOKED = "this orchestrator's certificate was revoked; register again"


@pytest.fixture(scope="module")
def renewing_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """Agent certificates for a day, to be renewed from the moment they are issued."""
    platform = start_platform(
        tmp_path_factory.mktemp("renewing"),
        env_overrides={"CERTYARD_AGENT_CERT_DAYS": "1", "CERTYARD_AGENT_RENEW_FRACTION": "1.0"},
    )
    yield platform
    stop_platform(platform)


def _platform_certificate(platform: LivePlatform, orchestrator_id: str) -> str:
    """The orchestrator's current certificate as the platform holds it."""
    out = platform_python(
        platform,
        "from certyard.fleet.models import Orchestrator\n"
        f"pem = Orchestrator.objects.get(pk='{orchestrator_id}').certificate_pem\n"
        "print('<<<' + pem + '>>>')\n",
    )
    return out.split("<<<", 1)[1].split(">>>", 1)[0]


def test_the_agent_renews_its_certificate_and_a_revocation_locks_it_out(
    renewing_platform: LivePlatform, agent_factory, tmp_path: Path
) -> None:
    agent = agent_factory(NAME, platform=renewing_platform)
    cert_path, key_path = agent.config_dir / "cert.pem", agent.config_dir / "key.pem"
    registered_pem, registered_key = cert_path.read_text(), key_path.read_bytes()
    registered = x509.load_pem_x509_certificate(registered_pem.encode())
    lifetime = registered.not_valid_after_utc - registered.not_valid_before_utc
    assert lifetime.total_seconds() <= 86400 + 600  # the platform's one-day setting
    agent.start()
    with renewing_platform.api() as api:
        orchestrator = orchestrator_approved(api, NAME)

        # Renewed by the agent itself: a new key, its certificate, on both sides.
        wait_for(
            lambda: RENEWED in agent.log(),
            timeout=60,
            what=f"the agent to renew its certificate\n{agent.log()[-3000:]}",
        )
        renewed_pem = cert_path.read_text()
        assert renewed_pem != registered_pem and key_path.read_bytes() != registered_key
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert not (agent.config_dir / "key.next.pem").exists()
        renewed = x509.load_pem_x509_certificate(renewed_pem.encode())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        assert renewed.public_key().public_bytes(serialization.Encoding.DER, spki) == (
            key.public_key().public_bytes(serialization.Encoding.DER, spki)
        )
        assert renewed.serial_number != registered.serial_number
        assert _platform_certificate(renewing_platform, orchestrator["id"]) == renewed_pem

        # Still approved, without an administrator, and working with the new key.
        folder = tmp_path / "store"
        folder.mkdir()
        (folder / "site.pem").write_text(issue("site.identity.e2e.test").pem)
        store = file_store_created(api, orchestrator, folder)
        job = inventory_finished(api, store["id"], agent)
        assert (job["state"], job["outcome"]) == ("succeeded", "success"), job
        listed = orchestrator_named(api, NAME)
        assert listed["status"] == "approved"
        assert listed["certificate_not_after"] is not None
        # Once: the platform keeps saying renewal is due, the agent does not loop.
        assert agent.log().count(RENEWED) == 1

        # Revoked: the agent's next request is refused; it says why and stops.
        revoked = api.post(
            f"orchestrators/{orchestrator['id']}/revoke-certificate/", json={"reason": 1}
        )
        assert revoked.status_code == 200, revoked.text
        assert "revoked" in revoked.json()["last_error"]
        assert agent.process is not None
        wait_for(
            lambda: agent.process.poll() is not None,
            timeout=60,
            what=f"the agent to stop after the revocation\n{agent.log()[-3000:]}",
        )
        assert agent.process.returncode == 3
        assert REVOKED in agent.log()
        assert orchestrator_named(api, NAME)["status"] == "approved"  # revocation alone

    # Whoever holds the key is refused a session, and told why.
    refused = httpx.post(
        f"{renewing_platform.url}/api/orchestrator/v1/session",
        json=session_assertion(key, orchestrator["id"], int(time.time()) + 5),
        timeout=30,
    )
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert error["code"] == "identity_rejected"
    assert error["message"] == "this orchestrator's certificate was revoked"
