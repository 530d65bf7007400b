"""The base of the APIs' serializers: fields built once per class, copied per serializer.

DRF's ``ModelSerializer`` works out its fields from the model for every serializer it
makes, which means every request: the model's field information, each field's class and
keyword arguments, then the fields themselves (under the profiler, 13 ``build_field`` and
``get_field_kwargs`` calls for one enrollment's answer; 0.23 to 0.34 ms per serializer on
this machine, a tenth of a small API request). A plain ``Serializer`` deep-copies each
declared field, calling its constructor again. None of that depends on the request: only
on the serializer's class, its ``Meta`` and its declared fields.

:class:`ModelSerializer` and :class:`Serializer` keep the fields DRF builds the first
time, unbound, per class, and give each new serializer copies of them to bind. A copy of
a plain field shares what the field never changes once made (its choices, its validators,
its base queryset, which ``RelatedField`` clones before every use) but gets its own copy
of a mutable default; a list or dictionary field gets a copy of its child, bound to it;
a nested serializer is copied whole, as DRF copies it. A subclass that shapes its fields
by request (``get_fields`` reading the context) overrides ``get_fields`` and calls this
one for the class's part.
"""

from __future__ import annotations

import copy
import threading
from typing import ClassVar

from rest_framework import serializers
from rest_framework.fields import Field


def _fresh(field: Field) -> Field:
    """A copy of an unbound field, for one serializer to bind."""
    if isinstance(field, serializers.BaseSerializer):
        return copy.deepcopy(field)
    fresh = object.__new__(type(field))
    fresh.__dict__.update(field.__dict__)
    # A default given as a list or dict (not as a callable) is each serializer's own, as
    # DRF's deep copy made it: a view adding to what it validated changes no other's.
    for name in ("default", "initial"):
        value = field.__dict__.get(name)
        if isinstance(value, list | dict | set):
            setattr(fresh, name, copy.deepcopy(value))
    # A list, a dictionary or a many-relation field holds a field bound to it (with no
    # name): the copy holds a copy, bound to the copy.
    for name in ("child", "child_relation"):
        child = field.__dict__.get(name)
        if isinstance(child, Field):
            fresh_child = _fresh(child)
            fresh_child.parent = fresh
            setattr(fresh, name, fresh_child)
    return fresh


class _FieldsKept:
    """Builds a serializer's fields once per class; each serializer binds copies."""

    _kept: ClassVar[dict[type, dict[str, Field]]] = {}
    _keeping: ClassVar[threading.Lock] = threading.Lock()

    def get_fields(self) -> dict[str, Field]:
        kept = _FieldsKept._kept.get(type(self))
        if kept is None:
            with _FieldsKept._keeping:
                kept = _FieldsKept._kept.get(type(self))
                if kept is None:
                    kept = super().get_fields()  # type: ignore[misc]
                    _FieldsKept._kept[type(self)] = kept
        return {name: _fresh(field) for name, field in kept.items()}


class ModelSerializer(_FieldsKept, serializers.ModelSerializer):
    """``rest_framework.serializers.ModelSerializer`` with its fields built once per class."""


class Serializer(_FieldsKept, serializers.Serializer):
    """``rest_framework.serializers.Serializer`` with its declared fields copied cheaply:
    DRF deep-copies each declared field (calling its constructor again) for every
    serializer it makes."""
