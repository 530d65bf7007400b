"""Certificate metadata: typed fields, each certificate's values, and who set each one.

Every value goes through the same checks (:func:`field_rules`), whoever sets it: a person
in the console or the API, a metadata generator, a job complete handler. A value is kept
as canonical text (integers in decimal, dates ``YYYY-MM-DD``, booleans ``true`` /
``false``), so equal values compare equal in a filter, on every database.

A value a person set (source ``user:<name>``) is theirs: generators and handlers do not
overwrite or clear it unless asked to (``overwrite_user_values``). The rule is written in
the upsert's own ``WHERE`` (:func:`metadata_rows_write`), so it holds however writes
interleave.
"""

# The SQL below is built from model table names only; every value is a query parameter.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.utils import timezone

from certyard.errors import Conflict, ServiceError
from certyard.inventory.authorization import certificate_act_require
from certyard.inventory.models import (
    METADATA_FIELD_NAME,
    USER_SOURCE_PREFIX,
    Certificate,
    CertificateMetadata,
    MetadataField,
)
from certyard.workflows.invoke import registration_config
from certyard.workflows.models import HandlerRegistration
from certyard.x509 import text_is_storable
from handlers.base import (
    Handler,
    HandlerKind,
    MetadataFieldDeclaration,
    MetadataGenerator,
    metadata_field_declarations_check,
)
from handlers.registry import handler_class

FieldType = MetadataField.Type

# The longest value each type takes; one line of text for the others.
_TEXT_LIMIT = 10_000
_LINE_LIMIT = 1_000
_EMAIL_LIMIT = 254
# Integers beyond a signed 64-bit range would not survive an export to most systems.
_INTEGER_LIMIT = 2**63
_INTEGER = re.compile(r"[+-]?\d{1,19}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
# Rows per INSERT statement: 5 parameters each, well under SQLite's 32,766.
_ROWS_PER_STATEMENT = 1_500
_SOURCE_LIMIT = 200
_FIELD_NAME = re.compile(METADATA_FIELD_NAME)
_SHA256 = re.compile(r"[0-9a-f]{64}")
HANDLER_SOURCE = "handler"


class MetadataValueError(ValueError):
    """A value its field does not accept; the message says why, for a person."""


# --- Checking values -----------------------------------------------------------------


def _text(raw: Any, *, limit: int, one_line: bool) -> str | None:
    if type(raw) is str:
        text = raw.strip()
    elif isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise MetadataValueError(f"must be text, not {_kind(raw)}")
    elif isinstance(raw, float) and not math.isfinite(raw):
        raise MetadataValueError("must be text, not an infinite number")
    else:
        text = raw.strip() if isinstance(raw, str) else str(raw)
    if not text:
        return None
    if len(text) > limit:
        raise MetadataValueError(f"is longer than {limit:,} characters")
    # A backfill checks hundreds of thousands of values: ASCII text needs one look.
    if "\x00" in text if text.isascii() else not text_is_storable(text):
        raise MetadataValueError("contains characters that cannot be stored (NUL or bad Unicode)")
    if one_line and ("\n" in text or "\r" in text):
        raise MetadataValueError("must be one line (a long text field takes several)")
    return text


def _kind(raw: Any) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "true/false"
    if isinstance(raw, Mapping):
        return "an object"
    if isinstance(raw, list | tuple | set):
        return "a list"
    return type(raw).__name__


def _string(raw: Any) -> str | None:
    return _text(raw, limit=_LINE_LIMIT, one_line=True)


def _long_text(raw: Any) -> str | None:
    return _text(raw, limit=_TEXT_LIMIT, one_line=False)


def _integer(raw: Any) -> str | None:
    if isinstance(raw, bool):
        raise MetadataValueError("must be a whole number, not true/false")
    if isinstance(raw, float):
        if not (math.isfinite(raw) and raw.is_integer()):
            raise MetadataValueError("must be a whole number")
        raw = int(raw)
    if isinstance(raw, int):
        number = raw
    elif isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if not _INTEGER.fullmatch(text):
            raise MetadataValueError(f"must be a whole number (got {text[:40]!r})")
        number = int(text)
    else:
        raise MetadataValueError(f"must be a whole number, not {_kind(raw)}")
    if not -_INTEGER_LIMIT <= number < _INTEGER_LIMIT:
        raise MetadataValueError("is too large (at most 19 digits)")
    return str(number)


def _date(raw: Any) -> str | None:
    if isinstance(raw, dt.datetime):
        return raw.date().isoformat()
    if isinstance(raw, dt.date):
        return raw.isoformat()
    if not isinstance(raw, str):
        raise MetadataValueError(f"must be a date as YYYY-MM-DD, not {_kind(raw)}")
    text = raw.strip()
    if not text:
        return None
    if not _DATE.fullmatch(text):
        raise MetadataValueError(f"must be a date as YYYY-MM-DD (got {text[:40]!r})")
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise MetadataValueError(f"is not a date in the calendar ({text})") from None


def _boolean(raw: Any) -> str | None:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int) and raw in (0, 1):
        return "true" if raw else "false"
    if isinstance(raw, str):
        text = raw.strip().lower()
        if not text:
            return None
        if text in _TRUE:
            return "true"
        if text in _FALSE:
            return "false"
        raise MetadataValueError(f"must be true or false (got {raw.strip()[:40]!r})")
    raise MetadataValueError(f"must be true or false, not {_kind(raw)}")


