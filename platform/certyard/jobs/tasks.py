"""Background work of the jobs app, run by the django-q2 cluster."""

import logging

from certyard.jobs.expiry import expiry_scan
from certyard.jobs.services import inventory_schedules_run, jobs_release_lapsed

logger = logging.getLogger(__name__)

MAINTENANCE_SCHEDULE_NAME = "certyard: job schedules and leases"
EXPIRY_SCAN_SCHEDULE_NAME = "certyard: expiration scan"


def maintenance() -> dict[str, int]:
    """Turn due inventory schedules into jobs and offer again the jobs whose lease lapsed."""
    created = inventory_schedules_run(schedule_name=MAINTENANCE_SCHEDULE_NAME)
    released = jobs_release_lapsed()
    if created or released:
        logger.info(
            "maintenance: %d scheduled job(s) opened, %d lapsed lease(s)", created, released
        )
    return {"scheduled_jobs": created, "lapsed_leases": released}


def expiry_scan_daily() -> dict[str, object]:
    """Emit the day's expiration warnings (``certificate.expiring``); see jobs.expiry."""
    result = expiry_scan()
    return {
        "locations_examined": result.locations_examined,
        "events_emitted": result.events_emitted,
        "by_threshold": {str(days): count for days, count in result.by_threshold.items()},
        "batches": result.batches,
    }
