"""Where agents' long polls wait for work, without a thread each.

Each event loop (one per web process under ASGI) keeps one ``WaitingRoom``: a dict of
the orchestrators waiting on it and a single ticker task. Every tick the ticker asks the
database, in one query for all of them, which waiting orchestrators have work, and wakes
only those; every few ticks it also checks that each poll is still its orchestrator's
newest (an agent that reconnected to another process ended this one). The cost of a
waiting agent is a coroutine and an idle socket; the database sees one cheap query per
process per tick however many agents wait.

Under ASGI the polls' database work runs in the event loop's thread pool, not in
Django's one sync thread, which serves every sync view (the console): a herd of polls
must not queue in front of a person's page. Under WSGI (the test client, ``runserver``)
each request runs on a loop and thread of its own, so the work stays on that thread
(the test's transaction included), and the ticker lives as long as the one poll that
started it.
"""

import asyncio
import enum
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from certyard.jobs.selectors import agent_polls_current, orchestrators_with_work

logger = logging.getLogger(__name__)

# Superseded polls are looked for less often than work: they are never urgent.
_SUPERSEDED_CHECK_SECONDS = 1.0


class Wake(enum.Enum):
    WORK = "work"  # the orchestrator may have a job: try to lease it
    SUPERSEDED = "superseded"  # the agent opened a newer poll: answer this one at once
    TIMEOUT = "timeout"  # the poll's wait is over


@dataclass(eq=False)
class _Waiter:
    orchestrator_id: str
    poll_id: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    reason: Wake = Wake.TIMEOUT

    def wake(self, reason: Wake) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


P = ParamSpec("P")
R = TypeVar("R")


def poll_work(func: Callable[P, R], *, asgi: bool) -> Callable[P, Awaitable[R]]:
    """``func`` as an awaitable: in the loop's thread pool under ASGI (with a fresh or
    healthy database connection, as Django gives each request), else on the request's
    own sync thread."""
    if not asgi:
        return sync_to_async(func)

    def healthy_connection(*args: P.args, **kwargs: P.kwargs) -> R:
        # Each pool thread keeps its connection from one poll to the next (a few per
        # process, whatever CONN_MAX_AGE says for requests), and drops a broken one.
        for connection in connections.all(initialized_only=True):
            connection.close_at = None
            connection.close_if_unusable_or_obsolete()
        return func(*args, **kwargs)

    return sync_to_async(healthy_connection, thread_sensitive=False)


class WaitingRoom:
    """The long polls waiting on one event loop, woken by one ticker."""

    def __init__(self, *, asgi: bool) -> None:
        self._asgi = asgi
        self._waiters: dict[str, _Waiter] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._superseded_checked_at = 0.0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def wait(self, *, orchestrator_id: str, poll_id: str, timeout: float) -> Wake:
        """Wait until the orchestrator may have work, a newer poll ends this one, or
        ``timeout`` seconds pass. Cancelling the caller (its client went away) leaves
        the room at once."""
        older = self._waiters.get(orchestrator_id)
        if older is not None:
            older.wake(Wake.SUPERSEDED)
        waiter = _Waiter(orchestrator_id, poll_id)
        self._waiters[orchestrator_id] = waiter
        self._ticker_ensure()
        try:
            await asyncio.wait_for(waiter.event.wait(), timeout=max(0.0, timeout))
        except TimeoutError:
            return Wake.TIMEOUT
        finally:
            if self._waiters.get(orchestrator_id) is waiter:
                del self._waiters[orchestrator_id]
            await self._ticker_stop_if_idle()
        return waiter.reason

    def _ticker_ensure(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick_forever(), name="certyard-waiting-room"
            )

    async def _ticker_stop_if_idle(self) -> None:
        ticker = self._ticker
        if self._waiters or ticker is None or ticker is asyncio.current_task():
            return
        self._ticker = None
        ticker.cancel()
        # Gone before the loop closes: no "task destroyed while pending" under WSGI.
        await asyncio.gather(ticker, return_exceptions=True)

    async def _tick_forever(self) -> None:
        while self._waiters:
            await asyncio.sleep(settings.CERTYARD_POLL_TICK_SECONDS)
            waiters = list(self._waiters.values())
            if not waiters:
                break
            ids = [w.orchestrator_id for w in waiters]
            check_superseded = (
                time.monotonic() - self._superseded_checked_at >= _SUPERSEDED_CHECK_SECONDS
            )
            try:
                with_work = await poll_work(_with_work, asgi=self._asgi)(ids)
                current = (
                    await poll_work(_current_polls, asgi=self._asgi)(ids)
                    if check_superseded
                    else None
                )
                if check_superseded:
                    self._superseded_checked_at = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup: the next tick tries again
                logger.exception("the waiting room could not look for work")
                continue
            for waiter in waiters:
                if current is not None and current.get(waiter.orchestrator_id) != waiter.poll_id:
                    waiter.wake(Wake.SUPERSEDED)
                elif waiter.orchestrator_id in with_work:
                    waiter.wake(Wake.WORK)


def _with_work(ids: list[str]) -> set[str]:
    return orchestrators_with_work(orchestrator_ids=ids)


def _current_polls(ids: list[str]) -> dict[str, str]:
    return agent_polls_current(orchestrator_ids=ids)


_rooms: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WaitingRoom]" = (
    weakref.WeakKeyDictionary()
)


def waiting_room(*, asgi: bool) -> WaitingRoom:
    """The running event loop's waiting room."""
    loop = asyncio.get_running_loop()
    room = _rooms.get(loop)
    if room is None:
        room = _rooms[loop] = WaitingRoom(asgi=asgi)
    return room