def _email(raw: Any) -> str | None:
    text = _text(raw, limit=_EMAIL_LIMIT, one_line=True)
    if text is None:
        return None
    try:
        validate_email(text)
    except ValidationError:
        raise MetadataValueError(f"must be an email address (got {text[:60]!r})") from None
    return text


def _choice(choices: Sequence[str]) -> Callable[[Any], str | None]:
    by_folded = {choice.casefold(): choice for choice in choices}
    shown = ", ".join(choices[:20]) + (", ..." if len(choices) > 20 else "")

    def check(raw: Any) -> str | None:
        text = _text(raw, limit=_LINE_LIMIT, one_line=True)
        if text is None:
            return None
        if text in by_folded.values():
            return text
        found = by_folded.get(text.casefold())
        if found is None:
            raise MetadataValueError(f"must be one of: {shown} (got {text[:40]!r})")
        return found

    return check


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    FieldType.STRING: _string,
    FieldType.TEXT: _long_text,
    FieldType.INTEGER: _integer,
    FieldType.DATE: _date,
    FieldType.BOOLEAN: _boolean,
    FieldType.EMAIL: _email,
}


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How to check and canonicalise the values of one field (prepared once per batch)."""

    field: MetadataField
    check: Callable[[Any], str | None]
    pattern: re.Pattern[str] | None

    @property
    def field_id(self) -> int:
        return self.field.pk

    def clean(self, raw: Any) -> str | None:
        """The canonical text of ``raw``, or None for "no value"; raise MetadataValueError."""
        if raw is None:
            return None
        value = self.check(raw)
        if value is not None and self.pattern is not None and not self.pattern.fullmatch(value):
            raise MetadataValueError(f"does not match the pattern {self.pattern.pattern}")
        return value


def field_rule(field: MetadataField) -> FieldRule:
    check = _choice(field.choices or []) if field.type == FieldType.CHOICE else _CHECKS[field.type]
    try:
        pattern = re.compile(field.pattern) if field.pattern else None
    except re.error:
        pattern = None  # saved before patterns were checked: the type's check still holds
    return FieldRule(field=field, check=check, pattern=pattern)


def field_rules(fields: Iterable[MetadataField] | None = None) -> dict[str, FieldRule]:
    """Every field's rule, by field name."""
    fields = MetadataField.objects.all() if fields is None else fields
    return {field.name: field_rule(field) for field in fields}


def metadata_value_canonical(*, field: MetadataField, value: Any) -> str | None:
    """``value`` as ``field`` stores it (None: no value); ServiceError says why not."""
    try:
        return field_rule(field).clean(value)
    except MetadataValueError as exc:
        raise ServiceError(
            f"{field.name}: {exc}", details={"fields": {field.name: [str(exc)]}}
        ) from exc


