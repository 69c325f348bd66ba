"""The two-phase commit implementation under the controlled scheduler: hypothesis
drives schedules and faults (crash and restart of any node, loss, duplication,
reordering) with atomicity checked on the implementation's own state after every
step and every trace validated against spec/twophase; random and PCT runs over
many seeds; the broken variants caught, with shrunk schedules printed as traces."""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from distcheck.checks.conformance.simulate import SimOptions, SimOutcome, simulate
from distcheck.checks.conformance.validate import validate_events
from distcheck.checks.conformance.wiring import TwoPhaseWiring
from distcheck.impl import twophase
from distcheck.impl.runtime import Choice, ChoiceSource, FaultPolicy, RandomChoices, Simulation, TraceLog
from distcheck.spec.twophase import Config, TwoPhase
from tests.impl.schedules import draw_option

ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True)
WIRING = TwoPhaseWiring()
SPEC = TwoPhase(Config(rms=3))


def atomicity_problem(sim: Simulation, cluster: twophase.Cluster) -> str | None:
    """Atomicity on the implementation's own state: what the RMs' logs hold and what
    they applied never mixes commit and abort, and the client learned no other outcome."""
    logged = {rm.name: WIRING.rm_state(sim, rm) for rm in cluster.rms}
    applied = {outcome for rm in cluster.rms for _, outcome in rm.applied}
    decided = {s for s in logged.values() if s in (twophase.COMMITTED, twophase.ABORTED)} | applied
    decided |= set(cluster.client.outcomes.values())
    if len(decided) > 1:
        return f"atomicity broken: logs {logged}, applied {sorted(applied)}, client {cluster.client.outcomes}"
    return None


def first_ordinary(options: Sequence[Choice]) -> int:
    return next((i for i, o in enumerate(options) if not o.fault), 0)


class TwoPhaseUnderFaults(RuleBasedStateMachine):
    """Each rule application is one scheduler step whose choice hypothesis draws, so a
    failing schedule shrinks to the few steps that matter.  At the end the run is
    finished without faults: every RM must then have decided, the same way."""

    variant: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.sim: Simulation | None = None
        self.cluster: twophase.Cluster | None = None

    @initialize(
        rms=st.integers(2, 3),
        # which RM (if any) votes no; mostly none, so that commits are common
        refuser=st.integers(0, 9),
        # Drawn choices advance the clock often; a long vote timeout lets commits
        # happen too, instead of nearly every run timing out into an abort.
        vote_timeout=st.sampled_from([30.0, 5.0]),
        # A coordinator crash before its decision always ends in abort; runs that
        # spare it exercise the commit path under every other fault.
        tm_may_crash=st.booleans(),
    )
    def build(self, rms: int, refuser: int, vote_timeout: float, tm_may_crash: bool) -> None:
        no_votes = [(f"r{refuser}", "t1")] if 0 < refuser <= rms else []
        self.spec = TwoPhase(Config(rms=rms))
        timing = twophase.Timing(vote_timeout=vote_timeout)
        self.cluster = twophase.cluster(rms, ("t1",), no_votes, variant=self.variant, timing=timing)
        crashable = None if tm_may_crash else tuple(n for n in self.cluster.nodes() if n != "tm")
        self.sim = Simulation(
            self.cluster.nodes(),
            ChoiceSourceUnused(),
            attrs.evolve(ALL_FAULTS, crashable=crashable),
            fault_steps=STEPS,
            max_steps=3000,
            trace=TraceLog("twophase", {"rms": rms}, source="simulate"),
        )
        self.sim.start()

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        assert self.sim is not None
        options = self.sim.options()
        if not options:
            return
        self.sim.take(options, draw_option(data, options))

    @invariant()
    def atomic(self) -> None:
        if self.sim is not None and self.cluster is not None:
            assert self.sim.result is None or self.sim.result.status != "error", self.sim.result.message
            problem = atomicity_problem(self.sim, self.cluster)
            assert problem is None, problem

    @invariant()
    def trace_is_a_behaviour(self) -> None:
        if self.sim is not None:
            v = validate_events(self.spec, self.sim.trace.events, split_key="txn")
            assert v.ok, v.message

    def teardown(self) -> None:
        sim, cluster = self.sim, self.cluster
        if sim is None or cluster is None:
            return
        broken = (
            atomicity_problem(sim, cluster) is not None
            or not validate_events(self.spec, sim.trace.events, split_key="txn").ok
            or (sim.result is not None and not sim.result.ok)
        )
        try:
            # An invariant already failed: report that, not what finishing the run says.
            while not broken and sim.result is None:
                options = sim.options()
                sim.take(options, first_ordinary(options))
            if broken:
                return
            assert sim.result is not None and sim.result.ok, sim.result.render() if sim.result else ""
            problem = atomicity_problem(sim, cluster) or WIRING.finished(sim, cluster)
            assert problem is None, problem
            v = validate_events(self.spec, sim.trace.events, split_key="txn")
            assert v.ok, v.message
        finally:
            sim.close()


