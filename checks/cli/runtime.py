"""Subcommands for implementations: ``distcheck simulate`` and ``distcheck validate``.

Where it sits: ``checks/cli.py`` calls ``register`` to add these subcommands; each
sets ``handler`` (a function of the parsed arguments returning the exit code) and
raises ``checks.params.UsageError`` on bad input.  ``simulate`` runs
``checks.conformance.simulate`` with a protocol's wiring (``checks/conformance/wiring/``) over
many seeds; ``validate`` checks a trace file with ``checks.conformance.validate``, or
the way the protocol's wiring says (``Wiring.validate_file``, e.g. a replicated log
slot by slot).  Neither names a protocol: they ask the registry and the wiring.

    distcheck simulate SPEC|cap [-p NAME=VALUE ...] [--seed N] [--runs R]
                       [--strategy random|pct] [--pct-depth D]
                       [--faults crash,drop,duplicate,reorder,partition] [--steps K]
                       [--service NAME] [--variant V] [--trace-out FILE] [--json]
    distcheck validate SPEC TRACE [--split KEY] [--max-states N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from distcheck.checks.conformance.simulate import STRATEGIES, SimOptions, SimOutcome, Wiring, simulate
from distcheck.checks.conformance.validate import Validation, action_text, validate_trace
from distcheck.checks.conformance.wiring import DEMONSTRATIONS, SERVICES, WIRINGS, find_wiring
from distcheck.checks.histories.export import write_history
from distcheck.checks.params import UsageError, build_spec, output_file
from distcheck.checks.traces import trace as trace_file
from distcheck.checks.traces.compare import change_text
from distcheck.checks.traces.render import plural, state_table
from distcheck.checks.verdict import UNKNOWN
from distcheck.impl.runtime import FaultPolicy


def _fault_policy(text: str | None) -> FaultPolicy:
    if not text:
        return FaultPolicy()
    try:
        return FaultPolicy.parse(text)
    except ValueError as exc:
        raise UsageError(f"--faults: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.spec in DEMONSTRATIONS:
        return cmd_demonstration(args)
    wiring = find_wiring(args.spec, args.service)
    # the wiring's defaults, except those the command line sets
    given = {item.partition("=")[0].strip() for item in args.param}
    defaults = [item for item in wiring.default_params if item.partition("=")[0] not in given]
    entry, params, spec = build_spec(args.spec, [*defaults, *args.param])
    if args.variant is not None and args.variant not in wiring.variants:
        allowed = ", ".join(wiring.variants) or "none"
        raise UsageError(f"unknown implementation variant {args.variant!r} for {entry.name}; allowed: {allowed}")
    steps = wiring.default_steps if args.steps is None else args.steps
    faults = _fault_policy(args.faults)
    if args.history_out and not _keeps_history(wiring):
        kept = ", ".join(name for name, w in WIRINGS.items() if _keeps_history(w))
        raise UsageError(f"simulate {entry.name} keeps no client history; --history-out is for {kept}")
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
    written: Path | None = None
    if args.trace_out or failure is not None:
        # Every counterexample is written (README); a passing run only when asked.
        written = Path(args.trace_out) if args.trace_out else _default_trace_path(entry.name, args.variant, failure)
        try:
            written.parent.mkdir(parents=True, exist_ok=True)  # only ever our own default folder
            written.write_text(shown.run.trace.text(), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write the trace to {written}: {exc.strerror or exc}") from None
    history_written: tuple[Path, int] | None = None
    if args.history_out and shown.history is not None:
        path = Path(args.history_out)
        try:
            history_written = (path, write_history(shown.history, path))
        except OSError as exc:
            raise UsageError(f"cannot write the history to {path}: {exc.strerror or exc}") from None
    replay = (
        f"distcheck simulate {entry.name}"
        + "".join(f" -p {k}={v}" for k, v in params.items())
        + f" --seed {failure[0] if failure else args.seed} --strategy {args.strategy}"
        + (f" --pct-depth {args.pct_depth}" if args.strategy == "pct" else "")
        + (f" --faults {','.join(faults.names())}" if faults.names() else "")
        + f" --steps {steps}"
        + (f" --service {args.service}" if args.service else "")
        + (f" --variant {args.variant}" if args.variant else "")
    )
    if args.json:
        out: dict[str, Any] = {
            "spec": entry.name,
            "params": params,
            "variant": args.variant,
            "service": args.service or None,
            "strategy": args.strategy,
            "faults": faults.names(),
            "seeds": [args.seed, args.seed + args.runs - 1],
            "passed": passed,
            "failed": 0 if failure is None else 1,
            "seconds": round(seconds, 3),
            "verdict": "ok" if failure is None else failure[1].verdict,
        }
        if written is not None:
            out["trace_file"] = str(written)
        if history_written is not None:
            out["history_file"] = str(history_written[0])
        if failure is not None:
            seed, outcome = failure
            out["failure"] = {
                "seed": seed,
                "kind": outcome.kind,
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
    label += f" service={args.service}" if args.service else ""
    label += f" variant={args.variant}" if args.variant else ""
    if failure is None:
        # An implementation that logs no trace has none validated: say so, not "valid".
        traced = (
            "every trace valid" if last.validation.events else f"no trace ({last.validation.message or 'none logged'})"
        )
        print(
            f"{label}: ok: {plural(passed, 'schedule')} passed (seeds {args.seed}..{args.seed + args.runs - 1}), "
            f"{wiring.state_checks} and {traced}, {seconds:.2f} s"
        )
        if written is not None:
            print(f"trace of the last run written to {written}")
        _print_history(history_written, "the last run")
        return 0
    seed, outcome = failure
    print(f"{label}: violated ({outcome.kind}) with seed {seed} after {plural(passed, 'passing schedule')}\n")
    print(outcome.run.render(compact=True))
    if not outcome.validation.ok:
        print()
        print(validation_text(outcome.validation, "the run's trace"))
    print(f"\nreplay: {replay}")
    print(f"trace written to {written} (validate it with: distcheck validate {entry.name} {written})")
    _print_history(history_written, "the failing run")
    return 1


def _keeps_history(wiring: Wiring) -> bool:
    return type(wiring).history is not Wiring.history


def _print_history(written: tuple[Path, int] | None, which: str) -> None:
    if written is not None:
        path, count = written
        print(
            f"client history of {which} ({plural(count, 'operation')}) written to {path} "
            f"(check it with: distcheck linearizable {path} --model kv)"
        )


def cmd_demonstration(args: argparse.Namespace) -> int:
    """``distcheck simulate cap``: a demonstration (``wiring.DEMONSTRATIONS``) runs a
    fixed schedule of its own, per seed."""
    ignored = [
        flag
        for flag, given in (
            ("-p", args.param),
            ("--strategy", args.strategy != "random"),
            ("--faults", args.faults),
            ("--steps", args.steps is not None),
            ("--variant", args.variant),
            ("--service", args.service),
            ("--history-out", args.history_out),
        )
        if given
    ]
    if ignored:
        raise UsageError(
            f"simulate {args.spec} runs one fixed partition schedule and takes only --seed, --runs, --trace-out "
            f"and --json; drop {', '.join(ignored)}"
        )
    _, demonstrate = DEMONSTRATIONS[args.spec]
    code, text = demonstrate(args.seed, args.runs, args.trace_out, args.json)
    print(text)
    return code


def _default_trace_path(spec_name: str, variant: str | None, failure: tuple[int, SimOutcome] | None) -> Path:
    """Where a failing run's trace goes unless ``--trace-out`` says: beside the
    explorer's counterexamples, one file per spec, variant and kind of failure."""
    kind = failure[1].kind if failure is not None else None
    name = "-".join(p for p in (spec_name, variant, kind or "run", "simulate") if p)
    return trace_file.DEFAULT_DIR / f"{''.join(c if c.isalnum() or c in '-_' else '_' for c in name)}.jsonl"


