"""Subcommands for implementations: ``distcheck simulate`` and ``distcheck validate``.

Where it sits: ``checks/cli.py`` calls ``register`` to add these subcommands; each
sets ``handler`` (a function of the parsed arguments returning the exit code) and
raises ``checks.params.UsageError`` on bad input.  This is also where the three
parts meet, as DESIGN.md wants the CLI and the tests to be the only place they do:
a ``Wiring`` per implemented protocol builds the implementation's nodes (``impl/``),
maps the implementation's real state to a spec state (the abstraction function, so
the spec's invariants are checked on what the implementation actually holds), and
says what a finished run must have achieved.  ``simulate`` runs a wiring under the
controlled scheduler and validates the run's trace with ``checks.validate``; the
tests use the same ``simulate`` function with hypothesis drawing the choices.

    distcheck simulate SPEC [-p NAME=VALUE ...] [--seed N] [--runs R]
                       [--strategy random|pct] [--pct-depth D]
                       [--faults crash,drop,duplicate,reorder] [--steps K]
                       [--variant V] [--trace-out FILE] [--json]
    distcheck validate SPEC TRACE [--split KEY] [--max-states N] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from checks import trace as trace_file
from checks.params import UsageError, build_spec
from checks.render import state_table
from checks.validate import Mismatch, Validation, Validator, action_text, validate_events, validate_trace
from impl import twophase as impl_twophase
from impl.runtime import (
    ChoiceSource,
    FaultPolicy,
    NodeMain,
    PCTChoices,
    RandomChoices,
    RunResult,
    Simulation,
    TraceLog,
)
from spec.core import FrozenMap, MessageSet, Spec
from spec.twophase import Abort, Commit, Prepared, TPState

STRATEGIES = ("random", "pct")

# ------------------------------------------------------------------- wirings


class Wiring(ABC):
    """How ``simulate`` runs one protocol's implementation against its spec."""

    spec_name: str = ""
    #: the implementation's deliberately broken variants (name → what is wrong)
    variants: Mapping[str, str] = {}
    #: the event key that separates independent protocol instances in the trace
    split_key: str | None = None

    @abstractmethod
    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        """A fresh implementation (its environment's choices drawn from ``rng``)."""

    @abstractmethod
    def nodes(self, system: Any) -> dict[str, NodeMain]: ...

    @abstractmethod
    def abstract(self, sim: Simulation, system: Any) -> Any:
        """The spec state that the implementation's real state stands for."""

    @abstractmethod
    def finished(self, sim: Simulation, system: Any) -> str | None:
        """At the end of a run (no faults left, nothing more to do): what is wrong, or None."""


