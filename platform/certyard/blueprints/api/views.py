"""The blueprints part of the people's API, under /api/v1/blueprints/."""

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from certyard.blueprints import selectors, services
from certyard.blueprints.api.serializers import (
    BlueprintApplicationSerializer,
    BlueprintApplySerializer,
    BlueprintCreateSerializer,
    BlueprintDetailSerializer,
    BlueprintSerializer,
)
from certyard.blueprints.models import Blueprint
from certyard.jobs.models import Job


class BlueprintViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Blueprints: saved from an orchestrator's stores, applied to another orchestrator."""

    def get_serializer_class(self) -> type[Serializer]:
        return BlueprintSerializer if self.action == "list" else BlueprintDetailSerializer

    def get_queryset(self) -> QuerySet[Blueprint]:
        queryset = selectors.blueprint_list()
        if self.action == "list":
            return queryset
        return queryset.prefetch_related("stores__store_type")

    def _detail(self, blueprint: Blueprint) -> dict:
        return BlueprintDetailSerializer(self.get_queryset().get(pk=blueprint.pk)).data

    @extend_schema(request=BlueprintCreateSerializer, responses={201: BlueprintDetailSerializer})
    def create(self, request: Request) -> Response:
        """Save an orchestrator's stores as a new blueprint (needs add_blueprint)."""
        data = BlueprintCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        blueprint = services.blueprint_save(**data.validated_data, actor=request.user)
        return Response(self._detail(blueprint), status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Blueprint) -> None:
        # DELETE needs blueprints.delete_blueprint (the model permissions).
        services.blueprint_delete(blueprint=instance)

    @extend_schema(
        request=BlueprintApplySerializer, responses={200: BlueprintApplicationSerializer}
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def apply(self, request: Request, pk: str) -> Response:
        """Create the blueprint's stores on an approved orchestrator, each with an
        inventory job; stores it already has are skipped, refusals say why."""
        user = request.user
        if not (
            user.has_perm("blueprints.view_blueprint")
            and user.has_perm("inventory.add_certificatestore")
        ):
            self.permission_denied(request, message="you may not apply blueprints")
        blueprint = self.get_object()
        data = BlueprintApplySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        application = services.blueprint_apply(
            blueprint=blueprint,
            orchestrator=data.validated_data["orchestrator"],
            actor=user,
            source=Job.Source.API,
        )
        return Response(BlueprintApplicationSerializer(application).data)