# --- Writing values ------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def metadata_rows_write(
    rows: Sequence[tuple[int, int, str]],
    *,
    source: str,
    now: dt.datetime,
    protect_user_values: bool,
) -> int:
    """Upsert ``(certificate_id, field_id, canonical value)`` rows; how many changed.

    One ``INSERT ... ON CONFLICT DO UPDATE`` (of multi-row ``VALUES`` per chunk on SQLite,
    of ``unnest`` over arrays on PostgreSQL). An unchanged value is not written again (its
    ``updated_at`` says when it last changed), and with ``protect_user_values`` a value a
    person set stays as it is. A pair given twice keeps the last value. Call it inside a
    transaction.
    """
    if not rows:
        return 0
    unique = list({(row[0], row[1]): row for row in rows}.values())
    table = connection.ops.quote_name(CertificateMetadata._meta.db_table)
    when = connection.ops.adapt_datetimefield_value(now)
    guard = f"({table}.value <> excluded.value OR {table}.source <> excluded.source)" + (
        f" AND SUBSTR({table}.source, 1, {len(USER_SOURCE_PREFIX)}) <> %s"
        if protect_user_values
        else ""
    )
    update = (
        "ON CONFLICT (certificate_id, field_id) DO UPDATE SET value = excluded.value, "
        f"source = excluded.source, updated_at = excluded.updated_at WHERE {guard}"
    )
    columns = "(certificate_id, field_id, value, source, updated_at)"
    changed = 0
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Three array parameters, not thousands of placeholders: psycopg binds on the
            # client, and parsing a statement of 7,500 placeholders costs more than running it.
            certificate_ids, field_ids, values = (
                list(column) for column in zip(*unique, strict=True)
            )
            cursor.execute(
                f"INSERT INTO {table} {columns} SELECT u.c, u.f, u.v, %s, %s "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS u(c, f, v) "
                f"{update}",
                [source, when, certificate_ids, field_ids, values]
                + ([USER_SOURCE_PREFIX] if protect_user_values else []),
            )
            return max(cursor.rowcount, 0)
        for chunk in _chunks(unique, _ROWS_PER_STATEMENT):
            placeholders = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
            parameters: list[Any] = []
            for certificate_id, field_id, value in chunk:
                parameters += (certificate_id, field_id, value, source, when)
            if protect_user_values:
                parameters.append(USER_SOURCE_PREFIX)
            cursor.execute(
                f"INSERT INTO {table} {columns} VALUES {placeholders} {update}", parameters
            )
            changed += max(cursor.rowcount, 0)
    return changed


def metadata_rows_clear(
    *, certificate_ids: Sequence[int], field_ids: Sequence[int], protect_user_values: bool
) -> int:
    """Delete the values of ``field_ids`` on the certificates; how many were deleted."""
    if not certificate_ids or not field_ids:
        return 0
    deleted = 0
    for chunk in _chunks(list(certificate_ids), 500):
        values = CertificateMetadata.objects.filter(
            certificate_id__in=chunk, field_id__in=field_ids
        )
        if protect_user_values:
            values = values.exclude(source__startswith=USER_SOURCE_PREFIX)
        deleted += values.delete()[0]
    return deleted


def _checked_source(source: str) -> str:
    if not isinstance(source, str) or not source.strip() or len(source) > _SOURCE_LIMIT:
        raise ServiceError(f"a value's source must be a name of 1 to {_SOURCE_LIMIT} characters")
    return source


def user_source(user: AbstractBaseUser) -> str:
    """The source recorded for a value a person set."""
    return f"{USER_SOURCE_PREFIX}{user.get_username()}"[:_SOURCE_LIMIT]


