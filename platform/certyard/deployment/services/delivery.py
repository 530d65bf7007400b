"""Delivering a certificate into stores and removing it: the add/remove/create jobs.

``Job.payload`` holds references only (ids, alias, fingerprint). What the agent needs
beyond them — the certificate's PEM and chain, the secret entry parameters and the private
key sealed to the agent's own key — is added by :func:`add_payload_resolve` when the agent
fetches the job, and exists only in that answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from django.db import transaction
from django.db.models import QuerySet

from certyard.deployment.models import Deployment, DeploymentBatch
from certyard.enrollment.authorization import archived_key_reuse_require
from certyard.enrollment.models import EnrollmentRequest
from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.authorization import (
    certificate_act_require,
    may_act_on_store,
    store_act_require,
)
from certyard.inventory.models import Certificate, CertificateLocation, CertificateStore
from certyard.jobs.hooks import (
    job_attempt_outcome,
    job_finished_hook_register,
    job_payload_resolver_register,
)
from certyard.jobs.models import Job
from certyard.jobs.services import (
    job_request,
)
from certyard.x509 import der_to_pem
from orchestrators.protocol import JobType
from orchestrators.transit import seal, transit_context

_ALIAS_MAX = 512


# --- Stores chosen by a filter -------------------------------------------------------------

#: The keys of a store filter (``stores_matching``), all optional, at least one given:
#: ``store_type`` (short name, exact), ``orchestrator`` (id), ``client_machine`` (exact,
#: case-insensitive), ``path_contains`` (substring of the store path, case-insensitive).
STORE_FILTER_KEYS = ("store_type", "orchestrator", "client_machine", "path_contains")


def stores_matching(*, actor: Any, filter: Any) -> list[CertificateStore]:
    """The approved stores matching ``filter`` that ``actor`` may act on (see the keys
    above); an unknown key or an empty filter is refused, so a typo never means "all"."""
    if not isinstance(filter, dict) or not filter:
        raise ServiceError(
            f"give a store filter with at least one of {', '.join(STORE_FILTER_KEYS)}",
            field="store_filter",
        )
    unknown = sorted(set(filter) - set(STORE_FILTER_KEYS))
    if unknown:
        raise ServiceError(
            f"unknown store filter keys {', '.join(unknown)} "
            f"(known: {', '.join(STORE_FILTER_KEYS)})",
            field="store_filter",
        )
    stores: QuerySet[CertificateStore] = CertificateStore.objects.filter(approved=True)
    for key, value in filter.items():
        if not isinstance(value, str) or not value.strip():
            raise ServiceError(f"store filter {key}: give a non-empty text", field="store_filter")
        value = value.strip()
        if key == "store_type":
            stores = stores.filter(store_type__short_name=value)
        elif key == "orchestrator":
            if not _is_uuid(value):
                raise ServiceError("store filter orchestrator: an id", field="store_filter")
            stores = stores.filter(orchestrator_id=value)
        elif key == "client_machine":
            stores = stores.filter(client_machine__iexact=value)
        else:
            stores = stores.filter(store_path__icontains=value)
    chosen = stores.select_related("store_type", "orchestrator").order_by("client_machine", "id")
    return [store for store in chosen if _may_act(actor, store)]


def _is_uuid(value: Any) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _may_act(actor: Any, store: CertificateStore) -> bool:
    from certyard.accounts.authorization import is_person

    return not is_person(actor) or may_act_on_store(actor, store)


# --- Checking one delivery against the store type's declaration ------------------------------


@dataclass(slots=True)
class AddPlan:
    """One add, checked: what the Deployment row and the job will hold."""

    store: CertificateStore
    alias: str
    key_enrollment: EnrollmentRequest | None
    entry_parameters: dict[str, Any] = field(default_factory=dict)
    secret_entry_parameters: dict[str, Any] = field(default_factory=dict)


def platform_key_enrollment(certificate: Certificate) -> EnrollmentRequest | None:
    """The issued PFX request whose key the platform still holds for ``certificate``
    (archived, or not yet collected), or None."""
    for request in EnrollmentRequest.objects.filter(
        certificate=certificate,
        state=EnrollmentRequest.State.ISSUED,
        method=EnrollmentRequest.Method.PFX,
    ).order_by("-issued_at"):
        if request.private_key_pem:
            return request
    return None


def _entry_parameters_check(
    store: CertificateStore, given: Any, *, with_key: bool, operation: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(plain, secret)`` entry parameters, checked against the type's declared specs."""
    where = f"store {store.store_path} ({store.store_type.short_name})"
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ServiceError(
            "entry_parameters is an object of names to values", field="entry_parameters"
        )
    specs = {
        str(spec.get("name")): spec
        for spec in store.store_type.entry_parameters or []
        if isinstance(spec, dict)
    }
    unknown = sorted(set(given) - set(specs))
    if unknown:
        known = ", ".join(sorted(specs)) or "none"
        raise ServiceError(
            f"{where} takes no entry parameter {', '.join(unknown)} (it takes: {known})",
            field="entry_parameters",
        )
    plain: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for name, spec in specs.items():
        value = given.get(name, spec.get("default"))
        when = set(spec.get("required_when") or [])
        needed = (
            bool(spec.get("required"))
            or operation in when
            or (with_key and "has_private_key" in when)
        )
        if value in (None, ""):
            if needed:
                label = spec.get("display_name") or name
                raise ServiceError(
                    f"{where} needs the entry parameter {name} ({label})"
                    + (" when a private key is delivered" if "has_private_key" in when else ""),
                    code="entry_parameter_missing",
                    field="entry_parameters",
                )
            continue
        kind = spec.get("type", "string")
        fits = (
            (kind == "bool" and isinstance(value, bool))
            or (kind == "int" and isinstance(value, int) and not isinstance(value, bool))
            or (kind == "choice" and value in (spec.get("choices") or []))
            or (kind in ("string", "secret") and isinstance(value, str) and len(value) <= 4096)
        )
        if not fits:
            raise ServiceError(
                f"{where}: entry parameter {name} must be a {kind}"
                + (f" ({', '.join(spec.get('choices') or [])})" if kind == "choice" else ""),
                field="entry_parameters",
            )
        (secret if kind == "secret" else plain)[name] = value
    return plain, secret


