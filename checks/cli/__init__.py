"""The ``distcheck`` command: ``main`` parses and dispatches; ``trace``, ``runtime``
and ``prove`` hold the subcommands on traces, on implementations and on proofs."""

from distcheck.checks.cli.main import main

__all__ = ["main"]
