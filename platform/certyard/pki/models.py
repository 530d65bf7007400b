"""Certificate authorities the platform runs itself.

The first user is the orchestrator CA, which certifies each agent's own key at
registration; later work extends the same model into templates, enrollment and
revocation (one CA implementation, not two).
"""

from django.db import models

from certyard.encryption import EncryptedTextField


class CertificateAuthority(models.Model):
    class Purpose(models.TextChoices):
        ORCHESTRATORS = "orchestrators", "Orchestrator identities"

    name = models.CharField(max_length=200, unique=True)
    purpose = models.CharField(max_length=32, choices=Purpose.choices, unique=True)
    certificate_pem = models.TextField()
    private_key_pem = EncryptedTextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "certificate authority"
        verbose_name_plural = "certificate authorities"

    def __str__(self) -> str:
        return self.name