def add_plan(
    *,
    certificate: Certificate,
    store: CertificateStore,
    actor: Any,
    alias: str | None,
    include_private_key: bool,
    entry_parameters: Any,
    key_enrollment: EnrollmentRequest | None,
) -> AddPlan:
    """Check one add against the store and its type; ServiceError says what is wrong."""
    store_type = store.store_type
    where = f"store {store.store_path} on {store.client_machine} ({store_type.short_name})"
    store_act_require(actor, store)
    if not store.approved:
        raise ServiceError(
            f"{where} is not approved yet", code="store_not_approved", http_status=409
        )
    if not store_type.supports_add:
        raise ServiceError(
            f"{where}: the store type does not support adding certificates",
            code="operation_unsupported",
            http_status=409,
        )
    policy = store_type.private_key
    if policy == "forbidden":
        key = None
    elif policy == "required":
        if key_enrollment is None or not include_private_key:
            raise ServiceError(
                f"{where} requires a private key with each certificate, and "
                + (
                    "you asked for none"
                    if not include_private_key
                    else "the platform holds none for this certificate (only a PFX enrollment "
                    "or an archived key gives the platform a key)"
                ),
                code="private_key_required",
                http_status=409,
            )
        key = key_enrollment
    else:
        key = key_enrollment if include_private_key else None
    alias = (alias or "").strip()
    if len(alias) > _ALIAS_MAX or any(ord(c) < 32 for c in alias):
        raise ServiceError(f"an alias is at most {_ALIAS_MAX} printable characters", field="alias")
    if store_type.custom_alias == "required" and not alias:
        raise ServiceError(
            f"{where} needs an alias for the entry: give one",
            code="alias_required",
            field="alias",
        )
    if store_type.custom_alias == "forbidden" and alias:
        raise ServiceError(
            f"{where} names its entries itself: give no alias",
            code="alias_forbidden",
            field="alias",
        )
    plain, secret = _entry_parameters_check(
        store, entry_parameters, with_key=key is not None, operation="add"
    )
    return AddPlan(store, alias, key, plain, secret)


