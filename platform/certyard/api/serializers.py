"""The base of every model serializer of both APIs: its fields built from the model once.

DRF's ``ModelSerializer`` works out its fields from the model for every serializer it
makes, which means every request: the model's field information, each field's class and
keyword arguments, then the fields themselves (under the profiler, 13 ``build_field`` and
``get_field_kwargs`` calls for one enrollment's answer; 0.23 to 0.34 ms per serializer on
this machine, a tenth of a small API request). None of that depends on the request: only
on the serializer's class, its ``Meta`` and its declared fields.

:class:`ModelSerializer` keeps the fields DRF builds the first time, unbound, per class,
and gives each new serializer copies of them to bind. A copy of a plain field shares what
the field never changes once made (its choices, its validators, its base queryset, which
``RelatedField`` clones before every use); a field holding other fields (a nested
serializer, a list of relations, a ``ListField``) is copied whole, as DRF copies declared
fields. A subclass that shapes its fields by request (``get_fields`` reading the context)
overrides ``get_fields`` and calls this one for the model's part.
"""

from __future__ import annotations

import copy
import threading
from typing import ClassVar

from rest_framework import serializers
from rest_framework.fields import Field


def _holds_fields(field: Field) -> bool:
    return isinstance(field, serializers.BaseSerializer) or any(
        hasattr(field, name) for name in ("child", "child_relation")
    )


def _fresh(field: Field) -> Field:
    """A copy of an unbound field, for one serializer to bind."""
    if _holds_fields(field):
        return copy.deepcopy(field)
    fresh = object.__new__(type(field))
    fresh.__dict__.update(field.__dict__)
    return fresh


class ModelSerializer(serializers.ModelSerializer):
    """``rest_framework.serializers.ModelSerializer`` with its fields built once per class."""

    _built_fields: ClassVar[dict[type, dict[str, Field]]] = {}
    _building: ClassVar[threading.Lock] = threading.Lock()

    def get_fields(self) -> dict[str, Field]:
        built = ModelSerializer._built_fields.get(type(self))
        if built is None:
            with ModelSerializer._building:
                built = ModelSerializer._built_fields.get(type(self))
                if built is None:
                    built = super().get_fields()
                    ModelSerializer._built_fields[type(self)] = built
        return {name: _fresh(field) for name, field in built.items()}
