"""``manage.py certyard_extensions list|check [--json]``: installed extensions, their problems.

``list`` shows every platform handler (``certyard.handlers`` entry points) and every agent
store type (``certyard.store_types``, checked by the agent itself in a subprocess), with its
kind, class, package, version and problems, then the registrations that cannot work as
configured; it exits 0. ``check`` prints each problem as a sentence and exits 1 when there
is one, 0 when every extension is fine: run it after installing a package, or in CI.
See :mod:`certyard.console.extensions` for what is checked.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certyard.console.extensions import ExtensionsReport, extensions_report, table


class Command(BaseCommand):
    help = (
        "List the installed extensions (handlers and store types), or check them "
        "(exit 1 when one is broken)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "check"])
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--agent-python",
            default=None,
            metavar="PATH",
            help="the Python of the environment the agent and its store types are "
            "installed in (default: this one)",
        )
        parser.add_argument(
            "--no-store-types", action="store_true", help="do not check the agent's store types"
        )
        parser.add_argument(
            "--no-database", action="store_true", help="do not check the registrations"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = extensions_report(
            agent_python=options["agent_python"],
            store_types=not options["no_store_types"],
            database=not options["no_database"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(report.to_json(), indent=2))
        elif options["action"] == "list":
            self._list(report)
        else:
            self._check(report)
        if options["action"] == "check" and not report.ok:
            count = len(report.problems)
            raise CommandError(f"{count} problem{'s' if count != 1 else ''} found", returncode=1)

    def _list(self, report: ExtensionsReport) -> None:
        for side, title in (
            ("platform", "Platform handlers"),
            ("agent", "Agent store types"),
        ):
            extensions = [e for e in report.extensions if e.side == side]
            self.stdout.write(f"{title} ({len(extensions)}):")
            rows = [("NAME", "KIND", "PACKAGE", "VERSION", "CLASS", "STATUS")]
            rows += [
                (
                    e.name,
                    e.kind or "?",
                    e.package or "-",
                    e.version or "-",
                    e.target,
                    "BROKEN" if e.problems else "ok",
                )
                for e in extensions
            ]
            for line in table(rows):
                self.stdout.write(f"  {line}")
            for extension in extensions:
                for problem in extension.problems:
                    self.stdout.write(f"  ! {extension.name}: {problem}")
            self.stdout.write("")
        if report.registrations is not None:
            self.stdout.write(f"Registrations that cannot work ({len(report.registrations)}):")
            for item in report.registrations:
                self.stdout.write(f"  ! {item.sentence()}")
            self.stdout.write("")
        for line in report.other_problems + report.notes:
            self.stdout.write(line)

    def _check(self, report: ExtensionsReport) -> None:
        for note in report.notes:
            self.stdout.write(note)
        for problem in report.problems:
            self.stdout.write(problem)
        if report.ok:
            handlers = sum(1 for e in report.extensions if e.side == "platform")
            stores = len(report.extensions) - handlers
            self.stdout.write(
                f"OK: {handlers} handler classes and {stores} store types, no problem found."
            )