def _key_enrollment_for(
    certificate: Certificate, actor: Any, include_private_key: bool
) -> EnrollmentRequest | None:
    if not include_private_key:
        return None
    enrollment = platform_key_enrollment(certificate)
    if enrollment is not None:
        # The key is its enrollee's: anyone else needs the key-recovery permission.
        archived_key_reuse_require(actor, enrollment)
    return enrollment


def deployment_add_queue(
    *,
    batch: DeploymentBatch,
    certificate: Certificate,
    plan: AddPlan,
    actor: Any,
    source: str,
    overwrite: bool,
    create_store: bool = False,
    device_key: str | None = None,
    enrollment: EnrollmentRequest | None = None,
    deployment: Deployment | None = None,
) -> Deployment:
    """The Deployment row (new, or one that waited) and its ``add`` job."""
    if deployment is None:
        deployment = Deployment(batch=batch, store=plan.store, action=Deployment.Action.ADD)
    deployment.certificate = certificate
    deployment.alias = plan.alias
    deployment.overwrite = overwrite
    deployment.create_store = create_store
    deployment.entry_parameters = plan.entry_parameters
    deployment.secret_entry_parameters = (
        json.dumps(plan.secret_entry_parameters) if plan.secret_entry_parameters else ""
    )
    deployment.state = Deployment.State.PENDING
    if device_key:
        deployment.key_origin = Deployment.KeyOrigin.DEVICE
    elif plan.key_enrollment is not None:
        deployment.key_origin = Deployment.KeyOrigin.PLATFORM
    else:
        deployment.key_origin = Deployment.KeyOrigin.NONE
    deployment.enrollment = enrollment or plan.key_enrollment or deployment.enrollment
    deployment.requested_by = actor if getattr(actor, "pk", None) else deployment.requested_by
    deployment.save()
    payload = {
        "certificate_id": certificate.pk,
        "alias": plan.alias or None,
        "overwrite": bool(overwrite),
        "create_store": bool(create_store),
        "entry_parameters": plan.entry_parameters,
        "key_source": (
            {"kind": "enrollment", "id": str(plan.key_enrollment.pk)}
            if plan.key_enrollment is not None
            else None
        ),
        "device_key": device_key,
    }
    deployment.job = job_request(
        orchestrator=plan.store.orchestrator,
        store=plan.store,
        type=JobType.ADD,
        payload=payload,
        actor=actor,
        source=source,
        deployment_id=deployment.pk,
    )
    deployment.save(update_fields=["job", "updated_at"])
    return deployment


def _stores_resolve(stores: Iterable[Any]) -> list[CertificateStore]:
    ids = [str(s.pk) if isinstance(s, CertificateStore) else str(s) for s in stores]
    if not ids:
        raise ServiceError("choose at least one store", field="stores")
    bad = [i for i in ids if not _is_uuid(i)]
    if bad:
        raise ServiceError(f"not a store id: {bad[0]!r}", field="stores")
    found = CertificateStore.objects.select_related("store_type", "orchestrator").in_bulk(ids)
    missing = [i for i in ids if not any(str(k) == i for k in found)]
    if missing:
        raise ServiceError(f"there is no store {missing[0]}", field="stores", http_status=404)
    unique = dict.fromkeys(ids)
    return [next(s for k, s in found.items() if str(k) == i) for i in unique]


