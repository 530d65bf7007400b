"""The inventory part of the agent API, under /api/orchestrator/v1/: store-type declarations.

Thin: check the body's shape and each declaration (``orchestrators.declarations``), call
one service, answer. The contract is in ``orchestrators/declarations.py``.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from certyard.api.errors import ApiError
from certyard.fleet.api.agent_auth import AgentView, valid_body
from certyard.inventory.declarations import MAX_DECLARATIONS, store_types_declare
from orchestrators.declarations import DeclarationError, declaration_from_wire

_TAG = ["orchestrator agent"]


class StoreTypesDeclareSerializer(serializers.Serializer):
    store_types = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=MAX_DECLARATIONS,
        help_text="Declarations in the wire form of orchestrators.declarations "
        "(StoreTypeDeclaration.to_wire).",
    )


class DeclareResultSerializer(serializers.Serializer):
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


class StoreTypesDeclaredSerializer(serializers.Serializer):
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
