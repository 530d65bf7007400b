"""The fleet part of the people's API, under /api/v1/."""

import datetime as dt
import uuid
from collections.abc import Callable

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from certyard.api.errors import ApiError
from certyard.fleet import selectors, services
from certyard.fleet.api.serializers import (
    JobDetailSerializer,
    JobSerializer,
    OrchestratorSerializer,
    RegistrationTokenCreatedSerializer,
    RegistrationTokenCreateSerializer,
    RegistrationTokenSerializer,
)
from certyard.fleet.models import Job, Orchestrator, RegistrationToken


def _require_uuid(name: str, value: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ApiError(f"{name} must be an id (UUID)") from None


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
        queryset = Orchestrator.objects.all()
        if wanted := self.request.query_params.get("status"):
            if wanted not in Orchestrator.Status.values:
                raise ApiError(f"status must be one of {', '.join(Orchestrator.Status.values)}")
            queryset = queryset.filter(status=wanted)
        return queryset

    def _transition(self, service: Callable[..., Orchestrator]) -> Response:
        if not self.request.user.has_perm("fleet.change_orchestrator"):
            self.permission_denied(self.request, message="you may not change orchestrators")
        orchestrator = service(orchestrator=self.get_object(), actor=self.request.user)
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


_JOB_FILTERS = [
    OpenApiParameter("state", str, enum=Job.State.values),
    OpenApiParameter("type", str),
    OpenApiParameter("store", str),
    OpenApiParameter("orchestrator", str),
]


@extend_schema_view(list=extend_schema(parameters=_JOB_FILTERS))
class JobViewSet(viewsets.ReadOnlyModelViewSet):
    def get_serializer_class(self) -> type[Serializer]:
        return JobDetailSerializer if self.action == "retrieve" else JobSerializer

    def get_queryset(self) -> QuerySet[Job]:
        queryset = selectors.job_list()
        if self.action == "retrieve":
            return queryset.prefetch_related("history")
        params = self.request.query_params
        if (state := params.get("state")) and state not in Job.State.values:
            raise ApiError(f"state must be one of {', '.join(Job.State.values)}")
        for name in ("state", "type", "store", "orchestrator"):
            if value := params.get(name):
                if name in ("store", "orchestrator"):
                    _require_uuid(name, value)
                queryset = queryset.filter(**{name: value})
        return queryset

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def cancel(self, request: Request, pk: str) -> Response:
        if not request.user.has_perm("fleet.change_job"):
            self.permission_denied(request, message="you may not change jobs")
        job = services.job_cancel(job=self.get_object(), actor=request.user)
        return Response(JobSerializer(job).data)
