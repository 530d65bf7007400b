"""Store-type discovery: which :class:`~orchestrators.sdk.StoreTypeExtension` runs each store.

The agent's side of the store-type contract. ``orchestrators.sdk`` only defines what an
extension is; this module knows the implementations (the built-ins in
``orchestrators.stores`` and the ``certyard.store_types`` entry points), so the contract never
imports what implements it (docs/architecture.md, Architecture checks).
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points
from typing import Any

from orchestrators.declarations import SHORT_NAME_PATTERN, StoreTypeDeclaration
from orchestrators.protocol import StoreOperation, capability_name
from orchestrators.sdk import ENTRY_POINT_GROUP, StoreTypeExtension
from orchestrators.stores.jks import JceksStore, JksStore
from orchestrators.stores.pem import PemStore
from orchestrators.stores.pkcs12 import Pkcs12Store

logger = logging.getLogger(__name__)


def _builtin_store_types() -> dict[str, type[StoreTypeExtension]]:
    return {
        PemStore.short_name: PemStore,
        JksStore.short_name: JksStore,
        JceksStore.short_name: JceksStore,
        Pkcs12Store.short_name: Pkcs12Store,
    }


# Further entry-point groups to read, comma-separated: Certyard's own tests add store types
# that exist only to be tested this way, so an agent started from the same environment by
# `make run` never offers them.
EXTRA_GROUPS_VARIABLE = "CERTYARD_EXTRA_STORE_TYPE_GROUPS"


def _groups() -> list[str]:
    extra = os.environ.get(EXTRA_GROUPS_VARIABLE, "")
    return [ENTRY_POINT_GROUP, *(g.strip() for g in extra.split(",") if g.strip())]


def load_store_types() -> dict[str, type[StoreTypeExtension]]:
    """The available store types by short name: the built-ins plus the ``certyard.store_types``
    entry points (which win on a name clash), and those of the groups named in
    ``CERTYARD_EXTRA_STORE_TYPE_GROUPS``.

    The built-ins are always included, so an agent run from a source checkout works without
    being installed. A plugin that fails to load, or is not a :class:`StoreTypeExtension`, is
    logged and skipped rather than stopping the agent.
    """
    store_types = _builtin_store_types()
    for entry_point in (ep for group in _groups() for ep in entry_points(group=group)):
        try:
            loaded = entry_point.load()
        except Exception:
            logger.exception(
                "cannot load store type plugin %r (%s)", entry_point.name, entry_point.value
            )
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, StoreTypeExtension)):
            logger.error(
                "store type plugin %r (%s) is not a StoreTypeExtension subclass; skipped",
                entry_point.name,
                entry_point.value,
            )
            continue
        short_name = getattr(loaded, "short_name", entry_point.name)
        if short_name != entry_point.name:
            logger.warning(
                "store type plugin %r declares short_name %r; using %r",
                entry_point.name,
                short_name,
                short_name,
            )
        store_types[short_name] = loaded
    return store_types


def capabilities(store_types: dict[str, type[StoreTypeExtension]]) -> list[str]:
    """The capability strings for ``store_types``, sorted (``["PEM.Inventory", ...]``).

    Discovery is the agent's own work (``orchestrators.stores.discovery`` classifies files
    by content), not a store type method: it is offered for each store type whose
    declaration lists it."""
    return sorted(
        capability_name(short_name, operation)
        for short_name, store_type in store_types.items()
        for operation in _offered(store_type)
    )


def _offered(store_type: type[StoreTypeExtension]) -> set[StoreOperation]:
    operations = set(store_type.operations)
    declaration = getattr(store_type, "declaration", None)
    if isinstance(declaration, StoreTypeDeclaration):
        operations |= declaration.operations & {StoreOperation.DISCOVERY}
    return operations


def declarations_wire(store_types: dict[str, type[StoreTypeExtension]]) -> list[dict[str, Any]]:
    """The body items of ``POST store-types``: each store type's declaration, or for one
    that declares nothing, a minimal one from its short name and operations. A short name
    the platform could not accept is logged and left out."""
    declarations = []
    for short_name, store_type in sorted(store_types.items()):
        declaration = getattr(store_type, "declaration", None)
        if not isinstance(declaration, StoreTypeDeclaration):
            if not SHORT_NAME_PATTERN.match(short_name):
                logger.warning("store type %r cannot be declared: invalid short name", short_name)
                continue
            declaration = StoreTypeDeclaration(
                short_name=short_name,
                name=short_name,
                operations=frozenset(store_type.operations),
            )
        declarations.append(declaration.to_wire())
    return declarations
