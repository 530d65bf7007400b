"""Calling CA gateways: the registration's class and config, a time limit, clear errors.

Every call to a gateway goes through :func:`gateway_call`, so a gateway that raises,
hangs or answers nonsense is reported the same way wherever it is called from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from certyard.errors import ServiceError
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.runner import HandlerTimedOut, call_with_timeout
from certyard.workflows.services import registration_config
from handlers.base import HandlerError, HandlerKind
from handlers.gateways import CAGateway
from handlers.registry import handler_class

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


def gateway_instance(registration: HandlerRegistration) -> CAGateway:
    """The gateway class of a registration, configured; refuses what cannot run."""
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
    info = handler_class(registration.handler)
    if info is None or info.cls is None:
        why = info.error if info is not None else "no installed package declares it"
        raise GatewayFailed(
            f"the CA gateway class {registration.handler!r} of {registration.name} cannot be "
            f"loaded: {why}",
            permanent=True,
            http_status=409,
        )
    if not issubclass(info.cls, CAGateway):
        raise GatewayFailed(
            f"{registration.handler!r} is not a CA gateway class", permanent=True, http_status=409
        )
    return info.cls(registration_config(registration))


def gateway_call(
    registration: HandlerRegistration,
    operation: str,
    call: Callable[[CAGateway], T],
    *,
    expect: type | tuple[type, ...] | None = None,
) -> T:
    """Run ``call(gateway)`` within the registration's timeout; GatewayFailed on failure."""
    gateway = gateway_instance(registration)
    timeout = float(registration.timeout_seconds)
    outcome = call_with_timeout(
        lambda: call(gateway), timeout, name=f"{registration.name}.{operation}"
    )
    name = registration.name
    error = outcome.error
    if isinstance(error, HandlerTimedOut):
        raise GatewayFailed(
            f"the CA gateway {name} did not answer {operation} within {timeout:g} s",
            permanent=False,
            http_status=504,
        )
    if isinstance(error, HandlerError):
        raise GatewayFailed(
            f"the CA gateway {name} failed to {operation}: {error.message}",
            permanent=error.permanent,
            http_status=422 if error.permanent else 502,
        )
    if error is not None:
        raise GatewayFailed(
            f"the CA gateway {name} failed to {operation}: {type(error).__name__}: {error}",
            permanent=False,
        )
    value: Any = outcome.value
    if expect is not None and not isinstance(value, expect):
        raise GatewayFailed(
            f"the CA gateway {name} answered {operation} with {type(value).__name__}, "
            "not what the contract says",
            permanent=False,
        )
    return value


def gateway_ping(registration: HandlerRegistration) -> None:
    gateway_call(registration, "answer a ping", lambda g: g.ping())


def gateway_products(registration: HandlerRegistration) -> list[Any]:
    return gateway_call(registration, "list its products", lambda g: list(g.products()))
