"""The console's blueprint pages: list, detail, delete; save from and apply to an orchestrator.

As elsewhere in the console: a login for every page, the model's view permission for
every read, the add, change or delete permission for every action, POST with CSRF.
"""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from certyard.blueprints import selectors, services
from certyard.blueprints.models import Blueprint
from certyard.console import selectors as console_selectors
from certyard.console.forms import service_error_to_form
from certyard.console.pagination import slice_page
from certyard.errors import ServiceError

BLUEPRINTS_PER_PAGE = 50


class BlueprintPageForm(forms.Form):
    page = forms.IntegerField(required=False, min_value=1, max_value=100_000)

    @property
    def page_number(self) -> int:
        return self.cleaned_data.get("page") or 1


class BlueprintSaveForm(forms.Form):
    name = forms.CharField(max_length=services.NAME_MAX_LENGTH)
    description = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )


class BlueprintApplyForm(forms.Form):
    blueprint = forms.ModelChoiceField(
        queryset=selectors.blueprint_choices(),
        error_messages={"invalid_choice": "That blueprint does not exist (any more)."},
    )


# --- Blueprints ----------------------------------------------------------------------


@login_required
@require_GET
@permission_required("blueprints.view_blueprint", raise_exception=True)
def blueprint_list(request: HttpRequest) -> HttpResponse:
    form = BlueprintPageForm(request.GET)
    page = None
    if form.is_valid():
        page = slice_page(
            selectors.blueprint_list(), number=form.page_number, size=BLUEPRINTS_PER_PAGE
        )
    return render(request, "console/blueprints/list.html", {"page": page, "form": form})


@login_required
@require_GET
@permission_required("blueprints.view_blueprint", raise_exception=True)
def blueprint_detail(request: HttpRequest, pk: int) -> HttpResponse:
    blueprint = get_object_or_404(selectors.blueprint_list(), pk=pk)
    return render(
        request,
        "console/blueprints/detail.html",
        {"blueprint": blueprint, "stores": selectors.blueprint_stores(blueprint=blueprint)},
    )


@login_required
@require_http_methods(["GET", "POST"])
@permission_required("blueprints.delete_blueprint", raise_exception=True)
def blueprint_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST deletes."""
    blueprint = get_object_or_404(selectors.blueprint_list(), pk=pk)
    if request.method == "GET":
        return render(request, "console/blueprints/delete.html", {"blueprint": blueprint})
    services.blueprint_delete(blueprint=blueprint)
    messages.success(
        request, f"Blueprint {blueprint.name} deleted; the stores it made stay where they are."
    )
    return redirect("console:blueprint-list")


# --- On an orchestrator ----------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
@permission_required(["fleet.view_orchestrator", "blueprints.add_blueprint"], raise_exception=True)
def orchestrator_blueprint_save(request: HttpRequest, pk: str) -> HttpResponse:
    """Save the orchestrator's stores as a blueprint. The orchestrator's page posts here;
    a refusal is shown on this page's own form."""
    orchestrator = get_object_or_404(console_selectors.orchestrator_list(), pk=pk)
    form = BlueprintSaveForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            blueprint = services.blueprint_save(
                orchestrator=orchestrator, actor=request.user, **form.cleaned_data
            )
        except ServiceError as exc:
            service_error_to_form(form, exc)
        else:
            count = selectors.blueprint_stores(blueprint=blueprint).count()
            messages.success(
                request,
                f"Blueprint {blueprint.name} saved from {orchestrator.name}, "
                f"with {count} store{'' if count == 1 else 's'}.",
            )
            return redirect("console:blueprint-detail", pk=blueprint.pk)
    context: dict[str, Any] = {"o": orchestrator, "form": form}
    return render(request, "console/blueprints/save.html", context)


@login_required
@require_POST
@permission_required(
    [
        "fleet.view_orchestrator",
        "blueprints.view_blueprint",
        "inventory.add_certificatestore",
    ],
    raise_exception=True,
)
def orchestrator_blueprint_apply(request: HttpRequest, pk: str) -> HttpResponse:
    """Apply the chosen blueprint; the message says what was created, skipped or refused."""
    orchestrator = get_object_or_404(console_selectors.orchestrator_list(), pk=pk)
    form = BlueprintApplyForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(error for field in form.errors.values() for error in field)
        messages.error(request, f"No blueprint applied: {errors}")
        return redirect("console:orchestrator-detail", pk=orchestrator.pk)
    blueprint: Blueprint = form.cleaned_data["blueprint"]
    try:
        application = services.blueprint_apply(
            blueprint=blueprint, orchestrator=orchestrator, actor=request.user
        )
    except ServiceError as exc:
        messages.error(request, f"Blueprint {blueprint.name} not applied: {exc.message}.")
    else:
        report = messages.warning if application.refused else messages.success
        report(request, application.summary)
    return redirect("console:orchestrator-detail", pk=orchestrator.pk)
