"""Upgrading keeps every registration; registration handlers stored above their shared
budget (the old default, 30 s) are brought within it, every other timeout is kept."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("workflows", "0003_gateway_kind")]
AFTER = [("workflows", "0004_registration_timeout_default")]
MODEL = ("workflows", "HandlerRegistration")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_registration_handler_timeouts_are_brought_within_the_budget() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps.get_model(*MODEL)
        rows = {
            "decider": ("registration", 30),
            "quick decider": ("registration", 4),
            "hook": ("event", 300),
            "ca": ("gateway", 30),
        }
        for name, (kind, timeout) in rows.items():
            old.objects.create(name=name, handler="test.record", kind=kind, timeout_seconds=timeout)

        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps.get_model(*MODEL)
        assert dict(new.objects.values_list("name", "timeout_seconds")) == {
            "decider": 10,
            "quick decider": 4,
            "hook": 300,
            "ca": 30,
        }
    finally:
        # Back to the latest state of every app, as the other tests expect.
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        ContentType.objects.clear_cache()
