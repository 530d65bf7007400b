"""What relying parties fetch without logging in: CA certificates, CRLs and OCSP answers.

These URLs are written into every certificate a built-in CA issues (CDP and AIA), so they
answer anyone, with the content types RFC 5280 and RFC 6960 name.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from certyard.pki import services
from certyard.pki.models import CertificateAuthority

# An OCSP request is a few hundred bytes; refuse anything far larger before reading it.
_OCSP_MAX_BYTES = 16 * 1024


def ca_certificate(request: HttpRequest, ca_id: int) -> HttpResponse:
    """The CA certificate, DER (the AIA caIssuers form)."""
    ca = get_object_or_404(CertificateAuthority, pk=ca_id)
    der = x509.load_pem_x509_certificate(ca.certificate_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )
    return HttpResponse(der, content_type="application/pkix-cert")


def crl(request: HttpRequest, ca_id: int) -> HttpResponse:
    """The CA's current CRL, DER."""
    ca = get_object_or_404(CertificateAuthority, pk=ca_id)
    response = HttpResponse(services.crl_current(ca), content_type="application/pkix-crl")
    response["Cache-Control"] = "max-age=300"
    return response


def _ocsp_answer(ca: CertificateAuthority, body: bytes) -> HttpResponse:
    return HttpResponse(services.ocsp_respond(ca, body), content_type="application/ocsp-response")


@csrf_exempt  # OCSP clients are not browsers; the request carries no credentials
@require_http_methods(["GET", "POST"])
def ocsp(request: HttpRequest, ca_id: int, encoded: str = "") -> HttpResponse:
    """RFC 6960 responder: POST a DER request, or GET with it base64-encoded in the path."""
    ca = get_object_or_404(CertificateAuthority, pk=ca_id)
    if request.method == "POST":
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > _OCSP_MAX_BYTES:
            return HttpResponse(status=413)
        return _ocsp_answer(ca, request.body)
    try:
        body = base64.b64decode(encoded.replace("-", "+").replace("_", "/"), validate=False)
    except (binascii.Error, ValueError):
        body = b""
    return _ocsp_answer(ca, body)
