"""The deployment part of the agent API: a discovery job's findings and a re-enrollment
job's CSR (``/api/orchestrator/v1/jobs/<id>/discovery`` and ``.../csr``).

Thin views: the body's shape is checked here, its meaning by the services.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from certyard.api.errors import ApiError
from certyard.deployment.services import discovery, reenrollment
from certyard.fleet.api.agent_auth import AgentView, valid_body

_TAG = ["orchestrator agent"]


class DiscoveryCandidateReportSerializer(serializers.Serializer):
    """Documents a candidate's shape; candidates are checked by the service."""

    path = serializers.CharField(max_length=discovery.MAX_PATH)
    # Text, not an enum in the schema: "kind" names other choice sets elsewhere.
    kind = serializers.CharField(help_text=f"One of {', '.join(discovery.CANDIDATE_KINDS)}.")
    store_type = serializers.ChoiceField(
        choices=discovery.CANDIDATE_STORE_TYPES, allow_null=True, required=False
    )
    certificate_count = serializers.IntegerField(min_value=0, required=False)
    private_key = serializers.BooleanField(required=False)
    password_needed = serializers.BooleanField(required=False)
    error = serializers.CharField(allow_null=True, required=False)


class DiscoveryReportSerializer(serializers.Serializer):
    attempt = serializers.IntegerField(min_value=1)
    candidates = DiscoveryCandidateReportSerializer(many=True, max_length=discovery.MAX_CANDIDATES)


class DiscoveryAnswerSerializer(serializers.Serializer):
    new = serializers.IntegerField()
    gone = serializers.IntegerField()
    known = serializers.IntegerField()
    duplicate = serializers.BooleanField()


class CsrSerializer(serializers.Serializer):
    attempt = serializers.IntegerField(min_value=1)
    csr = serializers.CharField(max_length=64 * 1024, trim_whitespace=False)


class CsrAnswerSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["issued", "pending"])
    enrollment_id = serializers.UUIDField()
    certificate = serializers.CharField(required=False)
    chain = serializers.ListField(child=serializers.CharField(), required=False)


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
