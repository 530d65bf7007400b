"""Handler registrations and their runs, read-only, under /api/v1/.

Registrations are created and edited in Django admin, where the form follows what each
class declares; the API lets automation see them and every run they made.
"""

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.serializers import Serializer

from certyard.api.errors import ApiError
from certyard.workflows import selectors
from certyard.workflows.api.serializers import (
    HandlerRegistrationSerializer,
    HandlerRunDetailSerializer,
    HandlerRunSerializer,
)
from certyard.workflows.models import HandlerRegistration, HandlerRun
from handlers.base import HandlerKind

_RUN_FILTERS = [
    OpenApiParameter("state", str, enum=HandlerRun.State.values),
    OpenApiParameter("kind", str, enum=[kind.value for kind in HandlerKind]),
    OpenApiParameter("registration", int),
    OpenApiParameter("subject_type", str),
    OpenApiParameter("subject_id", str),
]


class HandlerRegistrationViewSet(viewsets.ReadOnlyModelViewSet):
    """The handler registrations: which class runs on what, with which parameters."""

    serializer_class = HandlerRegistrationSerializer
    queryset = HandlerRegistration.objects.order_by("kind", "order", "name")


@extend_schema_view(list=extend_schema(parameters=_RUN_FILTERS))
class HandlerRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Every handler run, newest first: inputs, outcome, output, error, duration."""

    def get_serializer_class(self) -> type[Serializer]:
        return HandlerRunDetailSerializer if self.action == "retrieve" else HandlerRunSerializer

    def get_queryset(self) -> QuerySet[HandlerRun]:
        if self.action == "retrieve":
            return selectors.run_detail_queryset()
        params = self.request.query_params
        state, kind = params.get("state", ""), params.get("kind", "")
        if state and state not in HandlerRun.State.values:
            raise ApiError(f"state must be one of {', '.join(HandlerRun.State.values)}")
        kinds = [k.value for k in HandlerKind]
        if kind and kind not in kinds:
            raise ApiError(f"kind must be one of {', '.join(kinds)}")
        registration = params.get("registration", "")
        if registration and not registration.isdigit():
            raise ApiError("registration must be a registration id (a whole number)")
        return selectors.runs_filtered(
            state=state,
            kind=kind,
            registration_id=int(registration) if registration else None,
            subject_type=params.get("subject_type", "")[:30],
            subject_id=params.get("subject_id", "")[:64],
        ).select_related("event")
