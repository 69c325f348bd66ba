"""The explorer's options on small specs whose state graphs are known by hand."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs
import pytest

from distcheck.checks.search.explore import Explorer, check_refinement_of, explore, follow_witness
from distcheck.checks.search.parallel import ParallelExplorer
from distcheck.checks.search.stateful import fuzz
from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Refinement, Spec, StepProperty, rule


@attrs.frozen
class Counters:
    a: int
    b: int


@attrs.frozen
class Inc(Action):
    ACTOR = "which"
    which: str


class TwoCounters(Spec[Counters, Inc]):
    """Two counters 0..limit, either may be incremented: (limit+1)^2 states.
    Swapping a and b is a symmetry."""

    name = "two-counters"

    def __init__(self, limit: int = 3, bad: int | None = None, bound: int | None = None) -> None:
        self.limit, self.bad, self.bound = limit, bad, bound

    def init_states(self) -> Iterable[Counters]:
        yield Counters(0, 0)

    def next(self) -> Next:
        return (Exists("which", ("a", "b"), self.inc),)

    @rule(Inc)
    def inc(self, s: Counters, which: str) -> Counters | None:
        """Either counter goes up by one, to the limit."""
        if which == "a" and s.a < self.limit:
            return Counters(s.a + 1, s.b)
        if which == "b" and s.b < self.limit:
            return Counters(s.a, s.b + 1)
        return None

    def invariants(self) -> Sequence[Invariant[Counters]]:
        bad = self.bad
        return (Invariant("SumBelowBad", "a + b never reaches bad", lambda s: bad is None or s.a + s.b < bad),)

    def reachable(self) -> Sequence[Reachable[Counters]]:
        return (Reachable("BothAtLimit", "both counters at the limit", lambda s: s.a == s.b == self.limit),)

    def canonical(self, s: Counters) -> Counters:
        return Counters(min(s.a, s.b), max(s.a, s.b))

    def within_bounds(self, s: Counters) -> bool:
        return self.bound is None or s.a + s.b <= self.bound


def test_counts_and_depth() -> None:
    result = explore(TwoCounters(3))
    assert result.ok
    assert result.stats.distinct_states == 16
    assert result.stats.depth == 7  # (0,0) .. (3,3): 6 steps, 7 states


def test_generated_counts_every_successor() -> None:
    # Successors: states with a<3 and b<3 have 2; with exactly one at the limit, 1; (3,3) none.
    spec = TwoCounters(3)
    expected = 1 + sum(len(list(spec.actions(Counters(a, b)))) for a in range(4) for b in range(4))
    assert explore(spec).stats.generated_states == expected


def test_symmetry_counts_orbits() -> None:
    result = explore(TwoCounters(3), symmetry=True)
    assert result.ok and result.stats.distinct_states == 10  # pairs a <= b


def test_shortest_counterexample_and_its_states() -> None:
    result = explore(TwoCounters(3, bad=3))
    v = result.violation
    assert result.verdict == "violated" and v is not None
    assert v.name == "SumBelowBad" and len(v.trace) == 4  # init + 3 increments
    assert v.trace[0].action is None
    last = v.trace[-1].state
    assert last.a + last.b == 3


def test_counterexample_under_symmetry_is_a_real_behaviour() -> None:
    spec = TwoCounters(3, bad=4)
    v = explore(spec, symmetry=True).violation
    assert v is not None
    state = v.trace[0].state
    for step in v.trace[1:]:
        assert spec.next_state(state, step.action) == step.state
        state = step.state


def test_unreached_property_fails_the_check() -> None:
    result = explore(TwoCounters(3, bound=4))  # (3,3) has sum 6 > 4
    assert result.verdict == "violated"
    assert result.violation is not None and result.violation.kind == "unreached"
    assert result.violation.name == "BothAtLimit"


def test_state_constraint_discards_states_like_tlc() -> None:
    result = explore(TwoCounters(3, bound=2))
    assert result.stats.distinct_states == 6  # sums 0, 1, 2


def test_deadlock_detection_is_optional() -> None:
    assert explore(TwoCounters(2)).verdict == "ok"
    result = explore(TwoCounters(2), check_deadlock=True)
    assert result.verdict == "violated"
    assert result.violation is not None and result.violation.trace[-1].state == Counters(2, 2)


def test_depth_limit() -> None:
    result = explore(TwoCounters(3), max_depth=3)
    assert result.stats.depth == 3 and not result.complete
    # BothAtLimit lies deeper than the bound: not a failure, and the result says so.
    assert result.verdict == "bounded" and result.ok and result.violation is None
    assert result.unreached == ("BothAtLimit",)
    assert result.stats.distinct_states == 6  # sums 0..2


def test_witness_is_a_shortest_path() -> None:
    explorer = Explorer(TwoCounters(2))
    explorer.run()
    path = explorer.witness("BothAtLimit")
    assert len(path) == 5 and path[-1].state == Counters(2, 2)


def test_progress_callback_reports() -> None:
    seen: list[int] = []
    Explorer(TwoCounters(30), progress=lambda stats: seen.append(stats.distinct_states), progress_interval=0).run()
    assert seen and seen == sorted(seen)


def test_refinement_needs_a_mapping() -> None:
    with pytest.raises(ValueError, match="no refinement"):
        Explorer(TwoCounters(2), check_refinement=True)


def test_a_bound_the_search_never_hits_is_a_complete_search() -> None:
    deep_enough = explore(TwoCounters(3), max_depth=7)  # (3, 3) is 7 states deep and has no successor
    assert deep_enough.verdict == "ok" and deep_enough.complete and deep_enough.unreached == ()
    never = explore(TwoCounters(3, bound=4), max_depth=50)  # the constraint keeps (3, 3) out
    assert never.verdict == "violated" and never.complete
    assert never.violation is not None and never.violation.kind == "unreached"


# ------------------------------------------------------------- the depth bound


def test_an_unbounded_run_is_complete() -> None:
    result = explore(TwoCounters(3))
    assert result.ok and result.complete


def test_a_bound_that_cuts_states_off_makes_the_run_incomplete() -> None:
    # The longest shortest path has 7 states: a bound of 6 leaves (3,3) unexplored.
    result = explore(TwoCounters(3), max_depth=6)
    assert not result.complete
    assert result.stats.distinct_states == 15


def test_a_bound_that_cuts_nothing_off_leaves_the_run_complete() -> None:
    # At a bound of 7 the states at the bound, (3,3) alone, have no successor:
    # nothing was left out, so the run is as complete as an unbounded one.
    result = explore(TwoCounters(3), max_depth=7)
    assert result.ok and result.complete
    assert result.stats.distinct_states == 16


def test_an_unreached_property_under_a_bound_is_marked_incomplete() -> None:
    # So that a caller can say the bound, not the spec, may be why it was not reached.
    bounded = explore(TwoCounters(3), max_depth=3)
    assert bounded.verdict == "bounded" and bounded.violation is None
    assert bounded.unreached == ("BothAtLimit",) and not bounded.complete
    unbounded = explore(TwoCounters(3, bound=4))  # unreachable by the constraint, not the bound
    assert unbounded.violation is not None and unbounded.violation.kind == "unreached"
    assert unbounded.complete


# -------------------------------------------------------------- refinement


@attrs.frozen
class Total:
    n: int


@attrs.frozen
class Add(Action):
    pass


class OneCounter(Spec[Total, Add]):
    """The abstract spec: one counter 0..top, incremented by one at a time."""

    name = "sum"

    def __init__(self, top: int, start: int = 0) -> None:
        self.top, self.start = top, start

    def init_states(self) -> Iterable[Total]:
        yield Total(self.start)

    def next(self) -> Next:
        return (self.add,)

    @rule(Add)
    def add(self, s: Total) -> Total | None:
        """The counter goes up by one, to the top."""
        return Total(s.n + 1) if s.n < self.top else None

    def invariants(self) -> Sequence[Invariant[Total]]:
        return ()


@attrs.frozen
class Swap(Action):
    pass


@attrs.frozen
class Both(Action):
    pass


class SummedCounters(TwoCounters):
    """Two counters whose sum is a OneCounter: each increment is its Add, and a swap
    (which leaves the sum alone) is a stutter.  ``jump`` adds an action that raises
    both counters at once, a step of two that OneCounter cannot take; ``start``
    shifts the abstract initial state so that the concrete one no longer maps to it."""

    name = "summed-counters"

    def __init__(self, limit: int = 2, jump: bool = False, start: int = 0) -> None:
        super().__init__(limit)
        self.jump, self.start = jump, start

    def next(self) -> Next:
        return (*super().next(), self.swap, *((self.both,) if self.jump else ()))

    @rule(Swap)
    def swap(self, s: Counters) -> Counters | None:
        """The counters trade values."""
        return Counters(s.b, s.a)

    @rule(Both)
    def both(self, s: Counters) -> Counters | None:
        """Both counters go up at once, each to the limit."""
        return Counters(s.a + 1, s.b + 1) if s.a < self.limit and s.b < self.limit else None

    def refinement(self) -> Refinement[Counters, Total]:
        return Refinement(OneCounter(2 * self.limit, self.start), lambda s: Total(s.a + s.b))


def test_a_spec_that_refines_its_abstract_spec_passes() -> None:
    result = check_refinement_of(SummedCounters())
    assert result.ok and result.complete, result.violation
    assert result.stats.distinct_states == 9


def test_a_step_the_abstract_spec_cannot_take_is_a_refinement_violation() -> None:
    spec = SummedCounters(jump=True)
    result = check_refinement_of(spec)
    assert result.verdict == "violated"
    v = result.violation
    assert v is not None and v.kind == "refinement"
    assert v.name == "RefinesSum"
    assert v.statement == "every step maps to a sum step or a stutter"
    # The shortest behaviour that ends in the offending step: (0,0) then Both.
    assert [step.action for step in v.trace] == [None, Both()]
    assert [step.state for step in v.trace] == [Counters(0, 0), Counters(1, 1)]
    # The same through the explorer's option, and no such verdict without it.
    assert explore(spec, check_refinement=True).violation == v
    assert explore(spec).ok


def test_an_initial_state_outside_the_abstract_ones_is_a_refinement_violation() -> None:
    result = check_refinement_of(SummedCounters(start=1))
    v = result.violation
    assert result.verdict == "violated" and v is not None and v.kind == "refinement"
    assert v.name == "RefinesInit"
    assert [(step.action, step.state) for step in v.trace] == [(None, Counters(0, 0))]


def test_refinement_is_not_checked_under_symmetry() -> None:
    with pytest.raises(ValueError, match="without symmetry"):
        Explorer(SummedCounters(), symmetry=True, check_refinement=True)


def test_depth_is_the_number_of_states_on_the_longest_shortest_path() -> None:
    # (0,0) .. (3,3): six steps, seven states, as TLC counts depth.
    assert explore(TwoCounters(3)).stats.depth == 7
    assert explore(TwoCounters(1)).stats.depth == 3


class SteppingCounters(TwoCounters):
    """TwoCounters with a step property: no step raises a past ``cap``."""

    def __init__(self, cap: int) -> None:
        super().__init__(limit=3)
        self.cap = cap

    def step_properties(self) -> Sequence[StepProperty[Counters]]:
        cap = self.cap
        return (StepProperty("CapA", "no step raises a past cap", lambda s, t: t.a <= max(cap, s.a)),)


def test_a_step_property_is_checked_on_every_step_sequential_parallel_and_witness() -> None:
    assert explore(SteppingCounters(cap=3)).ok
    result = explore(SteppingCounters(cap=1))
    assert result.violation is not None and result.violation.kind == "action"
    assert [str(step.action) for step in result.violation.trace[1:]] == ["Inc(a)", "Inc(a)"]
    parallel = ParallelExplorer(SteppingCounters(cap=1), workers=2).run()
    assert parallel.violation is not None and parallel.violation.kind == "action"
    assert len(parallel.violation.trace) == 3
    pinned = follow_witness(SteppingCounters(cap=1), ["Inc(b)", "Inc(a)", "Inc(a)"])
    assert pinned.violation is not None and pinned.violation.name == "CapA" and len(pinned.violation.trace) == 4
    with pytest.raises(ValueError, match="witness step 4"):
        follow_witness(SteppingCounters(cap=3), ["Inc(a)", "Inc(a)", "Inc(a)", "Inc(a)"])


def test_fuzz_checks_step_properties(tmp_path: Path) -> None:
    found = fuzz(
        SteppingCounters(cap=1),
        examples=100,
        steps=6,
        seed=1,
        spec_name="two-counters",
        trace_path=tmp_path / "t.jsonl",
    )
    assert found.trace is not None and found.trace.header.violation is not None
    assert (found.trace.header.violation.invariant, found.trace.header.violation.kind) == ("CapA", "action")
