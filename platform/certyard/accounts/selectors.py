"""Reads of the accounts app."""

from typing import Any

from django.db.models import QuerySet

from certyard.accounts.models import ApiToken


def api_token_list(*, user: Any) -> QuerySet[ApiToken]:
    """The person's own API tokens, the newest first (the digest is never needed to show one)."""
    return ApiToken.objects.filter(user=user).defer("digest").order_by("-created", "-pk")
