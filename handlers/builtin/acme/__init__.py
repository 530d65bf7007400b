"""The built-in ACME gateway ("certyard.acme"): certificates from any RFC 8555 CA.

The protocol is written here on ``httpx`` and ``cryptography`` alone (JWS signing, nonces,
orders, challenges), so the gateway needs nothing an administrator would have to install,
and every request it makes is visible in this package. Its modules, as certbot's ``acme``
splits them: ``jws`` (account keys, signing), ``challenges`` (the solvers), ``config``
(parameters and settings), ``errors`` (the CA's refusals), ``client`` (one session with
the CA) and ``gateway`` (:class:`AcmeGateway`, the platform's contract). Import from here.
"""

from handlers.builtin.acme.challenges import (
    SOLVERS,
    AcmeIdentifier,
    ChallengeSolver,
    NoSolver,
    StandaloneSolver,
    WebrootSolver,
    address_parse,
    dns01_txt_value,
    key_authorization,
)
from handlers.builtin.acme.client import AcmeSession
from handlers.builtin.acme.config import acme_parameters
from handlers.builtin.acme.errors import PERMANENT_PROBLEMS, AcmeProblem
from handlers.builtin.acme.gateway import PRODUCT_ID, AcmeGateway
from handlers.builtin.acme.jws import (
    USER_AGENT,
    AccountKey,
    account_key_generate,
    external_account_binding,
)

__all__ = [
    "PERMANENT_PROBLEMS",
    "PRODUCT_ID",
    "SOLVERS",
    "USER_AGENT",
    "AccountKey",
    "AcmeGateway",
    "AcmeIdentifier",
    "AcmeProblem",
    "AcmeSession",
    "ChallengeSolver",
    "NoSolver",
    "StandaloneSolver",
    "WebrootSolver",
    "account_key_generate",
    "acme_parameters",
    "address_parse",
    "dns01_txt_value",
    "external_account_binding",
    "key_authorization",
]
