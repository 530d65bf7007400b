"""A tiny installed distribution in a temporary folder, for tests that need entry points.

Written as pip writes one (``<name>-<version>.dist-info`` with ``METADATA`` and
``entry_points.txt`` beside the package), so ``importlib.metadata`` finds it once the folder
is on ``PYTHONPATH``: give that to a subprocess, never to the test process (entry points are
read once per process, and other tests must not see these)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def write_distribution(
    folder: Path,
    *,
    name: str,
    version: str = "1.0.0",
    entry_points: Mapping[str, Mapping[str, str]],
    files: Mapping[str, str],
) -> Path:
    """Write the distribution ``name`` into ``folder``: ``files`` (relative path -> text)
    and its metadata declaring ``entry_points`` (group -> {name: "module:Class"})."""
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, declared in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {target}" for key, target in declared.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    tops = sorted({relative.split("/", 1)[0].removesuffix(".py") for relative in files})
    (info / "top_level.txt").write_text("\n".join(tops) + "\n")
    return folder


def env_with_path(folder: Path, root: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that sees ``folder``'s distributions (and the
    repository's packages)."""
    path = os.pathsep.join(
        p for p in (str(folder), str(root), os.environ.get("PYTHONPATH", "")) if p
    )
    return {**os.environ, "PYTHONPATH": path, **extra}
