"""Discovery in the people's API, under /api/v1/: ask an orchestrator to look for stores,
list what it found, approve candidates into stores."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from certyard.api.errors import ApiError
from certyard.api.serializers import ModelSerializer, Serializer
from certyard.deployment.discovery_selectors import discovery_candidate_list
from certyard.deployment.models import DiscoveryCandidate
from certyard.deployment.services import discovery
from certyard.fleet.models import Orchestrator


class DiscoveryRequestSerializer(Serializer):
    directories = serializers.ListField(
        child=serializers.CharField(max_length=discovery.MAX_PATH, trim_whitespace=False),
        min_length=1,
        max_length=discovery.MAX_DIRECTORIES,
    )
    file_patterns = serializers.ListField(
        child=serializers.CharField(max_length=discovery.MAX_PATTERN, trim_whitespace=False),
        max_length=discovery.MAX_PATTERNS,
        default=list,
    )
    ignored_directories = serializers.ListField(
        child=serializers.CharField(max_length=discovery.MAX_PATH, trim_whitespace=False),
        max_length=discovery.MAX_IGNORED,
        default=list,
    )
    follow_links = serializers.BooleanField(default=False)
    max_depth = serializers.IntegerField(
        min_value=0, max_value=discovery.MAX_DEPTH, default=discovery.DEFAULT_MAX_DEPTH
    )


class DiscoveryJobSerializer(Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    state = serializers.CharField()
    orchestrator = serializers.UUIDField(source="orchestrator_id")
    payload = serializers.JSONField()


class DiscoveryCandidateSerializer(ModelSerializer):
    orchestrator_name = serializers.CharField(source="orchestrator.name", read_only=True)

    class Meta:
        model = DiscoveryCandidate
        fields = [
            "id",
            "orchestrator",
            "orchestrator_name",
            "path",
            "kind",
            "store_type",
            "certificate_count",
            "private_key",
            "password_needed",
            "error",
            "state",
            "first_seen",
            "last_seen",
            "store",
            "job",
        ]
        read_only_fields = fields


class ApproveSerializer(Serializer):
    store_type = serializers.CharField(max_length=50, required=False, allow_blank=True)
    password = serializers.CharField(
        max_length=1024, required=False, allow_blank=True, default="", trim_whitespace=False
    )


class ApproveAllSerializer(ApproveSerializer):
    orchestrator = serializers.UUIDField()
    # Text, not an enum in the schema (the service checks it): "kind" names other choice
    # sets elsewhere.
    kind = serializers.CharField(
        max_length=20, help_text=f"One of {', '.join(discovery.CANDIDATE_KINDS)}."
    )
    store_type = None  # every candidate keeps the type it was found as


class ApproveAllAnswerSerializer(Serializer):
    approved = serializers.IntegerField()
    failed = serializers.IntegerField()
    stores = serializers.ListField(child=serializers.UUIDField())
    failures = serializers.ListField(child=serializers.DictField())


def _body(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    data = request.data if request.data or isinstance(request.data, list) else {}
    if not isinstance(data, dict):
        raise ApiError("the body must be a JSON object")
    body = serializer_class(data=data)
    body.is_valid(raise_exception=True)
    return body.validated_data


class OrchestratorDiscoveryView(APIView):
    permission_classes = [IsAuthenticated]  # the service checks inventory.add_certificatestore

    @extend_schema(
        request=DiscoveryRequestSerializer,
        responses={202: DiscoveryJobSerializer},
        summary="Ask the orchestrator's agent to look for certificate stores",
    )
    def post(self, request: Request, pk: uuid.UUID) -> Response:
        orchestrator = get_object_or_404(Orchestrator, pk=pk)
        data = _body(DiscoveryRequestSerializer, request)
        job = discovery.discovery_request(orchestrator=orchestrator, actor=request.user, **data)
        return Response(DiscoveryJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            # Typed as get_queryset checks them: a value the schema allows is never refused,
            # one it does not (?orchestrator=, ?kind=) always is. An enum here is inline, so
            # it names no choice set (unlike a serializer field's, see ApproveAllSerializer).
            OpenApiParameter(
                "orchestrator", {"type": "string", "format": "uuid"}, description="Orchestrator id"
            ),
            OpenApiParameter("state", str, enum=DiscoveryCandidate.State.values),
            OpenApiParameter("kind", str, enum=list(discovery.CANDIDATE_KINDS)),
        ]
    )
)
class DiscoveryCandidateViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Reading needs deployment.view_discoverycandidate (the model permissions); approving
    needs inventory.add_certificatestore (checked by the service)."""

    serializer_class = DiscoveryCandidateSerializer
    # approve-all names its orchestrator in the body, not the path (the others have 404 anyway).
    error_responses = {
        404: "No such candidate (or page); approving all, no such orchestrator.",
    }

    def get_queryset(self) -> QuerySet[DiscoveryCandidate]:
        params = self.request.query_params
        orchestrator = params.get("orchestrator")
        if orchestrator is not None:
            try:
                orchestrator = uuid.UUID(orchestrator)
            except ValueError:
                raise ApiError("orchestrator must be an orchestrator's id") from None
        state = params.get("state")
        if state is not None and state not in DiscoveryCandidate.State.values:
            raise ApiError(f"state must be one of {', '.join(DiscoveryCandidate.State.values)}")
        kind = params.get("kind")
        if kind is not None and kind not in discovery.CANDIDATE_KINDS:
            raise ApiError(f"kind must be one of {', '.join(discovery.CANDIDATE_KINDS)}")
        return discovery_candidate_list(orchestrator=orchestrator, state=state, kind=kind)

    @extend_schema(request=ApproveSerializer, responses={201: DiscoveryCandidateSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def approve(self, request: Request, pk: str) -> Response:
        """Make a store of the candidate and schedule its inventory."""
        candidate = get_object_or_404(DiscoveryCandidate.objects.all(), pk=_int(pk))
        data = _body(ApproveSerializer, request)
        approved = discovery.discovery_candidate_approve(
            candidate=candidate,
            actor=request.user,
            store_type=data.get("store_type") or None,
            password=data["password"],
        )
        return Response(DiscoveryCandidateSerializer(approved).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ApproveAllSerializer, responses={200: ApproveAllAnswerSerializer})
    @action(
        detail=False,
        methods=["post"],
        url_path="approve-all",
        permission_classes=[IsAuthenticated],
    )
    def approve_all(self, request: Request) -> Response:
        """Approve every new candidate of a kind; each one that fails is listed with why."""
        data = _body(ApproveAllSerializer, request)
        orchestrator = Orchestrator.objects.filter(pk=data["orchestrator"]).first()
        if orchestrator is None:
            raise ApiError("there is no such orchestrator", code="not_found", status_code=404)
        outcome = discovery.discovery_candidates_approve_kind(
            orchestrator=orchestrator,
            kind=data["kind"],
            actor=request.user,
            password=data["password"],
        )
        return Response(outcome.as_dict())


def _int(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise ApiError("no such candidate", code="not_found", status_code=404)
    return int(value)
