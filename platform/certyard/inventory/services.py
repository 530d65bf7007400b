"""Writes of the inventory app: stores. Ingestion of inventory reports is in ``ingest``."""

import datetime as dt
import re
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from certyard.errors import Conflict, ServiceError
from certyard.fleet.models import Orchestrator
from certyard.fleet.selectors import orchestrator_can
from certyard.inventory.authorization import store_act_require
from certyard.inventory.models import (
    Certificate,
    CertificateStore,
    CertificateStoreType,
    InventoryStatus,
)
from certyard.inventory.properties import (
    endpoint_check,
    properties_check,
    secret_reference_problem,
    specs_of,
)
from handlers.gateways import RevocationReason
from orchestrators.declarations import RequiredWhen
from orchestrators.roots import store_path_problem
from orchestrators.scan import (
    MAX_ENDPOINTS as MAX_SCAN_ENDPOINTS,
)
from orchestrators.scan import (
    ScanTargetError,
    endpoint_count,
    ports_parse,
    sni_names_parse,
    targets_parse,
)

# --- Stores ----------------------------------------------------------------------


def store_client_machine(*, orchestrator: Orchestrator, client_machine: str = "") -> str:
    """The store's machine: the orchestrator's own when not given; another one is refused.

    An agent reads stores on the machine it runs on; a store elsewhere would produce
    locations on a machine nobody inventories.
    """
    wanted = client_machine.strip()
    if not wanted:
        return orchestrator.client_machine
    if wanted.lower() != orchestrator.client_machine.lower():
        raise ServiceError(
            f"orchestrator {orchestrator.name} runs on {orchestrator.client_machine} and "
            f"cannot reach a store on {wanted}; leave the client machine empty, or choose "
            f"the orchestrator that runs on {wanted}",
            code="wrong_machine",
            details={"fields": {"client_machine": ["not served by this orchestrator"]}},
        )
    return orchestrator.client_machine


# The built-in store types that are one file, never a folder: a path naming a folder
# (ending in /) cannot be one. Store types declare no path kind (yet), so this is all the
# platform can tell about a path before the agent looks at it.
_SINGLE_FILE_TYPES = frozenset({"PKCS12", "JKS", "JCEKS"})


def store_path_refusal(
    *, store_type: CertificateStoreType, orchestrator: Orchestrator, store_path: str
) -> str | None:
    """Why ``store_path`` cannot be a store of this type on this orchestrator; None if it can.

    The orchestrator's rule, ``orchestrators.roots.store_path_problem``, with the roots its
    agent reported (``Orchestrator.store_roots``; unknown for agents that do not report
    them: then only the lexical rules apply), so a person reads the agent's own message
    before anything is saved or scheduled. Then the store type's path rule: a single-file
    type is not given a folder. Lexical only: a link pointing outside a root is caught by
    the agent, which resolves links on its machine.
    """
    if store_type.store_path_type == CertificateStoreType.PathType.TARGETS:
        # Network targets, not a path: checked for form here, and by the agent against
        # what its administrator allows it to scan.
        try:
            targets_parse(store_path)
        except ScanTargetError as exc:
            return str(exc)
        return None
    problem = store_path_problem(store_path, orchestrator.store_roots)
    if problem:
        return problem
    if store_type.short_name in _SINGLE_FILE_TYPES and store_path.endswith("/"):
        return (
            f"a {store_type.short_name} store is one file: give the file's path "
            f"(like {store_type.store_path_hint or '/etc/app/keystore'}), not a folder ending in /"
        )
    return None


def _scan_store_check(
    *, store_type: CertificateStoreType, store_path: str, properties: dict[str, Any]
) -> None:
    """A scan store's ports and server names parse, and it stays within one job's bound."""
    if store_type.store_path_type != CertificateStoreType.PathType.TARGETS:
        return
    try:
        targets = targets_parse(store_path)
        ports = ports_parse(str(properties.get("ports") or ""))
        sni_names = sni_names_parse(str(properties.get("sni_names") or ""))
    except ScanTargetError as exc:
        raise ServiceError(str(exc), code="invalid_targets", field="properties") from exc
    count = endpoint_count(targets, ports, sni_names)
    if count > MAX_SCAN_ENDPOINTS:
        raise ServiceError(
            f"the store names {count} endpoints; a store scans at most {MAX_SCAN_ENDPOINTS} "
            "(fewer targets, ports or server names per store)",
            code="invalid_targets",
            field="store_path",
        )


