"""The data directory holds the database, the secret key and the demo agent's key: private.

``make run`` refuses a data directory other users can read, and keeps every file in it
readable by its owner alone.
"""

import os
import stat
from pathlib import Path


def data_dir_problem(path: Path) -> str | None:
    """Why ``path`` is not private enough to hold Certyard's data, or None when it is."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return (
            f"the data directory {path} can be read by other users (mode {mode:o}): it holds "
            f"the database, API tokens and the secret key. Make it private with "
            f"`chmod 700 {path}` (and `chmod 600` its files), then start again."
        )
    return None


def data_dir_tighten(path: Path) -> int:
    """Make every file below ``path`` 0600 and every folder 0700; returns how many changed."""
    changed = 0
    for directory, folders, files in os.walk(path):
        for name, private in [(f, 0o700) for f in folders] + [(f, 0o600) for f in files]:
            target = Path(directory, name)
            if target.is_symlink():
                continue
            if stat.S_IMODE(target.stat().st_mode) != private:
                target.chmod(private)
                changed += 1
    return changed
