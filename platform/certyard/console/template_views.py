"""The console's certificate templates: the list, and creating and editing one.

Templates used to be made in Django admin only; these pages give the console the same
form with the same checks (``Template.clean()``, through a ModelForm), so a first setup
never needs admin. A login for every page, ``enrollment.view_template`` to read,
``add_template`` / ``change_template`` to write (POST only, with CSRF).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from certyard.console.forms import service_error_to_form
from certyard.console.template_forms import TemplateConsoleForm
from certyard.enrollment import selectors as enrollment_selectors
from certyard.enrollment.models import Template
from certyard.enrollment.services import template_save
from certyard.errors import ServiceError


@login_required
@require_GET
@permission_required("enrollment.view_template", raise_exception=True)
def template_list(request: HttpRequest) -> HttpResponse:
    """Every template with its issuer and what it allows."""
    templates = list(enrollment_selectors.template_list())
    return render(request, "console/templates/list.html", {"templates": templates})


def _save(request: HttpRequest, form: TemplateConsoleForm) -> Template | None:
    """Save a valid form through the service; a refusal goes on the form."""
    template: Template = form.save(commit=False)
    try:
        with transaction.atomic():
            template_save(template)
            form.save_m2m()
    except ServiceError as exc:
        service_error_to_form(form, exc)
        return None
    return template


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("enrollment.add_template", raise_exception=True)
def template_create(request: HttpRequest) -> HttpResponse:
    form = TemplateConsoleForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        template = _save(request, form)
        if template is not None:
            messages.success(request, f"Template {template.name} created.")
            return redirect("console:enrollment-template-list")
    return render(request, "console/templates/form.html", {"form": form, "template": None})


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("enrollment.change_template", raise_exception=True)
def template_edit(request: HttpRequest, pk: int) -> HttpResponse:
    template = get_object_or_404(enrollment_selectors.template_list(), pk=pk)
    form = TemplateConsoleForm(request.POST or None, instance=template)
    if request.method == "POST" and form.is_valid():
        saved = _save(request, form)
        if saved is not None:
            messages.success(request, f"Template {saved.name} saved.")
            return redirect("console:enrollment-template-list")
    return render(request, "console/templates/form.html", {"form": form, "template": template})
