"""Conformance of an implementation to its spec, under a controlled scheduler.

Where it sits: the generic half of ``distcheck simulate`` and of the tests of every
implementation.  A ``Wiring`` (one per implemented protocol, in ``checks/conformance/wiring/``)
says how to build the implementation's nodes (``impl/``), how to check its real
state after every step (by default: the spec's invariants on an abstraction of
that state), how to validate its trace against the spec, and what a finished run
must have achieved.  ``simulate`` runs one wiring once under
``impl.runtime.Simulation`` with a choice source (seeded random, PCT, or
hypothesis drawing each choice) and returns what happened.  This is, with the CLI
and the tests, where spec, implementation and checks meet (DESIGN.md).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from distcheck.checks.conformance.validate import Validation, Validator, validate_events
from distcheck.checks.histories.linearizability import Operation
from distcheck.checks.traces.render import state_table
from distcheck.checks.traces.trace import Trace
from distcheck.checks.verdict import OK, VIOLATED
from distcheck.impl.runtime import (
    ChoiceSource,
    FaultPolicy,
    NodeMain,
    PCTChoices,
    RandomChoices,
    RunResult,
    Simulation,
    TraceLog,
)
from distcheck.spec.contract import Spec

STRATEGIES = ("random", "pct")


class Wiring(ABC):
    """How ``simulate`` runs one protocol's implementation against its spec."""

    spec_name: str = ""
    #: the name of an alternative implementation of the spec (``distcheck simulate
    #: SPEC --service NAME``, e.g. the replicated lock service); "" for the default one
    service: str = ""
    #: the spec its trace is validated against, where that is not its own (the
    #: replicated lock service's trace is its servers' Raft steps); "" for its own
    trace_spec: str = ""
    #: the implementation's deliberately broken variants (name → what is wrong)
    variants: Mapping[str, str] = {}
    #: the event key that separates independent protocol instances in the trace
    split_key: str | None = None
    #: parameters used unless the command line sets them (the spec's defaults may
    #: be too small a model for a run of the implementation to fit in)
    default_params: tuple[str, ...] = ()
    #: scheduler steps per run unless ``--steps`` says otherwise (faults in the first half)
    default_steps: int = 2000

    def wrap_choices(self, choices: ChoiceSource, seed: int, system: Any, faults: FaultPolicy) -> ChoiceSource:
        """The scheduler's choices for one run; a wiring may add its own faults."""
        return choices

    @abstractmethod
    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        """A fresh implementation (its environment's choices drawn from ``rng``)."""

    @abstractmethod
    def nodes(self, system: Any) -> dict[str, NodeMain]: ...

    def abstract(self, sim: Simulation, system: Any) -> Any:
        """The spec state that the implementation's real state stands for."""
        raise NotImplementedError(f"{type(self).__name__} checks the implementation's state with check_state")

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        """After every step: what is wrong with the implementation's state, or None.
        By default, the spec's invariants on the abstraction of that state."""
        state = self.abstract(sim, system)
        for inv in spec.invariants():
            if not inv.holds(state):
                return f"{inv.name} violated: {inv.statement}\n{state_table(state)}"
        return None

    #: parameters ``validate_file`` does not hold a trace to (it checks against the
    #: spec with those bounds lifted), so ``distcheck validate`` says so, not the header's value
    unbounded_params: tuple[str, ...] = ()

    #: what the state checks are, as ``distcheck simulate`` reports a passing run
    state_checks: str = "invariants checked after every step"

    #: whether the trace is validated event by event during the run (so the run
    #: stops at the first unexplained event) or only once, at the end
    incremental_trace: bool = True

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        """Is the run's trace a behaviour of the spec?  ``header``: the trace's header,
        with what ``annotate`` added to it."""
        return validate_events(spec, events, split_key=self.split_key)

    def annotate(self, header: dict[str, Any], sim: Simulation, system: Any) -> None:
        """After a run: add to the trace's header what validating it needs and its
        events cannot say (PBFT: what the Byzantine replicas sent, which no honest
        step logs).  By default nothing."""
        return None

    #: ``distcheck validate --split`` keys this protocol validates its own way (key →
    #: what it does), beyond the generic split by any key the trace's events carry
    validate_splits: Mapping[str, str] = {}

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        """``distcheck validate`` of a trace file of this protocol, where it is
        validated in a way of its own (a replicated log, slot by slot; an actor-naming
        rule of its own); None for the generic path (``checks.conformance.validate``).  A trace this protocol cannot
        read that way is bad input: raise ``checks.params.UsageError`` (one line)."""
        return None

    def history(self, system: Any) -> list[Operation] | None:
        """The clients' history of a run, for ``--history-out`` (key-value services);
        None for a protocol whose clients keep none."""
        return None

    def fault_policy(self, faults: FaultPolicy, system: Any) -> FaultPolicy:
        """The faults the scheduler may inject into this system (e.g. which nodes may crash)."""
        return faults

    def done(self, sim: Simulation, system: Any) -> bool:
        """For a system that never goes quiet: has the run done its work (asked only
        once faults are over and every node is up)?"""
        return False

    @abstractmethod
    def finished(self, sim: Simulation, system: Any) -> str | None:
        """At the end of a run (no faults left, nothing more to do): what is wrong, or None."""


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
    """One run's verdict (``checks.verdict``): "ok", or "violated" with ``kind``
    saying what failed: "invariant" (an invariant of the spec on the abstraction, or
    the end-of-run check), "deadlock", "error" (a node raised), "step_limit" (the run
    did not finish) or "invalid_trace" (its trace is not a behaviour of the spec)."""

    verdict: str
    kind: str | None
    message: str
    run: RunResult
    validation: Validation
    #: the clients' history (``Wiring.history``), None where they keep none
    history: list[Operation] | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == OK


