"""What an orchestrator reports of itself: its limits and its metadata."""

import json
import logging
import math
import re
from typing import Any

from django.db import transaction
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator

logger = logging.getLogger(__name__)


def orchestrator_limits_record(
    *, orchestrator: Orchestrator, store_roots: list[str], max_file_bytes: int
) -> Orchestrator:
    """Keep the store roots and file size limit the agent reported (POST limits).

    The agent is the authority on its own machine: what it says replaces what it said
    before, whole. Store forms and the API check store paths against these roots with
    ``orchestrators.roots.store_path_problem`` (the message the agent itself gives).
    The caller has checked the shape (absolute paths, bounded count and lengths).
    """
    # Order kept, duplicates dropped: the console shows them as the agent listed them.
    roots = list(dict.fromkeys(store_roots))
    now = timezone.now()
    Orchestrator.objects.filter(pk=orchestrator.pk).update(
        store_roots=roots, max_file_bytes=max_file_bytes, limits_reported_at=now
    )
    orchestrator.store_roots = roots
    orchestrator.max_file_bytes = max_file_bytes
    orchestrator.limits_reported_at = now
    return orchestrator


ORCHESTRATOR_METADATA_MAX_KEYS = 50
ORCHESTRATOR_METADATA_MAX_BYTES = 8192
ORCHESTRATOR_METADATA_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
MetadataValue = str | int | float | bool


def orchestrator_metadata_check(metadata: Any) -> dict[str, MetadataValue]:
    """``metadata`` as an orchestrator keeps it; ServiceError (field ``metadata``) if not.

    A flat JSON object: at most 50 keys, each a letter then letters, digits, ``_``,
    ``-`` or ``.`` (at most 64 characters), each value a string, a (finite) number or a
    boolean; at most 8 KiB as compact JSON (UTF-8). Nothing nested, no null: handlers and
    filters read the values as they are.
    """
    if not isinstance(metadata, dict):
        raise ServiceError(
            'metadata must be a JSON object of keys and values, like {"team": "web"}',
            field="metadata",
        )
    problems = []
    if len(metadata) > ORCHESTRATOR_METADATA_MAX_KEYS:
        problems.append(
            f"at most {ORCHESTRATOR_METADATA_MAX_KEYS} keys are allowed, {len(metadata)} were given"
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not ORCHESTRATOR_METADATA_KEY.fullmatch(key):
            problems.append(
                f"key {str(key)[:80]!r}: a letter, then letters, digits, _, - or . "
                "(at most 64 characters)"
            )
        elif not isinstance(value, str | int | float) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            kind = "null" if value is None else type(value).__name__
            problems.append(f"key {key!r}: a string, a number or true/false, not {kind}")
        elif isinstance(value, str) and "\x00" in value:
            problems.append(f"key {key!r}: the value holds a NUL character")
    if not problems:
        size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
        if size > ORCHESTRATOR_METADATA_MAX_BYTES:
            problems.append(
                f"at most {ORCHESTRATOR_METADATA_MAX_BYTES} bytes of JSON are allowed, "
                f"this is {size}"
            )
    if problems:
        raise ServiceError("; ".join(problems), fields={"metadata": problems})
    return dict(metadata)


def orchestrator_metadata_set(
    *, orchestrator: Orchestrator, metadata: Any, actor: Any
) -> Orchestrator:
    """Replace the orchestrator's metadata (see :func:`orchestrator_metadata_check`).

    Records who changed it and when (``metadata_changed_by``/``_at``) and logs the keys
    added, changed and removed with the actor's name; a registration handler's decision
    replaces it again the next time the agent registers.
    """
    checked = orchestrator_metadata_check(metadata)
    with transaction.atomic():
        locked = Orchestrator.objects.select_for_update().get(pk=orchestrator.pk)
        before = dict(locked.metadata or {})
        orchestrator.metadata = checked
        orchestrator.metadata_changed_at = timezone.now()
        orchestrator.metadata_changed_by = actor
        orchestrator.save(update_fields=["metadata", "metadata_changed_at", "metadata_changed_by"])
    added = sorted(set(checked) - set(before))
    removed = sorted(set(before) - set(checked))
    changed = sorted(key for key in set(checked) & set(before) if checked[key] != before[key])
    # Key names only: values may be whatever an administrator typed.
    logger.info(
        "orchestrator %s metadata set by %s: added %s, changed %s, removed %s",
        orchestrator.pk,
        getattr(actor, "username", None) or "-",
        ", ".join(added) or "-",
        ", ".join(changed) or "-",
        ", ".join(removed) or "-",
    )
    return orchestrator
