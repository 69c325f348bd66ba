"""The orchestrated saga library under the controlled scheduler: trips booked (flight,
hotel, payment) with refusals, transient compensation failures, lost, duplicated and
reordered messages and crashes of any node; semantic atomicity and exactly-once
effects checked on the participants' own books, and every run's trace validated
against spec/saga; the orchestrator crashed at every step boundary in turn; an undo
made to overtake its step; the broken variants caught by each check alone."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.conformance.validate import validate_events
from distcheck.checks.conformance.wiring.saga import book_problems, orchestrated
from distcheck.impl.runtime import Choice, ChoiceSource, FaultPolicy, RandomChoices, Simulation, TraceLog
from distcheck.impl.saga import orchestrator as orch
from distcheck.impl.saga.participant import DONE, REFUSED, Participant, StepRefused, TryAgain
from distcheck.spec.saga import Config, Saga

TRIP = orch.SagaDefinition(
    "trip",
    (
        orch.Step("reserve_flight", "flights", "cancel_flight"),
        orch.Step("book_hotel", "hotels", "cancel_hotel"),
        orch.Step("charge_card", "payments", "refund_card"),
    ),
)
ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True)
# A lost message is one never delivered, which the spec's message set allows without
# a step: the trace needs no loss budget.  Crashes: at most the scheduler's three.
SPEC = Saga(Config(steps=3, losses=0, crashes=3))


def trip_cluster(
    sagas: Sequence[str] = ("s1",),
    declined: Sequence[str] = (),
    flaky_refunds: int = 0,
    variant: str | None = None,
    participant_variant: str | None = None,
    timing: orch.Timing = orch.Timing(step_timeout=20.0),
) -> orch.Cluster:
    """Three services and an orchestrator; the card is declined for the sagas in
    ``declined``, and the flight's cancellation fails ``flaky_refunds`` times first."""
    failures = [flaky_refunds]

    def charge(saga: str, data: Any) -> str:
        if saga in declined:
            raise StepRefused("card declined")
        return f"charged {data['traveller']}"

    def cancel(saga: str, seat: Any) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise TryAgain("the airline's system is busy")

    services = {
        "flights": {"reserve_flight": lambda saga, data: f"seat for {data['traveller']}", "cancel_flight": cancel},
        "hotels": {"book_hotel": lambda saga, data: "room 7", "cancel_hotel": lambda saga, room: None},
        "payments": {"charge_card": charge, "refund_card": lambda saga, charge: None},
    }
    participants = [Participant(name, handlers, participant_variant) for name, handlers in services.items()]
    orchestrator = orch.Orchestrator("orchestrator", {"trip": TRIP}, timing, variant)
    client = orch.Client(
        "client", "orchestrator", [(s, "trip", {"traveller": f"t-{s}"}) for s in sagas], timing.client_retry
    )
    return orch.Cluster(orchestrator, participants, client)


def books(sim: Simulation, cluster: orch.Cluster) -> dict[str, list[dict[str, Any]]]:
    """Each participant's durable book, record by record."""
    return {p.name: sim.durable_records(p.name, Participant.LOG) for p in cluster.participants}


def saga_problems(sim: Simulation, cluster: orch.Cluster, finished: bool) -> str | None:
    """What is wrong with the participants' real state (the simulate wiring's check of
    their books: each step and compensation at most once, nothing undone that did not
    run; and once the run is over, every saga's effects all in force or none, as its
    outcome says)."""
    return book_problems(sim, orchestrated(cluster), finished)


def ended_well(sim: Simulation, cluster: orch.Cluster, state: bool = True, trace: bool = True) -> str | None:
    """At the end: the participants' state (``saga_problems``), then the trace, saga
    by saga, a behaviour of spec/saga (either check may be left out)."""
    problem = saga_problems(sim, cluster, finished=True) if state else None
    if problem is not None or not trace:
        return problem
    validation = validate_events(SPEC, sim.trace.events, split_key="saga")
    return None if validation.ok else f"the trace is not a behaviour of the spec: {validation.message}"


def compensation_order(trace: TraceLog, saga: str) -> list[int]:
    """The steps of ``saga`` compensated, in the order their compensations took effect."""
    events = [e for e in trace.events if e.get("saga") == saga and e["action"]["type"] == "Compensated"]
    return [int(e["action"]["p"][1:]) - 1 for e in events]


