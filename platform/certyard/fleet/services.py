"""Writes of the fleet app: registration tokens, registration, identity and approval."""

import base64
import binascii
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import math
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from certyard.errors import Conflict, ServiceError
from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.pki.models import IssuedCertificate, RevocationReason
from certyard.pki.services import (
    ca_issue_client_certificate,
    certificate_revoke,
    issued_is_revoked,
    orchestrator_ca_get_or_create,
)
from certyard.workflows.registration import (
    RegistrationOutcome,
    registration_handlers_run,
    registration_runs_record,
)
from certyard.workflows.services import event_emit
from handlers.base import EventKind, RegistrationRequest, Verdict
from handlers.builtin._common import glob_compile
from orchestrators.protocol import SESSION_ASSERTION_MAX_SKEW_SECONDS, session_signing_input

_SESSION_SALT = "certyard.orchestrator-session.v1"

logger = logging.getLogger(__name__)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- Client machine names ----------------------------------------------------------

CLIENT_MACHINE_MAX_LENGTH = 253  # a DNS name's limit
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def client_machine_problem(value: str) -> str | None:
    """Why ``value`` is no host name or IP address an agent may claim; None if it is one.

    A host name is dot-separated labels of ASCII letters, digits, ``-`` and ``_`` (Windows
    names have them), 1 to 63 characters each, not starting or ending with ``-``. So no
    path character, space, line break, control, markup or bidi character gets in: the
    name is shown in the console, written into events and filled into store paths.
    """
    if not value:
        return "give the agent's host name or IP address"
    if len(value) > CLIENT_MACHINE_MAX_LENGTH:
        return f"at most {CLIENT_MACHINE_MAX_LENGTH} characters"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return None
    if all(_HOST_LABEL.fullmatch(label) for label in value.split(".")):
        return None
    odd = next(
        (char for char in value if not (char.isascii() and (char.isalnum() or char in "._-"))),
        None,
    )
    if odd is not None:
        shown = (
            repr(odd)
            if odd.isprintable() and unicodedata.category(odd) != "Cf"
            else f"U+{ord(odd):04X}"
        )
        return (
            f"not a host name or IP address: {shown} is not allowed (use letters, digits, "
            "'-' and '_' in dot-separated labels)"
        )
    return (
        "not a host name or IP address: each dot-separated label has 1 to 63 letters, "
        "digits, '-' or '_', and does not start or end with '-'"
    )


# --- Registration tokens ----------------------------------------------------------

REGISTRATION_TOKEN_MAX_LABELS = 20
_TOKEN_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=/-]{0,63}")

# Blueprints live above fleet: the blueprints app registers the check that a blueprint
# named on a token exists (it returns the name as stored, or raises ServiceError).
_blueprint_name_checks: list[Callable[[str], str]] = []


def registration_token_blueprint_check_register(check: Callable[[str], str]) -> None:
    """Register ``check(name) -> name as stored``; it raises ``ServiceError`` if there is
    no blueprint of that name. Called when a token restricted to a blueprint is made."""
    if check not in _blueprint_name_checks:
        _blueprint_name_checks.append(check)


def _field_error(field_name: str, message: str) -> ServiceError:
    return ServiceError(
        f"{field_name.replace('_', ' ')}: {message}", details={"fields": {field_name: [message]}}
    )


def registration_token_labels_clean(labels: Iterable[str]) -> list[str]:
    """The labels, stripped, without repeats, in order; ``ServiceError`` naming a bad one."""
    cleaned: list[str] = []
    for raw in labels:
        label = str(raw).strip()
        if not label:
            continue
        if not _TOKEN_LABEL.fullmatch(label):
            raise _field_error(
                "labels",
                f"{label[:80]!r} is not a label: up to 64 letters, digits and . _ : = / -, "
                "starting with a letter or digit",
            )
        if label not in cleaned:
            cleaned.append(label)
    if len(cleaned) > REGISTRATION_TOKEN_MAX_LABELS:
        raise _field_error("labels", f"at most {REGISTRATION_TOKEN_MAX_LABELS} labels")
    return cleaned


def registration_token_machine_pattern_clean(pattern: str) -> str:
    """A glob on client machines (``*.prod.example.com``), stripped; ``ServiceError`` if it
    could never match a valid name."""
    pattern = pattern.strip()
    if not pattern:
        return ""
    # A pattern is a host name in which * ? [ ] ! stand for what they match.
    skeleton = re.sub(r"\[!?[^\]]*\]|[*?]", "a", pattern)
    if len(pattern) > 255 or client_machine_problem(skeleton):
        raise _field_error(
            "machine_pattern",
            "a host name glob, e.g. *.prod.example.com (letters, digits, . - _ and the "
            "wildcards * ? [ ])",
        )
    return pattern


