"""A deep schemathesis run over both APIs, with figures: is the schema still the truth?

Runs tests/certyard/api/test_api_schemathesis.py (every operation of the people's API and the
agent API, in-process on a test database, every check schemathesis ships, the example,
coverage and fuzzing phases per operation, then the stateful phase along the schema's
links) with many more examples than `make test` uses, and prints what it did: operations,
calls by phase, stateful scenarios, answers by status, server errors, and the failures by
check (distinct check and operation pairs). It exits non-zero when anything failed.

Run: .venv/bin/python benchmarks/schemathesis_deep.py [--examples 100] [--stateful 200]
       [--random]   (new cases every run, instead of the same derandomized ones)
       [--postgres URL]   (run on PostgreSQL instead of SQLite)
Or: make schemathesis-deep
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_FILE = "tests/certyard/api/test_api_schemathesis.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="per operation and phase")
    parser.add_argument("--stateful", type=int, default=200, help="stateful scenarios")
    parser.add_argument("--random", action="store_true", help="new cases every run")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL database URL")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        figures_path = Path(tmp) / "figures.json"
        env = {
            **os.environ,
            "CERTYARD_SCHEMATHESIS_EXAMPLES": str(args.examples),
            "CERTYARD_SCHEMATHESIS_STATEFUL": str(args.stateful),
            "CERTYARD_SCHEMATHESIS_FIGURES": str(figures_path),
        }
        if args.random:
            env["CERTYARD_SCHEMATHESIS_RANDOM"] = "1"
        if args.postgres:
            env["DATABASE_URL"] = args.postgres
        started = time.monotonic()
        # One pytest process: the figures accumulate in the test module as it runs.
        outcome = subprocess.run(
            [sys.executable, "-m", "pytest", TEST_FILE, "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
            check=False,
        )
        elapsed = time.monotonic() - started
        if not figures_path.exists():
            print("no figures were written: the run failed before any call", file=sys.stderr)
            return outcome.returncode or 1
        figures = json.loads(figures_path.read_text())

    statuses = {int(k): v for k, v in figures["statuses"].items()}
    calls = sum(figures["calls_by_phase"].values())
    server_errors = sum(v for k, v in statuses.items() if k >= 500)
    by_check = Counter(check for check, _operation in figures["failures"])
    print()
    print(
        f"schemathesis deep run: {args.examples} examples per operation and phase, "
        f"{args.stateful} stateful scenarios, {'random' if args.random else 'derandomized'}, "
        f"{elapsed:.0f} s"
    )
    print(f"  operations called:     {len(figures['operations'])}")
    print(f"  calls:                 {calls}")
    for phase, count in sorted(figures["calls_by_phase"].items()):
        print(f"    {phase:<20} {count}")
    print(f"  stateful scenarios:    {figures['stateful_scenarios']}")
    print(
        "  answers by status:     "
        + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
    )
    print(f"  server errors (5xx):   {server_errors}")
    print(f"  failures (distinct check and operation): {len(figures['failures'])}")
    for check, count in sorted(by_check.items()):
        print(f"    {check:<45} {count}")
    for check, operation in figures["failures"]:
        print(f"      {check}: {operation}")
    return 0 if outcome.returncode == 0 and not figures["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
