"""Enrollment: templates, requests and their approval, and what CA gateways hold.

A template says what may be issued and by whom: a built-in CA (``pki``) or a CA gateway
(a ``workflows.HandlerRegistration`` of kind ``gateway``) and one of its products. Every
request is recorded, refused ones included, with the reason it was refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from certyard.encryption import EncryptedTextField
from certyard.pki.models import KeyAlgorithm, RevocationReason
from handlers.text import visible

# An Idempotency-Key (API header or console form field): at most this many characters.
IDEMPOTENCY_KEY_MAX = 100


def _default_key_usage() -> list[str]:
    # keyEncipherment applies to RSA keys only: the CA drops it for EC and Ed25519 keys
    # (RFC 8813), so this default gives RSA certificates both bits and EC ones the first.
    return ["digital_signature", "key_encipherment"]


def _default_extended_key_usage() -> list[str]:
    return ["server_auth"]


def _default_key_types() -> list[str]:
    return [
        KeyAlgorithm.RSA_2048,
        KeyAlgorithm.RSA_3072,
        KeyAlgorithm.RSA_4096,
        KeyAlgorithm.EC_P256,
        KeyAlgorithm.EC_P384,
    ]


class Template(models.Model):
    """What one kind of certificate may contain, who issues it, and how it is approved."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    ca = models.ForeignKey(
        "pki.CertificateAuthority",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="templates",
        # The platform's own CAs (the orchestrators' identity CA) never issue for templates.
        limit_choices_to={"purpose__isnull": True},
        verbose_name="built-in CA",
        help_text="Issue from this built-in CA; or choose a gateway instead.",
    )
    gateway = models.ForeignKey(
        "workflows.HandlerRegistration",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="issuing_templates",
        limit_choices_to={"kind": "gateway"},
        verbose_name="CA gateway",
        help_text="Issue through this CA gateway registration, with the product below.",
    )
    product_id = models.CharField(
        max_length=200, blank=True, help_text="The gateway's product (profile) to issue under."
    )
    product_parameters = models.JSONField(default=dict, blank=True)
    validity_days = models.PositiveIntegerField(default=90)
    key_usage = models.JSONField(default=_default_key_usage, blank=True)
    extended_key_usage = models.JSONField(default=_default_extended_key_usage, blank=True)
    allowed_key_types = models.JSONField(default=_default_key_types)
    allowed_domains = models.JSONField(
        default=list,
        blank=True,
        help_text="DNS names must be one of these domains or under them; empty allows any.",
    )
    allow_wildcards = models.BooleanField(default=False)
    allow_ip_addresses = models.BooleanField(default=False)
    san_pattern = models.CharField(
        max_length=500,
        blank=True,
        help_text="A regular expression every DNS name must match in full; empty: no pattern.",
    )
    max_sans = models.PositiveIntegerField(default=100)
    allow_non_dns_common_name = models.BooleanField(
        default=False,
        verbose_name="allow a common name that is not a DNS name",
        help_text="Unticked, the common name must be one of the certificate's names (a DNS "
        "name or IP address the template allows). Ticked, it may also be other text (a "
        "person, a device); one that looks like a DNS name is still checked.",
    )
    # {"O": {"rule": "required"}, "C": {"rule": "fixed", "value": "DE"}, "OU": {"rule":
    # "allowed"}}: a subject attribute not named here is refused (CN follows the name
    # rules and may only be "required"). A fixed value is written into the certificate;
    # a request asking for another value is refused.
    subject_attributes = models.JSONField(
        default=dict,
        blank=True,
        help_text="Which subject attributes besides CN a request may carry: allowed, "
        "required, or fixed to a value; any other is refused.",
    )
    require_approval = models.BooleanField(
        default=False, help_text="Requests wait for an approver, who cannot be the requester."
    )
    archive_keys = models.BooleanField(
        default=False,
        help_text="Keep the keys the platform generates (PFX enrollment), encrypted at rest.",
    )
    required_metadata = models.JSONField(
        default=list, blank=True, help_text="Metadata field names a request must give values for."
    )
    groups = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="enrollment_templates",
        help_text="People in these groups may act on the certificates and requests of this "
        "template (renew, revoke, approve…), besides their requester.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(ca__isnull=False, gateway__isnull=True)
                    | models.Q(ca__isnull=True, gateway__isnull=False)
                ),
                name="template_one_issuer",
                violation_error_message="Choose either a built-in CA or a CA gateway.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    # The template checker, :func:`certyard.enrollment.services.template_errors`,
    # registered by the app's ready() (models sit below services and cannot import them).
    checker: ClassVar[Callable[[Template], dict[str, str]] | None] = None

    def clean(self) -> None:
        """Every rule of a template (issuer, key usages by key type, names, metadata…),
        from :func:`certyard.enrollment.services.template_errors`: Django admin, the
        console's form and the API share it. Errors are keyed by model field name."""
        checker = type(self).checker
        errors = checker(self) if checker is not None else {}
        if errors:
            raise ValidationError({field: [message] for field, message in errors.items()})


