"""The console's *Scheduled tasks* page: the platform's scheduled work, run now.

For superusers and staff members with ``workflows.run_scheduled_task``
(:func:`~certyard.workflows.scheduled.scheduled_task_may_run`); anyone else gets 403, as
on every console page a permission guards. *Run now* is a POST with its CSRF token: it
hands the task to the django-q2 cluster and says so in a flash message.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from certyard.workflows.scheduled import (
    ScheduledTaskUnknown,
    scheduled_task_enqueue,
    scheduled_task_get,
    scheduled_task_may_run,
    scheduled_task_states,
)


def _check(request: HttpRequest) -> None:
    if not scheduled_task_may_run(request.user):
        raise PermissionDenied("you may not run scheduled tasks")


@login_required
@require_GET
def scheduled_task_list(request: HttpRequest) -> HttpResponse:
    _check(request)
    return render(request, "console/scheduled/list.html", {"states": scheduled_task_states()})


@login_required
@require_POST
def scheduled_task_run_now(request: HttpRequest, name: str) -> HttpResponse:
    _check(request)
    try:
        task = scheduled_task_get(name)
    except ScheduledTaskUnknown as unknown:
        messages.error(request, unknown.message)
        return redirect("console:scheduled-task-list")
    task_id = scheduled_task_enqueue(task.name, actor=request.user)
    messages.success(
        request,
        f"{task.label} queued (task {task_id}): a worker runs it now; "
        "refresh this page to see its result.",
    )
    return redirect("console:scheduled-task-list")
