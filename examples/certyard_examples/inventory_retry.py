"""A job complete handler: try a failed inventory again later, once."""

from __future__ import annotations

from handlers.base import HandlerResult, JobCompleteContext, JobCompleteHandler, Platform
from handlers.parameters import Parameter, ParameterType


class RetryFailedInventory(JobCompleteHandler):
    """Schedules one more inventory of a store after its inventory failed for good.

    The platform itself retries a failed job a few times, shortly after each failure.
    This handler acts only once those retries are spent (the job's last attempt failed):
    it opens a new inventory job for the same store, to run after **delay_minutes**,
    naming the failed job as the one it retries. It retries **exactly once**, keeping no
    state: the job's provenance says whether the job that failed is already a handler's
    retry (``source`` ``handler`` with a ``retry_of``), and then it stops. A person's
    *Retry* (source ``admin`` or ``api``) starts afresh. Register it for the job type
    ``inventory``; other jobs, successes and warnings are left alone.

    - **delay_minutes**: how long to wait before the new inventory (1 to 1440; 10 by
      default).
    """

    label = "Retry a failed inventory later, once (example)"
    parameters = (
        Parameter(
            "delay_minutes",
            ParameterType.INTEGER,
            help="Wait this long before the new inventory.",
            default=10,
            minimum=1,
            maximum=1440,
        ),
    )

    def handle(self, job: JobCompleteContext, platform: Platform) -> HandlerResult:
        if job.job_type != "inventory" or job.store is None:
            return HandlerResult(message=f"nothing to do for a {job.job_type} job")
        if job.outcome != "failure":
            return HandlerResult(message=f"inventory ended {job.outcome}: nothing to do")
        if not job.final:
            return HandlerResult(message=f"attempt {job.attempt} failed; the platform retries it")
        if job.source == "handler" and job.retry_of is not None:
            # Provenance, not a ledger: this job is itself a handler's retry. Once is enough.
            first = job.chain[0]["id"] if job.chain else job.retry_of
            return HandlerResult(
                message=f"the retry of {job.retry_of} failed too: not retried again",
                output={"first_job_id": first, "jobs_in_chain": len(job.chain)},
            )
        delay = int(self.config["delay_minutes"])
        new_job_id = platform.schedule_job(
            store_id=job.store["id"],
            job_type="inventory",
            delay_seconds=delay * 60,
            retry_of=job.job_id,
        )
        return HandlerResult(
            message=f"inventory failed ({job.message[:200]}); another in {delay} min",
            output={"store_id": job.store["id"], "delay_minutes": delay, "job_id": new_job_id},
        )
