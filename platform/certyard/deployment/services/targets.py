"""Deliveries that wait for an enrollment to be issued: enrollment target stores, the
platform-key locations of a renew-and-replace that needed approval, and device-key
re-enrollments whose request needed approval."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from certyard.deployment.models import Deployment, DeploymentBatch
from certyard.deployment.services.delivery import add_plan, deployment_add_queue
from certyard.enrollment.models import EnrollmentRequest
from certyard.errors import ServiceError
from certyard.inventory.models import Certificate, CertificateStore
from certyard.jobs.models import Job
from certyard.precompiled import PrecompiledQuery

logger = logging.getLogger(__name__)

_SOURCE = Job.Source.API


def _alias_for(store: CertificateStore, enrollment: EnrollmentRequest) -> str:
    """Enrollment names no alias: a store type that needs one gets the common name."""
    if store.store_type.custom_alias != "required":
        return ""
    from certyard.pki import crypto

    return (crypto.common_name(enrollment.subject) or f"certyard-{str(enrollment.pk)[:8]}")[:512]


def _queue(
    *,
    batch: DeploymentBatch,
    certificate: Certificate,
    enrollment: EnrollmentRequest,
    store: CertificateStore,
    alias: str,
    overwrite: bool,
    device_key: str | None = None,
    deployment: Deployment | None = None,
) -> None:
    """One add job, in a savepoint: a store that cannot take it any more (its type
    changed, its agent lost the capability) gets a failed deployment saying why."""
    key = (
        enrollment
        if device_key is None
        and enrollment.method == EnrollmentRequest.Method.PFX
        and enrollment.private_key_pem
        else None
    )
    try:
        with transaction.atomic():
            plan = add_plan(
                certificate=certificate,
                store=store,
                actor=None,  # checked when the request (or the renewal) was made
                alias=alias,
                include_private_key=key is not None,
                entry_parameters=None,
                key_enrollment=key,
            )
            deployment_add_queue(
                batch=batch,
                certificate=certificate,
                plan=plan,
                actor=None,
                source=_SOURCE,
                overwrite=overwrite,
                device_key=device_key,
                enrollment=enrollment,
                deployment=deployment,
            )
    except ServiceError as exc:
        if deployment is None:
            deployment = Deployment(batch=batch, store=store, action=Deployment.Action.ADD)
        deployment.certificate = certificate
        deployment.alias = alias
        deployment.enrollment = enrollment
        deployment.state = Deployment.State.FAILED
        deployment.message = exc.message
        deployment.job = None
        deployment.save()


def enrollment_issued_deliver(enrollment: EnrollmentRequest) -> None:
    """The issued hook (``certificate_issued_hook_register``): send what waited for it.

    Idempotent: a deployment is sent once (it leaves ``awaiting_approval``) and an
    enrollment's target stores make one batch. An enrollment with neither deployments
    waiting for it nor target stores (most of them) costs one query.
    """
    if not _awaited(enrollment.pk):
        return
    enrollment = (
        EnrollmentRequest.objects.select_related("certificate").filter(pk=enrollment.pk).first()
    )
    if enrollment is not None and enrollment.state == EnrollmentRequest.State.DENIED:
        Deployment.objects.filter(
            enrollment=enrollment, state=Deployment.State.AWAITING_APPROVAL
        ).update(
            state=Deployment.State.FAILED,
            message=f"the request was denied: {enrollment.decision_comment}"[:2000],
            updated_at=timezone.now(),
        )
        return
    if enrollment is None or enrollment.certificate is None:
        return
    certificate = enrollment.certificate
    with transaction.atomic():
        waiting = list(
            Deployment.objects.select_for_update()
            .filter(enrollment=enrollment, state=Deployment.State.AWAITING_APPROVAL)
            .select_related("batch", "store__store_type", "store__orchestrator")
        )
        for deployment in waiting:
            device = deployment.action == Deployment.Action.REENROLL
            if device:
                # The agent kept the key it made (device-keys/<enrollment id>.pem): a new
                # add deployment installs the certificate with it.
                deployment.state = Deployment.State.WRITTEN
                deployment.message = "issued: delivered by an add job with the device's key"
                deployment.certificate = certificate
                deployment.save(update_fields=["state", "message", "certificate", "updated_at"])
                target = None
            else:
                target = deployment
            _queue(
                batch=deployment.batch,
                certificate=certificate,
                enrollment=enrollment,
                store=deployment.store,
                alias=deployment.alias,
                overwrite=True if device else deployment.overwrite,
                device_key=str(enrollment.pk) if device else None,
                deployment=target,
            )
            if deployment.batch.new_certificate_id is None and deployment.batch.kind in (
                DeploymentBatch.Kind.RENEW_REPLACE,
            ):
                DeploymentBatch.objects.filter(pk=deployment.batch_id).update(
                    new_certificate=certificate
                )
        _target_stores_deliver(enrollment, certificate)


def _awaited_query(pk: uuid.UUID) -> Any:
    waiting = Deployment.objects.filter(
        enrollment_id=OuterRef("pk"), state=Deployment.State.AWAITING_APPROVAL
    )
    targets = EnrollmentRequest.target_stores.through.objects.filter(
        enrollmentrequest_id=OuterRef("pk")
    )
    return (
        EnrollmentRequest.objects.filter(pk=pk)
        .filter(Exists(waiting) | Exists(targets))
        .only("pk")
        .order_by()
    )


# Asked after every enrollment is issued; the answer is nearly always no.
_awaited_enrollment = PrecompiledQuery(_awaited_query, pk=uuid.UUID)


def _awaited(enrollment_id: Any) -> bool:
    """Whether deployments wait for the enrollment, or it has target stores."""
    pk = enrollment_id if isinstance(enrollment_id, uuid.UUID) else uuid.UUID(str(enrollment_id))
    return bool(_awaited_enrollment(pk=pk))


def _target_stores_deliver(enrollment: EnrollmentRequest, certificate: Certificate) -> None:
    stores = list(enrollment.target_stores.select_related("store_type", "orchestrator"))
    if not stores:
        return
    if DeploymentBatch.objects.filter(
        kind=DeploymentBatch.Kind.ENROLLMENT, deployments__enrollment=enrollment
    ).exists():
        return
    batch = DeploymentBatch.objects.create(
        kind=DeploymentBatch.Kind.ENROLLMENT,
        certificate=certificate,
        new_certificate=certificate,
        template=enrollment.template,
        created_by=enrollment.requested_by,
        message=f"target stores of enrollment {enrollment.pk}",
    )
    for store in stores:
        _queue(
            batch=batch,
            certificate=certificate,
            enrollment=enrollment,
            store=store,
            alias=_alias_for(store, enrollment),
            overwrite=False,
        )


def enrollment_issued_hook(enrollment: Any) -> None:
    """Registered with enrollment; errors are logged there, the issuance stands."""
    enrollment_issued_deliver(enrollment)
