"""The gateway's configuration: its parameters, and the settings read from them once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from handlers.builtin.acme.challenges import ChallengeSolver, NoSolver
from handlers.builtin.acme.jws import AccountKey, _b64_decode
from handlers.parameters import Parameter, ParameterType


def acme_parameters(
    solvers: Mapping[str, type[ChallengeSolver]], extra: tuple[Parameter, ...] = ()
) -> tuple[Parameter, ...]:
    """The gateway's parameters with a ``challenge_solver`` choice among ``solvers``.

    For a subclass that adds solvers (see :class:`AcmeGateway`); ``extra`` are the
    parameters its solvers read.
    """
    names = tuple(solvers)
    default = "http-01-webroot" if "http-01-webroot" in names else names[0]
    return (
        Parameter(
            "directory_url",
            ParameterType.URL,
            help="The CA's ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory.",
            required=True,
        ),
        Parameter(
            "account_key_pem",
            ParameterType.SECRET,
            help="The account's private key (PEM, EC P-256 recommended): the key is the account.",
        ),
        Parameter(
            "contact_email",
            ParameterType.EMAIL,
            help="Given to the CA when the account is created, for its expiry and policy mail.",
        ),
        Parameter(
            "eab_kid",
            help="External account binding key identifier, when the CA requires one.",
        ),
        Parameter(
            "eab_hmac_key",
            ParameterType.SECRET,
            help="External account binding MAC key (base64url), given with eab_kid.",
        ),
        Parameter(
            "challenge_solver",
            ParameterType.CHOICE,
            help="How Certyard proves control of the names.",
            choices=names,
            default=default,
        ),
        Parameter(
            "webroot",
            help="http-01-webroot: the document root the names' web server serves.",
        ),
        Parameter(
            "standalone_address",
            help="http-01-standalone: where to listen during validation (host:port).",
        ),
        Parameter(
            "ca_bundle",
            ParameterType.TEXT,
            help="PEM certificates to trust for the CA's HTTPS instead of the system's.",
        ),
        Parameter(
            "verify_tls",
            ParameterType.BOOLEAN,
            help="Check the CA's HTTPS certificate (turn off only for a test CA).",
            default=True,
        ),
        Parameter(
            "timeout_seconds",
            ParameterType.INTEGER,
            help="How long to wait for validation and issuance of one order.",
            default=30,
            minimum=1,
            maximum=600,
        ),
        *extra,
    )


_MISSING_KEY = (
    "is required: paste an account private key in PEM (make one with `openssl genpkey "
    "-algorithm EC -pkeyopt ec_paramgen_curve:P-256`); the key is the ACME account"
)


@dataclass(frozen=True, slots=True)
class _Settings:
    directory_url: str
    account_key: AccountKey | None
    contact_email: str
    eab_kid: str
    eab_hmac_key: bytes | None
    solver: type[ChallengeSolver]
    ca_bundle: str
    verify_tls: bool
    timeout: int


def _read_settings(
    config: Mapping[str, Any], solvers: Mapping[str, type[ChallengeSolver]]
) -> tuple[_Settings, dict[str, str]]:
    """The configuration read once, and what is wrong with it by parameter name."""
    errors: dict[str, str] = {}

    def text(name: str) -> str:
        value = config.get(name)
        return value if isinstance(value, str) else ""

    account_key: AccountKey | None = None
    if text("account_key_pem").strip():
        try:
            account_key = AccountKey.from_pem(text("account_key_pem"))
        except ValueError as exc:
            errors["account_key_pem"] = str(exc)
    else:
        errors["account_key_pem"] = _MISSING_KEY

    eab_kid, eab_hmac_key = text("eab_kid").strip(), None
    if eab_kid and not text("eab_hmac_key").strip():
        errors["eab_hmac_key"] = "is required with eab_kid"
    elif text("eab_hmac_key").strip() and not eab_kid:
        errors["eab_kid"] = "is required with eab_hmac_key"
    elif eab_kid:
        try:
            eab_hmac_key = _b64_decode(text("eab_hmac_key"))
        except ValueError:
            errors["eab_hmac_key"] = "is not base64url, as the CA hands it out"

    solver_name = text("challenge_solver") or "http-01-webroot"
    solver = solvers.get(solver_name)
    if solver is None:
        errors["challenge_solver"] = f"must be one of {', '.join(solvers)}"
        solver = NoSolver
    else:
        errors.update(solver.config_errors(config))

    ca_bundle = text("ca_bundle").strip()
    if ca_bundle:
        try:
            x509.load_pem_x509_certificates(ca_bundle.encode("utf-8"))
        except ValueError:
            errors["ca_bundle"] = "is not one or more PEM certificates"

    verify_tls = config.get("verify_tls")
    timeout = config.get("timeout_seconds")
    settings = _Settings(
        directory_url=text("directory_url").strip(),
        account_key=account_key,
        contact_email=text("contact_email").strip(),
        eab_kid=eab_kid,
        eab_hmac_key=eab_hmac_key,
        solver=solver,
        ca_bundle=ca_bundle,
        verify_tls=verify_tls if isinstance(verify_tls, bool) else True,
        timeout=timeout if isinstance(timeout, int) and timeout > 0 else 30,
    )
    if not settings.directory_url:
        errors["directory_url"] = "is required"
    return settings, errors
