"""Store types made from their declarations, and their stores migrated when one changes.

A store type declares itself (``orchestrators.declarations.StoreTypeDeclaration``): an
agent sends the declarations of the store types it carries (``POST store-types``), and the
platform syncs its built-in ones (PEM, PKCS12, JKS, JCEKS) from ``BUILTIN_DECLARATIONS`` after
every ``migrate``. The rules:

- an unknown short name creates the type;
- a known type changes only when the declared ``schema_version`` is greater than the
  recorded one (the same version with other content is ignored and reported: two agents
  disagreeing must not flip the type back and forth);
- a built-in short name is the platform's: an agent's declaration of it is ignored;
- a change migrates every store of the type: new properties get their defaults, a value the
  new declaration no longer allows is kept and flagged on the store
  (``CertificateStore.property_problems``), a removed property is dropped (and logged,
  by name only: its value may be a secret);
- a declaration ignored because it disagrees (an older schema version, or the same one with
  other content), and a type changed by hand (Django admin) after it was declared, are
  recorded on the type (``declaration_warning`` and ``_at``) and shown in Django admin as
  a warning, until a declaration is applied again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.inventory.properties import (
    property_problem,
    spec_from_stored,
    specs_of,
)
from orchestrators.declarations import (
    BUILTIN_DECLARATIONS,
    DeclarationError,
    PasswordStyle,
    PropertySpec,
    StoreTypeDeclaration,
    declaration_from_wire,
    property_value_fits,
)
from orchestrators.protocol import StoreOperation

logger = logging.getLogger(__name__)

# How many store types one ``POST store-types`` may declare.
MAX_DECLARATIONS = 50

IGNORED_BUILT_IN = "built in"


@dataclass(frozen=True, slots=True)
class DeclareResult:
    """What one declaration did; ``to_wire`` is its entry in the agent's answer."""

    short_name: str
    created: bool = False
    updated: bool = False
    migrated_stores: int = 0
    flagged_stores: int = 0
    ignored: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "short_name": self.short_name,
            "created": self.created,
            "updated": self.updated,
            "migrated_stores": self.migrated_stores,
            "flagged_stores": self.flagged_stores,
            "ignored": self.ignored,
        }


def store_type_fields(declaration: StoreTypeDeclaration) -> dict[str, Any]:
    """The store type's columns as the declaration sets them (everything but its name).

    The ``supports_*``, policy and password columns are kept because the rest of the
    platform reads them; the declaration's wire form is kept whole beside them.
    """
    operations = {str(operation) for operation in declaration.operations}
    return {
        "name": declaration.name[:200],
        **{f"supports_{op.value}": op.value in operations for op in StoreOperation},
        "private_key": str(declaration.private_key),
        "custom_alias": str(declaration.custom_alias),
        "store_path_hint": declaration.store_path_hint[:300],
        "store_path_type": ("targets" if declaration.store_path_kind == "targets" else "freeform"),
        "properties": [spec.to_wire() for spec in declaration.properties],
        "entry_parameters": [spec.to_wire() for spec in declaration.entry_parameters],
        "password_supported": declaration.password is not PasswordStyle.NONE,
        "password_required": declaration.password is PasswordStyle.REQUIRED,
        "schema_version": declaration.schema_version,
        "declaration": declaration.to_wire(),
        "description": declaration.description,
    }


@dataclass(frozen=True, slots=True)
class _Migration:
    properties: dict[str, Any]
    problems: list[str]
    dropped: list[str]


