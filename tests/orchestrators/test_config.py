from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrators.agent.config import (
    AgentConfig,
    NotRegistered,
    ensure_config_dir,
    load_config,
    save_registration,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_registration_is_saved_private_and_loads_back(
    tmp_path: Path, agent_key: ec.EllipticCurvePrivateKey, ca_certificate: object
) -> None:
    config_dir = tmp_path / "home" / "agent"
    config = AgentConfig(
        config_dir=config_dir,
        platform_url="https://certyard.example",
        orchestrator_id="orc-1",
        name="web-01",
        client_machine="web-01.example",
        verify_tls=False,
    )

    save_registration(config, private_key=agent_key, certificate="CERT\n", ca_chain="CA\n")

    assert mode(config_dir) == 0o700
    for name in ("key.pem", "cert.pem", "ca.pem", "agent.json"):
        assert mode(config_dir / name) == 0o600
    assert not [p for p in config_dir.iterdir() if p.name.endswith(".tmp")]
    assert "PRIVATE" not in (config_dir / "agent.json").read_text()
    assert json.loads((config_dir / "agent.json").read_text())["verify_tls"] is False
    loaded = load_config(config_dir)
    assert loaded == config
    assert loaded.private_key().private_numbers() == agent_key.private_numbers()


def test_loose_existing_directory_is_tightened(tmp_path: Path) -> None:
    config_dir = tmp_path / "agent"
    config_dir.mkdir(mode=0o755)
    config_dir.chmod(0o755)

    ensure_config_dir(config_dir)

    assert mode(config_dir) == 0o700


def test_empty_directory_is_not_registered(tmp_path: Path) -> None:
    with pytest.raises(NotRegistered, match="not registered: run `certyard-orchestrator register`"):
        load_config(tmp_path)
