"""Store management pieces of other pages: the certificate page's "Add to stores",
"Remove from" and "Renew and replace" card, and deployment state badges."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from certyard.console.deployment_views import certificate_panel_context
from certyard.inventory.models import Certificate

register = template.Library()

_TONES = {
    "pending": "muted",
    "running": "info",
    "awaiting_approval": "warn",
    "deployed": "ok",
    "written": "ok",
    "warning": "warn",
    "failed": "bad",
    "cancelled": "muted",
    # Discovery candidates.
    "new": "info",
    "gone": "muted",
    "approved": "ok",
    "ignored": "muted",
}


@register.simple_tag
def deployment_badge(value: str, label: str = "") -> SafeString:
    """A coloured badge for a deployment's or a discovery candidate's state."""
    tone = _TONES.get(str(value), "muted")
    return format_html(
        '<span class="badge badge-{}" data-state="{}">{}</span>', tone, value, label or value
    )


@register.inclusion_tag("console/deployment/_certificate_panel.html", takes_context=True)
def certificate_deployment_panel(
    context: template.Context, certificate: Certificate
) -> dict[str, Any]:
    """Add the certificate to stores, remove it, renew and replace it, with its deployments."""
    user = context.get("user")
    panel = certificate_panel_context(certificate, user)
    panel.update(
        {
            "perms": context.get("perms"),
            "user": user,
            "request": context.get("request"),
            "csrf_token": context.get("csrf_token"),
        }
    )
    return panel


@register.filter
def lookup(mapping: Any, key: Any) -> Any:
    """``mapping[key]``, or None: for counts and labels keyed by a row's value."""
    return mapping.get(key) if isinstance(mapping, dict) else None
