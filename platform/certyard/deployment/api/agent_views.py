"""The deployment part of the agent API: a discovery job's findings and a re-enrollment
job's CSR (``/api/orchestrator/v1/jobs/<id>/discovery`` and ``.../csr``).

Thin views: the body's shape is checked here, its meaning by the services.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from certyard.api.errors import ApiError
from certyard.api.serializers import Serializer
from certyard.deployment.services import discovery, reenrollment
from certyard.fleet.api.agent_auth import AgentView, valid_body

_TAG = ["orchestrator agent"]


class DiscoveryAnswerSerializer(Serializer):
    new = serializers.IntegerField()
    gone = serializers.IntegerField()
    known = serializers.IntegerField()
    duplicate = serializers.BooleanField()


class CsrSerializer(Serializer):
    attempt = serializers.IntegerField(min_value=1)
    csr = serializers.CharField(max_length=64 * 1024, trim_whitespace=False)


class CsrAnswerSerializer(Serializer):
    state = serializers.ChoiceField(choices=["issued", "pending"])
    enrollment_id = serializers.UUIDField()
    certificate = serializers.CharField(required=False)
    chain = serializers.ListField(child=serializers.CharField(), required=False)


# The report is checked field by field by the service and refuses what it does not know
# (an agent's report is attacker-written): the schema says so, closed at both levels.
_DISCOVERY_REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "attempt": {"type": "integer", "minimum": 1},
        "candidates": {
            "type": "array",
            "maxItems": discovery.MAX_CANDIDATES,
            "items": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "maxLength": discovery.MAX_PATH},
                    "kind": {"type": "string", "enum": list(discovery.CANDIDATE_KINDS)},
                    "store_type": {
                        "type": "string",
                        "enum": list(discovery.CANDIDATE_STORE_TYPES),
                        "nullable": True,
                    },
                    "certificate_count": {"type": "integer", "minimum": 0},
                    "private_key": {"type": "boolean"},
                    "password_needed": {"type": "boolean"},
                    "error": {"type": "string", "nullable": True},
                },
                "required": ["path", "kind"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["attempt", "candidates"],
    "additionalProperties": False,
}


class DiscoveryReportSerializer(Serializer):
    """Names the report in the schema (``_DISCOVERY_REPORT_SCHEMA``, by the extension below);
    it checks nothing: the view hands the body to the service, which checks it."""


class _DiscoveryReportSchema(OpenApiSerializerExtension):
    # Through a serializer rather than a raw schema given to extend_schema: drf-spectacular
    # marks a raw request schema optional, and a report without a body is refused (400).
    target_class = DiscoveryReportSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        return _DISCOVERY_REPORT_SCHEMA


def _attempt(body: dict[str, Any]) -> int:
    # A JSON integer, as the schema types it (not true, 1.5 or "1").
    value = body.get("attempt")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ApiError("attempt must be a whole number, 1 or more")
    return value


class DiscoveryReportView(AgentView):
    error_responses = {
        409: "Not this orchestrator's leased discovery job, or an earlier attempt.",
        413: "Over the candidate or size limit.",
    }

    @extend_schema(
        tags=_TAG,
        request=DiscoveryReportSerializer,
        responses={200: DiscoveryAnswerSerializer},
        summary="Report the candidates a discovery job found",
    )
    def post(self, request: Request, job_id: str) -> Response:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.CERTYARD_INVENTORY_MAX_BYTES:
            raise ApiError(
                f"the report is {length} bytes; the limit is "
                f"{settings.CERTYARD_INVENTORY_MAX_BYTES}",
                code="too_large",
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        body = request.data
        if not isinstance(body, dict):
            raise ApiError("the body must be a JSON object")
        unknown = set(body) - {"attempt", "candidates"}
        if unknown:
            raise ApiError(f"unknown fields: {', '.join(sorted(unknown))[:200]}")
        counts = discovery.discovery_report_record(
            orchestrator=request.user,
            job_id=job_id,
            attempt=_attempt(body),
            candidates=body.get("candidates"),
        )
        return Response({**counts.as_dict(), "duplicate": counts.duplicate})


class CsrView(AgentView):
    error_responses = {
        409: "Not this orchestrator's leased re-enrollment job, or an earlier attempt.",
    }

    @extend_schema(
        tags=_TAG,
        request=CsrSerializer,
        responses={
            200: CsrAnswerSerializer,
            202: OpenApiResponse(CsrAnswerSerializer, description="Waiting for approval."),
        },
        summary="Send a re-enrollment job's CSR (the key stays on the device)",
    )
    def post(self, request: Request, job_id: str) -> Response:
        data = valid_body(CsrSerializer, request)
        answer = reenrollment.reenrollment_csr_submit(
            orchestrator=request.user,
            job_id=job_id,
            attempt=data["attempt"],
            csr_pem=data["csr"],
        )
        return Response(answer.as_dict(), status=answer.http_status)