def registration_token_create(
    *,
    description: str,
    valid_for: dt.timedelta,
    reusable: bool = False,
    approve_on_register: bool = False,
    labels: Iterable[str] = (),
    machine_pattern: str = "",
    blueprint: str = "",
    created_by: Any = None,
) -> tuple[RegistrationToken, str]:
    """A new registration token and its secret value, which is shown only this once.

    ``labels`` are what registration rules can trust (``token_labels``): the agent cannot
    choose them. ``machine_pattern`` restricts the client machines the token registers;
    ``blueprint`` is the only blueprint an approval through the token may apply.
    """
    if valid_for <= dt.timedelta(0):
        raise ServiceError("a registration token must be valid for some time")
    cleaned_labels = registration_token_labels_clean(labels)
    machine_pattern = registration_token_machine_pattern_clean(machine_pattern)
    blueprint = blueprint.strip()
    if blueprint:
        for check in _blueprint_name_checks:
            blueprint = check(blueprint)
    value = f"cyreg_{secrets.token_urlsafe(32)}"
    token = RegistrationToken.objects.create(
        description=description,
        token_hash=_token_hash(value),
        token_prefix=value[:8],
        reusable=reusable,
        approve_on_register=approve_on_register,
        labels=cleaned_labels,
        machine_pattern=machine_pattern,
        blueprint=blueprint,
        expires_at=timezone.now() + valid_for,
        created_by=created_by,
    )
    return token, value


def registration_token_revoke(*, token: RegistrationToken) -> RegistrationToken:
    token.revoked = True
    token.save(update_fields=["revoked"])
    return token


def _registration_token_check(value: str) -> RegistrationToken:
    """The token if it may be used now; raises the reason it may not."""
    token = RegistrationToken.objects.filter(token_hash=_token_hash(value)).first()
    refused = "the registration token is not valid"
    if token is None or token.revoked:
        raise ServiceError(refused, code="token_invalid", http_status=401)
    if token.expires_at <= timezone.now():
        raise ServiceError(
            "the registration token has expired", code="token_expired", http_status=401
        )
    if not token.reusable and token.use_count:
        raise _token_used()
    return token


def _registration_token_machine_check(token: RegistrationToken, client_machine: str) -> None:
    """Refuse a claimed machine the token does not allow (before the token is spent)."""
    if token.machine_pattern and not glob_compile(token.machine_pattern).fullmatch(client_machine):
        raise ServiceError(
            f"this registration token is only for client machines matching "
            f"{token.machine_pattern!r}, not {client_machine!r}",
            code="machine_not_allowed",
            http_status=403,
        )


def _token_used() -> ServiceError:
    return ServiceError(
        "the registration token has already been used", code="token_used", http_status=401
    )


def _registration_token_spend(value: str) -> RegistrationToken:
    """Check and spend a token atomically; the caller holds the transaction."""
    token = _registration_token_check(value)
    spent = RegistrationToken.objects.filter(pk=token.pk)
    if not token.reusable:
        spent = spent.filter(use_count=0)
    if not spent.update(use_count=F("use_count") + 1, last_used_at=timezone.now()):
        raise _token_used()  # spent by a registration at the same moment
    return token


# --- Registration and identity -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    orchestrator: Orchestrator
    certificate_pem: str
    ca_chain: list[str]


def csr_load(pem: str) -> x509.CertificateSigningRequest:
    """A CSR whose signature verifies and whose key is one agents may use (EC P-256/384)."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError as exc:
        raise ServiceError(f"csr: not a valid PEM certificate signing request ({exc})") from exc
    if not csr.is_signature_valid:
        raise ServiceError("csr: the signature does not match its public key")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
    ):
        raise ServiceError("csr: the agent key must be an EC P-256 or P-384 key")
    return csr


def _spki_sha256(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _identity_fields(
    public_key: ec.EllipticCurvePublicKey, certificate: x509.Certificate
) -> dict[str, Any]:
    """The orchestrator's identity fields for a key and the certificate issued for it."""
    return {
        "public_key_sha256": _spki_sha256(public_key),
        "public_key_pem": public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "certificate_pem": certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "certificate_not_after": certificate.not_valid_after_utc,
    }


