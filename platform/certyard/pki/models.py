"""Certificate authorities the platform runs itself, and what they issued.

One CA implementation serves both the orchestrator identities (the CA with the
``orchestrators`` purpose, created on first registration) and the built-in CAs an
administrator creates or imports for enrollment. Every certificate a built-in CA signs is
recorded here, so revocation, the CRL and the OCSP responder answer from one table.
"""

from django.conf import settings
from django.db import models

from certyard.encryption import EncryptedTextField
from handlers.gateways import RevocationReason as GatewayReason


class KeyAlgorithm(models.TextChoices):
    """Key types the platform generates, and templates allow."""

    RSA_2048 = "RSA-2048", "RSA 2048"
    RSA_3072 = "RSA-3072", "RSA 3072"
    RSA_4096 = "RSA-4096", "RSA 4096"
    EC_P256 = "EC-P256", "ECDSA P-256"
    EC_P384 = "EC-P384", "ECDSA P-384"
    ED25519 = "Ed25519", "Ed25519"


# RFC 5280 CRLReason codes, as the gateway contract names them (one table, not two).
RevocationReason = models.IntegerChoices(
    "RevocationReason", [(reason.name, (reason.value, reason.label)) for reason in GatewayReason]
)


class CertificateAuthority(models.Model):
    class Purpose(models.TextChoices):
        ORCHESTRATORS = "orchestrators", "Orchestrator identities"

    class Origin(models.TextChoices):
        ROOT = "root", "Root created here"
        INTERMEDIATE = "intermediate", "Intermediate created here"
        IMPORTED = "imported", "Imported"

    name = models.CharField(max_length=200, unique=True)
    # Only the platform's own CAs have a purpose; an administrator's CAs have none.
    purpose = models.CharField(
        max_length=32, choices=Purpose.choices, unique=True, null=True, blank=True
    )
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.ROOT)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    certificate_pem = models.TextField()
    # The issuers above this CA, nearest first (PEM), for chains handed out with issuance.
    chain_pem = models.TextField(blank=True)
    private_key_pem = EncryptedTextField(editable=False)
    key_algorithm = models.CharField(max_length=16, blank=True)
    subject = models.TextField(blank=True)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    not_after = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(
        default=True, help_text="A disabled CA issues nothing; its CRL and OCSP still answer."
    )
    # The current CRL, regenerated on each revocation and before next_update.
    crl_number = models.PositiveBigIntegerField(default=0)
    crl_der = models.BinaryField(null=True, blank=True, editable=False)
    crl_this_update = models.DateTimeField(null=True, blank=True)
    crl_next_update = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "certificate authority"
        verbose_name_plural = "certificate authorities"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IssuedCertificate(models.Model):
    """One certificate a built-in CA signed: what the CRL and OCSP answer from."""

    ca = models.ForeignKey(CertificateAuthority, on_delete=models.PROTECT, related_name="issued")
    serial_number = models.CharField(max_length=40, help_text="Lowercase hexadecimal.")
    sha256 = models.CharField(max_length=64, unique=True)
    subject = models.TextField()
    common_name = models.CharField(max_length=255, blank=True)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    certificate_pem = models.TextField()
    issued_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.PositiveSmallIntegerField(
        choices=RevocationReason.choices, null=True, blank=True
    )

    class Meta:
        ordering = ["-issued_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["ca", "serial_number"], name="pki_issued_serial_per_ca")
        ]
        indexes = [models.Index(fields=["ca", "revoked_at"], name="pki_issued_revoked")]

    def __str__(self) -> str:
        return f"{self.common_name or self.subject} ({self.serial_number})"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None
