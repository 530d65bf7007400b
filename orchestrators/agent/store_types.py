"""Store-type discovery: which :class:`~orchestrators.sdk.StoreTypeExtension` runs each store.

The agent's side of the store-type contract. ``orchestrators.sdk`` only defines what an
extension is; this module knows the implementations (the built-ins in
``orchestrators.stores`` and the ``certyard.store_types`` entry points), so the contract never
imports what implements it (docs/architecture.md, Architecture checks).
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from orchestrators import __version__
from orchestrators.declarations import (
    SHORT_NAME_PATTERN,
    DeclarationError,
    StoreTypeDeclaration,
    declaration_from_wire,
)
from orchestrators.protocol import StoreOperation, capability_name
from orchestrators.sdk import ENTRY_POINT_GROUP, StoreTypeExtension
from orchestrators.stores.jks import JceksStore, JksStore
from orchestrators.stores.pem import PemStore
from orchestrators.stores.pkcs12 import Pkcs12Store
from orchestrators.stores.tls_scan import TlsScanStore

logger = logging.getLogger(__name__)


def _builtin_store_types() -> dict[str, type[StoreTypeExtension]]:
    return {
        PemStore.short_name: PemStore,
        JksStore.short_name: JksStore,
        JceksStore.short_name: JceksStore,
        Pkcs12Store.short_name: Pkcs12Store,
        TlsScanStore.short_name: TlsScanStore,
    }


# Further entry-point groups to read, comma-separated: Certyard's own tests add store types
# that exist only to be tested this way, so an agent started from the same environment by
# `make run` never offers them.
EXTRA_GROUPS_VARIABLE = "CERTYARD_EXTRA_STORE_TYPE_GROUPS"


def _groups() -> list[str]:
    extra = os.environ.get(EXTRA_GROUPS_VARIABLE, "")
    return [ENTRY_POINT_GROUP, *(g.strip() for g in extra.split(",") if g.strip())]


# The method of StoreTypeExtension each operation needs (a reenrollment installs with add);
# inventory is abstract, discovery is the agent's own work.
_OPERATION_METHODS = {
    StoreOperation.ADD: "add",
    StoreOperation.REMOVE: "remove",
    StoreOperation.CREATE: "create",
    StoreOperation.REENROLLMENT: "add",
}


@dataclass(frozen=True, slots=True)
class StoreTypeReport:
    """What the agent found for one store type: an entry point, or a built-in.

    Attributes:
        name: The entry point's name (a built-in's short name): the short name it is
            offered under, since the names must agree.
        target: ``module:Class`` as declared.
        group: The entry-point group (``"built in"`` for a built-in not declared as one).
        distribution, version: The installed package that declared it.
        short_name: The class's ``short_name`` once loaded ("" when it could not be).
        operations: The operations it offers, sorted.
        problems: Each problem, a sentence. ``refused`` ones keep it from being offered at
            all; the others (an operation listed but not implemented) fail its jobs.
        refused: Whether the agent leaves it out.
    """

    name: str
    target: str
    group: str
    distribution: str
    version: str
    short_name: str = ""
    operations: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    refused: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "store_type",
            "class": self.target,
            "group": self.group,
            "package": self.distribution,
            "version": self.version,
            "short_name": self.short_name,
            "operations": list(self.operations),
            "problems": list(self.problems),
            "refused": self.refused,
        }


def _class_problems(name: str, loaded: type[StoreTypeExtension]) -> tuple[list[str], list[str]]:
    """``(refusals, problems)`` of a loaded store type class declared under ``name``.

    Refused: not agreeing on the name (the capabilities the agent advertises, the record the
    platform creates from the declaration and the jobs it sends would name different store
    types), an invalid declaration, no operations. Only reported: an operation listed whose
    method is the contract's default."""
    refusals: list[str] = []
    problems: list[str] = []
    short_name = getattr(loaded, "short_name", None)
    if short_name != name:
        refusals.append(
            f"its class's short_name {short_name!r} disagrees with the entry point's name "
            f"{name!r}: set short_name = {name!r}, or remove it (the entry point's name is used)"
        )
    if not SHORT_NAME_PATTERN.match(name):
        refusals.append(
            f"{name!r} is not a valid short name (a letter, then up to 39 letters, digits, "
            "'_', '.' or '-')"
        )
    operations = getattr(loaded, "operations", None)
    if not isinstance(operations, (set, frozenset)) or not operations:
        refusals.append("it declares no operations (a frozenset of StoreOperation)")
        operations = frozenset()
    declaration = getattr(loaded, "declaration", None)
    if declaration is not None:
        if not isinstance(declaration, StoreTypeDeclaration):
            refusals.append(
                "its declaration is not an orchestrators.declarations.StoreTypeDeclaration"
            )
        else:
            if declaration.short_name != name:
                refusals.append(
                    f"its declaration's short_name {declaration.short_name!r} disagrees with "
                    f"the entry point's name {name!r}"
                )
            try:
                declaration_from_wire(declaration.to_wire())
            except (DeclarationError, TypeError, ValueError) as exc:
                refusals.append(f"its declaration is invalid: {exc}")
    for operation in sorted(operations, key=str):
        method = _OPERATION_METHODS.get(operation)
        if method and getattr(loaded, method, None) is getattr(StoreTypeExtension, method):
            problems.append(
                f"it lists the operation {operation} but does not implement {method}(): "
                "its jobs would fail"
            )
    return refusals, problems


