"""The platform's scheduled work on the API: list it, and run a task now.

``GET /api/v1/scheduled-tasks/`` and ``POST /api/v1/scheduled-tasks/<name>/run/`` (202: the
django-q2 task id; the cluster runs it as its schedule would). For superusers, and staff
members with ``workflows.run_scheduled_task`` (:func:`scheduled_task_may_run`).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from certyard.api.serializers import Serializer
from certyard.workflows.scheduled import (
    ScheduledTaskState,
    TaskRunSummary,
    actor_label,
    scheduled_task_enqueue,
    scheduled_task_get,
    scheduled_task_may_run,
    scheduled_task_states,
)


class TaskRunSerializer(Serializer):
    task_id = serializers.CharField(help_text="The django-q2 task's id.")
    via = serializers.ChoiceField(choices=["schedule", "run now"])
    name = serializers.CharField(help_text="The django-q2 task's name.")
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    success = serializers.BooleanField()
    result = serializers.JSONField(
        allow_null=True, help_text="What a successful run returned (counts, ids); else null."
    )
    error = serializers.CharField(help_text="The last line of a failure; empty on success.")
    actor = serializers.CharField(
        help_text="Who ran it: the user name (or the command's) of a run-now, or schedule."
    )


class ScheduledTaskSerializer(Serializer):
    name = serializers.CharField(help_text="What to run it by, e.g. expiry-scan.")
    label = serializers.CharField()
    description = serializers.CharField()
    events = serializers.ListField(
        child=serializers.CharField(), help_text="The event kinds running it can emit."
    )
    schedule = serializers.CharField(
        allow_null=True, help_text="The django-q2 schedule's name; null: it runs only when asked."
    )
    schedule_type = serializers.CharField(
        help_text="The django-q2 schedule type (I: every N minutes, H: hourly, D: daily, …); "
        "empty without a schedule."
    )
    schedule_label = serializers.CharField(help_text="e.g. every 1 minute, daily.")
    next_run = serializers.DateTimeField(allow_null=True)
    last_run = TaskRunSerializer(
        allow_null=True, help_text="The later of the last scheduled run and the last run-now."
    )

    @staticmethod
    def row(state: ScheduledTaskState) -> dict[str, Any]:
        last: TaskRunSummary | None = state.last_run
        return {
            "name": state.task.name,
            "label": state.task.label,
            "description": state.task.description,
            "events": list(state.task.events),
            "schedule": state.task.schedule_name or None,
            "schedule_type": state.schedule_type,
            "schedule_label": state.schedule_label,
            "next_run": state.next_run,
            "last_run": None if last is None else vars(last),
        }


class ScheduledTaskQueuedSerializer(Serializer):
    task = serializers.CharField(help_text="The scheduled task's name.")
    task_id = serializers.CharField(help_text="The django-q2 task id of this run.")
    actor = serializers.CharField(help_text="Who ran it (the caller's user name).")


class _ScheduledTaskView(APIView):
    permission_classes = [IsAuthenticated]  # and scheduled_task_may_run, checked below

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if not scheduled_task_may_run(request.user):
            self.permission_denied(request, message="you may not run scheduled tasks")


class ScheduledTaskListView(_ScheduledTaskView):
    """``GET /api/v1/scheduled-tasks/``: every scheduled task, its schedule and last run."""

    # Like every operation: a query string with a NUL is refused before the view runs.
    error_responses = {400: "The request is malformed (a NUL character in the query string)."}

    @extend_schema(
        responses={200: ScheduledTaskSerializer(many=True)},
        operation_id="scheduled_tasks_list",
        tags=["scheduled-tasks"],
    )
    def get(self, request: Request) -> Response:
        """The platform's scheduled tasks (superusers and staff with
        workflows.run_scheduled_task)."""
        rows = [ScheduledTaskSerializer.row(state) for state in scheduled_task_states()]
        return Response(ScheduledTaskSerializer(rows, many=True).data)


class ScheduledTaskRunView(_ScheduledTaskView):
    """``POST /api/v1/scheduled-tasks/<name>/run/``: hand the task to the cluster now."""

    error_responses = {409: None}  # queued whatever the state; the task may refuse later

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                "name",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="The task's name, e.g. expiry-scan (see the list).",
            )
        ],
        responses={
            202: OpenApiResponse(
                ScheduledTaskQueuedSerializer,
                description="Queued: a worker runs it now; its result is the django-q2 "
                "task's (and the list's last_run).",
            )
        },
        operation_id="scheduled_tasks_run",
        tags=["scheduled-tasks"],
    )
    def post(self, request: Request, name: str) -> Response:
        """Run a scheduled task now, in the background (404 for an unknown name)."""
        task = scheduled_task_get(name)
        task_id = scheduled_task_enqueue(task.name, actor=request.user)
        body = {"task": task.name, "task_id": task_id, "actor": actor_label(request.user)}
        return Response(ScheduledTaskQueuedSerializer(body).data, status=status.HTTP_202_ACCEPTED)