def _status_after_registration(
    outcome: RegistrationOutcome, registration_token: RegistrationToken
) -> str:
    if outcome.verdict == Verdict.ALLOW:
        return Orchestrator.Status.APPROVED
    if outcome.verdict == Verdict.DENY:
        return Orchestrator.Status.DISAPPROVED
    if registration_token.approve_on_register:
        return Orchestrator.Status.APPROVED
    return Orchestrator.Status.NEW


def orchestrator_register(
    *,
    token: str,
    name: str,
    client_machine: str,
    agent_version: str,
    capabilities: list[str],
    client_parameters: dict[str, str],
    csr_pem: str,
    source_address: str | None,
) -> Registration:
    """Record an agent and certify its key; the registration handlers decide its status.

    The enabled registration handlers run in order before anything is written; the first
    to allow or deny decides. When all defer, the token decides: approved if it
    pre-approves, else New for an administrator. Handlers get what the agent claims and,
    separately, what the platform verified (the token's labels and restrictions, the
    source address, the key). A token restricted to a machine pattern refuses other
    machines (403 ``machine_not_allowed``, the token unspent); one restricted to a
    blueprint lets no approval apply another (the orchestrator is left New instead).

    An orchestrator of the same name on the same machine is never inherited by a new key:
    after its certificate was revoked only its own key may register it again (409
    ``identity_revoked`` otherwise); after an administrator reset it, the next
    registration takes it over (stores and history kept) but stays New until an
    administrator approves it. A handler may withhold the client certificate: the
    orchestrator is then recorded without an identity and the agent is told to register
    again later.
    """
    problem = client_machine_problem(client_machine)
    if problem:
        raise ServiceError(
            f"client_machine: {problem}", details={"fields": {"client_machine": [problem]}}
        )
    csr = csr_load(csr_pem)
    public_key = csr.public_key()
    # Refuse a bad token before doing any work for its bearer.
    checked_token = _registration_token_check(token)
    _registration_token_machine_check(checked_token, client_machine)
    # Refuse a taken name before the handlers run or a certificate is issued (checked
    # again under the lock below).
    existing = Orchestrator.objects.filter(name=name, client_machine=client_machine).first()
    if existing is not None:
        _existing_row_check(existing, public_key, name=name, client_machine=client_machine)
    outcome = registration_handlers_run(
        RegistrationRequest(
            name=name,
            client_machine=client_machine,
            agent_version=agent_version,
            capabilities=tuple(capabilities),
            client_parameters=dict(client_parameters),
            csr_pem=csr_pem,
            source_address=source_address,
            token_id=checked_token.pk,
            token_description=checked_token.description,
            token_labels=tuple(checked_token.labels or ()),
            token_machine_pattern=checked_token.machine_pattern,
            token_blueprint=checked_token.blueprint,
            token_approves=checked_token.approve_on_register,
            public_key_sha256=_spki_sha256(public_key),
        )
    )
    decision = outcome.decision
    withheld = decision is not None and not decision.issue_certificate
    ca = orchestrator_ca_get_or_create()
    identity: dict[str, Any] = {
        "public_key_sha256": "",
        "public_key_pem": "",
        "certificate_pem": "",
        "certificate_not_after": None,
        "last_assertion_at": 0,
    }
    certificate_pem = ""
    if not withheld:
        certificate = ca_issue_client_certificate(
            ca=ca, csr=csr, common_name=name, days=settings.CERTYARD_AGENT_CERT_DAYS
        )
        identity = {**_identity_fields(public_key, certificate), "last_assertion_at": 0}
        certificate_pem = identity["certificate_pem"]
    now = timezone.now()
    with transaction.atomic():
        registration_token = _registration_token_spend(token)
        # The token as spent: its restrictions are checked again under the lock, in case
        # it changed since (the admin cannot edit them, but a data migration could).
        _registration_token_machine_check(registration_token, client_machine)
        existing = (
            Orchestrator.objects.select_for_update()
            .filter(name=name, client_machine=client_machine)
            .first()
        )
        taken_over = existing is not None and _existing_row_check(
            existing, public_key, name=name, client_machine=client_machine
        )
        status = _status_after_registration(outcome, registration_token)
        notes: list[str] = []
        if withheld:
            notes.append(
                f"client certificate withheld by the registration handler {outcome.decided_by}"
            )
            if status == Orchestrator.Status.APPROVED:
                status = Orchestrator.Status.NEW  # it cannot work without a certificate
        blueprint = decision.blueprint if decision is not None else None
        if (
            blueprint
            and registration_token.blueprint
            and blueprint.strip().casefold() != registration_token.blueprint.casefold()
        ):
            notes.append(
                f"{outcome.decided_by} named the blueprint {blueprint!r}, but the registration "
                f"token allows only {registration_token.blueprint!r}: not applied, and the "
                "approval is left to an administrator"
            )
            blueprint = None
            if status == Orchestrator.Status.APPROVED:
                status = Orchestrator.Status.NEW
        if taken_over and status == Orchestrator.Status.APPROVED:
            # A new key takes over an orchestrator that had none (an administrator reset it,
            # or its certificate was withheld): its stores (and their passwords) go to that
            # key only once an administrator approves it.
            notes.append(
                "registered with a new key into an orchestrator that had none (reset): an "
                "administrator approves it before it receives its stores"
            )
            status = Orchestrator.Status.NEW
            blueprint = None
        fields = {
            "agent_version": agent_version,
            "capabilities": capabilities,
            "client_parameters": client_parameters,
            "source_address": source_address,
            "registration_token": registration_token,
            "status": status,
            "status_changed_at": now,
            "status_changed_by": None,
            "last_seen": now,
            "last_error": "; ".join(notes),
            **identity,
        }
        if decision is not None and decision.metadata:
            fields["metadata"] = {str(k): str(v) for k, v in decision.metadata.items()}
            fields["metadata_changed_at"] = now
            fields["metadata_changed_by"] = None  # the deciding registration handler
        if existing is None:
            orchestrator = Orchestrator.objects.create(
                name=name, client_machine=client_machine, **fields
            )
        else:
            for key, value in fields.items():
                setattr(existing, key, value)
            existing.save()
            orchestrator = existing
        registration_runs_record(
            outcome, orchestrator_id=str(orchestrator.pk), orchestrator_label=str(orchestrator)
        )
        _orchestrator_event(
            EventKind.ORCHESTRATOR_REGISTERED,
            orchestrator,
            verdict=outcome.verdict.value,
            decided_by=outcome.decided_by,
            blueprint=blueprint,
            certificate_withheld=withheld,
        )
        if status in _STATUS_EVENTS:
            _orchestrator_event(_STATUS_EVENTS[status], orchestrator, actor=None)
        if status == Orchestrator.Status.APPROVED and blueprint:
            _blueprint_apply_on_commit(orchestrator, blueprint, decided_by=outcome.decided_by)
    if withheld:
        raise ServiceError(
            "registration recorded, but no client certificate is issued yet"
            f"{': ' + decision.reason if decision and decision.reason else ''}; "
            "register again once an administrator has approved this orchestrator",
            code="certificate_withheld",
            http_status=403,
        )
    return Registration(orchestrator, certificate_pem, [ca.certificate_pem])


