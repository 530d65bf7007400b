"""The deployment part of the people's API, under /api/v1/.

Writes need ``deployment.add_deployment`` and the right to act on the certificate and
each store (``certyard.accounts.authorization``); reads need the view permission.
Every write answers 202 with the batch (or job): the agents do the work.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import QueryDict
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from certyard.api.errors import ApiError
from certyard.api.permissions import require_permissions
from certyard.api.schema import AutoSchema
from certyard.deployment import selectors, services
from certyard.deployment.api import serializers as s
from certyard.deployment.models import Deployment, DeploymentBatch
from certyard.inventory.models import Certificate, CertificateStore
from certyard.jobs.models import Job

_ADD = "deployment.add_deployment"


def _batch_answer(batch: DeploymentBatch) -> Response:
    fresh = selectors.batch_with_deployments(batch.pk)
    return Response(s.DeploymentBatchSerializer(fresh).data, status=status.HTTP_202_ACCEPTED)


class _BodyRequiredSchema(AutoSchema):
    """The body is required: a request without one is refused (400), which drf-spectacular
    cannot tell when no single field is required (``{}`` is refused by the body's oneOf)."""

    def _get_request_body(self, direction: str = "request") -> dict[str, Any] | None:
        body: dict[str, Any] | None = super()._get_request_body(direction)
        if body is not None:
            body["required"] = True
        return body


class _CertificateActionView(APIView):
    permission_classes = [IsAuthenticated]
    schema = _BodyRequiredSchema()

    def certificate(self, pk: int) -> Certificate:
        return get_object_or_404(Certificate, pk=pk)


class CertificateDeploymentsView(_CertificateActionView):
    @extend_schema(request=s.DeployRequestSerializer, responses={202: s.DeploymentBatchSerializer})
    def post(self, request: Request, pk: int) -> Response:
        """Add the certificate to stores (ids, or every store matching ``store_filter``),
        with its private key where the platform holds it and the store takes one."""
        require_permissions(request, self, _ADD)
        certificate = self.certificate(pk)
        data = s.DeployRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if "store_filter" in values:
            stores = services.stores_matching(actor=request.user, filter=values["store_filter"])
            if not stores:
                raise ApiError("no store you may act on matches the filter", code="no_stores")
        else:
            stores = values["stores"]
        batch = services.certificate_deploy(
            certificate=certificate,
            stores=stores,
            actor=request.user,
            alias=values["alias"] or None,
            overwrite=values["overwrite"],
            include_private_key=values["include_private_key"],
            entry_parameters=values["entry_parameters"],
            source=Job.Source.API,
        )
        return _batch_answer(batch)


class CertificateRemovalsView(_CertificateActionView):
    @extend_schema(request=s.RemovalRequestSerializer, responses={202: s.DeploymentBatchSerializer})
    def post(self, request: Request, pk: int) -> Response:
        """Remove the certificate from the chosen stores, or from every location."""
        require_permissions(request, self, _ADD)
        certificate = self.certificate(pk)
        data = s.RemovalRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        batch = services.certificate_undeploy(
            certificate=certificate,
            stores=None if values.get("all") else values["stores"],
            actor=request.user,
            source=Job.Source.API,
        )
        return _batch_answer(batch)


class CertificateRenewReplaceView(_CertificateActionView):
    @extend_schema(
        request=s.RenewReplaceRequestSerializer, responses={202: s.DeploymentBatchSerializer}
    )
    def post(self, request: Request, pk: int) -> Response:
        """Renew the certificate under a template (its subject and SANs carry over) and
        replace it in every location: a key made on the device where the store type
        re-enrolls, else a platform key."""
        require_permissions(request, self, _ADD, "enrollment.add_enrollmentrequest")
        certificate = self.certificate(pk)
        data = s.RenewReplaceRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        batch = services.certificate_renew_and_replace(
            certificate=certificate,
            template=data.validated_data["template"],
            actor=request.user,
            source=Job.Source.API,
        )
        return _batch_answer(batch)


class StoreCreateView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={202: s.StoreCreateAnswerSerializer})
    def post(self, request: Request, pk: str) -> Response:
        """Ask the store's agent to create the (empty) store at its path."""
        require_permissions(request, self, _ADD)
        store = get_object_or_404(
            CertificateStore.objects.select_related("store_type", "orchestrator"), pk=pk
        )
        job = services.store_create_request(store=store, actor=request.user, source=Job.Source.API)
        return Response({"job": job.pk, "state": job.state}, status=status.HTTP_202_ACCEPTED)


class DeploymentBatchViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A batch and its deployments: its progress is theirs."""

    serializer_class = s.DeploymentBatchSerializer

    def get_queryset(self) -> QuerySet[DeploymentBatch]:
        return DeploymentBatch.objects.select_related("template").prefetch_related(
            Prefetch("deployments", queryset=Deployment.objects.select_related("job"))
        )


# Typed as the view checks them, so a value the schema allows is never refused and one it
# does not (?store=%05, ?certificate=-1, ?state=) always is.
_DEPLOYMENT_FILTERS = [
    OpenApiParameter(
        "certificate", {"type": "integer", "minimum": 0}, description="Certificate id"
    ),
    OpenApiParameter("store", {"type": "string", "format": "uuid"}, description="Store id"),
    OpenApiParameter("state", str, enum=Deployment.State.values),
]


def _require_filters(params: QueryDict) -> None:
    """A filter given empty (``?store=``) is refused like any value that names nothing (the
    selector would read it as no filter, widening the list). A certificate id is ASCII
    digits: ``isdigit`` also takes digits that ``int`` cannot read."""
    for name in ("certificate", "store", "state"):
        if params.get(name) == "":
            raise ApiError(f"{name}: give a value or leave the filter out")
    certificate = params.get("certificate")
    if certificate is not None and not (certificate.isascii() and certificate.isdigit()):
        raise ApiError("certificate: an id (an integer)")


@extend_schema_view(list=extend_schema(parameters=_DEPLOYMENT_FILTERS))
class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deployments, newest first; filter by certificate, store or state."""

    serializer_class = s.DeploymentSerializer

    def get_queryset(self) -> QuerySet[Deployment]:
        params = self.request.query_params
        if self.action == "list":
            _require_filters(params)
        try:
            return selectors.deployments_filtered(
                certificate=params.get("certificate"),
                store=params.get("store"),
                state=params.get("state"),
            )
        except ValueError as exc:
            raise ApiError(str(exc)) from None
