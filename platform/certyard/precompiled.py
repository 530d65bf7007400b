"""Read queries whose SQL is built once per process, for the paths every request takes.

Django builds a queryset's SQL anew each time it runs it: resolving the lookups, the
joins ``select_related`` adds, the columns and their aliases. For the small indexed
look-ups each request makes (its API token, its agent's orchestrator) that building cost
more than the database's own work: under the profiler, the API token's look-up spent four
times as long in ``SQLCompiler.as_sql`` as in SQLite.

A :class:`PrecompiledQuery` is written as the queryset it stands for, with named
parameters. The first run on a database builds that queryset once with placeholder values
and keeps its SQL, the positions of the placeholders among its parameters, and Django's
own instructions for turning rows into model instances (``select_related`` included).
Each run after that binds the values and executes the statement: the rows become
instances exactly as the queryset would have made them.

Only what survives that is accepted, and checked when the SQL is built: parameters of a
type whose value the database gets as it is (strings, integers) or in one known form
(UUIDs: as they are where the database has a UUID type, as hex text elsewhere, as
Django's ``UUIDField`` sends them), each used as itself (not inside a ``LIKE`` pattern),
and model instances out (no ``values()``, no ``prefetch_related``).
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, models
from django.db.models.query import ModelIterable, get_related_populators
from django.db.models.sql.compiler import SQLCompiler

M = TypeVar("M", bound=models.Model)

# Values no caller passes: each stands for one parameter while the SQL is built.
_TEXT_PLACEHOLDER = "\x00certyard-parameter-{index}\x00"
_INTEGER_PLACEHOLDER = -(2**62)
_UUID_PLACEHOLDER = 0xC0FFEE << 64
_KINDS = (str, int, uuid.UUID)


def _placeholder(kind: type, index: int) -> Any:
    if kind is str:
        return _TEXT_PLACEHOLDER.format(index=index)
    if kind is int:
        return _INTEGER_PLACEHOLDER + index
    return uuid.UUID(int=_UUID_PLACEHOLDER + index)


def _as_sent(value: Any, using: str) -> Any:
    """``value`` as Django sends it to the database ``using`` names."""
    if isinstance(value, uuid.UUID) and not connections[using].features.has_native_uuid_field:
        return value.hex
    return value


@dataclasses.dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[tuple[int, str], ...]  # (position among the params, parameter name)
    compiler: SQLCompiler
    model_start: int
    model_end: int
    init_list: list[str]
    related_populators: list[Any]


class PrecompiledQuery(Generic[M]):
    """``PrecompiledQuery(lambda key: Token.objects.filter(key=key), key=str)``, then
    ``query(key=presented)``: the instances the queryset would give, in a list.

    ``build`` returns the queryset for the parameters it is called with (once per
    database, with placeholders); the keyword arguments name each parameter's type:
    ``str``, ``int`` or ``uuid.UUID``.
    """

    def __init__(self, build: Callable[..., models.QuerySet[M]], **parameters: type) -> None:
        for name, kind in parameters.items():
            if kind not in _KINDS:
                raise ImproperlyConfigured(
                    f"precompiled query parameter {name!r}: only str, int and UUID reach "
                    f"the database in a known form, not {kind.__name__}"
                )
        self._build = build
        self._parameters = parameters
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def __call__(self, using: str = "default", **values: Any) -> list[M]:
        compiled = self._compiled.get(using) or self._compile(using)
        if values.keys() != self._parameters.keys():
            raise TypeError(f"expected the parameters {sorted(self._parameters)}")
        params = list(compiled.params)
        for position, name in compiled.slots:
            value = values[name]
            if type(value) is not self._parameters[name]:
                raise TypeError(f"{name} must be {self._parameters[name].__name__}")
            params[position] = _as_sent(value, using)
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        objects = []
        model = compiled.compiler.klass_info["model"]
        for row in compiled.compiler.results_iter(results=[rows]):
            instance = model.from_db(
                using, compiled.init_list, row[compiled.model_start : compiled.model_end]
            )
            for populator in compiled.related_populators:
                populator.populate(row, instance)
            objects.append(instance)
        return objects

    def _compile(self, using: str) -> _Compiled:
        with self._lock:
            if compiled := self._compiled.get(using):
                return compiled
            placeholders: dict[str, Any] = {
                name: _placeholder(kind, index)
                for index, (name, kind) in enumerate(self._parameters.items())
            }
            queryset = self._build(**placeholders)
            self._check_queryset(queryset)
            compiler = queryset.query.get_compiler(using=using)
            sql, params = compiler.as_sql()
            sent = {name: _as_sent(value, using) for name, value in placeholders.items()}
            slots = []
            for position, param in enumerate(params):
                for name, placeholder in sent.items():
                    if type(param) is type(placeholder) and param == placeholder:
                        slots.append((position, name))
                    elif isinstance(param, str) and str(placeholder) in param:
                        raise ImproperlyConfigured(
                            f"precompiled query parameter {name!r} reaches the database "
                            "changed (inside a pattern?); only plain comparisons work"
                        )
            if {name for _, name in slots} != sent.keys():
                raise ImproperlyConfigured(
                    "a precompiled query's parameters must each reach the database as "
                    f"passed; missing: {sorted(sent.keys() - {n for _, n in slots})}"
                )
            select, klass_info = compiler.select, compiler.klass_info
            select_fields = klass_info["select_fields"]
            start, end = select_fields[0], select_fields[-1] + 1
            compiled = _Compiled(
                sql=sql,
                params=tuple(params),
                slots=tuple(slots),
                compiler=compiler,
                model_start=start,
                model_end=end,
                init_list=[column[0].target.attname for column in select[start:end]],
                related_populators=get_related_populators(klass_info, select, using),
            )
            self._compiled[using] = compiled
            return compiled

    @staticmethod
    def _check_queryset(queryset: models.QuerySet[Any]) -> None:
        if queryset._iterable_class is not ModelIterable:
            raise ImproperlyConfigured("a precompiled query returns model instances")
        if queryset._prefetch_related_lookups or queryset._known_related_objects:
            raise ImproperlyConfigured("a precompiled query cannot prefetch related objects")
        if queryset.query.annotation_select or queryset.query.extra_select:
            raise ImproperlyConfigured("a precompiled query takes no annotations")
