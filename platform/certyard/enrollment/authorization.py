"""Who may act on an enrollment request, a certificate Certyard issued, or an archived key:
enrollment's facts for the one rule of ``certyard.accounts.authorization``.

A request is held by its requester and by its template's groups. A certificate Certyard
issued is held, besides what the inventory says (its stores' groups), by the requesters
of the requests that issued it and by their templates' groups: registered as a source with
the inventory in ``EnrollmentConfig.ready``. An archived private key is held by its
enrollee alone; anyone else needs ``enrollment.recover_archived_key``.
"""

from __future__ import annotations

from typing import Any

from certyard.accounts.authorization import Holders, act_require, is_person, permission_require
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.errors import ServiceError
from certyard.inventory.models import Certificate

MANAGE_ANY_REQUEST = "enrollment.manage_any_enrollmentrequest"
RECOVER_ARCHIVED_KEY = "enrollment.recover_archived_key"
APPROVE_REQUESTS = "enrollment.approve_enrollmentrequest"


def _template_groups(template_ids: set[Any]) -> list[int]:
    template_ids.discard(None)
    if not template_ids:
        return []
    return list(
        Template.groups.through.objects.filter(template_id__in=template_ids).values_list(
            "group_id", flat=True
        )
    )


def certificate_enrollment_holders(certificate: Certificate) -> Holders:
    """Who enrolled ``certificate`` (the issued requests' requesters) and their templates'
    groups; nobody for a certificate Certyard did not issue."""
    rows = EnrollmentRequest.objects.filter(
        certificate=certificate, state=EnrollmentRequest.State.ISSUED
    ).values_list("requested_by_id", "template_id")
    owners = {owner for owner, _ in rows}
    return Holders.of(owners=owners, groups=_template_groups({t for _, t in rows}))


def request_holders(request: EnrollmentRequest, *, with_requester: bool = True) -> Holders:
    return Holders.of(
        owners=[request.requested_by_id] if with_requester else [],
        groups=_template_groups({request.template_id}),
    )


def request_act_require(actor: Any, request: EnrollmentRequest) -> None:
    """403 unless ``actor`` may act on the request (no person: the platform itself)."""
    if is_person(actor):
        act_require(
            actor, request_holders(request), grant_all=MANAGE_ANY_REQUEST, what="this request"
        )


def request_decide_require(actor: Any, request: EnrollmentRequest) -> None:
    """403 unless ``actor`` may approve or deny the request: the approve permission, and
    its template's groups or ``manage_any_enrollmentrequest``. Being its requester gives
    no right to decide (no self-approval)."""
    if not is_person(actor):
        return
    permission_require(actor, APPROVE_REQUESTS, message="you may not approve or deny requests")
    act_require(
        actor,
        request_holders(request, with_requester=False),
        grant_all=MANAGE_ANY_REQUEST,
        what="this request",
    )


def archived_key_reuse_require(actor: Any, original: EnrollmentRequest) -> None:
    """403 unless ``actor`` may reuse the key archived with ``original``: its enrollee, or
    a holder of ``enrollment.recover_archived_key``. ``None``: a handler renewing on the
    enrollee's behalf (the enrollee collects the result)."""
    if not is_person(actor):
        return
    if original.requested_by_id is not None and original.requested_by_id == actor.pk:
        return
    if actor.has_perm(RECOVER_ARCHIVED_KEY):
        return
    raise ServiceError(
        "the archived key belongs to the person who enrolled this certificate: only they, "
        f"or someone with the permission {RECOVER_ARCHIVED_KEY}, may reuse it; renew with a "
        "new key instead",
        code="not_yours",
        http_status=403,
        field="reuse_key",
    )