def _password_reference_check(password: str) -> None:
    """A password given as a reference (``ref+agent:...``) must be a well-formed one: the
    agent never uses such a value as the password itself."""
    problem = secret_reference_problem(password)
    if problem:
        raise ServiceError(problem, code="invalid_reference", field="password")


def _store_path_check(
    *, store_type: CertificateStoreType, orchestrator: Orchestrator, store_path: str
) -> None:
    problem = store_path_refusal(
        store_type=store_type, orchestrator=orchestrator, store_path=store_path
    )
    if problem:
        raise ServiceError(problem, code="store_path_refused", field="store_path")


def store_create(
    *,
    store_type: CertificateStoreType,
    store_path: str,
    orchestrator: Orchestrator,
    client_machine: str = "",
    properties: dict[str, Any] | None = None,
    password: str = "",
    inventory_interval_minutes: int | None = None,
    created_by: Any = None,
    endpoint_host: str = "",
    endpoint_port: int | None = None,
    endpoint_sni: str = "",
) -> CertificateStore:
    """Create a store on an approved orchestrator that can inventory its type.

    The path must be one the orchestrator may read (``store_path_refusal``: the roots its
    agent reported, the lexical rules, the type's path rule): a refusal names the field
    ``store_path`` and carries the agent's own message.

    ``created_by`` (the person adding it) may change it later without ``manage_any_store``.
    ``properties`` are checked against the type's declaration (defaults filled in, secrets
    encrypted); ``endpoint_*`` name the TLS endpoint served from the store (host and port
    together, or neither), which the agent checks after a write.
    """
    host, port, sni = endpoint_check(host=endpoint_host, port=endpoint_port, sni=endpoint_sni)
    if orchestrator.status != Orchestrator.Status.APPROVED:
        raise ServiceError(
            f"orchestrator {orchestrator.name} is not approved; approve it before giving it stores",
            code="not_approved",
            http_status=409,
        )
    if not store_type.supports_inventory:
        raise ServiceError(f"store type {store_type.short_name} does not support inventory")
    _store_path_check(store_type=store_type, orchestrator=orchestrator, store_path=store_path)
    if not orchestrator_can(
        orchestrator=orchestrator, store_type_name=store_type.short_name, operation="inventory"
    ):
        raise ServiceError(
            f"orchestrator {orchestrator.name} does not offer {store_type.short_name}.Inventory",
            code="capability_missing",
        )
    if store_type.password_required and not password:
        raise ServiceError(f"store type {store_type.short_name} requires a store password")
    _password_reference_check(password)
    client_machine = store_client_machine(orchestrator=orchestrator, client_machine=client_machine)
    checked = store_properties_check(store_type=store_type, properties=properties or {})
    _scan_store_check(store_type=store_type, store_path=store_path, properties=checked)
    store = CertificateStore(
        store_type=store_type,
        client_machine=client_machine,
        store_path=store_path,
        orchestrator=orchestrator,
        properties=checked,
        password=password,
        created_by=created_by if getattr(created_by, "pk", None) else None,
        endpoint_host=host,
        endpoint_port=port,
        endpoint_sni=sni,
        property_problems=[],
    )
    _schedule(store, inventory_interval_minutes)
    try:
        with transaction.atomic():
            store.save()
    except IntegrityError:
        raise ServiceError(
            f"a {store_type.short_name} store at {client_machine}:{store_path} already exists",
            code="duplicate",
            http_status=409,
        ) from None
    return store


_UNCHANGED = object()


def store_update(
    *,
    store: CertificateStore,
    store_path: str | None = None,
    properties: dict[str, Any] | None = None,
    password: str | None = None,
    inventory_interval_minutes: Any = _UNCHANGED,
    actor: Any = None,
    endpoint_host: Any = _UNCHANGED,
    endpoint_port: Any = _UNCHANGED,
    endpoint_sni: Any = _UNCHANGED,
) -> CertificateStore:
    """Change a store's path, properties, password (``""`` clears it), schedule or endpoint.

    ``None`` leaves a field as it is; ``inventory_interval_minutes=None`` stops the
    schedule. The store's type, orchestrator and machine are fixed: make a new store.
    ``actor`` must be allowed to act on the store (``store_act_require``). New properties
    replace the old ones, checked against the type's declaration, except a secret left out,
    which keeps its value; once they pass, the store's ``property_problems`` are cleared.
    The endpoint fields left out keep their value; ``endpoint_host=""`` (with
    ``endpoint_port=None``) removes the endpoint.
    """
    store_act_require(actor, store)
    if any(value is not _UNCHANGED for value in (endpoint_host, endpoint_port, endpoint_sni)):
        host, port, sni = endpoint_check(
            host=store.endpoint_host if endpoint_host is _UNCHANGED else endpoint_host,
            port=store.endpoint_port if endpoint_port is _UNCHANGED else endpoint_port,
            sni=store.endpoint_sni if endpoint_sni is _UNCHANGED else endpoint_sni,
        )
        store.endpoint_host, store.endpoint_port, store.endpoint_sni = host, port, sni
    if store_path is not None and store_path != store.store_path:
        # Only a new path is checked: a store whose roots changed since stays editable
        # (its schedule, its password), and its jobs say why the agent refuses it.
        _store_path_check(
            store_type=store.store_type, orchestrator=store.orchestrator, store_path=store_path
        )
        store.store_path = store_path
    if properties is not None:
        store.properties = store_properties_check(
            store_type=store.store_type, properties=properties, current=store.properties
        )
        store.property_problems = []
    if store_path is not None or properties is not None:
        _scan_store_check(
            store_type=store.store_type, store_path=store.store_path, properties=store.properties
        )
    if password is not None:
        if store.store_type.password_required and not password:
            raise ServiceError(
                f"store type {store.store_type.short_name} requires a store password"
            )
        _password_reference_check(password)
        store.password = password
    if inventory_interval_minutes is not _UNCHANGED:
        _schedule(store, inventory_interval_minutes)
    try:
        with transaction.atomic():
            store.save()
    except IntegrityError:
        raise ServiceError(
            f"a {store.store_type.short_name} store at {store.client_machine}:{store.store_path} "
            "already exists",
            code="duplicate",
            http_status=409,
        ) from None
    return store


def store_delete(*, store: CertificateStore, actor: Any = None) -> None:
    """Forget a store: its locations and jobs go with it; its certificates stay."""
    store_act_require(actor, store)
    store.delete()


_PROPERTY_TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "string": (str,),
    "int": (int,),
    "secret": (str,),
    "choice": (str,),
}


# --- Store types -----------------------------------------------------------------

STORE_TYPE_SHORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PROPERTY_KEYS = {"name", "type", "required", "default"}
# The rest of a declaration's wire form (orchestrators.declarations.PropertySpec.to_wire).
_DECLARATION_KEYS = {"display_name", "choices", "depends_on", "help", "required_when"}


def _is_of_type(value: Any, type_name: str) -> bool:
    # bool is an int in Python; an int property must not accept true/false.
    expected = _PROPERTY_TYPES[type_name]
    return isinstance(value, expected) and (bool in expected or not isinstance(value, bool))


