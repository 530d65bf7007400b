"""An orchestrator registers: its CSR and proof of key, the registration handlers' verdict, and
the client certificate it gets.
"""

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from certyard.errors import Conflict, ServiceError
from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.fleet.services.hooks import blueprint_apply_on_commit
from certyard.fleet.services.machines import client_machine_problem
from certyard.fleet.services.tokens import (
    registration_token_check,
    registration_token_machine_check,
    registration_token_spend,
)
from certyard.pki.models import IssuedCertificate, RevocationReason
from certyard.pki.services import (
    ca_issue_client_certificate,
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


def spki_sha256(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def identity_fields(
    public_key: ec.EllipticCurvePublicKey, certificate: x509.Certificate
) -> dict[str, Any]:
    """The orchestrator's identity fields for a key and the certificate issued for it."""
    return {
        "public_key_sha256": spki_sha256(public_key),
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
    checked_token = registration_token_check(token)
    registration_token_machine_check(checked_token, client_machine)
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
            public_key_sha256=spki_sha256(public_key),
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
        identity = {**identity_fields(public_key, certificate), "last_assertion_at": 0}
        certificate_pem = identity["certificate_pem"]
    now = timezone.now()
    with transaction.atomic():
        registration_token = registration_token_spend(token)
        # The token as spent: its restrictions are checked again under the lock, in case
        # it changed since (the admin cannot edit them, but a data migration could).
        registration_token_machine_check(registration_token, client_machine)
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
        orchestrator_event_emit(
            EventKind.ORCHESTRATOR_REGISTERED,
            orchestrator,
            verdict=outcome.verdict.value,
            decided_by=outcome.decided_by,
            blueprint=blueprint,
            certificate_withheld=withheld,
        )
        if status in STATUS_EVENTS:
            orchestrator_event_emit(STATUS_EVENTS[status], orchestrator, actor=None)
        if status == Orchestrator.Status.APPROVED and blueprint:
            blueprint_apply_on_commit(orchestrator, blueprint, decided_by=outcome.decided_by)
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
    same_key = spki_sha256(public_key) == existing.public_key_sha256
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


STATUS_EVENTS = {
    Orchestrator.Status.APPROVED: EventKind.ORCHESTRATOR_APPROVED,
    Orchestrator.Status.DISAPPROVED: EventKind.ORCHESTRATOR_DISAPPROVED,
}


def orchestrator_event_emit(kind: EventKind, orchestrator: Orchestrator, **data: Any) -> None:
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
