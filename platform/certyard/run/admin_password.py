"""The admin password generated at the first start: written once to a file only its owner
reads, in the data directory, and what `make run` says about it on every start.

The first start prints the password last, below the banner, and names the file; later
starts name the file again (or say it is gone, or that the password was changed since),
so the password is never lost in a long log and never printed twice. Nothing here needs
Django: the caller checks the password against the account.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ADMIN_PASSWORD_FILE = "admin-password.txt"  # noqa: S105 (a file name)
PASSWORD_ENV = "CERTYARD_ADMIN_PASSWORD"  # noqa: S105 (a variable's name)


def admin_password_path(data_dir: Path) -> Path:
    """Where the generated admin password is kept."""
    return data_dir / ADMIN_PASSWORD_FILE


def admin_password_write(data_dir: Path, password: str) -> Path:
    """Write the generated password (mode 0600, replacing an older file); its path."""
    path = admin_password_path(data_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return path


def admin_password_read(data_dir: Path) -> str | None:
    """The password in the file, or None when there is no (readable) file."""
    try:
        return admin_password_path(data_dir).read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class AdminLogin:
    """How the admin logs in, as far as `make run` can tell.

    ``how`` is one of: ``generated`` (the account was made now, with ``password``),
    ``environment`` (the password comes from CERTYARD_ADMIN_PASSWORD), ``in_file`` (the
    generated password is still in the file and still the password), ``changed`` (the
    file is there but the password was changed since), ``removed`` (no file).
    """

    username: str
    how: str
    path: Path
    password: str | None = None
    created: bool = False  # the account was made by this call


def admin_login_lines(login: AdminLogin) -> list[str]:
    """What `make run` prints, last, about logging in."""
    user, path = login.username, login.path
    if login.how == "generated":
        return [
            f"Log in as '{user}' with the password: {login.password}",
            "(generated now, shown only this once, and kept readable by you alone in",
            f" {path}: delete that file once you have stored or changed the password)",
        ]
    if login.how == "environment":
        return [f"Log in as '{user}' with the password from ${PASSWORD_ENV}."]
    if login.how == "in_file":
        return [f"Log in as '{user}': the password generated at the first start is in {path}."]
    reset = f"start with {PASSWORD_ENV}=... to set a new one"
    if login.how == "changed":
        return [
            f"Log in as '{user}' with the password you set ({path} still holds the one",
            f" generated at the first start, no longer valid: delete it), or {reset}.",
        ]
    return [
        f"Log in as '{user}' with the password you keep: the generated one was in {path},",
        f" which has been removed; forgotten, {reset}.",
    ]
