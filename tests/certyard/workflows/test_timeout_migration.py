"""Upgrading keeps every registration; registration handlers stored above their shared
budget (the old default, 30 s) are brought within it, every other timeout is kept.

The migration's data step runs on today's schema (its only schema change makes a default
None, which old rows never see). Migrating the database back and forth here, as the
inventory's upgrade test does, would need a serialized rollback, which breaks once an
earlier transactional test has flushed the database and content types came back with
other ids.
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from certyard.workflows.models import HandlerRegistration

MIGRATION = importlib.import_module(
    "certyard.workflows.migrations.0004_registration_timeout_default"
)


@pytest.mark.django_db
def test_registration_handler_timeouts_are_brought_within_the_budget(settings) -> None:
    settings.CERTYARD_REGISTRATION_HANDLERS_SECONDS = 10
    rows = {
        "decider": ("registration", 30),
        "quick decider": ("registration", 4),
        "hook": ("event", 300),
        "ca": ("gateway", 30),
    }
    for name, (kind, timeout) in rows.items():
        HandlerRegistration.objects.create(
            name=name, handler="test.record", kind=kind, timeout_seconds=1
        )
        # As an old release stored it: save() would not let a registration handler keep 30.
        HandlerRegistration.objects.filter(name=name).update(timeout_seconds=timeout)

    MIGRATION.registration_timeouts_within_budget(apps, None)

    assert dict(HandlerRegistration.objects.values_list("name", "timeout_seconds")) == {
        "decider": 10,
        "quick decider": 4,
        "hook": 300,
        "ca": 30,
    }
