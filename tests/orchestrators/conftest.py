"""Fixtures for the agent's tests: real keys and certificates from tests/certs.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrators.agent.config import AgentConfig, save_registration
from tests.certs import Issued
from tests.certs import agent_key as new_agent_key
from tests.certs import issue as issue_certificate


@pytest.fixture
def ca_certificate(ca: Issued) -> Issued:
    """The shared test root CA (the ``ca`` fixture in tests/conftest.py)."""
    return ca


@pytest.fixture
def issue(ca: Issued) -> Callable[[str], Issued]:
    """Issue a leaf certificate for a common name, signed by the test CA."""

    def make(common_name: str) -> Issued:
        return issue_certificate(common_name, issuer=ca)

    return make


@pytest.fixture
def agent_key() -> ec.EllipticCurvePrivateKey:
    return new_agent_key()


@pytest.fixture
def agent_home(tmp_path: Path) -> Path:
    """A registered agent's configuration directory, with one store root."""
    home = tmp_path / "home"
    (tmp_path / "first").mkdir()
    save_registration(
        AgentConfig(
            config_dir=home,
            platform_url="http://platform.test",
            orchestrator_id="orch-1",
            name="agent",
            client_machine="here",
            store_roots=(str(tmp_path / "first"),),
        ),
        private_key=new_agent_key(),
        certificate=None,
        ca_chain=None,
    )
    return home
