"""Store passwords the platform never holds: a real agent process resolves references from
`pass` (the example provider, against the real tool), its environment and a 0600 file, and
inventories PKCS#12 stores opened with them; a dump of every table of the live platform's
database (and its raw files) holds none of the passwords; a reference the agent cannot
resolve fails the job at once, naming the reference and not a value."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from tests.certs import issue
from tests.e2e.conftest import (
    AgentProcess,
    LivePlatform,
    inventory_finished,
    orchestrator_approved,
)
from tests.e2e.management import store_inventory, store_made
from tests.servers.password_store import password_store

pytestmark = pytest.mark.e2e

SECRETS = {
    "pass": "p12-from-pass-7Qx",
    "env": "p12-from-env-4Kd",
    "file": "p12-from-file-9Wz",
}


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened


@pytest.fixture
def api(live_platform: LivePlatform) -> Iterator[httpx.Client]:
    with live_platform.api() as client:
        yield client


def _keystore(path: Path, password: str, name: str) -> str:
    leaf = issue(name, sans=(name,), days=120)
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"web", leaf.key, leaf.certificate, None, BestAvailableEncryption(password.encode())
        )
    )
    return leaf.sha256


def test_store_passwords_resolved_on_the_agent_never_reach_the_platform(
    live_platform: LivePlatform,
    api: httpx.Client,
    agent_factory: Callable[..., AgentProcess],
    tmp_path: Path,
    stack: ExitStack,
) -> None:
    store = stack.enter_context(password_store(tmp_path / "pass"))
    store.insert("certyard/web-p12", SECRETS["pass"])
    secret_file = tmp_path / "p12.pass"
    secret_file.write_text(SECRETS["file"] + "\n")
    secret_file.chmod(0o600)
    agent = agent_factory("secret-agent")
    agent.env.update({**store.env, "CERTYARD_P12_PASSWORD": SECRETS["env"]})
    agent.start()
    orchestrator = orchestrator_approved(api, "secret-agent")

    references = {
        "pass": "ref+agent:pass:certyard/web-p12",
        "env": "ref+agent:env:CERTYARD_P12_PASSWORD",
        "file": f"ref+agent:file:{secret_file}",
    }
    for provider, reference in references.items():
        path = tmp_path / f"{provider}.p12"
        leaf = _keystore(path, SECRETS[provider], f"{provider}.secrets.e2e.test")
        made = store_made(api, orchestrator["id"], "PKCS12", str(path), password=reference)
        assert made["password_reference"] == reference and made["has_password"] is True
        job = inventory_finished(api, made["id"], agent)
        assert job["state"] == "succeeded", (provider, job["message"], agent.log()[-2000:])
        assert store_inventory(api, made["id"]) == {"web": leaf}, provider

    # A reference the agent cannot resolve: one attempt, the reference named.
    absent_path = tmp_path / "absent-ref.p12"
    _keystore(absent_path, "unused-password-1", "absent.secrets.e2e.test")
    missing = store_made(
        api,
        orchestrator["id"],
        "PKCS12",
        str(absent_path),
        password="ref+agent:env:CERTYARD_NOT_SET",
    )
    failed = inventory_finished(api, missing["id"], agent)
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert "ref+agent:env:CERTYARD_NOT_SET is unavailable" in failed["message"]
    assert "environment variable CERTYARD_NOT_SET is not set" in failed["message"]

    # Every table, and the database's files as bytes: no password, only references.
    database = live_platform.data_dir / "certyard.sqlite3"
    with sqlite3.connect(database) as connection:
        dump = "\n".join(connection.iterdump())
    raw = b"".join(path.read_bytes() for path in live_platform.data_dir.glob("certyard.sqlite3*"))
    logs = live_platform.log() + agent.log()
    for secret in SECRETS.values():
        assert secret not in dump and secret.encode() not in raw and secret not in logs
