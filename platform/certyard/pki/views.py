"""What relying parties fetch without logging in: CA certificates, CRLs and OCSP answers.

These URLs are written into every certificate a built-in CA issues (CDP and AIA), so they
answer anyone, with the content types RFC 5280 and RFC 6960 name.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.http import HttpRequest, HttpResponse, UnreadablePostError
from django.http.request import RawPostDataException
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from certyard.pki import ocsp as responder
from certyard.pki import services
from certyard.pki.models import CertificateAuthority
from certyard.security import client_address


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


def _ocsp_answer(answer: bytes, status: int = 200) -> HttpResponse:
    return HttpResponse(answer, status=status, content_type="application/ocsp-response")


def _ocsp_request_body(request: HttpRequest, encoded: str) -> bytes | None:
    """The DER request from the POST body or the GET path; None when it is too large."""
    limit = responder.OCSP_REQUEST_MAX_BYTES
    if request.method == "POST":
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return None
        try:
            body = request.read(limit + 1)  # bounded even without a Content-Length
        except (RawPostDataException, OSError, UnreadablePostError):
            return b""  # already parsed as a form by someone else: not an OCSP request
        return None if len(body) > limit else body
    if len(encoded) > limit * 2:
        return None
    # RFC 6960 appendix A.1: base64 of the DER, URL-encoded (Django has decoded the
    # path); the URL-safe alphabet and missing padding are accepted too.
    text = encoded.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""  # not base64: answered malformedRequest


@csrf_exempt  # OCSP clients are not browsers; the request carries no credentials
@require_http_methods(["GET", "POST"])
def ocsp(request: HttpRequest, ca_id: int, encoded: str = "") -> HttpResponse:
    """RFC 6960 responder: POST a DER request, or GET with it base64-encoded in the path.

    Every request gets an OCSP answer (HTTP 200), the unsuccessful ones unsigned; only a
    body over the size limit is answered 413, with ``malformedRequest`` as its body.
    """
    # Not the encrypted key (decrypted on every load; services.ca_material caches the key
    # per process) nor the CRL: an answer served from the cache needs neither.
    ca = get_object_or_404(
        CertificateAuthority.objects.defer("private_key_pem", "crl_der", "chain_pem"), pk=ca_id
    )
    body = _ocsp_request_body(request, encoded)
    if body is None:
        return _ocsp_answer(responder.ocsp_error_malformed(), status=413)
    answer = responder.ocsp_respond(ca, body, client_address=client_address(request) or "")
    return _ocsp_answer(answer)
