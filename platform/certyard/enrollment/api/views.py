"""The enrollment part of the people's API, under /api/v1/ (the CAs' is ``certyard.pki.api``).

Reads need the model's view permission; each action names the permission it needs.
Refused enrollments answer 4xx with ``error.enrollment_id``: the request recorded as
failed, with its reason.
"""

from __future__ import annotations

import base64

from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from certyard.api.errors import ApiError
from certyard.api.permissions import require_permissions
from certyard.enrollment import services
from certyard.enrollment.api import serializers as s
from certyard.enrollment.gateways import gateway_ping, gateway_products
from certyard.enrollment.models import EnrollmentRequest, GatewaySync, Template
from certyard.enrollment.selectors import enrollment_as_saved
from certyard.enrollment.sync import gateway_sync_start
from certyard.inventory.models import Certificate
from certyard.workflows.models import HandlerRegistration
from handlers.base import HandlerKind

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Optional, 1 to 100 printable ASCII characters (a random UUID): the same "
    "key from the same person answers with the request it first submitted (200, header "
    "Idempotent-Replayed: true; a PFX enrollment's PKCS#12 is not sent again) instead of "
    "issuing again. A key used for another template or method is refused (409).",
)


def _idempotency_key(request: Request) -> str | None:
    return request.headers.get("Idempotency-Key")


def _created(body: object, enrollment: EnrollmentRequest) -> Response:
    """201 for a new request; 200 and Idempotent-Replayed when the key was used before."""
    if enrollment.replayed:
        response = Response(body, status=status.HTTP_200_OK)
        response["Idempotent-Replayed"] = "true"
        return response
    return Response(body, status=status.HTTP_201_CREATED)