def run(
    cluster: orch.Cluster,
    choices: ChoiceSource,
    faults: FaultPolicy = FaultPolicy(),
    steps: int = 200,
    state: bool = True,
    trace: bool = True,
) -> Any:
    sim = Simulation(
        cluster.nodes(),
        choices,
        faults,
        fault_steps=steps,
        max_steps=20_000,
        trace=TraceLog("saga"),
        check=(lambda s: saga_problems(s, cluster, finished=False)) if state else None,
        final_check=lambda s: ended_well(s, cluster, state, trace),
    )
    return sim, sim.run()


class FirstOrdinary(ChoiceSource):
    """The first ordinary option each time: a calm, deterministic run."""

    def choose(self, options: Sequence[Choice]) -> int:
        return next((i for i, o in enumerate(options) if not o.fault and o.kind != "advance"), 0)


# ------------------------------------------------------------------ calm runs


def test_a_trip_is_booked_step_by_step() -> None:
    cluster = trip_cluster()
    _, result = run(cluster, FirstOrdinary())
    assert result.ok, result.message
    outcome = cluster.client.outcomes["s1"]
    assert outcome.status == "completed"
    assert outcome.results == {"reserve_flight": "seat for t-s1", "book_hotel": "room 7", "charge_card": "charged t-s1"}
    assert all(len(p.effects()) == 1 for p in cluster.participants)


def test_a_declined_card_undoes_the_hotel_then_the_flight() -> None:
    cluster = trip_cluster(declined=["s1"], flaky_refunds=2)
    sim, result = run(cluster, FirstOrdinary())
    assert result.ok, result.message
    outcome = cluster.client.outcomes["s1"]
    assert outcome.status == "compensated" and "card declined" in outcome.reason
    assert compensation_order(sim.trace, "s1") == [1, 0]  # hotel, then flight (retried twice)
    assert all(p.effects() == {} for p in cluster.participants)
    payments = books(sim, cluster)["payments"]
    assert [r["state"] for r in payments] == [REFUSED]  # nothing to undo there


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize("seed", range(30))
def test_sagas_stay_atomic_under_crashes_loss_duplication_and_reordering(seed: int) -> None:
    cluster = trip_cluster(sagas=("s1", "s2", "s3"), declined=["s2"], flaky_refunds=seed % 3)
    _, result = run(cluster, RandomChoices(seed, fault_rate=0.15), ALL_FAULTS)
    assert result.ok, result.message
    statuses = {s: o.status for s, o in cluster.client.outcomes.items()}
    assert statuses["s2"] == "compensated"


def test_faulty_runs_do_compensate_and_complete() -> None:
    """Not vacuous: over the seeds, faults happened, and sagas both completed and were compensated."""
    seen: set[str] = set()
    faults = 0
    for seed in range(10):
        cluster = trip_cluster(sagas=("s1", "s3"), flaky_refunds=1)
        sim, result = run(cluster, RandomChoices(seed, fault_rate=0.15), ALL_FAULTS)
        assert result.ok, result.message
        seen |= {o.status for o in cluster.client.outcomes.values()}
        faults += sim.crashes + sim.drops + sim.duplicates
    assert seen == {"completed", "compensated"} and faults > 10


class CrashAfterSync(ChoiceSource):
    """Crash ``node`` once, as soon as its log ``log`` holds ``k`` records (just after
    the ``k``-th write, before what follows it leaves); otherwise calm."""

    def __init__(self, k: int, node: str = "orchestrator", log: str = orch.Orchestrator.LOG) -> None:
        self.k, self.node, self.log = k, node, log
        self.sim: Simulation | None = None
        self.crashed = False

    def choose(self, options: Sequence[Choice]) -> int:
        assert self.sim is not None
        if not self.crashed and len(self.sim.durable_records(self.node, self.log)) >= self.k:
            for i, o in enumerate(options):
                if o.kind == "crash" and o.agent == self.node:
                    self.crashed = True
                    return i
        return FirstOrdinary().choose(options)


