"""The request-overhead benchmark's profiler (benchmarks/request_overhead.py --profile):
cProfile in every thread, and its functions' own time grouped by what they belong to
(Django's handlers, each middleware, authentication, the ORM, the database driver, DRF,
templates, Certyard, thread hops, idle waits)."""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import threading
from collections import defaultdict
from collections.abc import Iterator

IDLE = "idle: a thread waiting for the other"
HOPS = "thread hops (asgiref sync_to_async, context copies, loop wake-ups, threads)"
# Builtins (C functions) known by name; any other builtin's time goes to its caller's group.
BUILTIN_GROUPS = [
    (
        IDLE,
        (
            "<method 'poll' of 'select.epoll' objects>",
            "<method 'acquire' of '_thread.lock' objects>",
            "<method 'get' of '_queue.SimpleQueue' objects>",
        ),
    ),
    (
        "database connection setup/close",
        ("_sqlite3.connect", "'sqlite3.Connection' objects>", "psycopg.connect"),
    ),
    ("database driver (queries, commits)", ("sqlite3", "CursorWrapper", "psycopg")),
    (HOPS, ("<method 'send' of '_socket.socket' objects>", "start_new_thread")),
    ("cryptography (signing, CSR parsing)", ("cryptography", "_rust")),
]
# Python functions by the file they live in, first match wins.
GROUPS = [
    ("middleware: sessions", ("django/contrib/sessions/",)),
    ("middleware: auth (request.user)", ("django/contrib/auth/middleware",)),
    ("middleware: csrf", ("django/middleware/csrf",)),
    ("middleware: messages", ("django/contrib/messages/",)),
    ("middleware: axes", ("/axes/",)),
    ("middleware: whitenoise (static)", ("/whitenoise/", "certyard/middleware.py")),
    (
        "middleware: security, CSP, common, clickjacking, htmx",
        ("django/middleware/", "certyard/security.py", "django_htmx"),
    ),
    (
        "authentication (knox, DRF auth, Django auth)",
        (
            "/knox/",
            "rest_framework/authentication",
            "certyard/accounts/",
            "django/contrib/auth/",
            "certyard/fleet/api/agent_auth",
        ),
    ),
    (HOPS, ("/asgiref/", "concurrent/futures", "threading.py", "contextvars")),
    (
        "Django ASGI handler, signals, asyncio",
        (
            "django/core/handlers/",
            "/asyncio/",
            "selectors.py",
            "django/dispatch/",
            "certyard/asgi.py",
            "long_poll_asgi",
        ),
    ),
    ("database driver (queries, commits)", ("/psycopg/", "django/db/backends/")),
    ("ORM (queries built, rows to objects)", ("django/db/",)),
    (
        "DRF serializers, fields, renderers, JSON",
        (
            "rest_framework/serializers",
            "rest_framework/fields",
            "rest_framework/relations",
            "rest_framework/renderers",
            "rest_framework/utils/",
            "json/",
        ),
    ),
    ("DRF views, request, pagination, permissions", ("rest_framework/", "certyard/api/")),
    ("templates", ("django/template/", "template_partials", "certyard/display.py")),
    ("URL routing", ("django/urls/",)),
    ("cryptography (signing, CSR parsing)", ("cryptography", "certyard/pki/crypto")),
    ("Certyard views and services", ("certyard/",)),
    ("Django http, utils, cache, conf", ("django/",)),
]


def group_of(filename: str, function: str) -> str | None:
    """The group of a function; None for a builtin to be charged to its callers."""
    if filename == "~":
        for label, parts in BUILTIN_GROUPS:
            if any(part in function for part in parts):
                return label
        return None
    for label, parts in GROUPS:
        if any(part in filename for part in parts):
            return label
    return "other (stdlib and libraries)"


def own_time_by_group(raw: dict) -> dict[str, float]:
    own: dict[str, float] = defaultdict(float)
    for (filename, _line, function), (_, _calls, tottime, _cum, callers) in raw.items():
        group = group_of(filename, function)
        if group is not None:
            own[group] += tottime
            continue
        # A builtin (getattr, isinstance, str.join...): its time, caller by caller.
        charged = 0.0
        for (caller_file, _l, caller_function), edge in callers.items():
            caller_group = group_of(caller_file, caller_function) or "other (stdlib and libraries)"
            own[caller_group] += edge[2]
            charged += edge[2]
        own["other (stdlib and libraries)"] += max(0.0, tottime - charged)
    return own


class ThreadProfiles:
    """cProfile in every thread: the event loop's (enabled around the requests) and each
    request's sync thread (enabled for its whole life)."""

    def __init__(self) -> None:
        self.main = cProfile.Profile()
        self.threads: list[cProfile.Profile] = []
        self.on = False
        real_run = threading.Thread.run
        profiles = self

        def run(thread: threading.Thread) -> None:
            if not profiles.on:
                return real_run(thread)
            profile = cProfile.Profile()
            profiles.threads.append(profile)
            profile.enable()
            try:
                return real_run(thread)
            finally:
                profile.disable()

        threading.Thread.run = run  # type: ignore[method-assign]

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.on = True
        self.main.enable()
        try:
            yield
        finally:
            self.main.disable()
            self.on = False

    def stats(self) -> pstats.Stats:
        stats = pstats.Stats(self.main)
        for profile in self.threads:
            with contextlib.suppress(TypeError):  # a thread that never ran profiled code
                stats.add(profile)
        return stats


# Functions whose cumulative time says what a phase costs in all (its callees included).
MARKERS = [
    ("database connect (BaseDatabaseWrapper.connect)", "base/base.py", "connect"),
    ("database close (BaseDatabaseWrapper.close)", "base/base.py", "close"),
    ("new threads (Thread.start)", "threading.py", "start"),
    (
        "context copies into threads (asgiref _restore_context)",
        "asgiref/sync.py",
        "_restore_context",
    ),
    (
        "the thread side of each hop (SyncToAsync.thread_handler)",
        "asgiref/sync.py",
        "thread_handler",
    ),
    ("DRF authentication (Request._authenticate)", "rest_framework/request.py", "_authenticate"),
    ("session user (django.contrib.auth.get_user)", "contrib/auth/__init__.py", "get_user"),
    ("DRF serializer output (Serializer.data)", "rest_framework/serializers.py", "data"),
    ("DRF rendering (JSONRenderer.render)", "rest_framework/renderers.py", "render"),
    ("templates (Template.render)", "django/template/base.py", "render"),
    ("queries (CursorWrapper.execute)", "backends/utils.py", "execute"),
]


def short_name(filename: str) -> str:
    for marker in ("site-packages/", "platform/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename
