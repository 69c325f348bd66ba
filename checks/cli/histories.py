"""Subcommand ``linearizable``: is a client history of any system linearizable?

Where it sits: ``checks/cli/main.py`` calls ``register`` to add the subcommand; the
file is read by ``checks.histories.formats``, the model comes from
``checks.histories.models`` (or the user's ``package.module:Class``), and the
search is ``checks.histories.parts.check_parts`` (each sub-history, one key of a
map, on its own, on every core for a large history).  Bad input raises
``checks.inputs.UsageError`` (one line, exit 2).  This module imports none of the
spec registry: ``checks.cli.main`` gives ``linearizable`` a parser of its own, so
that the command starts in a tenth of the time the others take to import.

    distcheck linearizable HISTORY --model M [--format F] [--initial JSON]
                           [--max-steps N] [--timeout S] [--workers N] [--json] [--html OUT.html]

Exit 0 when some order of the operations explains every result (verdict ``ok``);
1 when none does (``violated``: the operations no order explains are printed, with
their line numbers in the file) or when the search was cut short by ``--max-steps``
or ``--timeout`` (``unknown``).  ``--json`` prints one object: ``file``, ``format``,
``model``, ``verdict``, ``operations``, ``clients``, ``pending`` (operations that
never completed), ``failed`` (left out: they did not take effect), ``positions``
("lines" or "events": what ``call`` and ``ret`` count), ``sub_histories``,
``seconds``, ``steps`` (the search's work: the (placed operations, state) pairs it
reached), ``workers`` (the processes that searched), ``message``, and ``offending``
(violated: the operations that no order can place next) or ``order`` (ok: a
witness linearization); each operation
as ``client``, ``call``, ``ret``, ``op``, ``result``.  ``--html OUT.html`` also
writes the timeline (``checks.histories.timeline``: lanes per client, the witness
or the longest explained prefix numbered, the offending operations highlighted),
before anything is printed, so a file that cannot be written is the one error line.

Sub-histories are checked smallest first in two rounds, each with a budget of
10,000 search steps and then of ``--max-steps``, so that a key that fails quickly
is found before another key's long search: the verdict is the same in any order
(linearizability is local), only the time differs.  ``--workers N`` (default: every
core) searches them on N processes when the history is large enough to pay for
starting them; the verdict, the report and the steps are those of one process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from distcheck.checks.histories.formats import FORMATS, History, read_history
from distcheck.checks.histories.linearizability import DEFAULT_MAX_STEPS, Operation
from distcheck.checks.histories.models import MODELS, NO_INITIAL, SequentialModel, load_model
from distcheck.checks.histories.parts import Outcome, check_parts, default_workers
from distcheck.checks.histories.timeline import page as timeline_page
from distcheck.checks.inputs import InputError, JsonReader, UsageError, output_file, printable
from distcheck.checks.verdict import OK, VIOLATED


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``linearizable`` to the ``distcheck`` parser."""
    p = sub.add_parser(
        "linearizable",
        help="check a client history (JSON Lines, Jepsen EDN, Porcupine/etcd logs) for linearizability",
        description="Models: "
        + "; ".join(f"{name} ({model.SUMMARY})" for name, model in MODELS.items())
        + "; or package.module:Class, a model of your own (docs/histories.md).",
    )
    p.add_argument("history", metavar="HISTORY", help="the history file")
    p.add_argument(
        "--model",
        required=True,
        metavar="M",
        help=f"the sequential model: {', '.join(MODELS)}, or package.module:Class",
    )
    p.add_argument(
        "--format",
        choices=("auto", *FORMATS),
        default="auto",
        help="the file's format (default auto: from its first line)",
    )
    p.add_argument(
        "--initial",
        metavar="JSON",
        help="the value before any write, as JSON (default: null, a counter 0; Porcupine's key-value logs: '\"\"')",
    )
    p.add_argument(
        "--max-steps",
        type=positive_int,
        default=DEFAULT_MAX_STEPS,
        metavar="N",
        help=f"give up on a sub-history after N search steps (default {DEFAULT_MAX_STEPS:,})",
    )
    p.add_argument("--timeout", type=_positive_seconds, metavar="S", help="give up after S seconds")
    p.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="search sub-histories on N processes (default: every core; 1: this one)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--html",
        type=output_file,
        metavar="OUT.html",
        help="also write a self-contained HTML timeline of the history and the verdict",
    )
    p.set_defaults(handler=cmd_linearizable)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (``checks.params.positive_int``'s words;
    that module imports the spec registry, which this command does without)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def offending(outcome: Outcome) -> list[Operation]:
    """The operations no order can place next (none unless the verdict is violated)."""
    return [] if outcome.failure is None else [s.operation for s in outcome.failure.stuck]


