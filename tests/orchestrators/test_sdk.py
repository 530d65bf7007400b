from __future__ import annotations

import pytest

from orchestrators.protocol import JobType
from orchestrators.sdk import InventoryEntry, JobConfiguration


def test_job_configuration_from_wire() -> None:
    job = JobConfiguration.from_wire(
        {
            "job_id": "j1",
            "type": "inventory",
            "attempt": 2,
            "payload": {},
            "store": {
                "id": "s1",
                "store_type": "PEM",
                "client_machine": "web-01",
                "store_path": "/etc/ssl/certs",
                "properties": {"recursive": True},
                "password": "hunter2",
            },
        }
    )

    assert job.type is JobType.INVENTORY
    assert job.attempt == 2
    assert job.store.password == "hunter2"
    assert job.store.properties == {"recursive": True}
    assert "hunter2" not in repr(job)


def test_job_configuration_from_wire_rejects_unknown_job_types() -> None:
    with pytest.raises(ValueError, match="unknown job type 'tls_scan'"):
        JobConfiguration.from_wire({"id": "j1", "type": "tls_scan", "store": {}})


def test_inventory_entry_wire_shape() -> None:
    entry = InventoryEntry("web.pem", True, ["LEAF", "CA"])

    assert entry.to_wire() == {
        "alias": "web.pem",
        "private_key": True,
        "certificates": ["LEAF", "CA"],
    }
