"""Where an orchestrator may touch stores: the rule both sides apply, with one message.

Shared by the agent and the platform (like ``protocol``): the agent enforces its store
roots on its own machine, links resolved; the platform checks a store path against the
roots its agent reported, before anything is scheduled, so a person sees the refusal in
the form instead of in a failed job. Both call ``store_path_problem`` and so say the same
thing. No Django, no agent code.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence

# Longer paths are not a store anyone means (Linux PATH_MAX is 4096 bytes).
MAX_STORE_PATH_BYTES = 4096

ROOTS_ADVICE = (
    "an administrator of its machine can add one with `certyard-orchestrator roots --add`"
)


def _roots_text(roots: Sequence[str]) -> str:
    return ", ".join(roots) or "none configured"


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def store_path_problem(
    path: str, roots: Sequence[str] | None, *, resolve: bool = False
) -> str | None:
    """Why ``path`` cannot be a store of an orchestrator with ``roots``; None when it can.

    ``roots`` None means no restriction is known (an agent that has not reported them);
    the lexical rules still apply: an absolute path, no ``..`` component, no NUL, at most
    ``MAX_STORE_PATH_BYTES``. With ``resolve`` (the agent, on its own machine) links are
    followed before the roots are compared; without it (the platform) the comparison is
    lexical, so a link below a root pointing outside is caught by the agent alone.
    """
    if not path:
        return "a store path is required"
    if "\x00" in path:
        return "a store path cannot contain a NUL character"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_STORE_PATH_BYTES:
        return f"store path is longer than {MAX_STORE_PATH_BYTES} bytes"
    if not path.startswith("/"):
        return (
            f"store path {path} is not absolute: an orchestrator reads only absolute paths "
            "(starting with /), never relative to the folder it runs in"
        )
    if ".." in path.split("/"):
        return f"store path {path} contains '..': name the folder itself, without '..'"
    if roots is None:
        return None
    candidate = os.path.realpath(path) if resolve else posixpath.normpath(path)
    if candidate.startswith("//"):
        candidate = "/" + candidate.lstrip("/")
    if not _inside(candidate, roots):
        return (
            f"store path {path} is outside the folders this orchestrator may read "
            f"({_roots_text(roots)}); {ROOTS_ADVICE}"
        )
    return None