def _existing_row_check(
    existing: Orchestrator,
    public_key: ec.EllipticCurvePublicKey,
    *,
    name: str,
    client_machine: str,
) -> bool:
    """May this registration use the orchestrator row of the same name and machine?

    Only the holder of the row's key may take it back (a CSR proves possession: its
    signature verifies), and only once its certificate was revoked, for any reason but key
    compromise. A row an administrator reset has no key: the next registration takes it
    over, and True says so (the caller leaves it for an administrator to approve). Anything
    else is refused: a new key never inherits a row, its stores or their secrets.
    """
    if not existing.has_identity:
        return True
    revoked = _revoked_issue(existing.certificate_pem)
    if revoked is None:
        raise Conflict(
            f"an orchestrator named {name} on {client_machine} is already registered; "
            "an administrator must reset it before it can register again",
            code="already_registered",
        )
    same_key = _spki_sha256(public_key) == existing.public_key_sha256
    if same_key and revoked.revocation_reason != RevocationReason.KEY_COMPROMISE:
        return False
    why = (
        "its key was reported compromised, so that key proves nothing"
        if same_key
        else "only the agent holding its key may register it again"
    )
    raise Conflict(
        f"an orchestrator named {name} on {client_machine} exists and its certificate was "
        f"revoked; {why}. An administrator can reset it to let a new key take it over, or "
        "register under another name",
        code="identity_revoked",
    )


def _revoked_issue(certificate_pem: str) -> IssuedCertificate | None:
    """The revoked IssuedCertificate behind a PEM certificate; None if it is not revoked."""
    if not issued_is_revoked(certificate_pem=certificate_pem):
        return None
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    sha256 = certificate.fingerprint(hashes.SHA256()).hex()
    return IssuedCertificate.objects.filter(sha256=sha256, revoked_at__isnull=False).first()


