"""What the organisation has: store types, stores, certificates and where each sits."""

import re
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from certyard.encryption import EncryptedTextField
from handlers.text import visible


class Requirement(models.TextChoices):
    FORBIDDEN = "forbidden", "Forbidden"
    OPTIONAL = "optional", "Optional"
    REQUIRED = "required", "Required"


class CertificateStoreType(models.Model):
    """A kind of store an agent knows how to handle (PEM folder, PKCS#12 file, JKS, ...)."""

    class PathType(models.TextChoices):
        FREEFORM = "freeform", "Free-form path"
        FIXED = "fixed", "Fixed path"
        # Network targets, not a path: a TLS scan store (orchestrators.scan).
        TARGETS = "targets", "Network targets"

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
    # The declaration (orchestrators.declarations) the type was last made from: an agent's
    # ``POST store-types``, or the platform's own for the built-in ones.
    schema_version = models.PositiveIntegerField(
        default=1, help_text="The declaration's version; a greater one updates the type."
    )
    declared_by = models.ForeignKey(
        "fleet.Orchestrator",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The orchestrator whose declaration made or last changed the type.",
    )
    declared_at = models.DateTimeField(null=True, blank=True)
    declaration = models.JSONField(
        default=dict, blank=True, help_text="The last accepted declaration, in its wire form."
    )
    # Set when an agent's declaration was ignored because it disagrees with the recorded
    # one, or when the record was changed by hand after it was declared; cleared when a
    # declaration is applied (inventory.declarations).
    declaration_warning = models.TextField(
        blank=True,
        help_text="Why the type and a declaration disagree; empty if they agree.",
    )
    declaration_warning_at = models.DateTimeField(null=True, blank=True)
    description = models.TextField(blank=True)

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
    # The TLS endpoint served from this store: after a write the agent connects and
    # compares the served certificate. Host and port together, or neither.
    endpoint_host = models.CharField(
        max_length=253, blank=True, help_text="DNS name or IP address; empty: no endpoint."
    )
    endpoint_port = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
    )
    endpoint_sni = models.CharField(
        max_length=253, blank=True, help_text="Server name to ask for; empty: the host."
    )
    property_problems = models.JSONField(
        default=list,
        blank=True,
        help_text="Properties a store-type change left invalid, in sentences; fixed by an edit.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who added the store (empty: an agent's blueprint, or before this was kept); "
        "they may change it.",
    )
    groups = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="certificate_stores",
        help_text="People in these groups may change the store and act on the certificates "
        "it holds.",
    )

    class Meta:
        ordering = ["client_machine", "store_path"]
        constraints = [
            models.UniqueConstraint(
                fields=["store_type", "client_machine", "store_path"], name="store_unique_path"
            )
        ]
        # Object-level grant-all (certyard.accounts.authorization).
        permissions = [("manage_any_store", "Can change any store, whoever added it")]

    def __str__(self) -> str:
        # Shown in Django admin, messages and event labels: its outside text escaped.
        return visible(f"{self.store_type.short_name} {self.client_machine}:{self.store_path}")


class CertificateStatus(models.TextChoices):
    """A certificate's state at a glance; ``inventory.selectors.certificate_status`` decides."""

    VALID = "valid", "Valid"
    EXPIRING = "expiring", "Expiring"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    SUPERSEDED = "superseded", "Superseded"
    UNKNOWN = "unknown", "Validity unknown"


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
    # Its state beyond its dates, recorded by whoever revokes or renews it (enrollment, the
    # built-in CAs, gateway syncs) through inventory.services; read through
    # inventory.selectors.certificate_status.
    revoked_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="When its CA revoked it; empty if not."
    )
    # db_default: the inventory inserts certificates as raw rows (certyard.bulk), naming
    # only the columns it reads from the certificate.
    revocation_reason = models.CharField(
        max_length=40,
        blank=True,
        default="",
        db_default="",
        help_text="The RFC 5280 reason name, e.g. keyCompromise; empty if not revoked.",
    )
    superseded_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="supersedes",
        help_text="The certificate that renewed it.",
    )

    class Meta:
        ordering = ["not_after"]
        # Object-level grant-all (certyard.accounts.authorization): renew, revoke, change
        # the metadata of any certificate, whoever enrolled it.
        permissions = [("manage_any_certificate", "Can act on any certificate")]

    def __str__(self) -> str:
        # Shown in Django admin, messages and event labels: its outside text escaped.
        return visible(self.common_name or self.subject or self.sha256)


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
        return f"{visible(self.alias)} in {self.store}"


