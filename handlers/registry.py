"""Discovering handler classes from the ``certyard.handlers`` entry points.

Built-in handlers are declared in Certyard's own ``pyproject.toml`` exactly as a third
party declares its own, so there is one way in. A broken entry point (its package
half-installed, an import error, not a handler class) is logged and listed with its error;
it never stops the platform from starting.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from handlers.base import (
    ENTRY_POINT_GROUP,
    Handler,
    HandlerKind,
    MetadataGenerator,
    metadata_field_declarations_check,
)
from handlers.parameters import declarations_check

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HandlerClass:
    """One entry point of the ``certyard.handlers`` group, loaded or not.

    Attributes:
        name: The entry point's name: what a registration stores to find the class again.
        target: ``module:Class`` as declared.
        distribution, version: The installed package that declared it.
        cls: The class, or None when it could not be loaded (``error`` says why).
    """

    name: str
    target: str
    distribution: str
    version: str
    cls: type[Handler] | None
    error: str = ""

    @property
    def kind(self) -> HandlerKind | None:
        return self.cls.kind if self.cls is not None else None

    @property
    def label(self) -> str:
        if self.cls is None:
            return self.name
        return self.cls.label or self.cls.__name__

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.cls.__doc__ or "") if self.cls is not None else ""


def _load(entry_point: EntryPoint) -> HandlerClass:
    distribution = entry_point.dist.name if entry_point.dist else ""
    version = entry_point.dist.version if entry_point.dist else ""

    def broken(error: str) -> HandlerClass:
        logger.error(
            "handler entry point %s (%s) skipped: %s", entry_point.name, distribution, error
        )
        return HandlerClass(entry_point.name, entry_point.value, distribution, version, None, error)

    try:
        cls = entry_point.load()
    except Exception as exc:  # any import failure of a third party's package
        return broken(f"cannot be imported: {type(exc).__name__}: {exc}")
    if not (inspect.isclass(cls) and issubclass(cls, Handler) and not inspect.isabstract(cls)):
        return broken("is not a concrete subclass of one of the contracts in handlers.base")
    try:
        declarations_check(cls.parameters)
    except (TypeError, ValueError) as exc:
        return broken(f"declares invalid parameters: {exc}")
    if issubclass(cls, MetadataGenerator):
        try:
            metadata_field_declarations_check(cls.fields)
        except TypeError as exc:
            return broken(f"declares invalid metadata fields: {exc}")
    return HandlerClass(entry_point.name, entry_point.value, distribution, version, cls)


# Further groups to read, comma-separated: Certyard's own tests add the handlers that
# misbehave on purpose this way, so a platform started from the same environment by
# `make run` never offers them.
EXTRA_GROUPS_VARIABLE = "CERTYARD_EXTRA_HANDLER_GROUPS"


def _groups() -> list[str]:
    extra = os.environ.get(EXTRA_GROUPS_VARIABLE, "")
    return [ENTRY_POINT_GROUP, *(g.strip() for g in extra.split(",") if g.strip())]


@cache
def handler_classes() -> dict[str, HandlerClass]:
    """Every handler entry point installed, by name, loaded once per process."""
    found: dict[str, HandlerClass] = {}
    declared = [ep for group in _groups() for ep in entry_points(group=group)]
    for entry_point in declared:
        if entry_point.name in found:
            logger.error(
                "handler entry point %s is declared twice; the first one found is used",
                entry_point.name,
            )
            continue
        found[entry_point.name] = _load(entry_point)
    return dict(sorted(found.items()))


def handler_class(name: str) -> HandlerClass | None:
    """The entry point of that name, or None when no installed package declares it."""
    return handler_classes().get(name)
