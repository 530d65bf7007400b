"""``python -m orchestrators.agent`` runs the agent's command line."""

import sys

from orchestrators.agent.cli import main

sys.exit(main())
