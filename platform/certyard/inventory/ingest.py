"""Ingestion of inventory reports: what a store holds now, in chunks, committed as one.

A report is the whole store. It may arrive in several chunks (``inventory_chunk_stage``),
each checked and parsed on arrival: certificates are keyed by SHA-256 and written once,
and each entry is held as a staged row. ``inventory_upload_commit`` then makes the
store's locations what the staged rows say, with a few set-based statements inside one
transaction, so a store of a million entries costs the web process no more memory than
one chunk. A malformed entry is rejected with its own reason and changes nothing: the
location at its alias is kept as it was, since we cannot tell what is there now.
"""

# The SQL below is built from model table names only; every value is a query parameter.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509
from django.db import connection, transaction
from django.utils import timezone

from certyard.bulk import rows_insert
from certyard.errors import ServiceError
from certyard.inventory.endpoints import (
    EndpointObservation,
    endpoint_observation,
    endpoints_prune,
    endpoints_record,
)
from certyard.inventory.metadata.generators import metadata_new_certificates_recorded
from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateStore,
    CertificateStoreType,
    InventoryStagedEntry,
)
from certyard.workflows.services import event_emit
from certyard.x509 import (
    CertificateParseError,
    ParsedCertificate,
    certificate_parse,
    pem_to_der,
    sha256_hex,
    text_is_storable,
)
from handlers.base import EventKind
from orchestrators.scan import EndpointStatus

logger = logging.getLogger(__name__)

_CHUNK = 500  # stays under SQLite's bound-variable limit
_MAX_ALIAS_LENGTH = 512
_MAX_CHAIN_LENGTH = 20
_ALIASES_KEPT_IN_RESULT = 100
_ERROR_LENGTH = 1000
_FINGERPRINT = re.compile(r"[0-9a-fA-F]{64}")


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
    """What one inventory report changed in its store.

    ``added``, ``changed`` and ``removed`` hold at most the first hundred aliases of
    each; the ``*_count`` fields hold how many there were.
    """

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    added_count: int = 0
    changed_count: int = 0
    removed_count: int = 0
    unchanged: int = 0
    new_certificates: int = 0
    nonconformant_certificates: int = 0
    rejected: list[RejectedEntry] = field(default_factory=list)
    rejected_count: int = 0
    entries: int = 0
    recorded: bool = True

    def summary(self) -> dict[str, Any]:
        """A bounded, JSON-ready account of the outcome (kept on the job)."""
        return {
            "entries": self.entries,
            "recorded": self.recorded,
            "added": self.added_count,
            "changed": self.changed_count,
            "removed": self.removed_count,
            "unchanged": self.unchanged,
            "new_certificates": self.new_certificates,
            "nonconformant_certificates": self.nonconformant_certificates,
            "rejected": [asdict(r) for r in self.rejected[:_ALIASES_KEPT_IN_RESULT]],
            "rejected_count": self.rejected_count,
            "added_aliases": self.added[:_ALIASES_KEPT_IN_RESULT],
            "changed_aliases": self.changed[:_ALIASES_KEPT_IN_RESULT],
            "removed_aliases": self.removed[:_ALIASES_KEPT_IN_RESULT],
        }


