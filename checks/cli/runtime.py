"""Subcommands for implementations: ``distcheck simulate`` and ``distcheck validate``.

Where it sits: ``checks/cli.py`` calls ``register`` to add these subcommands; each
sets ``handler`` (a function of the parsed arguments returning the exit code) and
raises ``checks.params.UsageError`` on bad input.  ``simulate`` runs
``checks.conformance.simulate`` with a protocol's wiring (``checks/conformance/wiring/``) over
many seeds; ``validate`` checks a trace file with ``checks.validate`` (or, for a
replicated log, ``checks.paxos_log``).

    distcheck simulate SPEC [-p NAME=VALUE ...] [--seed N] [--runs R]
                       [--strategy random|pct] [--pct-depth D]
                       [--faults crash,drop,duplicate,reorder,partition] [--steps K]
                       [--variant V] [--trace-out FILE] [--json]
    distcheck validate SPEC TRACE [--split KEY] [--max-states N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from distcheck.checks.conformance.simulate import STRATEGIES, SimOptions, SimOutcome, simulate
from distcheck.checks.conformance.validate import Validation, action_text, trace_events, validate_trace
from distcheck.checks.conformance.wiring import WIRINGS, find_wiring
from distcheck.checks.conformance.wiring.paxos_log import (
    LogTraceError,
    log_acceptors,
    project,
    validate_decree,
    validate_log,
)
from distcheck.checks.params import UsageError, build_spec
from distcheck.checks.traces import trace as trace_file
from distcheck.checks.traces.compare import change_text
from distcheck.checks.traces.render import state_table
from distcheck.impl.runtime import FaultPolicy
from distcheck.spec.paxos import Paxos


def _fault_policy(text: str | None) -> FaultPolicy:
    if not text:
        return FaultPolicy()
    try:
        return FaultPolicy.parse(text)
    except ValueError as exc:
        raise UsageError(f"--faults: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    wiring = find_wiring(args.spec)
    entry, params, spec = build_spec(args.spec, [*wiring.default_params, *args.param])
    if args.variant is not None and args.variant not in wiring.variants:
        allowed = ", ".join(wiring.variants) or "none"
        raise UsageError(f"unknown implementation variant {args.variant!r} for {entry.name}; allowed: {allowed}")
    steps = wiring.default_steps if args.steps is None else args.steps
    faults = _fault_policy(args.faults)
    started = time.perf_counter()
    passed = 0
    failure: tuple[int, SimOutcome] | None = None
    last: SimOutcome | None = None
    for seed in range(args.seed, args.seed + args.runs):
        options = SimOptions(seed, args.strategy, faults, steps, args.pct_depth, args.variant)
        last = simulate(spec, wiring, params, options)
        if not last.ok:
            failure = (seed, last)
            break
        passed += 1
    seconds = time.perf_counter() - started
    assert last is not None
    shown = failure[1] if failure else last
    if args.trace_out:
        Path(args.trace_out).write_text(shown.run.trace.text())
    replay = (
        f"distcheck simulate {entry.name}"
        + "".join(f" -p {k}={v}" for k, v in params.items())
        + f" --seed {failure[0] if failure else args.seed} --strategy {args.strategy}"
        + (f" --pct-depth {args.pct_depth}" if args.strategy == "pct" else "")
        + (f" --faults {','.join(faults.names())}" if faults.names() else "")
        + f" --steps {steps}"
        + (f" --variant {args.variant}" if args.variant else "")
    )
    if args.json:
        out: dict[str, Any] = {
            "spec": entry.name,
            "params": params,
            "variant": args.variant,
            "strategy": args.strategy,
            "faults": faults.names(),
            "seeds": [args.seed, args.seed + args.runs - 1],
            "passed": passed,
            "failed": 0 if failure is None else 1,
            "seconds": round(seconds, 3),
            "result": "ok" if failure is None else failure[1].status,
        }
        if failure is not None:
            seed, outcome = failure
            out["failure"] = {
                "seed": seed,
                "status": outcome.status,
                "message": outcome.message,
                "steps": outcome.run.steps,
                "choices": outcome.run.indices,
                "schedule": outcome.run.render().splitlines(),
                "trace": [json.loads(line) for line in outcome.run.trace.lines()],
                "validation": validation_json(outcome.validation),
                "replay": replay,
            }
        print(json.dumps(out, indent=2))
        return 0 if failure is None else 1
    label = f"{entry.name}" + "".join(f" {k}={v}" for k, v in params.items())
    label += f" strategy={args.strategy}" + (f" faults={','.join(faults.names())}" if faults.names() else "")
    label += f" variant={args.variant}" if args.variant else ""
    if failure is None:
        print(
            f"{label}: ok: {passed} schedule(s) passed (seeds {args.seed}..{args.seed + args.runs - 1}), "
            f"invariants checked after every step and every trace valid, {seconds:.2f} s"
        )
        return 0
    seed, outcome = failure
    print(f"{label}: {outcome.status} with seed {seed} after {passed} passing schedule(s)\n")
    print(outcome.run.render(compact=True))
    if not outcome.validation.ok:
        print()
        print(validation_text(outcome.validation, "the run's trace"))
    print(f"\nreplay: {replay}")
    return 1


# ----------------------------------------------------------------- validate


def validation_json(v: Validation) -> dict[str, Any]:
    out: dict[str, Any] = {"result": v.outcome, "events": v.events, "states_explored": v.states_explored}
    if v.message:
        out["message"] = v.message
    if v.mismatch is not None:
        m = v.mismatch
        out["mismatch"] = {
            "step": m.step,
            "line": m.step + 2,
            "event": dict(m.event),
            "reason": m.reason,
            "kind": m.kind,
            "rule": None if m.rule is None else {"name": m.rule, "statement": m.statement},
            "diff": [dict(c) for c in m.diff],
            "group": m.group,
            "possible_states": [state_table(s).splitlines() for s in m.possible[:10]],
            "possible_count": len(m.possible),
            "expected": [dict(o) for o in m.expected],
        }
    return out


def validation_text(v: Validation, what: str) -> str:
    if v.ok:
        return f"{what}: ok, {v.message}"
    if v.mismatch is None:
        return f"{what}: no answer: {v.message}"
    m = v.mismatch
    lines = [f"{what}: step {m.step} (line {m.step + 2}) is not explained", f"  {m.reason}", ""]
    if m.rule is not None:
        lines += [f"  the rule: {m.rule}" + (f": {m.statement}" if m.statement else ""), ""]
    if m.diff:
        lines.append("  the recorded state differs from the spec's (expected vs recorded, differing parts only):")
        lines += [f"    {change_text(c)}" for c in m.diff]
        lines.append("")
    lines.append(f"  the spec state(s) possible just before it ({len(m.possible)}):")
    for state in m.possible[:5]:
        lines += ["    " + line for line in state_table(state).splitlines()]
        lines.append("")
    if len(m.possible) > 5:
        lines.append(f"    ... and {len(m.possible) - 5} more")
    if m.expected:
        lines.append("  what the spec could have logged instead:")
        lines += [f"    {o.get('actor')} {action_text(o.get('action'))}" for o in m.expected[:12]]
    else:
        lines.append("  the spec can take no further step there")
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        recorded = trace_file.read(args.trace)
    except trace_file.TraceFormatError as exc:
        raise UsageError(f"malformed trace {exc}") from None
    header = recorded.header
    if header.spec != args.spec:
        raise UsageError(f"{args.trace} is a trace of {header.spec!r}, not {args.spec!r}")
    raw = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in header.params.items()]
    try:
        entry, params, spec = build_spec(args.spec, raw, header.variant)
    except UsageError as exc:
        raise UsageError(f"{args.trace} line 1: {exc}") from None
    if args.max_states < 1:
        raise UsageError(f"--max-states must be positive, got {args.max_states}")
    if isinstance(spec, Paxos) and args.split != "slot" and any("from_slot" in s.extra for s in recorded.steps):
        raise UsageError(
            f"{args.trace} is a replicated log (its events carry from_slot); validate it with --split slot"
        )
    if isinstance(spec, Paxos) and args.split == "slot":
        # A replicated log: each slot against single-decree Paxos (checks/conformance/wiring/paxos_log.py).
        events = trace_events(recorded)
        try:
            acceptors = log_acceptors(events, spec.config.acceptors)
            project(events, acceptors)  # a malformed event is bad input, not a mismatch
        except LogTraceError as exc:
            raise UsageError(f"{args.trace}: {exc}") from None
        result = validate_log(events, acceptors)
    elif isinstance(spec, Paxos):  # the same actor naming as a replicated log (paxos_log.validate_decree)
        result = validate_decree(spec, recorded, split_key=args.split, max_states=args.max_states)
    else:
        result = validate_trace(spec, recorded, split_key=args.split, max_states=args.max_states)
    if result.mismatch is not None and result.mismatch.bad_input:
        # The event is not in the spec's vocabulary at all: bad input, one line.
        m = result.mismatch
        raise UsageError(f"{args.trace} line {m.step + 2}: {m.reason}")
    if result.outcome == "too_large":
        raise UsageError(f"{args.trace}: {result.message} (raise --max-states, or log more of what happens)")
    if args.json:
        out = {"spec": entry.name, "params": params, "variant": header.variant, "trace": str(args.trace)}
        out.update(validation_json(result))
        print(json.dumps(out, indent=2))
    else:
        label = entry.name + "".join(f" {k}={v}" for k, v in params.items())
        label += f" variant={header.variant}" if header.variant else ""
        print(validation_text(result, f"{args.trace} against {label}"))
    return 0 if result.ok else 1


# ----------------------------------------------------------------- register


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the ``distcheck`` parser."""
    p = sub.add_parser("simulate", help="run our implementation of a spec under the controlled scheduler")
    p.add_argument("spec", help=f"spec name; implemented: {', '.join(WIRINGS)}")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a parameter")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the first run (default 0)")
    p.add_argument("--runs", type=_int_at_least(1), default=1, help="run seeds SEED..SEED+RUNS-1 (default 1)")
    p.add_argument("--strategy", choices=STRATEGIES, default="random", help="where choices come from")
    p.add_argument("--pct-depth", type=_int_at_least(1), default=3, help="PCT bug depth d (default 3)")
    p.add_argument(
        "--faults", default="", help="comma-separated: crash, drop, duplicate, reorder, partition (default none)"
    )
    p.add_argument(
        "--steps",
        type=_int_at_least(10),
        default=None,
        help="most scheduler steps per run; faults only in the first half (default 2000; paxos 5000)",
    )
    p.add_argument("--variant", help="a deliberately broken implementation variant")
    p.add_argument("--trace-out", metavar="FILE", help="write the (first failing, else last) run's trace")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_simulate)

    v = sub.add_parser("validate", help="check that a recorded trace is a behaviour of a spec")
    v.add_argument("spec", help="spec name (must match the trace's header)")
    v.add_argument("trace", help="trace file (JSON Lines, docs/trace-format.md)")
    v.add_argument(
        "--split",
        metavar="KEY",
        help="validate each value of this event key on its own (e.g. txn); for paxos, "
        "--split slot validates a replicated log slot by slot (docs/paxos.md)",
    )
    v.add_argument("--max-states", type=int, default=200_000, help="give up beyond this many possible states")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(handler=cmd_validate)


__all__ = ["register"]
