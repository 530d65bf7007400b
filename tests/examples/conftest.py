"""The platform fixtures the example tests use (``register_agent`` and ``pem_store`` come
from tests/conftest.py, which applies here too)."""

from tests.certyard.conftest import agent, make_token, store

__all__ = ["agent", "make_token", "store"]
