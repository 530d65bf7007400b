"""The one door for calling extension code: every handler call in the platform goes here.

Event and job complete handlers, registration handlers, metadata generators and CA
gateways all reach their code the same way (pluggy's ``_callers.py`` is the model): the
registration is resolved to an instance of its declared contract
(:func:`handler_instance`: the class is looked up, its parameters checked with the
checker the admin form and the save service use, then instantiated), the instance is
called in a thread with its timeout (:func:`handler_call`), the ending is classified into
one :class:`Outcome`, and the run is recorded on a :class:`HandlerRun`
(:func:`run_new`, :func:`run_end`, :func:`runs_save`).

What differs between the kinds is said by arguments, not by copies: a shared time budget
(:class:`Budget`, registration handlers), a check of the answer (``answer``), the
sentence of a timeout (``timeout_text``, metadata batches), and whether the run record
is saved now or by the caller within its own transaction (metadata batches, registrations).

This module imports neither the workflows services nor the tasks, so anything may import it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from django.db import close_old_connections
from django.utils import timezone

from certyard.secret_references import SecretUnavailable, platform_secrets
from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
from handlers.base import Handler, HandlerError
from handlers.parameters import ParameterError, parameters_check
from handlers.registry import handler_class

H = TypeVar("H", bound=Handler)

OUTPUT_LIMIT = 64 * 1024
TEXT_LIMIT = 16 * 1024
DEFAULT_TIMEOUT_TEXT = "timed out after {seconds:g} s"


class Outcome(StrEnum):
    """How one call of extension code ended; recorded on a failed run as ``output.outcome``."""

    OK = "ok"
    PERMANENT_ERROR = "permanent_error"  # HandlerError(permanent=True): retrying cannot help
    RETRYABLE_ERROR = "retryable_error"  # any other exception, or a HandlerError
    TIMED_OUT = "timed_out"  # past its timeout, or never asked because the budget was spent
    MISSING_CLASS = "missing_class"  # no class, a broken one, or not of the expected contract
    BAD_PARAMETERS = "bad_parameters"  # the stored config no longer passes the checker
    BAD_ANSWER = "bad_answer"  # returned what its contract does not allow

    @property
    def retryable(self) -> bool:
        return self in (Outcome.RETRYABLE_ERROR, Outcome.TIMED_OUT)


class HandlerTimedOut(Exception):
    """The call did not end within its timeout (its thread is left behind)."""


class BadAnswer(Exception):
    """Raised by an ``answer`` check: the value is not what the contract says."""


class Refused(Exception):
    """The handler could not be started: ``outcome`` says why, ``reason`` in a few words."""

    def __init__(self, outcome: Outcome, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.reason = reason or message


@dataclass(frozen=True, slots=True)
class Budget:
    """A time budget shared by several calls (the registration handlers of one agent):
    each call's timeout is cut to what is left, and a call past it is not made."""

    deadline: float  # time.monotonic()
    spent_text: str = "not asked: the time budget was spent"


@dataclass(slots=True)
class Invocation:
    """One call's classified ending: the (checked) answer, or the error and its sentence."""

    outcome: Outcome
    value: Any = None
    error: BaseException | None = None
    message: str = ""  # the sentence recorded as the run's error ("" when OK)
    traceback: str = ""
    started_at: dt.datetime = field(default_factory=timezone.now)
    seconds: float = 0.0
    timeout: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK

    @property
    def permanent(self) -> bool:
        """Whether trying again cannot help."""
        return not self.ok and not self.outcome.retryable

    @property
    def output(self) -> dict[str, Any]:
        """What a failing handler asked to keep on its run (``HandlerError.output``)."""
        return dict(getattr(self.error, "output", None) or {})


def registration_config(registration: HandlerRegistration) -> dict[str, Any]:
    """The registration's parameter values, secrets decrypted: what the handler receives."""
    secrets = json.loads(registration.secrets) if registration.secrets else {}
    return {**registration.parameters, **secrets}


def json_bounded(value: Any, limit: int = OUTPUT_LIMIT) -> dict[str, Any]:
    """A handler's output as JSON the database accepts, cut to a bounded size."""
    try:
        text = json.dumps(value if isinstance(value, Mapping) else {"value": value}, default=str)
    except (TypeError, ValueError) as exc:
        return {"unserializable": f"{type(value).__name__}: {exc}"[:1000]}
    text = text.replace("\\u0000", "")
    if len(text) > limit:
        return {"truncated": text[:limit]}
    return json.loads(text)


def error_text(error: BaseException) -> str:
    """An exception as a run's error: a HandlerError's own sentence, else its type too."""
    if isinstance(error, HandlerError | HandlerTimedOut | BadAnswer | Refused):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"


