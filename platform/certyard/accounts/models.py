"""People's API tokens: django-rest-knox's token model, with a name and a last-used time.

Only the SHA-512 digest of a token is stored, with its first characters (``token_key``,
the ``cyd_`` prefix and a few more) so a person can recognise it. The value is shown
once, when the token is created (see ``services.api_token_create``).
"""

from django.db import models
from django.utils import timezone
from knox.models import AbstractAuthToken
from knox.settings import CONSTANTS


class ApiToken(AbstractAuthToken):
    """A person's API token (``REST_KNOX["TOKEN_MODEL"]``)."""

    # knox makes the digest the primary key; a surrogate key keeps the digest out of
    # every URL (Django admin, the console's revoke form) while knox still finds it.
    id = models.BigAutoField(primary_key=True)
    digest = models.CharField(max_length=CONSTANTS.DIGEST_LENGTH, unique=True, editable=False)
    name = models.CharField(max_length=100, help_text="What the token is for.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        # knox's own __str__ shows the digest; never that.
        return f"{self.name} ({self.token_key}…)"

    @property
    def is_expired(self) -> bool:
        return self.expiry is not None and self.expiry <= timezone.now()
