"""Re-enrollment with a key made on the device: the agent's CSR, signed through enrollment.

A ``reenrollment`` job (queued by renew-and-replace, ``renewal``) asks the agent to make a
key where the store is and send a CSR for the names the job names. The CSR goes through
enrollment's own services as the deployment's requester — the template's rules, its
approval and its gateway all apply — as a renewal of the old certificate. The private
key never leaves the machine: the platform sees only the CSR and answers with the
certificate (issued), or tells the agent to keep the key until approval (pending).

Everything in the CSR is attacker-written: it must ask for exactly the subject, names and
key the job asked for, so an agent cannot get another name signed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.db import transaction

from certyard.deployment.models import Deployment, DeploymentBatch
from certyard.deployment.services.agent_jobs import job_require_leased, reported_job
from certyard.enrollment import policy
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.enrollment.services import EnrollmentRefused, enrollment_submit_csr
from certyard.errors import Conflict, ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import Certificate
from certyard.jobs.models import Job
from orchestrators.protocol import JobType

State = EnrollmentRequest.State
_WAITING = (State.PENDING, State.APPROVED, State.AWAITING_CA)
_RESULT_KEY = "csr"  # Job.result[...]: which enrollment this attempt's CSR made


@dataclass(frozen=True, slots=True)
class CsrAnswer:
    """The answer to ``POST jobs/<id>/csr``: 200 issued or 202 pending."""

    enrollment: EnrollmentRequest

    @property
    def issued(self) -> bool:
        return self.enrollment.state == State.ISSUED

    @property
    def http_status(self) -> int:
        return 200 if self.issued else 202

    def as_dict(self) -> dict[str, Any]:
        if not self.issued:
            return {"state": "pending", "enrollment_id": str(self.enrollment.pk)}
        return {
            "state": "issued",
            "certificate": self.enrollment.certificate_pem,
            "chain": _pem_split(self.enrollment.chain_pem),
            "enrollment_id": str(self.enrollment.pk),
        }


def _pem_split(text: str) -> list[str]:
    marker = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + marker + "\n" for part in text.split(marker) if part.strip()]


def reenrollment_csr_submit(
    *, orchestrator: Orchestrator, job_id: Any, attempt: int | None, csr_pem: Any
) -> CsrAnswer:
    """Submit the agent's CSR for its ``reenrollment`` job (leased, at ``attempt``).

    Issued: the answer carries the certificate and chain; the deployment records the
    enrollment and that the key was made on the device. Pending (approval, or a CA that
    answers later): the deployment waits (``awaiting_approval``); when the request is
    issued, the deployment app's issued hook queues an ``add`` job naming the device's
    key. Refused by the template: ``EnrollmentRefused`` (4xx, the template's message) and
    the deployment failed. The same attempt's CSR sent again gets the same answer (the
    first CSR's enrollment); a re-offered job's new attempt may submit a new one.
    """
    job = reported_job(
        orchestrator=orchestrator,
        job_id=job_id,
        attempt=attempt,
        job_type=JobType.REENROLLMENT,
    )
    earlier = _attempt_enrollment(job)
    if earlier is not None:
        return _answer(earlier)
    job_require_leased(job)
    deployment = _deployment_of(job)
    payload = job.payload or {}
    template = Template.objects.filter(pk=payload.get("template_id")).first()
    if template is None:
        raise Conflict("the job's template no longer exists", code="template_gone")
    renewal_of = Certificate.objects.filter(pk=payload.get("renewal_of")).first()
    if not isinstance(csr_pem, str):
        raise ServiceError("csr is a PEM certificate signing request", field="csr")
    try:
        csr = policy.csr_parse(csr_pem)
    except policy.PolicyError as exc:
        raise ServiceError(str(exc), code="invalid_csr", field="csr") from exc
    _csr_require_asked(csr, payload)
    _claim(job)
    try:
        request = enrollment_submit_csr(
            template_name=template.name,
            csr_pem=csr_pem,
            metadata=_metadata(renewal_of),
            actor=deployment.requested_by,
            type=EnrollmentRequest.Type.RENEW if renewal_of else EnrollmentRequest.Type.NEW,
            renewal_of=renewal_of,
        )
    except EnrollmentRefused as exc:
        refused = EnrollmentRequest.objects.filter(pk=exc.details.get("enrollment_id")).first()
        _record(job, deployment, refused, failed_message=exc.message)
        raise
    except Exception:
        _unclaim(job)
        raise
    _record(job, deployment, request)
    return _answer(request)


def _deployment_of(job: Job) -> Deployment:
    deployment = (
        Deployment.objects.select_related("batch", "requested_by")
        .filter(pk=(job.payload or {}).get("deployment_id"), job_id=job.pk)
        .first()
    )
    if deployment is None or deployment.action != Deployment.Action.REENROLL:
        raise Conflict(
            "this re-enrollment job has no deployment to deliver to (it was cancelled)",
            code="no_deployment",
        )
    if deployment.state not in (Deployment.State.PENDING, Deployment.State.RUNNING):
        raise Conflict(
            f"the deployment is {deployment.get_state_display().lower()}",
            code="deployment_finished",
        )
    return deployment


def _metadata(renewal_of: Certificate | None) -> dict[str, Any]:
    """A renewal keeps the metadata its certificate was enrolled with (the template may
    require some)."""
    if renewal_of is None:
        return {}
    original = (
        EnrollmentRequest.objects.filter(certificate=renewal_of, state=State.ISSUED)
        .order_by("-issued_at")
        .first()
    )
    return dict(original.metadata) if original is not None else {}


# --- The CSR must ask for what the job asked -----------------------------------------------


def _refuse(message: str) -> ServiceError:
    return ServiceError(
        f"the CSR does not match the re-enrollment job: {message}",
        code="csr_mismatch",
        field="csr",
    )


def _csr_require_asked(csr: x509.CertificateSigningRequest, payload: dict[str, Any]) -> None:
    try:
        wanted_subject = x509.Name.from_rfc4514_string(str(payload.get("subject") or ""))
    except ValueError as exc:
        raise Conflict(f"the job's subject cannot be read: {exc}", code="bad_job") from exc
    if csr.subject != wanted_subject:
        raise _refuse(
            f"it asks for the subject {csr.subject.rfc4514_string()[:300]!r}, the job for "
            f"{wanted_subject.rfc4514_string()!r}"
        )
    asked = _names_asked(payload.get("sans") or [])
    found = _names_in(csr)
    if found != asked:
        extra = sorted(found - asked)
        missing = sorted(asked - found)
        parts = []
        if extra:
            parts.append(f"names not asked for: {', '.join(extra)[:300]}")
        if missing:
            parts.append(f"names missing: {', '.join(missing)[:300]}")
        raise _refuse("; ".join(parts))
    problem = _key_problem(csr, payload)
    if problem:
        raise _refuse(problem)


def _name_text(kind: str, value: str) -> str:
    kind = kind.lower()
    if kind == "dns":
        return f"dns:{value.lower().rstrip('.')}"
    if kind == "ip":
        try:
            return f"ip:{ipaddress.ip_address(value)}"
        except ValueError:
            return f"ip:{value}"
    return f"{kind}:{value}"


def _names_asked(sans: Any) -> set[str]:
    names: set[str] = set()
    for san in sans if isinstance(sans, list) else []:
        if isinstance(san, dict):
            names.add(_name_text(str(san.get("type", "")), str(san.get("value", ""))))
    return names


def _names_in(csr: x509.CertificateSigningRequest) -> set[str]:
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    except ValueError as exc:
        raise _refuse(f"its subjectAltName cannot be read ({exc})") from exc
    names: set[str] = set()
    for name in extension.value:
        if isinstance(name, x509.DNSName):
            names.add(_name_text("dns", name.value))
        elif isinstance(name, x509.IPAddress):
            names.add(_name_text("ip", str(name.value)))
        elif isinstance(name, x509.RFC822Name):
            names.add(_name_text("email", name.value))
        elif isinstance(name, x509.UniformResourceIdentifier):
            names.add(_name_text("uri", name.value))
        else:
            names.add(f"other:{type(name).__name__}")
    return names


def _key_problem(csr: x509.CertificateSigningRequest, payload: dict[str, Any]) -> str | None:
    """The CSR's key must be of the type and size the job asked the device to make."""
    key = csr.public_key()
    key_type = str(payload.get("key_type") or "")
    size = payload.get("key_size")
    if key_type == "RSA":
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size != size:
            return f"the job asked for an RSA {size} key"
    elif key_type == "EC":
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.key_size != size:
            return f"the job asked for an EC P-{size} key"
    elif key_type == "Ed25519" and not isinstance(key, ed25519.Ed25519PublicKey):
        return "the job asked for an Ed25519 key"
    return None


# --- One enrollment per attempt ---------------------------------------------------------------

_SUBMITTING = "submitting"


def _attempt_enrollment(job: Job) -> EnrollmentRequest | None:
    """The enrollment this attempt's CSR made already (a repeat), if any."""
    recorded = (job.result or {}).get(_RESULT_KEY)
    if not isinstance(recorded, dict) or recorded.get("attempt") != job.attempts:
        return None
    enrollment_id = recorded.get("enrollment_id")
    if enrollment_id == _SUBMITTING:
        raise Conflict(
            "this attempt's CSR is being submitted; ask again in a moment",
            code="csr_in_progress",
        )
    return EnrollmentRequest.objects.filter(pk=enrollment_id).first()


def _claim(job: Job) -> None:
    """Mark the attempt as submitting, once: two copies of the same call (a retry after
    a lost answer) cannot make two enrollments. The CA is asked outside any transaction
    (a gateway is slow), so the claim is its own short one."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.state != Job.State.LEASED or locked.attempts != job.attempts:
            job_require_leased(locked)
            raise Conflict("the job moved on to another attempt", code="stale_attempt")
        if _attempt_enrollment(locked) is not None:
            raise Conflict("this attempt's CSR was submitted already", code="csr_in_progress")
        locked.result = {
            **(locked.result or {}),
            _RESULT_KEY: {"attempt": locked.attempts, "enrollment_id": _SUBMITTING},
        }
        locked.save(update_fields=["result", "updated_at"])
        job.result = locked.result


def _unclaim(job: Job) -> None:
    """The platform failed before the CA answered: the agent may send the CSR again."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        result = dict(locked.result or {})
        result.pop(_RESULT_KEY, None)
        locked.result = result
        locked.save(update_fields=["result", "updated_at"])


def _record(
    job: Job,
    deployment: Deployment,
    request: EnrollmentRequest | None,
    *,
    failed_message: str = "",
) -> None:
    """The attempt's enrollment on the job, and what it means for the deployment."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        result = dict(locked.result or {})
        if request is None:
            result.pop(_RESULT_KEY, None)
        else:
            result[_RESULT_KEY] = {"attempt": job.attempts, "enrollment_id": str(request.pk)}
        locked.result = result
        locked.save(update_fields=["result", "updated_at"])
        changed = ["enrollment", "key_origin", "state", "message", "updated_at"]
        deployment.enrollment = request
        deployment.key_origin = Deployment.KeyOrigin.DEVICE
        if failed_message or request is None or request.state in (State.FAILED, State.DENIED):
            deployment.state = Deployment.State.FAILED
            deployment.message = (
                f"the template refused the device's request: "
                f"{failed_message or (request.failure_reason if request else '')}"
            )[:2000]
            # Asking again would be refused again: the agent's failure ends the job.
            locked.max_attempts = locked.attempts
            locked.save(update_fields=["max_attempts", "updated_at"])
        elif request.state == State.ISSUED:
            deployment.state = Deployment.State.RUNNING
            deployment.message = "issued; the agent installs it with the key it made"
            deployment.certificate = request.certificate
            changed.append("certificate")
            DeploymentBatch.objects.filter(
                pk=deployment.batch_id, new_certificate__isnull=True
            ).update(new_certificate=request.certificate)
        else:
            deployment.state = Deployment.State.AWAITING_APPROVAL
            deployment.message = (
                "the device's request waits for approval; the agent keeps the key it made"
            )
        deployment.save(update_fields=changed)


def _answer(request: EnrollmentRequest) -> CsrAnswer:
    """Issued or waiting; a refused (or denied) request is the refusal again."""
    if request.state in (State.FAILED, State.DENIED):
        raise EnrollmentRefused(
            request.failure_reason or f"the request was {request.get_state_display().lower()}",
            code="enrollment_refused",
            http_status=409 if request.state == State.DENIED else 400,
            details={"enrollment_id": str(request.pk)},
        )
    if request.state not in (*_WAITING, State.ISSUED):
        raise Conflict(f"the request is {request.state}", code="enrollment_state")
    return CsrAnswer(request)