def crash_after_write(
    cluster: orch.Cluster,
    k: int,
    node: str = "orchestrator",
    log: str = orch.Orchestrator.LOG,
    state: bool = True,
    trace: bool = True,
) -> tuple[Simulation, Any, CrashAfterSync]:
    """A calm run in which ``node`` crashes once, just after its ``k``-th log write,
    checked at the end (``ended_well``)."""
    choices = CrashAfterSync(k, node, log)
    sim = Simulation(
        cluster.nodes(),
        choices,
        FaultPolicy(crash=True, max_crashes=1, crashable=(node,)),
        fault_steps=10_000,
        max_steps=20_000,
        trace=TraceLog("saga"),
        final_check=lambda s: ended_well(s, cluster, state, trace),
    )
    choices.sim = sim
    return sim, sim.run(), choices


BOUNDARIES = [
    pytest.param(node, log, declined, id=f"{node}-{'compensated' if declined else 'completed'}")
    for node, log in [("orchestrator", orch.Orchestrator.LOG), *((p, Participant.LOG) for p in ("flights", "payments"))]
    for declined in (False, True)
]


@pytest.mark.parametrize(("node", "log", "declined"), BOUNDARIES)
def test_a_node_crashed_at_every_step_boundary_in_turn_finishes_every_saga(node: str, log: str, declined: bool) -> None:
    """The orchestrator after each of its log writes (start, each step asked and
    answered, the decision to compensate, each undo, the end), a participant after
    each of its book's (a step, a compensation): each saga finishes as it would have."""
    calm = trip_cluster(declined=["s1"] if declined else [], flaky_refunds=1)
    sim, result = run(calm, FirstOrdinary())
    assert result.ok, result.message
    boundaries = len(sim.durable_records(node, log))
    if node == "orchestrator":  # start, asks, results, (compensate, undos,) end
        assert boundaries == (10 if declined else 8)
    for k in range(1, boundaries + 1):
        cluster = trip_cluster(declined=["s1"] if declined else [], flaky_refunds=1)
        sim, result, choices = crash_after_write(cluster, k, node, log)
        assert choices.crashed and sim.crashes == 1, k
        assert result.ok, f"{node} crashed after write {k}: {result.message}"
        assert cluster.client.outcomes["s1"].status == ("compensated" if declined else "completed")


def test_a_thirty_day_timeout_takes_no_time_on_the_virtual_clock() -> None:
    """The payment service never answers (every message to it is lost): after thirty
    days on the node's clock the orchestrator gives up on the step and compensates it,
    the flight and the hotel; the test's own clock does not wait."""
    day = 86_400.0
    timing = orch.Timing(step_timeout=30 * day, retry_initial=3600.0, retry_max=10 * day, client_retry=10 * day)
    cluster = trip_cluster(timing=timing)

    class PaymentsUnreachable(ChoiceSource):
        def choose(self, options: Sequence[Choice]) -> int:
            lost = next((i for i, o in enumerate(options) if o.kind == "drop" and "→payments" in o.text), None)
            return lost if lost is not None else FirstOrdinary().choose(options)

    faults = FaultPolicy(drop=True, max_drops=1000)
    sim = Simulation(cluster.nodes(), PaymentsUnreachable(), faults, fault_steps=20_000, max_steps=20_000)
    result = sim.run()
    assert result.ok, result.message
    outcome = cluster.client.outcomes["s1"]
    assert outcome.status == "compensated" and "timed out after 2.592e+06 s" in outcome.reason
    assert sim.now >= 30 * day and all(p.effects() == {} for p in cluster.participants)


class UndoOvertakesStep(ChoiceSource):
    """Hold every command to the hotel until the orchestrator, tired of waiting, has
    sent it an undo: the undo arrives first, the command after (the race a tombstone
    is for; the network must reorder, as resends over new connections do); otherwise
    calm."""

    def __init__(self) -> None:
        self.undo_sent = False

    def choose(self, options: Sequence[Choice]) -> int:
        held = [i for i, o in enumerate(options) if o.kind == "deliver" and "→hotels DoStep" in o.text]
        undo = next((i for i, o in enumerate(options) if o.kind == "deliver" and "→hotels UndoStep" in o.text), None)
        if undo is not None:
            self.undo_sent = True
            return undo
        ordinary = [i for i, o in enumerate(options) if not o.fault and (self.undo_sent or i not in held)]
        calm = [i for i in ordinary if options[i].kind != "advance"]
        return (calm or ordinary or held)[0]


