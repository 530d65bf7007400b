"""Who asked for a job: the actor or handler registration recorded on every job opened."""

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from certyard.workflows.models import HandlerRegistration


@dataclass(frozen=True)
class _Asker:
    detail: str
    registration_id: int | None


_asker: ContextVar[_Asker | None] = ContextVar("certyard_job_asker", default=None)


@contextlib.contextmanager
def job_source_context(*, detail: str, registration_id: int | None = None) -> Iterator[None]:
    """Jobs opened inside this block record ``detail`` (and the handler registration) as
    their ``source_detail`` when their caller names none.

    For work done on someone's behalf through other apps' services, which know nothing of
    provenance: a handler's ``renew_and_replace`` queues jobs deep in deployment.
    """
    token = _asker.set(_Asker(str(detail), registration_id))
    try:
        yield
    finally:
        _asker.reset(token)


def job_source_detail(actor: Any = None, given: str = "") -> str:
    """Who asked for a job, as recorded in ``Job.source_detail`` (at most 200 characters).

    ``given`` when not empty; else the enclosing ``job_source_context``; else, for a person
    calling through the API with a token, the token's name and prefix and its user
    (``ApiTokenAuthentication`` leaves the token on the user as ``api_token``); else the
    person's user name; else empty.
    """
    if not given and (asker := _asker.get()) is not None:
        given = asker.detail
    if not given and getattr(actor, "pk", None) is not None:
        name = actor.get_username()
        token = getattr(actor, "api_token", None)
        given = f"token {token.name} ({token.token_key}…) of {name}" if token is not None else name
    return str(given or "")[:200]


def registration_id_of(given: Any) -> int | None:
    if given is None and (asker := _asker.get()) is not None:
        given = asker.registration_id
    if given is None:
        return None
    registration = HandlerRegistration.objects.filter(pk=given).values_list("pk", flat=True)
    return registration.first()
