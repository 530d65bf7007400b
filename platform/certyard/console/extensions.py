"""What ``manage.py certyard_extensions`` reports: every installed extension and its problems.

Three sources, each read the way the code that uses it reads it:

- **Platform handlers**: the ``certyard.handlers`` entry points (and the groups of
  ``CERTYARD_EXTRA_HANDLER_GROUPS``), loaded by :func:`handlers.registry.handler_classes`,
  which already refuses an import error, a class that is no contract subclass, invalid
  parameters and invalid metadata field declarations.
- **Agent store types**: the ``certyard.store_types`` entry points, loaded by the agent
  itself. The platform never imports the agent, its SDK or the store types (import-linter
  contract ``platform-speaks-protocol``), and store types are installed beside the agent,
  not the platform; so this runs the agent's own check, ``python -m orchestrators.agent
  extensions --json``, in a subprocess, with the agent's Python (this one by default: in
  development both live in one environment).
- **The database**, when it can be reached: registrations whose class is missing or broken,
  and metadata generator registrations whose declared fields do not exist.

Lives in the console (the top app) because it reads both the workflows and the inventory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from certyard.inventory.metadata.selectors import generator_registrations_with_fields
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.selectors import class_status
from handlers import registry

# The agent's check loads every store type package: generous, a slow import is no failure.
AGENT_CHECK_SECONDS = 120


@dataclass(frozen=True, slots=True)
class Extension:
    """One discovered extension: a handler class or a store type.

    ``kind`` is the handler kind (``event``, ``metadata``, ...), ``store_type``, or ``""``
    for a handler that could not be loaded; ``side`` is ``platform`` or ``agent``."""

    name: str
    kind: str
    side: str
    target: str
    package: str
    version: str
    problems: tuple[str, ...] = ()
    group: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "side": self.side,
            "class": self.target,
            "package": self.package,
            "version": self.version,
            "group": self.group,
            "problems": list(self.problems),
        }

    def sentences(self) -> list[str]:
        """Each problem as a sentence naming the extension."""
        noun = "Store type" if self.side == "agent" else "Handler"
        package = f"{self.package} {self.version}".strip() or "no package"
        return [f"{noun} {self.name} ({package}, {self.target}) {p}." for p in self.problems]


@dataclass(frozen=True, slots=True)
class RegistrationProblem:
    """A handler registration that cannot do its work as configured."""

    id: int
    name: str
    handler: str
    status: str  # "missing", "broken" (its class), or "fields_missing" (a generator's)
    problem: str
    missing_fields: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "handler": self.handler,
            "status": self.status,
            "problem": self.problem,
            "missing_fields": list(self.missing_fields),
        }

    def sentence(self) -> str:
        return f"Registration {self.name!r} (#{self.id}, class {self.handler}): {self.problem}"


@dataclass(slots=True)
class ExtensionsReport:
    """Everything found. ``registrations`` is None when the database could not be read;
    ``notes`` says why (and what else was not checked)."""

    extensions: list[Extension] = field(default_factory=list)
    registrations: list[RegistrationProblem] | None = None
    notes: list[str] = field(default_factory=list)
    # Problems that belong to no one extension (the agent's check could not run).
    other_problems: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every problem, one sentence each."""
        sentences = [s for extension in self.extensions for s in extension.sentences()]
        sentences += [item.sentence() for item in self.registrations or []]
        return sentences + self.other_problems

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "extensions": [extension.to_json() for extension in self.extensions],
            "registrations": (
                None
                if self.registrations is None
                else [item.to_json() for item in self.registrations]
            ),
            "notes": list(self.notes),
            "problems": self.problems,
        }


def handler_extensions() -> list[Extension]:
    """Every handler entry point, as the platform loads it."""
    return [
        Extension(
            name=info.name,
            kind=str(info.kind) if info.kind is not None else "",
            side="platform",
            target=info.target,
            package=info.distribution,
            version=info.version,
            problems=(info.error,) if info.error else (),
        )
        for info in registry.handler_classes().values()
    ]


def agent_command(agent_python: str | None = None) -> list[str]:
    """The agent's own check, run with ``agent_python`` (default: this Python)."""
    return [agent_python or sys.executable, "-m", "orchestrators.agent", "extensions", "--json"]


def store_type_extensions(agent_python: str | None = None) -> tuple[list[Extension], list[str]]:
    """Every store type the agent finds, by running its check; ``([], [problem])`` when the
    check cannot run or answers something else than its JSON."""
    command = agent_command(agent_python)
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=AGENT_CHECK_SECONDS,
            cwd=Path(settings.BASE_DIR),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], [f"The agent's store types could not be checked ({' '.join(command)}): {exc}."]
    try:
        answer = json.loads(done.stdout)
        items = answer["store_types"]
        extensions = [
            Extension(
                name=str(item["name"]),
                kind="store_type",
                side="agent",
                target=str(item["class"]),
                package=str(item.get("package", "")),
                version=str(item.get("version", "")),
                group=str(item.get("group", "")),
                problems=tuple(
                    ("is refused by the agent: " if item.get("refused") else "") + str(problem)
                    for problem in item.get("problems", ())
                ),
            )
            for item in items
        ]
    except (ValueError, KeyError, TypeError):
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [], [
            f"The agent's store types could not be checked ({' '.join(command)} exited with "
            f"{done.returncode}): {error}."
        ]
    return extensions, []


def registration_problems() -> list[RegistrationProblem]:
    """Registrations whose class is missing or broken, and generator registrations whose
    declared fields do not exist. Raises :class:`django.db.DatabaseError` when the database
    cannot be read."""
    found = []
    for registration in HandlerRegistration.objects.order_by("name", "pk"):
        status = class_status(registration.handler)
        if not status.usable:
            found.append(
                RegistrationProblem(
                    registration.pk,
                    registration.name,
                    registration.handler,
                    status.status,
                    status.problem,
                )
            )
    for generator in generator_registrations_with_fields():
        if generator.missing:
            registration = generator.registration
            names = ", ".join(generator.missing)
            found.append(
                RegistrationProblem(
                    registration.pk,
                    registration.name,
                    registration.handler,
                    "fields_missing",
                    f"it fills metadata fields that do not exist: {names}. Save the "
                    "registration again in Django admin, or use Create fields on the "
                    "console's Metadata page, to create them.",
                    generator.missing,
                )
            )
    return found


def extensions_report(
    *, agent_python: str | None = None, store_types: bool = True, database: bool = True
) -> ExtensionsReport:
    """Collect the report (see the module docstring)."""
    report = ExtensionsReport(extensions=handler_extensions())
    if store_types:
        found, problems = store_type_extensions(agent_python)
        report.extensions += found
        report.other_problems += problems
    else:
        report.notes.append("Store types not checked (--no-store-types).")
    if database:
        try:
            report.registrations = registration_problems()
        except DatabaseError as exc:
            report.notes.append(
                f"Registrations not checked: the database cannot be read ({exc}). "
                "Run `manage.py migrate`, or check DATABASE_URL."
            )
    return report


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as left-aligned columns."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