def store_type_properties_check(properties: Any) -> list[dict[str, Any]]:
    """A store type's declared properties (or entry parameters), checked against one schema.

    A list of ``{"name", "type", "required", "default"}``: ``name`` an identifier, unique;
    ``type`` one of bool, string, int, secret; ``required`` a bool; ``default`` of the
    declared type. Only ``name`` and ``type`` must be given. Raises ``ServiceError``
    naming the offending item.
    """
    if not isinstance(properties, list):
        raise ServiceError("the declarations must be a list of {name, type, required, default}")
    types = ", ".join(_PROPERTY_TYPES)
    checked: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(properties):
        where = f"item {index}"
        if not isinstance(item, dict):
            raise ServiceError(f"{where} must be an object {{name, type, required, default}}")
        unknown = sorted(str(key) for key in set(item) - _PROPERTY_KEYS - _DECLARATION_KEYS)
        if unknown:
            raise ServiceError(
                f"{where} has unknown keys {', '.join(unknown)} "
                "(allowed: name, type, required, default, display_name, choices, depends_on, "
                "help, required_when)"
            )
        name = item.get("name")
        if not isinstance(name, str) or not _PROPERTY_NAME.fullmatch(name):
            raise ServiceError(
                f"{where}: the name must be a letter or _ then letters, digits or _ "
                "(at most 64 characters)"
            )
        where = f"item {index} ({name})"
        if name in seen:
            raise ServiceError(f"{where}: the name {name} is declared twice")
        seen.add(name)
        type_name = item.get("type")
        if not isinstance(type_name, str) or type_name not in _PROPERTY_TYPES:
            raise ServiceError(f"{where}: the type must be one of {types}")
        required = item.get("required", False)
        if not isinstance(required, bool):
            raise ServiceError(f"{where}: required must be true or false")
        declaration: dict[str, Any] = {"name": name, "type": type_name, "required": required}
        declaration.update(_declaration_extras_check(item, type_name, where))
        if "default" in item and item["default"] is not None:
            if not _is_of_type(item["default"], type_name) or (
                type_name == "choice" and item["default"] not in declaration["choices"]
            ):
                raise ServiceError(f"{where}: the default must be a {type_name}")
            declaration["default"] = item["default"]
        elif "default" in item:
            declaration["default"] = None
        checked.append(declaration)
    for declaration in checked:
        depends = declaration.get("depends_on")
        if depends is not None and depends["name"] not in seen:
            raise ServiceError(f"{declaration['name']}: depends_on names no declared property")
    return checked


def _declaration_extras_check(item: dict[str, Any], type_name: str, where: str) -> dict[str, Any]:
    """The optional keys of a declaration's wire form, checked (display_name, choices, ...)."""
    extras: dict[str, Any] = {}
    for key in ("display_name", "help"):
        if key in item:
            value = item[key]
            if not isinstance(value, str) or len(value) > 500:
                raise ServiceError(f"{where}: {key} must be a text of at most 500 characters")
            extras[key] = value
    choices = item.get("choices", [])
    if not isinstance(choices, list) or not all(
        isinstance(choice, str) and choice and len(choice) <= 200 for choice in choices
    ):
        raise ServiceError(f"{where}: choices must be a list of non-empty texts")
    if type_name == "choice" and not choices:
        raise ServiceError(f"{where}: a choice property needs its choices")
    if "choices" in item or type_name == "choice":
        extras["choices"] = choices
    if item.get("depends_on") is not None:
        depends = item["depends_on"]
        if not isinstance(depends, dict) or not isinstance(depends.get("name"), str):
            raise ServiceError(f"{where}: depends_on must be {{name, value}}")
        extras["depends_on"] = {"name": depends["name"], "value": depends.get("value")}
    elif "depends_on" in item:
        extras["depends_on"] = None
    if "required_when" in item:
        when = item["required_when"]
        allowed = {member.value for member in RequiredWhen}
        if not isinstance(when, list) or any(value not in allowed for value in when):
            raise ServiceError(
                f"{where}: required_when must list some of {', '.join(sorted(allowed))}"
            )
        extras["required_when"] = sorted(set(when))
    return extras


def store_type_delete(*, store_type: CertificateStoreType) -> None:
    """Delete a store type nobody uses; the built-in ones stay."""
    if store_type.builtin:
        raise Conflict(
            f"store type {store_type.short_name} is built in and cannot be deleted",
            code="builtin",
        )
    store_type.delete()  # a type still used by stores raises ProtectedError: a 409


