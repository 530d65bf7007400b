"""Auto-reload for development (``make run RELOAD=1``, ``certyard_run --reload``): which
source files to watch, and a watcher that says which of them changed.

Handler classes are discovered once per process, so a change to an extension's code needs
the web server and the worker cluster started again. The watcher polls modification times
(every second by default: a few hundred files cost milliseconds, and polling needs nothing
beyond the standard library and works on every file system, mounted folders included).

Watched: the platform (``platform/certyard``), the handler contracts and built-ins
(``handlers/``), and the source of every installed distribution that declares entry points
in ``certyard.handlers`` (and the groups of ``CERTYARD_EXTRA_HANDLER_GROUPS``; the caller
names them: like the rest of :mod:`certyard.run`, this imports neither Django nor handlers): its
top-level packages or modules, wherever they are imported from (an editable install's
folder included). Never in production: code changing under a running platform is a
development situation.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from collections.abc import Iterable
from importlib.metadata import Distribution, entry_points
from pathlib import Path

# Python code, and the templates Django caches once loaded.
WATCHED_SUFFIXES = (".py", ".html")
_SKIPPED_FOLDERS = {"__pycache__", ".git", "node_modules", ".mypy_cache", ".ruff_cache"}
POLL_SECONDS = 1.0


def _top_level_names(distribution: Distribution | None, module: str) -> set[str]:
    names = {module.split(".", 1)[0]}
    if distribution is not None:
        listed = distribution.read_text("top_level.txt") or ""
        names |= {line.strip() for line in listed.splitlines() if line.strip()}
    return names


def _locations(name: str) -> list[Path]:
    """Where the top-level package (its folders) or module (its file) ``name`` is imported
    from, without importing it; nothing when it cannot be found."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(location) for location in spec.submodule_search_locations]
    if spec.origin and spec.has_location:
        return [Path(spec.origin)]
    return []


def extension_source_roots(groups: Iterable[str]) -> list[Path]:
    """The folders (or files) holding the code of every distribution that declares entry
    points in ``groups`` (the platform's handler groups)."""
    names: set[str] = set()
    for group in groups:
        for entry_point in entry_points(group=group):
            names |= _top_level_names(entry_point.dist, entry_point.module)
    return [path for name in sorted(names) for path in _locations(name)]


def watched_roots(base_dir: Path, groups: Iterable[str]) -> list[Path]:
    """What ``--reload`` watches: the platform, ``handlers/`` and the installed extensions
    declaring entry points in ``groups``."""
    roots = [base_dir / "platform" / "certyard", base_dir / "handlers"]
    roots += extension_source_roots(groups)
    unique: dict[str, Path] = {}
    for root in roots:
        resolved = root.resolve()
        if resolved.exists():
            unique.setdefault(str(resolved), resolved)
    return sorted(unique.values())


class SourceWatcher:
    """The modification times of the watched files, compared every ``interval`` seconds.

    :meth:`changed` returns the files changed, added or removed since the last time it
    found any (empty between two polls): call it as often as you like."""

    def __init__(
        self,
        roots: Iterable[Path],
        *,
        interval: float = POLL_SECONDS,
        suffixes: tuple[str, ...] = WATCHED_SUFFIXES,
    ) -> None:
        self.roots = list(roots)
        self.interval = interval
        self.suffixes = suffixes
        self._mtimes = self._scan()
        self._next_poll = time.monotonic() + interval

    @property
    def file_count(self) -> int:
        return len(self._mtimes)

    def _scan(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for root in self.roots:
            if root.is_file():
                self._stat(str(root), found)
                continue
            for folder, folders, files in os.walk(root):
                folders[:] = [f for f in folders if f not in _SKIPPED_FOLDERS]
                for name in files:
                    if name.endswith(self.suffixes):
                        self._stat(os.path.join(folder, name), found)
        return found

    @staticmethod
    def _stat(path: str, found: dict[str, int]) -> None:
        with contextlib.suppress(OSError):  # removed while walking
            found[path] = os.stat(path).st_mtime_ns

    def changed(self) -> list[Path]:
        """The files that changed since the previous poll (sorted), if a poll is due."""
        now = time.monotonic()
        if now < self._next_poll:
            return []
        self._next_poll = now + self.interval
        current = self._scan()
        previous, self._mtimes = self._mtimes, current
        differing = {p for p, mtime in current.items() if previous.get(p) != mtime}
        differing |= previous.keys() - current.keys()
        return sorted(Path(path) for path in differing)