class EnrollmentRequest(models.Model):
    """One request for a certificate, from submission to issuance or refusal."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending approval"
        APPROVED = "approved", "Approved, issuing"
        AWAITING_CA = "awaiting_ca", "Waiting for the CA"
        ISSUED = "issued", "Issued"
        DENIED = "denied", "Denied"
        FAILED = "failed", "Failed"

    class Type(models.TextChoices):
        NEW = "new", "New"
        RENEW = "renew", "Renewal"
        REISSUE = "reissue", "Reissue"

    class Method(models.TextChoices):
        CSR = "csr", "CSR"
        PFX = "pfx", "PFX (key made by the platform)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(
        Template, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests"
    )
    template_name = models.CharField(max_length=100, help_text="As requested.")
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.NEW)
    method = models.CharField(max_length=4, choices=Method.choices, default=Method.CSR)
    state = models.CharField(max_length=12, choices=State.choices, db_index=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_handler = models.CharField(
        max_length=200,
        blank=True,
        help_text="The handler registration that decided, if not a person.",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    csr_pem = models.TextField(blank=True)
    subject = models.TextField(blank=True)
    sans = models.JSONField(default=list, blank=True)
    key_algorithm = models.CharField(max_length=32, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    renewal_of = models.ForeignKey(
        "inventory.Certificate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="renewal_requests",
    )
    failure_reason = models.TextField(blank=True)
    ca_request_id = models.CharField(max_length=500, blank=True)
    certificate = models.ForeignKey(
        "inventory.Certificate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="enrollment_requests",
    )
    certificate_pem = models.TextField(blank=True)
    chain_pem = models.TextField(blank=True)
    serial_number = models.CharField(max_length=64, blank=True)
    # A key the platform generated: held (encrypted) until the requester collects the
    # PKCS#12, and afterwards only when the template archives keys.
    private_key_pem = EncryptedTextField(blank=True, editable=False)
    key_archived = models.BooleanField(default=False)
    pfx_collected_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    # Where the certificate is delivered once issued (after approval, if any): the
    # deployment app, above, is told through ``certificate_issued_hook_register``.
    target_stores = models.ManyToManyField(
        "inventory.CertificateStore", blank=True, related_name="+"
    )
    # The requester's key for this submission (API ``Idempotency-Key``, the console form's
    # hidden key): the same key from the same requester answers with this request instead
    # of issuing again, so a retried or double-clicked submission issues once.
    idempotency_key = models.CharField(max_length=IDEMPOTENCY_KEY_MAX, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                condition=models.Q(requested_by__isnull=False) & ~models.Q(idempotency_key=""),
                name="enrollment_idempotency_key_per_requester",
            )
        ]
        permissions = [
            ("approve_enrollmentrequest", "Can approve or deny enrollment requests"),
            # Object-level grant-alls (certyard.accounts.authorization): act on any request,
            # whoever asked and whatever the template's groups; reuse anyone's archived key.
            ("manage_any_enrollmentrequest", "Can act on anyone's enrollment requests"),
            ("recover_archived_key", "Can reuse another person's archived private key"),
        ]

    # Not a column: True on the request a submission answered with instead of issuing
    # again (its idempotency key was used before).
    replayed: bool = False

    def __str__(self) -> str:
        # Shown in Django admin, messages and event labels: its outside text escaped.
        return visible(f"{self.template_name}: {self.subject or self.id}")

    @property
    def pfx_available(self) -> bool:
        return (
            self.method == self.Method.PFX
            and self.state == self.State.ISSUED
            and self.pfx_collected_at is None
            and bool(self.private_key_pem)
        )


class PfxHandOver(models.Model):
    """A PKCS#12 the console is about to hand over, once: kept encrypted (and protected by
    the requester's password) between the POST that made it and the GET that downloads
    it, deleted when downloaded or once expired, so the enrollment form is never shown
    again with its passwords and a reload never offers the file a second time."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    request = models.ForeignKey(
        EnrollmentRequest, on_delete=models.CASCADE, related_name="pfx_hand_overs"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    pkcs12_b64 = EncryptedTextField(editable=False)
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"PKCS#12 hand-over for {self.request_id}"


class GatewayRecord(models.Model):
    """A certificate a CA gateway issued or reported, by the CA's own identifier."""

    gateway = models.ForeignKey(
        "workflows.HandlerRegistration", on_delete=models.CASCADE, related_name="ca_records"
    )
    ca_request_id = models.CharField(max_length=500)
    status = models.CharField(max_length=12)
    serial_number = models.CharField(max_length=64, blank=True)
    product_id = models.CharField(max_length=200, blank=True)
    certificate = models.ForeignKey(
        "inventory.Certificate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="gateway_records",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.PositiveSmallIntegerField(
        choices=RevocationReason.choices, null=True, blank=True
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "ca_request_id"], name="enrollment_record_per_gateway"
            )
        ]

    def __str__(self) -> str:
        return f"{self.gateway}: {self.ca_request_id}"


class GatewaySync(models.Model):
    """One synchronization of a gateway's records into the inventory; resumable."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"

    gateway = models.ForeignKey(
        "workflows.HandlerRegistration", on_delete=models.CASCADE, related_name="syncs"
    )
    full = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    start_cursor = models.CharField(max_length=500, blank=True)
    cursor = models.CharField(max_length=500, blank=True, help_text="After the last record kept.")
    processed = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0, help_text="Certificates new to the inventory.")
    error = models.TextField(blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway"],
                condition=models.Q(state="running"),
                name="enrollment_one_running_sync_per_gateway",
            )
        ]

    def __str__(self) -> str:
        return f"{self.gateway} sync {self.started_at:%Y-%m-%d %H:%M}"
