"""Create what a fresh installation needs to be used: an admin and a registration token."""

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from certyard.accounts.selectors import api_token_list
from certyard.accounts.services import (
    api_token_create,
    api_token_default_expiry,
    api_token_revoke,
)
from certyard.fleet.services import registration_token_create
from certyard.run.admin_password import (
    PASSWORD_ENV,
    AdminLogin,
    admin_password_path,
    admin_password_read,
    admin_password_write,
)

BOOTSTRAP_TOKEN_NAME = "created by certyard_bootstrap"  # noqa: S105 (a label)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def admin_account_ensure(*, data_dir: Path | None = None) -> AdminLogin:
    """Make sure the admin account exists; how its owner logs in.

    A new account gets ``$CERTYARD_ADMIN_PASSWORD`` or a generated password, which is
    written to ``<data_dir>/admin-password.txt`` (0600) and returned once, for the caller to
    show. An existing account takes ``$CERTYARD_ADMIN_PASSWORD`` when it is set (and the
    file, which no longer holds the password, is removed); otherwise it is left alone and
    the answer says whether the file still holds its password.
    """
    data_dir = Path(data_dir or settings.DATA_DIR)
    username = os.environ.get("CERTYARD_ADMIN_USER", "admin")
    path = admin_password_path(data_dir)
    from_environment = os.environ.get(PASSWORD_ENV)
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is None:
        password = from_environment or secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, password=password)
        if from_environment:
            return AdminLogin(username, "environment", path, created=True)
        admin_password_write(data_dir, password)
        return AdminLogin(username, "generated", path, password, created=True)
    if from_environment:
        user.set_password(from_environment)
        user.save(update_fields=["password"])
        path.unlink(missing_ok=True)  # it holds a password that no longer works
        return AdminLogin(username, "environment", path)
    kept = admin_password_read(data_dir)
    if kept is None:
        return AdminLogin(username, "removed", path)
    return AdminLogin(username, "in_file" if user.check_password(kept) else "changed", path)


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
        login = admin_account_ensure()
        user = get_user_model().objects.get(username=login.username)
        if login.how == "generated":
            self.stdout.write(f"Created admin account: {login.username} / {login.password}")
            self.stdout.write(
                f"(the generated password is shown only now; it is also in {login.path}, "
                "readable by you alone)"
            )
        elif login.created:
            self.stdout.write(f"Created admin account: {login.username} / from {PASSWORD_ENV}")
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