class TwoPhaseWiring(Wiring):
    """``impl.twophase`` (one transaction ``t1`` across RMs r1..rN) against ``spec.twophase``.

    Abstraction: an RM's state is what its log holds (its memory never runs ahead
    of its log: an RM makes a state durable before acting on it); the TM is done
    when it has a decision in memory or in its log; ``tm_prepared`` is the votes the
    TM holds in memory; ``msgs`` is every Prepared, Commit and Abort ever sent."""

    spec_name = "twophase"
    variants = impl_twophase.VARIANTS
    split_key = "txn"
    txn = "t1"
    no_vote_probability = 0.1

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        rms = int(params.get("rms", 3))
        no_votes = [(f"r{i}", self.txn) for i in range(1, rms + 1) if rng.random() < self.no_vote_probability]
        return impl_twophase.cluster(rms, (self.txn,), no_votes, variant)

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        cluster: impl_twophase.Cluster = system
        return cluster.nodes()

    def rm_state(self, sim: Simulation, rm: impl_twophase.ResourceManager) -> str:
        durable = impl_twophase.ResourceManager.recover(sim.durable_records(rm.name, rm.LOG))
        return durable.get(self.txn, impl_twophase.WORKING)

    def abstract(self, sim: Simulation, system: Any) -> TPState:
        cluster: impl_twophase.Cluster = system
        tm = cluster.coordinator
        logged = impl_twophase.Coordinator.recover(sim.durable_records(tm.name, tm.LOG)).get(self.txn)
        in_memory = tm.txns.get(self.txn) if sim.is_up(tm.name) else None
        decided = (logged is not None and logged.decision is not None) or (
            in_memory is not None and in_memory.decision is not None
        )
        prepared = frozenset(in_memory.prepared) if in_memory is not None else frozenset()
        msgs: list[Prepared | Commit | Abort] = []
        for _, _, msg in sim.sent:
            kind = msg.get("type")
            if kind == "Prepared":
                msgs.append(Prepared(str(msg["rm"])))
            elif kind == "Commit":
                msgs.append(Commit())
            elif kind == "Abort":
                msgs.append(Abort())
        return TPState(
            rm_state=FrozenMap({rm.name: self.rm_state(sim, rm) for rm in cluster.rms}),
            tm_state="done" if decided else "init",
            tm_prepared=prepared,
            msgs=MessageSet(frozenset(msgs)),
        )

    def finished(self, sim: Simulation, system: Any) -> str | None:
        cluster: impl_twophase.Cluster = system
        states = {rm.name: self.rm_state(sim, rm) for rm in cluster.rms}
        undecided = [name for name, s in states.items() if s not in (impl_twophase.COMMITTED, impl_twophase.ABORTED)]
        if undecided:
            return f"the run ended with {', '.join(undecided)} undecided: {states}"
        outcomes = set(states.values())
        applied = {(rm.name, outcome) for rm in cluster.rms for _, outcome in rm.applied}
        if len(outcomes) > 1 or len({o for _, o in applied}) > 1:
            return f"RMs disagree on the outcome: logs {states}, applied {sorted(applied)}"
        learned = cluster.client.outcomes.get(self.txn)
        if learned not in outcomes:
            return f"the client learned {learned!r} but the RMs {outcomes.pop()}"
        return None


WIRINGS: dict[str, Wiring] = {w.spec_name: w for w in (TwoPhaseWiring(),)}


def find_wiring(name: str) -> Wiring:
    wiring = WIRINGS.get(name)
    if wiring is None:
        raise UsageError(f"no implementation of {name!r} to simulate; implemented: {', '.join(WIRINGS)}")
    return wiring


# ----------------------------------------------------------------- simulate


@attrs.frozen
class SimOptions:
    seed: int = 0
    strategy: str = "random"
    faults: FaultPolicy = FaultPolicy()
    #: the most scheduler steps a run may take; faults only in the first half, so
    #: that the run can recover and finish
    steps: int = 2000
    pct_depth: int = 3
    variant: str | None = None
    #: the two independent checks, each of which can be turned off to show that
    #: the other one alone catches a broken variant
    check_invariants: bool = True
    check_trace: bool = True