class TlsEndpoint(models.Model):
    """A network endpoint a TLS scan store tried, and what it served the last time.

    One row per (host, port, server name) the store's targets expand to, kept whatever the
    outcome: the chain presented, TLS version and cipher when a handshake completed, or
    why none did. A served leaf is also a ``CertificateLocation`` of the store (alias
    ``host:port``), so expiry scans, events and metadata treat it like any other place a
    certificate is installed. ``certificate`` and ``chain`` stay at what was served last
    when the endpoint fails later, so a person sees what went away.
    """

    class Status(models.TextChoices):
        OK = "ok", "Serving"
        REFUSED = "refused", "Connection refused"
        TIMEOUT = "timeout", "Timed out"
        UNREACHABLE = "unreachable", "Unreachable"
        PLAINTEXT_HTTP = "plaintext_http", "Plain HTTP"
        NO_TLS = "no_tls", "Not TLS"
        HANDSHAKE_FAILED = "handshake_failed", "Handshake failed"
        INVALID_CERTIFICATE = "invalid_certificate", "Unreadable certificate"

    store = models.ForeignKey(CertificateStore, on_delete=models.CASCADE, related_name="endpoints")
    host = models.CharField(max_length=255, help_text="The target as the store names it.")
    port = models.PositiveIntegerField()
    sni = models.CharField(max_length=255, blank=True, help_text="Server name asked for.")
    status = models.CharField(max_length=20, choices=Status.choices)
    reason = models.CharField(max_length=300, blank=True)
    tls_version = models.CharField(max_length=20, blank=True)
    cipher = models.CharField(max_length=100, blank=True)
    certificate = models.ForeignKey(
        Certificate,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="endpoints",
        help_text="The leaf served the last time a handshake completed.",
    )
    chain = models.JSONField(
        default=list, blank=True, help_text="SHA-256 of each certificate presented, leaf first."
    )
    first_seen = models.DateTimeField()
    scanned_at = models.DateTimeField()
    last_ok_at = models.DateTimeField(null=True, blank=True)
    upload = models.CharField(max_length=100, help_text="The report that saw it last.")

    class Meta:
        ordering = ["store", "host", "port", "sni"]
        constraints = [
            models.UniqueConstraint(
                fields=["store", "host", "port", "sni"], name="tls_endpoint_unique"
            )
        ]
        indexes = [models.Index(fields=["status"], name="tls_endpoint_status")]

    def __str__(self) -> str:
        return visible(f"{self.host}:{self.port}" + (f" ({self.sni})" if self.sni else ""))


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


# --- Metadata -------------------------------------------------------------------------

# A field's name is how generators, the API and filters refer to it: an identifier.
METADATA_FIELD_NAME = r"[A-Za-z][A-Za-z0-9_]{0,59}"
# A value's source when a person set it: ``user:<username>``. Generators leave those alone.
USER_SOURCE_PREFIX = "user:"


