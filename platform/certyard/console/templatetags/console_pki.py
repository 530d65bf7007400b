"""PKI and enrollment pieces of other pages: the certificate page's issuance and revocation
card, the navigation's count of requests waiting for approval, and state badges."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from certyard.console import pki_forms
from certyard.console.pki_views import renew_form_for
from certyard.console.selectors import CertificatePkiFacts
from certyard.enrollment.selectors import enrollment_requests_pending_count
from certyard.inventory.models import Certificate

register = template.Library()

# Shown as "99+" beyond: the navigation never counts a whole table.
PENDING_SHOWN = 99

_TONES = {
    # Enrollment requests.
    "pending": "warn",
    "approved": "info",
    "awaiting_ca": "info",
    "issued": "ok",
    "denied": "muted",
    "failed": "bad",
    # Gateway synchronizations.
    "running": "info",
    "finished": "ok",
}


@register.simple_tag
def pki_badge(value: str, label: str = "") -> SafeString:
    """A coloured badge for an enrollment request's or a sync's state."""
    tone = _TONES.get(str(value), "muted")
    return format_html('<span class="badge badge-{}">{}</span>', tone, label or value)


@register.simple_tag(takes_context=True)
def enrollment_pending_count(context: template.Context) -> str:
    """How many requests wait for approval ("" for none, or for who cannot approve)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("enrollment.approve_enrollmentrequest"):
        return ""
    found = enrollment_requests_pending_count(limit=PENDING_SHOWN)
    if not found:
        return ""
    return f"{PENDING_SHOWN}+" if found > PENDING_SHOWN else str(found)


@register.inclusion_tag("console/pki/_certificate_panel.html", takes_context=True)
def certificate_pki_panel(
    context: template.Context, certificate: Certificate, pki: CertificatePkiFacts
) -> dict[str, Any]:
    """Who issued the certificate and whether it is revoked, with Revoke and Renew forms
    (when Certyard issued it or a CA gateway reported it); ``pki``, read once by the page."""
    status = pki.revocation_status
    original = pki.issued_request
    return {
        "certificate": certificate,
        "status": status,
        "original": original,
        "revoke_form": pki_forms.RevokeForm(),
        "renew_form": renew_form_for(original),
        "perms": context.get("perms"),
        "user": context.get("user"),
        "request": context.get("request"),
        "csrf_token": context.get("csrf_token"),
    }
