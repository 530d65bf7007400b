"""The platform fixtures the kit's own tests use to compare its builders with the real
flows (``register_agent`` and ``pem_store`` come from tests/conftest.py)."""

from tests.certyard.conftest import agent, make_token, store

__all__ = ["agent", "make_token", "store"]
