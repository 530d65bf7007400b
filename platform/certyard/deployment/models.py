"""Deliveries of certificates into stores (and removals), grouped into batches."""

import uuid

from django.conf import settings
from django.db import models

from certyard.encryption import EncryptedTextField


class DeploymentBatch(models.Model):
    """One request to deliver, remove or renew-and-replace: its progress is its deployments'."""

    class Kind(models.TextChoices):
        ADD = "add", "Add to stores"
        REMOVE = "remove", "Remove from stores"
        RENEW_REPLACE = "renew_replace", "Renew and replace"
        ENROLLMENT = "enrollment", "Enrollment target stores"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=14, choices=Kind.choices)
    certificate = models.ForeignKey(
        "inventory.Certificate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deployment_batches",
    )
    new_certificate = models.ForeignKey(
        "inventory.Certificate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    template = models.ForeignKey(
        "enrollment.Template", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deployment batches"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.id}"


class Deployment(models.Model):
    """One certificate added to (or removed from) one store, tracked through its job."""

    class Action(models.TextChoices):
        ADD = "add", "Add"
        REMOVE = "remove", "Remove"
        REENROLL = "reenroll", "Re-enroll (key made on the device)"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        DEPLOYED = "deployed", "Deployed and served"
        WRITTEN = "written", "Written"
        WARNING = "warning", "Warning"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    OPEN_STATES = (State.PENDING, State.RUNNING, State.AWAITING_APPROVAL)

    class KeyOrigin(models.TextChoices):
        NONE = "none", "No key"
        PLATFORM = "platform", "Made by the platform"
        DEVICE = "device", "Made on the device"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    batch = models.ForeignKey(DeploymentBatch, on_delete=models.CASCADE, related_name="deployments")
    certificate = models.ForeignKey(
        "inventory.Certificate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deployments",
        help_text="What is delivered or removed (empty until a re-enrollment is issued).",
    )
    store = models.ForeignKey(
        "inventory.CertificateStore", on_delete=models.CASCADE, related_name="deployments"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    alias = models.CharField(max_length=512, blank=True)
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(
        max_length=17, choices=State.choices, default=State.PENDING, db_index=True
    )
    key_origin = models.CharField(max_length=8, choices=KeyOrigin.choices, default=KeyOrigin.NONE)
    enrollment = models.ForeignKey(
        "enrollment.EnrollmentRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deployments",
    )
    # Delivery options kept for a deployment that waits (approval) before its job exists.
    overwrite = models.BooleanField(default=False)
    create_store = models.BooleanField(default=False)
    entry_parameters = models.JSONField(
        default=dict, blank=True, help_text="The non-secret entry parameters."
    )
    # Secret entry parameters (passwords): encrypted JSON, resolved into the agent's
    # payload at fetch time, never stored in Job.payload.
    secret_entry_parameters = EncryptedTextField(blank=True, editable=False)
    message = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.action} {self.certificate_id} at {self.store_id}"


class DiscoveryCandidate(models.Model):
    """A file a discovery job found that may be a certificate store."""

    class State(models.TextChoices):
        NEW = "new", "New"
        GONE = "gone", "Gone"
        APPROVED = "approved", "Approved"
        IGNORED = "ignored", "Ignored"

    orchestrator = models.ForeignKey(
        "fleet.Orchestrator", on_delete=models.CASCADE, related_name="discovery_candidates"
    )
    path = models.CharField(max_length=4096)
    kind = models.CharField(max_length=10)
    store_type = models.CharField(max_length=50, blank=True, help_text="Short name, if known.")
    certificate_count = models.PositiveIntegerField(default=0)
    private_key = models.BooleanField(default=False)
    password_needed = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.NEW, db_index=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    store = models.ForeignKey(
        "inventory.CertificateStore",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["orchestrator", "path"]
        constraints = [
            models.UniqueConstraint(
                fields=["orchestrator", "path"], name="discovery_candidate_unique_path"
            )
        ]

    def __str__(self) -> str:
        return f"{self.path} on {self.orchestrator_id}"
