"""Store-type discovery in the agent (orchestrators/agent/store_types.py)."""

from __future__ import annotations

from orchestrators.agent.store_types import capabilities, load_store_types
from orchestrators.stores.pem import PemStore


def test_store_types_include_the_builtin_pem_store() -> None:
    store_types = load_store_types()

    assert store_types["PEM"] is PemStore
    assert "PEM.Inventory" in capabilities(store_types)
    assert capabilities({"PEM": PemStore}) == [
        "PEM.Add",
        "PEM.Create",
        "PEM.Discovery",
        "PEM.Inventory",
        "PEM.Reenrollment",
        "PEM.Remove",
    ]
