"""Display helpers for store pages: paths that wrap where a person would break them."""

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter(needs_autoescape=True)
def path_breaks(value: object, autoescape: bool = True) -> SafeString | object:
    """The path escaped, with a line-break opportunity (``<wbr>``) after each ``/``.

    A long path then wraps between its folders, never inside a name (which CSS
    ``overflow-wrap: anywhere`` would do). Use it after ``|visible`` on outside paths.
    """
    if not isinstance(value, str):
        return value
    text = conditional_escape(value) if autoescape else value
    return mark_safe(str(text).replace("/", "/<wbr>"))  # noqa: S308 (escaped just above)
