"""The work the platform gives its orchestrators, and each attempt at it."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from certyard.fleet.models import Orchestrator
from orchestrators.protocol import JobOutcome, JobType


class Job(models.Model):
    """A unit of work for one orchestrator, leased to it for a bounded time."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        LEASED = "leased", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    OPEN_STATES = (State.PENDING, State.LEASED)
    FINISHED_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    class Source(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        ADMIN = "admin", "Admin"
        API = "api", "API"
        HANDLER = "handler", "Handler"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=20, choices=[(t.value, t.name.title()) for t in JobType])
    store = models.ForeignKey(
        "inventory.CertificateStore",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="jobs",
    )
    orchestrator = models.ForeignKey(Orchestrator, on_delete=models.CASCADE, related_name="jobs")
    payload = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    outcome = models.CharField(
        max_length=10, blank=True, choices=[(o.value, o.name.title()) for o in JobOutcome]
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.ADMIN)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Provenance: who or what asked for the job, kept as text so it outlives a deleted
    # user, token, schedule or registration.
    source_detail = models.CharField(
        max_length=200,
        blank=True,
        help_text="Who asked, by source: the user's name (admin), the API token's name and "
        "prefix and its user (API), the django-q2 schedule (schedule), or the handler "
        "registration's name (handler).",
    )
    source_registration = models.ForeignKey(
        "workflows.HandlerRegistration",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs_started",
        help_text="The handler registration whose run asked for the job (source handler).",
    )
    retry_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retries",
        help_text="The job this one retries or follows.",
    )
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    available_at = models.DateTimeField(db_index=True)
    leased_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    picked_up_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the agent holding the lease fetched the job's configuration; until "
        "then the lease is short, so a job handed to an agent that has gone is offered again.",
    )
    missed_pickups = models.PositiveIntegerField(
        default=0, help_text="Leases that lapsed before the agent fetched the job: not attempts."
    )
    report_received_at = models.DateTimeField(
        null=True, blank=True, help_text="When the agent's report (e.g. inventory) was applied."
    )
    result = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "fleet_job"  # created by the fleet app, which held jobs first
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["orchestrator", "state", "available_at"])]
        constraints = [
            # One open inventory per store: schedules and clicks never pile jobs up.
            models.UniqueConstraint(
                fields=["store", "type"],
                condition=Q(state__in=["pending", "leased"], type="inventory"),
                name="job_one_open_inventory_per_store",
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} job {self.id}"

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED_STATES


class JobHistory(models.Model):
    """One attempt at a job: who held the lease and how it ended."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        WARNING = "warning", "Warning"
        FAILURE = "failure", "Failure"
        LEASE_EXPIRED = "lease_expired", "Lease expired"
        NOT_PICKED_UP = "not_picked_up", "Not picked up (the agent had gone)"
        RELEASED = "released", "Released (orchestrator disapproved or reset)"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="history")
    attempt = models.PositiveIntegerField()
    orchestrator = models.ForeignKey(Orchestrator, on_delete=models.CASCADE)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=14, choices=Outcome.choices, blank=True)
    message = models.TextField(blank=True)
    report_errors = models.JSONField(
        default=list,
        blank=True,
        help_text="Report submissions of this attempt that failed: [{at, error}], oldest first.",
    )
    result = models.JSONField(
        default=dict, blank=True, help_text="The agent's result of this attempt (no secrets)."
    )

    class Meta:
        db_table = "fleet_jobhistory"
        ordering = ["job", "attempt"]
        verbose_name_plural = "job history"
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt"], name="job_history_unique_attempt")
        ]

    def __str__(self) -> str:
        return f"{self.job} attempt {self.attempt}"


class AgentPoll(models.Model):
    """The newest long poll of an orchestrator: a newer poll ends the older one.

    Web processes each hold their own waiting polls; this row is how a poll waiting in
    one process learns that its agent opened a newer one in another. A poll that ends
    leaves its row (no write): the next poll replaces it.
    """

    orchestrator = models.OneToOneField(
        Orchestrator, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    poll_id = models.UUIDField()
    opened_at = models.DateTimeField()

    class Meta:
        verbose_name = "open agent poll"

    def __str__(self) -> str:
        return f"poll {self.poll_id} of {self.orchestrator_id}"


class ExpiryNotice(models.Model):
    """An expiration threshold a certificate at a location was reported for: once only.

    Written with the ``certificate.expiring`` event, in its transaction, so a notice means
    the event exists. A renewed certificate at the same location is another certificate,
    with notices of its own. ``threshold_days`` 0 is the "expired" notice.
    """

    # No database constraint: inventory removes locations in bulk with plain SQL and,
    # sitting below jobs, knows nothing of notices. A notice left without its location
    # is ignored, and the next scan deletes it (location ids are never reused).
    location = models.ForeignKey(
        "inventory.CertificateLocation",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    certificate = models.ForeignKey(
        "inventory.Certificate", on_delete=models.CASCADE, related_name="+"
    )
    not_after = models.DateTimeField(help_text="The certificate's expiry when it was reported.")
    threshold_days = models.PositiveSmallIntegerField(help_text="0 means expired.")
    emitted_at = models.DateTimeField()

    class Meta:
        ordering = ["-emitted_at", "-id"]
        constraints = [
            # Two scans at once: the second one's insert fails, and its batch (events
            # included) is rolled back and read again.
            models.UniqueConstraint(
                fields=["location", "certificate", "threshold_days"],
                name="expiry_notice_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.threshold_days}-day notice for {self.certificate_id} at {self.location_id}"
