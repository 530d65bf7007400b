"""``ref+platform:`` secret references, resolved by the platform when it needs the value
(``orchestrators.secret_refs`` has the syntax, the contract and the built-in providers).

Two places resolve them: the door to extension code (a handler's or CA gateway's secret
parameters, ``workflows.invoke.handler_instance``) and the hand-over of a job's
configuration to its agent (a store password or secret property). The database keeps the
reference, encrypted like any secret; the value lives only in the call that needs it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from orchestrators.secret_refs import (
    SecretContext,
    SecretProvider,
    SecretUnavailable,
    load_secret_providers,
    secret_resolve,
)

__all__ = ["SecretUnavailable", "platform_secret", "platform_secrets"]


@functools.cache
def _providers() -> dict[str, type[SecretProvider]]:
    # The installed packages do not change while the process runs.
    return load_secret_providers()


def _context() -> SecretContext:
    commands = {
        str(name): tuple(str(part) for part in argv)
        for name, argv in (getattr(settings, "CERTYARD_SECRET_COMMANDS", {}) or {}).items()
        if isinstance(argv, list | tuple) and argv
    }
    return SecretContext(commands=commands)


def platform_secret(value: Any, where: str) -> Any:
    """``value``, or the secret its ``ref+platform:`` reference names.

    Raises:
        SecretUnavailable: naming ``where`` and the reference, never a value.
    """
    return secret_resolve(value, where, _providers(), _context(), side="platform")


def platform_secrets(values: Mapping[str, Any], names: set[str], where: str) -> dict[str, Any]:
    """``values`` with the references among ``names`` (the secret ones) resolved."""
    return {
        key: platform_secret(value, f"{where} {key}") if key in names else value
        for key, value in values.items()
    }
