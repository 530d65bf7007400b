"""Calling CA gateways: through the door, with the registration's timeout and clear errors.

Every call to a gateway goes through :func:`gateway_call` (and the door,
:mod:`certyard.workflows.invoke`, like every other handler), so a gateway that raises,
hangs or answers nonsense is recorded as a run and reported the same way wherever it is
called from. Gateways are called outside any transaction; their failures become
:class:`GatewayFailed`, which carries the HTTP status the API answers with (502 when the
CA failed, 504 when it did not answer in time, 409 when the registration cannot be used).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from certyard.errors import ServiceError
from certyard.workflows.invoke import (
    BadAnswer,
    Invocation,
    Outcome,
    Refused,
    handler_instance,
    invoke,
    run_end,
    run_new,
)
from certyard.workflows.models import HandlerRegistration
from handlers.base import HandlerError, HandlerKind
from handlers.gateways import CAGateway

T = TypeVar("T")


class GatewayFailed(ServiceError):
    """A gateway call failed; ``permanent`` when its configuration or the request is at
    fault (retrying cannot help)."""

    def __init__(self, message: str, *, permanent: bool, http_status: int = 502) -> None:
        super().__init__(
            message,
            code="gateway_error" if not permanent else "gateway_refused",
            http_status=http_status,
        )
        self.permanent = permanent


def _usable(registration: HandlerRegistration) -> None:
    """Refuse a registration that is no gateway or is disabled (nothing is called)."""
    if registration.kind != HandlerKind.GATEWAY:
        raise GatewayFailed(
            f"{registration.name} is not a CA gateway registration",
            permanent=True,
            http_status=400,
        )
    if not registration.enabled:
        raise GatewayFailed(
            f"the CA gateway {registration.name} is disabled", permanent=True, http_status=409
        )


def _refusal(registration: HandlerRegistration, outcome: Outcome, reason: str) -> GatewayFailed:
    """The error for a gateway class that cannot be started."""
    if outcome == Outcome.MISSING_CLASS:
        message = (
            f"the CA gateway class {registration.handler!r} of {registration.name} cannot be "
            f"loaded: {reason}"
        )
    elif outcome == Outcome.BAD_PARAMETERS:
        message = (
            f"the CA gateway {registration.name} cannot be started: its parameters no longer "
            f"pass their checks ({reason}); correct them in its registration"
        )
    else:
        message = f"the CA gateway {registration.name} cannot be started: {reason}"
    return GatewayFailed(message, permanent=True, http_status=409)


def _record(
    registration: HandlerRegistration, operation: str, invocation: Invocation, error: str = ""
) -> None:
    run = run_new(
        registration,
        subject_type="gateway",
        subject_id=str(registration.pk),
        subject_label=registration.name,
        inputs={"operation": operation},
        started_at=invocation.started_at,
    )
    message = f"answered {operation}" if invocation.ok else ""
    run_end(run, invocation, message=message, error=error or None, save=True)


def gateway_instance(registration: HandlerRegistration) -> CAGateway:
    """The gateway class of a registration, configured, through the door; refuses what
    cannot run (a refused class or parameters is recorded as a failed run).

    For the calls that cannot go through :func:`gateway_call` (a sync streams records).
    """
    _usable(registration)
    try:
        return handler_instance(registration, CAGateway)
    except Refused as refused:
        failed = _refusal(registration, refused.outcome, refused.reason)
        invocation = Invocation(refused.outcome, error=refused, message=failed.message)
        _record(registration, "start", invocation)
        raise failed from refused


def gateway_call(
    registration: HandlerRegistration,
    operation: str,
    call: Callable[[CAGateway], T],
    *,
    expect: type | tuple[type, ...] | None = None,
) -> T:
    """Run ``call(gateway)`` through the door, within the registration's timeout, and
    record it as a run; GatewayFailed on failure."""
    _usable(registration)
    name = registration.name

    def answer(value: Any) -> Any:
        if expect is not None and not isinstance(value, expect):
            raise BadAnswer(
                f"the CA gateway {name} answered {operation} with {type(value).__name__}, "
                "not what the contract says"
            )
        return value

    invocation = invoke(
        registration,
        CAGateway,
        call,
        name=f"{name}.{operation}",
        answer=answer,
        timeout_text=f"the CA gateway {name} did not answer {operation} within {{seconds:g}} s",
    )
    failed = None if invocation.ok else _failure(registration, operation, invocation)
    _record(registration, operation, invocation, failed.message if failed else "")
    if failed is not None:
        raise failed
    return invocation.value


def _failure(
    registration: HandlerRegistration, operation: str, invocation: Invocation
) -> GatewayFailed:
    """What the API answers for a failed call: the CA's fault (502), its silence (504), or
    a registration that cannot be used (409)."""
    name, error, outcome = registration.name, invocation.error, invocation.outcome
    if isinstance(error, Refused):
        return _refusal(registration, outcome, error.reason)
    if outcome == Outcome.TIMED_OUT:
        return GatewayFailed(invocation.message, permanent=False, http_status=504)
    if outcome == Outcome.BAD_ANSWER:
        return GatewayFailed(invocation.message, permanent=False)
    if isinstance(error, HandlerError):
        return GatewayFailed(
            f"the CA gateway {name} failed to {operation}: {error.message}",
            permanent=error.permanent,
            http_status=422 if error.permanent else 502,
        )
    return GatewayFailed(
        f"the CA gateway {name} failed to {operation}: {invocation.message}", permanent=False
    )


def gateway_ping(registration: HandlerRegistration) -> None:
    gateway_call(registration, "answer a ping", lambda g: g.ping())


def gateway_products(registration: HandlerRegistration) -> list[Any]:
    return gateway_call(registration, "list its products", lambda g: list(g.products()))
