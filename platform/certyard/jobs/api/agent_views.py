"""The jobs part of the agent API, under /api/orchestrator/v1/jobs/.

Thin views: check the input, call one service, answer. The contract is written
down in orchestrators/protocol.py.
"""

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from certyard.api.errors import ApiError, error_body, exception_handler
from certyard.errors import ServiceError
from certyard.fleet.api.agent_auth import AgentView, valid_body
from certyard.fleet.models import Orchestrator
from certyard.jobs import services
from certyard.jobs.api.agent_serializers import (
    CompleteSerializer,
    InventoryAnswerSerializer,
    InventoryChunkAnswerSerializer,
    InventoryChunkParamsSerializer,
    InventoryChunkSerializer,
    InventoryCommitSerializer,
    InventorySerializer,
    JobSummarySerializer,
)
from certyard.jobs.api.waiting_room import Wake, poll_work, waiting_room
from orchestrators.protocol import MAX_POLL_WAIT_SECONDS, JobOutcome

logger = logging.getLogger(__name__)

_TAG = ["orchestrator agent"]


@dataclass(frozen=True)
class _PendingPoll:
    """A poll that found no job at once and must wait for one."""

    orchestrator_id: str
    poll_id: str
    deadline: float


class NextJobView(AgentView):
    """The synchronous half of the long poll: authentication, checks, a first try.

    It answers at once when a job is there (or ``wait`` is 0); otherwise its answer
    carries a ``_PendingPoll``, which ``next_job`` hands to the ASGI entry point to wait
    for work on the event loop. This class also documents the endpoint in the OpenAPI
    schema.
    """

    @extend_schema(
        tags=_TAG,
        parameters=[
            OpenApiParameter(
                "wait",
                {"type": "integer", "minimum": 0, "maximum": MAX_POLL_WAIT_SECONDS},
                description=f"Seconds to wait for a job, 0 to {MAX_POLL_WAIT_SECONDS}. "
                "A newer poll by the same orchestrator ends this one (204).",
            )
        ],
        responses={200: JobSummarySerializer, 204: OpenApiResponse(description="No job.")},
        summary="Long-poll for the next job; it is leased to this orchestrator",
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("wait", "0")
        # Digits only, as the schema says: not "-1", "+5", " 5" or "5.0", which int() takes.
        if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_POLL_WAIT_SECONDS:
            raise ApiError(f"wait must be a whole number of seconds, 0 to {MAX_POLL_WAIT_SECONDS}")
        wait = int(raw)
        orchestrator = request.user
        if wait == 0:
            return _job_answer(services.job_lease_next(orchestrator=orchestrator))
        poll_id = services.agent_poll_open(orchestrator=orchestrator)
        job = services.job_lease_next(orchestrator=orchestrator, poll_id=poll_id)
        if job is not None:
            return _job_answer(job)
        # Up to 30% short of ``wait``, at random: agents that all polled at once (after a
        # restart of the platform) drift apart instead of coming back as one herd.
        waited = wait * random.uniform(0.7, 1.0)  # noqa: S311 (jitter, not a secret)
        answer = Response(status=status.HTTP_204_NO_CONTENT)
        answer.pending_poll = _PendingPoll(  # type: ignore[attr-defined]
            str(orchestrator.pk), str(poll_id), time.monotonic() + waited
        )
        return answer


def _job_answer(job: Any) -> Response:
    if job is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(JobSummarySerializer(job).data)


_next_job_first_try = NextJobView.as_view()


# The key under which the ASGI entry point (certyard.jobs.api.long_poll_asgi) offers to
# take a waiting poll off Django's hands.
HANDOFF_SCOPE_KEY = "certyard.long_poll_handoff"


def next_job(request: HttpRequest) -> HttpResponse:
    """``GET jobs/next``: a waiting agent holds a coroutine and a socket, not a thread.

    Under the ASGI server the request ends in Django at once and the poll waits in the
    ASGI entry point (``long_poll_asgi``), which keeps only the poll's few fields alive;
    elsewhere (the test client, ``runserver``) it waits here, holding its thread. When the
    agent goes away, its poll leaves the waiting room; a job leased in that very instant
    is offered again after the short pickup lease (``CERTYARD_JOB_PICKUP_SECONDS``),
    since the agent never fetches it.
    """
    answer = _next_job_first_try(request)
    pending: _PendingPoll | None = getattr(answer, "pending_poll", None)
    if pending is None:
        return answer
    handoff = (
        request.scope.get(HANDOFF_SCOPE_KEY)  # type: ignore[attr-defined]
        if isinstance(request, ASGIRequest)
        else request.META.get(HANDOFF_SCOPE_KEY)
    )
    if handoff is not None:
        handoff["pending"] = pending
        return answer  # held back by the entry point, which answers when the wait is over
    del answer
    return async_to_sync(job_waited_for)(pending, asgi=False)


async def job_waited_for(pending: _PendingPoll, *, asgi: bool) -> Response:
    """Wait until the poll's orchestrator gets a job or the wait is over: the answer."""
    room = waiting_room(asgi=asgi)
    while (remaining := pending.deadline - time.monotonic()) > 0:
        wake = await room.wait(
            orchestrator_id=pending.orchestrator_id,
            poll_id=pending.poll_id,
            timeout=remaining,
        )
        if wake is not Wake.WORK:
            break
        leased = await poll_work(_lease_for_poll, asgi=asgi)(pending)
        if leased is not None:
            return leased
    return _rendered(Response(status=status.HTTP_204_NO_CONTENT))


# What drf-spectacular documents and Django's CSRF check reads: the DRF view's.
next_job.cls = NextJobView  # type: ignore[attr-defined]
next_job.initkwargs = {}  # type: ignore[attr-defined]
next_job.csrf_exempt = True  # type: ignore[attr-defined]


def _lease_for_poll(pending: _PendingPoll) -> Response | None:
    """Lease a job to the waiting poll's orchestrator: its answer, or None for none."""
    try:
        orchestrator = Orchestrator.objects.filter(pk=pending.orchestrator_id).first()
        if orchestrator is None:  # deleted while it waited
            return _rendered(
                Response(
                    error_body("authentication_failed", "this orchestrator no longer exists"),
                    status=status.HTTP_401_UNAUTHORIZED,
                    headers={"WWW-Authenticate": 'Bearer realm="certyard-orchestrator"'},
                )
            )
        # A poll a newer one replaced leases nothing here; the waiting room ends it.
        job = services.job_lease_next(orchestrator=orchestrator, poll_id=pending.poll_id)
    except Exception as exc:
        # Disapproved or deleted while it waited: the same answers as a fresh request.
        answer = exception_handler(exc, {})
        if answer is None:
            raise
        return _rendered(answer)
    return None if job is None else _rendered(_job_answer(job))


def _rendered(answer: Response) -> Response:
    answer.accepted_renderer = JSONRenderer()
    answer.accepted_media_type = "application/json"
    answer.renderer_context = {}
    return answer


class JobConfigView(AgentView):
    error_responses = {409: "The job is not leased to this orchestrator now."}

    @extend_schema(tags=_TAG, responses={200: dict}, summary="The job's configuration")
    def get(self, request: Request, job_id: str) -> Response:
        return Response(services.job_configuration(orchestrator=request.user, job_id=job_id))


def _entries_of(request: Request) -> list[Any]:
    """The body's ``entries``, refused before any work when it is too large."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > settings.CERTYARD_INVENTORY_MAX_BYTES:
        raise ApiError(
            f"the inventory report is {length} bytes; the limit is "
            f"{settings.CERTYARD_INVENTORY_MAX_BYTES} (CERTYARD_INVENTORY_MAX_BYTES): "
            "send it in chunks",
            code="too_large",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    body: Any = request.data
    entries = body.get("entries") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise ApiError('the body must be {"entries": [...]}')
    if len(entries) > settings.CERTYARD_INVENTORY_MAX_ENTRIES:
        raise ApiError(
            f"the report has {len(entries)} entries; the limit is "
            f"{settings.CERTYARD_INVENTORY_MAX_ENTRIES} (CERTYARD_INVENTORY_MAX_ENTRIES): "
            "send it in chunks",
            code="too_large",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return entries


def _report_answer(report: services.InventoryReport) -> Response:
    """200 when every entry was recorded; 422 listing the rejected ones otherwise."""
    answer = {
        "job_id": str(report.job.pk),
        "duplicate": report.duplicate,
        **report.summary,
        "recorded": report.recorded,
    }
    message = report.rejection_message
    if message is None:
        return Response(answer)
    return Response(
        {
            **error_body("invalid_entries", message, rejected=report.summary["rejected"]),
            **answer,
        },
        status=status.HTTP_422_UNPROCESSABLE_ENTITY,
    )


def _guarded(request: Request, job_id: str, work: Callable[[], Response]) -> Response:
    """Run a report call; a platform failure is kept on the job's attempt, then answered
    as JSON, so the job's history names the platform, not the agent."""
    try:
        return work()
    except (APIException, ServiceError, Http404):
        raise  # answers of their own: the request was refused, not failed
    except Exception as exc:
        logger.exception("inventory report for job %s failed", job_id)
        reason = f"the platform failed to process a report ({type(exc).__name__})"
        try:
            services.job_report_errors_record_by_id(
                orchestrator=request.user,
                job_id=job_id,
                errors=[{"at": timezone.now().isoformat(), "error": reason}],
            )
        except Exception:
            logger.exception("could not record the failure on job %s", job_id)
        return Response(
            error_body("server_error", f"{reason}; send the report again"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )


def _attempt_of(request: Request) -> int | None:
    value = request.query_params.get("attempt")
    if value is None and isinstance(request.data, dict):
        value = request.data.get("attempt")
    if value is None:
        return None
    # A whole number as the schema types it: digits in the query, a JSON integer in the body
    # (not true, 1.5 or "1", which int() would take).
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError("attempt must be a whole number")
    if value < 1:
        raise ApiError("attempt must be 1 or more")
    return value


# The job's attempt the report is for, in the query or the body (agents send it in the body).
_ATTEMPT_PARAMETER = OpenApiParameter(
    "attempt",
    {"type": "integer", "minimum": 1},
    description="The job's attempt this report is for (or in the body); a report for an "
    "earlier attempt is refused (409 stale_attempt).",
)


class InventoryView(AgentView):
    error_responses = {413: "The report is over the size or entry limit: send it in chunks."}

    @extend_schema(
        tags=_TAG,
        request=InventorySerializer,
        parameters=[_ATTEMPT_PARAMETER],
        responses={200: InventoryAnswerSerializer, 422: InventoryAnswerSerializer},
        summary="Report what a store holds in one request (the whole store)",
    )
    def post(self, request: Request, job_id: str) -> Response:
        def work() -> Response:
            report = services.job_inventory_report(
                orchestrator=request.user,
                job_id=job_id,
                entries=_entries_of(request),
                attempt=_attempt_of(request),
            )
            return _report_answer(report)

        return _guarded(request, job_id, work)


class InventoryChunkView(AgentView):
    error_responses = {413: "The chunk is over the size or entry limit."}

    @extend_schema(
        tags=_TAG,
        request=InventoryChunkSerializer,
        responses={
            200: PolymorphicProxySerializer(
                component_name="InventoryChunkOrReportAnswer",
                serializers=[InventoryChunkAnswerSerializer, InventoryAnswerSerializer],
                resource_type_field_name=None,
                many=False,
            ),
            # A chunk sent again after its report was applied gets the report's answer.
            422: InventoryAnswerSerializer,
        },
        summary="Send one chunk of a report; commit when every chunk is sent",
    )
    def post(self, request: Request, job_id: str) -> Response:
        def work() -> Response:
            entries = _entries_of(request)
            data = valid_body(InventoryChunkParamsSerializer, request)
            staged = services.job_inventory_chunk(
                orchestrator=request.user,
                job_id=job_id,
                attempt=data.get("attempt"),
                sequence=data["sequence"],
                first_index=data["first_index"],
                entries=entries,
            )
            if isinstance(staged, services.InventoryReport):
                return _report_answer(staged)
            return Response(
                {
                    "job_id": job_id,
                    "sequence": data["sequence"],
                    "accepted": staged.accepted,
                    "new_certificates": staged.new_certificates,
                    "rejected": [asdict(r) for r in staged.rejected],
                    "unknown": staged.unknown,
                    "lease_expires_at": staged.lease_expires_at,
                }
            )

        return _guarded(request, job_id, work)


class InventoryCommitView(AgentView):
    @extend_schema(
        tags=_TAG,
        request=InventoryCommitSerializer,
        responses={200: InventoryAnswerSerializer, 422: InventoryAnswerSerializer},
        summary="Apply a report sent in chunks: the store's contents become what it says",
    )
    def post(self, request: Request, job_id: str) -> Response:
        def work() -> Response:
            data = valid_body(InventoryCommitSerializer, request)
            report = services.job_inventory_commit(
                orchestrator=request.user,
                job_id=job_id,
                attempt=data.get("attempt"),
                chunks=data["chunks"],
                new_certificates=data["new_certificates"],
                submission_errors=data["submission_errors"],
            )
            return _report_answer(report)

        return _guarded(request, job_id, work)


class CompleteView(AgentView):
    @extend_schema(
        tags=_TAG,
        request=CompleteSerializer,
        responses={200: dict},
        summary="Report how a job ended",
    )
    def post(self, request: Request, job_id: str) -> Response:
        data = valid_body(CompleteSerializer, request)
        job, duplicate = services.job_complete(
            orchestrator=request.user,
            job_id=job_id,
            outcome=JobOutcome(data["status"]),
            message=data["message"],
            attempt=data.get("attempt"),
            result=data.get("result"),
            final=bool(data.get("final")),
        )
        return Response(
            {
                "job_id": str(job.pk),
                "state": job.state,
                "acknowledged": True,
                "duplicate": duplicate,
            }
        )
