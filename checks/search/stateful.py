"""The hypothesis stateful harness: any spec as a ``RuleBasedStateMachine``.

Where it sits: tests declare one line per spec (``TestTwoPhase =
spec_machine(TwoPhase()).TestCase``) and ``distcheck fuzz`` runs the same machine
outside pytest (``fuzz`` below).  It sees the spec only through ``spec.contract``'s
contract, and reports failures through ``checks.trace`` and ``checks.render``.

Where the explorer enumerates every state, this harness samples long random
behaviours and lets hypothesis *shrink* a failing one: each step draws one of the
enabled actions (so deleting or simplifying draws yields shorter, simpler
interleavings), and every invariant is checked after every step.  A failure raises
an ``AssertionError`` carrying the text rendering of the behaviour, and the final,
shrunk failure is written as a trace file (``.distcheck/traces/`` unless told
otherwise) that ``distcheck replay`` reproduces.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs
import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from distcheck.checks.search.explore import Step
from distcheck.checks.traces import render, trace
from distcheck.checks.verdict import OK, VIOLATED
from distcheck.spec.contract import Spec


class SpecMachineBase(RuleBasedStateMachine):
    """What every machine ``spec_machine`` builds shares; the spec and where failures
    go are class attributes, set per spec."""

    spec: ClassVar[Spec[Any, Any]]
    header: ClassVar[trace.TraceHeader]
    trace_path: ClassVar[Path | None]
    #: The last failing behaviour's trace; after hypothesis has shrunk, the shrunk one.
    last_failure: ClassVar[trace.Trace | None] = None
    #: How many behaviours (examples) this machine class has started.
    runs: ClassVar[int] = 0
    #: Whether some behaviour has failed (hypothesis is shrinking it from then on).
    failed: ClassVar[bool] = False
    #: The behaviour (counting from 1) that failed first, before any shrinking.
    failed_at: ClassVar[int | None] = None
    #: Told the number of behaviours started so far and whether a failure is being
    #: shrinking, as each behaviour starts (``fuzz`` shows progress on a terminal).
    on_run: ClassVar[Callable[[int, bool], None] | None] = None

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        cls.runs += 1
        if cls.on_run is not None:
            cls.on_run(cls.runs, cls.failed)
        self.behaviour: list[Step] = []
        self._choices: list[Any] = []

    def _enter(self, step: Step) -> None:
        self.behaviour.append(step)
        spec = self.spec
        # Only actions that are enabled (the contract lets actions() list candidates
        # whose next_state is None) and change the state: a stutter cannot break an
        # invariant, and offering it would only dilute the search.
        self._choices = [a for a, nxt in spec.successors(step.state) if nxt != step.state]

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        inits = list(self.spec.init_states())
        self._enter(Step(None, data.draw(st.sampled_from(inits), label="initial state")))

    @rule(data=st.data())
    def take_one_enabled_action(self, data: st.DataObject) -> None:
        # Drawn from the enabled actions of this very state, so that hypothesis
        # shrinks by dropping steps and by moving to earlier actions in the spec's
        # fixed order.  A single rule, always valid (a no-op once nothing but
        # stutters is enabled), keeps each step to one draw: shrinking is then
        # much cheaper than with a second rule and a precondition to choose between.
        if not self._choices:
            return
        action = data.draw(_one_of(tuple(self._choices)), label="action")
        self._enter(Step(action, self.spec.next_state(self.behaviour[-1].state, action)))

    def teardown(self) -> None:
        # Steer generation towards long behaviours: with hypothesis's targeted
        # search, runs that go deep (where the interesting interleavings of a
        # protocol are) get mutated more, instead of runs that end early.  (``fuzz``
        # leaves the target phase out: see there.)
        if self.behaviour:
            hypothesis.target(float(len(self.behaviour) - 1), label="steps taken")

    @invariant()
    def every_invariant_holds(self) -> None:
        if not self.behaviour:
            return
        state = self.behaviour[-1].state
        if len(self.behaviour) > 1:
            before = self.behaviour[-2].state
            for prop in self.spec.step_properties():
                if not prop.holds(before, state):
                    self._fail(prop.name, prop.statement, "action")
        for inv in self.spec.invariants():
            if not inv.holds(state):
                self._fail(inv.name, inv.statement)

    def _fail(self, name: str, statement: str, kind: str = "invariant") -> None:
        cls = type(self)
        if not cls.failed:
            cls.failed, cls.failed_at = True, cls.runs
        if not _is_final_run():
            # While hypothesis shrinks, a failure only needs to be a failure: the
            # trace and its rendering are built once, for the final example.
            raise AssertionError(f"{name} violated after {render.plural(len(self.behaviour) - 1, 'step')}")
        header = attrs.evolve(self.header, violation=trace.TraceViolation(name, statement, kind))
        failure = trace.from_behaviour(
            self.spec,
            self.behaviour,
            spec_name=header.spec,
            params=header.params,
            variant=header.variant,
            source=header.source,
            violation=header.violation,
        )
        type(self).last_failure = failure
        path = trace.write(failure, self.trace_path or trace.default_path(header))
        raise AssertionError(
            f"{name} violated after {render.plural(failure.length, 'step')}\n\n{render.trace_text(failure)}"
            f"\n\ntrace written to {path} (replay it with: distcheck replay {path})"
        )


@functools.lru_cache(maxsize=4096)
def _one_of(choices: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    # Building a strategy costs more than drawing from it, and a run meets the same
    # sets of enabled actions again and again.
    return st.sampled_from(choices)


def _is_final_run() -> bool:
    """True on hypothesis's last run of the shrunk example (or outside hypothesis),
    so that a trace is written once, not at every shrinking attempt."""
    try:
        return bool(current_build_context().is_final)
    except InvalidArgument:
        return True


def spec_machine(
    spec: Spec[Any, Any],
    *,
    spec_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    variant: str | None = None,
    source: str = "hypothesis",
    trace_path: str | Path | None = None,
) -> type[SpecMachineBase]:
    """A ``RuleBasedStateMachine`` class for ``spec``; its ``.TestCase`` is a unittest
    class pytest collects.  The header fields default to the spec's own (name, Config
    fields, variant)."""
    template = trace.from_behaviour(
        spec,
        [Step(None, next(iter(spec.init_states())))],
        spec_name=spec_name,
        params=params,
        variant=variant,
        source=source,
    )
    name = "".join(part.capitalize() for part in template.header.spec.split("_")) or "Spec"
    attributes = {
        "spec": spec,
        "header": template.header,
        "trace_path": Path(trace_path) if trace_path is not None else None,
        "last_failure": None,
        "runs": 0,
        "failed": False,
        "failed_at": None,
        "on_run": None,
        "__module__": __name__,
    }
    return type(f"{name}Machine", (SpecMachineBase,), attributes)


# ------------------------------------------------------------------------------ fuzz


@attrs.frozen
class FuzzResult:
    """What ``fuzz`` found (``checks.verdict``): verdict "ok" (no property failed in
    ``examples`` behaviours) or "violated" (with the shrunk trace)."""

    verdict: str
    examples: int  # behaviours generated and checked: those asked for, or up to the first failing one
    runs: int  # behaviours actually run: a few too long to count, and shrinking, add to it
    seconds: float
    seed: int
    trace: trace.Trace | None = None


def fuzz(
    spec: Spec[Any, Any],
    *,
    examples: int = 200,
    steps: int = 50,
    seed: int | None = None,
    spec_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    variant: str | None = None,
    trace_path: str | Path | None = None,
    on_run: Callable[[int, bool], None] | None = None,
) -> FuzzResult:
    """Run the stateful harness for ``examples`` behaviours of at most ``steps``
    steps each, outside pytest.  ``seed`` makes the run repeatable (one is drawn and
    reported when none is given); no example database is read or written, so the
    same seed gives the same result anywhere.  ``on_run(runs, shrinking)`` is called
    as each behaviour starts.

    Hypothesis's *target* phase is left out: it mutates the examples it scored
    best long after ``examples`` were generated (28,133 behaviours and ten minutes
    for a thousand asked, on two-phase commit), so the run does what it is asked."""
    seed = random.randrange(2**32) if seed is None else seed
    machine = spec_machine(
        spec, spec_name=spec_name, params=params, variant=variant, source="fuzz", trace_path=trace_path
    )
    machine.on_run = on_run
    config = settings(
        max_examples=examples,
        stateful_step_count=steps,
        database=None,
        deadline=None,
        derandomize=False,
        print_blob=False,
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
    )
    started = time.perf_counter()
    try:
        run_state_machine_as_test(hypothesis.seed(seed)(machine), settings=config)
    except AssertionError:
        if machine.last_failure is None:
            raise
        seconds = time.perf_counter() - started
        first = machine.failed_at or machine.runs
        return FuzzResult(VIOLATED, min(first, examples), machine.runs, seconds, seed, machine.last_failure)
    return FuzzResult(OK, examples, machine.runs, time.perf_counter() - started, seed)
