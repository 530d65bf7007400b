"""What handlers ask for (``Platform.approve_enrollment``, ...), carried out for them."""

from __future__ import annotations

import contextlib

from django.db import transaction

from certyard.enrollment.models import EnrollmentRequest
from certyard.enrollment.services.approval import enrollment_approve, enrollment_deny
from certyard.enrollment.services.recording import State
from certyard.enrollment.services.renewal import certificate_renew
from certyard.errors import ServiceError
from certyard.inventory.models import Certificate


def _pending_for_handler(enrollment_id: str) -> EnrollmentRequest:
    request = EnrollmentRequest.objects.filter(pk=enrollment_id).first()
    if request is None:
        raise ServiceError(f"there is no enrollment request {enrollment_id}")
    if request.state != State.PENDING:
        raise ServiceError(
            f"enrollment request {enrollment_id} is {request.get_state_display().lower()}, "
            "not pending"
        )
    return request


def enrollment_approve_for_handler(*, enrollment_id: str, comment: str = "", by: str) -> None:
    """Carry out a handler's ``approve_enrollment`` after its run's transaction commits
    (issuing may ask a CA, never inside a transaction); a refused issuance is recorded
    on the request."""
    request = _pending_for_handler(enrollment_id)

    def approve() -> None:
        # A refusal is recorded on the request (failed, with its reason), or it was
        # decided meanwhile.
        with contextlib.suppress(ServiceError):
            enrollment_approve(request=request, actor=None, comment=comment, handler=by)

    transaction.on_commit(approve)


def enrollment_deny_for_handler(*, enrollment_id: str, comment: str, by: str) -> None:
    enrollment_deny(
        request=_pending_for_handler(enrollment_id), actor=None, comment=comment, handler=by
    )


def certificate_renew_for_handler(
    *, certificate_sha256: str, new_key: bool = True, by: str
) -> None:
    """Carry out a handler's ``renew_certificate``: once per certificate (several
    expiry warnings, one per location, ask for one renewal)."""
    certificate = Certificate.objects.filter(sha256=str(certificate_sha256).lower()).first()
    if certificate is None:
        raise ServiceError(f"the inventory holds no certificate {certificate_sha256}")
    under_way = certificate.renewal_requests.exclude(state__in=[State.FAILED, State.DENIED])
    if under_way.exists():
        return
    original = (
        EnrollmentRequest.objects.filter(certificate=certificate, state=State.ISSUED)
        .order_by("-issued_at")
        .first()
    )
    if original is None:
        raise ServiceError(f"Certyard did not issue {certificate}: it cannot renew it")
    if original.method != EnrollmentRequest.Method.PFX:
        raise ServiceError(
            f"{certificate} was enrolled with a CSR: its key is not the platform's, so its "
            "holder must send a new CSR"
        )
    if not new_key and not original.private_key_pem:
        raise ServiceError(f"the key of {certificate} was not archived: renew with a new key")

    def renew() -> None:
        with contextlib.suppress(ServiceError):  # a refused renewal is recorded on its request
            certificate_renew(certificate=certificate, actor=None, reuse_key=not new_key)

    transaction.on_commit(renew)