def _builtin_report(short_name: str, store_type: type[StoreTypeExtension]) -> StoreTypeReport:
    refusals, problems = _class_problems(short_name, store_type)
    return StoreTypeReport(
        name=short_name,
        target=f"{store_type.__module__}:{store_type.__qualname__}",
        group="built in",
        distribution="certyard",
        version=__version__,
        short_name=short_name,
        operations=tuple(sorted(str(op) for op in _offered(store_type))),
        problems=tuple(refusals + problems),
    )


def _entry_point_load(
    entry_point: EntryPoint, group: str
) -> tuple[type[StoreTypeExtension] | None, StoreTypeReport]:
    """Load one entry point as the agent does: the class to offer (None when refused) and
    what was found. A class without ``short_name`` takes the entry point's name."""
    distribution = entry_point.dist.name if entry_point.dist else ""
    version = entry_point.dist.version if entry_point.dist else ""

    def report(loaded: type | None, problems: list[str], refused: bool) -> StoreTypeReport:
        return StoreTypeReport(
            name=entry_point.name,
            target=entry_point.value,
            group=group,
            distribution=distribution,
            version=version,
            short_name=str(getattr(loaded, "short_name", "")) if loaded is not None else "",
            operations=(
                tuple(sorted(str(op) for op in _offered(loaded)))
                if loaded is not None and not refused
                else ()
            ),
            problems=tuple(problems),
            refused=refused,
        )

    try:
        loaded = entry_point.load()
    except Exception as exc:  # any import failure of a third party's package
        return None, report(None, [f"cannot be imported: {type(exc).__name__}: {exc}"], True)
    if not (isinstance(loaded, type) and issubclass(loaded, StoreTypeExtension)):
        return None, report(
            None, ["is not a subclass of orchestrators.sdk.StoreTypeExtension"], True
        )
    if inspect.isabstract(loaded):
        missing = ", ".join(sorted(loaded.__abstractmethods__))
        return None, report(None, [f"does not implement {missing}()"], True)
    if not hasattr(loaded, "short_name"):
        # Named once, in the entry point: the class takes that name.
        loaded.short_name = entry_point.name
    refusals, problems = _class_problems(entry_point.name, loaded)
    if refusals:
        return None, report(loaded, refusals + problems, True)
    return loaded, report(loaded, problems, False)


def _discovered() -> tuple[dict[str, type[StoreTypeExtension]], list[StoreTypeReport]]:
    store_types = _builtin_store_types()
    reports: dict[str, StoreTypeReport] = {
        name: _builtin_report(name, store_type) for name, store_type in store_types.items()
    }
    from_entry_points: list[StoreTypeReport] = []
    for group in _groups():
        for entry_point in entry_points(group=group):
            loaded, report = _entry_point_load(entry_point, group)
            from_entry_points.append(report)
            if loaded is not None:
                # An entry point wins over the built-in of that name (and a later one over
                # an earlier one, as before).
                store_types[entry_point.name] = loaded
                reports.pop(entry_point.name, None)
    return store_types, [*reports.values(), *from_entry_points]


def store_types_report() -> list[StoreTypeReport]:
    """Every store type the agent finds: the built-ins (those no entry point replaces) and
    each entry point of the groups it reads, loaded as :func:`load_store_types` loads them,
    with its problems. ``certyard-orchestrator extensions`` prints it; the platform's
    ``manage.py certyard_extensions`` runs that command."""
    return _discovered()[1]


def load_store_types() -> dict[str, type[StoreTypeExtension]]:
    """The available store types by short name: the built-ins plus the ``certyard.store_types``
    entry points (which win on a name clash), and those of the groups named in
    ``CERTYARD_EXTRA_STORE_TYPE_GROUPS``.

    The built-ins are always included, so an agent run from a source checkout works without
    being installed. A plugin that fails to load, is not a :class:`StoreTypeExtension`, or
    does not agree on its name is logged and skipped rather than stopping the agent.

    Names: the entry point's name is the store type's short name. A class without
    ``short_name`` takes it; a class whose ``short_name``, or whose declaration's, differs is
    refused (the capabilities it would advertise, the store type the platform would create
    and the jobs it would send would not name one store type).
    """
    store_types, reports = _discovered()
    for report in reports:
        if report.refused:
            logger.error(
                "store type plugin %r (%s, %s) skipped: %s",
                report.name,
                report.target,
                report.distribution or "no package",
                "; ".join(report.problems),
            )
        elif report.problems:
            logger.warning(
                "store type plugin %r (%s): %s",
                report.name,
                report.target,
                "; ".join(report.problems),
            )
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
