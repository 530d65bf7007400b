"""Browser security headers the console sends: a strict Content-Security-Policy.

The console loads everything from its own origin (htmx and the Swagger UI are vendored
as static files), runs no inline script and uses no inline style, so the policy allows
nothing else. Django's SecurityMiddleware and XFrameOptionsMiddleware send the other
headers (nosniff, Referrer-Policy, HSTS, X-Frame-Options); see settings.py.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


@cache
def _swagger_ui_style_hashes() -> tuple[str, ...]:
    """CSP hashes of the fixed ``<style>`` blocks in drf-spectacular's Swagger UI page.

    That page (served by SpectacularSwaggerSplitView, whose script is a separate URL)
    still has a small inline stylesheet; allowing exactly its hash keeps 'unsafe-inline'
    out of the policy. The block holds no template tags, so it renders as written.
    """
    import drf_spectacular

    template = Path(drf_spectacular.__file__).parent / "templates/drf_spectacular/swagger_ui.html"
    try:
        source = template.read_text(encoding="utf-8")
    except OSError:
        return ()
    return tuple(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in re.findall(r"<style>(.*?)</style>", source, flags=re.DOTALL)
    )


def content_security_policy(request: HttpRequest) -> str:
    """The policy for this request's response: the strict one, everywhere."""
    match = getattr(request, "resolver_match", None)
    if (
        match is not None
        and match.url_name == "api-docs"
        and (hashes := _swagger_ui_style_hashes())
    ):
        return CONTENT_SECURITY_POLICY.replace(
            "style-src 'self'", "style-src 'self' " + " ".join(hashes)
        )
    return CONTENT_SECURITY_POLICY


class ContentSecurityPolicyMiddleware:
    """Set Content-Security-Policy on every response that does not set its own.

    Harmless on JSON and static files (browsers apply it to documents only), and it also
    covers the error pages and the Django admin.
    """

    sync_capable = True
    async_capable = True  # see certyard.middleware: no sync-only middleware under ASGI

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._is_async:
            return self._acall(request)
        return self._with_policy(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self._with_policy(request, await self.get_response(request))

    @staticmethod
    def _with_policy(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = content_security_policy(request)
        return response


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address, as every limit on the platform counts it.

    The peer's address (REMOTE_ADDR), or the one CERTYARD_TRUSTED_PROXIES proxies in front
    of us wrote into X-Forwarded-For: exactly what DRF's throttles use (its NUM_PROXIES), so
    the login lockout, the API throttles and the agent API's limits agree on who the client
    is. A forwarded value that is no IP address falls back to the peer's address: a proxy
    misconfiguration must not let a client name itself. None when neither is an address.
    """
    from rest_framework.throttling import BaseThrottle

    remote = request.META.get("REMOTE_ADDR") or None
    candidate = BaseThrottle().get_ident(request)
    for text in (candidate, remote):
        try:
            address = ipaddress.ip_address(str(text or "").strip())
        except ValueError:
            continue
        # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d: one client, one key.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return str(address)
    return None
