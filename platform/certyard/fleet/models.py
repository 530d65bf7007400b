"""The agents the platform manages: their registration tokens and identities."""

import uuid

from django.conf import settings
from django.db import models

from handlers.text import visible


class RegistrationToken(models.Model):
    """A secret an admin hands to an agent so it may register; only its hash is kept."""

    description = models.CharField(max_length=200)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(
        max_length=8, editable=False, help_text="First characters, to recognise a token."
    )
    reusable = models.BooleanField(
        default=False, help_text="A one-time token is spent by its first registration."
    )
    approve_on_register = models.BooleanField(
        default=False, help_text="Orchestrators registering with this token start approved."
    )
    # What the token vouches for, set when it is made. Unlike what an agent says of itself,
    # the platform knows these for certain: registration handlers may trust them.
    labels = models.JSONField(
        default=list,
        blank=True,
        help_text="Labels registration rules can match (verified: set by whoever made it).",
    )
    machine_pattern = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="A glob the claimed client machine must match (ignoring case), e.g. "
        "*.prod.example.com; empty allows any.",
    )
    blueprint = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="The only blueprint (by name) an approval through this token may apply; "
        "empty allows any.",
    )
    expires_at = models.DateTimeField()
    revoked = models.BooleanField(default=False)
    use_count = models.PositiveIntegerField(default=0, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.description} ({self.token_prefix}…)"


class Orchestrator(models.Model):
    """An agent on a managed machine. Its identity is its key, certified at registration."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        APPROVED = "approved", "Approved"
        DISAPPROVED = "disapproved", "Disapproved"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    client_machine = models.CharField(max_length=255)
    agent_version = models.CharField(max_length=50, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.NEW)
    capabilities = models.JSONField(default=list, blank=True)
    client_parameters = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(
        default=dict,
        blank=True,
        help_text="Key/values a registration handler recorded, or a person set.",
    )
    # Who changed the metadata last (None: a registration handler, at registration).
    metadata_changed_at = models.DateTimeField(null=True, blank=True)
    metadata_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    source_address = models.GenericIPAddressField(null=True, blank=True)
    registration_token = models.ForeignKey(
        RegistrationToken, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Identity: empty after a reset, until the agent registers again.
    public_key_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    public_key_pem = models.TextField(blank=True)
    certificate_pem = models.TextField(blank=True)
    certificate_not_after = models.DateTimeField(null=True, blank=True)
    last_assertion_at = models.BigIntegerField(
        default=0, help_text="issued_at of the last session assertion accepted (replay guard)."
    )
    registered_at = models.DateTimeField(auto_now_add=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    last_seen = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # What the agent says it may touch (POST limits, after each session it opens and when
    # its configuration changes). Null until a reporting agent version sends them: the
    # platform then checks store paths by the lexical rules alone.
    store_roots = models.JSONField(
        null=True,
        blank=True,
        help_text="The folders the agent reported it may read and write stores in.",
    )
    max_file_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The largest store file the agent reported it reads."
    )
    limits_reported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name", "client_machine"], name="orchestrator_unique_name"
            )
        ]

    def __str__(self) -> str:
        # Shown in Django admin, messages and event labels: its outside text escaped.
        return visible(f"{self.name} ({self.client_machine})")

    # DRF treats the authenticated principal as a user; an orchestrator is one.
    is_authenticated = True
    is_anonymous = False

    @property
    def has_identity(self) -> bool:
        return bool(self.public_key_sha256)
