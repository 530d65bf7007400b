"""The jobs part of the agent API, under /api/orchestrator/v1/jobs/.

Thin views: check the input, call one service, answer. The contract is written
down in orchestrators/protocol.py.
"""

import time
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from certyard.api.errors import ApiError, error_body
from certyard.fleet.api.agent_views import AgentView, valid_body
from certyard.jobs import services
from certyard.jobs.api.agent_serializers import (
    CompleteSerializer,
    InventoryEntrySerializer,
    JobSummarySerializer,
)
from orchestrators.protocol import MAX_POLL_WAIT_SECONDS, JobOutcome

_TAG = ["orchestrator agent"]
_POLL_INTERVAL_SECONDS = 1.0


class NextJobView(AgentView):
    @extend_schema(
        tags=_TAG,
        parameters=[OpenApiParameter("wait", int, description="Seconds to wait for a job.")],
        responses={200: JobSummarySerializer, 204: OpenApiResponse(description="No job.")},
        summary="Long-poll for the next job; it is leased to this orchestrator",
    )
    def get(self, request: Request) -> Response:
        try:
            wait = int(request.query_params.get("wait", "0"))
        except ValueError:
            raise ApiError("wait must be a whole number of seconds") from None
        deadline = time.monotonic() + min(max(wait, 0), MAX_POLL_WAIT_SECONDS)
        while True:
            job = services.job_lease_next(orchestrator=request.user)
            if job is not None:
                return Response(JobSummarySerializer(job).data)
            if time.monotonic() + _POLL_INTERVAL_SECONDS > deadline:
                return Response(status=status.HTTP_204_NO_CONTENT)
            time.sleep(_POLL_INTERVAL_SECONDS)


class JobConfigView(AgentView):
    @extend_schema(tags=_TAG, responses={200: dict}, summary="The job's configuration")
    def get(self, request: Request, job_id: str) -> Response:
        return Response(services.job_configuration(orchestrator=request.user, job_id=job_id))


class InventoryView(AgentView):
    @extend_schema(
        tags=_TAG,
        request=InventoryEntrySerializer(many=True),
        responses={200: dict, 422: dict},
        summary="Report what a store holds (the whole store, replacing the last report)",
    )
    def post(self, request: Request, job_id: str) -> Response:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.CERTYARD_INVENTORY_MAX_BYTES:
            raise ApiError(
                f"the inventory report is {length} bytes; the limit is "
                f"{settings.CERTYARD_INVENTORY_MAX_BYTES} (CERTYARD_INVENTORY_MAX_BYTES)",
                code="too_large",
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        body: Any = request.data
        entries = body.get("entries") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise ApiError('the body must be {"entries": [...]}')
        if len(entries) > settings.CERTYARD_INVENTORY_MAX_ENTRIES:
            raise ApiError(
                f"the report has {len(entries)} entries; the limit is "
                f"{settings.CERTYARD_INVENTORY_MAX_ENTRIES} (CERTYARD_INVENTORY_MAX_ENTRIES)",
                code="too_large",
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        report = services.job_inventory_report(
            orchestrator=request.user, job_id=job_id, entries=entries
        )
        rejected = report.summary.get("rejected_count", 0)
        recorded = report.duplicate or rejected < len(entries)
        answer = {
            "job_id": str(report.job.pk),
            "duplicate": report.duplicate,
            "recorded": recorded,
            **report.summary,
        }
        if report.duplicate or not rejected:
            return Response(answer)
        message = (
            f"{rejected} of {len(entries)} entries were rejected; "
            f"the other {len(entries) - rejected} were recorded"
            if recorded
            else f"all {rejected} entries were rejected; nothing was recorded"
        )
        return Response(
            {
                **error_body("invalid_entries", message, rejected=report.summary["rejected"]),
                **answer,
            },
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )


class CompleteView(AgentView):
    @extend_schema(
        tags=_TAG,
        request=CompleteSerializer,
        responses={200: dict},
        summary="Report how a job ended",
    )
    def post(self, request: Request, job_id: str) -> Response:
        data = valid_body(CompleteSerializer, request)
        job, duplicate = services.job_complete(
            orchestrator=request.user,
            job_id=job_id,
            outcome=JobOutcome(data["status"]),
            message=data["message"],
        )
        return Response(
            {
                "job_id": str(job.pk),
                "state": job.state,
                "acknowledged": True,
                "duplicate": duplicate,
            }
        )