def metadata_values_check(values: Any) -> dict[MetadataField, str | None]:
    """Each field's canonical value (None: clear it); ServiceError with one message per
    field at fault (``details["fields"]``), nothing written."""
    if not isinstance(values, Mapping):
        raise ServiceError("metadata must be an object of field names and values")
    # A name that is no identifier cannot be a field's (and PostgreSQL refuses NUL).
    names = [name for name in values if isinstance(name, str) and _FIELD_NAME.fullmatch(name)]
    fields = {field.name: field for field in MetadataField.objects.filter(name__in=names)}
    errors: dict[str, list[str]] = {}
    checked: dict[MetadataField, str | None] = {}
    for name, raw in values.items():
        key = str(name)[:100]
        field = fields.get(name) if isinstance(name, str) else None
        if field is None:
            errors[key] = [f"there is no metadata field named {key!r}"]
            continue
        try:
            checked[field] = field_rule(field).clean(raw)
        except MetadataValueError as exc:
            errors[key] = [str(exc)]
    if errors:
        first, messages = next(iter(errors.items()))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ServiceError(f"{first}: {messages[0]}{more}", details={"fields": errors})
    return checked


def metadata_values_set(
    *,
    certificates: Sequence[Certificate] | None = None,
    certificate_ids: Sequence[int] | None = None,
    values: Mapping[str, Any],
    source: str,
    overwrite_user_values: bool = False,
) -> int:
    """Set the same field values on some certificates; None (or empty text) clears one.

    Every value is checked first: one that its field refuses refuses the whole call
    (ServiceError, one message per field in ``details["fields"]``). ``source`` is
    ``user:<name>`` for a person (:func:`user_source`), whose values replace any; any other
    source leaves a person's values alone unless ``overwrite_user_values``. Returns how
    many values changed (set, replaced or cleared).
    """
    source = _checked_source(source)
    checked = metadata_values_check(values)
    ids = list(certificate_ids or []) + [certificate.pk for certificate in certificates or []]
    if not ids or not checked:
        return 0
    protect = not source.startswith(USER_SOURCE_PREFIX) and not overwrite_user_values
    rows = [
        (certificate_id, field.pk, value)
        for certificate_id in ids
        for field, value in checked.items()
        if value is not None
    ]
    cleared = [field.pk for field, value in checked.items() if value is None]
    with transaction.atomic():
        changed = metadata_rows_write(
            rows, source=source, now=timezone.now(), protect_user_values=protect
        )
        changed += metadata_rows_clear(
            certificate_ids=ids, field_ids=cleared, protect_user_values=protect
        )
    return changed


def certificate_metadata_update(
    *, certificate: Certificate, values: Mapping[str, Any], actor: AbstractBaseUser
) -> int:
    """A person sets a certificate's values: only one who may act on the certificate
    (``certyard.inventory.authorization``); the values are theirs (``user:<name>``)."""
    certificate_act_require(actor, certificate)
    return metadata_values_set(certificates=[certificate], values=values, source=user_source(actor))


def metadata_set_for_handler(*, certificate_sha256: str, values: Mapping[str, Any]) -> None:
    """The ``set_metadata`` action a job complete handler asks for (source ``handler``)."""
    fingerprint = str(certificate_sha256).strip().lower().replace(":", "")
    if not _SHA256.fullmatch(fingerprint):
        raise ServiceError("certificate_sha256 must be a SHA-256 fingerprint (64 hex digits)")
    certificate = Certificate.objects.filter(sha256=fingerprint).only("pk").first()
    if certificate is None:
        raise ServiceError(f"the inventory holds no certificate {fingerprint}")
    metadata_values_set(certificates=[certificate], values=values, source=HANDLER_SOURCE)


# --- Fields ---------------------------------------------------------------------------

# What a person may set on a field: the admin form, the API and the service share it.
METADATA_FIELD_ATTRIBUTES = (
    "name",
    "label",
    "type",
    "choices",
    "pattern",
    "required_at_enrollment",
    "description",
    "order",
)


def _field_save(field: MetadataField) -> MetadataField:
    try:
        field.full_clean()
    except ValidationError as exc:
        errors = {name: [str(m) for m in messages] for name, messages in exc.message_dict.items()}
        first, messages = next(iter(errors.items()))
        raise ServiceError(f"{first}: {messages[0]}", details={"fields": errors}) from exc
    field.save()
    return field


