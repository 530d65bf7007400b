"""Certyard script example (Python): note each event and keep early expiry warnings quiet.

Register it with the built-in script handler ("certyard.script"): interpreter ``python``,
script ``notify.py``, and arguments, one per line, for example::

    /var/log/certyard/notices.log
    --quiet-above=30

It reads the event, as JSON, from standard input. It prints one line about it (kept on the
run) and appends the same line to the log file given as first argument, if any. For a
``certificate.expiring`` warning whose threshold is above ``--quiet-above`` days, it asks
the email handlers that run after it to send nothing, by writing ``{"suppress_email":
true}`` to the file named by ``CERTYARD_CONTEXT_OUT``.

Exit code 0 is success; anything else fails the run, with the end of standard error as
its message. Standard library only: the script runs with the platform's Python.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def notice(event: dict) -> str:
    """One line about the event, as a person reads it."""
    data = event.get("data") or {}
    line = f"{event['occurred_at']} {event['kind']} {event['subject_label']}"
    if event["kind"] == "certificate.expiring":
        when = "has expired" if data.get("expired") else f"expires within {data.get('days')} days"
        line += f": {when} ({data.get('not_after')}), in {data.get('store')} as {data.get('alias')}"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log_file", nargs="?", help="append the notice to this file")
    parser.add_argument("--quiet-above", type=int, help="suppress email above this many days")
    args = parser.parse_args()

    try:
        event = json.load(sys.stdin)
    except ValueError as exc:
        print(f"the event on standard input is not JSON: {exc}", file=sys.stderr)
        return 2

    line = notice(event)
    print(line)
    if args.log_file:
        with open(args.log_file, "a", encoding="utf-8") as log:
            log.write(line + "\n")

    days = (event.get("data") or {}).get("days")
    if (
        event["kind"] == "certificate.expiring"
        and args.quiet_above is not None
        and isinstance(days, int)
        and days > args.quiet_above
    ):
        with open(os.environ["CERTYARD_CONTEXT_OUT"], "w", encoding="utf-8") as out:
            json.dump({"suppress_email": True}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