def classify(error: BaseException | None) -> Outcome:
    """The outcome of a call that raised ``error`` (None: it did not)."""
    if error is None:
        return Outcome.OK
    if isinstance(error, Refused):
        return error.outcome
    if isinstance(error, HandlerTimedOut):
        return Outcome.TIMED_OUT
    if isinstance(error, BadAnswer):
        return Outcome.BAD_ANSWER
    if isinstance(error, HandlerError) and error.permanent:
        return Outcome.PERMANENT_ERROR
    return Outcome.RETRYABLE_ERROR


# --- Resolving --------------------------------------------------------------------------


def handler_instance(
    registration: HandlerRegistration, contract: type[H] | tuple[type[Handler], ...]
) -> H:
    """A fresh instance of the registration's class, configured with its checked parameters.

    Raises :class:`Refused`: ``MISSING_CLASS`` when no installed package declares the class,
    it cannot be loaded or does not implement ``contract``; ``BAD_PARAMETERS`` when the
    stored values no longer pass the class's declared parameters (or its constructor
    refuses them).
    """
    info = handler_class(registration.handler)
    if info is None or info.cls is None:
        reason = info.error if info else "no installed package declares it (uninstalled?)"
        message = f"handler {registration.handler} is missing: {reason}"
        raise Refused(Outcome.MISSING_CLASS, message, reason=reason)
    if not issubclass(info.cls, contract):
        reason = f"{registration.handler!r} is not a {_contract_name(contract)} class"
        raise Refused(Outcome.MISSING_CLASS, f"handler {reason}", reason=reason)
    try:
        stored = registration_config(registration)
        secret_names = {p.name for p in info.cls.parameters if p.secret}
        # ref+platform: references become their secrets here, at the door, and nowhere else.
        config = parameters_check(
            info.cls.parameters, platform_secrets(stored, secret_names, "parameter")
        )
        return info.cls(config)  # type: ignore[return-value]
    except SecretUnavailable as exc:
        raise Refused(
            Outcome.BAD_PARAMETERS, f"cannot be started: {exc}", reason=str(exc)
        ) from None
    except (ParameterError, ValueError, TypeError) as exc:
        raise Refused(Outcome.BAD_PARAMETERS, f"cannot be started: {exc}", reason=str(exc)) from exc
    except Exception as exc:  # a third party's constructor
        outcome = classify(exc)
        raise Refused(outcome, f"cannot be started: {error_text(exc)}") from exc


def _contract_name(contract: type[Handler] | tuple[type[Handler], ...]) -> str:
    contracts = contract if isinstance(contract, tuple) else (contract,)
    return " or ".join(
        getattr(getattr(c, "kind", None), "label", None) or c.__name__ for c in contracts
    )


# --- Calling ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Ended:
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""