def _orchestrator_event(kind: EventKind, orchestrator: Orchestrator, **data: Any) -> None:
    event_emit(
        kind=kind,
        subject_type="orchestrator",
        subject_id=orchestrator.pk,
        subject_label=str(orchestrator),
        data={
            "orchestrator_id": str(orchestrator.pk),
            "name": orchestrator.name,
            "client_machine": orchestrator.client_machine,
            "status": orchestrator.status,
            "client_parameters": orchestrator.client_parameters,
            "metadata": dict(orchestrator.metadata or {}),
            **data,
        },
    )


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    expires_in: int
    orchestrator: Orchestrator


def _certificate_revoked_error() -> ServiceError:
    return ServiceError(
        "this orchestrator's certificate was revoked",
        code="identity_rejected",
        http_status=401,
        # For agents: register again; no retry with the same key can succeed.
        details={"reason": "certificate_revoked"},
    )


def orchestrator_session_open(
    *, orchestrator_id: str, issued_at: int, nonce: str, signature_b64: str
) -> Session:
    """A short-lived bearer token for an agent that proved it holds its certified key.

    Refused when the orchestrator's current certificate was revoked.
    """
    refused = ServiceError(
        "the assertion does not prove possession of a registered orchestrator key",
        code="identity_rejected",
        http_status=401,
    )
    orchestrator = Orchestrator.objects.filter(pk=orchestrator_id).first()
    if orchestrator is None or not orchestrator.has_identity:
        raise refused
    now = int(timezone.now().timestamp())
    if abs(now - issued_at) > SESSION_ASSERTION_MAX_SKEW_SECONDS:
        raise ServiceError(
            "the assertion's issued_at is too far from the platform's clock; "
            "check the agent's time",
            code="clock_skew",
            http_status=401,
        )
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key = serialization.load_pem_public_key(orchestrator.public_key_pem.encode())
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise refused
        public_key.verify(
            signature,
            session_signing_input(
                orchestrator_id=str(orchestrator.pk), issued_at=issued_at, nonce=nonce
            ),
            ec.ECDSA(hashes.SHA256()),
        )
    except (binascii.Error, ValueError, InvalidSignature) as exc:
        raise refused from exc
    # Only the key's holder learns that its certificate was revoked.
    if issued_is_revoked(certificate_pem=orchestrator.certificate_pem):
        raise _certificate_revoked_error()
    # Each assertion is good once: issued_at must move forward.
    if not Orchestrator.objects.filter(pk=orchestrator.pk, last_assertion_at__lt=issued_at).update(
        last_assertion_at=issued_at, last_seen=timezone.now()
    ):
        raise ServiceError(
            "this assertion was already used; sign a new one", code="replayed", http_status=401
        )
    token = signing.dumps(
        {"o": str(orchestrator.pk), "c": _identity_fingerprint(orchestrator)}, salt=_SESSION_SALT
    )
    return Session(token, settings.CERTYARD_SESSION_SECONDS, orchestrator)


def orchestrator_from_session_token(token: str) -> Orchestrator | None:
    """The orchestrator a valid, unexpired session token belongs to, if its key still stands.

    Raises ``identity_rejected`` (401) when its certificate was revoked since: the agent
    is locked out at once, and told why.
    """
    try:
        claims = signing.loads(token, salt=_SESSION_SALT, max_age=settings.CERTYARD_SESSION_SECONDS)
    except signing.BadSignature:
        return None
    orchestrator = Orchestrator.objects.filter(pk=claims.get("o")).first()
    if orchestrator is None or not orchestrator.has_identity:
        return None
    if _identity_fingerprint(orchestrator) != claims.get("c"):
        return None  # reset, renewed or registered again since: a new certificate
    if issued_is_revoked(certificate_pem=orchestrator.certificate_pem):  # one indexed query
        raise _certificate_revoked_error()
    return orchestrator


