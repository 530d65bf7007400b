"""The ASGI entry point's part in the long poll: a waiting poll leaves Django at once.

Waiting inside Django would keep each poll's whole request alive for up to 30 s: the
handler's coroutines, the request and DRF's objects, and an idle thread that Django's
ASGI handler gives every request for its sync code. A thousand waiting polls made that
several hundred thousand objects per process, which every full pass of the garbage
collector walks, pausing the process for 200-330 ms (benchmarks/long_poll_load.py).

So ``LongPollHandoff`` wraps the ASGI application that serves Django's requests (the
thread pool of ``certyard.run.sync_requests``, which hands the scope's ``certyard.*``
keys to the view; Django's own ASGI handler works too): for ``GET jobs/next`` it offers
Django a handoff (a dict in the ASGI scope). When the view finds no job at once it leaves
its ``_PendingPoll`` there and answers; the wrapper holds that answer back, lets Django's
request end, waits in the waiting room with just the poll's fields, and then sends the
job (or 204) itself, with the headers Django's middleware gave the held answer. If the
agent disconnects meanwhile, the wait is cancelled and nothing is leased.
"""

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from certyard.jobs.api.agent_views import HANDOFF_SCOPE_KEY, job_waited_for
from orchestrators.protocol import API_PREFIX

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NEXT_JOB_PATH = f"{API_PREFIX}jobs/next"
# Headers of the held answer that the real answer replaces.
_REPLACED = {b"content-type", b"content-length"}


class LongPollHandoff:
    """Wraps the ASGI application serving Django; every other request passes straight
    through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != NEXT_JOB_PATH:
            await self.app(scope, receive, send)
            return
        handoff: dict[str, Any] = {}
        held: list[Message] = []

        async def hold_if_handed_off(message: Message) -> None:
            if "pending" in handoff:
                held.append(message)
            else:
                await send(message)

        await self.app({**scope, HANDOFF_SCOPE_KEY: handoff}, receive, hold_if_handed_off)
        pending = handoff.get("pending")
        if pending is None:
            return
        waiting = asyncio.ensure_future(job_waited_for(pending, asgi=True))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, gone):
                if not task.done():
                    task.cancel()
            await asyncio.gather(waiting, gone, return_exceptions=True)
        if not waiting.done() or waiting.cancelled():
            return  # the agent went away: nothing was sent for it, nothing is
        answer = waiting.result()
        body = answer.render().content if answer.status_code != 204 else b""
        # The ASGI spec wants header names lower-cased; Django sends them as it spells them.
        headers = [
            (bytes(name).lower(), bytes(value))
            for name, value in _start_of(held).get("headers", [])
            if bytes(name).lower() not in _REPLACED
        ]
        own = {name for name, _ in headers}
        for name, value in answer.headers.items():
            encoded = name.lower().encode("latin-1")
            if encoded not in own and encoded != b"content-length":
                headers.append((encoded, value.encode("latin-1")))
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        start = {"type": "http.response.start", "status": answer.status_code, "headers": headers}
        await send(start)
        await send({"type": "http.response.body", "body": body})


def _start_of(held: list[Message]) -> Message:
    return next((m for m in held if m.get("type") == "http.response.start"), {})


async def _disconnected(receive: Receive) -> None:
    """Return when the client goes away (the request's body was read by Django)."""
    while (await receive()).get("type") != "http.disconnect":
        pass