def certificate_deploy(
    *,
    certificate: Certificate,
    stores: Iterable[Any],
    actor: Any,
    alias: str | None = None,
    overwrite: bool = False,
    include_private_key: bool = True,
    entry_parameters: dict[str, Any] | None = None,
    source: str,
) -> DeploymentBatch:
    """Add ``certificate`` to each store (instances or ids): one batch, one ``add`` job each.

    Every store is checked before anything is written (authorization, the store type's
    add support, key and alias policy, entry parameters); the first refusal names the
    store. A key goes only where the platform holds one (``platform_key_enrollment``).
    """
    certificate_act_require(actor, certificate)
    chosen = _stores_resolve(stores)
    key_enrollment = _key_enrollment_for(certificate, actor, include_private_key)
    plans = [
        add_plan(
            certificate=certificate,
            store=store,
            actor=actor,
            alias=alias,
            include_private_key=include_private_key,
            entry_parameters=entry_parameters,
            key_enrollment=key_enrollment,
        )
        for store in chosen
    ]
    with transaction.atomic():
        batch = DeploymentBatch.objects.create(
            kind=DeploymentBatch.Kind.ADD,
            certificate=certificate,
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        for plan in plans:
            deployment_add_queue(
                batch=batch,
                certificate=certificate,
                plan=plan,
                actor=actor,
                source=source,
                overwrite=overwrite,
            )
    return batch


def certificate_undeploy(
    *,
    certificate: Certificate,
    stores: Iterable[Any] | None = None,
    actor: Any,
    source: str,
) -> DeploymentBatch:
    """Remove ``certificate`` from the chosen stores, or (``None``) from every location.

    Each location is removed by its alias; a chosen store the inventory has not seen the
    certificate in is asked to remove it by fingerprint.
    """
    certificate_act_require(actor, certificate)
    locations = CertificateLocation.objects.filter(certificate=certificate).select_related(
        "store__store_type", "store__orchestrator"
    )
    targets: list[tuple[CertificateStore, str]] = []
    if stores is None:
        targets = [(location.store, location.alias) for location in locations]
        if not targets:
            raise ServiceError(
                "the inventory knows no location of this certificate", http_status=409
            )
    else:
        by_store: dict[Any, list[str]] = {}
        for location in locations:
            by_store.setdefault(location.store_id, []).append(location.alias)
        for store in _stores_resolve(stores):
            for alias in by_store.get(store.pk, [""]):
                targets.append((store, alias))
    for store, _ in targets:
        store_act_require(actor, store)
        if not store.store_type.supports_remove:
            raise ServiceError(
                f"store {store.store_path} ({store.store_type.short_name}): the store type "
                "does not support removing certificates",
                code="operation_unsupported",
                http_status=409,
            )
    with transaction.atomic():
        batch = DeploymentBatch.objects.create(
            kind=DeploymentBatch.Kind.REMOVE,
            certificate=certificate,
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        for store, alias in targets:
            deployment = Deployment.objects.create(
                batch=batch,
                certificate=certificate,
                store=store,
                action=Deployment.Action.REMOVE,
                alias=alias,
                requested_by=actor if getattr(actor, "pk", None) else None,
            )
            deployment.job = job_request(
                orchestrator=store.orchestrator,
                store=store,
                type=JobType.REMOVE,
                payload={"alias": alias or None, "certificate_sha256": certificate.sha256},
                actor=actor,
                source=source,
                deployment_id=deployment.pk,
            )
            deployment.save(update_fields=["job", "updated_at"])
    return batch


def store_create_request(*, store: CertificateStore, actor: Any, source: str = "api") -> Job:
    """A ``create`` job: the agent makes the (empty) store at its path."""
    store_act_require(actor, store)
    return job_request(
        orchestrator=store.orchestrator,
        store=store,
        type=JobType.CREATE,
        payload={"deployment_id": None},
        actor=actor,
        source=source,
    )


# --- What the agent gets (resolved when it fetches the job) ------------------------------


def certificate_chain_pems(certificate: Certificate) -> list[str]:
    """The issuers the inventory knows above ``certificate``, up to (not with) the root."""
    chain: list[str] = []
    seen = {certificate.pk}
    current = certificate.issuer_certificate
    while current is not None and current.pk not in seen and len(chain) < 10:
        if current.self_signed:
            break
        chain.append(der_to_pem(bytes(current.der)))
        seen.add(current.pk)
        current = current.issuer_certificate
    return chain


def _secrets(deployment: Deployment | None) -> dict[str, Any]:
    if deployment is None or not deployment.secret_entry_parameters:
        return {}
    try:
        value = json.loads(deployment.secret_entry_parameters)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _recipient(orchestrator: Orchestrator) -> Any:
    try:
        return serialization.load_pem_public_key(orchestrator.public_key_pem.encode())
    except (ValueError, TypeError) as exc:
        raise ServiceError(
            "the orchestrator has no usable public key to seal the private key to",
            http_status=409,
        ) from exc


def add_payload_resolve(job: Job, orchestrator: Orchestrator) -> dict[str, Any]:
    """The ``add`` job's wire payload (design16 "GET jobs/<id>/config"), secrets included."""
    stored = job.payload
    certificate = Certificate.objects.filter(pk=stored.get("certificate_id")).first()
    if certificate is None:
        raise ServiceError(
            "the certificate to deliver is no longer in the inventory", http_status=409
        )
    deployment = Deployment.objects.filter(pk=stored.get("deployment_id")).first()
    key_source = stored.get("key_source") or None
    enrollment = None
    if key_source and key_source.get("kind") == "enrollment":
        enrollment = EnrollmentRequest.objects.filter(pk=key_source.get("id")).first()
    chain = certificate_chain_pems(certificate)
    source_request = enrollment or (deployment.enrollment if deployment else None)
    if source_request is not None and source_request.chain_pem.strip():
        chain = _pem_split(source_request.chain_pem)
    private_key = None
    if key_source:
        if enrollment is None or not enrollment.private_key_pem:
            raise ServiceError(
                "the platform no longer holds this certificate's private key", http_status=409
            )
        key = serialization.load_pem_private_key(enrollment.private_key_pem.encode(), None)
        pkcs8 = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        private_key = seal(
            pkcs8,
            _recipient(orchestrator),
            context=transit_context(job_id=str(job.pk), attempt=job.attempts),
        )
    return {
        "deployment_id": stored.get("deployment_id"),
        "alias": stored.get("alias"),
        "certificate": der_to_pem(bytes(certificate.der)),
        "chain": chain,
        "certificate_sha256": certificate.sha256,
        "overwrite": bool(stored.get("overwrite")),
        "create_store": bool(stored.get("create_store")),
        "entry_parameters": {**(stored.get("entry_parameters") or {}), **_secrets(deployment)},
        "private_key": private_key,
        "device_key": stored.get("device_key"),
    }


def reenrollment_payload_resolve(job: Job, orchestrator: Orchestrator) -> dict[str, Any]:
    """The ``reenrollment`` job's wire payload: the stored one with its secret entry
    parameters added."""
    deployment = Deployment.objects.filter(pk=job.payload.get("deployment_id")).first()
    payload = dict(job.payload)
    payload["entry_parameters"] = {
        **(payload.get("entry_parameters") or {}),
        **_secrets(deployment),
    }
    return payload


def _pem_split(text: str) -> list[str]:
    marker = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + marker + "\n" for part in text.split(marker) if part.strip()]


# --- What a finished attempt means for its deployment -----------------------------------------

_EVIDENCE_KEYS = (
    "alias",
    "certificate_sha256",
    "written",
    "key_origin",
    "reload",
    "verification",
    "removed",
    "created",
    "awaiting_approval",
    "enrollment_id",
)


def _evidence(result: Any) -> dict[str, Any]:
    """The agent's result, kept for the deployment: known keys only (it is attacker-written
    and shown in the console; the size is bounded by the jobs app)."""
    if not isinstance(result, dict):
        return {}
    return {key: result[key] for key in _EVIDENCE_KEYS if key in result}


def deployment_job_finished(job: Job) -> None:
    """The job-finished hook: set the job's deployment's state from how the attempt ended.

    Called for every attempt that ended; the state follows from the job alone, so a
    repeated call (or a re-offered job's result) changes nothing more.
    """
    deployment_id = (job.payload or {}).get("deployment_id")
    if not deployment_id or job.type not in (JobType.ADD, JobType.REMOVE, JobType.REENROLLMENT):
        return
    deployment = (
        Deployment.objects.select_for_update().filter(pk=deployment_id, job_id=job.pk).first()
    )
    if deployment is None:
        return
    if deployment.state not in Deployment.OPEN_STATES:
        # Already decided elsewhere (the template refused the device's request, or the
        # request was issued and handed to an add job while this attempt was reporting):
        # a late report does not reopen it.
        return
    outcome = job_attempt_outcome(job)
    result = job.result if isinstance(job.result, dict) else {}
    message = (job.message or "")[:2000]
    state = deployment.state
    if job.state == Job.State.CANCELLED:
        state, message = Deployment.State.CANCELLED, message or "cancelled"
    elif outcome in ("success", "warning") and result.get("awaiting_approval"):
        state = Deployment.State.AWAITING_APPROVAL
        message = message or "the certificate request waits for approval"
    elif outcome == "warning":
        state = Deployment.State.WARNING
    elif outcome == "success":
        verification = result.get("verification")
        served = isinstance(verification, dict) and verification.get("served") is True
        state = Deployment.State.DEPLOYED if served else Deployment.State.WRITTEN
        if not message:
            message = "deployed and served" if served else "written"
    elif job.is_finished:
        state = Deployment.State.FAILED
    else:
        state = Deployment.State.PENDING
        message = f"attempt {job.attempts} did not succeed ({outcome}): {message}; it is retried"
    deployment.state = state
    deployment.message = message
    if result:
        deployment.evidence = _evidence(result)
    origin = result.get("key_origin")
    if deployment.action == Deployment.Action.REENROLL and origin in Deployment.KeyOrigin.values:
        deployment.key_origin = origin
    deployment.save(update_fields=["state", "message", "evidence", "key_origin", "updated_at"])
    if state not in Deployment.OPEN_STATES:
        _platform_key_release(deployment)


def _platform_key_release(deployment: Deployment) -> None:
    """Drop a platform-made key kept only for delivery once every delivery of it ended.

    Kept: an archived key, a PKCS#12 its requester has not collected (unless the platform
    itself renewed it for its stores), and a key another open delivery still needs.
    """
    enrollment = deployment.enrollment
    if enrollment is None or enrollment.key_archived or not enrollment.private_key_pem:
        return
    if (
        enrollment.pfx_collected_at is None
        and deployment.batch.kind != DeploymentBatch.Kind.RENEW_REPLACE
    ):
        return
    if Deployment.objects.filter(enrollment=enrollment, state__in=Deployment.OPEN_STATES).exists():
        return
    enrollment.private_key_pem = ""
    enrollment.save(update_fields=["private_key_pem", "updated_at"])


def register_hooks() -> None:
    """Tell the jobs app how to configure our jobs and what their ends mean (``ready``)."""
    job_payload_resolver_register(JobType.ADD, add_payload_resolve)
    job_payload_resolver_register(JobType.REENROLLMENT, reenrollment_payload_resolve)
    job_finished_hook_register(deployment_job_finished)
