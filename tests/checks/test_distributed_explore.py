"""The exhaustive search on a Dask cluster finds what the sequential explorer finds.

One local cluster (two worker processes) serves the whole module; each test
compares a search on it with ``Explorer`` on the same spec.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from distcheck.checks.search.distributed import DaskExplorer, RegistrySpec, explore_on_dask
from distcheck.checks.search.explore import Explorer, Result
from distcheck.checks.search.swarm import SchedulerError
from distcheck.spec.contract import Spec
from distcheck.spec.registry import REGISTRY
from tests.checks.test_explore import Counters, TwoCounters

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    # Port 0 for the dashboard: parallel test workers, or anyone's cluster on this
    # machine, may hold the default 8787.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def sequential(name: str, params: dict[str, Any], variant: str | None = None, **options: Any) -> Result:
    return Explorer(REGISTRY[name].make(variant, **params), **options).run()


def on_dask(address: str, name: str, params: dict[str, Any], variant: str | None = None, **options: Any) -> Result:
    full = {**REGISTRY[name].defaults(variant), **params}
    return explore_on_dask(
        name,
        full,
        variant,
        options.get("symmetry", False),
        options.get("max_depth"),
        options.get("check_deadlock", False),
        address,
        shards=options.get("shards"),
    )


def assert_replays(spec: Spec[Any, Any], result: Result) -> None:
    """The counterexample is a behaviour of the spec from an initial state."""
    assert result.violation is not None
    trace = result.violation.trace
    assert trace[0].state in list(spec.init_states())
    for before, step in itertools.pairwise(trace):
        assert spec.next_state(before.state, step.action) == step.state


CORRECT = [
    ("twophase", {"rms": 3}, False),
    ("twophase", {"rms": 4}, True),
    ("paxoscommit", {}, False),
    ("retry", {}, False),  # many levels (25)
]


@pytest.mark.parametrize("name,params,symmetry", CORRECT)
def test_same_counts_depth_and_reached_as_the_sequential_explorer(
    scheduler: str, name: str, params: dict[str, Any], symmetry: bool
) -> None:
    one = sequential(name, params, symmetry=symmetry)
    dask = on_dask(scheduler, name, params, symmetry=symmetry)
    assert dask.verdict == one.verdict == "ok" and dask.complete
    assert (dask.stats.distinct_states, dask.stats.generated_states, dask.stats.depth) == (
        one.stats.distinct_states,
        one.stats.generated_states,
        one.stats.depth,
    )
    assert dask.reached == one.reached and dask.reached


VIOLATED = [
    ("twophase", "commit_early"),
    ("paxos", "broken_promise"),
    ("paxoscommit", "forget_vote"),
    ("circuit_breaker", "racing_reset"),  # a step property: the trace ends with the bad step
]


@pytest.mark.parametrize("name,variant", VIOLATED)
def test_counterexamples_are_as_short_and_replay(scheduler: str, name: str, variant: str) -> None:
    one = sequential(name, {}, variant)
    dask = on_dask(scheduler, name, {}, variant, shards=3)  # more shards than workers
    assert dask.verdict == one.verdict == "violated"
    assert one.violation is not None and dask.violation is not None
    assert (dask.violation.kind, dask.violation.name, len(dask.violation.trace)) == (
        one.violation.kind,
        one.violation.name,
        len(one.violation.trace),
    )
    assert dask.stats.depth == one.stats.depth
    spec = REGISTRY[name].make(variant)
    assert_replays(spec, dask)
    last, final = dask.violation.trace[-2].state, dask.violation.trace[-1].state
    if dask.violation.kind == "action":
        assert not next(p for p in spec.step_properties() if p.name == dask.violation.name).holds(last, final)
    else:
        assert not next(inv for inv in spec.invariants() if inv.name == dask.violation.name).holds(final)


def test_depth_limit_is_bounded_as_in_the_sequential_explorer(scheduler: str) -> None:
    one = sequential("twophase", {}, max_depth=5)
    dask = on_dask(scheduler, "twophase", {}, max_depth=5)
    assert dask.verdict == one.verdict == "bounded" and not dask.complete and not one.complete
    assert one.stats.depth == 5
    assert (dask.stats.distinct_states, dask.stats.generated_states, dask.stats.depth) == (
        one.stats.distinct_states,
        one.stats.generated_states,
        one.stats.depth,
    )
    assert dask.unreached == one.unreached and dask.unreached


def test_deadlock_on_a_registry_spec(scheduler: str) -> None:
    one = sequential("event_store", {}, check_deadlock=True)
    dask = on_dask(scheduler, "event_store", {}, check_deadlock=True)
    assert one.violation is not None and dask.violation is not None
    assert dask.violation.kind == one.violation.kind == "deadlock"
    assert len(dask.violation.trace) == len(one.violation.trace)
    spec = REGISTRY["event_store"].make()
    assert_replays(spec, dask)
    assert list(spec.successors(dask.violation.trace[-1].state)) == []


def test_any_picklable_recipe_deadlock_and_unreached(scheduler: str) -> None:
    # A spec outside the registry, built on the workers from a picklable recipe.
    deadlock = DaskExplorer(functools.partial(TwoCounters, 2), scheduler, check_deadlock=True).run()
    assert deadlock.verdict == "violated" and deadlock.violation is not None
    assert deadlock.violation.trace[-1].state == Counters(2, 2)
    cut = DaskExplorer(functools.partial(TwoCounters, 3), scheduler, max_depth=3).run()
    assert cut.stats.distinct_states == 6 and cut.stats.depth == 3 and not cut.complete
    assert cut.verdict == "bounded" and cut.unreached == ("BothAtLimit",) and cut.violation is None
    unreached = DaskExplorer(functools.partial(TwoCounters, 3, bound=4), scheduler).run()
    assert unreached.violation is not None and unreached.violation.kind == "unreached"


def test_registry_recipe_pickles_to_the_same_spec() -> None:
    import pickle

    recipe = RegistrySpec("twophase", {"rms": 4}, "commit_early")
    spec = pickle.loads(pickle.dumps(recipe))()
    assert list(spec.init_states()) == list(REGISTRY["twophase"].make("commit_early", rms=4).init_states())


@pytest.mark.parametrize(
    "address,words",
    [("tcp://127.0.0.1:1", "cannot reach the Dask scheduler at tcp://127.0.0.1:1"), ("localhost:8786", "tcp://HOST")],
)
def test_an_unusable_scheduler_is_one_clear_error(address: str, words: str) -> None:
    explorer = DaskExplorer(RegistrySpec("twophase", {}), address, connect_timeout=1.0)
    with pytest.raises(SchedulerError) as caught:
        explorer.run()
    message = str(caught.value)
    assert words in message and "\n" not in message


def test_without_the_dask_client_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(SchedulerError) as caught:
        explore_on_dask("twophase", {}, None, False, None, False, "tcp://127.0.0.1:8786")
    assert "distcheck[swarm]" in str(caught.value) and "\n" not in str(caught.value)


def test_the_check_command_explores_on_the_scheduler(scheduler: str, capsys: pytest.CaptureFixture[str]) -> None:
    # `distcheck check SPEC --scheduler ADDRESS` without --swarm: the whole search on
    # the cluster, reported as the sequential run reports it.
    from distcheck.checks.cli import main

    assert main(["check", "twophase", "-p", "rms=3", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert main(["check", "twophase", "-p", "rms=3", "--json", "--scheduler", scheduler]) == 0
    spread = json.loads(capsys.readouterr().out)
    assert spread["scheduler"] == scheduler
    counts = ("distinct_states", "generated_states", "depth", "complete", "unreached")
    assert [spread[k] for k in counts] == [alone[k] for k in counts] == [288, 1146, 11, True, []]
    assert spread["verdict"] == alone["verdict"] == "ok"
    assert main(["check", "twophase", "--variant", "commit_early", "--scheduler", scheduler]) == 1
    assert "TCConsistent violated" in capsys.readouterr().out