class ChoiceSourceUnused(ChoiceSource):
    """The state machine takes every step itself."""

    def choose(self, options: Sequence[Choice]) -> int:
        raise AssertionError("driven by the state machine")


STEPS = 120

TestTwoPhaseUnderFaults = TwoPhaseUnderFaults.TestCase
PROFILE = settings()  # the loaded profile (tests/conftest.py): derandomized under ci
TestTwoPhaseUnderFaults.settings = settings(
    PROFILE,
    # Each example is a whole run of the protocol, so it gets two fifths of the
    # profile's examples (40 under ci and dev, 400 under thorough) and a fixed
    # number of steps: the fault window of the run.
    max_examples=PROFILE.max_examples * 2 // 5,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class ForgetfulRMUnderFaults(TwoPhaseUnderFaults):
    variant = "forgetful_rm"


def test_the_state_machine_catches_a_broken_variant() -> None:
    with pytest.raises(AssertionError) as caught:
        run_state_machine_as_test(
            ForgetfulRMUnderFaults,
            settings=settings(
                max_examples=200,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
                report_multiple_bugs=False,
                # finding is the point here; shrinking a whole stateful run takes
                # minutes (test_hypothesis_shrinks... shows shrinking)
                phases=[Phase.generate],
            ),
        )
    message = str(caught.value)
    assert "RMChooseToAbort" in message or "atomicity broken" in message, message


# --------------------------------------------------------------- many seeds


def run(
    seed: int, strategy: str = "random", variant: str | None = None, faults: FaultPolicy = ALL_FAULTS
) -> SimOutcome:
    return simulate(SPEC, WIRING, {"rms": 3}, SimOptions(seed, strategy, faults, 2000, 3, variant))


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_the_implementation_passes_controlled_schedules_with_faults(strategy: str) -> None:
    outcomes = {seed: run(seed, strategy) for seed in range(150)}
    failed = {seed: o.message for seed, o in outcomes.items() if not o.ok}
    assert not failed
    # Not vacuous: both outcomes occur, and faults were really injected.
    learned = {o.run.trace.events[-1]["action"]["type"] for o in outcomes.values()}
    assert {"RMRcvCommitMsg", "RMRcvAbortMsg"} & learned
    kinds = {s.choice.kind for o in outcomes.values() for s in o.run.schedule}
    assert {"crash", "restart", "drop", "duplicate"} <= kinds
    commits = sum(1 for o in outcomes.values() if any(e["action"]["type"] == "TMCommit" for e in o.run.trace.events))
    assert 0 < commits < len(outcomes)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_thousands_of_schedules(strategy: str) -> None:
    failed = [seed for seed in range(2000) if not run(seed, strategy).ok]
    assert not failed


# ------------------------------------------------------------------ variants


def first_caught(variant: str, seeds: range, *, invariants: bool, trace: bool) -> tuple[int, SimOutcome] | None:
    for seed in seeds:
        options = SimOptions(
            seed, "random", ALL_FAULTS, 2000, 3, variant, check_invariants=invariants, check_trace=trace
        )
        outcome = simulate(SPEC, WIRING, {"rms": 3}, options)
        if not outcome.ok:
            return seed, outcome
    return None


@pytest.mark.parametrize("variant", sorted(twophase.VARIANTS))
def test_broken_variants_are_caught_by_the_atomicity_check_alone(variant: str) -> None:
    caught = first_caught(variant, range(500), invariants=True, trace=False)
    assert caught is not None, f"{variant}: no schedule broke atomicity"
    _, outcome = caught
    assert outcome.kind == "invariant" and outcome.message.startswith("TCConsistent violated"), outcome.message


@pytest.mark.parametrize("variant", sorted(twophase.VARIANTS))
def test_broken_variants_are_caught_by_trace_validation_alone(variant: str) -> None:
    caught = first_caught(variant, range(500), invariants=False, trace=True)
    assert caught is not None, f"{variant}: every trace validated"
    _, outcome = caught
    assert outcome.kind == "invalid_trace", outcome.message
    m = outcome.validation.mismatch
    assert m is not None
    # the run stopped at the unexplained event: it is the last one recorded
    assert m.step == outcome.run.trace.events[-1]["step"]
    assert m.event["action"]["type"] in {"TMAbort", "RMChooseToAbort", "RMPrepare"}


def catches(variant: str, seeds: range) -> int | None:
    caught = first_caught(variant, seeds, invariants=True, trace=True)
    return None if caught is None else caught[0]


def test_a_failing_schedule_replays_identically_from_its_seed() -> None:
    seed = catches("commit_before_log", range(400))
    assert seed is not None
    first, again = run(seed, variant="commit_before_log"), run(seed, variant="commit_before_log")
    assert not first.ok
    assert again.run.render() == first.run.render()
    assert again.run.trace.text() == first.run.trace.text()
    assert again.message == first.message


# ------------------------------------------------------ shrunk schedules


class PlannedFaults(ChoiceSource):
    """A seeded random schedule of ordinary steps, with faults exactly where the
    plan (step number → which fault) puts them.  Hypothesis draws the seed and the
    plan and shrinks both: to fewer faults, earlier, under a smaller seed."""

    def __init__(self, seed: int, plan: dict[int, int]) -> None:
        self.ordinary = RandomChoices(seed, fault_rate=0.0)
        self.plan = plan
        self.step = 0

    def choose(self, options: Sequence[Choice]) -> int:
        self.step += 1
        faults = [i for i, o in enumerate(options) if o.fault]
        wanted = self.plan.get(self.step)
        if wanted is not None and faults:
            return faults[wanted % len(faults)]
        if len(faults) == len(options):
            return faults[0]
        return self.ordinary.choose(options)


def shrunk_failure(variant: str, crashable: tuple[str, ...]) -> tuple[tuple[int, dict[int, int]], SimOutcome]:
    faults = FaultPolicy(crash=True, max_crashes=1, crashable=crashable)

    def outcome(drawn: tuple[int, dict[int, int]]) -> SimOutcome:
        seed, plan = drawn
        return simulate(
            SPEC,
            WIRING,
            {"rms": 3},
            SimOptions(0, "random", faults, 2000, 3, variant),
            choices=PlannedFaults(seed, plan),
            environment=random.Random(1),  # every RM votes yes
        )

    drawn: tuple[int, dict[int, int]] = find(
        st.tuples(st.integers(0, 10_000), st.dictionaries(st.integers(1, 150), st.integers(0, 3), max_size=3)),
        lambda d: outcome(d).kind in ("invariant", "invalid_trace"),
        settings=settings(max_examples=1000, database=None, derandomize=True, deadline=None),
    )
    return drawn, outcome(drawn)


@pytest.mark.parametrize("variant,crashable", [("commit_before_log", ("tm",)), ("forgetful_rm", ("r1", "r2", "r3"))])
def test_hypothesis_shrinks_a_broken_variants_schedule_to_a_short_trace(
    variant: str, crashable: tuple[str, ...]
) -> None:
    drawn, outcome = shrunk_failure(variant, crashable)
    assert not outcome.ok
    crashes = [s for s in outcome.run.schedule if s.choice.kind == "crash"]
    assert len(crashes) == 1  # a crash is what exposes both bugs
    assert len(drawn[1]) == 1  # shrunk to that one fault
    text = outcome.run.render(compact=True)
    # The printed trace shows the crash and, last, the step that broke the protocol.
    assert crashes[0].choice.text in text
    assert text.splitlines()[-1].startswith(f"{outcome.run.status}: ")
    # shown with pytest -s or -rP
    print(f"{variant}: shrunk to seed {drawn[0]}, faults at steps {drawn[1]}; the failing schedule:\n{text}")
