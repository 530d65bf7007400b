"""The console's handler pages: the run log, one run, and the registrations (read-only).

Registrations are configured in Django admin, where each class's form is built from what it
declares; the console shows what they are set to (never a secret) and what they did. As
elsewhere in the console: a login for every page and the model's view permission for every
read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET

from certyard.console.pagination import slice_page
from certyard.workflows import selectors
from certyard.workflows.models import HandlerRun
from handlers.base import HandlerKind

RUNS_PER_PAGE = 50
SUBJECT_RUNS_SHOWN = 10
REGISTRATION_RUNS_SHOWN = 20

# The console page of each kind of subject, by the name its URL takes an id under.
_SUBJECT_PAGES = {
    "orchestrator": "console:orchestrator-detail",
    "certificate": "console:certificate-detail",
    "job": "console:job-detail",
}


class RunFilterForm(forms.Form):
    state = forms.ChoiceField(
        required=False, choices=[("", "Any state"), *HandlerRun.State.choices]
    )
    kind = forms.ChoiceField(
        required=False,
        choices=[("", "Any kind"), *((kind.value, kind.label) for kind in HandlerKind)],
    )
    registration = forms.ModelChoiceField(
        queryset=selectors.registration_choices(),
        required=False,
        empty_label="Any registration",
        error_messages={"invalid_choice": "That registration does not exist (any more)."},
    )
    subject_type = forms.ChoiceField(
        required=False,
        label="Subject type",
        choices=[("", "Any subject"), *((name, name) for name in selectors.SUBJECT_TYPES)],
    )
    # Set by the "all runs of this orchestrator" links; not typed by hand.
    subject_id = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    subject = forms.CharField(
        required=False,
        max_length=300,
        label="Subject",
        widget=forms.TextInput(attrs={"placeholder": "name or id", "type": "search"}),
    )
    page = forms.IntegerField(required=False, min_value=1, max_value=100_000)

    @property
    def page_number(self) -> int:
        return self.cleaned_data.get("page") or 1

    def filters(self) -> dict[str, Any]:
        data = self.cleaned_data
        registration = data.get("registration")
        return {
            "state": data.get("state") or "",
            "kind": data.get("kind") or "",
            "registration_id": registration.pk if registration is not None else None,
            "subject_type": data.get("subject_type") or "",
            "subject_id": data.get("subject_id") or "",
            "subject": (data.get("subject") or "").strip(),
        }

    def is_filtered(self) -> bool:
        return any(value for value in self.filters().values())


def subject_url(subject_type: str, subject_id: str) -> str:
    """The console page of a run's subject, or "" when it has none."""
    name = _SUBJECT_PAGES.get(subject_type)
    if name is None:
        return ""
    try:
        return reverse(name, args=[subject_id])
    except NoReverseMatch:  # an id of another shape than the page takes
        return ""


def with_subject_urls(runs: Iterable[HandlerRun]) -> list[HandlerRun]:
    shown = list(runs)
    for run in shown:
        run.subject_url = subject_url(run.subject_type, run.subject_id)  # type: ignore[attr-defined]
    return shown


def _pretty(value: Any) -> str:
    """JSON for a <pre>; the template escapes it."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


# --- Runs ----------------------------------------------------------------------------


@login_required
@require_GET
@permission_required("workflows.view_handlerrun", raise_exception=True)
def run_list(request: HttpRequest) -> HttpResponse:
    form = RunFilterForm(request.GET)
    context: dict[str, Any] = {"form": form, "page": None}
    if form.is_valid():
        runs = selectors.runs_filtered(**form.filters())
        page = slice_page(runs, number=form.page_number, size=RUNS_PER_PAGE)
        with_subject_urls(page.object_list)
        context["page"] = page
        context["filtered"] = form.is_filtered()
    return render(request, "console/runs/list.html", context)


@login_required
@require_GET
@permission_required("workflows.view_handlerrun", raise_exception=True)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(selectors.run_detail_queryset(), pk=pk)
    return render(
        request,
        "console/runs/detail.html",
        {
            "run": run,
            "subject_url": subject_url(run.subject_type, run.subject_id),
            "inputs_json": _pretty(run.inputs),
            "output_json": _pretty(run.output),
            "event_data_json": _pretty(run.event.data) if run.event is not None else "",
        },
    )


@login_required
@require_GET
@permission_required("workflows.view_handlerrun", raise_exception=True)
def run_subject(request: HttpRequest, subject_type: str, subject_id: str) -> HttpResponse:
    """The newest runs about one subject: the "Handler runs" section of its page (htmx)."""
    runs = selectors.runs_for_subject(
        subject_type=subject_type, subject_id=subject_id, limit=SUBJECT_RUNS_SHOWN
    )
    return render(
        request,
        "console/runs/_subject_runs.html",
        {
            "runs": runs[:SUBJECT_RUNS_SHOWN],
            "more": len(runs) > SUBJECT_RUNS_SHOWN,
            "subject_type": subject_type,
            "subject_id": subject_id,
        },
    )


# --- Registrations -------------------------------------------------------------------


@login_required
@require_GET
@permission_required("workflows.view_handlerregistration", raise_exception=True)
def registration_list(request: HttpRequest) -> HttpResponse:
    registrations = list(selectors.registrations_with_last_run())
    for registration in registrations:
        registration.class_status = selectors.class_status(registration.handler)  # type: ignore[attr-defined]
    return render(request, "console/runs/registrations.html", {"registrations": registrations})


@login_required
@require_GET
@permission_required("workflows.view_handlerregistration", raise_exception=True)
def registration_detail(request: HttpRequest, pk: int) -> HttpResponse:
    registration = get_object_or_404(selectors.registrations_with_last_run(), pk=pk)
    context: dict[str, Any] = {
        "summary": selectors.registration_summary(registration),
        "registration": registration,
    }
    if request.user.has_perm("workflows.view_handlerrun"):
        runs = list(
            selectors.runs_filtered(registration_id=registration.pk)[: REGISTRATION_RUNS_SHOWN + 1]
        )
        context["runs"] = with_subject_urls(runs[:REGISTRATION_RUNS_SHOWN])
        context["more_runs"] = len(runs) > REGISTRATION_RUNS_SHOWN
    return render(request, "console/runs/registration.html", context)
