"""Reads of the enrollment app: templates, enrollment requests, CA gateways and their
synchronizations."""

import uuid
from collections.abc import Iterable
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from certyard.enrollment.models import EnrollmentRequest, GatewaySync, PfxHandOver, Template
from certyard.inventory.models import Certificate
from certyard.pki.models import CertificateAuthority
from certyard.precompiled import PrecompiledQuery
from certyard.workflows.models import HandlerRegistration
from handlers.base import HandlerKind

# --- Templates ---------------------------------------------------------------------------


def template_list(
    *, enabled: bool | None = None, ca: CertificateAuthority | None = None
) -> QuerySet[Template]:
    """Templates by name with their issuer (a built-in CA or a gateway), narrowed to the
    enabled (or disabled) ones, or to one CA's."""
    templates = Template.objects.select_related("ca", "gateway").order_by("name")
    if enabled is not None:
        templates = templates.filter(enabled=enabled)
    if ca is not None:
        templates = templates.filter(ca=ca)
    return templates


def template_enrollable_get(*, name: str) -> Template | None:
    """The enabled template of that name, if there is one."""
    return template_list(enabled=True).filter(name=name).first()


# --- Enrollment requests -------------------------------------------------------------------


def enrollment_request_list(*, states: Iterable[str] | None = None) -> QuerySet[EnrollmentRequest]:
    """Requests the newest first, with who asked, who decided and what was issued;
    narrowed to some states when ``states`` is given (empty: all)."""
    requests = EnrollmentRequest.objects.select_related(
        "requested_by", "decided_by", "certificate"
    ).order_by("-created_at", "-pk")
    if states:
        requests = requests.filter(state__in=states)
    return requests


def enrollment_request_detail_queryset(*, requested_by: Any = None) -> QuerySet[EnrollmentRequest]:
    """Requests with everything their page shows; only ``requested_by``'s when given (the
    pk of a person who may see only their own)."""
    requests = EnrollmentRequest.objects.select_related(
        "template__ca",
        "template__gateway",
        "requested_by",
        "decided_by",
        "certificate",
        "renewal_of",
    )
    if requested_by is not None:
        requests = requests.filter(requested_by=requested_by)
    return requests


def enrollment_request_issued(*, certificate: Certificate) -> EnrollmentRequest | None:
    """The latest request that issued this certificate (what a renewal repeats), if any."""
    return (
        EnrollmentRequest.objects.filter(
            certificate=certificate, state=EnrollmentRequest.State.ISSUED
        )
        .select_related("template", "requested_by")
        .order_by("-issued_at")
        .first()
    )


def enrollment_requests_pending_count(*, limit: int) -> int:
    """How many requests wait for approval, counted up to ``limit`` + 1 at most: a bounded
    SELECT on the indexed state, never a COUNT over the table."""
    waiting = EnrollmentRequest.objects.filter(state=EnrollmentRequest.State.PENDING)
    return len(waiting.values_list("pk", flat=True)[: limit + 1])


# --- CA gateways ---------------------------------------------------------------------------


def gateway_registrations() -> QuerySet[HandlerRegistration]:
    """The handler registrations that are CA gateways."""
    return HandlerRegistration.objects.filter(kind=HandlerKind.GATEWAY)


def gateway_list() -> QuerySet[HandlerRegistration]:
    """The gateways by name, each with its latest sync (``last_sync_id``, ``_state``,
    ``_at``) and the templates issuing through it (prefetched, by name)."""
    latest = GatewaySync.objects.filter(gateway=OuterRef("pk")).order_by("-started_at", "-pk")
    return (
        gateway_registrations()
        .annotate(
            last_sync_id=Subquery(latest.values("pk")[:1]),
            last_sync_state=Subquery(latest.values("state")[:1]),
            last_sync_at=Subquery(latest.values("started_at")[:1]),
        )
        .prefetch_related("issuing_templates")
        .order_by("name")
    )


def gateway_sync_list(*, gateway: HandlerRegistration | None = None) -> QuerySet[GatewaySync]:
    """Synchronizations the newest first, with their gateway and who started them; one
    gateway's when given."""
    syncs = GatewaySync.objects.select_related("gateway", "started_by").order_by(
        "-started_at", "-pk"
    )
    if gateway is not None:
        syncs = syncs.filter(gateway=gateway)
    return syncs


def pfx_hand_over_ready(*, request: EnrollmentRequest, owner: Any) -> bool:
    """Whether a PKCS#12 waits for ``owner`` to download it from the hand-over page."""
    return PfxHandOver.objects.filter(
        request=request, owner=owner, expires_at__gt=timezone.now()
    ).exists()


_enrollment_by_pk = PrecompiledQuery(
    lambda pk: EnrollmentRequest.objects.filter(pk=pk), pk=uuid.UUID
)


def enrollment_as_saved(enrollment: EnrollmentRequest, *, actor: Any) -> EnrollmentRequest:
    """``enrollment`` read again as saved (a hook may have moved it on since), keeping
    whether it was a replay, with its requester set when that is ``actor`` (the one who
    asked: not one more query)."""
    (saved,) = _enrollment_by_pk(pk=enrollment.pk)
    saved.replayed = enrollment.replayed
    if saved.requested_by_id is not None and saved.requested_by_id == actor.pk:
        saved.requested_by = actor
    return saved
