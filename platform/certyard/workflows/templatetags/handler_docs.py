"""``{% load handler_docs %}``: an extension's description, rendered (never raw markup)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from certyard.workflows.docstrings import docstring_html, docstring_summary

register = template.Library()


@register.filter
def handler_doc(doc: str) -> SafeString:
    """The docstring as simple HTML (paragraphs, lists, code); everything in it escaped."""
    return mark_safe(docstring_html(doc or ""))  # noqa: S308 - escaped by docstring_html


@register.filter
def handler_doc_summary(doc: str) -> str:
    """The first paragraph as plain text (the template escapes it)."""
    return docstring_summary(doc or "")
