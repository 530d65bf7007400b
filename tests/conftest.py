"""Fixtures shared by the platform's tests."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.certs import Issued, agent_key, csr_pem, issue, session_assertion

# The handlers that misbehave on purpose (tests/plugins) are declared in a group of their
# own; this process and the platforms the end-to-end tests start read it too.
os.environ["CERTYARD_EXTRA_HANDLER_GROUPS"] = "certyard.handlers.tests"
# Likewise the store type that exists only for the tests (KEYLESS), for the agents they start.
os.environ["CERTYARD_EXTRA_STORE_TYPE_GROUPS"] = "certyard.store_types.tests"


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Throttle counters live in the shared cache (the database, or Redis); each test
    starts with none spent, under cache keys of its own. No clearing: that would need the
    database in every test, and would wipe what a concurrent run keeps in the same Redis."""
    from django.conf import settings
    from django.test import override_settings

    fresh = f"test-{uuid.uuid4().hex}"
    caches = {
        alias: {**config, "KEY_PREFIX": f"{config.get('KEY_PREFIX', '')}{fresh}"}
        for alias, config in settings.CACHES.items()
    }
    with override_settings(CACHES=caches):
        yield


@pytest.fixture(scope="session")
def ca() -> Issued:
    return issue("Certyard Test Root CA", ca=True, days=3650)


@dataclass
class RegisteredAgent:
    """An orchestrator registered through the service, with the key it proved."""

    orchestrator: object
    key: ec.EllipticCurvePrivateKey
    _last_issued_at: int = 0

    def assertion(self) -> dict[str, object]:
        self._last_issued_at = max(int(time.time()), self._last_issued_at + 1)
        return session_assertion(self.key, str(self.orchestrator.pk), self._last_issued_at)


@pytest.fixture
def register_agent(db):
    """Register an orchestrator (approved unless told otherwise) with PEM.Inventory."""
    from certyard.fleet.models import Orchestrator
    from certyard.fleet.services import orchestrator_register, registration_token_create

    def register(name: str = "agent-1", *, approved: bool = True) -> RegisteredAgent:
        _, token = registration_token_create(
            description="test", valid_for=dt.timedelta(hours=1), approve_on_register=approved
        )
        key = agent_key()
        registration = orchestrator_register(
            token=token,
            name=name,
            client_machine=f"{name}.example.test",
            agent_version="test",
            capabilities=["PEM.Inventory"],
            client_parameters={},
            csr_pem=csr_pem(key, name),
            source_address="127.0.0.1",
        )
        assert registration.orchestrator.status == (
            Orchestrator.Status.APPROVED if approved else Orchestrator.Status.NEW
        )
        return RegisteredAgent(registration.orchestrator, key)

    return register


@pytest.fixture
def pem_store(db):
    """Make a PEM store owned by an orchestrator."""
    from certyard.inventory.models import CertificateStoreType
    from certyard.inventory.services import store_create

    def make(orchestrator, path: str = "/etc/ssl/certs"):
        return store_create(
            store_type=CertificateStoreType.objects.get(short_name="PEM"),
            client_machine=orchestrator.client_machine,
            store_path=path,
            orchestrator=orchestrator,
        )

    return make


def entry(alias: str, *chain: Issued, private_key: bool = False) -> dict[str, object]:
    """An inventory entry as the agent reports it."""
    return {"alias": alias, "private_key": private_key, "certificates": [c.pem for c in chain]}
