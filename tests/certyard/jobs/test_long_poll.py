"""The agent's long poll on the event loop: woken by work, ended by a newer poll or by its
agent going away, and never leasing a job to a poll that is no longer there.

These drive the ASGI application the web server runs (``certyard.asgi``): the long-poll
handoff in front of the thread pool that serves Django's requests. The poll's first try
runs on a pool thread; a poll that must wait leaves Django and waits on the event loop,
its database work in the loop's thread pool, on connections of its own: the tests commit
what those must see (transactional tests).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from rest_framework.test import APIClient

from certyard.jobs.api.long_poll_asgi import LongPollHandoff
from certyard.jobs.api.waiting_room import waiting_room
from certyard.jobs.models import AgentPoll, Job, JobHistory
from certyard.jobs.services import job_inventory_request
from certyard.run.sync_requests import SyncRequests
from tests.certyard.conftest import AGENT, error_of

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


_served_by: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _entry_point_for_the_test() -> Iterator[None]:
    """The web server's composition (certyard.asgi), with one pool thread, whose
    database connection is closed before the test database goes."""
    pool = SyncRequests(WSGIHandler(), threads=1, max_memory_body=1 << 20)
    _served_by["app"] = LongPollHandoff(pool)
    yield
    _served_by.clear()
    pool._executor.submit(connections.close_all).result()
    pool._executor.shutdown()


def _entry_point() -> Any:
    return _served_by["app"]


@pytest.fixture(autouse=True)
def _quick_ticks(settings: Any) -> Iterator[None]:
    settings.CERTYARD_POLL_TICK_SECONDS = 0.05
    yield
    # Each test's event loop had its own pool threads, gone now; their database
    # connections close when collected (PostgreSQL would not drop a test database in use).
    gc.collect()


def _bearer(registered: Any) -> str:
    answer = APIClient().post(f"{AGENT}session", registered.assertion(), format="json")
    assert answer.status_code == 200, answer.content
    return f"Bearer {answer.json()['token']}"


class _Answer:
    """What the ASGI application sent, read as a test client's answer."""

    def __init__(self, client: _AsgiClient) -> None:
        self.status_code = client.status
        self.content = client.body
        self._headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in client.headers.items()
        }

    def __getitem__(self, name: str) -> str:
        return self._headers[name.lower()]

    def json(self) -> Any:
        return json.loads(self.content)


async def _poll(bearer: str, wait: int) -> _Answer:
    client = _AsgiClient(_entry_point(), bearer, wait)
    await client.run()
    return _Answer(client)


async def _until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await sync_to_async(predicate)():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_waiting_poll_is_answered_when_a_job_arrives(agent, store) -> None:
    bearer = _bearer(agent)

    async def scenario() -> Any:
        poll = asyncio.ensure_future(_poll(bearer, 30))
        await _until(lambda: AgentPoll.objects.filter(orchestrator=agent.orchestrator).exists())
        assert not poll.done()
        await sync_to_async(job_inventory_request)(store=store, source=Job.Source.API)
        return await asyncio.wait_for(poll, timeout=40)

    answer = async_to_sync(scenario)()

    # A poll whose wait ran out answers 204 without looking again: a 200 means the job
    # woke it.
    assert answer.status_code == 200, answer.content
    job = Job.objects.get(store=store)
    assert answer.json()["id"] == str(job.pk) and answer.json()["attempt"] == 1
    assert job.state == Job.State.LEASED and job.picked_up_at is None


def test_a_poll_with_nothing_to_do_answers_204_when_its_wait_ends(agent, store) -> None:
    bearer = _bearer(agent)
    started = time.monotonic()

    answer = async_to_sync(_poll)(bearer, 1)

    assert answer.status_code == 204
    assert time.monotonic() - started >= 0.7  # up to 30% short: jitter against herds


def test_a_newer_poll_ends_the_older_one(agent, store) -> None:
    bearer = _bearer(agent)

    async def scenario() -> tuple[Any, Any]:
        older = asyncio.ensure_future(_poll(bearer, 20))
        await _until(lambda: AgentPoll.objects.filter(orchestrator=agent.orchestrator).exists())
        newer = asyncio.ensure_future(_poll(bearer, 20))
        older_answer = await asyncio.wait_for(older, timeout=30)
        # The job goes to the newer poll, the one the agent is listening on.
        await sync_to_async(job_inventory_request)(store=store, source=Job.Source.API)
        return older_answer, await asyncio.wait_for(newer, timeout=30)

    older_answer, newer_answer = async_to_sync(scenario)()

    assert older_answer.status_code == 204
    assert newer_answer.status_code == 200
    assert newer_answer.json()["id"] == str(Job.objects.get(store=store).pk)


