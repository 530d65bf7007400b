"""The inventory part of the people's API, under /api/v1/."""

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from certyard.api.errors import ApiError
from certyard.inventory import metadata, selectors, services
from certyard.inventory.api.serializers import (
    CertificateDetailSerializer,
    CertificateListParamsSerializer,
    CertificateSerializer,
    MetadataBackfillSerializer,
    MetadataBackfillStartSerializer,
    MetadataFieldSerializer,
    MetadataValueSerializer,
    ScheduleSerializer,
    StoreCreateSerializer,
    StoreSerializer,
    StoreTypeSerializer,
    StoreUpdateSerializer,
    TlsEndpointParamsSerializer,
    TlsEndpointSerializer,
)
from certyard.inventory.metadata import generators as metadata_generators
from certyard.inventory.metadata import selectors as metadata_selectors
from certyard.inventory.models import (
    Certificate,
    CertificateStore,
    CertificateStoreType,
    MetadataBackfill,
    MetadataField,
)
from certyard.x509 import certificate_file_stem, der_to_pem


class StoreTypeViewSet(viewsets.ModelViewSet):
    queryset = CertificateStoreType.objects.all()
    serializer_class = StoreTypeSerializer
    lookup_field = "short_name"

    def perform_destroy(self, instance: CertificateStoreType) -> None:
        # DELETE needs inventory.delete_certificatestoretype (the model permissions).
        services.store_type_delete(store_type=instance)


class StoreViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = StoreSerializer

    def get_queryset(self) -> QuerySet[CertificateStore]:
        return selectors.store_list()

    def _store_to_change(self) -> CertificateStore:
        if not self.request.user.has_perm("inventory.change_certificatestore"):
            self.permission_denied(self.request, message="you may not change stores")
        return self.get_object()

    @extend_schema(request=StoreCreateSerializer, responses={201: StoreSerializer})
    def create(self, request: Request) -> Response:
        data = StoreCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        store = services.store_create(**data.validated_data, created_by=request.user)
        return Response(
            StoreSerializer(selectors.store_list().get(pk=store.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=StoreUpdateSerializer, responses={200: StoreSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change the path, properties, password or schedule; only the fields sent."""
        store = self.get_object()  # PATCH needs inventory.change_certificatestore
        data = StoreUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.store_update(store=store, **data.changes(), actor=request.user)
        return Response(StoreSerializer(self.get_queryset().get(pk=store.pk)).data)

    def perform_destroy(self, instance: CertificateStore) -> None:
        # DELETE needs inventory.delete_certificatestore (the model permissions), and the
        # right to this store (its creator, its groups, or inventory.manage_any_store).
        services.store_delete(store=instance, actor=self.request.user)

    @extend_schema(request=ScheduleSerializer, responses={200: StoreSerializer})
    @action(
        detail=True,
        methods=["post"],
        url_path="schedule-inventory",
        permission_classes=[IsAuthenticated],
    )
    def schedule_inventory(self, request: Request, pk: str) -> Response:
        """Run inventory every ``interval_minutes`` (first run now); null stops the schedule."""
        store = self._store_to_change()
        data = ScheduleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.store_schedule_inventory(
            store=store,
            interval_minutes=data.validated_data["interval_minutes"],
            actor=request.user,
        )
        return Response(StoreSerializer(self.get_queryset().get(pk=store.pk)).data)

    @extend_schema(
        parameters=[TlsEndpointParamsSerializer],
        responses={200: TlsEndpointSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], permission_classes=[IsAuthenticated])
    def endpoints(self, request: Request, pk: str) -> Response:
        """A TLS scan store's endpoints: what each served at the last scan (chain, TLS
        version, cipher) or why it served nothing; empty for other stores."""
        if not (
            request.user.has_perm("inventory.view_certificatestore")
            and request.user.has_perm("inventory.view_certificate")
        ):
            self.permission_denied(request, message="you may not view stores and certificates")
        store = self.get_object()
        params = TlsEndpointParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        endpoints = selectors.store_endpoints(
            store=store, status=params.validated_data.get("status", "")
        )
        page = self.paginate_queryset(endpoints)
        return self.get_paginated_response(TlsEndpointSerializer(page, many=True).data)


class FileDownloadNegotiation(BaseContentNegotiation):
    """Answers with the view's first renderer whatever ``?format=`` says; the view sends a file."""

    def select_parser(self, request: Request, parsers: list) -> object:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


_CERTIFICATE_FILTERS = [
    OpenApiParameter(
        "search",
        {"type": "string", "maxLength": 200},
        description="CN, SAN, issuer, serial or fingerprint",
    ),
    OpenApiParameter("expires_within_days", {"type": "integer", "minimum": 0, "maximum": 36_500}),
    OpenApiParameter("expired", bool),
    OpenApiParameter("store", {"type": "string", "format": "uuid"}, description="Store id"),
    OpenApiParameter(
        "key_algorithm",
        {"type": "string", "maxLength": 20},
        description="RSA, EC, Ed25519, ...",
    ),
    OpenApiParameter(
        "conformant", bool, description="false: only certificates with parse warnings"
    ),
    OpenApiParameter(
        "metadata_field",
        {"type": "string", "minLength": 1, "maxLength": 60},
        description="A metadata field's name: only certificates with a value for it (or, "
        "with metadata_value, that value; with metadata_empty=true, without one)",
    ),
    OpenApiParameter(
        "metadata_value",
        {"type": "string", "maxLength": 10_000},
        description="With metadata_field: exactly this value, compared as the field stores "
        "it (7 finds 07 of an integer field, yes finds true of a boolean one)",
    ),
    OpenApiParameter(
        "metadata_empty",
        bool,
        description="With metadata_field: true lists the certificates that have no value for it",
    ),
    OpenApiParameter(
        "status",
        str,
        enum=["valid", "expiring", "expired", "revoked", "superseded", "unknown", "in_use"],
        description="The certificates in this status (as the status field says); in_use: "
        "those neither revoked nor superseded",
    ),
    OpenApiParameter("is_ca", bool, description="true: CA certificates only; false: end-entity"),
]


# A certificate's metadata: field name -> {value, source, updated_at} (a raw schema:
# drf-spectacular takes no bare DictField as a response).
_METADATA_MAP = {
    "type": "object",
    "description": "The certificate's metadata values, by field name.",
    "additionalProperties": {
        "type": "object",
        "properties": {
            "value": {"type": "string"},
            "source": {"type": "string"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
        "required": ["value", "source", "updated_at"],
    },
}


@extend_schema_view(list=extend_schema(parameters=_CERTIFICATE_FILTERS))
class CertificateViewSet(viewsets.ReadOnlyModelViewSet):
    def get_serializer_class(self) -> type[Serializer]:
        return CertificateDetailSerializer if self.action == "retrieve" else CertificateSerializer

    def get_queryset(self) -> QuerySet[Certificate]:
        if self.action != "list":
            return Certificate.objects.prefetch_related(
                "locations__store__store_type", selectors.certificate_state_prefetch()
            )
        # A plain dict, not the QueryDict: DRF reads an empty form value as "not given",
        # which the schema does not say (?store= is no store id, and refused).
        params = CertificateListParamsSerializer(data=self.request.query_params.dict())
        params.is_valid(raise_exception=True)
        return selectors.certificate_list(filters=params.to_filters()).prefetch_related(
            selectors.certificate_state_prefetch()
        )

    @extend_schema(
        methods=["GET"],
        responses={200: _METADATA_MAP},
        description="The certificate's metadata values, by field name.",
    )
    @extend_schema(
        methods=["PATCH"],
        request=OpenApiTypes.OBJECT,
        responses={200: _METADATA_MAP},
        description=(
            'Set metadata values by field name, e.g. {"owner": "alice", "environment": null}; '
            "null or empty text clears a value. Every value is checked against its field's "
            "type, pattern and choices first: one refused answers 400 with a message per field "
            "(error.fields) and changes nothing. Needs inventory.change_certificatemetadata."
        ),
    )
    @action(detail=True, methods=["get", "patch"], permission_classes=[IsAuthenticated])
    def metadata(self, request: Request, pk: str) -> Response:
        user = request.user
        if not user.has_perm("inventory.view_certificate"):
            self.permission_denied(request, message="you may not view certificates")
        if request.method == "PATCH" and not user.has_perm("inventory.change_certificatemetadata"):
            self.permission_denied(request, message="you may not change certificate metadata")
        certificate = self.get_object()
        if request.method == "PATCH":
            metadata.certificate_metadata_update(
                certificate=certificate, values=request.data, actor=user
            )
        values = metadata_selectors.certificate_metadata_map(certificate=certificate)
        return Response({name: MetadataValueSerializer(v).data for name, v in values.items()})

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["pem", "der", "chain"])],
        responses={
            (200, "application/x-pem-file"): OpenApiTypes.BINARY,  # pem and chain
            (200, "application/pkix-cert"): OpenApiTypes.BINARY,  # der
        },
    )
    # `format` names the file format here, not one of DRF's renderers.
    @action(detail=True, methods=["get"], content_negotiation_class=FileDownloadNegotiation)
    def download(self, request: Request, pk: str) -> HttpResponse:
        certificate = self.get_object()
        file_format = request.query_params.get("format", "pem")
        name = certificate_file_stem(common_name=certificate.common_name, sha256=certificate.sha256)
        if file_format == "der":
            response = HttpResponse(bytes(certificate.der), content_type="application/pkix-cert")
            response["Content-Disposition"] = f'attachment; filename="{name}.cer"'
            return response
        if file_format not in ("pem", "chain"):
            raise ApiError("format must be pem, der or chain")
        chain = (
            selectors.certificate_chain(certificate=certificate)
            if file_format == "chain"
            else [certificate]
        )
        body = "".join(der_to_pem(bytes(c.der)) for c in chain)
        response = HttpResponse(body, content_type="application/x-pem-file")
        response["Content-Disposition"] = f'attachment; filename="{name}.pem"'
        return response


class MetadataFieldViewSet(viewsets.ModelViewSet):
    """Metadata fields: typed, with optional choices and pattern. Deleting a field deletes
    every certificate's value for it."""

    queryset = MetadataField.objects.order_by("order", "name")
    serializer_class = MetadataFieldSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer: Serializer) -> None:
        serializer.instance = metadata.metadata_field_create(**serializer.validated_data)

    def perform_update(self, serializer: Serializer) -> None:
        serializer.instance = metadata.metadata_field_update(
            field=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance: MetadataField) -> None:
        # DELETE needs inventory.delete_metadatafield (the model permissions).
        metadata.metadata_field_delete(field=instance)


class MetadataBackfillViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Backfills: the metadata generators over the whole inventory, in the background."""

    queryset = MetadataBackfill.objects.select_related("started_by").order_by("-pk")
    serializer_class = MetadataBackfillSerializer

    @extend_schema(
        request=MetadataBackfillStartSerializer, responses={201: MetadataBackfillSerializer}
    )
    def create(self, request: Request) -> Response:
        """Start a backfill (needs inventory.add_metadatabackfill); 409 while one runs."""
        data = MetadataBackfillStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        backfill = metadata_generators.metadata_backfill_start(
            actor=request.user, registration_ids=data.validated_data["registrations"]
        )
        return Response(
            MetadataBackfillSerializer(self.get_queryset().get(pk=backfill.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=None, responses={200: MetadataBackfillSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def cancel(self, request: Request, pk: str) -> Response:
        """Stop a queued or running backfill after its current batch; 409 once it ended."""
        if not request.user.has_perm("inventory.change_metadatabackfill"):
            self.permission_denied(request, message="you may not cancel backfills")
        backfill = metadata_generators.metadata_backfill_cancel(backfill=self.get_object())
        return Response(MetadataBackfillSerializer(backfill).data)
