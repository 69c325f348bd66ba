"""``python -m distcheck.checks.cli``: the same as the ``distcheck`` command."""

import sys

from distcheck.checks.cli.main import main

sys.exit(main())
