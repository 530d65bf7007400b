"""Untrusted text on pages: every page Certyard renders shows invisible characters visibly.

Certificates found on servers and agents registered before their names were checked carry
text Certyard does not control: a right-to-left override (U+202E) or a zero-width space in
a common name, a SAN, an agent's machine or parameters would make the console and Django
admin show something else than what is stored. Rather than trusting every template (and
the next one) to remember a filter, the template engine itself escapes them:
:class:`VisibleTextTemplates` is the ``TEMPLATES`` backend (settings.py), and each page it
renders, console, Django admin, DRF's browsable API and error pages alike, goes through
:func:`handlers.text.visible` once, whole. Escapes are plain ASCII (``\\u202E``), so the
rendered HTML stays valid and safe; inside a JSON string (``json_script``) they mean the
same character.

A page's own tabs and line breaks are its markup, so that pass keeps them; a line break
inside a single-line value (a CN with CRLF) is shown by the ``visible`` filter of the
console's templates (``{% load console %}``) and by :class:`VisibleTextAdmin` in Django
admin. Forms are rendered through the same engine: a stored value with such a character
comes back escaped in an edit form, and saving it stores the escape (the text people saw).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.template.backends.django import DjangoTemplates
from django.template.backends.django import Template as DjangoTemplate
from django.utils.safestring import SafeString, mark_safe

from handlers.text import visible

# A page's own whitespace; everything else invisible is escaped wherever it comes from.
PAGE_MARKUP = "\t\n\r"


class VisibleTextTemplate(DjangoTemplate):
    """A Django template whose output shows every invisible character as an escape."""

    def render(
        self, context: dict[str, Any] | None = None, request: HttpRequest | None = None
    ) -> SafeString:
        html = super().render(context, request)
        # Still safe: the page was escaped HTML, and the escapes added are a backslash,
        # letters and digits, no markup.
        return mark_safe(visible(html, keep=PAGE_MARKUP))  # noqa: S308


class VisibleTextTemplates(DjangoTemplates):
    """The Django template backend, every template it hands out a :class:`VisibleTextTemplate`.

    Templates included or extended inside a page are part of that page's output, so the one
    pass over the outermost render covers them; so do form widgets and inclusion tags.
    """

    def from_string(self, template_code: str) -> VisibleTextTemplate:
        return VisibleTextTemplate(super().from_string(template_code).template, self)

    def get_template(self, template_name: str) -> VisibleTextTemplate:
        return VisibleTextTemplate(super().get_template(template_name).template, self)


def visible_value(value: Any) -> Any:
    """A single-line value as shown: a string, or each string of a list or mapping, escaped
    with its line breaks; other values (numbers, dates, None) as they are."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, list | tuple):
        return ", ".join(visible(str(item)) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{visible(str(k))}={visible(str(v))}" for k, v in value.items())
    return value


# The name of the display method that stands for an untrusted field: ``subject_shown``.
SHOWN = "_shown"


def _display(name: str) -> Callable[[Any, Model], Any]:
    """An admin display method for the model field ``name``, its text escaped."""

    def show(model_admin: Any, obj: Model) -> Any:
        value = getattr(obj, name)
        if value in (None, "", [], {}):
            return None  # admin shows its empty-value marker
        return visible_value(value)

    show.__name__ = f"{name}{SHOWN}"
    return admin.display(description=name.replace("_", " "), ordering=name)(show)


class VisibleText:
    """For a ModelAdmin or an inline: its ``untrusted_fields`` shown escaped, line breaks
    included.

    The fields are listed by name as usual (``list_display``, ``readonly_fields``); where
    one is displayed rather than edited, this swaps it for a ``<name>_shown`` display
    method that escapes it, so an admin class only declares which fields carry outside
    text. Editable ones stay form fields (their values are escaped by the page pass).
    """

    untrusted_fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.untrusted_fields:
            setattr(cls, f"{name}{SHOWN}", _display(name))

    def _shown(self, names: Iterable[Any]) -> list[Any]:
        return [
            f"{name}{SHOWN}" if isinstance(name, str) and name in self.untrusted_fields else name
            for name in names
        ]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        return self._shown(super().get_list_display(request))  # type: ignore[misc]

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[Any]:
        readonly = self._shown(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        if obj is not None and not self.has_change_permission(request, obj):  # type: ignore[attr-defined]
            # A view-only page shows every field read-only: the untrusted ones escaped.
            readonly += [
                f"{n}{SHOWN}" for n in self.untrusted_fields if f"{n}{SHOWN}" not in readonly
            ]
        return readonly

    def get_exclude(self, request: HttpRequest, obj: Model | None = None) -> list[Any] | None:
        # The model field a display method stands for is no form field any more.
        readonly = set(self.get_readonly_fields(request, obj))
        shown = [name for name in self.untrusted_fields if f"{name}{SHOWN}" in readonly]
        excluded = super().get_exclude(request, obj)  # type: ignore[misc]
        if excluded is None and not shown:
            return None  # so a form's own Meta.exclude still applies
        return [*(excluded or []), *shown]


class VisibleTextAdmin(VisibleText, admin.ModelAdmin):
    """A ModelAdmin with :class:`VisibleText`."""
