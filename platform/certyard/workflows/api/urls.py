"""The workflows API's routes, included in /api/v1/ by ``certyard.urls``."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from certyard.workflows.api.scheduled import ScheduledTaskListView, ScheduledTaskRunView
from certyard.workflows.api.views import HandlerRegistrationViewSet, HandlerRunViewSet

router = SimpleRouter(trailing_slash=True)
router.register(
    "handler-registrations", HandlerRegistrationViewSet, basename="handler-registration"
)
router.register("handler-runs", HandlerRunViewSet, basename="handler-run")

urlpatterns = [
    *router.urls,
    path("scheduled-tasks/", ScheduledTaskListView.as_view(), name="scheduled-task-list"),
    path(
        "scheduled-tasks/<str:name>/run/",
        ScheduledTaskRunView.as_view(),
        name="scheduled-task-run",
    ),
]
