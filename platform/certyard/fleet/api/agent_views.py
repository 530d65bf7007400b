"""The fleet part of the agent API, under /api/orchestrator/v1/: register, session,
heartbeat, limits and certificate (renewal).

Thin views: check the input, call one service, answer. The contract is written
down in orchestrators/protocol.py.
"""

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from certyard.fleet import services
from certyard.fleet.api.agent_auth import AgentView, valid_body
from certyard.fleet.api.agent_serializers import (
    CertificateRenewResponseSerializer,
    CertificateRenewSerializer,
    HeartbeatResponseSerializer,
    LimitsResponseSerializer,
    LimitsSerializer,
    RegisterResponseSerializer,
    RegisterSerializer,
    SessionResponseSerializer,
    SessionSerializer,
)
from certyard.fleet.models import Orchestrator
from certyard.security import client_address

_TAG = ["orchestrator agent"]


class RegisterView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    # Unauthenticated and it signs certificates: bound how often one address may try.
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "agent-register"
    # No credentials to check up front: the token in the body is what may be refused.
    error_responses = {
        401: "The registration token is unknown, revoked, expired or already used.",
        409: "An orchestrator of this name on this machine is registered; an admin must "
        "reset it first.",
    }

    @extend_schema(
        tags=_TAG,
        request=RegisterSerializer,
        responses={201: RegisterResponseSerializer},
        summary="Register an agent with a registration token and a CSR for its key",
    )
    def post(self, request: Request) -> Response:
        data = valid_body(RegisterSerializer, request)
        registration = services.orchestrator_register(
            token=data["token"],
            name=data["name"],
            client_machine=data["client_machine"],
            agent_version=data["agent_version"],
            capabilities=data["capabilities"],
            client_parameters=data["client_parameters"],
            csr_pem=data["csr"],
            source_address=request_source_address(request),
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
    error_responses = {
        401: "The assertion proves no registered key, is too far from the platform's clock, "
        "or was used before.",
        409: None,  # it changes nothing that could be in the way
    }

    @extend_schema(
        tags=_TAG,
        request=SessionSerializer,
        responses={200: SessionResponseSerializer},
        summary="Open a session by signing an assertion with the agent's key",
    )
    def post(self, request: Request) -> Response:
        data = valid_body(SessionSerializer, request)
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
                **_certificate_times(session.orchestrator),
            }
        )


class HeartbeatView(AgentView):
    error_responses = {409: None}  # it only records that the agent was seen

    @extend_schema(tags=_TAG, request=None, responses={200: HeartbeatResponseSerializer})
    def post(self, request: Request) -> Response:
        services.orchestrator_seen(orchestrator=request.user)
        return Response(
            {
                "status": request.user.status,
                "server_time": timezone.now(),
                **_certificate_times(request.user),
            }
        )


class LimitsView(AgentView):
    error_responses = {
        400: "store_roots is not a list of at most 64 absolute paths (each at most 4096 "
        "bytes, no '..'), or max_file_bytes is not a positive integer.",
        409: None,  # what the agent says replaces what it said before
    }

    @extend_schema(
        tags=_TAG,
        request=LimitsSerializer,
        responses={200: LimitsResponseSerializer},
        summary="Report the folders the agent may keep stores in, and its file size limit",
        description="Sent after every session the agent opens and whenever its configured "
        "roots or limit change. The platform checks store paths against these roots before "
        "it saves a store or schedules a job; until an agent reports them, only the lexical "
        "rules apply (absolute, no '..').",
    )
    def post(self, request: Request) -> Response:
        data = valid_body(LimitsSerializer, request)
        orchestrator = services.orchestrator_limits_record(
            orchestrator=request.user,
            store_roots=data["store_roots"],
            max_file_bytes=data["max_file_bytes"],
        )
        return Response(
            {
                "store_roots": orchestrator.store_roots,
                "max_file_bytes": orchestrator.max_file_bytes,
                "reported_at": orchestrator.limits_reported_at,
            }
        )


class CertificateView(AgentView):
    # It signs certificates: bound how often one orchestrator may ask.
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "agent-register"
    error_responses = {
        400: "The CSR is not a PEM certificate signing request, its signature does not "
        "verify, or its key is not EC P-256/P-384.",
        403: "The orchestrator is disapproved: it may not renew its certificate.",
        409: "Another request renewed the certificate meanwhile.",
    }

    @extend_schema(
        tags=_TAG,
        request=CertificateRenewSerializer,
        responses={200: CertificateRenewResponseSerializer},
        summary="Renew the agent's client certificate, for a new key; no re-approval needed",
        description="The answer's certificate replaces the previous one (which is not "
        "revoked: it expires on its own). The session ends with it: open a new one, "
        "signed by the new key.",
    )
    def post(self, request: Request) -> Response:
        data = valid_body(CertificateRenewSerializer, request)
        renewal = services.orchestrator_certificate_renew(
            orchestrator=request.user, csr_pem=data["csr"]
        )
        return Response(
            {
                "certificate": renewal.certificate_pem,
                "ca_chain": renewal.ca_chain,
                "not_after": renewal.times.not_after,
                "renew_after": renewal.times.renew_after,
            }
        )


def request_source_address(request: Request) -> str | None:
    """The client's address as the platform determines it, for registration rules to trust:
    :func:`certyard.security.client_address`, the address every limit counts by (never an
    ``X-Forwarded-For`` entry the client wrote itself)."""
    return client_address(request)


def _certificate_times(orchestrator: Orchestrator) -> dict[str, Any]:
    times = services.orchestrator_certificate_times(orchestrator)
    return {"certificate_not_after": times.not_after, "renew_after": times.renew_after}
