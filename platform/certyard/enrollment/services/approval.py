"""Approval: a person (never the requester) or a handler's rule approves or denies a
pending request."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from certyard.enrollment import policy
from certyard.enrollment.authorization import request_decide_require
from certyard.enrollment.models import EnrollmentRequest
from certyard.enrollment.services.issuing import _issue, issued_notify
from certyard.enrollment.services.recording import State, _event, _fail
from certyard.errors import ServiceError
from handlers.base import EventKind


def _pending_lock(request: EnrollmentRequest) -> EnrollmentRequest:
    locked = (
        EnrollmentRequest.objects.select_for_update(of=("self",))
        .select_related("template", "requested_by")
        .get(pk=request.pk)
    )
    if locked.state != State.PENDING:
        raise ServiceError(
            f"the request is {locked.get_state_display().lower()}, not pending",
            code="not_pending",
            http_status=409,
        )
    return locked


def _decider(actor: Any, handler: str) -> str:
    return actor.get_username() if actor is not None else f"handler:{handler}"


def enrollment_approve(
    *, request: EnrollmentRequest, actor: Any, comment: str = "", handler: str = ""
) -> EnrollmentRequest:
    """Approve a pending request, then issue it.

    ``actor`` is the approving person, who cannot be the requester; a handler's rule
    approves with ``actor=None`` and its registration's name as ``handler``.
    """
    if actor is None and not handler:
        raise ServiceError("an approval names who approves")
    with transaction.atomic():
        locked = _pending_lock(request)
        if actor is not None and locked.requested_by_id == actor.pk:
            raise ServiceError(
                "you cannot approve your own request; another approver must",
                code="self_approval",
                http_status=403,
            )
        request_decide_require(actor, locked)
        locked.state = State.APPROVED
        locked.decided_by = actor
        locked.decided_by_handler = "" if actor is not None else handler[:200]
        locked.decided_at = timezone.now()
        locked.decision_comment = (comment or "").strip()[:2000]
        locked.save()
        _event(
            EventKind.ENROLLMENT_APPROVED,
            locked,
            decided_by=_decider(actor, handler),
            comment=locked.decision_comment,
        )
    template = locked.template
    if template is None:
        _fail(locked, "the template was deleted while the request waited")
    try:
        checked = policy.request_check(template, policy.csr_parse(locked.csr_pem))
    except policy.PolicyError as exc:  # the template changed while it waited
        _fail(locked, f"no longer allowed by the template: {exc}")
    _issue(locked, template, checked)
    return locked


def enrollment_deny(
    *, request: EnrollmentRequest, actor: Any, comment: str, handler: str = ""
) -> EnrollmentRequest:
    """Deny a pending request, with a comment saying why (a person, or a handler's rule)."""
    comment = (comment or "").strip()
    if not comment:
        raise ServiceError("say why the request is denied", field="comment")
    if actor is None and not handler:
        raise ServiceError("a denial names who denies")
    with transaction.atomic():
        locked = _pending_lock(request)
        request_decide_require(actor, locked)
        locked.state = State.DENIED
        locked.decided_by = actor
        locked.decided_by_handler = "" if actor is not None else handler[:200]
        locked.decided_at = timezone.now()
        locked.decision_comment = comment[:2000]
        locked.private_key_pem = ""
        locked.save()
        _event(
            EventKind.ENROLLMENT_DENIED,
            locked,
            decided_by=_decider(actor, handler),
            comment=comment,
        )
        # What waited for the certificate (deliveries to stores) learns it will not come.
        transaction.on_commit(lambda: issued_notify(locked))
    return locked
