"""Background work of enrollment, run by django-q2."""

from __future__ import annotations

import logging
from typing import Any

from certyard.enrollment.services import pfx_hand_overs_prune
from certyard.enrollment.sync import gateway_sync_run as _run
from certyard.enrollment.sync import gateway_sync_start, gateway_syncs_resume
from certyard.errors import ServiceError
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.scheduled import ScheduledTask
from handlers.base import HandlerKind
from handlers.registry import handler_class

logger = logging.getLogger(__name__)

UPKEEP_SCHEDULE_NAME = "certyard: gateway sync resume"


def gateway_sync_run(sync_id: int) -> int:
    return _run(sync_id)


def gateway_syncs_resume_every_minute() -> int:
    """Enrollment's every-minute upkeep (the schedule keeps its first name): resume the
    gateway syncs whose worker was lost, and drop the PKCS#12 hand-overs nobody downloaded
    in time, so none outlives its few minutes even when no one enrolls again."""
    pfx_hand_overs_prune()
    return gateway_syncs_resume()


def gateway_syncs_start_all(*, actor: Any = None) -> dict[str, list[dict[str, Any]]]:
    """Start an incremental sync of every enabled CA gateway that can list what it issued
    (the *gateway-sync* scheduled task, run on demand: no schedule syncs gateways on its
    own). A gateway already being synchronized, or that cannot start, is listed with why."""
    started: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for registration in HandlerRegistration.objects.filter(
        kind=HandlerKind.GATEWAY.value, enabled=True
    ).order_by("name"):
        info = handler_class(registration.handler)
        if info is None or info.cls is None or not getattr(info.cls, "supports_sync", False):
            continue
        try:
            sync = gateway_sync_start(registration=registration, actor=actor)
        except ServiceError as refused:
            skipped.append({"gateway": registration.name, "reason": refused.message})
            continue
        started.append({"gateway": registration.name, "sync_id": sync.pk})
    if started or skipped:
        logger.info("gateway syncs started: %s; not started: %s", started, skipped)
    return {"started": started, "skipped": skipped}


# Registered in EnrollmentConfig.ready (certyard.workflows.scheduled).
SCHEDULED_TASKS = (
    ScheduledTask(
        name="gateway-sync",
        label="CA gateway sync",
        description="Start an incremental sync of every enabled CA gateway that can list "
        "what it issued; the certificates it finds enter the inventory. No schedule runs "
        "this: gateways are synchronized when asked.",
        func=gateway_syncs_start_all,
        takes_actor=True,
        events=("metadata.generated",),
    ),
    ScheduledTask(
        name="gateway-upkeep",
        label="Gateway sync upkeep",
        description="Resume the gateway syncs whose worker was lost, and drop the PKCS#12 "
        "hand-overs nobody downloaded in time.",
        func=gateway_syncs_resume_every_minute,
        schedule_name=UPKEEP_SCHEDULE_NAME,
    ),
)