def test_an_undo_that_overtakes_its_step_leaves_a_tombstone() -> None:
    cluster = trip_cluster(timing=orch.Timing(step_timeout=5.0))
    sim, result = run(cluster, UndoOvertakesStep(), FaultPolicy(reorder=True))
    assert result.ok, result.message
    assert cluster.client.outcomes["s1"].status == "compensated"
    hotel = books(sim, cluster)["hotels"]
    assert [r["state"] for r in hotel] == ["cancelled"]  # and the late command was refused


# ------------------------------------------------------------------ broken variants


def caught(
    variant: str | None = None, participant_variant: str | None = None, state: bool = True, trace: bool = True
) -> str | None:
    """The first problem the variant shows, to the checks asked for (of the real
    state, of the trace): over random runs with every fault, then with the
    orchestrator crashed after each of its log writes, then with an undo overtaking
    its step."""

    def cluster(declined: Sequence[str], timing: orch.Timing = orch.Timing(step_timeout=20.0)) -> orch.Cluster:
        return trip_cluster(("s1", "s2"), declined, 2, variant, participant_variant, timing)

    def order_problem(sim: Simulation) -> str | None:
        for saga in ("s1", "s2"):
            order = compensation_order(sim.trace, saga)
            if order != sorted(order, reverse=True):
                return f"{saga} compensated in the order {order}"
        return None

    for seed in range(30):
        c = cluster(["s1", "s2"], orch.Timing(step_timeout=0.5))
        sim, result = run(c, RandomChoices(seed, fault_rate=0.2), ALL_FAULTS, state=state, trace=trace)
        problem = None if result.ok else str(result.message)
        if problem or (state and (problem := order_problem(sim))):
            return problem
    for k in range(1, 21):
        sim, result, _ = crash_after_write(cluster(["s1"]), k, state=state, trace=trace)
        if not result.ok:
            return str(result.message)
    overtaking = cluster([], orch.Timing(step_timeout=5.0))
    sim, result = run(overtaking, UndoOvertakesStep(), FaultPolicy(reorder=True), state=state, trace=trace)
    return None if result.ok else str(result.message)


@pytest.mark.parametrize(
    ("variant", "participant_variant", "symptom"),
    [
        ("compensate_forward", None, "compensated in the order"),
        ("give_up_compensation", None, "SemanticAtomicity"),
        ("forget_compensation", None, "SemanticAtomicity"),
        (None, "non_idempotent", "not at most once"),
        (None, "no_tombstone", "SemanticAtomicity"),
    ],
)
def test_each_broken_variant_is_caught_by_the_real_state_alone(
    variant: str | None, participant_variant: str | None, symptom: str
) -> None:
    problem = caught(variant, participant_variant, trace=False)
    assert problem is not None and symptom in problem, problem


@pytest.mark.parametrize(
    ("variant", "participant_variant"),
    [
        ("compensate_forward", None),
        ("give_up_compensation", None),
        ("forget_compensation", None),
        (None, "non_idempotent"),
        (None, "no_tombstone"),
    ],
)
def test_each_broken_variant_is_caught_by_trace_validation_alone(
    variant: str | None, participant_variant: str | None
) -> None:
    problem = caught(variant, participant_variant, state=False)
    assert problem is not None and "not a behaviour of the spec" in problem, problem


def test_the_reference_passes_the_same_runs() -> None:
    assert caught() is None


def test_a_participant_answers_a_repeated_command_from_its_book() -> None:
    cluster = trip_cluster()
    sim, result = run(cluster, FirstOrdinary())
    assert result.ok
    flights = books(sim, cluster)["flights"]
    assert [r["state"] for r in flights] == [DONE]


def test_the_example_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[2] / "examples" / "trip.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    orchestrated, choreographed = out.split("choreographed")
    assert "trip-ada (ada): completed" in orchestrated and "trip-cy (cy): completed" in orchestrated
    assert "trip-bob (bob): compensated (step 2 refused: the card was declined)" in orchestrated
    assert "the orchestrator crashes" in orchestrated
    # one seat each: bob's was cancelled, and cy's booked once although asked twice
    assert "flights: {'trip-ada': 'seat 12A for ada', 'trip-cy': 'seat 12A for cy'}" in orchestrated
    assert "trip-ada (ada): completed" in choreographed and "trip-bob (bob): compensated" in choreographed
    assert "trip-cy (cy): compensated (cancelled by the initiator)" in choreographed
    assert "payments: {'trip-ada': 'charged ada 420 EUR'}" in choreographed
