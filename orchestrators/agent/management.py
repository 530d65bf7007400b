"""Management jobs on the agent: add, remove, create and reenrollment, then reload and verify.

The runner (``orchestrators.agent.runner``) has already checked that the store type carries
the job's operation and that the store path lies within the agent's roots; this module checks
the rest before touching the store (the key policy, required entry parameters, that the key
opens and matches the certificate), runs the store type's method, then — after a write that
changed the store — the store's local reload command and the endpoint check
(``orchestrators.agent.verify``). The runner then re-reads the store and reports it.

Private keys: a platform-held key travels sealed to this agent's identity key
(``orchestrators.transit``) and is opened here, in memory; a key made here for a reenrollment
is either installed at once, or (when the request waits for approval) kept in the agent's
``state/device-keys/<enrollment id>.pem`` (mode 0600) until the ``add`` job that names it.
A key is never logged, never written anywhere else.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from orchestrators.agent.client import PlatformClient, PlatformError
from orchestrators.agent.config import ensure_config_dir, private_key_pem, write_private_file
from orchestrators.agent.verify import (
    VERIFY_SECONDS,
    endpoint_verify,
    reload_command_for,
    reload_failed_message,
    reload_run,
)
from orchestrators.declarations import Policy, RequiredWhen, StoreTypeDeclaration
from orchestrators.protocol import JobOutcome, JobType
from orchestrators.sdk import (
    CertificateMaterial,
    JobConfiguration,
    StoreError,
    StoreTypeExtension,
    TransientStoreError,
)
from orchestrators.transit import (
    TransitError,
    open_sealed,
    public_key_sha256,
    sealed_for,
    transit_context,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEVICE_KEYS_FOLDER = "device-keys"
# An enrollment id names a file: letters, digits, '-', '_' and '.', never a path.
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
RSA_SIZES = range(2048, 8193)
EC_CURVES: dict[int, ec.EllipticCurve] = {
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}
MAX_SANS = 100


@dataclass(frozen=True, slots=True)
class JobResult:
    """How a management job ended: its outcome, message and ``result`` for the platform;
    ``reached_store``: the store was read or written (the runner then reports its inventory);
    ``final``: a failure another attempt would meet again (the store or the job's own content
    refused it), so the platform ends the job now rather than retrying it."""

    outcome: JobOutcome
    message: str
    result: dict[str, Any] | None = None
    reached_store: bool = True
    final: bool = False


def _failure(message: str) -> JobResult:
    return JobResult(JobOutcome.FAILURE, message, None, reached_store=False)


@dataclass(slots=True)
class ManagementContext:
    """What a management job needs from the agent around it.

    Attributes:
        client: The platform client (a reenrollment posts its CSR).
        identity_keys: The agent's identity keys, current first, then a pending renewal's
            key: an envelope is opened with the one it was sealed for.
        device_keys_dir: Where keys made here wait for an approval (None: the agent keeps
            no state, and a reenrollment that waits for approval fails).
        reload_commands: The agent's local ``{real store path: argv}``.
        reporting: Runs a platform call, retrying while the job's lease holds.
        verify_seconds: How long the endpoint check waits for the new certificate.
    """

    client: PlatformClient
    identity_keys: Callable[[], Sequence[ec.EllipticCurvePrivateKey]]
    device_keys_dir: Path | None = None
    reload_commands: Mapping[str, Sequence[str]] = field(default_factory=dict)
    reporting: Callable[[Callable[[], Any]], Any] = lambda call: call()
    verify_seconds: float = VERIFY_SECONDS


def management_run(
    job: JobConfiguration, store_type: type[StoreTypeExtension], context: ManagementContext
) -> JobResult:
    """Run an add, remove, create or reenrollment job on ``job.store``."""
    handlers = {
        JobType.ADD: _add,
        JobType.REMOVE: _remove,
        JobType.CREATE: _create,
        JobType.REENROLLMENT: _reenroll,
    }
    try:
        return handlers[job.type](job, store_type, context)
    except StoreError as exc:
        logger.warning("job %s failed: %s", job.job_id, exc)
        # Permanent unless the store type (or a check here) says another attempt may
        # succeed: one rule for every job type (see StoreError).
        final = not exc.transient
        return JobResult(JobOutcome.FAILURE, str(exc), None, reached_store=False, final=final)
    except NotImplementedError as exc:
        return _failure(str(exc) or f"store type {store_type.short_name} cannot {job.type}")


# -- checks --------------------------------------------------------------------------------


def _declaration(store_type: type[StoreTypeExtension]) -> StoreTypeDeclaration | None:
    return getattr(store_type, "declaration", None)


def _policies_check(
    store_type: type[StoreTypeExtension],
    *,
    has_key: bool,
    alias: str | None,
    parameters: Mapping[str, Any],
    when: set[RequiredWhen],
) -> None:
    """Refuse, before the store is touched, what the store type's declaration forbids
    for an entry being written (add, reenrollment)."""
    declaration = _declaration(store_type)
    if declaration is None:
        return
    name = store_type.short_name
    if has_key and declaration.private_key is Policy.FORBIDDEN:
        raise StoreError(f"store type {name} does not take private keys; nothing was written")
    if not has_key and declaration.private_key is Policy.REQUIRED:
        raise StoreError(f"store type {name} needs the certificate's private key")
    if alias and declaration.custom_alias is Policy.FORBIDDEN:
        raise StoreError(f"store type {name} chooses its aliases itself; no alias may be given")
    if not alias and declaration.custom_alias is Policy.REQUIRED:
        raise StoreError(f"store type {name} needs an alias for the entry")
    if has_key:
        when = when | {RequiredWhen.HAS_PRIVATE_KEY}
    _entry_parameters_check(declaration, parameters, when)


def _entry_parameters_check(
    declaration: StoreTypeDeclaration | None, parameters: Mapping[str, Any], when: set[RequiredWhen]
) -> None:
    if declaration is None:
        return
    missing = [
        spec.display_name or spec.name
        for spec in declaration.entry_parameters
        if (spec.required or spec.required_when & when) and parameters.get(spec.name) in (None, "")
    ]
    if missing:
        raise StoreError(f"missing required entry parameter: {', '.join(missing)}")


def _parameters(job: JobConfiguration) -> dict[str, Any]:
    parameters = job.payload.get("entry_parameters") or {}
    if not isinstance(parameters, dict):
        raise StoreError("the job's entry parameters are not an object")
    return parameters


def _alias(job: JobConfiguration) -> str | None:
    alias = job.payload.get("alias")
    if alias is not None and (not isinstance(alias, str) or not alias.strip()):
        raise StoreError("the job's alias is not a name")
    return alias or None


def _certificate(pem: Any) -> tuple[x509.Certificate, str]:
    if not isinstance(pem, str):
        raise StoreError("the job carries no certificate")
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise StoreError("the job's certificate is not a PEM certificate") from exc
    sha = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    return certificate, sha


def _chain(value: Any) -> tuple[str, ...]:
    if value in (None, []):
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise StoreError("the job's chain is not a list of PEM certificates")
    return tuple(value)


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- keys ----------------------------------------------------------------------------------


def sealed_key_open(
    job: JobConfiguration, envelope: Any, identity_keys: Sequence[ec.EllipticCurvePrivateKey]
) -> Any:
    """The private key sealed in ``envelope`` for this job attempt, opened with the identity
    key it names (the current one, or a renewal's pending one)."""
    digest = sealed_for(envelope)
    if digest is None:
        raise StoreError("the job's private key envelope is malformed")
    key = next((k for k in identity_keys if public_key_sha256(k.public_key()) == digest), None)
    if key is None:
        # E.g. sealed just before this agent's identity key was renewed: the next attempt
        # is sealed to the new one.
        raise TransientStoreError(
            "the private key was sealed for another orchestrator key; nothing done"
        )
    try:
        plaintext = open_sealed(
            envelope, key, context=transit_context(job_id=job.job_id, attempt=job.attempt)
        )
    except TransitError as exc:
        raise StoreError(f"the private key does not open: {exc}") from exc
    try:
        return serialization.load_pem_private_key(plaintext, password=None)
    except (ValueError, TypeError) as exc:
        raise StoreError("the opened private key is not an unencrypted PEM key") from exc


def device_key_path(device_keys_dir: Path | None, reference: Any) -> Path:
    """Where the key made here for enrollment ``reference`` is kept (never another path)."""
    if device_keys_dir is None:
        raise TransientStoreError("this agent keeps no state folder for keys made on the device")
    if not isinstance(reference, str) or not _REFERENCE.match(reference) or ".." in reference:
        raise StoreError("the job names a device key with an invalid reference")
    return device_keys_dir / f"{reference}.pem"


def _device_key_load(path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise StoreError(
            f"the key made on this machine for enrollment {path.stem} is not here (it was "
            "made by another agent, or already installed and deleted)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot load the key made on this machine ({path.name})") from exc


def key_generate(key_type: Any, key_size: Any) -> Any:
    """A new private key of the type and size a template asks for."""
    match key_type:
        case "RSA":
            if not isinstance(key_size, int) or key_size not in RSA_SIZES:
                raise StoreError(f"RSA key size {key_size!r} is not between 2048 and 8192 bits")
            return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        case "EC":
            curve = EC_CURVES.get(key_size) if isinstance(key_size, int) else None
            if curve is None:
                raise StoreError(f"EC key size {key_size!r} is not 256, 384 or 521")
            return ec.generate_private_key(curve)
        case "Ed25519":
            return ed25519.Ed25519PrivateKey.generate()
    raise StoreError(f"key type {key_type!r} is not RSA, EC or Ed25519")


def _san(item: Any) -> x509.GeneralName:
    if not isinstance(item, dict) or not isinstance(item.get("value"), str):
        raise StoreError("a subject alternative name is not {type, value}")
    kind, value = item.get("type"), item["value"]
    try:
        match kind:
            case "dns":
                return x509.DNSName(value)
            case "ip":
                return x509.IPAddress(ipaddress.ip_address(value))
            case "email":
                return x509.RFC822Name(value)
            case "uri":
                return x509.UniformResourceIdentifier(value)
    except ValueError as exc:
        raise StoreError(f"the {kind} name {value[:100]!r} is not valid") from exc
    raise StoreError(f"subject alternative name type {kind!r} is not dns, ip, email or uri")


def csr_build(private_key: Any, subject: Any, sans: Any) -> str:
    """A PEM CSR for ``private_key`` with ``subject`` (RFC 4514) and ``sans``."""
    if not isinstance(subject, str):
        raise StoreError("the job's subject is not an RFC 4514 name")
    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError as exc:
        raise StoreError(f"the subject {subject[:200]!r} is not an RFC 4514 name") from exc
    if not isinstance(sans or [], list) or len(sans or []) > MAX_SANS:
        raise StoreError(f"the job's names must be a list of at most {MAX_SANS}")
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    names = [_san(item) for item in sans or []]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    algorithm = None if isinstance(private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(private_key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# -- jobs ----------------------------------------------------------------------------------


def _leaf_sha256(entry: Any) -> str | None:
    if entry.certificate_sha256:
        return str(entry.certificate_sha256[0]).lower()
    if not entry.certificates:
        return None
    try:
        certificate = x509.load_pem_x509_certificate(entry.certificates[0].encode())
    except ValueError:
        return None
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _aliases_holding(
    job: JobConfiguration, store_type: type[StoreTypeExtension], sha256: str
) -> set[str] | None:
    """The aliases at which the store holds the certificate now (None: the store could not
    be read, e.g. it does not exist yet): tells a no-op add from a write."""
    try:
        return {
            entry.alias.casefold()
            for entry in store_type().inventory(job)
            if entry.error is None and _leaf_sha256(entry) == sha256
        }
    except StoreError:
        return None


def _install(
    job: JobConfiguration,
    store_type: type[StoreTypeExtension],
    context: ManagementContext,
    material: CertificateMaterial,
    key_origin: str,
) -> JobResult:
    """Write ``material``, then reload and verify when it changed the store."""
    before = _aliases_holding(job, store_type, material.certificate_sha256)
    alias = store_type().add(job, material)
    written = before is None or alias.casefold() not in before
    result: dict[str, Any] = {
        "alias": alias,
        "certificate_sha256": material.certificate_sha256,
        "written": written,
        "key_origin": key_origin,
        "reload": None,
        "verification": None,
    }
    logger.info(
        "job %s: %s at %s in %s",
        job.job_id,
        "written" if written else "already there",
        alias,
        job.store.store_path,
    )
    outcome, message = JobOutcome.SUCCESS, "written" if written else "already written"
    argv = reload_command_for(job.store.store_path, context.reload_commands)
    if written and argv:
        result["reload"] = reload_run(argv)
        if result["reload"]["exit_code"] != 0:
            outcome, message = JobOutcome.WARNING, reload_failed_message(result["reload"])
    if job.store.endpoint:
        verification = endpoint_verify(
            job.store.endpoint, material.certificate_sha256, within=context.verify_seconds
        )
        result["verification"] = verification
        if not verification["served"]:
            detail = f" ({verification['error']})" if verification["error"] else ""
            outcome, message = (
                JobOutcome.WARNING,
                f"{message}, endpoint still serves the old certificate{detail}"
                if outcome is JobOutcome.WARNING
                else f"written, endpoint still serves the old certificate{detail}",
            )
        elif outcome is JobOutcome.SUCCESS:
            message = f"deployed and served ({verification['endpoint']})"
    return JobResult(outcome, message, result)


def _add(
    job: JobConfiguration, store_type: type[StoreTypeExtension], context: ManagementContext
) -> JobResult:
    payload = job.payload
    certificate, sha256 = _certificate(payload.get("certificate"))
    claimed = payload.get("certificate_sha256")
    if claimed and str(claimed).lower() != sha256:
        return _failure("the job's certificate does not match its SHA-256 fingerprint")
    envelope, reference = payload.get("private_key"), payload.get("device_key")
    alias, parameters = _alias(job), _parameters(job)
    _policies_check(
        store_type,
        has_key=bool(envelope or reference),
        alias=alias,
        parameters=parameters,
        when={RequiredWhen.ADD},
    )
    key_path: Path | None = None
    private_key: Any = None
    key_origin = "none"
    if envelope:
        private_key, key_origin = (
            sealed_key_open(job, envelope, context.identity_keys()),
            "platform",
        )
    elif reference:
        key_path = device_key_path(context.device_keys_dir, reference)
        private_key, key_origin = _device_key_load(key_path), "device"
    if private_key is not None and _spki(private_key.public_key()) != _spki(
        certificate.public_key()
    ):
        return _failure("the private key does not belong to the certificate; nothing written")
    material = CertificateMaterial(
        certificate=payload["certificate"],
        chain=_chain(payload.get("chain")),
        private_key=private_key,
        alias=alias,
        overwrite=bool(payload.get("overwrite", False)),
        entry_parameters=parameters,
        certificate_sha256=sha256,
    )
    outcome = _install(job, store_type, context, material, key_origin)
    if key_path is not None:
        # Installed: the store holds the key now; the waiting copy has done its work.
        key_path.unlink(missing_ok=True)
    return outcome


def _remove(
    job: JobConfiguration, store_type: type[StoreTypeExtension], context: ManagementContext
) -> JobResult:
    alias = _alias(job)
    sha256 = job.payload.get("certificate_sha256")
    if sha256 is not None and not (
        isinstance(sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha256)
    ):
        return _failure("the job's certificate_sha256 is not a SHA-256 fingerprint")
    if not alias and not sha256:
        return _failure("a removal needs an alias or a certificate fingerprint")
    # A removal names an entry by alias or fingerprint: the key and alias policies are
    # about writing one, only the entry parameters a removal needs apply.
    _entry_parameters_check(_declaration(store_type), _parameters(job), {RequiredWhen.REMOVE})
    removed = store_type().remove(
        job, alias=alias, certificate_sha256=sha256.lower() if sha256 else None
    )
    result: dict[str, Any] = {"removed": bool(removed), "reload": None}
    argv = reload_command_for(job.store.store_path, context.reload_commands)
    if removed and argv:
        result["reload"] = reload_run(argv)
        if result["reload"]["exit_code"] != 0:
            message = reload_failed_message(result["reload"]).replace("written", "removed", 1)
            return JobResult(JobOutcome.WARNING, message, result)
    return JobResult(JobOutcome.SUCCESS, "removed" if removed else "nothing to remove", result)


def _create(
    job: JobConfiguration, store_type: type[StoreTypeExtension], context: ManagementContext
) -> JobResult:
    created = store_type().create(job)
    message = "store created" if created else "the store already existed"
    return JobResult(JobOutcome.SUCCESS, message, {"created": bool(created)})


def _reenroll(
    job: JobConfiguration, store_type: type[StoreTypeExtension], context: ManagementContext
) -> JobResult:
    payload = job.payload
    alias, parameters = _alias(job), _parameters(job)
    _policies_check(
        store_type,
        has_key=True,
        alias=alias,
        parameters=parameters,
        when={RequiredWhen.REENROLLMENT, RequiredWhen.ADD},
    )
    private_key = key_generate(payload.get("key_type"), payload.get("key_size"))
    csr = csr_build(private_key, payload.get("subject"), payload.get("sans"))
    try:
        status, answer = context.reporting(
            lambda: context.client.submit_csr(job.job_id, attempt=job.attempt, csr=csr)
        )
    except PlatformError as exc:
        return _failure(f"the platform refused the certificate request: {exc.message}")
    enrollment_id = answer.get("enrollment_id")
    if status == 202 or answer.get("state") == "pending":
        path = device_key_path(
            ensure_config_dir(context.device_keys_dir) if context.device_keys_dir else None,
            str(enrollment_id) if enrollment_id is not None else None,
        )
        write_private_file(path, private_key_pem(private_key))
        logger.info("job %s: enrollment %s waits for approval", job.job_id, enrollment_id)
        return JobResult(
            JobOutcome.SUCCESS,
            f"waiting for approval (enrollment {enrollment_id}); the key stays on this machine",
            {"awaiting_approval": True, "enrollment_id": enrollment_id},
            reached_store=False,
        )
    if answer.get("state") != "issued":
        return _failure(
            f"the platform answered the certificate request with {answer.get('state')!r}"
        )
    _, sha256 = _certificate(answer.get("certificate"))
    material = CertificateMaterial(
        certificate=answer["certificate"],
        chain=_chain(answer.get("chain")),
        private_key=private_key,
        alias=alias,
        overwrite=bool(payload.get("overwrite", True)),
        entry_parameters=parameters,
        certificate_sha256=sha256,
    )
    certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
    if _spki(certificate.public_key()) != _spki(private_key.public_key()):
        return _failure("the issued certificate is not for the key made on this machine")
    outcome = _install(job, store_type, context, material, "device")
    if outcome.result is not None:
        outcome.result["enrollment_id"] = enrollment_id
    return outcome
