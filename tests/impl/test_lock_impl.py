"""The lock service implementation (impl/lock) under the controlled scheduler:
crashes and restarts of any node, message loss, duplication and reordering,
process pauses (a worker frozen while the clock advances) and slow client clocks.
After every step the spec's invariants are checked on the implementation's real
state (FencedWrites on what the storage service actually applied) and the trace is
validated against spec/lock; the broken variants are caught."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from distcheck.checks.conformance.simulate import SimOptions, SimOutcome, simulate
from distcheck.checks.conformance.validate import validate_events
from distcheck.checks.conformance.wiring import LockSystem, LockWiring
from distcheck.checks.params import build_spec
from distcheck.impl.lock import server as lock_server
from distcheck.impl.runtime import (
    Choice,
    ChoiceSource,
    Context,
    FaultPolicy,
    PausingChoices,
    RandomChoices,
    Simulation,
    SlowClock,
    TraceLog,
)
from tests.impl.schedules import draw_option

ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True)
WIRING = LockWiring()
_, PARAMS, SPEC = build_spec("lock", list(WIRING.default_params))


def run(seed: int, strategy: str = "random", variant: str | None = None) -> SimOutcome:
    return simulate(SPEC, WIRING, PARAMS, SimOptions(seed, strategy, ALL_FAULTS, 2000, 3, variant))


def events(outcome: SimOutcome, kind: str) -> int:
    return sum(1 for e in outcome.run.trace.events if e["action"]["type"] == kind)


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_the_service_passes_controlled_schedules_with_faults(strategy: str) -> None:
    outcomes = {seed: run(seed, strategy) for seed in range(40)}
    failed = {seed: o.message for seed, o in outcomes.items() if not o.ok}
    assert failed == {}
    assert all(o.validation.ok for o in outcomes.values())
    # The runs did what makes a lock service hard, not just the easy path.
    assert sum(events(o, "Grant") for o in outcomes.values()) > 40
    assert any(events(o, "Expire") for o in outcomes.values())  # a lease ran out unreleased
    assert any(events(o, "AcceptWrite") >= 2 for o in outcomes.values())
    kinds = {r.choice.kind for o in outcomes.values() for r in o.run.schedule}
    assert {"crash", "restart", "drop", "duplicate"} <= kinds


@pytest.mark.slow
def test_a_stale_write_is_rejected_by_storage_in_some_schedule() -> None:
    """The paused-client scenario happens and the fencing token stops it."""
    rejected = next((seed for seed in range(300) if events(run(seed), "RejectWrite")), None)
    assert rejected is not None, "no schedule in 300 produced a stale write"


@pytest.mark.parametrize(
    ("variant", "caught_by"),
    [
        # The paused writer needs a pause of several ticks right before its write
        # leaves and a waiter ready to take over: about one schedule in a hundred,
        # too long a search for the default run.
        pytest.param("unfenced_storage", "FencedWrites", marks=pytest.mark.slow),
        ("no_drift_margin", "LeaseValidity"),
        ("volatile_leases", "MutualExclusion"),
    ],
)
def test_broken_variants_are_caught(variant: str, caught_by: str) -> None:
    """Each broken variant fails some schedule; the trace check and the invariant on
    the real state are independent, and the invariant alone catches it too."""
    for seed in range(400):
        outcome = run(seed, variant=variant)
        if not outcome.ok:
            break
    else:
        pytest.fail(f"{variant}: 400 schedules passed")
    assert outcome.kind in ("invariant", "invalid_trace"), outcome.message
    options = SimOptions(seed, "random", ALL_FAULTS, 2000, 3, variant, check_trace=False)
    invariants_only = simulate(SPEC, WIRING, PARAMS, options)
    assert invariants_only.kind == "invariant", invariants_only.message
    assert caught_by in invariants_only.message, invariants_only.message


def test_the_same_seed_gives_the_same_run() -> None:
    first, second = run(7), run(7)
    assert first.run.indices == second.run.indices
    assert first.run.trace.lines() == second.run.trace.lines()


# ------------------------------------------------------------ the server alone


def test_a_restarted_server_holds_exactly_what_it_logged() -> None:
    state = lock_server.LockState()
    records = [
        {"op": "acquire", "lock": "L", "token": 1, "session": "c1", "req": "c1/1", "ttl": 3},
        {"op": "grant", "lock": "L", "token": 1},
        {"op": "acquire", "lock": "L", "token": 2, "session": "c2", "req": "c2/1", "ttl": 3},
        {"op": "tick", "now": 1},
        {"op": "renew", "lock": "L", "token": 1},
    ]
    for r in records:
        state.apply(r)
    recovered = lock_server.recover(records)
    assert recovered == state
    table = recovered.locks["L"]
    assert recovered.now == 1 and table.queue == [2] and table.last_granted == 1
    assert table.leases[1] == lock_server.LeaseRecord("c1", 0, 4)  # renewed at tick 1 for 3 ticks
    forgetful = lock_server.recover(records)
    lock_server.forget_leases(forgetful)
    assert forgetful.locks["L"].leases == {} and "c1" not in forgetful.locks["L"].requests


# ------------------------------------------------------ hypothesis-drawn runs


class LockServiceUnderFaults(RuleBasedStateMachine):
    """Hypothesis draws every scheduler choice, the pauses (a worker frozen while
    the clock advances) and each worker's clock rate, so a failing schedule shrinks."""

    variant: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.sim: Simulation | None = None
        self.system: LockSystem | None = None

    @initialize(slow=st.lists(st.sampled_from([1.0, 0.9, 0.7]), min_size=2, max_size=2))
    def build(self, slow: list[float]) -> None:
        # The environment's draws (the clock rates) come from hypothesis, not a seed.
        system = WIRING.build(PARAMS, self.variant, random.Random(0))
        for worker, rate in zip(system.service.workers, slow):
            worker.wrap = self._clock(system, worker.name, rate)
        self.system = system
        self.sim = Simulation(
            WIRING.nodes(system),
            Unused(),
            ALL_FAULTS,
            fault_steps=STEPS,
            max_steps=3000,
            trace=TraceLog("lock", PARAMS, source="simulate"),
        )
        self.sim.start()

    @staticmethod
    def _clock(system: LockSystem, worker: str, rate: float) -> Callable[[Context], Context]:
        def wrap(ctx: Context) -> Context:
            system.clocks[worker] = SlowClock(ctx, rate)
            return system.clocks[worker]

        return wrap

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        assert self.sim is not None
        options = self.sim.options()
        if not options:
            return
        self.sim.take(options, draw_option(data, options))

    @rule(worker=st.sampled_from(["w1", "w2"]), advances=st.integers(1, 4))
    def pause(self, worker: str, advances: int) -> None:
        """Freeze ``worker`` while everything else, the clock included, goes on."""
        assert self.sim is not None
        while advances > 0 and self.sim.result is None:
            options = self.sim.options()
            others = [i for i, o in enumerate(options) if not o.fault and PausingChoices.node_of(o) != worker]
            if not others:
                return
            pick = next((i for i in others if options[i].kind != "advance"), others[0])
            advances -= options[pick].kind == "advance"
            self.sim.take(options, pick)

    @invariant()
    def spec_invariants_hold_on_the_real_state(self) -> None:
        if self.sim is None or self.system is None:
            return
        assert self.sim.result is None or self.sim.result.status != "error", self.sim.result.message
        state = WIRING.abstract(self.sim, self.system)
        for inv in SPEC.invariants():
            assert inv.holds(state), f"{inv.name} violated\n{state}"

    @invariant()
    def trace_is_a_behaviour(self) -> None:
        if self.sim is not None:
            v = validate_events(SPEC, self.sim.trace.events, split_key="lock")
            assert v.ok, v.message

    def teardown(self) -> None:
        sim, system = self.sim, self.system
        if sim is None or system is None:
            return
        try:
            if not validate_events(SPEC, sim.trace.events, split_key="lock").ok:
                return  # reported by the invariant
            while sim.result is None:
                options = sim.options()
                sim.take(options, next((i for i, o in enumerate(options) if not o.fault), 0))
            assert sim.result.ok, sim.result.render(compact=True)
            problem = WIRING.finished(sim, system)
            assert problem is None, problem
        finally:
            sim.close()


class Unused(ChoiceSource):
    def choose(self, options: Sequence[Choice]) -> int:
        raise AssertionError("driven by the state machine")


STEPS = 150

TestLockServiceUnderFaults = LockServiceUnderFaults.TestCase
PROFILE = settings()
TestLockServiceUnderFaults.settings = settings(
    PROFILE,
    # Each example is a whole run with validation after every step: a tenth of the
    # profile's examples (10 under ci and dev, 100 under thorough).
    max_examples=max(PROFILE.max_examples // 10, 5),
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_pausing_choices_freeze_a_node_while_time_advances() -> None:
    choices = PausingChoices(RandomChoices(1), ("w1",), random.Random(0), rate=1.0, advances=(2, 2))
    options = [
        Choice("run", "w1.main", "run w1.main"),
        Choice("run", "server.main", "run server.main"),
        Choice("advance", "clock", "advance"),
    ]
    picks = [options[choices.choose(options)] for _ in range(40)]
    advanced = 0
    for pick in picks:  # until the clock has advanced twice, w1 never runs
        if advanced >= 2:
            break
        assert pick.agent != "w1.main"
        advanced += pick.kind == "advance"
    assert choices.pauses >= 1
