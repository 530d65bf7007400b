"""Inserting many rows fast, for the paths that write thousands at once.

Django's ``bulk_create`` prepares every value of every row through the query compiler,
which costs more than the database's own work for wide rows. These helpers take the rows
as tuples (or model instances whose values are converted once per field kind) and send
multi-row statements, or COPY on PostgreSQL.
"""
# The SQL is built from table and column names the models declare, never from input; the
# values are always bound parameters.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connection, models

# Bound parameters in one statement: well under SQLite's limit (32766) and PostgreSQL's.
PARAMETERS_PER_STATEMENT = 4000


def chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rows_insert(
    model: type[models.Model], columns: Sequence[str], rows: list[tuple[Any, ...]], suffix: str = ""
) -> None:
    """Insert many rows fast: COPY on PostgreSQL (through a temporary table when
    ``suffix`` says how to treat conflicts), multi-row VALUES statements elsewhere."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        _rows_copy(model, columns, rows, suffix)
        return
    table = connection.ops.quote_name(model._meta.db_table)
    row_placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    per_statement = max(1, PARAMETERS_PER_STATEMENT // len(columns))
    with connection.cursor() as cursor:
        for chunk in chunks(rows, per_statement):
            values = ", ".join([row_placeholder] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} {suffix}",
                [value for row in chunk for value in row],
            )


def _rows_copy(
    model: type[models.Model], columns: Sequence[str], rows: list[tuple[Any, ...]], suffix: str
) -> None:
    # Django binds parameters on the client for psycopg, quoting each value in Python;
    # COPY streams the rows instead.
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        target = table
        if suffix:
            target = connection.ops.quote_name(f"certyard_copy_{model._meta.db_table}")
            raw.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {target} AS "
                f"SELECT {names} FROM {table} WITH NO DATA"
            )
            raw.execute(f"TRUNCATE {target}")
        with raw.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        if suffix:
            raw.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {target} {suffix}")


# Field classes whose Python value the database drivers take as it is.
_PLAIN = (
    models.CharField,
    models.TextField,
    models.BooleanField,
    models.IntegerField,
    models.BigIntegerField,
    models.PositiveIntegerField,
    models.PositiveSmallIntegerField,
    models.SmallIntegerField,
)


def instances_insert(model: type[models.Model], instances: Sequence[models.Model]) -> None:
    """``bulk_create`` for instances whose primary key is set in Python (a UUID): the same
    values, each field's conversion chosen once, not once per value."""
    if not instances:
        return
    fields = [field for field in model._meta.concrete_fields]
    for instance in instances:
        for field in fields:
            if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                field.pre_save(instance, add=True)
    converters = []
    for field in fields:
        # A relation's column holds the target's key; a plain text or number needs nothing;
        # anything else (times, JSON, UUIDs, encrypted text) goes through its field.
        relation = isinstance(field, models.ForeignKey)
        plain = type(field) in _PLAIN or (
            relation and not isinstance(field.target_field, models.UUIDField)
        )
        converters.append(None if plain else field)
    rows = []
    for instance in instances:
        row = []
        for field, converter in zip(fields, converters, strict=True):
            value = getattr(instance, field.attname)
            if converter is not None:
                value = converter.get_db_prep_save(value, connection)
            row.append(value)
        rows.append(tuple(row))
    rows_insert(model, [connection.ops.quote_name(f.column) for f in fields], rows)
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias
