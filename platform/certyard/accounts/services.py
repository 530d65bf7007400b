"""Writes of the accounts app: people's API tokens (django-rest-knox).

A token's value is returned once, by ``api_token_create``; only its digest and first
characters are stored. Never log the value.
"""

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from certyard.accounts.models import ApiToken
from certyard.errors import ServiceError

NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length
MAX_EXPIRY = dt.timedelta(days=365)
# Tokens are for scripts and integrations, not one per request: a short list per person
# stays reviewable (and revocable) on the console page.
MAX_TOKENS_PER_USER = 50
# last_used_at is written at most this often per token: one UPDATE a minute, not a write
# per request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def api_token_default_expiry() -> dt.timedelta:
    """How long a new token lives unless told otherwise (CERTYARD_API_TOKEN_DAYS, 90 days)."""
    return settings.REST_KNOX["TOKEN_TTL"]


def api_token_create(
    *, user: Any, name: str, expires_in: dt.timedelta | None
) -> tuple[ApiToken, str]:
    """A new API token for ``user`` and its value, which is shown only this once.

    ``expires_in`` is required: pass ``api_token_default_expiry()`` for the default, or
    ``None`` for a token that never expires (only when explicitly asked for).
    """
    name = (name or "").strip()
    if not name:
        raise ServiceError("an API token needs a name", field="name")
    if len(name) > NAME_MAX_LENGTH:
        raise ServiceError(
            f"an API token's name has at most {NAME_MAX_LENGTH} characters",
            field="name",
        )
    if expires_in is not None and not dt.timedelta(0) < expires_in <= MAX_EXPIRY:
        raise ServiceError(
            "an API token expires after 1 to 365 days, or never",
            field="expires_in_days",
        )
    if not getattr(user, "is_active", False):
        raise ServiceError("only an active account may have API tokens")
    with transaction.atomic():
        if ApiToken.objects.filter(user=user).count() >= MAX_TOKENS_PER_USER:
            raise ServiceError(
                f"at most {MAX_TOKENS_PER_USER} API tokens per person: revoke one first",
                code="too_many_tokens",
            )
        token, value = ApiToken.objects.create(user=user, expiry=expires_in, name=name)
    return token, value


def api_token_revoke(*, token: ApiToken) -> None:
    """Revoke the token: its row is deleted, so it stops working at once."""
    token.delete()


def api_token_touch(*, token: ApiToken) -> None:
    """Set ``last_used_at`` to now, unless it was set less than a minute ago, and then
    delete the user's expired tokens.

    One conditional UPDATE: concurrent requests with the same token write it once.
    """
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    if ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now):
        # The user's expired tokens go now, rather than on every request as knox does.
        ApiToken.objects.filter(user_id=token.user_id, expiry__lt=now).delete()
    token.last_used_at = now