def _identity_fingerprint(orchestrator: Orchestrator) -> str:
    """Names the current certificate: every registration and renewal issues a new one."""
    return hashlib.sha256(orchestrator.certificate_pem.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class CertificateTimes:
    not_after: dt.datetime | None
    renew_after: dt.datetime | None


def orchestrator_certificate_times(orchestrator: Orchestrator) -> CertificateTimes:
    """When the orchestrator's certificate expires, and from when its agent should renew it:
    once less than ``CERTYARD_AGENT_RENEW_FRACTION`` of its lifetime is left."""
    if not orchestrator.certificate_pem:
        return CertificateTimes(orchestrator.certificate_not_after, None)
    try:
        certificate = x509.load_pem_x509_certificate(orchestrator.certificate_pem.encode())
    except ValueError:
        return CertificateTimes(orchestrator.certificate_not_after, None)
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    fraction = min(max(float(settings.CERTYARD_AGENT_RENEW_FRACTION), 0.0), 1.0)
    return CertificateTimes(not_after, not_after - (not_after - not_before) * fraction)


# Longer than a long poll (30 s at most): an agent that only polls writes every other poll.
_SEEN_WRITE_INTERVAL = dt.timedelta(seconds=60)


def orchestrator_seen(*, orchestrator: Orchestrator) -> None:
    """Note the agent is alive, without writing on every request."""
    now = timezone.now()
    if orchestrator.last_seen is None or now - orchestrator.last_seen > _SEEN_WRITE_INTERVAL:
        Orchestrator.objects.filter(pk=orchestrator.pk).update(last_seen=now)
        orchestrator.last_seen = now


# --- Limits the agent reports -----------------------------------------------------


def orchestrator_limits_record(
    *, orchestrator: Orchestrator, store_roots: list[str], max_file_bytes: int
) -> Orchestrator:
    """Keep the store roots and file size limit the agent reported (POST limits).

    The agent is the authority on its own machine: what it says replaces what it said
    before, whole. Store forms and the API check store paths against these roots with
    ``orchestrators.roots.store_path_problem`` (the message the agent itself gives).
    The caller has checked the shape (absolute paths, bounded count and lengths).
    """
    # Order kept, duplicates dropped: the console shows them as the agent listed them.
    roots = list(dict.fromkeys(store_roots))
    now = timezone.now()
    Orchestrator.objects.filter(pk=orchestrator.pk).update(
        store_roots=roots, max_file_bytes=max_file_bytes, limits_reported_at=now
    )
    orchestrator.store_roots = roots
    orchestrator.max_file_bytes = max_file_bytes
    orchestrator.limits_reported_at = now
    return orchestrator


# --- Lock-out hooks ----------------------------------------------------------------

# Apps above fleet (jobs) register here what must happen when an orchestrator loses the
# right to work: fleet never imports them.
_lockout_hooks: list[Callable[[Orchestrator], None]] = []


def orchestrator_lockout_hook_register(hook: Callable[[Orchestrator], None]) -> None:
    """Call ``hook(orchestrator)`` inside the transaction that disapproves or resets one,
    or revokes its certificate."""
    if hook not in _lockout_hooks:
        _lockout_hooks.append(hook)


def _lockout_hooks_run(orchestrator: Orchestrator) -> None:
    for hook in _lockout_hooks:
        hook(orchestrator)


# --- Blueprints ---------------------------------------------------------------------

# Blueprints live above fleet (they hold stores); a registration handler names one, and
# fleet hands the name to the applier the blueprints app registered at startup.
_blueprint_appliers: list[Callable[..., None]] = []


def orchestrator_blueprint_applier_register(applier: Callable[..., None]) -> None:
    """Register ``applier(*, orchestrator, blueprint_name, decided_by)``, called after commit.

    It runs once a registration handler approved an orchestrator and named a blueprint;
    ``decided_by`` is that handler registration's name (the jobs it opens record it).
    It must not raise for a blueprint that does not exist: it records why instead.
    """
    if applier not in _blueprint_appliers:
        _blueprint_appliers.append(applier)


def _blueprint_apply_on_commit(
    orchestrator: Orchestrator, blueprint_name: str, *, decided_by: str = ""
) -> None:
    def apply() -> None:
        for applier in _blueprint_appliers:
            applier(orchestrator=orchestrator, blueprint_name=blueprint_name, decided_by=decided_by)

    transaction.on_commit(apply)


# --- Approval ---------------------------------------------------------------------


_STATUS_EVENTS = {
    Orchestrator.Status.APPROVED: EventKind.ORCHESTRATOR_APPROVED,
    Orchestrator.Status.DISAPPROVED: EventKind.ORCHESTRATOR_DISAPPROVED,
}


def _status_set(*, orchestrator: Orchestrator, status: str, actor: Any) -> Orchestrator:
    with transaction.atomic():
        changed = orchestrator.status != status
        orchestrator.status = status
        orchestrator.status_changed_at = timezone.now()
        orchestrator.status_changed_by = actor
        orchestrator.save(update_fields=["status", "status_changed_at", "status_changed_by"])
        if changed and status in _STATUS_EVENTS:
            _orchestrator_event(
                _STATUS_EVENTS[status], orchestrator, actor=getattr(actor, "username", None)
            )
    return orchestrator


def orchestrator_approve(*, orchestrator: Orchestrator, actor: Any) -> Orchestrator:
    if not orchestrator.has_identity:
        raise ServiceError(
            "this orchestrator was reset; it must register again before it can be approved",
            code="not_registered",
        )
    return _status_set(orchestrator=orchestrator, status=Orchestrator.Status.APPROVED, actor=actor)


def orchestrator_disapprove(*, orchestrator: Orchestrator, actor: Any) -> Orchestrator:
    """Refuse the agent all work; jobs it held go back to the queue for later."""
    with transaction.atomic():
        _status_set(orchestrator=orchestrator, status=Orchestrator.Status.DISAPPROVED, actor=actor)
        _lockout_hooks_run(orchestrator)
    return orchestrator


def orchestrator_reset(*, orchestrator: Orchestrator, actor: Any) -> Orchestrator:
    """Forget the agent's key: it can do nothing until it registers again (stores are kept)."""
    with transaction.atomic():
        orchestrator.public_key_sha256 = ""
        orchestrator.public_key_pem = ""
        orchestrator.certificate_pem = ""
        orchestrator.certificate_not_after = None
        orchestrator.last_assertion_at = 0
        orchestrator.save(
            update_fields=[
                "public_key_sha256",
                "public_key_pem",
                "certificate_pem",
                "certificate_not_after",
                "last_assertion_at",
            ]
        )
        _status_set(orchestrator=orchestrator, status=Orchestrator.Status.NEW, actor=actor)
        _lockout_hooks_run(orchestrator)
    return orchestrator


# --- Metadata --------------------------------------------------------------------------

ORCHESTRATOR_METADATA_MAX_KEYS = 50
ORCHESTRATOR_METADATA_MAX_BYTES = 8192
ORCHESTRATOR_METADATA_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
MetadataValue = str | int | float | bool


def orchestrator_metadata_check(metadata: Any) -> dict[str, MetadataValue]:
    """``metadata`` as an orchestrator keeps it; ServiceError (field ``metadata``) if not.

    A flat JSON object: at most 50 keys, each a letter then letters, digits, ``_``,
    ``-`` or ``.`` (at most 64 characters), each value a string, a (finite) number or a
    boolean; at most 8 KiB as compact JSON (UTF-8). Nothing nested, no null: handlers and
    filters read the values as they are.
    """
    if not isinstance(metadata, dict):
        raise ServiceError(
            'metadata must be a JSON object of keys and values, like {"team": "web"}',
            field="metadata",
        )
    problems = []
    if len(metadata) > ORCHESTRATOR_METADATA_MAX_KEYS:
        problems.append(
            f"at most {ORCHESTRATOR_METADATA_MAX_KEYS} keys are allowed, {len(metadata)} were given"
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not ORCHESTRATOR_METADATA_KEY.fullmatch(key):
            problems.append(
                f"key {str(key)[:80]!r}: a letter, then letters, digits, _, - or . "
                "(at most 64 characters)"
            )
        elif not isinstance(value, str | int | float) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            kind = "null" if value is None else type(value).__name__
            problems.append(f"key {key!r}: a string, a number or true/false, not {kind}")
        elif isinstance(value, str) and "\x00" in value:
            problems.append(f"key {key!r}: the value holds a NUL character")
    if not problems:
        size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
        if size > ORCHESTRATOR_METADATA_MAX_BYTES:
            problems.append(
                f"at most {ORCHESTRATOR_METADATA_MAX_BYTES} bytes of JSON are allowed, "
                f"this is {size}"
            )
    if problems:
        raise ServiceError("; ".join(problems), fields={"metadata": problems})
    return dict(metadata)


def orchestrator_metadata_set(
    *, orchestrator: Orchestrator, metadata: Any, actor: Any
) -> Orchestrator:
    """Replace the orchestrator's metadata (see :func:`orchestrator_metadata_check`).

    Records who changed it and when (``metadata_changed_by``/``_at``) and logs the keys
    added, changed and removed with the actor's name; a registration handler's decision
    replaces it again the next time the agent registers.
    """
    checked = orchestrator_metadata_check(metadata)
    with transaction.atomic():
        locked = Orchestrator.objects.select_for_update().get(pk=orchestrator.pk)
        before = dict(locked.metadata or {})
        orchestrator.metadata = checked
        orchestrator.metadata_changed_at = timezone.now()
        orchestrator.metadata_changed_by = actor
        orchestrator.save(update_fields=["metadata", "metadata_changed_at", "metadata_changed_by"])
    added = sorted(set(checked) - set(before))
    removed = sorted(set(before) - set(checked))
    changed = sorted(key for key in set(checked) & set(before) if checked[key] != before[key])
    # Key names only: values may be whatever an administrator typed.
    logger.info(
        "orchestrator %s metadata set by %s: added %s, changed %s, removed %s",
        orchestrator.pk,
        getattr(actor, "username", None) or "-",
        ", ".join(added) or "-",
        ", ".join(changed) or "-",
        ", ".join(removed) or "-",
    )
    return orchestrator


# --- Certificate renewal and revocation ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Renewal:
    orchestrator: Orchestrator
    certificate_pem: str
    ca_chain: list[str]
    times: CertificateTimes


def orchestrator_certificate_renew(*, orchestrator: Orchestrator, csr_pem: str) -> Renewal:
    """A new client certificate for the agent, named as before; its status does not change.

    The agent renews before its certificate expires, without an administrator. The CSR is
    normally for a new key, but one for the current key is accepted too (an agent that
    lost the answer to a renewal asks again for the key it then kept). The previous
    certificate is not revoked: it is superseded and expires on its own. Sessions are
    bound to the certificate they were opened with, so the agent's session ends here: it
    opens a new one, signed by the key of the new certificate.

    A disapproved orchestrator may not renew; a new one may (it is waiting for approval,
    and its certificate should not lapse meanwhile).
    """
    csr = csr_load(csr_pem)
    public_key = csr.public_key()
    ca = orchestrator_ca_get_or_create()
    with transaction.atomic():
        locked = Orchestrator.objects.select_for_update().filter(pk=orchestrator.pk).first()
        if locked is None or not locked.has_identity:
            raise ServiceError(
                "this orchestrator was reset or deleted; it must register again",
                code="identity_rejected",
                http_status=401,
            )
        if locked.status == Orchestrator.Status.DISAPPROVED:
            raise ServiceError(
                "this orchestrator is disapproved: it may not renew its certificate",
                code="disapproved",
                http_status=403,
            )
        if _identity_fingerprint(locked) != _identity_fingerprint(orchestrator):
            raise Conflict(
                "the certificate was renewed by another request meanwhile; open a new session "
                "with the key of the current certificate",
                code="renewed_meanwhile",
            )
        if issued_is_revoked(certificate_pem=locked.certificate_pem):
            raise _certificate_revoked_error()
        certificate = ca_issue_client_certificate(
            ca=ca, csr=csr, common_name=locked.name, days=settings.CERTYARD_AGENT_CERT_DAYS
        )
        fields = _identity_fields(public_key, certificate)
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save(update_fields=list(fields))
    return Renewal(
        locked, locked.certificate_pem, [ca.certificate_pem], orchestrator_certificate_times(locked)
    )


def orchestrator_certificate_revoke(
    *, orchestrator: Orchestrator, reason: int = RevocationReason.UNSPECIFIED, actor: Any = None
) -> Orchestrator:
    """Revoke the orchestrator's current client certificate: its agent is locked out at once.

    Its open sessions and any new one are refused, jobs it held go back to the queue, and
    the certificate is listed on the orchestrator CA's CRL. The orchestrator keeps its
    status, stores and history; its agent can work again only by registering again (no
    reset needed). ``reason`` is an RFC 5280 CRLReason code.
    """
    with transaction.atomic():
        locked = Orchestrator.objects.select_for_update().get(pk=orchestrator.pk)
        if not locked.has_identity:
            raise Conflict(
                "this orchestrator has no certificate (it was reset): there is nothing to revoke",
                code="not_registered",
            )
        try:
            certificate = x509.load_pem_x509_certificate(locked.certificate_pem.encode())
        except ValueError as exc:
            raise Conflict(
                "this orchestrator's certificate cannot be read; reset the orchestrator instead",
                code="certificate_unreadable",
            ) from exc
        sha256 = certificate.fingerprint(hashes.SHA256()).hex()
        issued = IssuedCertificate.objects.filter(sha256=sha256).first()
        if issued is None:
            raise Conflict(
                "this orchestrator's certificate is not among those the platform's CAs record "
                "(it was issued before they were kept); reset the orchestrator to lock it out",
                code="certificate_unknown",
            )
        revoked = certificate_revoke(issued=issued, reason=reason, actor=actor)
        who = getattr(actor, "username", "") or "the platform"
        locked.last_error = (
            f"client certificate (serial {revoked.serial_number}) revoked by {who} on "
            f"{revoked.revoked_at:%Y-%m-%d %H:%M %Z}, reason: "
            f"{RevocationReason(revoked.revocation_reason).label}; "
            "the agent must register again"
        )
        locked.save(update_fields=["last_error"])
        _lockout_hooks_run(locked)
    return locked
