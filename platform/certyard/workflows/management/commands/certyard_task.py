"""``manage.py certyard_task list`` and ``manage.py certyard_task run <name> [--json]``.

Runs the platform's scheduled work now, in this process, without waiting for its django-q2
schedule (the expiry scan runs once a day): while developing a handler, or after changing
a setting. The work is the same function the schedule runs; the schedule keeps its next
run. Exit code 1, with a message, for an unknown name or a task that fails or refuses.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from certyard.errors import ServiceError
from certyard.workflows.scheduled import (
    ScheduledTaskUnknown,
    scheduled_task_run,
    scheduled_task_states,
)


def _command_actor() -> str:
    """Who ran the command, as logs and results name them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        user = "unknown"
    return f"manage.py certyard_task ({user})"


class Command(BaseCommand):
    help = (
        "List the platform's scheduled tasks, or run one now: "
        "certyard_task list | certyard_task run <name> [--json]"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{list,run}")
        listing = actions.add_parser("list", help="the tasks, their schedules and next runs")
        listing.add_argument("--json", action="store_true", help="print JSON")
        run = actions.add_parser("run", help="run one task now, in this process")
        run.add_argument("name", help="the task's name, e.g. expiry-scan (see: list)")
        run.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            self._list(as_json=options["json"])
        else:
            self._run(options["name"], as_json=options["json"])

    def _list(self, *, as_json: bool) -> None:
        states = scheduled_task_states()
        if as_json:
            rows = [
                {
                    "name": state.task.name,
                    "label": state.task.label,
                    "schedule": state.task.schedule_name or None,
                    "schedule_label": state.schedule_label,
                    "next_run": state.next_run.isoformat() if state.next_run else None,
                    "events": list(state.task.events),
                    "description": state.task.description,
                }
                for state in states
            ]
            self.stdout.write(json.dumps(rows, indent=2))
            return
        width = max((len(state.task.name) for state in states), default=4)
        for state in states:
            when = state.schedule_label
            if state.next_run is not None:
                when += f", next {state.next_run.isoformat(timespec='seconds')}"
            events = ", ".join(state.task.events) or "no events"
            self.stdout.write(f"{state.task.name:<{width}}  {state.task.label} ({when}; {events})")

    def _run(self, name: str, *, as_json: bool) -> None:
        try:
            result = scheduled_task_run(name, actor=_command_actor())
        except ScheduledTaskUnknown as unknown:
            raise CommandError(unknown.message, returncode=1) from unknown
        except ServiceError as refused:
            raise CommandError(f"{name}: {refused.message}", returncode=1) from refused
        except Exception as exc:  # the traceback is in the log; say what failed
            raise CommandError(f"{name} failed: {exc}", returncode=1) from exc
        if as_json:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(
            f"{name}: done in {result['seconds']:.3f} s (run by {result['actor']})\n"
            f"{json.dumps(result['result'], indent=2)}"
        )