def store_properties_check(
    *,
    store_type: CertificateStoreType,
    properties: dict[str, Any],
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The store's properties, checked against its type's declaration, defaults filled in.

    Types, choices, ``required`` and ``depends_on`` come from the declaration; a secret is
    encrypted, and one not given keeps its ``current`` value. Raises ``ServiceError`` with
    one message per offending property under ``fields["properties"]``.
    """
    if not isinstance(properties, dict):
        raise ServiceError("the properties must be a JSON object", field="properties")
    checked, errors = properties_check(
        specs_of(store_type.properties),
        properties,
        current=current if isinstance(current, dict) else None,
        store_type_name=store_type.short_name,
    )
    if errors:
        messages = list(errors.values())
        # The API's error body has one shape (certyard.api.schema): the messages go under
        # fields["properties"], each naming its property.
        raise ServiceError("; ".join(messages), fields={"properties": messages})
    return checked


def _schedule(store: CertificateStore, interval_minutes: int | None) -> None:
    if interval_minutes is not None and interval_minutes < 1:
        raise ServiceError("the inventory interval must be at least 1 minute")
    store.inventory_interval_minutes = interval_minutes
    store.inventory_next_run = timezone.now() if interval_minutes else None


def store_schedule_inventory(
    *, store: CertificateStore, interval_minutes: int | None, actor: Any = None
) -> CertificateStore:
    """Run inventory every ``interval_minutes`` (the first run is due now); None stops it."""
    store_act_require(actor, store)
    _schedule(store, interval_minutes)
    store.save(update_fields=["inventory_interval_minutes", "inventory_next_run"])
    return store


def store_inventory_status_record(
    *, store_id: Any, status: InventoryStatus, message: str, at: dt.datetime | None = None
) -> None:
    """Note how the store's last inventory job ended (called by the jobs app)."""
    CertificateStore.objects.filter(pk=store_id).update(
        inventory_status=status,
        inventory_message=message[:_STATUS_MESSAGE_LENGTH],
        inventory_checked_at=at or timezone.now(),
    )


_STATUS_MESSAGE_LENGTH = 4000


# --- Certificate state -----------------------------------------------------------------
#
# Whoever revokes or renews a certificate records it here: enrollment (revocations through
# a CA gateway, gateway syncs, renewals) and the built-in CAs (through the hook inventory
# registers in pki, which sits below it). The status itself is read by
# inventory.selectors.certificate_status.


def revocation_reason_name(reason: Any) -> str:
    """The RFC 5280 reason name (``keyCompromise``) of a CRLReason code, enum or name.

    Raises ``ServiceError`` for anything else.
    """
    if isinstance(reason, str) and not reason.strip().isdigit():
        for member in RevocationReason:
            if reason in (member.keyword, member.name):
                return member.keyword
        raise ServiceError(f"{reason[:60]!r} is not an RFC 5280 revocation reason")
    try:
        return RevocationReason(int(reason)).keyword
    except (TypeError, ValueError) as exc:
        raise ServiceError(f"{reason!r} is not an RFC 5280 revocation reason (0-6, 8-10)") from exc


def certificate_revocation_record(
    *,
    reason: Any,
    certificate: Certificate | None = None,
    sha256: str = "",
    revoked_at: dt.datetime | None = None,
) -> int:
    """Record that the certificate (given, or by its SHA-256) was revoked, and why.

    ``reason`` is a CRLReason code or its RFC 5280 name; ``revoked_at`` defaults to now. A
    certificate the inventory does not hold is no error (0 is returned: the platform may
    revoke what it never inventoried), and one already recorded as revoked keeps its first
    revocation. Returns how many certificates were changed (0 or 1).
    """
    name = revocation_reason_name(reason)
    if certificate is not None:
        rows = Certificate.objects.filter(pk=certificate.pk)
    elif sha256:
        rows = Certificate.objects.filter(sha256=sha256.lower())
    else:
        raise ValueError("name the certificate or its sha256")
    when = revoked_at or timezone.now()
    changed = rows.filter(revoked_at__isnull=True).update(revoked_at=when, revocation_reason=name)
    if changed and certificate is not None:
        certificate.revoked_at, certificate.revocation_reason = when, name
    return changed


def certificate_supersession_record(*, old: Certificate, new: Certificate) -> bool:
    """Record that ``new`` renewed ``old``: ``old`` is superseded, linked to ``new`` (and
    ``new.supersedes`` lists ``old``). A later renewal of ``old`` replaces the link.

    Returns False (and changes nothing) when they are the same certificate, or when ``new``
    is itself superseded by ``old`` (a loop).
    """
    if old.pk == new.pk or new.superseded_by_id == old.pk:
        return False
    Certificate.objects.filter(pk=old.pk).update(superseded_by=new)
    old.superseded_by = new
    return True


def certificate_revoked_by_builtin_ca(issued: Any) -> None:
    """The hook pki calls when a built-in CA revokes (``pki.services.certificate_revoke``):
    the inventory's copy of the certificate, if any, records it in the same transaction."""
    certificate_revocation_record(
        sha256=issued.sha256, reason=issued.revocation_reason, revoked_at=issued.revoked_at
    )
