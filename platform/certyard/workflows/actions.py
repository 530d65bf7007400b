"""The actions handlers ask of the platform, and the appliers the owning apps register.

Handlers never touch another app's models: they return actions as data (through the
:class:`handlers.base.Platform` facade, :class:`PlatformRequests`), and the app that owns
each action registers how to carry it out (in its ``AppConfig.ready``). The runner
applies a run's actions once the handler has succeeded.

What an action creates is named in advance: ``schedule_job`` hands the handler a new
job id (a UUID allocated here), recorded in the action, and the applier creates the job
with it. An applier may answer a mapping that is added to the run's recorded action
(``schedule_job``: ``{"existing_job_id": ...}`` when the store's open inventory job stands).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.db import transaction

from certyard.errors import ServiceError

_action_appliers: dict[str, Callable[..., Mapping[str, Any] | None]] = {}


def action_applier_register(action: str, applier: Callable[..., Mapping[str, Any] | None]) -> None:
    """Register ``applier(**arguments)`` for the action a handler's run asked for.

    The applier receives the recorded action's keys (but ``action``) as arguments; what it
    answers, a mapping or None, is added to the recorded action (e.g. the id of an object
    that stood instead of the one asked for).
    """
    _action_appliers[action] = applier


def actions_apply(actions: list[dict[str, Any]]) -> None:
    """Carry out a run's actions, in one transaction; ServiceError names the one that failed.

    Each applier's answer (a mapping) is added to its action, so the run records it.
    """
    with transaction.atomic():
        for action in actions:
            name = action.get("action", "")
            applier = _action_appliers.get(name)
            if applier is None:
                raise ServiceError(f"the platform cannot carry out the action {name!r}")
            arguments = {key: value for key, value in action.items() if key != "action"}
            answer = applier(**arguments)
            if isinstance(answer, Mapping):
                action.update({str(key): value for key, value in answer.items()})


class PlatformRequests:
    """The :class:`handlers.base.Platform` handlers get: it records actions, which the
    apps that own them carry out after the run succeeds (``action_applier_register``);
    mail is the exception, sent at once so the handler learns the server's answer."""

    def __init__(self, source: str = "", registration_id: int | None = None) -> None:
        self.actions: list[dict[str, Any]] = []
        # Who asked (the registration's name and id): recorded with the decisions a
        # handler makes for people and as the provenance of the jobs it starts.
        self.source = source
        self.registration_id = registration_id

    def schedule_job(
        self,
        *,
        store_id: str,
        job_type: str,
        delay_seconds: int = 0,
        retry_of: str | None = None,
    ) -> str:
        if retry_of is not None:
            try:
                retry_of = str(uuid.UUID(str(retry_of)))
            except ValueError:
                raise ValueError(f"retry_of must be a job's id, not {retry_of!r}") from None
        # The job's id now, so the handler can name it; the job is created with it once
        # the run succeeds (or not at all: see the ``existing_job_id`` answer).
        job_id = str(uuid.uuid4())
        self.actions.append(
            {
                "action": "schedule_job",
                "store_id": str(store_id),
                "job_type": str(job_type),
                "delay_seconds": int(delay_seconds),
                "job_id": job_id,
                "retry_of": retry_of,
                "by": self.source,
                "registration_id": self.registration_id,
            }
        )
        return job_id

    def set_metadata(self, *, certificate_sha256: str, values: Mapping[str, Any]) -> None:
        self.actions.append(
            {
                "action": "set_metadata",
                "certificate_sha256": str(certificate_sha256),
                "values": dict(values),
            }
        )

    def approve_enrollment(self, *, enrollment_id: str, comment: str = "") -> str:
        self.actions.append(
            {
                "action": "approve_enrollment",
                "enrollment_id": str(enrollment_id),
                "comment": str(comment),
                "by": self.source,
            }
        )
        return str(enrollment_id)

    def deny_enrollment(self, *, enrollment_id: str, comment: str) -> str:
        self.actions.append(
            {
                "action": "deny_enrollment",
                "enrollment_id": str(enrollment_id),
                "comment": str(comment),
                "by": self.source,
            }
        )
        return str(enrollment_id)

    # The renewals answer None: the enrollment request is made by enrollment's renewal
    # after the run's transaction commits (the CA is never asked inside one), at most once
    # per certificate (one already under way stands), and renew-and-replace into stores
    # that make their keys makes none at all; its id cannot be named in advance.
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
                "registration_id": self.registration_id,
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
