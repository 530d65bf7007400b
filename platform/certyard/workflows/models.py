"""Events, the handler registrations that react to them, and the log of every run.

The bottom app: its models point into no other app. Subjects (an orchestrator, a
certificate, a job) are named by type and id, so every app can emit into it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from certyard.encryption import EncryptedTextField
from handlers.base import HandlerKind

# How long one run of a registration may take when the registration does not say, by
# kind. A registration handler's default stays well within the budget all of them share
# per orchestrator registration (CERTYARD_REGISTRATION_HANDLERS_SECONDS, 10 s by
# default): half of it, so one slow handler leaves time for the next.
TIMEOUT_DEFAULTS: dict[str, int] = {
    HandlerKind.EVENT.value: 30,
    HandlerKind.JOB_COMPLETE.value: 30,
    HandlerKind.METADATA.value: 30,  # per batch of certificates
    # A CA may take a while to issue (an ACME order is several requests).
    HandlerKind.GATEWAY.value: 60,
}
TIMEOUT_DEFAULT = 30


def registration_timeout_budget() -> int:
    """The longest timeout a registration handler may have: the shared budget, in whole
    seconds (at least 1)."""
    return max(1, int(settings.CERTYARD_REGISTRATION_HANDLERS_SECONDS))


def registration_timeout_default(kind: str) -> int:
    """The timeout a registration of ``kind`` gets when none is given."""
    if kind == HandlerKind.REGISTRATION:
        return max(1, min(5, registration_timeout_budget()))
    return TIMEOUT_DEFAULTS.get(str(kind), TIMEOUT_DEFAULT)


class HandlerRegistration(models.Model):
    """One handler class configured to run: which class, on what, with which parameters."""

    name = models.CharField(max_length=200, unique=True)
    handler = models.CharField(
        max_length=200, help_text="The class's entry point name (certyard.handlers group)."
    )
    kind = models.CharField(
        max_length=20,
        choices=[(kind.value, kind.label) for kind in HandlerKind],
        editable=False,
        help_text="The extension point, copied from the class when saved.",
    )
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    order = models.PositiveIntegerField(
        default=100, help_text="Lower runs first, among the registrations of one event."
    )
    # What it applies to. An empty list means "any".
    events = models.JSONField(default=list, blank=True)
    job_types = models.JSONField(default=list, blank=True)
    store_types = models.JSONField(default=list, blank=True)
    orchestrators = models.JSONField(default=list, blank=True, help_text="Orchestrator ids.")
    templates = models.JSONField(default=list, blank=True, help_text="Certificate template names.")
    parameters = models.JSONField(default=dict, blank=True, help_text="Non-secret values.")
    secrets = EncryptedTextField(blank=True, help_text="Secret values, as encrypted JSON.")
    # None until saved: save() fills in the default of the registration's kind.
    timeout_seconds = models.PositiveIntegerField(
        default=None,
        help_text="How long one run may take; left out, the default of its kind.",
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=3, help_text="Tries per event, the first included."
    )
    retry_backoff_seconds = models.PositiveIntegerField(
        default=30, help_text="Wait before the second try; doubled for each later one."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "order", "name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(timeout_seconds__gte=1, timeout_seconds__lte=3600),
                name="registration_timeout_range",
            ),
            models.CheckConstraint(
                condition=models.Q(max_attempts__gte=1, max_attempts__lte=10),
                name="registration_attempts_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.timeout_seconds is None:
            self.timeout_seconds = registration_timeout_default(self.kind)
            update_fields = kwargs.get("update_fields")
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "timeout_seconds"}
        super().save(*args, **kwargs)


class Event(models.Model):
    """Something that happened, recorded in the emitting transaction (an outbox row)."""

    kind = models.CharField(max_length=60, db_index=True)
    subject_type = models.CharField(max_length=30)
    subject_id = models.CharField(max_length=64)
    subject_label = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["subject_type", "subject_id"], name="event_subject")]
        # Running the platform's scheduled work now (certyard.workflows.scheduled): most of
        # it emits events. Kept here, as the workflows app has no model of its own for it.
        permissions = [("run_scheduled_task", "Can run scheduled platform tasks now")]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject_label or self.subject_id}"


class HandlerRun(models.Model):
    """One invocation of one registration: written before it runs, completed after."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    registration = models.ForeignKey(
        HandlerRegistration, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    # Kept as text so the run still reads after its registration is deleted.
    registration_name = models.CharField(max_length=200)
    handler = models.CharField(max_length=200)
    kind = models.CharField(max_length=20)
    event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    subject_type = models.CharField(max_length=30)
    subject_id = models.CharField(max_length=64)
    subject_label = models.CharField(max_length=300, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    inputs = models.JSONField(default=dict, blank=True, help_text="What the handler was given.")
    output = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    not_before = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was last handed to the worker queue."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [
            models.Index(fields=["subject_type", "subject_id"], name="run_subject"),
            models.Index(fields=["state", "not_before"], name="run_due"),
            models.Index(fields=["registration", "-queued_at"], name="run_registration"),
        ]

    def __str__(self) -> str:
        return f"{self.registration_name} #{self.attempt} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)
