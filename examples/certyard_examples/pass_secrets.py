"""A secret provider for the agent: store passwords kept in `pass`, the standard Unix
password manager (Debian's ``pass``: GnuPG-encrypted files under ``~/.password-store``).

A store whose password is ``ref+agent:pass:certyard/web-p12`` gets, on the agent's machine,
the first line of ``pass show certyard/web-p12``: the platform holds only the reference.
The agent's user needs the password store and the GnuPG key that opens it
(``PASSWORD_STORE_DIR`` and ``GNUPGHOME`` in its environment, if not in its home), with no
passphrase prompt (a key without one, or gpg-agent holding it).

It shows the contract (``orchestrators.secret_refs.SecretProvider``): one method, a name
in, the secret out, ``SecretUnavailable`` with a reason that never holds what was read.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import ClassVar

from orchestrators.secret_refs import SecretContext, SecretProvider, SecretUnavailable

# pass's own names: folders and entries of letters, digits, '.', '_', '-', '@', '+'.
_ENTRY = re.compile(r"[A-Za-z0-9_.@+-]+(?:/[A-Za-z0-9_.@+-]+)*")


class PassProvider(SecretProvider):
    """``ref+agent:pass:<entry>``: the first line of ``pass show <entry>``."""

    scheme: ClassVar[str] = "pass"

    def resolve(self, name: str, context: SecretContext) -> str:
        if not _ENTRY.fullmatch(name) or ".." in name.split("/"):
            raise SecretUnavailable(f"{name!r} is not a pass entry name")
        executable = shutil.which("pass")
        if executable is None:
            raise SecretUnavailable("pass is not installed on this machine")
        try:
            shown = subprocess.run(
                [executable, "show", name],
                capture_output=True,
                timeout=context.timeout_seconds,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise SecretUnavailable(
                f"pass did not answer within {context.timeout_seconds:g} s"
            ) from None
        if shown.returncode != 0:
            said = shown.stderr.decode(errors="replace").strip().splitlines()
            raise SecretUnavailable(
                f"pass has no readable entry {name}" + (f" ({said[-1][:200]})" if said else "")
            )
        lines = shown.stdout.decode(errors="strict").splitlines()
        if not lines or not lines[0]:
            raise SecretUnavailable(f"the pass entry {name} is empty")
        return lines[0]
