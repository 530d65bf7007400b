"""Reads of the jobs app."""

from collections.abc import Iterator
from typing import Any

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


# How far back a job's chain is followed (``retry_of``): a handler sees this many at most.
CHAIN_LIMIT = 20
_CHAIN_FIELDS = ("id", "type", "source", "source_detail", "state", "outcome", "retry_of_id")


def job_chain(job: Job, *, limit: int = CHAIN_LIMIT) -> list[dict[str, Any]]:
    """The jobs from the first of the job's chain (following ``retry_of`` back, at most
    ``limit`` jobs in all) to the job itself, oldest first: each
    ``{"id", "type", "source", "source_detail", "state", "outcome", "retry_of"}``."""
    links: list[dict[str, Any]] = []
    seen: set[str] = set()
    row: dict[str, Any] | None = {name: getattr(job, name) for name in _CHAIN_FIELDS}
    while row is not None and len(links) < limit and str(row["id"]) not in seen:
        seen.add(str(row["id"]))
        previous = row.pop("retry_of_id")
        links.append(
            {
                **{key: str(value) if key == "id" else value for key, value in row.items()},
                "retry_of": str(previous) if previous is not None else None,
            }
        )
        if previous is None:
            break
        row = Job.objects.filter(pk=previous).values(*_CHAIN_FIELDS).first()
    links.reverse()
    return links


def job_provenance(job: Job) -> dict[str, Any]:
    """Where the job came from, as ``job.completed`` events and job complete handlers get
    it: ``{"source", "source_detail", "retry_of", "chain"}`` (``chain`` as ``job_chain``)."""
    return {
        "source": job.source,
        "source_detail": job.source_detail,
        "retry_of": str(job.retry_of_id) if job.retry_of_id is not None else None,
        "chain": job_chain(job),
    }