def _store_migrate(
    properties: Mapping[str, Any],
    new_specs: Sequence[PropertySpec],
    *,
    store_type_name: str,
    schema_version: int,
) -> _Migration:
    """One store's properties under the new declaration (pure: no database)."""
    wanted = {spec.name: spec for spec in new_specs}
    migrated: dict[str, Any] = {}
    dropped = sorted(name for name in properties if name not in wanted)
    problems: list[str] = []
    where = f"store type {store_type_name} (schema version {schema_version})"
    for name, spec in wanted.items():
        if name not in properties or properties[name] is None:
            if spec.default is not None:
                migrated[name] = spec.default
            elif spec.required and spec.depends_on is None:
                problems.append(f"property {name} is now required by {where}: set it")
            continue
        value = properties[name]
        migrated[name] = value  # kept even when no longer allowed: flagged, never emptied
        if not _stored_value_fits(spec, value):
            problems.append(property_problem(spec, value, where=where))
    return _Migration(migrated, problems, dropped)


def _stored_value_fits(spec: PropertySpec, value: Any) -> bool:
    # A secret is stored encrypted ({"encrypted": token}): it fits whatever it holds.
    if isinstance(value, dict) and set(value) == {"encrypted"}:
        return spec.type == "secret"
    return property_value_fits(spec, value)


def stores_migrate(
    *,
    store_type: Any,
    new_specs: Sequence[PropertySpec],
    store_model: Any = CertificateStore,
) -> tuple[int, int]:
    """Migrate every store of ``store_type`` to ``new_specs``: ``(changed, flagged)``.

    ``store_model`` lets a data migration pass its historical model.
    """
    changed = flagged = 0
    stores = store_model.objects.filter(store_type_id=store_type.pk).order_by("pk")
    for store in stores.iterator(chunk_size=500):
        old = dict(store.properties or {}) if isinstance(store.properties, dict) else {}
        result = _store_migrate(
            old,
            new_specs,
            store_type_name=store_type.short_name,
            schema_version=store_type.schema_version,
        )
        if result.dropped:
            # Names only: a dropped value may have been a secret.
            logger.info(
                "store %s: properties %s dropped; store type %s no longer declares them",
                store.pk,
                ", ".join(result.dropped),
                store_type.short_name,
            )
        problems = list(result.problems)
        if result.properties != old or problems != list(store.property_problems or []):
            store.properties = result.properties
            store.property_problems = problems
            store.save(update_fields=["properties", "property_problems"])
            changed += 1
        if problems:
            flagged += 1
    return changed, flagged


def _same_declaration(store_type: Any, declaration: StoreTypeDeclaration) -> bool:
    return (store_type.declaration or {}) == declaration.to_wire()


# The start of the warning a hand edit leaves: the admin clears it when the edit is undone.
CHANGED_BY_HAND = "Changed by hand after it was declared"


def store_type_hand_changes(store_type: Any) -> list[str]:
    """The columns of ``store_type`` that differ from what its recorded declaration sets
    (a change made by hand, in Django admin or the API, after it was declared); empty when
    it has no declaration or agrees with it."""
    if not store_type.declaration:
        return []
    try:
        declaration = declaration_from_wire(store_type.declaration)
    except DeclarationError:
        return []  # recorded by an older release in a form this one no longer reads
    declared = _known_fields(type(store_type), store_type_fields(declaration))
    return sorted(name for name, value in declared.items() if getattr(store_type, name) != value)


def store_type_hand_changes_warning(changed: Sequence[str], *, schema_version: int) -> str:
    """The warning a store type changed by hand carries (see :func:`store_type_hand_changes`)."""
    return (
        f"{CHANGED_BY_HAND} (schema version {schema_version}): {', '.join(changed)} "
        f"{'differs' if len(changed) == 1 else 'differ'} from the declaration. Agents "
        "declaring the same schema version do not change it back; a declaration with a "
        "greater schema_version replaces the edit."
    )


def store_type_warning_set(store_type: Any, warning: str, *, at: Any = None) -> None:
    """Record ``warning`` on the type (unless it already says that); "" clears it."""
    if (store_type.declaration_warning or "") == warning:
        return
    store_type.declaration_warning = warning
    store_type.declaration_warning_at = (at or timezone.now()) if warning else None
    store_type.save(update_fields=["declaration_warning", "declaration_warning_at"])


