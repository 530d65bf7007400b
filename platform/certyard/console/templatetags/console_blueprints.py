"""What the orchestrator page's blueprint forms offer (the blueprints app's choices)."""

from django import template
from django.db.models import QuerySet

from certyard.blueprints.models import Blueprint
from certyard.blueprints.selectors import blueprint_choices as _blueprint_choices

register = template.Library()


@register.simple_tag
def blueprint_choices() -> QuerySet[Blueprint]:
    """The blueprints one may apply, by name; the template checks the permission first."""
    return _blueprint_choices()
