"""Handing an event's queued runs to the worker: the outbox's other half.

:func:`certyard.workflows.services.events_emit` writes the runs in the emitting
transaction and calls :func:`enqueue_event_runs` after commit; the maintenance task
hands over again whatever a crash left behind. Both import it from here, so the services
never import the tasks (nor the tasks the services).
"""

from __future__ import annotations

from django.db.models import Sum
from django.utils import timezone
from django_q.tasks import async_task

from certyard.workflows.models import HandlerRun

# django-q2 kills a task that outlives its timeout; an event's handlers run one after
# another, so its task may take their timeouts added up, within this ceiling.
TASK_TIMEOUT_CEILING = 3_000


def enqueue_event_runs(event_ids: list[int]) -> int:
    """Hand events' queued runs to the worker; the number of tasks.

    An event's runs go in one task, in order. Events are grouped so that an expiry scan
    emitting thousands of events costs tens of tasks, each within the task time ceiling.
    """
    runs = HandlerRun.objects.filter(event_id__in=event_ids, state=HandlerRun.State.QUEUED)
    budgets = dict(
        runs.order_by().values_list("event_id").annotate(total=Sum("registration__timeout_seconds"))
    )
    runs.update(enqueued_at=timezone.now())
    groups: list[tuple[list[int], int]] = []
    for event_id in event_ids:
        budget = budgets.get(event_id) or 0
        if not groups or groups[-1][1] + budget > TASK_TIMEOUT_CEILING - 60:
            groups.append(([], 0))
        events, total = groups[-1]
        events.append(event_id)
        groups[-1] = (events, total + budget)
    for events, total in groups:
        async_task(
            "certyard.workflows.tasks.event_runs",
            events,
            timeout=min(total + 60, TASK_TIMEOUT_CEILING),
            task_name=f"handlers of {len(events)} event(s) from {events[0]}",
        )
    return len(groups)