def _wire_differences(recorded: Mapping[str, Any], wire: Mapping[str, Any]) -> str:
    keys = sorted(key for key in set(recorded) | set(wire) if recorded.get(key) != wire.get(key))
    return ", ".join(keys) or "nothing"


def _by(orchestrator: Orchestrator | None) -> str:
    return f"orchestrator {orchestrator}" if orchestrator is not None else "a declaration"


def store_type_declare(
    *, declaration: StoreTypeDeclaration, orchestrator: Orchestrator | None
) -> DeclareResult:
    """Create or update one store type from an agent's declaration (see the module's rules).

    Raises:
        ServiceError: 403 when ``orchestrator`` is not approved.
    """
    _require_approved(orchestrator)
    with transaction.atomic():
        return _declare(declaration, orchestrator)


def store_types_declare(
    *, declarations: Sequence[StoreTypeDeclaration], orchestrator: Orchestrator | None
) -> list[DeclareResult]:
    """Declare several store types in one transaction (an agent's ``POST store-types``)."""
    _require_approved(orchestrator)
    if len(declarations) > MAX_DECLARATIONS:
        raise ServiceError(f"declare at most {MAX_DECLARATIONS} store types at a time")
    names = [declaration.short_name.lower() for declaration in declarations]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ServiceError(f"store types declared twice: {', '.join(twice)}")
    with transaction.atomic():
        return [_declare(declaration, orchestrator) for declaration in declarations]


def _require_approved(orchestrator: Orchestrator | None) -> None:
    if orchestrator is None or orchestrator.status != Orchestrator.Status.APPROVED:
        raise ServiceError(
            "only an approved orchestrator may declare store types",
            code="not_approved",
            http_status=403,
        )


def _is_built_in(short_name: str) -> bool:
    return short_name.upper() in BUILTIN_DECLARATIONS


def _declare(declaration: StoreTypeDeclaration, orchestrator: Orchestrator | None) -> DeclareResult:
    name = declaration.short_name
    # Short names are compared without case, as capabilities are (fleet.orchestrator_can):
    # "pem" is PEM, not a second type beside it.
    existing = (
        CertificateStoreType.objects.select_for_update().filter(short_name__iexact=name).first()
    )
    if _is_built_in(name) or (existing is not None and existing.builtin):
        return DeclareResult(existing.short_name if existing else name, ignored=IGNORED_BUILT_IN)
    now = timezone.now()
    if existing is None:
        try:
            with transaction.atomic():
                CertificateStoreType.objects.create(
                    short_name=name,
                    declared_by=orchestrator,
                    declared_at=now,
                    **store_type_fields(declaration),
                )
        except IntegrityError:
            # Another agent created it a moment ago: its declaration stands.
            return DeclareResult(name, ignored="declared at the same time by another agent")
        return DeclareResult(name, created=True)
    recorded = existing.schema_version
    # A type an administrator made by hand has no declaration yet: the first one fills it.
    first = not existing.declaration
    if not first:
        ignored = None
        if declaration.schema_version < recorded:
            ignored = (
                f"schema version {declaration.schema_version} is older than the recorded {recorded}"
            )
        elif declaration.schema_version == recorded:
            if _same_declaration(existing, declaration):
                changed = store_type_hand_changes(existing)
                if changed:
                    store_type_warning_set(
                        existing,
                        store_type_hand_changes_warning(changed, schema_version=recorded),
                        at=now,
                    )
                return DeclareResult(existing.short_name)
            ignored = (
                f"schema version {recorded} is recorded with other content; raise "
                "schema_version to change the store type"
            )
        if ignored is not None:
            differences = _wire_differences(existing.declaration or {}, declaration.to_wire())
            store_type_warning_set(
                existing,
                f"A declaration by {_by(orchestrator)} was ignored: {ignored} "
                f"(it differs in: {differences}). The recorded declaration stands.",
                at=now,
            )
            return DeclareResult(existing.short_name, ignored=ignored)
    return _apply(existing, declaration, orchestrator=orchestrator, at=now)