def test_a_poll_replaced_on_another_web_process_ends(agent, store) -> None:
    """Another process's newer poll shows as a newer poll id in the database."""
    bearer = _bearer(agent)

    async def scenario() -> Any:
        poll = asyncio.ensure_future(_poll(bearer, 20))
        await _until(lambda: AgentPoll.objects.filter(orchestrator=agent.orchestrator).exists())
        await sync_to_async(_poll_opened_elsewhere)(agent.orchestrator)
        await sync_to_async(job_inventory_request)(store=store, source=Job.Source.API)
        return await asyncio.wait_for(poll, timeout=30)

    answer = async_to_sync(scenario)()

    assert answer.status_code == 204
    job = Job.objects.get(store=store)
    assert job.state == Job.State.PENDING and job.attempts == 0  # kept for the newer poll


def _poll_opened_elsewhere(orchestrator: Any) -> None:
    import uuid

    AgentPoll.objects.filter(orchestrator=orchestrator).update(poll_id=uuid.uuid4())


def test_a_poll_whose_agent_went_away_leases_nothing(agent, store) -> None:
    client = _AsgiClient(_entry_point(), _bearer(agent), wait=20)

    async def scenario() -> None:
        poll = asyncio.ensure_future(client.run())
        await _until(lambda: AgentPoll.objects.filter(orchestrator=agent.orchestrator).exists())
        client.gone.set()  # the agent disconnects
        await asyncio.wait_for(poll, timeout=30)
        await sync_to_async(job_inventory_request)(store=store, source=Job.Source.API)
        await asyncio.sleep(0.3)  # several ticks

    async_to_sync(scenario)()

    assert client.sent == []
    job = Job.objects.get(store=store)
    assert job.state == Job.State.PENDING and job.attempts == 0
    assert not JobHistory.objects.exists()


def test_the_waiting_room_lets_go_of_every_poll(agent, store) -> None:
    bearer = _bearer(agent)

    async def scenario() -> int:
        await _poll(bearer, 1)
        return waiting_room(asgi=True).waiting

    assert async_to_sync(scenario)() == 0


@pytest.mark.parametrize("wait", ["soon", "1.5", ""])
def test_a_bad_wait_is_a_400(agent, wait: str) -> None:
    answer = APIClient().get(f"{AGENT}jobs/next", {"wait": wait}, HTTP_AUTHORIZATION=_bearer(agent))

    assert answer.status_code == 400
    assert "wait" in error_of(answer)["message"]


def test_a_poll_without_a_session_is_a_401(db) -> None:
    client = _AsgiClient(_entry_point(), None, wait=5)
    async_to_sync(client.run)()
    answer = _Answer(client)

    assert answer.status_code == 401
    assert answer["WWW-Authenticate"].startswith("Bearer")
    assert error_of(answer)["code"] == "not_authenticated"


def test_a_poll_of_an_orchestrator_disapproved_while_it_waits_is_a_403(agent, store) -> None:
    from django.utils import timezone

    from certyard.fleet.services import orchestrator_disapprove

    bearer = _bearer(agent)

    def disapproved_with_a_job() -> None:
        orchestrator_disapprove(orchestrator=agent.orchestrator, actor=None)
        # Written straight to the table: the services open no job for a disapproved one.
        Job.objects.create(
            type="inventory",
            store=store,
            orchestrator=agent.orchestrator,
            available_at=timezone.now(),
        )

    async def scenario() -> Any:
        poll = asyncio.ensure_future(_poll(bearer, 20))
        await _until(lambda: AgentPoll.objects.filter(orchestrator=agent.orchestrator).exists())
        await sync_to_async(disapproved_with_a_job)()
        return await asyncio.wait_for(poll, timeout=30)

    answer = async_to_sync(scenario)()

    assert answer.status_code == 403
    assert error_of(answer)["code"] == "not_approved"
    assert Job.objects.get(store=store).state == Job.State.PENDING


