"""The fleet part of the people's API, under /api/v1/."""

import datetime as dt
from collections.abc import Callable

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from certyard.api.errors import ApiError
from certyard.fleet import services
from certyard.fleet.api.serializers import (
    CertificateRevokeSerializer,
    OrchestratorSerializer,
    OrchestratorUpdateSerializer,
    RegistrationTokenCreatedSerializer,
    RegistrationTokenCreateSerializer,
    RegistrationTokenSerializer,
)
from certyard.fleet.models import Orchestrator, RegistrationToken


class RegistrationTokenViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = RegistrationToken.objects.all()
    serializer_class = RegistrationTokenSerializer

    @extend_schema(
        request=RegistrationTokenCreateSerializer,
        responses={201: RegistrationTokenCreatedSerializer},
    )
    def create(self, request: Request) -> Response:
        data = RegistrationTokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, value = services.registration_token_create(
            description=data.validated_data["description"],
            valid_for=dt.timedelta(hours=data.validated_data["valid_hours"]),
            reusable=data.validated_data["reusable"],
            approve_on_register=data.validated_data["approve_on_register"],
            labels=data.validated_data["labels"],
            machine_pattern=data.validated_data["machine_pattern"],
            blueprint=data.validated_data["blueprint"],
            created_by=request.user,
        )
        body = RegistrationTokenSerializer(token).data
        return Response({**body, "token": value}, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: RegistrationTokenSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def revoke(self, request: Request, pk: str) -> Response:
        if not request.user.has_perm("fleet.change_registrationtoken"):
            self.permission_denied(request, message="you may not revoke registration tokens")
        token = services.registration_token_revoke(token=self.get_object())
        return Response(RegistrationTokenSerializer(token).data)


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("status", str, enum=Orchestrator.Status.values)]
    )
)
class OrchestratorViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = OrchestratorSerializer

    def get_queryset(self) -> QuerySet[Orchestrator]:
        queryset = Orchestrator.objects.select_related("metadata_changed_by")
        if (wanted := self.request.query_params.get("status")) is not None:
            if wanted not in Orchestrator.Status.values:
                raise ApiError(f"status must be one of {', '.join(Orchestrator.Status.values)}")
            queryset = queryset.filter(status=wanted)
        return queryset

    @extend_schema(request=OrchestratorUpdateSerializer, responses={200: OrchestratorSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change the orchestrator's metadata (the only field a person sets here).

        Needs fleet.change_orchestrator. ``metadata`` replaces the whole object; a key or
        value it refuses is a 400 naming each problem under ``fields.metadata``.
        """
        orchestrator = self.get_object()  # PATCH needs fleet.change_orchestrator
        body = OrchestratorUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if "metadata" in body.validated_data:
            orchestrator = services.orchestrator_metadata_set(
                orchestrator=orchestrator,
                metadata=body.validated_data["metadata"],
                actor=request.user,
            )
        return Response(OrchestratorSerializer(orchestrator).data)

    def _transition(self, service: Callable[..., Orchestrator], **options: object) -> Response:
        if not self.request.user.has_perm("fleet.change_orchestrator"):
            self.permission_denied(self.request, message="you may not change orchestrators")
        orchestrator = service(orchestrator=self.get_object(), actor=self.request.user, **options)
        return Response(OrchestratorSerializer(orchestrator).data)

    @extend_schema(request=None, responses={200: OrchestratorSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def approve(self, request: Request, pk: str) -> Response:
        return self._transition(services.orchestrator_approve)

    @extend_schema(request=None, responses={200: OrchestratorSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def disapprove(self, request: Request, pk: str) -> Response:
        return self._transition(services.orchestrator_disapprove)

    @extend_schema(request=None, responses={200: OrchestratorSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def reset(self, request: Request, pk: str) -> Response:
        """Forget the agent's key; it must register again with a new token."""
        return self._transition(services.orchestrator_reset)

    @extend_schema(
        request=CertificateRevokeSerializer,
        responses={200: OrchestratorSerializer},
        summary="Revoke the orchestrator's client certificate: its agent is locked out at once",
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="revoke-certificate",
        permission_classes=[IsAuthenticated],
    )
    def revoke_certificate(self, request: Request, pk: str) -> Response:
        """Revoke the agent's current client certificate and list it on the CRL.

        Its sessions are refused at once and jobs it held go back to the queue; its
        status does not change. To work again its agent registers again.
        """
        if not request.user.has_perm("fleet.change_orchestrator"):
            # Before reading the body: a refusal must not depend on what was sent.
            self.permission_denied(request, message="you may not change orchestrators")
        # No body means no reason given; a body that is no JSON object (``[]``) is refused.
        data = request.data if request.data or isinstance(request.data, list) else {}
        body = CertificateRevokeSerializer(data=data)
        body.is_valid(raise_exception=True)
        return self._transition(
            services.orchestrator_certificate_revoke, reason=body.validated_data["reason"]
        )
