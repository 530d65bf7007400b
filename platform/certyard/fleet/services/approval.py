"""Approving, disapproving and resetting an orchestrator."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.fleet.services.hooks import lockout_hooks_run
from certyard.fleet.services.registration import STATUS_EVENTS, orchestrator_event_emit


def _status_set(*, orchestrator: Orchestrator, status: str, actor: Any) -> Orchestrator:
    with transaction.atomic():
        changed = orchestrator.status != status
        orchestrator.status = status
        orchestrator.status_changed_at = timezone.now()
        orchestrator.status_changed_by = actor
        orchestrator.save(update_fields=["status", "status_changed_at", "status_changed_by"])
        if changed and status in STATUS_EVENTS:
            orchestrator_event_emit(
                STATUS_EVENTS[status], orchestrator, actor=getattr(actor, "username", None)
            )
    return orchestrator


def orchestrator_approve(*, orchestrator: Orchestrator, actor: Any) -> Orchestrator:
    if not orchestrator.has_identity:
        raise ServiceError(
            "this orchestrator was reset; it must register again before it can be approved",
            code="not_registered",
        )
    return _status_set(orchestrator=orchestrator, status=Orchestrator.Status.APPROVED, actor=actor)


def orchestrator_disapprove(*, orchestrator: Orchestrator, actor: Any) -> Orchestrator:
    """Refuse the agent all work; jobs it held go back to the queue for later."""
    with transaction.atomic():
        _status_set(orchestrator=orchestrator, status=Orchestrator.Status.DISAPPROVED, actor=actor)
        lockout_hooks_run(orchestrator)
    return orchestrator


def orchestrator_reset(*, orchestrator: Orchestrator, actor: Any) -> Orchestrator:
    """Forget the agent's key: it can do nothing until it registers again (stores are kept)."""
    with transaction.atomic():
        orchestrator.public_key_sha256 = ""
        orchestrator.public_key_pem = ""
        orchestrator.certificate_pem = ""
        orchestrator.certificate_not_after = None
        orchestrator.last_assertion_at = 0
        orchestrator.save(
            update_fields=[
                "public_key_sha256",
                "public_key_pem",
                "certificate_pem",
                "certificate_not_after",
                "last_assertion_at",
            ]
        )
        _status_set(orchestrator=orchestrator, status=Orchestrator.Status.NEW, actor=actor)
        lockout_hooks_run(orchestrator)
    return orchestrator
