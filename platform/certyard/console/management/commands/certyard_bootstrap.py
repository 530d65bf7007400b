"""Create what a fresh installation needs to be used: an admin and a registration token."""

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from certyard.accounts.selectors import api_token_list
from certyard.accounts.services import (
    api_token_create,
    api_token_default_expiry,
    api_token_revoke,
)
from certyard.fleet.services import registration_token_create

BOOTSTRAP_TOKEN_NAME = "created by certyard_bootstrap"  # noqa: S105 (a label)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class Command(BaseCommand):
    help = (
        "Create the admin account (CERTYARD_ADMIN_USER / CERTYARD_ADMIN_PASSWORD, or a "
        "generated password printed once) and, on request, an API token and a registration token."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--api-token-file",
            type=Path,
            help=(
                "Create an API token for the admin (replacing the one an earlier bootstrap "
                "made) and write it here, readable by the owner only; it is never printed."
            ),
        )
        parser.add_argument(
            "--registration-token-file",
            type=Path,
            help="Create a registration token; write it here.",
        )
        parser.add_argument("--approve-on-register", action="store_true")
        parser.add_argument("--reusable", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("CERTYARD_ADMIN_USER", "admin")
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = os.environ.get("CERTYARD_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            user = user_model.objects.create_superuser(username=username, password=password)
            shown = (
                "from CERTYARD_ADMIN_PASSWORD"
                if "CERTYARD_ADMIN_PASSWORD" in os.environ
                else password
            )
            self.stdout.write(f"Created admin account: {username} / {shown}")
            self.stdout.write("(the generated password is shown only now)")
        elif password := os.environ.get("CERTYARD_ADMIN_PASSWORD"):
            user.set_password(password)
            user.save(update_fields=["password"])
        if path := options["api_token_file"]:
            self._api_token_write(user, path)
        if path := options["registration_token_file"]:
            _, value = registration_token_create(
                description="created by certyard_bootstrap",
                valid_for=dt.timedelta(days=1),
                reusable=options["reusable"],
                approve_on_register=options["approve_on_register"],
                created_by=user,
            )
            _write_private(path, value)

    def _api_token_write(self, user: Any, path: Path) -> None:
        """A new API token for ``user`` in ``path`` (0600); only its prefix is shown."""
        for earlier in api_token_list(user=user).filter(name=BOOTSTRAP_TOKEN_NAME):
            api_token_revoke(token=earlier)
        token, value = api_token_create(
            user=user, name=BOOTSTRAP_TOKEN_NAME, expires_in=api_token_default_expiry()
        )
        _write_private(path, value)
        self.stdout.write(
            f"Wrote API token {token.token_key}… for {user.get_username()} to {path} "
            f"(expires {token.expiry:%Y-%m-%d})"
        )
