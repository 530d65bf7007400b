"""Writes of the inventory app: stores, and the ingestion of inventory reports."""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.fleet.selectors import orchestrator_can
from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateStore,
    CertificateStoreType,
)
from certyard.inventory.parsing import (
    CertificateParseError,
    ParsedCertificate,
    certificate_parse,
    pem_to_der,
    sha256_hex,
)

_CHUNK = 500  # stays under SQLite's bound-variable limit
_MAX_ALIAS_LENGTH = 512
_MAX_CHAIN_LENGTH = 20
_ALIASES_KEPT_IN_RESULT = 100


@dataclass(frozen=True, slots=True)
class RejectedEntry:
    index: int
    alias: str  # as reported, made printable (it is echoed back and shown)
    error: str

    def __post_init__(self) -> None:
        printable = self.alias.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
        object.__setattr__(self, "alias", printable[:_MAX_ALIAS_LENGTH])


@dataclass(slots=True)
class InventoryOutcome:
    """What one inventory report changed in its store."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    new_certificates: int = 0
    rejected: list[RejectedEntry] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A bounded, JSON-ready account of the outcome (kept on the job)."""
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "removed": len(self.removed),
            "unchanged": self.unchanged,
            "new_certificates": self.new_certificates,
            "rejected": [asdict(r) for r in self.rejected[:_ALIASES_KEPT_IN_RESULT]],
            "rejected_count": len(self.rejected),
            "added_aliases": self.added[:_ALIASES_KEPT_IN_RESULT],
            "changed_aliases": self.changed[:_ALIASES_KEPT_IN_RESULT],
            "removed_aliases": self.removed[:_ALIASES_KEPT_IN_RESULT],
        }


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    alias: str
    private_key: bool
    chain: list[str]  # SHA-256 of each certificate, the installed one first


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _entry_shape_error(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return "an entry must be an object with alias, private_key and certificates"
    alias = raw.get("alias")
    if not isinstance(alias, str) or not alias.strip():
        return "alias must be a non-empty string"
    if len(alias) > _MAX_ALIAS_LENGTH:
        return f"alias is longer than {_MAX_ALIAS_LENGTH} characters"
    if not text_is_storable(alias):
        return "alias contains characters that cannot be stored (NUL or invalid Unicode)"
    if not isinstance(raw.get("private_key", False), bool):
        return "private_key must be true or false"
    certificates = raw.get("certificates")
    if not isinstance(certificates, list) or not certificates:
        return "certificates must be a non-empty list of PEM strings"
    if len(certificates) > _MAX_CHAIN_LENGTH:
        return f"a chain may hold at most {_MAX_CHAIN_LENGTH} certificates"
    return None


def text_is_storable(text: str) -> bool:
    """Whether every database we support can hold this text (no NUL, no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _certificate_row(parsed: ParsedCertificate) -> Certificate:
    return Certificate(
        der=parsed.der,
        sha256=parsed.sha256,
        sha1=parsed.sha1,
        serial_number=parsed.serial_number,
        issuer=parsed.issuer,
        subject=parsed.subject,
        common_name=parsed.common_name,
        sans=parsed.sans,
        sans_text=" ".join(parsed.sans),
        not_before=parsed.not_before,
        not_after=parsed.not_after,
        key_algorithm=parsed.key_algorithm,
        key_size=parsed.key_size,
        signature_algorithm=parsed.signature_algorithm,
        is_ca=parsed.is_ca,
        self_signed=parsed.self_signed,
    )


def _certificate_ids(fingerprints: Iterable[str]) -> dict[str, int]:
    wanted = list(set(fingerprints))
    found: dict[str, int] = {}
    for chunk in _chunks(wanted):
        found.update(Certificate.objects.filter(sha256__in=chunk).values_list("sha256", "pk"))
    return found


@dataclass(slots=True)
class PreparedInventory:
    """A report checked and parsed, ready to apply: built outside any transaction."""

    entries: list[_Entry]
    new_certificates: list[Certificate]
    rejected: list[RejectedEntry]
    # Aliases of rejected entries: whatever is recorded there now is kept as it is.
    protected_aliases: set[str]

    @property
    def all_rejected(self) -> bool:
        """Every entry was rejected: applying it would only remove what we know."""
        return bool(self.rejected) and not self.entries


def inventory_prepare(*, entries: list[Any]) -> PreparedInventory:
    """Check each entry and parse each certificate the inventory does not know yet.

    An entry that is malformed is rejected with its own reason; the others go on.
    """
    rejected: list[RejectedEntry] = []
    accepted: list[_Entry] = []
    ders: dict[str, bytes] = {}
    seen_aliases: set[str] = set()
    protected_aliases: set[str] = set()

    for index, raw in enumerate(entries):
        alias = raw.get("alias") if isinstance(raw, dict) else None
        alias_text = alias if isinstance(alias, str) else ""
        if error := _entry_shape_error(raw):
            rejected.append(RejectedEntry(index, alias_text, error))
            protected_aliases.add(alias_text)
            continue
        if alias_text in seen_aliases:
            rejected.append(
                RejectedEntry(index, alias_text, "the same alias appears twice in the report")
            )
            continue
        seen_aliases.add(alias_text)
        try:
            chain_ders = [pem_to_der(pem) for pem in raw["certificates"]]
        except CertificateParseError as exc:
            rejected.append(RejectedEntry(index, alias_text, str(exc)))
            protected_aliases.add(alias_text)
            continue
        chain = []
        for der in chain_ders:
            fingerprint = sha256_hex(der)
            ders[fingerprint] = der
            chain.append(fingerprint)
        accepted.append(_Entry(index, alias_text, bool(raw.get("private_key", False)), chain))

    # Parse only what the inventory does not know yet: the common case of a
    # re-inventory touches no parser at all.
    known = _certificate_ids(ders)
    new_rows: list[Certificate] = []
    unreadable: dict[str, str] = {}
    for fingerprint, der in ders.items():
        if fingerprint in known:
            continue
        try:
            new_rows.append(_certificate_row(certificate_parse(der)))
        except CertificateParseError as exc:
            unreadable[fingerprint] = str(exc)
    if unreadable:
        kept: list[_Entry] = []
        for entry in accepted:
            bad = next((unreadable[f] for f in entry.chain if f in unreadable), None)
            if bad is None:
                kept.append(entry)
            else:
                rejected.append(RejectedEntry(entry.index, entry.alias, bad))
                protected_aliases.add(entry.alias)
        accepted = kept
        still_used = {f for entry in accepted for f in entry.chain}
        new_rows = [row for row in new_rows if row.sha256 in still_used]
    rejected.sort(key=lambda r: r.index)
    return PreparedInventory(accepted, new_rows, rejected, protected_aliases)


def inventory_apply(
    *, store: CertificateStore, prepared: PreparedInventory, seen_at: dt.datetime | None = None
) -> InventoryOutcome:
    """Make ``store``'s recorded contents what the prepared report says, in one transaction.

    Locations absent from the report are removed; locations at a rejected entry's
    alias are kept as they were, since we cannot tell what is there now.
    """
    now = seen_at or timezone.now()
    outcome = InventoryOutcome(rejected=list(prepared.rejected))
    with transaction.atomic():
        for chunk in _chunks(prepared.new_certificates):
            Certificate.objects.bulk_create(chunk, ignore_conflicts=True)
        ids = _certificate_ids(f for entry in prepared.entries for f in entry.chain)
        outcome.new_certificates = len(prepared.new_certificates)
        _link_issuers(prepared.entries, ids)
        _apply_locations(store, prepared.entries, ids, prepared.protected_aliases, now, outcome)
        CertificateStore.objects.filter(pk=store.pk).update(last_inventory_at=now)
    return outcome


def inventory_submit(
    *, store: CertificateStore, entries: list[Any], seen_at: dt.datetime | None = None
) -> InventoryOutcome:
    """Record a full inventory of ``store``: what it holds now, replacing what it held.

    Each certificate is parsed once and keyed by SHA-256; certificates and locations
    are written in bulk in one transaction.
    """
    prepared = inventory_prepare(entries=entries)
    return inventory_apply(store=store, prepared=prepared, seen_at=seen_at)


def _link_issuers(entries: list[_Entry], ids: dict[str, int]) -> None:
    """Remember each certificate's issuer where a chain told us, without overwriting."""
    children_by_issuer: dict[int, set[int]] = defaultdict(set)
    for entry in entries:
        for child, parent in zip(entry.chain, entry.chain[1:], strict=False):
            if child != parent:
                children_by_issuer[ids[parent]].add(ids[child])
    for issuer_id, child_ids in children_by_issuer.items():
        for chunk in _chunks(list(child_ids)):
            Certificate.objects.filter(pk__in=chunk, issuer_certificate__isnull=True).update(
                issuer_certificate_id=issuer_id
            )


def _apply_locations(
    store: CertificateStore,
    entries: list[_Entry],
    ids: dict[str, int],
    protected_aliases: set[str],
    now: dt.datetime,
    outcome: InventoryOutcome,
) -> None:
    existing = {
        alias: (pk, certificate_id, has_key)
        for pk, alias, certificate_id, has_key in CertificateLocation.objects.filter(
            store=store
        ).values_list("pk", "alias", "certificate_id", "has_private_key")
    }
    to_create: list[CertificateLocation] = []
    to_update: list[CertificateLocation] = []
    unchanged_ids: list[int] = []
    for entry in entries:
        certificate_id = ids[entry.chain[0]]
        current = existing.get(entry.alias)
        if current is None:
            to_create.append(
                CertificateLocation(
                    store=store,
                    certificate_id=certificate_id,
                    alias=entry.alias,
                    has_private_key=entry.private_key,
                    first_seen=now,
                    last_seen=now,
                )
            )
            outcome.added.append(entry.alias)
        elif (current[1], current[2]) != (certificate_id, entry.private_key):
            to_update.append(
                CertificateLocation(
                    pk=current[0],
                    certificate_id=certificate_id,
                    has_private_key=entry.private_key,
                    last_seen=now,
                )
            )
            outcome.changed.append(entry.alias)
        else:
            unchanged_ids.append(current[0])
    reported = {entry.alias for entry in entries} | protected_aliases
    removed = sorted(alias for alias in existing if alias not in reported)
    outcome.removed.extend(removed)
    outcome.unchanged = len(unchanged_ids)

    for chunk in _chunks([existing[alias][0] for alias in removed]):
        CertificateLocation.objects.filter(pk__in=chunk).delete()
    CertificateLocation.objects.bulk_create(to_create, batch_size=_CHUNK)
    CertificateLocation.objects.bulk_update(
        to_update, ["certificate_id", "has_private_key", "last_seen"], batch_size=_CHUNK
    )
    for chunk in _chunks(unchanged_ids):
        CertificateLocation.objects.filter(pk__in=chunk).update(last_seen=now)


# --- Stores ----------------------------------------------------------------------


def store_create(
    *,
    store_type: CertificateStoreType,
    client_machine: str,
    store_path: str,
    orchestrator: Orchestrator,
    properties: dict[str, Any] | None = None,
    password: str = "",
    inventory_interval_minutes: int | None = None,
) -> CertificateStore:
    """Create a store on an approved orchestrator that can inventory its type."""
    if orchestrator.status != Orchestrator.Status.APPROVED:
        raise ServiceError(
            f"orchestrator {orchestrator.name} is not approved; approve it before giving it stores",
            code="not_approved",
            http_status=409,
        )
    if not store_type.supports_inventory:
        raise ServiceError(f"store type {store_type.short_name} does not support inventory")
    if not orchestrator_can(
        orchestrator=orchestrator, store_type_name=store_type.short_name, operation="inventory"
    ):
        raise ServiceError(
            f"orchestrator {orchestrator.name} does not offer {store_type.short_name}.Inventory",
            code="capability_missing",
        )
    if store_type.password_required and not password:
        raise ServiceError(f"store type {store_type.short_name} requires a store password")
    store = CertificateStore(
        store_type=store_type,
        client_machine=client_machine,
        store_path=store_path,
        orchestrator=orchestrator,
        properties=store_properties_check(store_type=store_type, properties=properties or {}),
        password=password,
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


_PROPERTY_TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "string": (str,),
    "int": (int,),
    "secret": (str,),
}


def store_properties_check(
    *, store_type: CertificateStoreType, properties: dict[str, Any]
) -> dict[str, Any]:
    """The store's properties, checked against those its type declares, defaults filled in."""
    declared = {p["name"]: p for p in store_type.properties if isinstance(p, dict) and "name" in p}
    unknown = sorted(set(properties) - set(declared))
    if unknown:
        allowed = ", ".join(sorted(declared)) or "none"
        raise ServiceError(
            f"store type {store_type.short_name} has no property {', '.join(unknown)} "
            f"(its properties: {allowed})"
        )
    checked: dict[str, Any] = {}
    for name, spec in declared.items():
        if name not in properties:
            if spec.get("required"):
                raise ServiceError(f"property {name} is required for {store_type.short_name}")
            if "default" in spec:
                checked[name] = spec["default"]
            continue
        value = properties[name]
        expected = _PROPERTY_TYPES.get(spec.get("type", "string"), (str,))
        # bool is an int in Python; an int property must not accept true/false.
        if not isinstance(value, expected) or (bool not in expected and isinstance(value, bool)):
            raise ServiceError(f"property {name} must be a {spec.get('type', 'string')}")
        checked[name] = value
    return checked


def _schedule(store: CertificateStore, interval_minutes: int | None) -> None:
    if interval_minutes is not None and interval_minutes < 1:
        raise ServiceError("the inventory interval must be at least 1 minute")
    store.inventory_interval_minutes = interval_minutes
    store.inventory_next_run = timezone.now() if interval_minutes else None


def store_schedule_inventory(
    *, store: CertificateStore, interval_minutes: int | None
) -> CertificateStore:
    """Run inventory every ``interval_minutes`` (the first run is due now); None stops it."""
    _schedule(store, interval_minutes)
    store.save(update_fields=["inventory_interval_minutes", "inventory_next_run"])
    return store
