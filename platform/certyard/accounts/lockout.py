"""Login throttling and lockout: django-axes for passwords, a shared counter for API tokens.

Passwords (the console's ``/login/`` and Django admin's login) go through
``django.contrib.auth.authenticate``, which django-axes watches (settings.py, "Login
throttling"). Its failed attempts are rows in the database every web process shares,
which Django admin lists (*Axes → Access attempts*; deleting one unlocks) and
``manage.py axes_reset`` clears. Two limits hold at once:

- a username from one address is locked after ``CERTYARD_LOGIN_FAILURE_LIMIT`` failures:
  an attacker guessing one account's password from their address locks only that pair,
  never the account's owner elsewhere;
- an address is locked after ``CERTYARD_LOGIN_ADDRESS_FAILURE_LIMIT`` failures whatever the
  usernames, so trying one password on many accounts (spraying) stops as well.

Both last ``CERTYARD_LOGIN_COOLOFF_MINUTES`` from the failures that made them.

API tokens never reach ``authenticate`` (knox checks them in DRF): their failures are
counted per address in the shared cache (``settings.CACHES``, the database or Redis) and
answered 429 with ``Retry-After`` once an address has made too many.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.core.cache import cache
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from certyard.security import client_address


def _cool_off() -> dt.timedelta:
    return settings.AXES_COOLOFF_TIME


def _recent_attempts(**filters: Any) -> Any:
    """The failed attempts still counting: those within the cool-off period."""
    threshold = timezone.now() - _cool_off()
    return AccessAttempt.objects.filter(attempt_time__gte=threshold, **filters)


class LoginAttemptsHandler(AxesDatabaseHandler):
    """axes' database handler, plus the address-wide limit (see the module docstring).

    axes compares one number against ``AXES_FAILURE_LIMIT``: the failures of this username
    from this address (``AXES_LOCKOUT_PARAMETERS``). The address's failures over all
    usernames count against their own, larger limit, scaled onto the same number here.
    """

    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        pair = super().get_failures(request, credentials)
        address = request.axes_ip_address  # type: ignore[attr-defined]
        if not address:
            return pair
        total = (
            _recent_attempts(ip_address=address).aggregate(n=Sum("failures_since_start"))["n"] or 0
        )
        # At or over the address limit exactly when the scaled number is at or over axes' own.
        limit, address_limit = (
            settings.AXES_FAILURE_LIMIT,
            settings.CERTYARD_LOGIN_ADDRESS_FAILURE_LIMIT,
        )
        return max(pair, total * limit // address_limit)


@dataclass(frozen=True)
class Lockout:
    """Why a login is refused and when it may be tried again."""

    scope: str  # "account": this username from this address; "address": every username
    retry_at: dt.datetime

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil((self.retry_at - timezone.now()).total_seconds()))

    @property
    def retry_after_minutes(self) -> int:
        return math.ceil(self.retry_after_seconds / 60)


def _unlocked_at(attempts: Iterable[AccessAttempt], limit: int) -> dt.datetime | None:
    """When the failures still counting fall below ``limit`` (None: they already are).

    Each attempt row stops counting, wholly, a cool-off after its last failure; the oldest
    go first.
    """
    rows = sorted(attempts, key=lambda row: row.attempt_time)
    remaining = sum(row.failures_since_start for row in rows)
    for row in rows:
        if remaining < limit:
            break
        remaining -= row.failures_since_start
        if remaining < limit:
            return row.attempt_time + _cool_off()
    return None


def lockout_of(address: str | None, username: str | None) -> Lockout | None:
    """The lockout that refuses ``username`` from ``address`` now, if any."""
    found: list[Lockout] = []
    pair = _unlocked_at(
        _recent_attempts(ip_address=address, username=username), settings.AXES_FAILURE_LIMIT
    )
    if pair is not None:
        found.append(Lockout("account", pair))
    if address:
        wide = _unlocked_at(
            _recent_attempts(ip_address=address), settings.CERTYARD_LOGIN_ADDRESS_FAILURE_LIMIT
        )
        if wide is not None:
            found.append(Lockout("address", wide))
    return max(found, key=lambda lockout: lockout.retry_at, default=None)


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """The page a locked-out login gets (``AXES_LOCKOUT_CALLABLE``), console and admin alike.

    axes' async middleware passes the credentials where the response belongs; both are
    read from the request instead, where axes also leaves them.
    """
    credentials = getattr(request, "axes_credentials", None)
    if not isinstance(credentials, dict):
        credentials = None
    username = get_client_username(request, credentials)
    address = getattr(request, "axes_ip_address", None) or client_address(request)
    lockout = lockout_of(address, username) or Lockout("account", timezone.now() + _cool_off())
    response = render(
        request,
        "registration/locked_out.html",
        {
            "lockout": lockout,
            "locked_username": username or "",
            "cooloff_minutes": settings.CERTYARD_LOGIN_COOLOFF_MINUTES,
        },
        status=429,
    )
    response["Retry-After"] = str(lockout.retry_after_seconds)
    return response


# --- API tokens ---------------------------------------------------------------------


def _token_key(address: str) -> str:
    return f"token-failures:{address}"


def _token_window() -> int:
    return settings.CERTYARD_LOGIN_COOLOFF_MINUTES * 60


def token_failures_retry_after(address: str | None) -> int | None:
    """Seconds until ``address`` may present API tokens again, or None if it may now."""
    if not address:
        return None
    since, count = cache.get(_token_key(address), (0.0, 0))
    if count < settings.CERTYARD_TOKEN_FAILURE_LIMIT:
        return None
    return max(1, math.ceil(since + _token_window() - timezone.now().timestamp()))


def token_failure_record(address: str | None) -> None:
    """Count one refused API token from ``address``; the count lapses a cool-off period
    after the first failure it holds.

    A read and a write, as DRF's own throttles count: two processes failing at the same
    instant may count one failure where there were two, never lock anyone wrongly.
    """
    if not address:
        return
    now = timezone.now().timestamp()
    since, count = cache.get(_token_key(address), (now, 0))
    remaining = math.ceil(since + _token_window() - now)
    if remaining <= 0:
        since, count, remaining = now, 0, _token_window()
    cache.set(_token_key(address), (since, count + 1), timeout=remaining)
