"""The certificate page's metadata card, as a tag: the page's own view stays as it is."""

from typing import Any

from django import template

from certyard.console.metadata_forms import CertificateMetadataForm
from certyard.inventory.metadata import selectors as metadata_selectors
from certyard.inventory.models import Certificate

register = template.Library()


@register.inclusion_tag("console/metadata/_panel.html", takes_context=True)
def certificate_metadata_panel(
    context: template.Context, certificate: Certificate
) -> dict[str, Any]:
    """Each field, the certificate's value, who or what set it and when."""
    entries = metadata_selectors.certificate_metadata(certificate=certificate)
    return {
        "certificate": certificate,
        "entries": entries,
        "form": CertificateMetadataForm(entries=entries),
        "editing": False,
        "perms": context.get("perms"),
        "request": context.get("request"),
        "csrf_token": context.get("csrf_token"),
    }