class MetadataField(models.Model):
    """A typed metadata field an administrator defines; certificates get a value for it."""

    class Type(models.TextChoices):
        STRING = "string", "Text (one line)"
        TEXT = "text", "Text (long)"
        INTEGER = "integer", "Integer"
        DATE = "date", "Date"
        BOOLEAN = "boolean", "Yes / no"
        CHOICE = "choice", "Choice"
        EMAIL = "email", "Email address"

    name = models.CharField(
        max_length=60,
        unique=True,
        validators=[
            RegexValidator(
                f"^{METADATA_FIELD_NAME}$",
                "a letter, then letters, digits or _ (at most 60 characters)",
            )
        ],
        help_text="How generators, the API and filters name it, e.g. owner.",
    )
    label = models.CharField(max_length=200, blank=True, help_text="Shown in the console.")
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.STRING)
    choices = models.JSONField(
        default=list, blank=True, help_text='The allowed values of a choice field: ["a", "b"].'
    )
    pattern = models.CharField(
        max_length=500,
        blank=True,
        help_text="A regular expression every value must match in full (optional).",
    )
    required_at_enrollment = models.BooleanField(default=False)
    description = models.TextField(blank=True)
    order = models.PositiveIntegerField(default=100, help_text="Lower is shown first.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.label or self.name

    @property
    def display_name(self) -> str:
        return self.label or self.name

    def clean(self) -> None:
        """The definition's own rules: a pattern that compiles, choices for a choice field."""
        errors: dict[str, str] = {}
        if self.pattern:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                errors["pattern"] = f"not a valid regular expression: {exc}"
        choices = self.choices if self.choices is not None else []
        if not isinstance(choices, list) or not all(
            isinstance(choice, str) and choice.strip() and len(choice) <= 200 for choice in choices
        ):
            errors["choices"] = "a list of non-empty texts of at most 200 characters"
        elif len(set(choices)) != len(choices):
            errors["choices"] = "each choice once"
        elif self.type == self.Type.CHOICE and not choices:
            errors["choices"] = "a choice field needs at least one choice"
        elif self.type != self.Type.CHOICE and choices:
            errors["choices"] = "only a choice field has choices"
        if errors:
            raise ValidationError(errors)


class CertificateMetadata(models.Model):
    """One certificate's value for one field, as canonical text.

    Integers are decimal, dates ``YYYY-MM-DD``, booleans ``true``/``false``. ``source`` is
    the generator registration that set it, ``user:<username>`` for a person, or
    ``handler`` for a job complete handler's request.
    """

    # No index of its own: the unique (certificate, field) index serves lookups by
    # certificate, and every index costs each of a backfill's hundreds of thousands of writes.
    certificate = models.ForeignKey(
        Certificate, on_delete=models.CASCADE, related_name="metadata_values", db_index=False
    )
    # CASCADE: a field's values mean nothing without it, and PROTECT would leave a field
    # with 100,000 values undeletable. Deleting a field is an administrator's explicit act.
    field = models.ForeignKey(MetadataField, on_delete=models.CASCADE, related_name="values")
    value = models.TextField()
    source = models.CharField(max_length=200)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["certificate", "field"]
        constraints = [
            models.UniqueConstraint(fields=["certificate", "field"], name="metadata_unique_field")
        ]

    def __str__(self) -> str:
        return visible(f"{self.field.name}={self.value}")

    @property
    def set_by_user(self) -> bool:
        return self.source.startswith(USER_SOURCE_PREFIX)


class MetadataGeneratorCursor(models.Model):
    """One row: how far the generators have got through new certificates (by id).

    Certificates with a higher id than ``last_certificate_id`` have not been through the
    generators yet. ``queued_at`` says a task to process them is waiting in the queue, so
    inventory commits do not queue one each.
    """

    last_certificate_id = models.BigIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"metadata generated up to certificate {self.last_certificate_id}"


class MetadataBackfill(models.Model):
    """The generators run over the whole inventory, on demand, in resumable batches.

    ``cursor`` is the last certificate id done: it moves in the same transaction as the
    values it stands for, so a worker killed mid-batch loses that batch's work only, and
    the next task starts after ``cursor``. ``upper_id`` is the highest certificate id when
    it started: certificates added later are the new-certificate generators' work.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATES = (State.QUEUED, State.RUNNING)

    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    registration_ids = models.JSONField(
        default=list,
        blank=True,
        help_text="The generator registrations chosen; empty: all enabled.",
    )
    registration_names = models.JSONField(default=list, blank=True)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    cursor = models.BigIntegerField(default=0, help_text="The last certificate id done.")
    upper_id = models.BigIntegerField(default=0, help_text="The last certificate id to do.")
    values_set = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(
        default=list, blank=True, help_text="The first errors: sha256, field, message."
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state"], name="backfill_state")]

    def __str__(self) -> str:
        return f"metadata backfill {self.pk} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def percent(self) -> int:
        # Done is 100 %, even when certificates deleted meanwhile left it short of total.
        if self.state == self.State.SUCCEEDED:
            return 100
        if not self.total:
            return 0
        return min(100, self.processed * 100 // self.total)
