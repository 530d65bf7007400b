"""JSON bodies are typed as the schema says: no coercion between JSON types.

DRF's fields are lenient about types because they also read form data, where everything is
text: a ``BooleanField`` takes ``0``, ``"yes"`` and ``"on"``, an ``IntegerField`` takes
``"12"`` and ``12.0``, a ``CharField`` takes ``12``, a ``UUIDField`` takes an integer and a
primary key field takes ``"7"``. The OpenAPI schema (drf-spectacular) documents the JSON
types (boolean, integer, string), so a client following it never sends those, and one
that does has a bug we should tell it about rather than guess around.

Both APIs read JSON only (``certyard.api.parsers``). Their parser hands the body over as a
``JsonObject`` or ``JsonArray``, and a serializer given one as its data checks that each
value has its field's JSON type before the field converts it. Serializers given anything
else (query parameters, which are text, or data built in Python) keep DRF's conversions.
"""

import uuid
from collections.abc import Callable
from typing import Any

from django.db import models
from rest_framework import fields, relations
from rest_framework.exceptions import ValidationError


class JsonObject(dict[str, Any]):
    """A request body the JSON parser read, when it is an object."""


class JsonArray(list[Any]):
    """A request body the JSON parser read, when it is an array."""


def json_body(value: Any) -> Any:
    """Mark a parsed body as JSON (only its outermost value: that is what serializers get)."""
    if isinstance(value, dict):
        return JsonObject(value)
    if isinstance(value, list):
        return JsonArray(value)
    return value


def _from_json(field: fields.Field) -> bool:
    return isinstance(getattr(field.root, "initial_data", None), JsonObject | JsonArray)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _choice_type(field: fields.ChoiceField, value: Any) -> bool:
    keys = list(field.choices)
    if keys and all(isinstance(key, str) for key in keys):
        return isinstance(value, str)
    if keys and all(_is_int(key) for key in keys):
        return _is_int(value)
    return True


def _primary_key_type(field: relations.PrimaryKeyRelatedField, value: Any) -> bool:
    queryset = field.get_queryset()
    pk = queryset.model._meta.pk if queryset is not None else None
    if isinstance(pk, models.UUIDField):
        return isinstance(value, str | uuid.UUID)
    if isinstance(pk, models.AutoField | models.BigAutoField | models.IntegerField):
        return _is_int(value)
    return isinstance(value, str) or _is_int(value)


# Field class -> (does the value have the JSON type, the type's name for the message).
# Subclasses are covered by their base (EmailField by CharField, and so on).
_JSON_TYPES: list[tuple[type[fields.Field], Callable[[Any, Any], bool], str]] = [
    (fields.BooleanField, lambda _f, v: isinstance(v, bool), "true or false"),
    (fields.IntegerField, lambda _f, v: _is_int(v), "a whole number"),
    (fields.FloatField, lambda _f, v: _is_number(v), "a number"),
    (fields.CharField, lambda _f, v: _is_str(v), "a string"),
    (fields.UUIDField, lambda _f, v: _is_str(v), "a string (a UUID)"),
    (fields.DateTimeField, lambda _f, v: _is_str(v), "a string (an ISO 8601 date and time)"),
    (fields.DateField, lambda _f, v: _is_str(v), "a string (an ISO 8601 date)"),
    (fields.ChoiceField, _choice_type, "one of the choices, as the schema spells it"),
    (relations.PrimaryKeyRelatedField, _primary_key_type, "an id, typed as the schema says"),
    (relations.SlugRelatedField, lambda _f, v: _is_str(v), "a string"),
]


def _typed(
    original: Callable[[Any, Any], Any], check: Callable[[Any, Any], bool], expected: str
) -> Callable[[Any, Any], Any]:
    def to_internal_value(self: Any, data: Any) -> Any:
        if _from_json(self) and not check(self, data):
            raise ValidationError(f"must be {expected}, not {type(data).__name__}", code="invalid")
        return original(self, data)

    to_internal_value.__wrapped__ = original  # type: ignore[attr-defined]
    return to_internal_value


def _slug_without_nul(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A related object named by text is looked up in the database: PostgreSQL refuses a
    NUL in a query (a 500), and no name holds one, so such a name is refused first."""

    def to_internal_value(self: Any, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            raise ValidationError("must not contain a NUL character (\\u0000)", code="invalid")
        return original(self, data)

    to_internal_value.__wrapped__ = original  # type: ignore[attr-defined]
    return to_internal_value


_installed = False


def install() -> None:
    """Give the fields above their JSON type check (once; the parser module calls it)."""
    global _installed
    if _installed:
        return
    for field_class, check, expected in _JSON_TYPES:
        field_class.to_internal_value = _typed(  # type: ignore[method-assign]
            field_class.to_internal_value, check, expected
        )
    relations.SlugRelatedField.to_internal_value = _slug_without_nul(  # type: ignore[method-assign]
        relations.SlugRelatedField.to_internal_value
    )
    _installed = True