def metadata_field_create(
    *,
    name: str,
    type: str = FieldType.STRING,
    label: str = "",
    choices: Sequence[str] = (),
    pattern: str = "",
    required_at_enrollment: bool = False,
    description: str = "",
    order: int = 100,
) -> MetadataField:
    """Define a field; ServiceError names the attribute at fault (``details["fields"]``)."""
    return _field_save(
        MetadataField(
            name=name,
            type=type,
            label=label,
            choices=list(choices),
            pattern=pattern,
            required_at_enrollment=required_at_enrollment,
            description=description,
            order=order,
        )
    )


def metadata_field_update(*, field: MetadataField, **changes: Any) -> MetadataField:
    """Change a field's definition; its type only while no certificate has a value.

    Values already stored are not checked again against a new pattern or choices.
    """
    unknown = sorted(set(changes) - set(METADATA_FIELD_ATTRIBUTES))
    if unknown:
        raise ServiceError(f"a metadata field has no attribute {', '.join(unknown)}")
    new_type = changes.get("type", field.type)
    if new_type != field.type and field.values.exists():
        raise Conflict(
            f"{field.name} has values: its type cannot change from {field.type} to {new_type} "
            "(create a new field instead)",
            code="field_in_use",
        )
    for attribute, value in changes.items():
        setattr(field, attribute, list(value) if attribute == "choices" else value)
    return _field_save(field)


def metadata_field_delete(*, field: MetadataField) -> int:
    """Delete a field and every certificate's value for it; how many values went."""
    with transaction.atomic():
        count = field.values.count()
        # Nothing hangs on a value (no signal, no cascade): Django deletes them in one query.
        field.delete()
    return count


# The existing field types that take the values of a declared type: a generator's text
# fits a long-text field, or a choice or email field an administrator made stricter (a
# value such a field refuses costs that certificate only, as always); its numbers fit
# text. Any other pair is refused: a boolean field cannot take text.
_AGREEING_TYPES: dict[str, set[str]] = {
    FieldType.STRING: {FieldType.STRING, FieldType.TEXT, FieldType.CHOICE, FieldType.EMAIL},
    FieldType.TEXT: {FieldType.TEXT},
    FieldType.INTEGER: {FieldType.INTEGER, FieldType.STRING, FieldType.TEXT},
    FieldType.DATE: {FieldType.DATE},
    FieldType.BOOLEAN: {FieldType.BOOLEAN},
    FieldType.CHOICE: {FieldType.CHOICE, FieldType.STRING, FieldType.TEXT},
    FieldType.EMAIL: {FieldType.EMAIL, FieldType.STRING, FieldType.TEXT},
}


def generator_fields_ensure(
    *, declarations: Sequence[MetadataFieldDeclaration], apply: bool = True
) -> list[MetadataField]:
    """Create the fields a metadata generator declares that do not exist yet.

    Idempotent: a field that exists with an agreeing type is left as it is (its label and
    description are the administrator's). One that exists with another type is never
    overwritten: ServiceError names it and nothing is created. With ``apply`` False
    nothing is written (a form checks before it saves). Returns the fields created.
    """
    try:
        metadata_field_declarations_check(declarations)
    except TypeError as exc:
        raise ServiceError(f"the generator declares its metadata fields wrongly: {exc}") from exc
    existing = {
        field.name: field
        for field in MetadataField.objects.filter(name__in=[d.name for d in declarations])
    }
    conflicts = []
    for declaration in declarations:
        field = existing.get(declaration.name)
        declared = FieldType(str(declaration.type))
        if field is not None and field.type not in _AGREEING_TYPES.get(declared, {declared}):
            conflicts.append(
                f"the metadata field {field.name} exists with the type "
                f"{field.get_type_display()!r}, which cannot take the generator's "
                f"{declared.label!r} values"
            )
    if conflicts:
        raise ServiceError(
            "; ".join(conflicts).capitalize()[:1]
            + "; ".join(conflicts)[1:]
            + ". It is not changed: rename or delete that field, or configure the "
            "generator to use another name (e.g. a prefix).",
            code="field_type_conflict",
        )
    if not apply:
        return []
    created = []
    with transaction.atomic():
        for declaration in declarations:
            if declaration.name in existing:
                continue
            created.append(
                metadata_field_create(
                    name=declaration.name,
                    type=str(declaration.type),
                    label=declaration.label[:200],
                    choices=list(declaration.choices),
                    description=declaration.description,
                )
            )
    return created


def generator_fields_disagreements(
    *, declarations: Sequence[MetadataFieldDeclaration]
) -> list[str]:
    """One sentence per declared field that exists but differs from its declaration.

    Only fields whose type takes the declared values are compared (another type is a
    refusal, see :func:`generator_fields_ensure`): a different agreeing type, other
    choices, another label or description. Nothing is changed: the field is the
    administrator's, and these are warnings a registration is saved with. An empty
    declared label or description says nothing, so it never disagrees.
    """
    existing = {
        field.name: field
        for field in MetadataField.objects.filter(name__in=[d.name for d in declarations])
    }
    warnings = []
    for declaration in declarations:
        field = existing.get(declaration.name)
        if field is None:
            continue
        declared = FieldType(str(declaration.type))
        if field.type not in _AGREEING_TYPES.get(declared, {declared}):
            continue  # a refusal, not a warning
        differences = []
        if field.type != declared:
            differences.append(
                f"its type is {field.get_type_display()!r}, the generator declares "
                f"{declared.label!r}"
            )
        if (
            declared == FieldType.CHOICE
            and field.type == FieldType.CHOICE
            and sorted(field.choices or []) != sorted(declaration.choices)
        ):
            differences.append(
                f"its choices are {', '.join(field.choices or []) or 'none'}, the generator "
                f"declares {', '.join(declaration.choices) or 'none'} (a value outside the "
                "field's choices is refused for that certificate)"
            )
        if declaration.label and declaration.label[:200] != field.label:
            differences.append(
                f"its label is {field.label!r}, the generator declares {declaration.label!r}"
            )
        if declaration.description and declaration.description != field.description:
            differences.append("its description differs from the generator's")
        if differences:
            warnings.append(
                f"The metadata field {field.name} differs from the generator's declaration: "
                + "; ".join(differences)
                + ". The field is kept as it is; change it (the console's Metadata page or "
                "Django admin) if the declaration is right."
            )
    return warnings


def generator_fields_hook(cls: type[Handler], config: Mapping[str, Any], apply: bool) -> list[str]:
    """workflows' registration hook for metadata generators: their declared fields are
    created (``apply``) or checked; returns the warnings about existing fields that
    differ from their declarations."""
    if not issubclass(cls, MetadataGenerator):
        return []
    declarations = cls.declared_fields(config)
    # Checked (and created) first: a wrong declaration is a refusal, and a field created
    # now agrees with its declaration, so only fields that existed are reported.
    generator_fields_ensure(declarations=declarations, apply=apply)
    return generator_fields_disagreements(declarations=declarations)


def generator_registration_fields_create(
    *, registration: HandlerRegistration
) -> list[MetadataField]:
    """Create the fields ``registration``'s generator declares that do not exist (it was
    registered before generators declared their fields, or a field was deleted since);
    the fields created. The same checks as a registration: a field of another type is a
    ServiceError and nothing is created."""
    info = handler_class(registration.handler)
    if (
        registration.kind != HandlerKind.METADATA
        or info is None
        or info.cls is None
        or not issubclass(info.cls, MetadataGenerator)
    ):
        raise ServiceError(
            f"{registration.name} is not a metadata generator this platform can load",
            code="not_a_generator",
        )
    try:
        declarations = info.cls.declared_fields(registration_config(registration))
    except Exception as exc:  # extension code: its failure is the generator's, not ours
        raise ServiceError(
            f"{registration.name}: its generator could not say which fields it fills "
            f"({type(exc).__name__})",
            code="declaration_failed",
        ) from exc
    return generator_fields_ensure(declarations=declarations)