# ----------------------------------------------------------------- validate


def validation_json(v: Validation) -> dict[str, Any]:
    out: dict[str, Any] = {"verdict": v.verdict, "events": v.events, "states_explored": v.states_explored}
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
        lines += [f"    {o.get('actor') or 'env'} {action_text(o.get('action'))}" for o in m.expected[:12]]
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
    service = header.extra.get("service")
    wiring = find_wiring(entry.name, str(service)) if service and entry.name in WIRINGS else WIRINGS.get(entry.name)
    special = dict(wiring.validate_splits) if wiring is not None else {}
    if args.split is not None and args.split not in special:
        carried = sorted({key for step in recorded.steps for key in step.extra})
        if args.split not in carried:
            allowed = ", ".join([*carried, *special]) or "none (no event carries a key beyond step, actor, action)"
            raise UsageError(f"--split {args.split}: no event of {args.trace} carries that key; allowed: {allowed}")
    try:
        result = wiring.validate_file(spec, recorded, args.split, args.max_states) if wiring is not None else None
    except UsageError as exc:
        raise UsageError(f"{args.trace}: {exc}") from None
    if result is None:
        result = validate_trace(spec, recorded, split_key=args.split, max_states=args.max_states)
    elif wiring is not None:  # the wiring's own way: the bounds it lifts are not the header's
        params = {k: "unbounded" if k in wiring.unbounded_params else v for k, v in params.items()}
    if result.mismatch is not None and result.mismatch.bad_input:
        # The event is not in the spec's vocabulary at all: bad input, one line.
        m = result.mismatch
        raise UsageError(f"{args.trace} line {m.step + 2}: {m.reason}")
    if result.verdict == UNKNOWN:
        raise UsageError(f"{args.trace}: {result.message} (raise --max-states, or log more of what happens)")
    if args.json:
        out = {"spec": entry.name, "params": params, "variant": header.variant, "trace": str(args.trace)}
        if wiring is not None and wiring.trace_spec:
            out["validated_against"] = wiring.trace_spec
        out.update(validation_json(result))
        print(json.dumps(out, indent=2))
    else:
        label = entry.name + "".join(f" {k}={v}" for k, v in params.items())
        label += f" variant={header.variant}" if header.variant else ""
        if wiring is not None and wiring.trace_spec:
            label = f"{wiring.trace_spec} (the {wiring.service} {entry.name} service's trace)"
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
    p.add_argument(
        "spec",
        help=f"spec name; implemented: {', '.join(WIRINGS)}; or a demonstration: "
        + "; ".join(f"{name} ({summary})" for name, (summary, _) in DEMONSTRATIONS.items()),
    )
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a parameter")
    p.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N", help="seed of the first run (default 0)")
    p.add_argument(
        "--runs", type=_int_at_least(1), default=1, metavar="R", help="run seeds SEED..SEED+RUNS-1 (default 1)"
    )
    p.add_argument("--strategy", choices=STRATEGIES, default="random", help="where choices come from")
    p.add_argument("--pct-depth", type=_int_at_least(1), default=3, metavar="D", help="PCT bug depth d (default 3)")
    p.add_argument(
        "--faults",
        default="",
        metavar="F,F,...",
        help="comma-separated: crash, drop, duplicate, reorder, partition (default none)",
    )
    p.add_argument(
        "--steps",
        type=_int_at_least(10),
        default=None,
        metavar="K",
        help="most scheduler steps per run; faults only in the first half (default: "
        + ", ".join(f"{name} {w.default_steps}" for name, w in WIRINGS.items())
        + ")",
    )
    p.add_argument(
        "--service",
        metavar="NAME",
        help="an alternative implementation of the spec: "
        + ", ".join(f"{spec} {name}" for spec, name in SERVICES)
        + " (default: the spec's first implementation)",
    )
    p.add_argument("--variant", metavar="V", help="a deliberately broken implementation variant")
    p.add_argument(
        "--trace-out",
        type=output_file,
        metavar="FILE",
        help="write the run's trace here (default: a failing run's trace under .distcheck/traces/)",
    )
    p.add_argument(
        "--history-out",
        type=output_file,
        metavar="FILE",
        help="write the clients' history of the last (or failing) run here, for distcheck linearizable "
        "(key-value services)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_simulate)

    v = sub.add_parser("validate", help="check that a recorded trace is a behaviour of a spec")
    v.add_argument("spec", help="spec name (must match the trace's header)")
    v.add_argument("trace", help="trace file (JSON Lines, docs/trace-format.md)")
    v.add_argument(
        "--split",
        metavar="KEY",
        help="validate each value of this event key on its own (any key the trace's events carry, e.g. txn)"
        + "".join(
            f"; {name} --split {key}: {what}" for name, w in WIRINGS.items() for key, what in w.validate_splits.items()
        ),
    )
    v.add_argument(
        "--max-states", type=int, default=200_000, metavar="N", help="give up beyond this many possible states"
    )
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(handler=cmd_validate)


__all__ = ["register"]
