"""Registration tokens: made, revoked, checked and spent by a registration."""

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable
from typing import Any

from django.db.models import F
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.fleet.models import RegistrationToken
from certyard.fleet.services.hooks import blueprint_name_checked
from certyard.fleet.services.machines import client_machine_problem
from handlers.builtin._common import glob_compile


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


REGISTRATION_TOKEN_MAX_LABELS = 20
_TOKEN_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=/-]{0,63}")


def _field_error(field_name: str, message: str) -> ServiceError:
    return ServiceError(
        f"{field_name.replace('_', ' ')}: {message}", details={"fields": {field_name: [message]}}
    )


def registration_token_labels_clean(labels: Iterable[str]) -> list[str]:
    """The labels, stripped, without repeats, in order; ``ServiceError`` naming a bad one."""
    cleaned: list[str] = []
    for raw in labels:
        label = str(raw).strip()
        if not label:
            continue
        if not _TOKEN_LABEL.fullmatch(label):
            raise _field_error(
                "labels",
                f"{label[:80]!r} is not a label: up to 64 letters, digits and . _ : = / -, "
                "starting with a letter or digit",
            )
        if label not in cleaned:
            cleaned.append(label)
    if len(cleaned) > REGISTRATION_TOKEN_MAX_LABELS:
        raise _field_error("labels", f"at most {REGISTRATION_TOKEN_MAX_LABELS} labels")
    return cleaned


def registration_token_machine_pattern_clean(pattern: str) -> str:
    """A glob on client machines (``*.prod.example.com``), stripped; ``ServiceError`` if it
    could never match a valid name."""
    pattern = pattern.strip()
    if not pattern:
        return ""
    # A pattern is a host name in which * ? [ ] ! stand for what they match.
    skeleton = re.sub(r"\[!?[^\]]*\]|[*?]", "a", pattern)
    if len(pattern) > 255 or client_machine_problem(skeleton):
        raise _field_error(
            "machine_pattern",
            "a host name glob, e.g. *.prod.example.com (letters, digits, . - _ and the "
            "wildcards * ? [ ])",
        )
    return pattern


def registration_token_create(
    *,
    description: str,
    valid_for: dt.timedelta,
    reusable: bool = False,
    approve_on_register: bool = False,
    labels: Iterable[str] = (),
    machine_pattern: str = "",
    blueprint: str = "",
    created_by: Any = None,
) -> tuple[RegistrationToken, str]:
    """A new registration token and its secret value, which is shown only this once.

    ``labels`` are what registration rules can trust (``token_labels``): the agent cannot
    choose them. ``machine_pattern`` restricts the client machines the token registers;
    ``blueprint`` is the only blueprint an approval through the token may apply.
    """
    if valid_for <= dt.timedelta(0):
        raise ServiceError("a registration token must be valid for some time")
    cleaned_labels = registration_token_labels_clean(labels)
    machine_pattern = registration_token_machine_pattern_clean(machine_pattern)
    blueprint = blueprint.strip()
    if blueprint:
        blueprint = blueprint_name_checked(blueprint)
    value = f"cyreg_{secrets.token_urlsafe(32)}"
    token = RegistrationToken.objects.create(
        description=description,
        token_hash=_token_hash(value),
        token_prefix=value[:8],
        reusable=reusable,
        approve_on_register=approve_on_register,
        labels=cleaned_labels,
        machine_pattern=machine_pattern,
        blueprint=blueprint,
        expires_at=timezone.now() + valid_for,
        created_by=created_by,
    )
    return token, value


def registration_token_revoke(*, token: RegistrationToken) -> RegistrationToken:
    token.revoked = True
    token.save(update_fields=["revoked"])
    return token


def registration_token_check(value: str) -> RegistrationToken:
    """The token if it may be used now; raises the reason it may not."""
    token = RegistrationToken.objects.filter(token_hash=_token_hash(value)).first()
    refused = "the registration token is not valid"
    if token is None or token.revoked:
        raise ServiceError(refused, code="token_invalid", http_status=401)
    if token.expires_at <= timezone.now():
        raise ServiceError(
            "the registration token has expired", code="token_expired", http_status=401
        )
    if not token.reusable and token.use_count:
        raise _token_used()
    return token


def registration_token_machine_check(token: RegistrationToken, client_machine: str) -> None:
    """Refuse a claimed machine the token does not allow (before the token is spent)."""
    if token.machine_pattern and not glob_compile(token.machine_pattern).fullmatch(client_machine):
        raise ServiceError(
            f"this registration token is only for client machines matching "
            f"{token.machine_pattern!r}, not {client_machine!r}",
            code="machine_not_allowed",
            http_status=403,
        )


def _token_used() -> ServiceError:
    return ServiceError(
        "the registration token has already been used", code="token_used", http_status=401
    )


def registration_token_spend(value: str) -> RegistrationToken:
    """Check and spend a token atomically; the caller holds the transaction."""
    token = registration_token_check(value)
    spent = RegistrationToken.objects.filter(pk=token.pk)
    if not token.reusable:
        spent = spent.filter(use_count=0)
    if not spent.update(use_count=F("use_count") + 1, last_used_at=timezone.now()):
        raise _token_used()  # spent by a registration at the same moment
    return token