@attrs.frozen
class SimOutcome:
    """status: ok, or why the run failed: violation (an invariant of the spec on the
    abstraction, or the end-of-run check), deadlock, error (a node raised),
    step_limit (did not finish), invalid_trace (the trace is not a behaviour)."""

    status: str
    message: str
    run: RunResult
    validation: Validation

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def make_choices(options: SimOptions) -> ChoiceSource:
    if options.strategy == "pct":
        return PCTChoices(options.seed, depth=options.pct_depth, expected_steps=max(options.steps // 4, 2))
    return RandomChoices(options.seed)


def simulate(
    spec: Spec[Any, Any],
    wiring: Wiring,
    params: Mapping[str, Any],
    options: SimOptions,
    choices: ChoiceSource | None = None,
    environment: random.Random | None = None,
) -> SimOutcome:
    """One controlled run: the spec's invariants are checked on the abstraction of
    the implementation's state after every step, the wiring's end-of-run check at
    the end, and the trace the nodes recorded is validated against the spec."""
    system = wiring.build(params, options.variant, environment or random.Random(options.seed))
    tracelog = TraceLog(wiring.spec_name, params, None, source="simulate")
    if options.variant is not None:
        tracelog.header["impl_variant"] = options.variant
    invariants = spec.invariants()
    validator = Validator(spec, split_key=wiring.split_key)
    fed = 0

    def check(sim: Simulation) -> str | None:
        nonlocal fed
        # The trace first: a run stops at the first event the spec cannot explain.
        while options.check_trace and fed < len(tracelog.events):
            fed += 1
            mismatch = validator.feed(tracelog.events[fed - 1])
            if mismatch is not None:
                return f"the trace is not a behaviour of {spec.name}: {mismatch.reason}"
        if not options.check_invariants:
            return None
        state = wiring.abstract(sim, system)
        for inv in invariants:
            if not inv.holds(state):
                return f"{inv.name} violated: {inv.statement}\n{state_table(state)}"
        return None

    sim = Simulation(
        wiring.nodes(system),
        choices or make_choices(options),
        options.faults,
        fault_steps=options.steps // 2,
        max_steps=options.steps,
        trace=tracelog,
        check=check,
        final_check=lambda s: wiring.finished(s, system),
    )
    run = sim.run()
    # Validate the whole trace once more from scratch: a run that stopped on an
    # invariant still tells whether its trace was a behaviour up to there.
    validation = validate_events(spec, tracelog.events, split_key=wiring.split_key)
    if options.check_trace and not validation.ok and run.status in ("ok", "violation"):
        return SimOutcome("invalid_trace", validation.message, run, validation)
    return SimOutcome(run.status, run.message, run, validation)


def _fault_policy(text: str | None) -> FaultPolicy:
    if not text:
        return FaultPolicy()
    try:
        return FaultPolicy.parse(text)
    except ValueError as exc:
        raise UsageError(f"--faults: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    wiring = find_wiring(args.spec)
    entry, params, spec = build_spec(args.spec, args.param)
    if args.variant is not None and args.variant not in wiring.variants:
        allowed = ", ".join(wiring.variants) or "none"
        raise UsageError(f"unknown implementation variant {args.variant!r} for {entry.name}; allowed: {allowed}")
    if args.steps < 10:
        raise UsageError(f"--steps must be at least 10, got {args.steps}")
    faults = _fault_policy(args.faults)
    started = time.perf_counter()
    passed = 0
    failure: tuple[int, SimOutcome] | None = None
    last: SimOutcome | None = None
    for seed in range(args.seed, args.seed + args.runs):
        options = SimOptions(seed, args.strategy, faults, args.steps, args.pct_depth, args.variant)
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
        + f" --steps {args.steps}"
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
    result = validate_trace(spec, recorded, split_key=args.split, max_states=args.max_states)
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
    p.add_argument("--faults", default="", help="comma-separated: crash, drop, duplicate, reorder (default none)")
    p.add_argument(
        "--steps",
        type=_int_at_least(10),
        default=2000,
        help="most scheduler steps per run; faults only in the first half (default 2000)",
    )
    p.add_argument("--variant", help="a deliberately broken implementation variant")
    p.add_argument("--trace-out", metavar="FILE", help="write the (first failing, else last) run's trace")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_simulate)

    v = sub.add_parser("validate", help="check that a recorded trace is a behaviour of a spec")
    v.add_argument("spec", help="spec name (must match the trace's header)")
    v.add_argument("trace", help="trace file (JSON Lines, docs/trace-format.md)")
    v.add_argument("--split", metavar="KEY", help="validate each value of this event key on its own (e.g. txn)")
    v.add_argument("--max-states", type=int, default=200_000, help="give up beyond this many possible states")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(handler=cmd_validate)


__all__ = ["Mismatch", "SimOptions", "SimOutcome", "Wiring", "register", "simulate"]
