"""The parallel explorer finds what the sequential one finds."""

from __future__ import annotations

import pytest

from distcheck.checks.cli import main
from distcheck.checks.search.explore import Explorer
from distcheck.checks.search.parallel import ParallelExplorer
from distcheck.spec.registry import REGISTRY
from tests.checks.test_explore import Counters, TwoCounters

CORRECT = [("twophase", {}, False), ("twophase", {"rms": 5}, True), ("paxoscommit", {}, False), ("lock", {}, False)]


@pytest.mark.parametrize("name,params,symmetry", CORRECT)
def test_same_counts_as_the_sequential_explorer(name: str, params: dict[str, int], symmetry: bool) -> None:
    spec = REGISTRY[name].make(None, **params)
    one = Explorer(spec, symmetry=symmetry).run()
    two = ParallelExplorer(spec, workers=2, symmetry=symmetry).run()
    assert two.verdict == one.verdict == "ok"
    assert (two.stats.distinct_states, two.stats.generated_states, two.stats.depth) == (
        one.stats.distinct_states,
        one.stats.generated_states,
        one.stats.depth,
    )
    assert two.reached == one.reached


@pytest.mark.parametrize("name,variant", [(n, v) for n in ("twophase", "paxoscommit") for v in REGISTRY[n].variants])
def test_counterexamples_are_as_short_and_replay(name: str, variant: str) -> None:
    spec = REGISTRY[name].make(variant=variant)
    one = Explorer(spec).run().violation
    two = ParallelExplorer(spec, workers=3).run().violation
    assert one is not None and two is not None
    assert (two.name, len(two.trace)) == (one.name, len(one.trace))
    state = two.trace[0].state
    for step in two.trace[1:]:
        assert spec.next_state(state, step.action) == step.state
        state = step.state
    assert not next(inv for inv in spec.invariants() if inv.name == two.name).holds(state)


def test_deadlock_depth_limit_and_unreached() -> None:
    deadlock = ParallelExplorer(TwoCounters(2), workers=2, check_deadlock=True).run()
    assert deadlock.verdict == "violated" and deadlock.violation is not None
    assert deadlock.violation.trace[-1].state == Counters(2, 2)
    cut = ParallelExplorer(TwoCounters(3), workers=2, max_depth=3).run()
    assert cut.stats.distinct_states == 6 and cut.stats.depth == 3 and not cut.complete
    assert cut.verdict == "bounded" and cut.unreached == ("BothAtLimit",) and cut.violation is None
    unreached = ParallelExplorer(TwoCounters(3, bound=4), workers=2).run()
    assert unreached.violation is not None and unreached.violation.kind == "unreached"


def test_cli_workers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "twophase", "--workers", "2"]) == 0
    assert "288 distinct states" in capsys.readouterr().out
    assert main(["check", "twophase", "--workers", "2", "--refinement"]) == 2
    assert "drop --workers" in capsys.readouterr().err


# Every registered spec at its default size, and every broken variant: two workers
# find what one process finds.  (The parallel explorer checks safety; a liveness
# property is checked on the whole graph by the sequential explorer, so a variant
# whose counterexample is a liveness one is left out of the second test.)


# The two largest default sizes are smaller here, to keep the default run short:
# Raft with terms up to 2 (1,760 states), ABD with two servers (315).
# At their default sizes they are in the slow run (`pytest -m slow`).
SMALLER: dict[str, dict[str, int]] = {"raft": {"max_term": 2}, "abd": {"servers": 2}}


@pytest.mark.parametrize(
    "name,params",
    [(n, SMALLER.get(n, {})) for n in sorted(REGISTRY)]
    + [pytest.param(n, {}, marks=pytest.mark.slow, id=f"{n}-default") for n in sorted(SMALLER)],
)
def test_every_spec_same_counts_with_two_workers(name: str, params: dict[str, int]) -> None:
    spec = REGISTRY[name].make(None, **params)
    one = Explorer(spec).run()
    two = ParallelExplorer(spec, workers=2).run()
    assert (two.stats.distinct_states, two.stats.generated_states, two.stats.depth, two.complete) == (
        one.stats.distinct_states,
        one.stats.generated_states,
        one.stats.depth,
        one.complete,
    )
    assert two.reached == one.reached
    if one.violation is None or one.violation.kind != "liveness":
        assert two.verdict == one.verdict


# A variant whose shortest counterexample lies too deep to search for (hours) pins it
# instead (``--witness``): it is left out here, as `check all` leaves it.
EVERY_VARIANT = [
    (n, v) for n in sorted(REGISTRY) for v, info in REGISTRY[n].build.variants().items() if not info.witness
]


@pytest.mark.slow
@pytest.mark.parametrize("name,variant", EVERY_VARIANT)
def test_every_variant_same_shortest_counterexample_with_two_workers(name: str, variant: str) -> None:
    spec = REGISTRY[name].make(variant=variant)
    one = Explorer(spec).run().violation
    assert one is not None
    if one.kind == "liveness":
        pytest.skip("a liveness counterexample: the sequential explorer's alone")
    two = ParallelExplorer(spec, workers=2).run().violation
    assert two is not None
    assert (two.name, two.kind, len(two.trace)) == (one.name, one.kind, len(one.trace))
    state = two.trace[0].state
    assert state in list(spec.init_states())
    for step in two.trace[1:]:
        assert spec.next_state(state, step.action) == step.state
        state = step.state
