"""The actions handlers ask of the platform, and the appliers the owning apps register.

Handlers never touch another app's models: they return actions as data (through the
:class:`handlers.base.Platform` facade, :class:`PlatformRequests`), and the app that owns
each action registers how to carry it out (in its ``AppConfig.ready``). The runner
applies a run's actions once the handler has succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.db import transaction

from certyard.errors import ServiceError

_action_appliers: dict[str, Callable[..., None]] = {}


def action_applier_register(action: str, applier: Callable[..., None]) -> None:
    """Register ``applier(**arguments)`` for the action a handler's run asked for."""
    _action_appliers[action] = applier


def actions_apply(actions: list[dict[str, Any]]) -> None:
    """Carry out a run's actions, in one transaction; ServiceError names the one that failed."""
    with transaction.atomic():
        for action in actions:
            name = action.get("action", "")
            applier = _action_appliers.get(name)
            if applier is None:
                raise ServiceError(f"the platform cannot carry out the action {name!r}")
            arguments = {key: value for key, value in action.items() if key != "action"}
            applier(**arguments)


class PlatformRequests:
    """The :class:`handlers.base.Platform` handlers get: it records actions, which the
    apps that own them carry out after the run succeeds (``action_applier_register``);
    mail is the exception, sent at once so the handler learns the server's answer."""

    def __init__(self, source: str = "") -> None:
        self.actions: list[dict[str, Any]] = []
        # Who asked: recorded with the decisions a handler makes for people.
        self.source = source

    def schedule_job(self, *, store_id: str, job_type: str, delay_seconds: int = 0) -> None:
        self.actions.append(
            {
                "action": "schedule_job",
                "store_id": str(store_id),
                "job_type": str(job_type),
                "delay_seconds": int(delay_seconds),
            }
        )

    def set_metadata(self, *, certificate_sha256: str, values: Mapping[str, Any]) -> None:
        self.actions.append(
            {
                "action": "set_metadata",
                "certificate_sha256": str(certificate_sha256),
                "values": dict(values),
            }
        )

    def approve_enrollment(self, *, enrollment_id: str, comment: str = "") -> None:
        self.actions.append(
            {
                "action": "approve_enrollment",
                "enrollment_id": str(enrollment_id),
                "comment": str(comment),
                "by": self.source,
            }
        )

    def deny_enrollment(self, *, enrollment_id: str, comment: str) -> None:
        self.actions.append(
            {
                "action": "deny_enrollment",
                "enrollment_id": str(enrollment_id),
                "comment": str(comment),
                "by": self.source,
            }
        )

    def renew_certificate(self, *, certificate_sha256: str, new_key: bool = True) -> None:
        self.actions.append(
            {
                "action": "renew_certificate",
                "certificate_sha256": str(certificate_sha256),
                "new_key": bool(new_key),
                "by": self.source,
            }
        )

    def renew_and_replace(
        self, *, certificate_sha256: str, template: str = "", new_key: bool = True
    ) -> None:
        # Carried out by the deployment app (registered in its ``ready``): workflows, at
        # the bottom, cannot import it.
        self.actions.append(
            {
                "action": "renew_and_replace",
                "certificate_sha256": str(certificate_sha256),
                "template": str(template or ""),
                "new_key": bool(new_key),
                "by": self.source,
            }
        )

    def send_mail(
        self, *, subject: str, body: str, to: Sequence[str], from_address: str | None = None
    ) -> None:
        # Through Django's configured backend (EMAIL_* settings), now: the handler maps
        # the server's refusals (smtplib exceptions, OSError) to its own errors.
        EmailMessage(subject=subject, body=body, from_email=from_address or None, to=list(to)).send(
            fail_silently=False
        )
