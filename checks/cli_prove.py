"""Subcommand prove: z3 proof obligations of a spec (the z3 issue).

Where it sits: ``checks/cli.py`` calls ``register`` to add this module's subcommands;
each subcommand sets ``handler`` (a function of the parsed arguments returning the
exit code) and raises ``checks.params.UsageError`` on bad input.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the ``distcheck`` parser."""
