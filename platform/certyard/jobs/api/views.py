"""The jobs part of the people's API, under /api/v1/."""

import uuid

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from certyard.api.errors import ApiError
from certyard.inventory import selectors as inventory_selectors
from certyard.jobs import selectors, services
from certyard.jobs.api.serializers import JobDetailSerializer, JobSerializer
from certyard.jobs.models import Job
from orchestrators.protocol import JobType


def _require_uuid(name: str, value: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ApiError(f"{name} must be an id (UUID)") from None


_UUID = {"type": "string", "format": "uuid"}
_JOB_FILTERS = [
    OpenApiParameter("state", str, enum=Job.State.values),
    OpenApiParameter("type", str, enum=[t.value for t in JobType]),
    OpenApiParameter("store", _UUID),
    OpenApiParameter("orchestrator", _UUID),
]


@extend_schema_view(list=extend_schema(parameters=_JOB_FILTERS))
class JobViewSet(viewsets.ReadOnlyModelViewSet):
    def get_serializer_class(self) -> type[Serializer]:
        return JobDetailSerializer if self.action == "retrieve" else JobSerializer

    def get_queryset(self) -> QuerySet[Job]:
        queryset = selectors.job_list()
        if self.action == "retrieve":
            retries = Prefetch("retries", queryset=Job.objects.order_by("created_at"))
            return queryset.prefetch_related("history", retries)
        params = self.request.query_params
        # A filter given empty ("?store=") is refused like any value that names nothing.
        if (state := params.get("state")) is not None and state not in Job.State.values:
            raise ApiError(f"state must be one of {', '.join(Job.State.values)}")
        if (kind := params.get("type")) is not None and kind not in {t.value for t in JobType}:
            raise ApiError(f"type must be one of {', '.join(t.value for t in JobType)}")
        for name in ("state", "type", "store", "orchestrator"):
            if (value := params.get(name)) is not None:
                if name in ("store", "orchestrator"):
                    _require_uuid(name, value)
                queryset = queryset.filter(**{name: value})
        return queryset

    def _job_to_change(self) -> Job:
        if not self.request.user.has_perm("jobs.change_job"):
            self.permission_denied(self.request, message="you may not change jobs")
        return self.get_object()

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def cancel(self, request: Request, pk: str) -> Response:
        job = services.job_cancel(job=self._job_to_change(), actor=request.user)
        return Response(JobSerializer(job).data)

    @extend_schema(
        request=None,
        responses={
            201: OpenApiResponse(JobSerializer, description="A new job was opened."),
            200: OpenApiResponse(
                JobSerializer, description="The store's inventory job already open."
            ),
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def retry(self, request: Request, pk: str) -> Response:
        """Run a finished job again as a new job (409 ``not_finished`` while it is open).

        The new job's ``retry_of`` is this job; an inventory's open job, answered instead,
        is left as it is."""
        job, created = services.job_retry(
            job=self._job_to_change(), actor=request.user, source=Job.Source.API
        )
        return Response(
            JobSerializer(job).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class StoreInventoryNowView(APIView):
    """``POST /api/v1/stores/<id>/inventory-now/``: sits with the stores, served by jobs."""

    permission_classes = [IsAuthenticated]  # and change_certificatestore, checked below

    @extend_schema(
        request=None,
        responses={201: JobSerializer, 200: JobSerializer},
        operation_id="stores_inventory_now_create",
        tags=["stores"],
    )
    def post(self, request: Request, id: uuid.UUID) -> Response:
        """Open an inventory job now (or answer with the one already open)."""
        store = inventory_selectors.store_list().filter(pk=id).first()
        if store is None:
            raise ApiError("no such store", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
        if not request.user.has_perm("inventory.change_certificatestore"):
            self.permission_denied(request, message="you may not change stores")
        job, created = services.store_inventory_now(
            store=store, source=Job.Source.API, actor=request.user
        )
        return Response(
            JobSerializer(job).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
