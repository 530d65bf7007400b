"""The inventory part of the people's API, under /api/v1/."""

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from certyard.api.errors import ApiError
from certyard.inventory import selectors, services
from certyard.inventory.api.serializers import (
    CertificateDetailSerializer,
    CertificateListParamsSerializer,
    CertificateSerializer,
    ScheduleSerializer,
    StoreCreateSerializer,
    StoreSerializer,
    StoreTypeSerializer,
    StoreUpdateSerializer,
)
from certyard.inventory.models import Certificate, CertificateStore, CertificateStoreType
from certyard.inventory.parsing import certificate_file_stem, der_to_pem


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
        store = services.store_create(**data.validated_data)
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
        services.store_update(store=store, **data.changes())
        return Response(StoreSerializer(self.get_queryset().get(pk=store.pk)).data)

    def perform_destroy(self, instance: CertificateStore) -> None:
        # DELETE needs inventory.delete_certificatestore (the model permissions).
        services.store_delete(store=instance)

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
            store=store, interval_minutes=data.validated_data["interval_minutes"]
        )
        return Response(StoreSerializer(self.get_queryset().get(pk=store.pk)).data)


class FileDownloadNegotiation(BaseContentNegotiation):
    """Answers with the view's first renderer whatever ``?format=`` says; the view sends a file."""

    def select_parser(self, request: Request, parsers: list) -> object:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


_CERTIFICATE_FILTERS = [
    OpenApiParameter("search", str, description="CN, SAN, issuer, serial or fingerprint"),
    OpenApiParameter("expires_within_days", int),
    OpenApiParameter("expired", bool),
    OpenApiParameter("store", str, description="Store id"),
    OpenApiParameter("key_algorithm", str, description="RSA, EC, Ed25519, ..."),
    OpenApiParameter(
        "conformant", bool, description="false: only certificates with parse warnings"
    ),
]


@extend_schema_view(list=extend_schema(parameters=_CERTIFICATE_FILTERS))
class CertificateViewSet(viewsets.ReadOnlyModelViewSet):
    def get_serializer_class(self) -> type[Serializer]:
        return CertificateDetailSerializer if self.action == "retrieve" else CertificateSerializer

    def get_queryset(self) -> QuerySet[Certificate]:
        if self.action != "list":
            return Certificate.objects.prefetch_related("locations__store__store_type")
        params = CertificateListParamsSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return selectors.certificate_list(filters=params.to_filters())

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
