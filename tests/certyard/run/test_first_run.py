"""The first run (issue 17): the admin password is kept in a 0600 file in the data
directory and `make run` says, last, how to log in on every start; listening beyond
loopback without CERTYARD_PUBLIC_URL stops at once, saying what to set."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from certyard.console.management.commands.certyard_bootstrap import admin_account_ensure
from certyard.run.admin_password import admin_login_lines, admin_password_path

ROOT = Path(__file__).resolve().parents[3]
EVERYWHERE = "0.0.0.0"  # noqa: S104 (what is refused, never bound here)

pytestmark = pytest.mark.django_db


def _admin():
    return get_user_model().objects.get(username="first-admin")


@pytest.fixture
def no_admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTYARD_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("CERTYARD_ADMIN_USER", "first-admin")


def test_a_generated_password_is_kept_privately_and_shown_once(
    tmp_path: Path, no_admin_env: None
) -> None:
    first = admin_account_ensure(data_dir=tmp_path)

    assert first.how == "generated" and first.created and first.password
    path = admin_password_path(tmp_path)
    assert first.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first.password
    assert _admin().check_password(first.password)
    lines = "\n".join(admin_login_lines(first))
    assert first.password in lines and str(path) in lines

    # Later starts name the file, and never show the password again.
    later = admin_account_ensure(data_dir=tmp_path)
    assert (later.how, later.password, later.created) == ("in_file", None, False)
    lines = "\n".join(admin_login_lines(later))
    assert str(path) in lines and first.password not in lines


def test_later_starts_say_when_the_password_changed_or_the_file_went(
    tmp_path: Path, no_admin_env: None
) -> None:
    admin_account_ensure(data_dir=tmp_path)
    user = _admin()
    user.set_password("changed-in-the-console-7f1")
    user.save()

    changed = admin_account_ensure(data_dir=tmp_path)
    assert changed.how == "changed"
    assert "no longer valid" in " ".join(admin_login_lines(changed))

    admin_password_path(tmp_path).unlink()
    removed = admin_account_ensure(data_dir=tmp_path)
    assert removed.how == "removed"
    text = " ".join(admin_login_lines(removed))
    assert "removed" in text and "CERTYARD_ADMIN_PASSWORD" in text


def test_a_password_from_the_environment_replaces_the_stale_file(
    tmp_path: Path, no_admin_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_account_ensure(data_dir=tmp_path)
    monkeypatch.setenv("CERTYARD_ADMIN_PASSWORD", "from-the-environment-9c2")

    login = admin_account_ensure(data_dir=tmp_path)

    assert login.how == "environment" and not login.created
    assert not admin_password_path(tmp_path).exists(), "it held a password that no longer works"
    assert _admin().check_password("from-the-environment-9c2")
    assert admin_login_lines(login) == [
        "Log in as 'first-admin' with the password from $CERTYARD_ADMIN_PASSWORD."
    ]


def test_bootstrap_prints_the_generated_password_and_its_file(
    tmp_path: Path, no_admin_env: None, settings
) -> None:
    settings.DATA_DIR = tmp_path
    out = io.StringIO()

    call_command("certyard_bootstrap", stdout=out)

    password = admin_password_path(tmp_path).read_text().strip()
    assert f"Created admin account: first-admin / {password}" in out.getvalue()
    assert str(admin_password_path(tmp_path)) in out.getvalue()


def _run_refused(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CERTYARD_")}
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    clean.pop("DATABASE_URL", None)
    data_dir = tmp_path / "var"
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "certyard_run", *args],
        cwd=ROOT,
        env={**clean, "CERTYARD_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.django_db(False)
def test_listening_everywhere_without_a_public_url_stops_at_once(tmp_path: Path) -> None:
    refused = _run_refused(tmp_path, "--host", EVERYWHERE, "--port", "8123")

    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr + refused.stdout
    assert f"listening on {EVERYWHERE} reaches beyond this machine" in refused.stderr
    assert "set CERTYARD_PUBLIC_URL" in refused.stderr
    # Stopped before anything was set up: no database, no run files.
    assert not (tmp_path / "var" / "run").exists()
    assert not (tmp_path / "var" / "certyard.sqlite3").exists()

    wildcard = _run_refused(
        tmp_path,
        CERTYARD_HOST=EVERYWHERE,
        CERTYARD_PUBLIC_URL=f"http://{EVERYWHERE}:8123",
    )
    assert wildcard.returncode == 1 and "Traceback" not in wildcard.stderr
    assert "names no machine" in wildcard.stderr
