"""A database of the previous release upgrades in place: every store and store type kept,
the built-in types made from their declarations, PEM stores' properties migrated."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from certyard.fleet.models import Orchestrator

BEFORE = [("inventory", "0010_store_groups_and_grant_all")]
AFTER = [("inventory", "0012_builtin_store_types_declared")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_previous_release_upgrades_with_every_row_kept() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    try:
        store_type = old.get_model("inventory", "CertificateStoreType")
        store_model = old.get_model("inventory", "CertificateStore")
        pem = store_type.objects.get(short_name="PEM")
        custom = store_type.objects.create(
            short_name="CUSTOM",
            name="Made by hand",
            properties=[{"name": "depth", "type": "int", "required": False, "default": 2}],
        )
        # The fleet app is not migrated back: its rows are made with today's model.
        orchestrator = Orchestrator.objects.create(
            name="old-agent", client_machine="old.example.test", status="approved"
        )
        pem_store = store_model.objects.create(
            store_type=pem,
            client_machine="old.example.test",
            store_path="/etc/ssl/old",
            orchestrator_id=orchestrator.pk,
            properties={"recursive": True},
        )
        custom_store = store_model.objects.create(
            store_type=custom,
            client_machine="old.example.test",
            store_path="/srv/custom",
            orchestrator_id=orchestrator.pk,
            properties={"depth": 5},
        )

        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps
        store_type = new.get_model("inventory", "CertificateStoreType")
        store_model = new.get_model("inventory", "CertificateStore")

        assert set(store_type.objects.values_list("short_name", flat=True)) == {
            "PEM",
            "PKCS12",
            "JKS",
            "JCEKS",
            "TLS",  # the built-ins this release declares
            "CUSTOM",
        }
        pem = store_type.objects.get(short_name="PEM")
        assert pem.builtin and pem.schema_version == 2 and pem.declaration["short_name"] == "PEM"
        kept = store_model.objects.get(pk=pem_store.pk)
        assert kept.properties["recursive"] is True
        assert kept.properties["key_file"] == "same"  # new: its default
        assert kept.property_problems == [] and kept.endpoint_host == ""
        untouched = store_model.objects.get(pk=custom_store.pk)
        assert untouched.properties == {"depth": 5}
        assert store_type.objects.get(short_name="CUSTOM").declaration == {}
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        # The tables were dropped and made again: content type ids cached before are stale,
        # and the next test's flush would try to create them again.
        ContentType.objects.clear_cache()
