"""Reads of the jobs app."""

from collections.abc import Iterator

from django.db.models import Q, QuerySet
from django.utils import timezone

from certyard.fleet.models import Orchestrator
from certyard.jobs.models import AgentPoll, Job


def job_list() -> QuerySet[Job]:
    return Job.objects.select_related("store", "store__store_type", "orchestrator")


def job_get_for_orchestrator(*, orchestrator: Orchestrator, job_id: str) -> Job | None:
    """The job if it is this orchestrator's; another's job is as good as absent."""
    return (
        Job.objects.select_related("store", "store__store_type")
        .filter(pk=job_id, orchestrator=orchestrator)
        .first()
    )


# At most this many ids in one IN (...): well under every database's parameter limit.
_IDS_PER_QUERY = 500


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _IDS_PER_QUERY):
        yield ids[start : start + _IDS_PER_QUERY]


def orchestrators_with_work(*, orchestrator_ids: list[str]) -> set[str]:
    """Which of these orchestrators have a job to lease now: one available, or one whose
    lease lapsed (it is offered again on the next lease)."""
    now = timezone.now()
    found: set[str] = set()
    for chunk in _chunks(orchestrator_ids):
        rows = (
            Job.objects.filter(orchestrator_id__in=chunk)
            .filter(
                Q(state=Job.State.PENDING, available_at__lte=now)
                | Q(state=Job.State.LEASED, lease_expires_at__lt=now)
            )
            .values_list("orchestrator_id", flat=True)
            .distinct()
        )
        found.update(str(pk) for pk in rows)
    return found


def agent_polls_current(*, orchestrator_ids: list[str]) -> dict[str, str]:
    """The newest open poll of each of these orchestrators: ``{orchestrator_id: poll_id}``."""
    current: dict[str, str] = {}
    for chunk in _chunks(orchestrator_ids):
        rows = AgentPoll.objects.filter(orchestrator_id__in=chunk).values_list(
            "orchestrator_id", "poll_id"
        )
        current.update((str(orchestrator), str(poll)) for orchestrator, poll in rows)
    return current