@dataclass(slots=True)
class ChunkOutcome:
    """What one staged chunk held: how many entries were accepted, and the rejected ones."""

    accepted: int
    rejected: list[RejectedEntry]
    new_certificates: int
    # Entries that named certificates by fingerprint the platform does not hold: the
    # sender should send this chunk again with those entries in full.
    unknown: list[int] = field(default_factory=list)
    # Set by the jobs app: until when the job's lease now runs.
    lease_expires_at: dt.datetime | None = None


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _alias_error(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return "an entry must be an object with alias, private_key and certificates"
    alias = raw.get("alias")
    if not isinstance(alias, str) or not alias.strip():
        return "alias must be a non-empty string"
    if len(alias) > _MAX_ALIAS_LENGTH:
        return f"alias is longer than {_MAX_ALIAS_LENGTH} characters"
    if not text_is_storable(alias):
        return "alias contains characters that cannot be stored (NUL or invalid Unicode)"
    return None


def _entry_error(raw: dict[str, Any]) -> str | None:
    """Why an entry with a good alias cannot be recorded, from its shape alone."""
    reported = raw.get("error")
    if reported is not None:
        if not isinstance(reported, str):
            return "the orchestrator could not use this entry"
        reason = reported if text_is_storable(reported) else repr(reported)
        return f"the orchestrator could not use it: {reason}"[:_ERROR_LENGTH]
    if not isinstance(raw.get("private_key", False), bool):
        return "private_key must be true or false"
    if "sha256" in raw and not raw.get("certificates"):
        fingerprints = raw["sha256"]
        if (
            not isinstance(fingerprints, list)
            or not fingerprints
            or not all(isinstance(f, str) and _FINGERPRINT.fullmatch(f) for f in fingerprints)
        ):
            return "sha256 must be a non-empty list of SHA-256 fingerprints (64 hex digits)"
        if len(fingerprints) > _MAX_CHAIN_LENGTH:
            return f"a chain may hold at most {_MAX_CHAIN_LENGTH} certificates"
        return None
    certificates = raw.get("certificates")
    if not isinstance(certificates, list) or not certificates:
        return "certificates must be a non-empty list of PEM strings"
    if len(certificates) > _MAX_CHAIN_LENGTH:
        return (
            f"a chain may hold at most {_MAX_CHAIN_LENGTH} certificates; report the "
            "certificates of a bundle as entries of their own"
        )
    return None


_CERTIFICATE_COLUMNS = (
    "der",
    "sha256",
    "sha1",
    "serial_number",
    "issuer",
    "subject",
    "common_name",
    "sans",
    "sans_text",
    "not_before",
    "not_after",
    "version",
    "key_algorithm",
    "key_size",
    "signature_algorithm",
    "is_ca",
    "self_signed",
    "parse_warnings",
    "conformant",
    "first_seen",
)


def _certificates_insert(parsed: list[ParsedCertificate], now: dt.datetime) -> None:
    """Insert new certificates as plain rows (one already there is left alone).

    This is the hot path of a first inventory: Django's per-field preparation of model
    instances costs more than parsing the certificates, so only the values that need
    adapting (times, JSON) go through the database's adapters.
    """
    if not parsed:
        return
    ops = connection.ops
    json_field = Certificate._meta.get_field("sans")

    def when(value: dt.datetime | None) -> Any:
        return None if value is None else ops.adapt_datetimefield_value(value)

    first_seen = when(now)
    # What a hostile certificate says can be longer than a column: cut to fit, not fail.
    serial_max, algorithm_max, signature_max = (
        Certificate._meta.get_field(name).max_length
        for name in ("serial_number", "key_algorithm", "signature_algorithm")
    )
    rows = [
        (
            p.der,
            p.sha256,
            p.sha1,
            p.serial_number[:serial_max],
            p.issuer,
            p.subject,
            p.common_name,
            json_field.get_db_prep_save(p.sans, connection),
            " ".join(p.sans),
            when(p.not_before),
            when(p.not_after),
            p.version,
            p.key_algorithm[:algorithm_max],
            p.key_size,
            p.signature_algorithm[:signature_max],
            p.is_ca,
            p.self_signed,
            json_field.get_db_prep_save(p.parse_warnings, connection),
            not p.parse_warnings,
            first_seen,
        )
        for p in parsed
    ]
    rows_insert(Certificate, _CERTIFICATE_COLUMNS, rows, "ON CONFLICT (sha256) DO NOTHING")


def _known_certificates(fingerprints: Iterable[str]) -> dict[str, tuple[int, int | None]]:
    """SHA-256 -> (id, issuer id) of the certificates the inventory already holds."""
    wanted = list(set(fingerprints))
    found: dict[str, tuple[int, int | None]] = {}
    if connection.vendor == "postgresql":
        # One array parameter instead of hundreds, each quoted on the client.
        table = connection.ops.quote_name(Certificate._meta.db_table)
        with connection.cursor() as cursor:
            for chunk in _chunks(wanted, 5000):
                cursor.execute(
                    f"SELECT sha256, id, issuer_certificate_id FROM {table} WHERE sha256 = ANY(%s)",
                    [list(chunk)],
                )
                found.update((sha256, (pk, issuer)) for sha256, pk, issuer in cursor.fetchall())
        return found
    for chunk in _chunks(wanted):
        for sha256, pk, issuer_id in Certificate.objects.filter(sha256__in=chunk).values_list(
            "sha256", "pk", "issuer_certificate_id"
        ):
            found[sha256] = (pk, issuer_id)
    return found


@dataclass(slots=True)
class _Entry:
    position: int
    alias: str
    private_key: bool
    chain: list[str]  # SHA-256 of each certificate, the installed one first


def _parse_safely(der: bytes, loaded: x509.Certificate | None = None) -> ParsedCertificate:
    """Parse one certificate; any failure is that certificate's rejection, never the report's.

    ``loaded``: the same certificate already read by the caller, not read again.
    """
    try:
        return certificate_parse(der, certificate=loaded)
    except CertificateParseError:
        raise
    except Exception as exc:  # a parser bug must cost one entry, not the whole report
        logger.exception("unexpected error parsing a certificate (%d bytes)", len(der))
        raise CertificateParseError(
            "the platform could not read this certificate (an internal error, logged)"
        ) from exc


def _parse_unknown(
    ders: dict[str, bytes],
    known: Mapping[str, Any],
    loaded: Mapping[str, x509.Certificate] | None = None,
) -> tuple[list[ParsedCertificate], dict[str, str]]:
    """Parse the certificates the inventory does not hold yet; and why the unreadable are."""
    loaded = loaded or {}
    new_rows: list[ParsedCertificate] = []
    unreadable: dict[str, str] = {}
    for fingerprint, der in ders.items():
        if fingerprint in known:
            continue
        try:
            new_rows.append(_parse_safely(der, loaded.get(fingerprint)))
        except CertificateParseError as exc:
            unreadable[fingerprint] = str(exc)
    return new_rows, unreadable


def inventory_chunk_stage(
    *,
    store: CertificateStore,
    upload: str,
    sequence: int,
    first_index: int,
    entries: list[Any],
) -> ChunkOutcome:
    """Check, parse and stage one chunk of a report. Sending the same chunk again replaces it.

    New certificates are written at once (they are facts, whatever the report turns out
    to be); the entries wait in staging until ``inventory_upload_commit``.
    """
    # Every rejection is staged too: it is reported at commit, and protects its alias.
    rejected: list[RejectedEntry] = []
    accepted: list[_Entry] = []
    ders: dict[str, bytes] = {}
    by_fingerprint: list[_Entry] = []  # entries that name their certificates by SHA-256
    aliases_in_chunk: set[str] = set()
    observations: list[EndpointObservation] = []  # what a scan saw at each endpoint

    for offset, raw in enumerate(entries):
        position = first_index + offset
        alias = raw.get("alias") if isinstance(raw, dict) else None
        alias_text = alias if isinstance(alias, str) else ""
        if error := _alias_error(raw):
            rejected.append(RejectedEntry(position, alias_text, error))
            continue
        if alias_text in aliases_in_chunk:
            rejected.append(RejectedEntry(position, alias_text, _DUPLICATE_ALIAS))
            continue
        aliases_in_chunk.add(alias_text)
        if "endpoint" in raw:
            observation, error = endpoint_observation(raw["endpoint"], alias_text)
            if observation is None:
                rejected.append(RejectedEntry(position, alias_text, f"{error}"))
                continue
            observations.append(observation)
            if observation.status != EndpointStatus.OK:
                continue  # nothing served there: an observation, not an entry
        if error := _entry_error(raw):
            rejected.append(RejectedEntry(position, alias_text, error))
            continue
        private_key = bool(raw.get("private_key", False))
        if not raw.get("certificates"):
            chain = [f.lower() for f in raw["sha256"]]
            by_fingerprint.append(_Entry(position, alias_text, private_key, chain))
            continue
        try:
            chain_ders = [pem_to_der(pem) for pem in raw["certificates"]]
        except CertificateParseError as exc:
            rejected.append(RejectedEntry(position, alias_text, str(exc)))
            continue
        chain = []
        for der in chain_ders:
            fingerprint = sha256_hex(der)
            ders[fingerprint] = der
            chain.append(fingerprint)
        accepted.append(_Entry(position, alias_text, private_key, chain))

    # Parse only what the inventory does not know yet: a re-inventory parses nothing.
    known = _known_certificates([*ders, *(f for e in by_fingerprint for f in e.chain)])
    unknown: list[int] = []
    for entry in by_fingerprint:
        missing = next((f for f in entry.chain if f not in known), None)
        if missing is None:
            accepted.append(entry)
        else:
            # Staged as rejected until the chunk comes again in full: the alias is kept.
            unknown.append(entry.position)
            rejected.append(
                RejectedEntry(
                    entry.position,
                    entry.alias,
                    f"the platform does not hold certificate {missing[:16]}…; "
                    "the orchestrator must send it in full",
                )
            )
    new_rows, unreadable = _parse_unknown(ders, known)
    if unreadable:
        kept: list[_Entry] = []
        for entry in accepted:
            bad = next((unreadable[f] for f in entry.chain if f in unreadable), None)
            if bad is None:
                kept.append(entry)
            else:
                rejected.append(RejectedEntry(entry.position, entry.alias, bad))
        accepted = kept
        still_used = {f for entry in accepted for f in entry.chain}
        new_rows = [row for row in new_rows if row.sha256 in still_used]

    now = timezone.now()
    with transaction.atomic():
        # A chunk sent again replaces itself. An alias in two chunks is found at commit.
        InventoryStagedEntry.objects.filter(upload=upload, sequence=sequence).delete()
        _certificates_insert(new_rows, now)
        # Only the new certificates need their ids looked up; the others are known.
        ids = {**known, **_known_certificates(row.sha256 for row in new_rows)}
        _link_issuers(accepted, ids)
        if observations:
            _observations_complete(observations, accepted, rejected, ids)
            endpoints_record(store=store, upload=upload, observations=observations, now=now)
        store_id = InventoryStagedEntry._meta.get_field("store").get_db_prep_value(
            store.pk, connection
        )
        rows = [
            (store_id, upload, sequence, e.position, e.alias, ids[e.chain[0]][0], e.private_key, "")
            for e in accepted
        ]
        rows.extend(
            (store_id, upload, sequence, r.index, r.alias, None, False, r.error[:_ERROR_LENGTH])
            for r in rejected
        )
        # The chunk's own mark (no alias, no certificate, no error): an empty chunk arrived too.
        rows.append((store_id, upload, sequence, first_index, "", None, False, ""))
        _staged_insert(rows)
    rejected.sort(key=lambda r: r.index)
    return ChunkOutcome(len(accepted), rejected, len(new_rows), unknown)


_STAGED_COLUMNS = (
    "store_id",
    "upload",
    "sequence",
    "position",
    "alias",
    "certificate_id",
    "private_key",
    "error",
)


def _observations_complete(
    observations: list[EndpointObservation],
    accepted: list[_Entry],
    rejected: list[RejectedEntry],
    ids: Mapping[str, tuple[int, int | None]],
) -> None:
    """Give each served endpoint its chain; one whose certificates were refused becomes
    ``invalid_certificate`` with the refusal as its reason."""
    chains = {entry.alias: entry.chain for entry in accepted}
    refusals = {entry.alias: entry.error for entry in rejected}
    for observation in observations:
        if observation.status != EndpointStatus.OK:
            continue
        chain = chains.get(observation.alias)
        if chain is None:
            observation.status = str(EndpointStatus.INVALID_CERTIFICATE)
            observation.reason = refusals.get(observation.alias, "")[:300]
            continue
        observation.chain = chain
        observation.certificate_id = ids[chain[0]][0]


def _staged_insert(rows: list[tuple[Any, ...]]) -> None:
    """Insert staged rows as plain tuples: a report's entries are many, models are slow."""
    rows_insert(InventoryStagedEntry, _STAGED_COLUMNS, rows)


def _link_issuers(entries: list[_Entry], ids: dict[str, tuple[int, int | None]]) -> None:
    """Remember each certificate's issuer where a chain told us, without overwriting."""
    children_by_issuer: dict[int, set[int]] = defaultdict(set)
    for entry in entries:
        for child, parent in zip(entry.chain, entry.chain[1:], strict=False):
            child_id, child_issuer = ids[child]
            if child != parent and child_issuer is None:
                children_by_issuer[ids[parent][0]].add(child_id)
    for issuer_id, child_ids in children_by_issuer.items():
        for chunk in _chunks(list(child_ids)):
            Certificate.objects.filter(pk__in=chunk, issuer_certificate__isnull=True).update(
                issuer_certificate_id=issuer_id
            )


def inventory_upload_sequences(*, upload: str) -> set[int]:
    """The chunk numbers staged so far for an upload."""
    return set(
        InventoryStagedEntry.objects.filter(upload=upload)
        .values_list("sequence", flat=True)
        .distinct()
    )


def inventory_upload_discard(*, upload_prefix: str) -> int:
    """Forget staged chunks whose upload name starts with ``upload_prefix``."""
    deleted, _ = InventoryStagedEntry.objects.filter(upload__startswith=upload_prefix).delete()
    return deleted


def _rejected_of(upload: str) -> tuple[list[RejectedEntry], int]:
    """The first rejected entries of an upload, in report order, and how many there are."""
    staged = InventoryStagedEntry.objects.filter(upload=upload, certificate__isnull=True).exclude(
        error=""
    )
    first = [
        RejectedEntry(position, alias, error)
        for position, alias, error in staged.order_by("position").values_list(
            "position", "alias", "error"
        )[:_ALIASES_KEPT_IN_RESULT]
    ]
    return first, staged.count()


def inventory_upload_commit(
    *,
    store: CertificateStore,
    upload: str,
    chunks: int,
    seen_at: dt.datetime | None = None,
) -> InventoryOutcome:
    """Make ``store``'s recorded contents what the staged report says, in one transaction.

    ``chunks`` is how many chunks the sender sent; a missing one refuses the commit.
    Locations absent from the report are removed; those
    at a rejected entry's alias are kept. When every entry was rejected, nothing is
    recorded (``recorded`` is false) and the staged rows are dropped, so a corrected
    report can be sent.
    """
    received = inventory_upload_sequences(upload=upload)
    missing = sorted(set(range(chunks)) - received)
    if missing:
        shown = ", ".join(str(m) for m in missing[:20])
        raise ServiceError(
            f"chunk(s) {shown} of this report never arrived; send them again, then commit",
            code="chunks_missing",
            http_status=409,
            details={"missing": missing[:1000]},
        )
    _duplicates_reject(upload)
    staged = InventoryStagedEntry.objects.filter(upload=upload)
    accepted_count = staged.filter(certificate__isnull=False).count()
    rejected, rejected_count = _rejected_of(upload)
    outcome = InventoryOutcome(
        rejected=rejected,
        rejected_count=rejected_count,
        entries=accepted_count + rejected_count,
    )
    if rejected_count and not accepted_count:
        # Recording it would only delete what we know.
        outcome.recorded = False
        staged.delete()
        return outcome
    now = seen_at or timezone.now()
    with transaction.atomic():
        _apply_locations(store, upload, now, outcome)
        if store.store_type.store_path_type == CertificateStoreType.PathType.TARGETS:
            endpoints_prune(store=store, upload=upload)
        staged.delete()
        CertificateStore.objects.filter(pk=store.pk).update(last_inventory_at=now)
        if outcome.added_count:
            _certificates_added_emit(store, outcome)
        if outcome.added_count or outcome.changed_count:
            # Certificates new to the inventory go through the metadata generators, once,
            # in the background (the every-minute schedule catches any left over).
            metadata_new_certificates_recorded()
    return outcome


def _certificates_added_emit(store: CertificateStore, outcome: InventoryOutcome) -> None:
    """One event per report that placed certificates in the store, however many."""
    event_emit(
        kind=EventKind.CERTIFICATES_ADDED,
        subject_type="store",
        subject_id=store.pk,
        subject_label=f"{store.client_machine}:{store.store_path}",
        data={
            "store_id": str(store.pk),
            "store_type": store.store_type.short_name,
            "orchestrator_id": str(store.orchestrator_id),
            "client_machine": store.client_machine,
            "store_path": store.store_path,
            "added": outcome.added_count,
            "added_aliases": outcome.added[:_ALIASES_KEPT_IN_RESULT],
        },
    )


def _duplicates_reject(upload: str) -> None:
    """An alias accepted in two chunks (sent one after the other or at once): the first
    in report order stands, the others are rejected."""
    table = connection.ops.quote_name(InventoryStagedEntry._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET certificate_id = NULL, error = %s "
            f"WHERE upload = %s AND certificate_id IS NOT NULL AND EXISTS ("
            f"SELECT 1 FROM {table} s WHERE s.upload = {table}.upload "
            f"AND s.alias = {table}.alias AND s.certificate_id IS NOT NULL "
            f"AND s.position < {table}.position)",
            [_DUPLICATE_ALIAS, upload],
        )


_DUPLICATE_ALIAS = "the same alias appears twice in the report"


def _apply_locations(
    store: CertificateStore, upload: str, now: dt.datetime, outcome: InventoryOutcome
) -> None:
    """Set-based: the staged rows (``s``) against the store's locations (``l``)."""
    quote = connection.ops.quote_name
    locations = quote(CertificateLocation._meta.db_table)
    staged = quote(InventoryStagedEntry._meta.db_table)
    timestamp = connection.ops.adapt_datetimefield_value(now)
    store_id = CertificateLocation._meta.get_field("store").get_db_prep_value(store.pk, connection)
    accepted = f"s.upload = %s AND s.certificate_id IS NOT NULL AND s.alias = {locations}.alias"
    same = (
        f"{accepted} AND s.certificate_id = {locations}.certificate_id "
        f"AND s.private_key = {locations}.has_private_key"
    )
    different = (
        f"{accepted} AND (s.certificate_id <> {locations}.certificate_id "
        f"OR s.private_key <> {locations}.has_private_key)"
    )

    def run(sql: str, params: list[Any]) -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount

    def aliases(sql: str, params: list[Any]) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [row[0] for row in cursor.fetchall()]

    limit = _ALIASES_KEPT_IN_RESULT
    outcome.unchanged = run(
        f"UPDATE {locations} SET last_seen = %s WHERE store_id = %s "
        f"AND EXISTS (SELECT 1 FROM {staged} s WHERE {same})",
        [timestamp, store_id, upload],
    )
    outcome.changed = aliases(
        f"SELECT alias FROM {locations} WHERE store_id = %s "
        f"AND EXISTS (SELECT 1 FROM {staged} s WHERE {different}) ORDER BY alias LIMIT {limit}",
        [store_id, upload],
    )
    if outcome.changed:
        new_certificate = f"(SELECT s.certificate_id FROM {staged} s WHERE {accepted})"
        new_private_key = f"(SELECT s.private_key FROM {staged} s WHERE {accepted})"
        outcome.changed_count = run(
            f"UPDATE {locations} SET certificate_id = {new_certificate}, "
            f"has_private_key = {new_private_key}, last_seen = %s "
            f"WHERE store_id = %s AND EXISTS (SELECT 1 FROM {staged} s WHERE {different})",
            [upload, upload, timestamp, store_id, upload],
        )
    # Every staged alias is kept, a rejected one too: we cannot tell what is there now.
    reported = f"s.upload = %s AND s.alias = {locations}.alias"
    outcome.removed = aliases(
        f"SELECT alias FROM {locations} WHERE store_id = %s "
        f"AND NOT EXISTS (SELECT 1 FROM {staged} s WHERE {reported}) "
        f"ORDER BY alias LIMIT {limit}",
        [store_id, upload],
    )
    if outcome.removed:
        outcome.removed_count = run(
            f"DELETE FROM {locations} WHERE store_id = %s "
            f"AND NOT EXISTS (SELECT 1 FROM {staged} s WHERE {reported})",
            [store_id, upload],
        )
    missing = (
        f"NOT EXISTS (SELECT 1 FROM {locations} l WHERE l.store_id = %s AND l.alias = s.alias)"
    )
    outcome.added = aliases(
        f"SELECT s.alias FROM {staged} s WHERE s.upload = %s AND s.certificate_id IS NOT NULL "
        f"AND {missing} ORDER BY s.position LIMIT {limit}",
        [upload, store_id],
    )
    if outcome.added:
        outcome.added_count = run(
            f"INSERT INTO {locations} "
            "(store_id, certificate_id, alias, has_private_key, first_seen, last_seen) "
            f"SELECT s.store_id, s.certificate_id, s.alias, s.private_key, %s, %s "
            f"FROM {staged} s WHERE s.upload = %s AND s.certificate_id IS NOT NULL "
            f"AND {missing}",
            [timestamp, timestamp, upload, store_id],
        )


def inventory_submit(
    *, store: CertificateStore, entries: list[Any], seen_at: dt.datetime | None = None
) -> InventoryOutcome:
    """Record a full inventory of ``store`` in one call: one chunk, committed at once."""
    upload = f"direct:{store.pk}:{timezone.now().timestamp()}"
    staged = inventory_chunk_stage(
        store=store, upload=upload, sequence=0, first_index=0, entries=entries
    )
    outcome = inventory_upload_commit(store=store, upload=upload, chunks=1, seen_at=seen_at)
    outcome.new_certificates = staged.new_certificates
    return outcome


@dataclass(slots=True)
class CertificatesRecorded:
    """What :func:`certificates_record` did: every certificate's id, and which were new."""

    ids: dict[str, int]  # SHA-256 -> certificate id, for every chain member
    new: set[str]  # SHA-256 of the certificates the inventory did not hold before
    rejected: dict[int, str]  # chain position -> why it could not be read


def certificates_record(
    chains: Sequence[Sequence[bytes]], *, loaded: Mapping[str, x509.Certificate] | None = None
) -> CertificatesRecorded:
    """Record certificates that no store reports: issued here, or listed by a CA gateway.

    The same path as an agent's report (parse only the unknown ones, insert, link each to
    its issuer, run the metadata generators on the new ones), without locations. Each
    chain is the certificate first, then its issuers. A chain whose first certificate
    cannot be read is left out and reported in ``rejected`` by its position.

    ``loaded`` (SHA-256 -> certificate): chain members the caller has already read with
    ``cryptography`` (a certificate it just issued or received), so they are parsed
    from those objects instead of from their DER once more.
    """
    ders: dict[str, bytes] = {}
    entries: list[_Entry] = []
    for position, chain in enumerate(chains):
        fingerprints = []
        for der in chain:
            fingerprint = sha256_hex(der)
            ders[fingerprint] = der
            fingerprints.append(fingerprint)
        if fingerprints:
            entries.append(_Entry(position, "", False, fingerprints))
    known = _known_certificates(ders)
    new_rows, unreadable = _parse_unknown(ders, known, loaded)
    rejected: dict[int, str] = {}
    kept: list[_Entry] = []
    for entry in entries:
        if entry.chain[0] in unreadable:
            rejected[entry.position] = unreadable[entry.chain[0]]
            continue
        # An unreadable issuer only costs the link to it.
        entry.chain = [entry.chain[0], *(f for f in entry.chain[1:] if f not in unreadable)]
        kept.append(entry)
    with transaction.atomic():
        _certificates_insert(new_rows, timezone.now())
        ids = {**known, **_known_certificates(row.sha256 for row in new_rows)}
        _link_issuers(kept, ids)
        if new_rows:
            metadata_new_certificates_recorded()
    return CertificatesRecorded(
        {fingerprint: value[0] for fingerprint, value in ids.items()},
        {row.sha256 for row in new_rows},
        rejected,
    )
