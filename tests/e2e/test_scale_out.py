"""The core loop on the scale-out setup: PostgreSQL, Redis as the django-q2 broker,
several web processes. Same code path as the embedded setup, chosen by environment alone."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from tests.certs import issue
from tests.e2e.conftest import (
    LivePlatform,
    certificates_listed,
    orchestrator_named,
    scheduled_job_finished,
    start_platform,
    stop_platform,
)

pytestmark = pytest.mark.e2e

POSTGRES_SERVER = os.environ.get(
    "CERTYARD_TEST_POSTGRES_SERVER", "postgres://postgres@127.0.0.1:5432"
)
REDIS_SERVER = os.environ.get("CERTYARD_TEST_REDIS_SERVER", "redis://127.0.0.1:6379")
REDIS_DB = 11  # a database of its own on the shared server, emptied before and after


@pytest.fixture(scope="module")
def scale_out_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    database = f"certyard_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    broker = f"{REDIS_SERVER}/{REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    platform = start_platform(
        tmp_path_factory.mktemp("scale-out"),
        env_overrides={
            "DATABASE_URL": f"{POSTGRES_SERVER}/{database}",
            "CERTYARD_BROKER_URL": broker,
            "CERTYARD_WORKERS": "2",
        },
        web_workers=2,
    )
    try:
        yield platform
    finally:
        stop_platform(platform)
        redis.Redis.from_url(broker).flushdb()
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_scheduled_inventory_runs_through_postgres_and_the_redis_broker(
    scale_out_platform: LivePlatform, agent_factory, tmp_path: Path
) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    certificates = {name: issue(f"{name}.scale.e2e.test") for name in ("alpha", "beta")}
    for name, issued in certificates.items():
        (folder / f"{name}.pem").write_text(issued.pem)
    agent = agent_factory("scale-agent", platform=scale_out_platform)
    agent.start()

    with scale_out_platform.api() as api:
        orchestrator = orchestrator_named(api, "scale-agent")
        assert api.post(f"orchestrators/{orchestrator['id']}/approve/").status_code == 200
        store = api.post(
            "stores/",
            json={
                "store_type": "PEM",
                "client_machine": "scale-agent.e2e.test",
                "store_path": str(folder),
                "orchestrator": orchestrator["id"],
                "inventory_interval_minutes": 60,
            },
        ).json()
        # The schedule becomes a job only through the worker, whose tasks go through Redis.
        job = scheduled_job_finished(api, store["id"], agent)
        assert job["state"] == "succeeded", job
        found = {c["common_name"]: c["sha256"] for c in certificates_listed(api, store=store["id"])}
        assert found == {f"{n}.scale.e2e.test": c.sha256 for n, c in certificates.items()}
        # The cluster reports itself through its broker: Redis, not the database.
        broker = redis.Redis.from_url(scale_out_platform.env["CERTYARD_BROKER_URL"])
        assert broker.keys("django_q:certyard:cluster*")
    assert agent.stop() == 0
