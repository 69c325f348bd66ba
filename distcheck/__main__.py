"""``python -m distcheck``: the ``distcheck`` command, for when the script is not on PATH."""

import sys

from distcheck.checks.cli import main

sys.exit(main())
