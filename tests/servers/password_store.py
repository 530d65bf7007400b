"""A real `pass` password store (Debian's ``pass`` and GnuPG) in a test's folder: a GnuPG
home with a key that needs no passphrase, a store initialised for it, and entries put in
with ``pass insert``, as an administrator would."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PasswordStore:
    """``env``: the variables that point ``pass`` (and gpg) at this store and key."""

    env: dict[str, str]

    def insert(self, name: str, secret: str) -> None:
        subprocess.run(
            ["pass", "insert", "--multiline", name],
            input=f"{secret}\n",
            text=True,
            env={**os.environ, **self.env},
            check=True,
            capture_output=True,
            timeout=60,
        )


@contextmanager
def password_store(folder: Path) -> Iterator[PasswordStore]:
    """A store under ``folder``, its gpg-agent stopped on exit (gpg starts one per GnuPG
    home, which would outlive the test); fails when pass is not installed."""
    if shutil.which("pass") is None or shutil.which("gpg") is None:
        raise RuntimeError("pass is not installed: run `make system-deps`")
    home = folder / "gnupg"
    home.mkdir(mode=0o700, parents=True)
    env = {"GNUPGHOME": str(home), "PASSWORD_STORE_DIR": str(folder / "password-store")}
    run_env = {**os.environ, **env}

    def gpg(*args: str) -> str:
        return subprocess.run(
            ["gpg", "--batch", "--passphrase", "", *args],
            env=run_env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout

    gpg("--quick-gen-key", "Certyard Tests <tests@certyard.test>", "ed25519", "cert", "never")
    listed = gpg("--list-keys", "--with-colons")
    fingerprint = next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr"))
    gpg("--quick-add-key", fingerprint, "cv25519", "encr", "never")
    subprocess.run(
        ["pass", "init", fingerprint], env=run_env, check=True, capture_output=True, timeout=60
    )
    try:
        yield PasswordStore(env)
    finally:
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"],
            env=run_env,
            check=False,
            capture_output=True,
            timeout=60,
        )
