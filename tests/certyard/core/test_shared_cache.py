"""The shared cache the rate limits count in: the database by default, Redis when
CERTYARD_REDIS_URL names one. Two processes are tested in tests/e2e/test_rate_limit_shared.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings
from rest_framework.test import APIClient

from certyard.settings import CACHE_TABLE, cache_settings
from tests.certyard.conftest import AGENT, error_of

ROOT = Path(__file__).resolve().parents[3]
REDIS_SERVER = os.environ.get("CERTYARD_TEST_REDIS_SERVER", "redis://127.0.0.1:6379")
REDIS_URL = f"{REDIS_SERVER}/12"  # a database of its own; keys under a prefix of each test's


def _caches_in_a_fresh_process(**env: str) -> dict:
    """settings.CACHES as a new process computes it from its environment."""
    environment = {k: v for k, v in os.environ.items() if k != "CERTYARD_REDIS_URL"}
    environment.update(env, DJANGO_SETTINGS_MODULE="certyard.settings")
    code = "import json; from django.conf import settings; print(json.dumps(settings.CACHES))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**environment, "PYTHONPATH": f"{ROOT / 'platform'}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_the_database_cache_by_default_and_redis_when_configured() -> None:
    embedded = _caches_in_a_fresh_process()["default"]
    assert embedded["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert embedded["LOCATION"] == CACHE_TABLE

    scaled = _caches_in_a_fresh_process(CERTYARD_REDIS_URL=REDIS_URL)["default"]
    assert scaled["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert scaled["LOCATION"] == REDIS_URL
    # Blank is unset, as in an env file with the line left empty.
    blank = _caches_in_a_fresh_process(CERTYARD_REDIS_URL=" ")["default"]
    assert blank["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"


@pytest.mark.django_db
def test_the_database_cache_table_comes_with_migrate() -> None:
    from django.db import connection

    assert CACHE_TABLE in connection.introspection.table_names()
    cache = caches["default"]
    cache.set("probe", {"n": 1}, 30)
    assert cache.get("probe") == {"n": 1}


def test_rate_limits_count_in_redis_when_configured() -> None:
    """The throttle's history is a key on the Redis server, one per client address: every
    web process reads and writes the same one, so a limit holds across them."""
    prefix = f"certyard-test-{uuid.uuid4().hex}"
    config = cache_settings(REDIS_URL)
    config["default"]["KEY_PREFIX"] = prefix
    server = redis.Redis.from_url(REDIS_URL)
    try:
        with override_settings(CACHES=config):
            from rest_framework.throttling import ScopedRateThrottle

            allowed = int(ScopedRateThrottle.THROTTLE_RATES["agent-register"].split("/")[0])
            # The body is refused (400) before any database work: only the cache is used.
            answers = [
                APIClient().post(f"{AGENT}register", [], format="json") for _ in range(allowed + 2)
            ]
            keys = server.keys(f"{prefix}:*")
        assert [a.status_code for a in answers[:allowed]] == [400] * allowed
        assert [a.status_code for a in answers[allowed:]] == [429, 429]
        assert error_of(answers[allowed])["code"] == "throttled"
        assert int(answers[allowed]["Retry-After"]) > 0
        # One history, kept per client address, in Redis.
        assert [k.decode() for k in keys] == [f"{prefix}:1:throttle_agent-register_127.0.0.1"]
    finally:
        if stale := server.keys(f"{prefix}:*"):
            server.delete(*stale)


@pytest.mark.django_db
def test_the_limit_is_per_client_address_and_x_forwarded_for_does_not_change_it() -> None:
    """Keyed by the peer's address (REMOTE_ADDR): another address has its own count, and a
    made-up X-Forwarded-For is no way around the limit (CERTYARD_TRUSTED_PROXIES is 0)."""
    from rest_framework.throttling import ScopedRateThrottle

    allowed = int(ScopedRateThrottle.THROTTLE_RATES["agent-register"].split("/")[0])
    client = APIClient()

    def post(address: str, **headers: str) -> int:
        return client.post(
            f"{AGENT}register", [], format="json", REMOTE_ADDR=address, **headers
        ).status_code

    assert [post("192.0.2.1") for _ in range(allowed)] == [400] * allowed
    assert post("192.0.2.1") == 429
    assert post("192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.7") == 429
    assert post("192.0.2.2") == 400
