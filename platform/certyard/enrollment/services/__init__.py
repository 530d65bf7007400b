"""Writes of enrollment: submit, approve, deny, issue, renew, revoke, and templates.

Every request is recorded before anything is checked, so a refused one stays visible
with its reason (state ``failed``); nothing is issued for it. A gateway is never called
inside a database transaction: the request is saved, the CA is asked, the answer saved.

One module per step, from the bottom up: ``recording`` (refusing, events), ``issuing``
(built-in CA or gateway), ``submit`` (CSRs, one or a batch), ``pfx``, ``approval``,
``renewal``, ``handler_actions`` (what handlers ask for), ``revocation``, and
``templates``. Import from here: these names are the package's contract.
"""

from certyard.enrollment.services.approval import enrollment_approve, enrollment_deny
from certyard.enrollment.services.handler_actions import (
    certificate_renew_for_handler,
    enrollment_approve_for_handler,
    enrollment_deny_for_handler,
)
from certyard.enrollment.services.issuing import (
    certificate_issued_hook_register,
    enrollment_refresh,
)
from certyard.enrollment.services.pfx import (
    PFX_HAND_OVER_SECONDS,
    enrollment_pfx_collect,
    enrollment_submit_pfx,
    pfx_hand_over_keep,
    pfx_hand_over_take,
    pfx_hand_overs_prune,
)
from certyard.enrollment.services.recording import ENROLLMENT_SOURCE, EnrollmentRefused, State
from certyard.enrollment.services.renewal import certificate_renew
from certyard.enrollment.services.revocation import (
    certificate_revocation_status,
    certificate_revoke,
)
from certyard.enrollment.services.submit import (
    BATCH_MAX,
    Submitted,
    enrollment_submit_csr,
    enrollments_submit_csr_batch,
    idempotency_key_check,
)
from certyard.enrollment.services.templates import template_errors, template_save

__all__ = [
    "BATCH_MAX",
    "ENROLLMENT_SOURCE",
    "PFX_HAND_OVER_SECONDS",
    "EnrollmentRefused",
    "State",
    "Submitted",
    "certificate_issued_hook_register",
    "certificate_renew",
    "certificate_renew_for_handler",
    "certificate_revocation_status",
    "certificate_revoke",
    "enrollment_approve",
    "enrollment_approve_for_handler",
    "enrollment_deny",
    "enrollment_deny_for_handler",
    "enrollment_pfx_collect",
    "enrollment_refresh",
    "enrollment_submit_csr",
    "enrollment_submit_pfx",
    "enrollments_submit_csr_batch",
    "idempotency_key_check",
    "pfx_hand_over_keep",
    "pfx_hand_over_take",
    "pfx_hand_overs_prune",
    "template_errors",
    "template_save",
]
