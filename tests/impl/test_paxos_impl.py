"""The Multi-Paxos replicated log under the controlled scheduler: replica crashes
and restarts, partitions that cut a leader off from the other replicas, loss,
duplication and reordering, plus a nemesis aimed at the leader.  After every step,
Agreement in every slot (for what acceptors voted and for what replicas learned);
at the end of every run, every client done, every replica holding the same log and
store, the clients' results linearizable, and the trace a behaviour of spec/paxos
slot by slot.  The broken variants are caught, each by more than one check where
the bug is visible to more than one."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from distcheck.checks.cli import main
from distcheck.checks.conformance.simulate import SimOptions, SimOutcome, simulate
from distcheck.checks.conformance.wiring import PaxosWiring
from distcheck.checks.conformance.wiring.paxos_log import project, validate_log
from distcheck.impl import paxos
from distcheck.impl.runtime import Choice, ChoiceSource, FaultPolicy, RandomChoices, Simulation, TraceLog
from distcheck.spec.paxos import Config, Paxos
from tests.impl.schedules import draw_option

ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True, partition=True)
WIRING = PaxosWiring()
SPEC = Paxos(Config(acceptors=3))
STEPS = 5000


def run(
    seed: int,
    strategy: str = "random",
    variant: str | None = None,
    *,
    invariants: bool = True,
    trace: bool = True,
    replicas: int = 3,
) -> SimOutcome:
    spec = SPEC if replicas == 3 else Paxos(Config(acceptors=replicas))
    options = SimOptions(seed, strategy, ALL_FAULTS, STEPS, 3, variant, check_invariants=invariants, check_trace=trace)
    return simulate(spec, WIRING, {"acceptors": replicas}, options)


# ------------------------------------------------------------ the state machine


def test_the_store_applies_put_get_and_cas_in_log_order() -> None:
    store = paxos.KeyValueStore()
    ops = [paxos.put("x", 1), paxos.cas("x", 1, 2), paxos.cas("x", 1, 3), paxos.get("x"), paxos.get("y")]
    for seq, op in enumerate(ops, 1):
        store.apply({"id": f"c1:{seq}", "client": "c1", "seq": seq, "op": op})
    assert store.data == {"x": 2}
    assert store.result("c1", 5) == (True, None)  # absent key
    assert store.sessions["c1"] == (5, None)


def test_a_command_chosen_in_two_slots_is_applied_once() -> None:
    store = paxos.KeyValueStore()
    cmd = {"id": "c1:1", "client": "c1", "seq": 1, "op": paxos.cas("x", None, 1)}
    store.apply(cmd)
    store.apply(dict(paxos.NOOP))
    store.apply(cmd)  # re-proposed by a new leader after the client re-sent it
    assert store.data == {"x": 1}
    assert store.result("c1", 1) == (True, True)  # the first application's result stands


def test_bad_input_is_refused_with_one_clear_line() -> None:
    with pytest.raises(ValueError, match="unknown operation 'incr'; allowed: get, put, cas"):
        paxos.apply_op({}, {"op": "incr", "key": "x"})
    with pytest.raises(ValueError, match="unknown variant 'typo'; allowed: forgotten_vote"):
        paxos.cluster(3, variant="typo")
    with pytest.raises(ValueError, match="at least 1 replica"):
        paxos.cluster(0)
    with pytest.raises(ValueError, match="not among its peers"):
        paxos.Replica("r9", ["r1", "r2"])


# ------------------------------------------------------------------- many seeds


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_the_log_keeps_agreement_under_faults(strategy: str) -> None:
    outcomes = {seed: run(seed, strategy) for seed in range(40)}
    failed = {seed: o.message for seed, o in outcomes.items() if not o.ok}
    assert not failed
    assert all(o.validation.ok for o in outcomes.values())
    # Not vacuous: the faults happened, leaders changed, and a new leader
    # re-proposed what an old one had left in some slot.
    kinds = Counter(s.choice.kind for o in outcomes.values() for s in o.run.schedule)
    assert {"crash", "restart", "drop", "duplicate", "partition", "heal"} <= set(kinds)
    reproposed = 0
    for o in outcomes.values():
        for slot in project(o.run.trace.events, ["r1", "r2", "r3"]):
            ballots = {e["ballot"] for e in slot.events if e["action"]["type"] == "Phase2a"}
            reproposed += len(ballots) > 1
    assert reproposed > 0


def test_lagging_replicas_catch_up_and_clients_get_every_kind_of_answer() -> None:
    outcomes = [run(seed) for seed in range(40, 60)]
    assert all(o.ok for o in outcomes), [o.message for o in outcomes if not o.ok]
    events = [e for o in outcomes for e in o.run.trace.events]
    assert len({e["slot"] for e in events if "slot" in e}) >= 5
    # the schedules show catch-up at work (a replica asking for entries it missed)
    assert any("CatchUp" in s.choice.text for o in outcomes for s in o.run.schedule)


def test_five_replicas() -> None:
    outcomes = [run(seed, replicas=5) for seed in range(8)]
    assert all(o.ok for o in outcomes), [o.message for o in outcomes if not o.ok]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_thousands_of_schedules(strategy: str) -> None:
    failed = [seed for seed in range(1000) if not run(seed, strategy).ok]
    assert not failed


# --------------------------------------------------------------------- variants


def first_caught(variant: str, seeds: range, *, invariants: bool, trace: bool) -> tuple[int, SimOutcome] | None:
    for seed in seeds:
        outcome = run(seed, variant=variant, invariants=invariants, trace=trace)
        if not outcome.ok:
            return seed, outcome
    return None


@pytest.mark.parametrize("variant", ["forgotten_vote", "ignore_reported_value"])
def test_a_variant_that_breaks_agreement_is_caught_by_the_agreement_check_alone(variant: str) -> None:
    caught = first_caught(variant, range(200), invariants=True, trace=False)
    assert caught is not None, f"{variant}: no schedule broke agreement"
    _, outcome = caught
    assert outcome.kind == "invariant"
    assert outcome.message.startswith("Agreement violated in slot"), outcome.message


@pytest.mark.parametrize("variant", ["forgotten_vote", "ignore_reported_value"])
def test_a_variant_that_breaks_agreement_is_caught_by_trace_validation_alone(variant: str) -> None:
    caught = first_caught(variant, range(200), invariants=False, trace=True)
    assert caught is not None, f"{variant}: every trace validated"
    _, outcome = caught
    assert outcome.kind == "invalid_trace", outcome.message
    m = outcome.validation.mismatch
    assert m is not None and m.group is not None and m.group.startswith("slot ")
    # the new leader's proposal is what no behaviour of Paxos explains
    assert m.event["action"]["type"] == "Phase2a"
    assert "recorded by r" in m.reason


def test_stale_reads_are_caught_by_linearizability_alone() -> None:
    caught = first_caught("local_reads", range(300), invariants=True, trace=True)
    assert caught is not None, "local_reads: every history was linearizable"
    seed, outcome = caught
    assert outcome.kind == "invariant"
    assert "not linearizable" in outcome.message and "get(" in outcome.message
    # Every slot still agrees and the trace is a behaviour of Paxos: only the
    # clients' view shows the bug.
    assert outcome.validation.ok
    assert "Agreement" not in outcome.message
    assert run(seed).ok  # the same schedule with reads through the log is fine


def test_a_failing_schedule_replays_identically_from_its_seed() -> None:
    caught = first_caught("ignore_reported_value", range(50), invariants=True, trace=True)
    assert caught is not None
    seed, first = caught
    again = run(seed, variant="ignore_reported_value")
    assert again.run.render() == first.run.render()
    assert again.run.trace.text() == first.run.trace.text()
    assert again.message == first.message


def test_durability_every_vote_in_the_trace_is_on_disk() -> None:
    """The implementation's own promise: an acceptor never answers with a vote it
    has not synced.  The forgotten_vote variant breaks exactly this."""

    def unsynced_votes(variant: str | None) -> int:
        missing = 0
        for seed in range(5):
            cluster = paxos.cluster(3, {"c1": [paxos.put("x", 1), paxos.get("x")]}, variant=variant)
            tracelog = TraceLog("paxos")
            sim = Simulation(cluster.nodes(), RandomChoices(seed), FaultPolicy(), max_steps=1500, trace=tracelog)
            sim.run()
            for r in cluster.replicas:
                durable = {
                    (rec["vote"], rec["bal"], paxos.command_id(rec["cmd"]))
                    for rec in sim.durable_records(r.name, paxos.Replica.ACCEPTOR_LOG)
                    if "vote" in rec
                }
                for e in tracelog.events:
                    a = e["action"]
                    if e["actor"] == r.name and a["type"] == "Phase2b":
                        missing += (e["slot"], a["bal"], a["val"]) not in durable
        return missing

    assert unsynced_votes(None) == 0
    assert unsynced_votes("forgotten_vote") > 0


# ------------------------------------------------------------ hypothesis schedules


class DrawnSchedule(ChoiceSource):
    """Hypothesis draws every choice of the fault window (about one step in twenty
    a fault); after it, the first ordinary option, which processes everything
    pending before time advances, so the run finishes."""

    def __init__(self, data: st.DataObject, window: int) -> None:
        self.data = data
        self.window = window
        self.steps = 0

    def choose(self, options: Sequence[Choice]) -> int:
        self.steps += 1
        if self.steps <= self.window:
            return draw_option(self.data, options)
        return next((i for i, o in enumerate(options) if not o.fault), 0)


def drawn_run(data: st.DataObject, variant: str | None = None, window: int = 400) -> SimOutcome:
    seed = data.draw(st.integers(0, 2**16), label="workload seed")
    return simulate(
        SPEC,
        WIRING,
        {"acceptors": 3},
        SimOptions(seed, "random", ALL_FAULTS, 3 * window, 3, variant),
        choices=DrawnSchedule(data, window),
        environment=random.Random(seed),
    )


# A third of the profile's examples: each is a whole run of 1,200 steps, and the
# seeded runs above cover the same faults (the thorough profile still draws 333).
@settings(
    max_examples=settings().max_examples // 3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_hypothesis_drawn_schedules_keep_every_property(data: st.DataObject) -> None:
    outcome = drawn_run(data)
    assert outcome.ok, outcome.run.render(compact=True)


def test_hypothesis_finds_a_broken_variant() -> None:
    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],  # finding is the point; shrinking whole runs takes minutes
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        report_multiple_bugs=False,
    )
    @given(st.data())
    def broken(data: st.DataObject) -> None:
        outcome = drawn_run(data, "ignore_reported_value")
        assert outcome.ok, outcome.message

    with pytest.raises(AssertionError) as caught:
        broken()
    message = str(caught.value)
    assert "Agreement violated" in message or "no behaviour of paxos" in message, message


def test_validate_log_agrees_with_the_run() -> None:
    """The end-of-run validation is the same function an external implementation's
    trace goes through."""
    outcome = run(3)
    events: list[dict[str, Any]] = outcome.run.trace.events
    assert validate_log(events, ["r1", "r2", "r3"]).ok
    tampered = [dict(e) for e in events]
    i = next(i for i, e in enumerate(tampered) if e["action"]["type"] == "Phase2b")
    tampered[i] = {**tampered[i], "action": {**tampered[i]["action"], "val": "forged"}}
    verdict = validate_log(tampered, ["r1", "r2", "r3"])
    assert not verdict.ok and verdict.mismatch is not None and verdict.mismatch.step == tampered[i]["step"]


# ----------------------------------------------------------------------- the CLI


def test_simulate_and_validate_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "run.jsonl"
    assert main(["simulate", "paxos", "--seed", "3", "--faults", "crash,partition", "--trace-out", str(trace)]) == 0
    assert "ok: 1 schedule passed" in capsys.readouterr().out
    assert main(["validate", "paxos", str(trace), "--split", "slot"]) == 0
    assert "events explained, in" in capsys.readouterr().out
    # Without --split slot, one clear line says how to validate a replicated log.
    assert main(["validate", "paxos", str(trace)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--split slot" in err
    # A forged vote is refused, in the trace's own names.
    lines = trace.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if '"Phase2b"' in line)
    forged = json.loads(lines[i])
    forged["action"]["val"] = "forged"
    lines[i] = json.dumps(forged)
    trace.write_text("\n".join(lines) + "\n")
    assert main(["validate", "paxos", str(trace), "--split", "slot"]) == 1
    assert "for forged" in capsys.readouterr().out
    # A malformed step is bad input: one line and exit 2, not a mismatch.
    del forged["action"]["bal"]
    lines[i] = json.dumps(forged)
    trace.write_text("\n".join(lines) + "\n")
    assert main(["validate", "paxos", str(trace), "--split", "slot"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a non-negative integer 'bal'" in err


def test_simulate_catches_a_variant_and_prints_its_replay(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["simulate", "paxos", "--runs", "20", "--faults", "crash,drop,partition", "--variant", "ignore_reported_value"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "replay: distcheck simulate paxos" in out and "--variant ignore_reported_value" in out