def _known_fields(model: Any, fields: dict[str, Any]) -> dict[str, Any]:
    # A data migration's historical model may predate a column a later release sets.
    names = {field.name for field in model._meta.get_fields()}
    return {name: value for name, value in fields.items() if name in names}


def _apply(
    store_type: Any,
    declaration: StoreTypeDeclaration,
    *,
    orchestrator: Orchestrator | None,
    at: Any,
    store_model: Any = CertificateStore,
) -> DeclareResult:
    for field_name, value in _known_fields(
        type(store_type), store_type_fields(declaration)
    ).items():
        setattr(store_type, field_name, value)
    store_type.declared_by = orchestrator
    store_type.declared_at = at
    if "declaration_warning" in _known_fields(type(store_type), {"declaration_warning": ""}):
        # Applied: the type is what this declaration says, nothing disagrees any more.
        store_type.declaration_warning = ""
        store_type.declaration_warning_at = None
    store_type.save()
    changed, flagged = stores_migrate(
        store_type=store_type, new_specs=declaration.properties, store_model=store_model
    )
    return DeclareResult(
        store_type.short_name, updated=True, migrated_stores=changed, flagged_stores=flagged
    )


def store_types_builtin_sync(
    *,
    store_type_model: Any = CertificateStoreType,
    store_model: Any = CertificateStore,
    declarations: Iterable[StoreTypeDeclaration] | None = None,
) -> list[DeclareResult]:
    """Create or update the built-in store types from ``BUILTIN_DECLARATIONS``; idempotent.

    Called by a data migration (with its historical models) and after every ``migrate``
    (``post_migrate``), so a release that changes a built-in declaration updates the type
    and migrates its stores with no migration of its own. A type whose recorded
    declaration is already the shipped one is left alone.
    """
    results: list[DeclareResult] = []
    with transaction.atomic():
        for declaration in declarations or BUILTIN_DECLARATIONS.values():
            existing = (
                store_type_model.objects.select_for_update()
                .filter(short_name=declaration.short_name)
                .first()
            )
            if existing is None:
                store_type_model.objects.create(
                    short_name=declaration.short_name,
                    builtin=True,
                    declared_at=timezone.now(),
                    **_known_fields(store_type_model, store_type_fields(declaration)),
                )
                results.append(DeclareResult(declaration.short_name, created=True))
                continue
            if existing.declaration == declaration.to_wire() and existing.builtin:
                results.append(DeclareResult(declaration.short_name))
                continue
            existing.builtin = True
            results.append(
                _apply(
                    existing,
                    declaration,
                    orchestrator=None,
                    at=timezone.now(),
                    store_model=store_model,
                )
            )
    return results


def builtin_sync_after_migrate(sender: Any, **kwargs: Any) -> None:
    """``post_migrate`` receiver: the built-in store types match this release's."""
    using = kwargs.get("using")
    apps = kwargs.get("apps")
    if apps is None:
        return
    try:
        store_type_model = apps.get_model("inventory", "CertificateStoreType")
        store_model = apps.get_model("inventory", "CertificateStore")
    except LookupError:
        return  # migrated backwards past the inventory app
    field_names = {field.name for field in store_type_model._meta.get_fields()}
    if "declaration" not in field_names:
        return  # migrated to a state before declarations: the data migration will do it
    del using
    store_types_builtin_sync(store_type_model=store_type_model, store_model=store_model)


__all__ = [
    "CHANGED_BY_HAND",
    "IGNORED_BUILT_IN",
    "MAX_DECLARATIONS",
    "DeclareResult",
    "spec_from_stored",
    "specs_of",
    "store_type_declare",
    "store_type_fields",
    "store_type_hand_changes",
    "store_type_hand_changes_warning",
    "store_type_warning_set",
    "store_types_builtin_sync",
    "store_types_declare",
    "stores_migrate",
]
