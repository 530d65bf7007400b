"""The built-in CAs' part of the people's API, under /api/v1/cas/.

Reads need the model's view permission; each action names the permission it needs.
"""

from __future__ import annotations

import base64
import binascii

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from certyard.api.errors import ApiError
from certyard.api.permissions import require_permissions
from certyard.pki import services
from certyard.pki.api import serializers as s
from certyard.pki.models import CertificateAuthority


class CertificateAuthorityViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The built-in CAs: create a root or an intermediate, or import one."""

    serializer_class = s.CertificateAuthoritySerializer
    queryset = CertificateAuthority.objects.order_by("name")

    @extend_schema(
        request=s.CertificateAuthorityCreateSerializer,
        responses={201: s.CertificateAuthoritySerializer},
    )
    def create(self, request: Request) -> Response:
        """Create a root CA, or an intermediate when ``parent`` names a built-in CA."""
        data = s.CertificateAuthorityCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ca = services.ca_create(**data.validated_data, actor=request.user)
        return Response(s.CertificateAuthoritySerializer(ca).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.CertificateAuthorityImportSerializer,
        responses={201: s.CertificateAuthoritySerializer},
    )
    @action(detail=False, methods=["post"], url_path="import", permission_classes=[IsAuthenticated])
    def import_(self, request: Request) -> Response:
        """Import a CA from PEM (certificate and key) or from a base64 PKCS#12."""
        require_permissions(request, self, "pki.add_certificateauthority")
        data = s.CertificateAuthorityImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if values.get("pkcs12"):
            try:
                raw = base64.b64decode(values["pkcs12"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ApiError("pkcs12 is not base64") from exc
            ca = services.ca_import_pkcs12(
                name=values["name"],
                data=raw,
                password=values.get("password", ""),
                actor=request.user,
            )
        else:
            ca = services.ca_import(
                name=values["name"],
                certificate_pem=values["certificate_pem"],
                private_key_pem=values["private_key_pem"],
                key_password=values.get("key_password", ""),
                chain_pem=values.get("chain_pem", ""),
                actor=request.user,
            )
        return Response(s.CertificateAuthoritySerializer(ca).data, status=status.HTTP_201_CREATED)
