"""Background work of enrollment, run by django-q2."""

from certyard.enrollment.sync import gateway_sync_run as _run
from certyard.enrollment.sync import gateway_syncs_resume


def gateway_sync_run(sync_id: int) -> int:
    return _run(sync_id)


def gateway_syncs_resume_every_minute() -> int:
    return gateway_syncs_resume()
