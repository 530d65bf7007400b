"""Background work of enrollment, run by django-q2."""

from certyard.enrollment.services import pfx_hand_overs_prune
from certyard.enrollment.sync import gateway_sync_run as _run
from certyard.enrollment.sync import gateway_syncs_resume


def gateway_sync_run(sync_id: int) -> int:
    return _run(sync_id)


def gateway_syncs_resume_every_minute() -> int:
    """Enrollment's every-minute upkeep (the schedule keeps its first name): resume the
    gateway syncs whose worker was lost, and drop the PKCS#12 hand-overs nobody downloaded
    in time, so none outlives its few minutes even when no one enrolls again."""
    pfx_hand_overs_prune()
    return gateway_syncs_resume()
