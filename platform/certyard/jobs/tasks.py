"""Background work of the jobs app, run by the django-q2 cluster."""

import logging

from certyard.jobs.services import inventory_schedules_run, jobs_release_lapsed

logger = logging.getLogger(__name__)

MAINTENANCE_SCHEDULE_NAME = "certyard: job schedules and leases"


def maintenance() -> dict[str, int]:
    """Turn due inventory schedules into jobs and offer again the jobs whose lease lapsed."""
    created = inventory_schedules_run()
    released = jobs_release_lapsed()
    if created or released:
        logger.info(
            "maintenance: %d scheduled job(s) opened, %d lapsed lease(s)", created, released
        )
    return {"scheduled_jobs": created, "lapsed_leases": released}
