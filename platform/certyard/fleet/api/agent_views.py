"""The API orchestrator agents call, under /api/orchestrator/v1/.

Thin views: check the input, call one service, answer. The contract is written
down in orchestrators/protocol.py.
"""

import time
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from certyard.api.errors import ApiError, error_body
from certyard.fleet import services
from certyard.fleet.api.agent_auth import IsOrchestrator, OrchestratorSessionAuthentication
from certyard.fleet.api.agent_serializers import (
    CompleteSerializer,
    HeartbeatResponseSerializer,
    InventoryEntrySerializer,
    JobSummarySerializer,
    RegisterResponseSerializer,
    RegisterSerializer,
    SessionResponseSerializer,
    SessionSerializer,
)
from orchestrators.protocol import MAX_POLL_WAIT_SECONDS, JobOutcome

_TAG = ["orchestrator agent"]
_POLL_INTERVAL_SECONDS = 1.0


class AgentView(APIView):
    authentication_classes = [OrchestratorSessionAuthentication]
    permission_classes = [IsOrchestrator]


class RegisterView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    # Unauthenticated and it signs certificates: bound how often one address may try.
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "agent-register"

    @extend_schema(
        tags=_TAG,
        request=RegisterSerializer,
        responses={201: RegisterResponseSerializer},
        summary="Register an agent with a registration token and a CSR for its key",
    )
    def post(self, request: Request) -> Response:
        data = _valid(RegisterSerializer, request)
        registration = services.orchestrator_register(
            token=data["token"],
            name=data["name"],
            client_machine=data["client_machine"],
            agent_version=data["agent_version"],
            capabilities=data["capabilities"],
            client_parameters=data["client_parameters"],
            csr_pem=data["csr"],
            source_address=request.META.get("REMOTE_ADDR"),
        )
        orchestrator = registration.orchestrator
        return Response(
            {
                "orchestrator_id": str(orchestrator.pk),
                "status": orchestrator.status,
                "certificate": registration.certificate_pem,
                "ca_chain": registration.ca_chain,
            },
            status=status.HTTP_201_CREATED,
        )


class SessionView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "agent-session"

    @extend_schema(
        tags=_TAG,
        request=SessionSerializer,
        responses={200: SessionResponseSerializer},
        summary="Open a session by signing an assertion with the agent's key",
    )
    def post(self, request: Request) -> Response:
        data = _valid(SessionSerializer, request)
        session = services.orchestrator_session_open(
            orchestrator_id=str(data["orchestrator_id"]),
            issued_at=data["issued_at"],
            nonce=data["nonce"],
            signature_b64=data["signature"],
        )
        return Response(
            {
                "token": session.token,
                "expires_in": session.expires_in,
                "status": session.orchestrator.status,
            }
        )


class HeartbeatView(AgentView):
    @extend_schema(tags=_TAG, request=None, responses={200: HeartbeatResponseSerializer})
    def post(self, request: Request) -> Response:
        services.orchestrator_seen(orchestrator=request.user)
        return Response({"status": request.user.status, "server_time": timezone.now()})


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
        data = _valid(CompleteSerializer, request)
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


def _valid(serializer_class: type, request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ApiError("the body must be a JSON object")
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