#: the runtime's word for how a run ended → the ``kind`` of a failed run
_KINDS = {"violation": "invariant", "deadlock": "deadlock", "error": "error", "step_limit": "step_limit"}


def _outcome(
    status: str, message: str, run: RunResult, validation: Validation, history: list[Operation] | None = None
) -> SimOutcome:
    if status == "ok":
        return SimOutcome(OK, None, message, run, validation, history)
    return SimOutcome(VIOLATED, _KINDS.get(status, status), message, run, validation, history)


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
    if choices is None:
        choices = wiring.wrap_choices(make_choices(options), options.seed, system, options.faults)
    tracelog = TraceLog(wiring.spec_name, params, None, source="simulate")
    if options.variant is not None:
        tracelog.header["impl_variant"] = options.variant
    if wiring.service:
        tracelog.header["service"] = wiring.service
    validator = Validator(spec, split_key=wiring.split_key)
    fed = 0

    def check(sim: Simulation) -> str | None:
        nonlocal fed
        # The trace first: a run stops at the first event the spec cannot explain.
        while options.check_trace and wiring.incremental_trace and fed < len(tracelog.events):
            fed += 1
            mismatch = validator.feed(tracelog.events[fed - 1])
            if mismatch is not None:
                return f"the trace is not a behaviour of {spec.name}: {mismatch.reason}"
        if not options.check_invariants:
            return None
        return wiring.check_state(spec, sim, system)

    sim = Simulation(
        wiring.nodes(system),
        choices,
        wiring.fault_policy(options.faults, system),
        fault_steps=options.steps // 2,
        max_steps=options.steps,
        trace=tracelog,
        check=check,
        final_check=lambda s: wiring.finished(s, system),
        until=lambda s: wiring.done(s, system),
    )
    run = sim.run()
    wiring.annotate(tracelog.header, sim, system)
    # Validate the whole trace once more from scratch: a run that stopped on an
    # invariant still tells whether its trace was a behaviour up to there.
    validation = wiring.validate(spec, tracelog.events, tracelog.header)
    history = wiring.history(system)
    if options.check_trace and not validation.ok and run.status in ("ok", "violation"):
        return _outcome("invalid_trace", validation.message, run, validation, history)
    return _outcome(run.status, run.message, run, validation, history)
