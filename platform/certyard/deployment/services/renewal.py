"""Renew and replace: a new certificate into every location of the old one.

The certificate may be one Certyard did not issue (found by inventory): the admin picks a
template, the subject's common name and the SANs carry over, and the template's rules
judge them — through enrollment's own services, never around them. Locations whose store
type supports re-enrollment get a key made on the device (a ``reenrollment`` job: the
agent sends its CSR back); the others share one PFX enrollment whose platform-made key
is delivered with ``add`` jobs that overwrite the entry at the same alias.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from django.db import transaction

from certyard.deployment.models import Deployment, DeploymentBatch
from certyard.deployment.services.delivery import add_plan, deployment_add_queue
from certyard.enrollment import policy
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.enrollment.services import enrollment_submit_pfx
from certyard.errors import ServiceError
from certyard.fleet.selectors import orchestrator_can
from certyard.inventory.authorization import certificate_act_require, store_act_require
from certyard.inventory.models import Certificate, CertificateLocation
from certyard.jobs.services import job_request, job_source_context
from certyard.pki import crypto
from certyard.pki.models import KeyAlgorithm
from orchestrators.protocol import JobType

logger = logging.getLogger(__name__)

# The agent's key types: KeyAlgorithm value -> (key_type, key_size).
_DEVICE_KEYS: dict[str, tuple[str, int]] = {
    KeyAlgorithm.EC_P256: ("EC", 256),
    KeyAlgorithm.EC_P384: ("EC", 384),
    KeyAlgorithm.RSA_2048: ("RSA", 2048),
    KeyAlgorithm.RSA_3072: ("RSA", 3072),
    KeyAlgorithm.RSA_4096: ("RSA", 4096),
    KeyAlgorithm.ED25519: ("Ed25519", 0),
}


def _template_resolve(template: Any) -> Template:
    if isinstance(template, Template):
        found: Template | None = template
    else:
        found = Template.objects.filter(name=str(template or "")).first()
    if found is None:
        raise ServiceError(f"there is no template named {template!r}", field="template")
    if not found.enabled:
        raise ServiceError(
            f"the template {found.name!r} is disabled", field="template", http_status=409
        )
    return found


def _key_algorithm(template: Template, certificate: Certificate) -> str:
    """The old key's kind when the template allows it, else the template's first."""
    allowed = [a for a in template.allowed_key_types if a in KeyAlgorithm.values]
    if not allowed:
        raise ServiceError(f"the template {template.name!r} allows no key type", field="template")
    size = certificate.key_size or 0
    old = certificate.key_algorithm.upper()
    for candidate in allowed:
        if candidate.startswith("RSA") and "RSA" in old and candidate == f"RSA-{size}":
            return candidate
        if candidate == KeyAlgorithm.EC_P256 and "EC" in old and size == 256:
            return candidate
        if candidate == KeyAlgorithm.EC_P384 and "EC" in old and size == 384:
            return candidate
    return allowed[0]


def _names(certificate: Certificate) -> tuple[str, list[str]]:
    """The common name and the SANs (``DNS:…``/``IP:…``) that carry over."""
    sans = [str(s) for s in certificate.sans or []]
    return certificate.common_name, sans


def _sans_wire(sans: list[str]) -> list[dict[str, str]]:
    kinds = {"DNS": "dns", "IP": "ip", "EMAIL": "email", "URI": "uri"}
    wire = []
    for text in sans:
        kind, _, value = text.partition(":")
        wire.append({"type": kinds.get(kind.upper(), kind.lower()), "value": value.strip()})
    return wire


def _names_check(template: Template, common_name: str, sans: list[str], algorithm: str) -> None:
    """The template's rules on the names, before anything is written or sent: the same
    check a CSR gets (``policy.request_check``), on a CSR made here with a throwaway key."""
    try:
        names: list[x509.GeneralName] = []
        for text in sans:
            kind, _, value = text.partition(":")
            if kind.upper() == "DNS":
                names.append(x509.DNSName(value.strip()))
            elif kind.upper() == "IP":
                names.append(x509.IPAddress(ipaddress.ip_address(value.strip())))
            else:
                raise policy.PolicyError(f"{text!r}: only DNS and IP names carry over")
        key = crypto.key_generate(algorithm)
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
        )
        builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        csr = builder.sign(key, crypto.signing_hash(key))  # type: ignore[arg-type]
        policy.request_check(template, csr)
    except (policy.PolicyError, ValueError) as exc:
        raise ServiceError(
            f"the template {template.name!r} refuses the certificate's names: {exc}",
            code="template_refused",
            field="template",
        ) from exc


def _device_capable(location: CertificateLocation) -> bool:
    store = location.store
    return store.store_type.supports_reenrollment and orchestrator_can(
        orchestrator=store.orchestrator,
        store_type_name=store.store_type.short_name,
        operation=JobType.REENROLLMENT,
    )


def certificate_renew_and_replace(
    *, certificate: Certificate, template: Any, actor: Any, source: str
) -> DeploymentBatch:
    """Renew ``certificate`` under ``template`` (an instance or a name) and replace it in
    every location the inventory knows, with per-location progress in the batch.

    Refused before anything is written: a certificate or a store ``actor`` may not act
    on, no location, names the template refuses, a location whose store cannot take the
    new certificate (see ``delivery.add_plan``). With approval pending, the platform-key
    locations wait (``awaiting_approval``) and are sent when the request is issued.
    """
    certificate_act_require(actor, certificate)
    template = _template_resolve(template)
    locations = list(
        CertificateLocation.objects.filter(certificate=certificate)
        .select_related("store__store_type", "store__orchestrator")
        .order_by("store__client_machine", "store_id", "alias")
    )
    if not locations:
        raise ServiceError(
            "the inventory knows no location of this certificate: renew it instead",
            code="no_locations",
            http_status=409,
        )
    for location in locations:
        store_act_require(actor, location.store)
    common_name, sans = _names(certificate)
    algorithm = _key_algorithm(template, certificate)
    _names_check(template, common_name, sans, algorithm)
    on_device = [loc for loc in locations if _device_capable(loc)]
    platform = [loc for loc in locations if loc not in on_device]
    # The platform-key locations checked with a stand-in for the key to come.
    stand_in = EnrollmentRequest()
    for location in platform:
        add_plan(
            certificate=certificate,
            store=location.store,
            actor=actor,
            alias=location.alias,
            include_private_key=True,
            entry_parameters=None,
            key_enrollment=stand_in,
        )
    key_type, key_size = _DEVICE_KEYS.get(algorithm, ("EC", 256))
    person = actor if getattr(actor, "pk", None) else None
    # The CA is asked first, outside any transaction: a refusal leaves nothing else behind.
    request = (
        enrollment_submit_pfx(
            template_name=template.name,
            common_name=common_name,
            sans=sans,
            key_algorithm=algorithm,
            actor=actor,
            type=EnrollmentRequest.Type.RENEW,
            renewal_of=certificate,
            hold=True,  # the key is kept for the deliveries, not handed over now
        ).request
        if platform
        else None
    )
    with transaction.atomic():
        batch = DeploymentBatch.objects.create(
            kind=DeploymentBatch.Kind.RENEW_REPLACE,
            certificate=certificate,
            template=template,
            created_by=person,
        )
        for location in on_device:
            deployment = Deployment.objects.create(
                batch=batch,
                store=location.store,
                action=Deployment.Action.REENROLL,
                alias=location.alias,
                key_origin=Deployment.KeyOrigin.DEVICE,
                overwrite=True,
                requested_by=person,
            )
            deployment.job = job_request(
                orchestrator=location.store.orchestrator,
                store=location.store,
                type=JobType.REENROLLMENT,
                payload={
                    "template_id": template.pk,
                    "renewal_of": certificate.pk,
                    "alias": location.alias or None,
                    "overwrite": True,
                    "key_type": key_type,
                    "key_size": key_size,
                    "subject": f"CN={common_name}" if common_name else "",
                    "sans": _sans_wire(sans),
                    "entry_parameters": {},
                },
                actor=actor,
                source=source,
                deployment_id=deployment.pk,
            )
            deployment.save(update_fields=["job", "updated_at"])
        if request is not None:
            _platform_key_deliveries(batch, request, platform, actor, source)
    return batch


def _platform_key_deliveries(
    batch: DeploymentBatch,
    request: EnrollmentRequest,
    locations: list[CertificateLocation],
    actor: Any,
    source: str,
) -> None:
    """One ``add`` per location now, or deployments that wait for the request to be
    issued (the issued hook, ``targets.enrollment_issued_deliver``, sends them)."""
    person = actor if getattr(actor, "pk", None) else None
    if request.state != EnrollmentRequest.State.ISSUED:
        for location in locations:
            Deployment.objects.create(
                batch=batch,
                store=location.store,
                action=Deployment.Action.ADD,
                alias=location.alias,
                overwrite=True,
                key_origin=Deployment.KeyOrigin.PLATFORM,
                enrollment=request,
                state=Deployment.State.AWAITING_APPROVAL,
                message="the renewal waits for approval",
                requested_by=person,
            )
        return
    new_certificate = request.certificate
    assert new_certificate is not None
    DeploymentBatch.objects.filter(pk=batch.pk).update(new_certificate=new_certificate)
    batch.new_certificate = new_certificate
    for location in locations:
        plan = add_plan(
            certificate=new_certificate,
            store=location.store,
            actor=actor,
            alias=location.alias,
            include_private_key=True,
            entry_parameters=None,
            key_enrollment=request,
        )
        deployment_add_queue(
            batch=batch,
            certificate=new_certificate,
            plan=plan,
            actor=actor,
            source=source,
            overwrite=True,
            enrollment=request,
        )


def certificate_renew_and_replace_for_handler(
    *,
    certificate_sha256: str,
    template: str = "",
    new_key: bool = True,
    by: str,
    registration_id: int | None = None,
) -> None:
    """Carry out a handler's ``renew_and_replace`` (``auto_renew``): once per certificate.

    A certificate the inventory has seen somewhere is renewed and replaced in every
    location, after the run's transaction commits (the CA is never asked inside one), under
    ``template`` or the template it was issued with. One seen nowhere is only renewed,
    as ``renew_certificate`` does (a PFX enrollment's key, collected by its requester).
    The jobs it queues record ``by`` (the registration's name) and the registration as
    their provenance.
    """
    from certyard.enrollment.services import certificate_renew_for_handler

    certificate = Certificate.objects.filter(sha256=str(certificate_sha256).lower()).first()
    if certificate is None:
        raise ServiceError(f"the inventory holds no certificate {certificate_sha256}")
    if not CertificateLocation.objects.filter(certificate=certificate).exists():
        certificate_renew_for_handler(certificate_sha256=certificate.sha256, new_key=new_key, by=by)
        return
    under_way = (
        certificate.renewal_requests.exclude(
            state__in=[EnrollmentRequest.State.FAILED, EnrollmentRequest.State.DENIED]
        ).exists()
        or Deployment.objects.filter(
            batch__kind=DeploymentBatch.Kind.RENEW_REPLACE,
            batch__certificate=certificate,
            state__in=Deployment.OPEN_STATES,
        ).exists()
    )
    if under_way:
        return
    name = str(template or "")
    if not name:
        original = (
            EnrollmentRequest.objects.filter(
                certificate=certificate, state=EnrollmentRequest.State.ISSUED
            )
            .order_by("-issued_at")
            .first()
        )
        if original is None:
            raise ServiceError(
                f"Certyard did not issue {certificate}: name the template to renew it under"
            )
        name = original.template_name
    chosen = _template_resolve(name)

    def renew() -> None:
        try:
            with job_source_context(detail=by, registration_id=registration_id):
                certificate_renew_and_replace(
                    certificate=certificate, template=chosen, actor=None, source="handler"
                )
        except ServiceError as exc:  # a refused renewal is recorded on its request
            logger.warning("renew and replace of %s for %s failed: %s", certificate.pk, by, exc)

    transaction.on_commit(renew)