def test_a_poll_of_an_orchestrator_deleted_while_it_waits_ends_and_the_next_is_a_401(
    agent,
) -> None:
    bearer = _bearer(agent)

    async def scenario() -> tuple[Any, Any]:
        poll = asyncio.ensure_future(_poll(bearer, 20))
        await _until(lambda: AgentPoll.objects.filter(orchestrator=agent.orchestrator).exists())
        await sync_to_async(agent.orchestrator.delete)()
        return await asyncio.wait_for(poll, timeout=30), await _poll(bearer, 1)

    ended, next_poll = async_to_sync(scenario)()

    assert ended.status_code == 204
    assert next_poll.status_code == 401
    assert error_of(next_poll)["code"] == "authentication_failed"


# --- The ASGI entry point: a waiting poll leaves Django and waits in the wrapper ----------


class _AsgiClient:
    """One request straight to an ASGI application, as uvicorn makes it."""

    def __init__(self, app: Any, bearer: str | None, wait: int) -> None:
        self.app = app
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"{AGENT}jobs/next",
            "raw_path": f"{AGENT}jobs/next".encode(),
            "query_string": f"wait={wait}".encode(),
            "root_path": "",
            "headers": [
                (b"host", b"localhost"),
                *([(b"authorization", bearer.encode())] if bearer is not None else []),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        self.sent: list[dict] = []
        self.gone = asyncio.Event()
        self._body_read = False

    async def receive(self) -> dict:
        if not self._body_read:
            self._body_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    async def run(self) -> None:
        await self.app(self.scope, self.receive, self.send)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return {bytes(name).lower(): bytes(value) for name, value in start["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def test_through_the_entry_point_a_waiting_poll_gets_its_job_with_the_middlewares_headers(
    agent, store
) -> None:
    client = _AsgiClient(_entry_point(), _bearer(agent), wait=30)

    async def scenario() -> None:
        request = asyncio.ensure_future(client.run())
        await _until(lambda: AgentPoll.objects.filter(orchestrator=agent.orchestrator).exists())
        await asyncio.sleep(0.2)
        assert client.sent == []  # Django's answer is held back while the poll waits
        await sync_to_async(job_inventory_request)(store=store, source=Job.Source.API)
        await asyncio.wait_for(request, timeout=30)

    async_to_sync(scenario)()

    import json

    assert client.status == 200, client.body
    job = Job.objects.get(store=store)
    assert json.loads(client.body)["id"] == str(job.pk)
    assert client.headers[b"content-type"] == b"application/json"
    assert client.headers[b"content-length"] == str(len(client.body)).encode()
    assert client.headers[b"x-content-type-options"] == b"nosniff"  # from the middleware
    assert job.state == Job.State.LEASED


def test_through_the_entry_point_an_agent_that_goes_away_is_sent_nothing_and_leased_nothing(
    agent, store
) -> None:
    client = _AsgiClient(_entry_point(), _bearer(agent), wait=30)

    async def scenario() -> None:
        request = asyncio.ensure_future(client.run())
        await _until(lambda: AgentPoll.objects.filter(orchestrator=agent.orchestrator).exists())
        await asyncio.sleep(0.2)
        client.gone.set()  # the agent disconnects
        await asyncio.wait_for(request, timeout=30)
        await sync_to_async(job_inventory_request)(store=store, source=Job.Source.API)
        await asyncio.sleep(0.3)  # several ticks

    async_to_sync(scenario)()

    assert client.sent == []
    job = Job.objects.get(store=store)
    assert job.state == Job.State.PENDING and job.attempts == 0


def test_through_the_entry_point_a_poll_that_finds_a_job_at_once_passes_straight_through(
    agent, store
) -> None:
    job_inventory_request(store=store, source=Job.Source.API)
    client = _AsgiClient(_entry_point(), _bearer(agent), wait=30)

    async_to_sync(client.run)()

    assert client.status == 200
    assert b'"attempt":1' in client.body


def test_through_the_entry_point_a_refused_poll_passes_straight_through(db) -> None:
    client = _AsgiClient(_entry_point(), "Bearer not-a-session", wait=30)

    async_to_sync(client.run)()

    assert client.status == 401
    assert client.headers[b"www-authenticate"].startswith(b"Bearer")
    assert b'"authentication_failed"' in client.body


def test_the_entry_point_leaves_every_other_request_to_django(db) -> None:
    client = _AsgiClient(_entry_point(), "Bearer not-a-session", wait=30)
    client.scope = {**client.scope, "path": "/healthz", "raw_path": b"/healthz"}

    async_to_sync(client.run)()

    assert client.status == 200 and b'"ok"' in client.body