def operation_json(operation: Operation) -> dict[str, Any]:
    return {
        "client": operation.client,
        "call": operation.call,
        "ret": operation.ret,
        "op": dict(operation.op),
        "result": operation.result,
    }


def cmd_linearizable(args: argparse.Namespace) -> int:
    initial: Any = NO_INITIAL
    if args.initial is not None:
        try:
            initial = JsonReader().parse(args.initial)
        except ValueError as exc:
            raise UsageError(f"--initial {args.initial!r} is not JSON: {exc}") from None
    # A model of the user's own is found on the import path, or in the current folder.
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.append(here)
    try:
        model = load_model(args.model, initial)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if added:
            sys.path.remove(here)
    started = time.perf_counter()
    try:
        history = read_history(args.history, model, args.format)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    try:
        workers = default_workers() if args.workers is None else args.workers
        outcome = check_parts(model, history.operations, args.max_steps, args.timeout, workers)
    except ValueError as exc:
        numbers = " (positions are event numbers: the file has several events a line)"
        raise UsageError(f"{args.history}: {exc}{numbers if history.positions == 'events' else ''}") from None
    except Exception as exc:
        if isinstance(model, SequentialModel):
            raise  # ours: a bug in distcheck (exit 3)
        raise UsageError(f"the model {args.model} raised {type(exc).__name__}: {exc}") from None
    seconds = time.perf_counter() - started
    if args.html:
        _write_timeline(args, history, outcome)
    if args.json:
        print(json.dumps(_report(args, history, outcome, seconds), indent=2, default=repr))
    else:
        _print_outcome(args, history, outcome, seconds)
    return 0 if outcome.verdict == OK else 1


def _report(args: argparse.Namespace, history: History, outcome: Outcome, seconds: float) -> dict[str, Any]:
    ops = history.operations
    out: dict[str, Any] = {
        "file": args.history,
        "format": history.format,
        "model": args.model,
        "verdict": outcome.verdict,
        "operations": len(ops),
        "clients": history.clients,
        "pending": sum(1 for o in ops if o.ret is None),
        "failed": history.failed,
        "positions": history.positions,
        "sub_histories": outcome.parts,
        "seconds": round(seconds, 3),
        "steps": outcome.steps,
        "workers": outcome.workers,
        "message": outcome.message,
    }
    if outcome.verdict == VIOLATED:
        out["offending"] = [operation_json(o) for o in offending(outcome)]
    if outcome.verdict == OK:
        out["order"] = [operation_json(o) for o in outcome.order]
    if args.html:
        out["html"] = args.html
    return out


def _write_timeline(args: argparse.Namespace, history: History, outcome: Outcome) -> None:
    failure = outcome.failure
    text = timeline_page(
        title=Path(args.history).name,
        operations=history.operations,
        sub_histories=outcome.sub_histories,
        verdict=outcome.verdict,
        message=outcome.message,
        order=outcome.order if failure is None else failure.prefix,
        stuck=() if failure is None else failure.stuck,
        failing=() if failure is None else failure.sub_history,
        positions=history.positions,
    )
    try:
        Path(args.html).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.html}: {exc.strerror or exc}") from None


def _print_outcome(args: argparse.Namespace, history: History, outcome: Outcome, seconds: float) -> None:
    name = printable(args.history)
    ops = history.operations
    clients = f"{history.clients} client{'s' if history.clients != 1 else ''}"
    left_out = f" ({history.failed} more failed: left out)" if history.failed else ""
    print(f"{name}: {outcome.verdict}")
    print(printable(outcome.message))
    if outcome.verdict == VIOLATED:
        print("operations that no order can place next:")
        for operation in offending(outcome):
            print(f"  {printable(str(operation))}")
        where = (
            "line numbers in the file"
            if history.positions == "lines"
            else "event numbers (the file has several a line)"
        )
        print(f"(call and ret are {where})")
    on = f" on {outcome.workers} processes" if outcome.workers > 1 else ""
    print(
        f"model {printable(args.model)}; {len(ops)} operations of {clients}{left_out}, read as {history.format}; "
        f"{outcome.steps:,} search step{'s' if outcome.steps != 1 else ''}{on}; {seconds:.2f} s"
    )
    if args.html:
        print(f"timeline: {printable(args.html)}")
