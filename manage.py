#!/usr/bin/env python3
"""Django's command-line utility for Certyard."""

import os
import sys
from pathlib import Path

# platform/ is a source folder, not a package: put it first so `certyard` imports,
# without ever shadowing the standard library's `platform` module.
sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "certyard.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
