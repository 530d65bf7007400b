"""Writes of the jobs app: opening, leasing, reporting and finishing orchestrators' jobs.

Who asked is ``provenance``; opening jobs is ``opening``; the lease, long poll and the
guards every agent report passes are ``leasing``; what agents report is ``reporting``;
what an ended attempt leaves behind is ``attempts``; a person's cancel and retry are
``admin_actions``. Callers import from this package.
"""

from certyard.jobs.services.admin_actions import job_cancel, job_retry
from certyard.jobs.services.attempts import (
    job_report_errors_record,
    job_report_errors_record_by_id,
)
from certyard.jobs.services.leasing import (
    agent_poll_is_current,
    agent_poll_open,
    job_configuration,
    job_lease_next,
    job_reported,
    job_require_leased,
    jobs_release_for_orchestrator,
    jobs_release_lapsed,
)
from certyard.jobs.services.opening import (
    inventory_schedules_run,
    job_inventory_request,
    job_request,
    job_request_for_handler,
    store_inventory_now,
)
from certyard.jobs.services.provenance import job_source_context, job_source_detail
from certyard.jobs.services.reporting import (
    InventoryReport,
    job_complete,
    job_inventory_chunk,
    job_inventory_commit,
    job_inventory_report,
)

__all__ = [
    "InventoryReport",
    "agent_poll_is_current",
    "agent_poll_open",
    "inventory_schedules_run",
    "job_cancel",
    "job_complete",
    "job_configuration",
    "job_inventory_chunk",
    "job_inventory_commit",
    "job_inventory_report",
    "job_inventory_request",
    "job_lease_next",
    "job_report_errors_record",
    "job_report_errors_record_by_id",
    "job_reported",
    "job_request",
    "job_request_for_handler",
    "job_require_leased",
    "job_retry",
    "job_source_context",
    "job_source_detail",
    "jobs_release_for_orchestrator",
    "jobs_release_lapsed",
    "store_inventory_now",
]
