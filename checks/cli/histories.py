"""Subcommand ``linearizable``: is a client history of any system linearizable?

Where it sits: ``checks/cli/main.py`` calls ``register`` to add the subcommand; the
file is read by ``checks.histories.formats``, the model comes from
``checks.histories.models`` (or the user's ``package.module:Class``), and the
search is ``checks.histories.linearizability.check_history``, run here on one
sub-history (one key of a map) at a time.  Bad input raises
``checks.params.UsageError`` (one line, exit 2).

    distcheck linearizable HISTORY --model M [--format F] [--initial JSON]
                           [--max-steps N] [--timeout S] [--json] [--html OUT.html]

Exit 0 when some order of the operations explains every result (verdict ``ok``);
1 when none does (``violated``: the operations no order explains are printed, with
their line numbers in the file) or when the search was cut short by ``--max-steps``
or ``--timeout`` (``unknown``).  ``--json`` prints one object: ``file``, ``format``,
``model``, ``verdict``, ``operations``, ``clients``, ``pending`` (operations that
never completed), ``failed`` (left out: they did not take effect), ``positions``
("lines" or "events": what ``call`` and ``ret`` count), ``sub_histories``,
``seconds``, ``message``, and ``offending`` (violated: the operations that no
order can place next) or ``order`` (ok: a witness linearization); each operation
as ``client``, ``call``, ``ret``, ``op``, ``result``.  ``--html OUT.html`` also
writes the timeline (``checks.histories.timeline``: lanes per client, the witness
or the longest explained prefix numbered, the offending operations highlighted),
before anything is printed, so a file that cannot be written is the one error line.

Sub-histories are checked smallest first in two rounds, each with a budget of
10,000 search steps and then of ``--max-steps``, so that a key that fails quickly
is found before another key's long search: the verdict is the same in any order
(linearizability is local), only the time differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distcheck.checks.histories.formats import FORMATS, History, read_history
from distcheck.checks.histories.linearizability import (
    DEFAULT_MAX_STEPS,
    HistoryTooLarge,
    Linearizability,
    Model,
    Operation,
    check_history,
)
from distcheck.checks.histories.models import MODELS, NO_INITIAL, SequentialModel, load_model
from distcheck.checks.histories.timeline import page as timeline_page
from distcheck.checks.inputs import InputError, JsonReader, printable
from distcheck.checks.params import UsageError, output_file, positive_int
from distcheck.checks.verdict import OK, UNKNOWN, VIOLATED

# The first round's budget for each sub-history; the second round has --max-steps.
FIRST_ROUND_STEPS = 10_000
# The deadline is read once per this many model steps (a clock read per step would
# cost more than the step).
_DEADLINE_EVERY = 2048


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


class _TimedOut(Exception):
    pass


class _OnePart:
    """The user's model on one sub-history: ``partition`` keeps it whole (it was split
    and checked already), and ``step`` watches the deadline."""

    def __init__(self, model: Model[Any], deadline: float | None) -> None:
        self.model = model
        self.deadline = deadline
        self.calls = 0
        if deadline is None:  # nothing to watch: the model's own step, without a call in between
            self.step = model.step  # type: ignore[method-assign]

    def init(self) -> Any:
        return self.model.init()

    def step(self, state: Any, op: Mapping[str, Any]) -> tuple[Any, Any]:
        if self.deadline is not None:
            self.calls += 1
            if self.calls % _DEADLINE_EVERY == 0 and time.monotonic() > self.deadline:
                raise _TimedOut
        return self.model.step(state, op)

    def partition(self, ops: Sequence[Operation]) -> list[list[Operation]]:
        return [list(ops)]


class _Outcome:
    def __init__(self, verdict: str, message: str, sub_histories: Sequence[Sequence[Operation]]) -> None:
        self.verdict = verdict
        self.message = message
        self.sub_histories = sub_histories
        self.parts = len(sub_histories)
        self.order: tuple[Operation, ...] = ()
        # Violated: the checker's account of the sub-history no order explains.
        self.failure: Linearizability | None = None


def check_parts(model: Model[Any], ops: Sequence[Operation], max_steps: int, timeout: float | None) -> _Outcome:
    """The verdict on ``ops``: each sub-history checked on its own, in a round of short
    searches and then one of searches up to ``max_steps`` each, stopping at the
    first sub-history that no order explains.  ``ValueError`` for operations the model refuses."""
    deadline = None if timeout is None else time.monotonic() + timeout
    parts = sorted(model.partition(ops), key=len)
    orders: dict[int, tuple[Operation, ...]] = {}
    undecided = list(range(len(parts)))
    budget = min(FIRST_ROUND_STEPS, max_steps)
    while True:
        still: list[int] = []
        for index in undecided:
            try:
                result = check_history(parts[index], _OnePart(model, deadline), max_steps=budget)
            except HistoryTooLarge:
                still.append(index)
                continue
            except _TimedOut:
                return _Outcome(UNKNOWN, f"the search took longer than --timeout {timeout:g} s", parts)
            if not result.ok:
                outcome = _Outcome(VIOLATED, result.message, parts)
                outcome.failure = result
                return outcome
            orders[index] = result.order or ()
        if not still:
            break
        if budget >= max_steps:
            sizes = ", ".join(str(len(parts[i])) for i in still)
            return _Outcome(
                UNKNOWN,
                f"the search exceeded --max-steps {max_steps:,} on {len(still)} sub-history(ies) "
                f"(of {sizes} operations) without an answer; every other one is linearizable",
                parts,
            )
        undecided = still
        budget = max_steps
    outcome = _Outcome(OK, _ok_message(ops, len(parts)), parts)
    outcome.order = merge_orders([orders[i] for i in range(len(parts))])
    return outcome


def _ok_message(ops: Sequence[Operation], parts: int) -> str:
    pending = sum(1 for o in ops if o.ret is None)
    never = f", {pending} of which never completed" if pending else ""
    return (
        f"linearizable: {len(ops)} operations{never}, in {parts} independent sub-histor{'y' if parts == 1 else 'ies'}"
    )


def merge_orders(orders: Sequence[Sequence[Operation]]) -> tuple[Operation, ...]:
    """One order of the whole history from each sub-history's: each operation at the
    latest invocation among itself and those before it in its own order.  That
    point lies inside the operation's interval, so sorting by it keeps each
    sub-history's order and real time across them."""
    points: list[tuple[int, int, int, Operation]] = []
    for part, order in enumerate(orders):
        latest = None
        for index, operation in enumerate(order):
            latest = operation.call if latest is None else max(latest, operation.call)
            points.append((latest, part, index, operation))
    points.sort(key=lambda p: p[:3])
    return tuple(p[3] for p in points)


def offending(outcome: _Outcome) -> list[Operation]:
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
        outcome = check_parts(model, history.operations, args.max_steps, args.timeout)
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


def _report(args: argparse.Namespace, history: History, outcome: _Outcome, seconds: float) -> dict[str, Any]:
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
        "message": outcome.message,
    }
    if outcome.verdict == VIOLATED:
        out["offending"] = [operation_json(o) for o in offending(outcome)]
    if outcome.verdict == OK:
        out["order"] = [operation_json(o) for o in outcome.order]
    if args.html:
        out["html"] = args.html
    return out


def _write_timeline(args: argparse.Namespace, history: History, outcome: _Outcome) -> None:
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


def _print_outcome(args: argparse.Namespace, history: History, outcome: _Outcome, seconds: float) -> None:
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
    print(
        f"model {printable(args.model)}; {len(ops)} operations of {clients}{left_out}, read as {history.format}; "
        f"{seconds:.2f} s"
    )
    if args.html:
        print(f"timeline: {printable(args.html)}")