def _call_with_timeout(func: Callable[[], Any], timeout: float, *, name: str) -> _Ended:
    """Call ``func`` in a thread and wait at most ``timeout`` seconds.

    A handler that hangs cannot be stopped from outside in Python: its thread is left
    behind (daemon, so it never holds the worker's exit) and the call counts as timed out.
    Scripts run as processes and are killed on their own timeout.
    """
    ended = _Ended()

    def target() -> None:
        try:
            ended.value = func()
        except BaseException as exc:  # a handler's SystemExit must not end the worker
            ended.error = exc
            ended.traceback = traceback.format_exc()
        finally:
            close_old_connections()

    thread = threading.Thread(target=target, name=f"handler:{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return _Ended(error=HandlerTimedOut(f"timed out after {timeout:g} s"))
    return ended


def handler_call(
    call: Callable[[], Any],
    *,
    timeout: float,
    name: str,
    budget: Budget | None = None,
    answer: Callable[[Any], Any] | None = None,
    timeout_text: str = DEFAULT_TIMEOUT_TEXT,
) -> Invocation:
    """Call ``call()`` within ``timeout`` (and what is left of ``budget``); never raises.

    ``answer`` checks (and may convert) the value returned: it raises :class:`BadAnswer`
    for what the contract does not allow, or any exception the call itself could have
    raised (classified the same way). ``timeout_text`` is the sentence of a timeout, with
    ``{seconds}``.
    """
    started_at, started = timezone.now(), time.monotonic()
    if budget is not None:
        remaining = budget.deadline - started
        if remaining <= 0:
            return Invocation(
                Outcome.TIMED_OUT,
                error=HandlerTimedOut(budget.spent_text),
                message=budget.spent_text,
                started_at=started_at,
            )
        timeout = min(float(timeout), remaining)
    ended = _call_with_timeout(call, timeout, name=name)
    error, value, trace = ended.error, ended.value, ended.traceback
    if error is None and answer is not None:
        try:
            value = answer(value)
        except Exception as exc:  # the answer's check, or the handler's object misbehaving
            error = exc
    seconds = time.monotonic() - started
    outcome = classify(error)
    if outcome == Outcome.OK:
        return Invocation(outcome, value=value, started_at=started_at, seconds=seconds)
    message = error_text(error)  # type: ignore[arg-type]
    if outcome == Outcome.TIMED_OUT:
        message = timeout_text.format(seconds=timeout)
    return Invocation(
        outcome,
        error=error,
        message=message,
        traceback=trace,
        started_at=started_at,
        seconds=seconds,
        timeout=timeout,
    )


def invoke(
    registration: HandlerRegistration,
    contract: type[H] | tuple[type[Handler], ...],
    call: Callable[[H], Any],
    *,
    timeout: float | None = None,
    name: str = "",
    budget: Budget | None = None,
    answer: Callable[[Any], Any] | None = None,
    timeout_text: str = DEFAULT_TIMEOUT_TEXT,
) -> Invocation:
    """Resolve the registration to its contract's instance and call ``call(instance)``.

    ``timeout`` defaults to the registration's; never raises: a class that cannot be
    started is an invocation with outcome ``MISSING_CLASS`` or ``BAD_PARAMETERS``.
    """
    started_at = timezone.now()
    if budget is not None and budget.deadline <= time.monotonic():
        # Not asked at all: not even its class is looked up.
        return handler_call(lambda: None, timeout=0, name=name, budget=budget)
    try:
        handler = handler_instance(registration, contract)
    except Refused as refused:
        return Invocation(
            refused.outcome, error=refused, message=refused.message, started_at=started_at
        )
    return handler_call(
        lambda: call(handler),
        timeout=float(registration.timeout_seconds if timeout is None else timeout),
        name=name or registration.name,
        budget=budget,
        answer=answer,
        timeout_text=timeout_text,
    )


# --- Recording --------------------------------------------------------------------------


def run_new(
    registration: HandlerRegistration,
    *,
    subject_type: str,
    subject_id: str = "",
    subject_label: str = "",
    inputs: Mapping[str, Any] | None = None,
    event: Event | None = None,
    started_at: dt.datetime | None = None,
) -> HandlerRun:
    """An unsaved run of a call made now (not queued): see :func:`run_end`."""
    now = started_at or timezone.now()
    return HandlerRun(
        registration=registration,
        registration_name=registration.name,
        handler=registration.handler,
        kind=registration.kind,
        event=event,
        subject_type=subject_type,
        subject_id=subject_id[:64],
        subject_label=subject_label[:300],
        inputs=json_bounded(dict(inputs or {})),
        state=HandlerRun.State.RUNNING,
        queued_at=now,
        not_before=now,
        started_at=now,
    )


def run_end(
    run: HandlerRun,
    invocation: Invocation,
    *,
    message: str = "",
    output: Mapping[str, Any] | None = None,
    error: str | None = None,
    outcome: Outcome | None = None,
    duration_ms: int | None = None,
    save: bool = False,
) -> HandlerRun:
    """Complete ``run`` with how the call ended; ``save`` writes the finished fields now.

    ``outcome`` and ``error`` replace the invocation's when what the caller did with the
    answer failed (the actions a handler asked for, a batch no certificate survived). A
    failed run keeps its outcome in ``output["outcome"]``.
    """
    outcome = outcome or invocation.outcome
    succeeded = outcome == Outcome.OK
    recorded = dict(output if output is not None else invocation.output)
    if not succeeded:
        recorded["outcome"] = outcome.value
    run.state = HandlerRun.State.SUCCEEDED if succeeded else HandlerRun.State.FAILED
    run.message = message[:TEXT_LIMIT]
    run.output = json_bounded(recorded)
    run.error = ("" if succeeded else (invocation.message if error is None else error))[:TEXT_LIMIT]
    run.traceback = invocation.traceback[-TEXT_LIMIT:] if not succeeded else ""
    run.finished_at = timezone.now()
    if duration_ms is None:
        duration_ms = int(invocation.seconds * 1000)
    run.duration_ms = duration_ms
    if save:
        if run.pk is None:
            run.save()
        else:
            run.save(
                update_fields=[
                    "state",
                    "message",
                    "output",
                    "error",
                    "traceback",
                    "finished_at",
                    "duration_ms",
                ]
            )
    return run


def runs_save(runs: Iterable[HandlerRun]) -> list[HandlerRun]:
    """Write finished runs in one statement (inside the caller's transaction, if any)."""
    return HandlerRun.objects.bulk_create(list(runs))
