"""How apps above jobs take part in a job's life: they configure its payload for the agent
and hear when an attempt ends.

Apps above jobs (deployment, enrollment) register here in ``AppConfig.ready``: jobs knows
nothing of deployments, and these registries are how it calls them (the
``registration_token_blueprint_check_register`` pattern of the fleet app).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from certyard.fleet.models import Orchestrator
from certyard.jobs.models import Job, JobHistory

logger = logging.getLogger(__name__)

JobPayloadResolver = Callable[[Job, Orchestrator], dict[str, Any]]
JobFinishedHook = Callable[[Job], None]

_payload_resolvers: dict[str, JobPayloadResolver] = {}
_finished_hooks: list[JobFinishedHook] = []


def job_payload_resolver_register(job_type: str, resolver: JobPayloadResolver) -> None:
    """Register ``resolver(job, orchestrator) -> wire payload`` for jobs of ``job_type``.

    Contract:
    - Called by ``job_configuration`` each time the agent holding the lease fetches the
      job (so once per attempt, more if the agent asks again). It turns the references in
      ``Job.payload`` into what the agent needs, secrets included (a sealed private key,
      the store password in ``entry_parameters``): such secrets exist only in the answer,
      never in the database. Seal to ``orchestrator.public_key_pem`` with
      ``transit_context(job_id=job.pk, attempt=job.attempts)``.
    - It must not write anything the job's outcome depends on (a fetch may be repeated).
    - Raise ``ServiceError`` when the job cannot be configured (e.g. the key is gone):
      the fetch is refused (4xx) with its message and the agent ends the attempt.
    - One resolver per type: registering again replaces it (``ready`` may run twice).
    Without a resolver, the stored payload is sent as it is.
    """
    _payload_resolvers[str(job_type)] = resolver


def job_finished_hook_register(hook: JobFinishedHook) -> None:
    """Register ``hook(job)``, called whenever an attempt at a job ends or the job ends.

    Contract:
    - Called inside the transaction that records the end, after the job's state changed:
      ``job_complete`` (success, warning, failure — retried or final), a lease that lapsed
      (``jobs_release_lapsed``, retried or final) and ``job_cancel``. Not called for a
      lease the agent never picked up (no attempt ran) nor for a repeated report.
    - ``job.attempts`` is the attempt that ended; ``job_attempt_outcome(job)`` says how it
      ended (``success``, ``warning``, ``failure``, ``lease_expired``, ``released`` for a
      cancel; ``cancelled`` for a job cancelled before any attempt ran);
      ``job.is_finished`` says whether the job is over; ``job.result`` holds the agent's
      result of that attempt (``{}`` when it sent none).
    - A hook runs in a savepoint: if it raises, its writes are undone and the error is
      logged, and the job's end is still recorded (an agent is never refused its result
      because of a consumer's bug).
    - Registering the same function again is a no-op.
    """
    if hook not in _finished_hooks:
        _finished_hooks.append(hook)


def job_attempt_outcome(job: Job) -> str:
    """How the job's latest attempt ended (see ``job_finished_hook_register``)."""
    if job.state == Job.State.CANCELLED and job.attempts == 0:
        return Job.State.CANCELLED
    history = JobHistory.objects.filter(job=job, attempt=job.attempts).first()
    if history is not None and history.outcome:
        return history.outcome
    return job.outcome or ""


def job_finished_notify(job: Job) -> None:
    """Tell the registered hooks that an attempt (or the job) ended; see the register."""
    for hook in list(_finished_hooks):
        try:
            with transaction.atomic():
                hook(job)
        except Exception:
            logger.exception("job finished hook %r failed for job %s", hook, job.pk)


def job_payload_resolved(job: Job, orchestrator: Orchestrator) -> dict[str, Any]:
    resolver = _payload_resolvers.get(job.type)
    if resolver is None:
        return job.payload
    payload = resolver(job, orchestrator)
    if not isinstance(payload, dict):
        raise TypeError(f"the payload resolver for {job.type} jobs returned {type(payload)}")
    return payload
