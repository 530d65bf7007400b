"""Background work of the inventory app, run by the django-q2 cluster: the metadata
generators. Thin: each task calls one function of ``certyard.inventory.metadata.generators``."""

from __future__ import annotations

import logging
from typing import Any

from certyard.inventory.metadata.generators import (
    metadata_backfill_run,
    metadata_backfill_start,
    metadata_backfills_resume,
    metadata_generate_new_enqueue,
)
from certyard.inventory.metadata.generators import (
    metadata_generate_new as _generate_new,
)
from certyard.workflows.scheduled import ScheduledTask

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


def metadata_now() -> dict[str, int]:
    """The *metadata-new* scheduled task run on demand: resume the stalled backfills, then
    run the generators over the new certificates here and now rather than queue them (one
    slice; if certificates remain after it, the rest is queued as usual)."""
    resumed = metadata_backfills_resume()
    processed = _generate_new()
    return {"certificates_processed": processed, "backfills_resumed": resumed}


def metadata_backfill_start_now(*, actor: Any = None) -> dict[str, Any]:
    """Start a backfill of every enabled generator over the whole inventory, as the
    console's *Metadata* page and ``POST /api/v1/metadata/backfills/`` do (refused while
    one runs, or with no generator registered)."""
    backfill = metadata_backfill_start(actor=actor)
    return {
        "backfill_id": backfill.pk,
        "total": backfill.total,
        "registrations": list(backfill.registration_names),
    }


# Registered in InventoryConfig.ready (certyard.workflows.scheduled).
SCHEDULED_TASKS = (
    ScheduledTask(
        name="metadata-new",
        label="Metadata for new certificates",
        description="Run the enabled metadata generators over the certificates added since "
        "their last run, and resume the backfills whose worker was lost.",
        func=metadata_now,
        schedule_name=MAINTENANCE_SCHEDULE_NAME,
        events=("metadata.generated",),
    ),
    ScheduledTask(
        name="metadata-backfill",
        label="Metadata backfill",
        description="Start a backfill: every enabled metadata generator over every "
        "certificate the inventory holds (in the background, batch after batch). Refused "
        "while a backfill runs. No schedule runs this.",
        func=metadata_backfill_start_now,
        takes_actor=True,
        events=("metadata.generated",),
    ),
)
