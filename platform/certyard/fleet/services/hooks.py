"""What apps above fleet register with it: the blueprint name check, the blueprint applier and
the lock-out hooks. Fleet never imports those apps.
"""

from collections.abc import Callable

from django.db import transaction

from certyard.fleet.models import Orchestrator

# Blueprints live above fleet: the blueprints app registers the check that a blueprint
# named on a token exists (it returns the name as stored, or raises ServiceError).
_blueprint_name_checks: list[Callable[[str], str]] = []


def registration_token_blueprint_check_register(check: Callable[[str], str]) -> None:
    """Register ``check(name) -> name as stored``; it raises ``ServiceError`` if there is
    no blueprint of that name. Called when a token restricted to a blueprint is made."""
    if check not in _blueprint_name_checks:
        _blueprint_name_checks.append(check)


def blueprint_name_checked(name: str) -> str:
    """``name`` as the registered checks store it; ``ServiceError`` if no blueprint has it."""
    for check in _blueprint_name_checks:
        name = check(name)
    return name


# Apps above fleet (jobs) register here what must happen when an orchestrator loses the
# right to work: fleet never imports them.
_lockout_hooks: list[Callable[[Orchestrator], None]] = []


def orchestrator_lockout_hook_register(hook: Callable[[Orchestrator], None]) -> None:
    """Call ``hook(orchestrator)`` inside the transaction that disapproves or resets one,
    or revokes its certificate."""
    if hook not in _lockout_hooks:
        _lockout_hooks.append(hook)


def lockout_hooks_run(orchestrator: Orchestrator) -> None:
    for hook in _lockout_hooks:
        hook(orchestrator)


# Blueprints live above fleet (they hold stores); a registration handler names one, and
# fleet hands the name to the applier the blueprints app registered at startup.
_blueprint_appliers: list[Callable[..., None]] = []


def orchestrator_blueprint_applier_register(applier: Callable[..., None]) -> None:
    """Register ``applier(*, orchestrator, blueprint_name, decided_by)``, called after commit.

    It runs once a registration handler approved an orchestrator and named a blueprint;
    ``decided_by`` is that handler registration's name (the jobs it opens record it).
    It must not raise for a blueprint that does not exist: it records why instead.
    """
    if applier not in _blueprint_appliers:
        _blueprint_appliers.append(applier)


def blueprint_apply_on_commit(
    orchestrator: Orchestrator, blueprint_name: str, *, decided_by: str = ""
) -> None:
    def apply() -> None:
        for applier in _blueprint_appliers:
            applier(orchestrator=orchestrator, blueprint_name=blueprint_name, decided_by=decided_by)

    transaction.on_commit(apply)
