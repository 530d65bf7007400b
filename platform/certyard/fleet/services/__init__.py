"""Writes of the fleet app: registration tokens, registration, identity and approval.

Host names are ``machines``; tokens are ``tokens``; a registration is ``registration``;
an agent's session is ``sessions``; approval and reset are ``approval``; what the agent
reports of itself is ``reported``; renewing or revoking its own certificate is
``renewal``; what apps above fleet register with it is ``hooks``. Callers import from
this package.
"""

from certyard.fleet.services.approval import (
    orchestrator_approve,
    orchestrator_disapprove,
    orchestrator_reset,
)
from certyard.fleet.services.hooks import (
    orchestrator_blueprint_applier_register,
    orchestrator_lockout_hook_register,
    registration_token_blueprint_check_register,
)
from certyard.fleet.services.machines import CLIENT_MACHINE_MAX_LENGTH, client_machine_problem
from certyard.fleet.services.registration import Registration, csr_load, orchestrator_register
from certyard.fleet.services.renewal import (
    Renewal,
    orchestrator_certificate_renew,
    orchestrator_certificate_revoke,
)
from certyard.fleet.services.reported import (
    ORCHESTRATOR_METADATA_MAX_BYTES,
    ORCHESTRATOR_METADATA_MAX_KEYS,
    orchestrator_limits_record,
    orchestrator_metadata_check,
    orchestrator_metadata_set,
)
from certyard.fleet.services.sessions import (
    CertificateTimes,
    Session,
    orchestrator_certificate_times,
    orchestrator_from_session_token,
    orchestrator_seen,
    orchestrator_session_open,
)
from certyard.fleet.services.tokens import (
    REGISTRATION_TOKEN_MAX_LABELS,
    registration_token_create,
    registration_token_labels_clean,
    registration_token_machine_pattern_clean,
    registration_token_revoke,
)

__all__ = [
    "CLIENT_MACHINE_MAX_LENGTH",
    "ORCHESTRATOR_METADATA_MAX_BYTES",
    "ORCHESTRATOR_METADATA_MAX_KEYS",
    "REGISTRATION_TOKEN_MAX_LABELS",
    "CertificateTimes",
    "Registration",
    "Renewal",
    "Session",
    "client_machine_problem",
    "csr_load",
    "orchestrator_approve",
    "orchestrator_blueprint_applier_register",
    "orchestrator_certificate_renew",
    "orchestrator_certificate_revoke",
    "orchestrator_certificate_times",
    "orchestrator_disapprove",
    "orchestrator_from_session_token",
    "orchestrator_limits_record",
    "orchestrator_lockout_hook_register",
    "orchestrator_metadata_check",
    "orchestrator_metadata_set",
    "orchestrator_register",
    "orchestrator_reset",
    "orchestrator_seen",
    "orchestrator_session_open",
    "registration_token_blueprint_check_register",
    "registration_token_create",
    "registration_token_labels_clean",
    "registration_token_machine_pattern_clean",
    "registration_token_revoke",
]
