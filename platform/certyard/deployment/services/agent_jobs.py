"""The agent's reports on deployment jobs (discovery results, re-enrollment CSRs): which job
and attempt a report is for, checked by the jobs app as it checks its own reports."""

from __future__ import annotations

from certyard.jobs.services import job_reported as reported_job
from certyard.jobs.services import job_require_leased

__all__ = ["job_require_leased", "reported_job"]
