"""An event handler: keep a line per expiration warning in an audit file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from handlers.base import EventContext, EventHandler, HandlerError, HandlerResult
from handlers.parameters import Parameter, ParameterError, ParameterType

# The event's details copied to each line (see the certificate.expiring row of the guide).
FIELDS = ("common_name", "sha256", "days", "expired", "not_after", "store", "alias")


class ExpiryAuditLog(EventHandler):
    """Appends one JSON line per expiration warning to a file on the worker's host.

    Each line holds the event's ``event_id`` and ``occurred_at`` and the certificate's
    ``common_name``, ``sha256``, ``days`` (the threshold crossed, 0 once expired),
    ``expired``, ``not_after``, ``store`` and ``alias``. A retried event can appear twice:
    readers drop repeats by ``event_id``.

    - **path**: the file, an absolute path; its folder must exist.
    - **quiet_above_days** (optional): for a warning whose threshold is above this many
      days (the 90-day one when set to 30), ask the built-in email handlers that run after
      this one (higher order) to send nothing. The file keeps the early warnings; people
      are mailed only the late ones.

    Example: path ``/var/log/certyard/expiring.jsonl``, quiet above days ``30``.
    """

    label = "Expiry audit file (example)"
    events = ("certificate.expiring",)
    parameters = (
        Parameter("path", help="The JSON Lines file to append to (absolute).", required=True),
        Parameter(
            "quiet_above_days",
            ParameterType.INTEGER,
            help="Suppress the emails that follow for thresholds above this many days.",
            minimum=0,
        ),
    )

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        path = Path(config["path"])
        if not path.is_absolute():
            raise ParameterError({"path": "must be an absolute path"})
        if not path.parent.is_dir():
            raise ParameterError({"path": f"the folder {path.parent} does not exist"})

    def handle(self, event: EventContext) -> HandlerResult:
        line = {"event_id": event.event_id, "occurred_at": event.occurred_at}
        line.update({name: event.data.get(name) for name in FIELDS})
        path = Path(self.config["path"])
        try:
            with path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(line, sort_keys=True) + "\n")
        except (FileNotFoundError, PermissionError) as exc:
            # The folder vanished or is not ours: retrying will not help, fix the setup.
            raise HandlerError(f"cannot write {path}: {exc.strerror}", permanent=True) from exc
        except OSError as exc:  # a full disk, say: worth another try later
            raise HandlerError(f"cannot write {path}: {exc.strerror}") from exc

        updates = {}
        quiet_above = self.config.get("quiet_above_days")
        days = event.data.get("days")
        if quiet_above is not None and isinstance(days, int) and days > quiet_above:
            updates["suppress_email"] = True
        return HandlerResult(
            message=f"logged {event.subject_label} ({days} days)",
            output={"path": str(path)},
            context_updates=updates,
        )
