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

# Ids are 64-bit (BigAutoField); the subject's type and id are as long as the run keeps them.
_MAX_ID = 2**63 - 1
_SUBJECT_TYPE_MAX = 30
_SUBJECT_ID_MAX = 64
_RUN_FILTERS = [
    OpenApiParameter("state", str, enum=HandlerRun.State.values),
    OpenApiParameter("kind", str, enum=[kind.value for kind in HandlerKind]),
    OpenApiParameter("registration", {"type": "integer", "minimum": 0, "maximum": _MAX_ID}),
    OpenApiParameter("subject_type", {"type": "string", "maxLength": _SUBJECT_TYPE_MAX}),
    OpenApiParameter("subject_id", {"type": "string", "maxLength": _SUBJECT_ID_MAX}),
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
        # A filter given empty ("?state=") is refused like any value that names nothing.
        state, kind = params.get("state"), params.get("kind")
        if state is not None and state not in HandlerRun.State.values:
            raise ApiError(f"state must be one of {', '.join(HandlerRun.State.values)}")
        kinds = [k.value for k in HandlerKind]
        if kind is not None and kind not in kinds:
            raise ApiError(f"kind must be one of {', '.join(kinds)}")
        registration = params.get("registration")
        if registration is not None and not (
            registration.isascii() and registration.isdigit() and int(registration) <= _MAX_ID
        ):
            raise ApiError("registration must be a registration id (a whole number)")
        # Refused rather than cut short: a cut value would match runs it does not name.
        subject_type, subject_id = params.get("subject_type", ""), params.get("subject_id", "")
        if len(subject_type) > _SUBJECT_TYPE_MAX:
            raise ApiError(f"subject_type is at most {_SUBJECT_TYPE_MAX} characters")
        if len(subject_id) > _SUBJECT_ID_MAX:
            raise ApiError(f"subject_id is at most {_SUBJECT_ID_MAX} characters")
        return selectors.runs_filtered(
            state=state or "",
            kind=kind or "",
            registration_id=int(registration) if registration is not None else None,
            subject_type=subject_type,
            subject_id=subject_id,
        ).select_related("event")
