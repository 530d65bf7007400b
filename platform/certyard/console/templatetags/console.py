"""Small display helpers for the console's templates: badges and names."""

import datetime as dt

from cryptography import x509
from cryptography.x509.oid import NameOID
from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from certyard.console.pagination import SlicePage
from handlers.text import visible as _visible
from handlers.text import visible_lines as _visible_lines

register = template.Library()

# Status and state values, mapped to a badge colour.
_BADGE_TONES = {
    "new": "warn",
    "approved": "ok",
    "disapproved": "bad",
    "pending": "info",
    "leased": "info",
    "succeeded": "ok",
    "failed": "bad",
    "cancelled": "muted",
    "success": "ok",
    "warning": "warn",
    "failure": "bad",
    "lease_expired": "warn",
    "released": "muted",
    # A store's inventory status.
    "never": "muted",
    "ok": "ok",
    "failing": "bad",
    # A TLS endpoint's status ("ok" above): nothing there is news, a failed TLS is bad.
    "refused": "muted",
    "timeout": "warn",
    "unreachable": "warn",
    "plaintext_http": "warn",
    "no_tls": "warn",
    "handshake_failed": "bad",
    "invalid_certificate": "bad",
}


@register.simple_tag
def status_badge(value: str, label: str = "") -> SafeString:
    """A coloured badge for an orchestrator status, job state or outcome, or store status."""
    tone = _BADGE_TONES.get(str(value), "muted")
    return format_html('<span class="badge badge-{}">{}</span>', tone, label or value)


@register.simple_tag
def expiry_badge(not_after: dt.datetime | None) -> SafeString:
    """Expired, or expiring within 7 or 30 days; nothing for a certificate further out."""
    if not_after is None:
        return mark_safe("")
    left = not_after - timezone.now()
    if left < dt.timedelta(0):
        tone, label = "bad", "Expired"
    elif left < dt.timedelta(days=7):
        tone, label = "bad", "< 7 days"
    elif left < dt.timedelta(days=30):
        tone, label = "warn", "< 30 days"
    else:
        return mark_safe("")
    return format_html('<span class="badge badge-{}">{}</span>', tone, label)


# Every page already shows bidi and zero-width characters as escapes (the template backend,
# certyard/display.py). These two add what that page-wide pass cannot know: whether a
# value's line breaks are content. Use ``|visible`` on single-line outside text (names,
# SANs, machines, parameters) so a CR/LF in it shows as \r\n; ``|visible_lines`` on text
# that may span lines (errors, output), keeping its line breaks.


@register.filter
def visible(value: object) -> object:
    """A single-line value with its control and invisible characters shown as escapes."""
    return _visible(value) if isinstance(value, str) else value


@register.filter
def visible_lines(value: object) -> object:
    """Text that may span lines, its other control and invisible characters escaped."""
    return _visible_lines(value) if isinstance(value, str) else value


@register.filter
def is_past(moment: dt.datetime | None) -> bool:
    return moment is not None and moment <= timezone.now()


@register.filter
def common_name_of(distinguished_name: str) -> str:
    """The CN of an RFC 4514 name (``CN=Acme CA,O=Acme``), else the name itself; shown
    with :func:`visible`, as the names it reads come from certificates."""
    try:
        name = x509.Name.from_rfc4514_string(distinguished_name)
    except (ValueError, TypeError):
        return visible(distinguished_name)
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.ORGANIZATION_NAME):
        if attributes := name.get_attributes_for_oid(oid):
            return visible(str(attributes[0].value))
    return visible(distinguished_name)


@register.filter
def first_items(values: list | None, count: int = 3) -> list:
    return list(values or [])[: int(count)]


@register.filter
def more_than(values: list | None, count: int = 3) -> int:
    """How many items are left after the first ``count``."""
    return max(len(values or []) - int(count), 0)


@register.simple_tag
def page_label(page: SlicePage | str | None, singular: str, plural: str = "") -> str:
    """The words above a list's page: ``{% page_label page "certificate" %}`` gives
    "Certificates 1-50 of 240" or "1 certificate"; pass the plural when "s" is wrong
    (``{% page_label entries "entry" "entries" %}``). "" for no page or an empty one."""
    # A missing variable reaches a tag as "" (string_if_invalid), not None.
    return page.label(singular, plural or None) if isinstance(page, SlicePage) else ""
