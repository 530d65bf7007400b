"""The secret-provider contract, as platform-side extension code finds it.

One contract serves both runtimes (``orchestrators.secret_refs``, where it is documented):
a provider installed beside the platform resolves ``ref+platform:<scheme>:<name>``
references (a handler's or CA gateway's secret parameters, store passwords handed to
agents); the same package installed beside an agent resolves ``ref+agent:`` ones. Declare
it under the entry-point group ``certyard.secret_providers``.
"""

from orchestrators.secret_refs import (
    ENTRY_POINT_GROUP,
    SecretContext,
    SecretProvider,
    SecretUnavailable,
)

__all__ = ["ENTRY_POINT_GROUP", "SecretContext", "SecretProvider", "SecretUnavailable"]
