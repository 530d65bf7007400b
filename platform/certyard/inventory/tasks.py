"""Background work of the inventory app, run by the django-q2 cluster: the metadata
generators. Thin: each task calls one function of ``certyard.inventory.metadata.generators``."""

from __future__ import annotations

import logging

from certyard.inventory.metadata.generators import (
    metadata_backfill_run,
    metadata_backfills_resume,
    metadata_generate_new_enqueue,
)
from certyard.inventory.metadata.generators import (
    metadata_generate_new as _generate_new,
)

logger = logging.getLogger(__name__)

MAINTENANCE_SCHEDULE_NAME = "certyard: metadata generators (new certificates, stalled backfills)"


def metadata_generate_new() -> int:
    """The generators over the certificates added since their last run (one slice)."""
    return _generate_new()


def metadata_backfill(backfill_id: int) -> int:
    """One slice of a backfill; it queues the next itself."""
    return metadata_backfill_run(backfill_id)


def metadata_maintenance() -> dict[str, int]:
    """Every minute: catch up with new certificates no commit queued a task for, and
    resume the backfills whose worker was killed."""
    queued = metadata_generate_new_enqueue()
    resumed = metadata_backfills_resume()
    if queued or resumed:
        logger.info(
            "metadata maintenance: new-certificate task queued: %s, %d backfill(s) resumed",
            queued,
            resumed,
        )
    return {"new_certificates_queued": int(queued), "backfills_resumed": resumed}
