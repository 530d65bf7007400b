"""Browser security headers the console sends: a strict Content-Security-Policy.

The console loads everything from its own origin (htmx and the Swagger UI are vendored
as static files), runs no inline script and uses no inline style, so the policy allows
nothing else. Django's SecurityMiddleware and XFrameOptionsMiddleware send the other
headers (nosniff, Referrer-Policy, HSTS, X-Frame-Options); see settings.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

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

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = content_security_policy(request)
        return response
