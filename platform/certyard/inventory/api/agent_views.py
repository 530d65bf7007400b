"""The inventory part of the agent API, under /api/orchestrator/v1/: store-type declarations.

Thin: check the body's shape and each declaration (``orchestrators.declarations``), call
one service, answer. The contract is in ``orchestrators/declarations.py``.
"""

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from certyard.api.errors import ApiError
from certyard.api.schema import NON_BLANK_TEXT_PATTERN, TEXT_PATTERN
from certyard.api.serializers import Serializer
from certyard.fleet.api.agent_auth import AgentView, valid_body
from certyard.inventory.declarations import MAX_DECLARATIONS, store_types_declare
from orchestrators.declarations import (
    MAX_CHOICES,
    MAX_PROPERTIES,
    MAX_TEXT,
    PROPERTY_NAME_PATTERN,
    SHORT_NAME_PATTERN,
    DeclarationError,
    PasswordStyle,
    Policy,
    PropertyType,
    RequiredWhen,
    declaration_from_wire,
)
from orchestrators.protocol import StoreOperation

_TAG = ["orchestrator agent"]


def _one_of(values: list[str]) -> dict[str, Any]:
    # allOf, not a bare enum: drf-spectacular would make a bare one a named component.
    return {"type": "string", "allOf": [{"enum": values}]}


_TEXT = {"type": "string", "maxLength": MAX_TEXT, "pattern": TEXT_PATTERN}


def _property_schema(*, entry: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "name": {"type": "string", "pattern": PROPERTY_NAME_PATTERN.pattern},
        "display_name": {**_TEXT, "description": "Blank: the name."},
        "type": _one_of([str(item) for item in PropertyType]),
        "required": {"type": "boolean"},
        # Untyped: any value false in Python (null, "", 0, {}) is read as none.
        "choices": {
            "description": f"A choice property's choices: at most {MAX_CHOICES} non-empty "
            "strings (of 200 characters at most)."
        },
        "default": {"description": "A value of the property's type (a secret has none)."},
        "depends_on": {
            "type": "object",
            "nullable": True,
            "description": "The property applies only when the one named has this value.",
            "properties": {"name": {"type": "string"}, "value": {}},
            "required": ["name"],
        },
        "help": _TEXT,
    }
    if entry:
        properties["required_when"] = {
            "description": "A list of: " + ", ".join(str(item) for item in RequiredWhen)
        }
    return {"type": "object", "properties": properties, "required": ["name"]}


def _properties_schema(*, entry: bool) -> dict[str, Any]:
    return {
        "type": "array",
        "nullable": True,
        "maxItems": MAX_PROPERTIES,
        "items": _property_schema(entry=entry),
    }


# What declaration_from_wire checks field by field. Not what it checks across fields (a
# choice property's choices, a default of the property's type, depends_on naming a declared
# property, no property or store type twice): the schema cannot say that, and those are
# refused (400) beyond it. Keys it does not know are ignored (a newer agent's additions).
_DECLARATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "short_name": {"type": "string", "pattern": SHORT_NAME_PATTERN.pattern},
        "name": {"type": "string", "maxLength": MAX_TEXT, "pattern": NON_BLANK_TEXT_PATTERN},
        "schema_version": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "operations": {
            "type": "array",
            "minItems": 1,
            "items": _one_of([str(item) for item in StoreOperation]),
        },
        "properties": _properties_schema(entry=False),
        "entry_parameters": _properties_schema(entry=True),
        "private_key": _one_of([str(item) for item in Policy]),
        "custom_alias": _one_of([str(item) for item in Policy]),
        "password": _one_of([str(item) for item in PasswordStyle]),
        "store_path_hint": _TEXT,
        "description": _TEXT,
    },
    "required": ["short_name", "name", "operations"],
}


@extend_schema_field(_DECLARATION_SCHEMA)
class _DeclarationField(serializers.DictField):
    """A declaration in its wire form: checked by declaration_from_wire, typed in the schema."""


class StoreTypesDeclareSerializer(Serializer):
    store_types = serializers.ListField(
        child=_DeclarationField(),
        min_length=1,
        max_length=MAX_DECLARATIONS,
        help_text="Declarations in the wire form of orchestrators.declarations "
        "(StoreTypeDeclaration.to_wire).",
    )


class DeclareResultSerializer(Serializer):
    short_name = serializers.CharField()
    created = serializers.BooleanField()
    updated = serializers.BooleanField()
    migrated_stores = serializers.IntegerField()
    flagged_stores = serializers.IntegerField(
        help_text="Stores left with a value the new declaration does not allow (kept, flagged)."
    )
    ignored = serializers.CharField(
        allow_null=True, help_text='Why the declaration changed nothing ("built in", ...).'
    )


class StoreTypesDeclaredSerializer(Serializer):
    store_types = DeclareResultSerializer(many=True)


class StoreTypesView(AgentView):
    error_responses = {
        400: "The body is not a list of well-formed declarations (the message names the "
        "field), or declares more than 50 store types or one twice.",
        403: "The orchestrator is not approved.",
        409: None,
    }

    @extend_schema(
        tags=_TAG,
        request=StoreTypesDeclareSerializer,
        responses={200: StoreTypesDeclaredSerializer},
        summary="Declare the store types the agent carries",
    )
    def post(self, request: Request) -> Response:
        data = valid_body(StoreTypesDeclareSerializer, request)
        try:
            declarations = [declaration_from_wire(item) for item in data["store_types"]]
        except DeclarationError as exc:
            raise ApiError(str(exc)) from None
        results = store_types_declare(declarations=declarations, orchestrator=request.user)
        return Response({"store_types": [result.to_wire() for result in results]})