class TemplateViewSet(viewsets.ReadOnlyModelViewSet):
    """Enrollment templates (managed in Django admin)."""

    serializer_class = s.TemplateSerializer
    queryset = Template.objects.select_related("ca", "gateway").order_by("name")


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=[c for c, _ in EnrollmentRequest.State.choices])
        ]
    )
)
class EnrollmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Enrollment requests: submit (CSR or PFX), approve or deny, collect a PKCS#12."""

    serializer_class = s.EnrollmentSerializer

    def get_queryset(self) -> QuerySet[EnrollmentRequest]:
        queryset = EnrollmentRequest.objects.select_related("requested_by", "decided_by")
        state = self.request.query_params.get("state")
        if self.action == "list" and state is not None:
            if state not in EnrollmentRequest.State.values:
                raise ApiError(f"state must be one of {', '.join(EnrollmentRequest.State.values)}")
            queryset = queryset.filter(state=state)
        return queryset.order_by("-created_at")

    def _answer(self, request: EnrollmentRequest, code: int = status.HTTP_200_OK) -> Response:
        request.refresh_from_db()
        return Response(s.EnrollmentSerializer(request).data, status=code)

    @extend_schema(
        request=s.EnrollmentCsrSerializer,
        responses={201: s.EnrollmentSerializer, 200: s.EnrollmentSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def create(self, request: Request) -> Response:
        """Enroll a CSR under a template: issued at once (201, state issued) or pending
        approval (201, state pending)."""
        data = s.EnrollmentCsrSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        submitted = services.enrollment_submit_csr(
            template_name=values["template"],
            csr_pem=values["csr"],
            metadata=values["metadata"],
            actor=request.user,
            target_stores=[str(store) for store in values["target_stores"]],
            idempotency_key=_idempotency_key(request),
        )
        saved = enrollment_as_saved(submitted, actor=request.user)
        return _created(s.EnrollmentSerializer(saved).data, saved)

    @extend_schema(
        request=s.EnrollmentBatchSerializer, responses={201: s.EnrollmentBatchResultSerializer}
    )
    @action(detail=False, methods=["post"], permission_classes=[IsAuthenticated])
    def batch(self, request: Request) -> Response:
        """Enroll up to 1,000 CSRs under one template in one call (bulk issuance). Each CSR
        gets its own request; refused ones are recorded as failed with their reason and
        do not stop the others."""
        require_permissions(request, self, "enrollment.add_enrollmentrequest")
        data = s.EnrollmentBatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        requests = services.enrollments_submit_csr_batch(
            template_name=values["template"],
            csr_pems=values["csrs"],
            metadata=values["metadata"],
            actor=request.user,
        )
        states = [r.state for r in requests]
        body = {
            "issued": states.count(EnrollmentRequest.State.ISSUED),
            "pending": states.count(EnrollmentRequest.State.PENDING),
            "failed": states.count(EnrollmentRequest.State.FAILED),
            "results": s.EnrollmentSerializer(requests, many=True).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.EnrollmentPfxSerializer,
        responses={201: s.EnrollmentPfxResultSerializer, 200: s.EnrollmentPfxResultSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    @action(detail=False, methods=["post"], permission_classes=[IsAuthenticated])
    def pfx(self, request: Request) -> Response:
        """The platform makes the key: the PKCS#12 comes back once, base64, when issued at
        once; a pending one is collected with ``collect`` after approval."""
        require_permissions(request, self, "enrollment.add_enrollmentrequest")
        data = s.EnrollmentPfxSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        submitted = services.enrollment_submit_pfx(
            template_name=values["template"],
            common_name=values["common_name"],
            sans=values["sans"],
            key_algorithm=values["key_algorithm"],
            password=values["password"],
            metadata=values["metadata"],
            actor=request.user,
            target_stores=[str(store) for store in values["target_stores"]],
            idempotency_key=_idempotency_key(request),
        )
        replayed = submitted.request.replayed
        submitted.request.refresh_from_db()
        submitted.request.replayed = replayed
        body = {
            "enrollment": s.EnrollmentSerializer(submitted.request).data,
            "pkcs12": base64.b64encode(submitted.pfx).decode() if submitted.pfx else None,
        }
        return _created(body, submitted.request)

    @extend_schema(request=s.DecisionSerializer, responses={200: s.EnrollmentSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def approve(self, request: Request, pk: str) -> Response:
        """Approve a pending request (not your own); it is issued at once."""
        require_permissions(request, self, "enrollment.approve_enrollmentrequest")
        enrollment = self.get_object()
        data = s.DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.enrollment_approve(
            request=enrollment, actor=request.user, comment=data.validated_data["comment"]
        )
        return self._answer(enrollment)

    @extend_schema(request=s.DenialSerializer, responses={200: s.EnrollmentSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def deny(self, request: Request, pk: str) -> Response:
        """Deny a pending request; the comment (why) is required."""
        require_permissions(request, self, "enrollment.approve_enrollmentrequest")
        enrollment = self.get_object()
        data = s.DenialSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.enrollment_deny(
            request=enrollment, actor=request.user, comment=data.validated_data["comment"]
        )
        return self._answer(enrollment)

    @extend_schema(request=None, responses={200: s.EnrollmentSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def refresh(self, request: Request, pk: str) -> Response:
        """Ask the CA again about a request it has not issued yet."""
        require_permissions(request, self, "enrollment.change_enrollmentrequest")
        enrollment = self.get_object()
        services.enrollment_refresh(request=enrollment, actor=request.user)
        return self._answer(enrollment)

    @extend_schema(request=s.CollectSerializer, responses={200: OpenApiTypes.BINARY})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def collect(self, request: Request, pk: str) -> Response:
        """The PKCS#12 of your issued PFX request, once (application/x-pkcs12)."""
        enrollment = self.get_object()
        data = s.CollectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pfx = services.enrollment_pfx_collect(
            request=enrollment, password=data.validated_data["password"], actor=request.user
        )
        download = HttpResponse(pfx, content_type="application/x-pkcs12")
        download["Content-Disposition"] = f'attachment; filename="{enrollment.pk}.p12"'
        return download  # type: ignore[return-value]


class _CertificateActionView(APIView):
    permission_classes = [IsAuthenticated]

    def certificate(self, pk: int) -> Certificate:
        return get_object_or_404(Certificate, pk=pk)


class CertificateRevokeView(_CertificateActionView):
    @extend_schema(request=s.RevokeSerializer, responses={204: None})
    def post(self, request: Request, pk: int) -> Response:
        """Revoke a certificate Certyard issued or a gateway reported, with an RFC 5280
        reason; the CRL is regenerated at once (needs enrollment.change_enrollmentrequest)."""
        require_permissions(request, self, "enrollment.change_enrollmentrequest")
        data = s.RevokeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.certificate_revoke(
            certificate=self.certificate(pk),
            reason=data.validated_data["reason"],
            actor=request.user,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class CertificateRenewView(_CertificateActionView):
    @extend_schema(
        request=s.RenewSerializer,
        responses={201: s.EnrollmentPfxResultSerializer, 200: s.EnrollmentPfxResultSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request: Request, pk: int) -> Response:
        """Renew under the original template, with a CSR (same or new key), or as PFX."""
        require_permissions(request, self, "enrollment.add_enrollmentrequest")
        data = s.RenewSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        submitted = services.certificate_renew(
            certificate=self.certificate(pk),
            actor=request.user,
            csr_pem=values["csr"],
            reuse_key=values["reuse_key"],
            password=values["password"],
            idempotency_key=_idempotency_key(request),
        )
        replayed = submitted.request.replayed
        submitted.request.refresh_from_db()
        submitted.request.replayed = replayed
        body = {
            "enrollment": s.EnrollmentSerializer(submitted.request).data,
            "pkcs12": base64.b64encode(submitted.pfx).decode() if submitted.pfx else None,
        }
        return _created(body, submitted.request)


class GatewayViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """CA gateway registrations (configured in Django admin)."""

    serializer_class = s.GatewaySerializer

    def get_queryset(self) -> QuerySet[HandlerRegistration]:
        return HandlerRegistration.objects.filter(kind=HandlerKind.GATEWAY).order_by("name")

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def ping(self, request: Request, pk: str) -> Response:
        """Check the CA answers with this registration's parameters."""
        require_permissions(request, self, "workflows.view_handlerregistration")
        gateway_ping(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: s.GatewayProductSerializer(many=True)})
    @action(detail=True, methods=["get"], permission_classes=[IsAuthenticated])
    def products(self, request: Request, pk: str) -> Response:
        """What the CA can issue."""
        require_permissions(request, self, "workflows.view_handlerregistration")
        products = gateway_products(self.get_object())
        return Response(
            [{"id": p.id, "name": p.name, "description": p.description} for p in products]
        )

    @extend_schema(request=s.GatewaySyncStartSerializer, responses={202: s.GatewaySyncSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def sync(self, request: Request, pk: str) -> Response:
        """Start importing what the CA issued into the inventory (incremental or full)."""
        require_permissions(request, self, "workflows.change_handlerregistration")
        data = s.GatewaySyncStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sync = gateway_sync_start(
            registration=self.get_object(), full=data.validated_data["full"], actor=request.user
        )
        return Response(s.GatewaySyncSerializer(sync).data, status=status.HTTP_202_ACCEPTED)


class GatewaySyncViewSet(viewsets.ReadOnlyModelViewSet):
    """Synchronizations of CA gateways and their progress."""

    serializer_class = s.GatewaySyncSerializer
    queryset = GatewaySync.objects.order_by("-started_at")
