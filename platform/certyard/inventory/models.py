"""What the organisation has: store types, stores, certificates and where each sits."""

import uuid

from django.db import models

from certyard.encryption import EncryptedTextField


class Requirement(models.TextChoices):
    FORBIDDEN = "forbidden", "Forbidden"
    OPTIONAL = "optional", "Optional"
    REQUIRED = "required", "Required"


class CertificateStoreType(models.Model):
    """A kind of store an agent knows how to handle (PEM folder, PKCS#12 file, JKS, ...)."""

    class PathType(models.TextChoices):
        FREEFORM = "freeform", "Free-form path"
        FIXED = "fixed", "Fixed path"

    short_name = models.CharField(
        max_length=40, unique=True, help_text="Matches the agent's extension, e.g. PEM."
    )
    name = models.CharField(max_length=200)
    supports_inventory = models.BooleanField(default=True)
    supports_add = models.BooleanField(default=False)
    supports_remove = models.BooleanField(default=False)
    supports_create = models.BooleanField(default=False)
    supports_discovery = models.BooleanField(default=False)
    supports_reenrollment = models.BooleanField(default=False)
    private_key = models.CharField(
        max_length=10, choices=Requirement.choices, default=Requirement.OPTIONAL
    )
    custom_alias = models.CharField(
        max_length=10, choices=Requirement.choices, default=Requirement.OPTIONAL
    )
    store_path_type = models.CharField(
        max_length=10, choices=PathType.choices, default=PathType.FREEFORM
    )
    store_path_hint = models.CharField(max_length=300, blank=True)
    properties = models.JSONField(
        default=list,
        blank=True,
        help_text='Declared store properties: [{"name", "type", "required", "default"}].',
    )
    entry_parameters = models.JSONField(default=list, blank=True)
    password_supported = models.BooleanField(default=False)
    password_required = models.BooleanField(default=False)
    builtin = models.BooleanField(
        default=False, editable=False, help_text="Shipped with Certyard: cannot be deleted."
    )

    class Meta:
        ordering = ["short_name"]

    def __str__(self) -> str:
        return self.short_name

    def supports(self, operation: str) -> bool:
        return bool(getattr(self, f"supports_{operation}", False))


class InventoryStatus(models.TextChoices):
    """How a store's last inventory job ended, as the console shows it."""

    NEVER = "never", "Never run"
    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    FAILING = "failing", "Failing"


class CertificateStore(models.Model):
    """One certificate store on one machine, managed by one orchestrator."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    store_type = models.ForeignKey(CertificateStoreType, on_delete=models.PROTECT)
    client_machine = models.CharField(max_length=255)
    store_path = models.CharField(max_length=1024)
    orchestrator = models.ForeignKey(
        "fleet.Orchestrator", on_delete=models.PROTECT, related_name="stores"
    )
    properties = models.JSONField(default=dict, blank=True)
    password = EncryptedTextField(blank=True, default="")
    approved = models.BooleanField(default=True)
    inventory_interval_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Run inventory this often; empty for no schedule."
    )
    inventory_next_run = models.DateTimeField(null=True, blank=True, db_index=True)
    last_inventory_at = models.DateTimeField(
        null=True, blank=True, help_text="When an inventory of this store was last recorded."
    )
    inventory_status = models.CharField(
        max_length=10, choices=InventoryStatus.choices, default=InventoryStatus.NEVER, db_index=True
    )
    inventory_message = models.TextField(
        blank=True, help_text="What the last finished inventory job said (its error, if it failed)."
    )
    inventory_checked_at = models.DateTimeField(
        null=True, blank=True, help_text="When the last inventory job finished, however it ended."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["client_machine", "store_path"]
        constraints = [
            models.UniqueConstraint(
                fields=["store_type", "client_machine", "store_path"], name="store_unique_path"
            )
        ]

    def __str__(self) -> str:
        return f"{self.store_type.short_name} {self.client_machine}:{self.store_path}"


class Certificate(models.Model):
    """An X.509 certificate, once, whatever the number of places it is installed."""

    der = models.BinaryField()
    sha256 = models.CharField(max_length=64, unique=True)
    sha1 = models.CharField(max_length=40, db_index=True)
    serial_number = models.CharField(max_length=80, db_index=True, help_text="Hexadecimal.")
    issuer = models.TextField()
    subject = models.TextField()
    common_name = models.CharField(max_length=255, blank=True, db_index=True)
    sans = models.JSONField(default=list, blank=True, help_text='["DNS:example.com", ...]')
    sans_text = models.TextField(blank=True, help_text="SANs joined by spaces, for search.")
    # Empty (null) when the certificate's validity could not be read: see parse_warnings.
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True, db_index=True)
    version = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1, 2 or 3.")
    key_algorithm = models.CharField(max_length=60, db_index=True)
    key_size = models.PositiveIntegerField(null=True, blank=True)
    signature_algorithm = models.CharField(max_length=100, blank=True)
    is_ca = models.BooleanField(default=False)
    self_signed = models.BooleanField(default=False)
    issuer_certificate = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="issued"
    )
    parse_warnings = models.JSONField(
        default=list,
        blank=True,
        help_text="What does not conform to X.509 / RFC 5280; fields it affects are left empty.",
    )
    conformant = models.BooleanField(
        default=True, db_index=True, help_text="False when the certificate has parse warnings."
    )
    first_seen = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["not_after"]

    def __str__(self) -> str:
        return self.common_name or self.subject or self.sha256


class CertificateLocation(models.Model):
    """A certificate installed in a store under an alias."""

    store = models.ForeignKey(CertificateStore, on_delete=models.CASCADE, related_name="locations")
    certificate = models.ForeignKey(Certificate, on_delete=models.CASCADE, related_name="locations")
    alias = models.CharField(max_length=512)
    has_private_key = models.BooleanField(default=False)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["store", "alias"]
        constraints = [
            models.UniqueConstraint(fields=["store", "alias"], name="location_unique_alias")
        ]

    def __str__(self) -> str:
        return f"{self.alias} in {self.store}"


class InventoryStagedEntry(models.Model):
    """One entry of an inventory report that arrives in chunks, held until it is committed.

    An upload names one report (``job:<id>:<attempt>``); its rows are applied to the
    store's locations in one transaction at commit and then deleted.
    """

    # No database constraints on this scratch table: checking them per row costs more than
    # staging the row (PostgreSQL); the ORM still cascades deletes.
    store = models.ForeignKey(
        CertificateStore, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    upload = models.CharField(max_length=100)
    sequence = models.PositiveIntegerField(help_text="The chunk this entry came in.")
    position = models.PositiveIntegerField(help_text="The entry's index in the whole report.")
    alias = models.CharField(max_length=512)
    certificate = models.ForeignKey(
        Certificate,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
    )
    private_key = models.BooleanField(default=False)
    error = models.TextField(blank=True, help_text="Why the entry was rejected; empty if not.")

    class Meta:
        indexes = [
            models.Index(fields=["upload", "alias"], name="staged_upload_alias"),
            models.Index(fields=["upload", "sequence"], name="staged_upload_sequence"),
        ]

    def __str__(self) -> str:
        return f"{self.alias} in {self.upload}"
