"""Background work of the jobs app, run by the django-q2 cluster."""

import logging
from typing import Any

from certyard.jobs.expiry import expiry_scan
from certyard.jobs.services import inventory_schedules_run, jobs_release_lapsed
from certyard.workflows.scheduled import ScheduledTask

logger = logging.getLogger(__name__)

MAINTENANCE_SCHEDULE_NAME = "certyard: job schedules and leases"
EXPIRY_SCAN_SCHEDULE_NAME = "certyard: expiration scan"


def maintenance(*, schedule_name: str = MAINTENANCE_SCHEDULE_NAME) -> dict[str, int]:
    """Turn due inventory schedules into jobs and offer again the jobs whose lease lapsed."""
    created = inventory_schedules_run(schedule_name=schedule_name)
    released = jobs_release_lapsed()
    if created or released:
        logger.info(
            "maintenance: %d scheduled job(s) opened, %d lapsed lease(s)", created, released
        )
    return {"scheduled_jobs": created, "lapsed_leases": released}


def maintenance_now(*, actor: Any = None) -> dict[str, int]:
    """:func:`maintenance` run now by someone: the jobs it opens name them too."""
    who = actor.get_username() if actor is not None else "a command"
    return maintenance(schedule_name=f"{MAINTENANCE_SCHEDULE_NAME}, run now by {who}")


def expiry_scan_daily() -> dict[str, object]:
    """Emit the day's expiration warnings (``certificate.expiring``); see jobs.expiry."""
    result = expiry_scan()
    return {
        "locations_examined": result.locations_examined,
        "events_emitted": result.events_emitted,
        "by_threshold": {str(days): count for days, count in result.by_threshold.items()},
        "batches": result.batches,
    }


# Registered in JobsConfig.ready (certyard.workflows.scheduled).
SCHEDULED_TASKS = (
    ScheduledTask(
        name="expiry-scan",
        label="Expiration scan",
        description="Warn of every certificate, at every location, past a threshold of "
        "CERTYARD_EXPIRY_THRESHOLDS or expired: one certificate.expiring event for the "
        "smallest threshold crossed and not yet warned of.",
        func=expiry_scan_daily,
        schedule_name=EXPIRY_SCAN_SCHEDULE_NAME,
        events=("certificate.expiring",),
        # As its schedule's (migration 0006): a first scan of a large inventory takes time.
        timeout_seconds=1800,
    ),
    ScheduledTask(
        name="job-schedules",
        label="Job schedules and leases",
        description="Open the inventory jobs whose store schedule is due, and offer again "
        "the jobs whose lease lapsed (an attempt lost that way ends as a failure).",
        func=maintenance_now,
        takes_actor=True,
        schedule_name=MAINTENANCE_SCHEDULE_NAME,
        events=("job.completed",),
    ),
)
