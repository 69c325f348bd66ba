"""The usage summary of every subcommand, made from the ``distcheck`` parser itself.

Where it sits: README.md's "Using it" block is this text (``tests/checks/test_cli_usage.py``
compares them), so the README cannot drift from the options the command takes.
Print it with ``python -m distcheck.checks.cli.usage``.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

WIDTH = 100


def _option(action: argparse.Action) -> str:
    if not action.option_strings:  # a positional argument
        return str(action.metavar or action.dest.upper())
    flag = max(action.option_strings, key=len)  # the long form
    if action.nargs == 0:  # a switch (store_true)
        return f"[{flag}]"
    if action.choices is not None:
        value = "|".join(str(c) for c in action.choices)
    else:
        value = str(action.metavar or action.dest.upper())
    if isinstance(action, argparse._AppendAction):
        flag = min(action.option_strings, key=len)  # -p reads better than --param here
        return f"[{flag} {value} ...]"
    return f"[{flag} {value}]"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            choices: dict[str, Any] = dict(action.choices)
            return choices
    return {}


def usage_text(parser: argparse.ArgumentParser) -> str:
    """One entry per subcommand: its name, positionals and every option, wrapped."""
    lines: list[str] = []
    for name, sub in subcommands(parser).items():
        words = [_option(a) for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        head = f"{parser.prog} {name} "
        lines += textwrap.wrap(
            " ".join(words),
            width=WIDTH,
            initial_indent=head,
            subsequent_indent=" " * len(head),
            break_on_hyphens=False,
            break_long_words=False,
        )
    return "\n".join(lines)


def main() -> None:
    from distcheck.checks.cli.main import build_parser

    print(usage_text(build_parser()))


if __name__ == "__main__":
    main()
