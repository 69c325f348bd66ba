"""The choreographed saga library under the controlled scheduler, with our broker as
the bus: trips (flight, hotel, payment) whose participants react to each other's
events, with a declined card, a cancellation that fails transiently, and crashes,
loss, duplication and reordering; semantic atomicity and exactly-once effects checked
on the participants' own books, and the broken variants caught."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from distcheck.impl.messaging.broker import BrokerNode, BrokerTiming
from distcheck.impl.runtime import FaultPolicy, RandomChoices, Simulation, TraceLog
from distcheck.impl.saga.choreography import ChoreographedParticipant, Choreography, Initiator
from distcheck.impl.saga.orchestrator import SagaDefinition, Step
from distcheck.impl.saga.participant import StepRefused, TryAgain

TRIP = SagaDefinition(
    "trip",
    (
        Step("reserve_flight", "flights", "cancel_flight"),
        Step("book_hotel", "hotels", "cancel_hotel"),
        Step("charge_card", "payments", "refund_card"),
    ),
)
SAGAS = ("s1", "s2", "s3")
ALL_FAULTS = FaultPolicy(
    crash=True, drop=True, duplicate=True, reorder=True, crashable=("flights", "hotels", "payments", "initiator")
)


def trip(declined: Sequence[str] = ("s2",), flaky: int = 1, variant: str | None = None) -> Choreography:
    failures = [flaky]

    def cancel(saga: str, seat: Any) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise TryAgain("the airline's system is busy")

    def charge(saga: str, data: Any) -> str:
        if saga in declined:
            raise StepRefused("card declined")
        return f"charged {data['traveller']}"

    handlers = {
        "flights": {"reserve_flight": lambda saga, data: "seat", "cancel_flight": cancel},
        "hotels": {"book_hotel": lambda saga, data: "room", "cancel_hotel": lambda saga, room: None},
        "payments": {"charge_card": charge, "refund_card": lambda saga, charged: None},
    }
    participants = [ChoreographedParticipant(n, TRIP, h, "initiator", variant=variant) for n, h in handlers.items()]
    initiator = Initiator("initiator", TRIP, [(s, {"traveller": f"t-{s}"}) for s in SAGAS])
    broker = BrokerNode("broker", BrokerTiming(visibility=2.0, consumer_timeout=5.0, tick=0.5))
    return Choreography(broker, participants, initiator)


def problems(sim: Simulation, system: Choreography, finished: bool) -> str | None:
    for p in system.participants:
        seen: dict[tuple[str, int], list[str]] = {}
        for r in sim.durable_records(p.name, p.LOG):
            if "state" in r:
                seen.setdefault((r["saga"], r["step"]), []).append(r["state"])
        for key, states in seen.items():
            if states not in (["done"], ["refused"], ["cancelled"], ["done", "undone"]):
                return f"{p.name}'s book holds {states} for step {key[1]} of {key[0]}: not exactly once"
    if not finished:
        return None
    for saga in SAGAS:
        outcome = system.initiator.outcomes.get(saga)
        if outcome is None:
            return f"saga {saga} never finished"
        held = sorted(p.name for p in system.participants if (saga, p.route.step) in p.effects())
        wanted = sorted(p.name for p in system.participants) if outcome == "completed" else []
        if held != wanted:
            return f"saga {saga} {outcome}, but in force at {held} (semantic atomicity)"
    return None


def run(system: Choreography, seed: int, faults: FaultPolicy = ALL_FAULTS) -> Any:
    sim = Simulation(
        system.nodes(),
        RandomChoices(seed, fault_rate=0.1),
        faults,
        fault_steps=400,
        max_steps=30_000,
        trace=TraceLog("saga"),
        check=lambda s: problems(s, system, finished=False),
        until=lambda s: len(system.initiator.outcomes) == len(SAGAS),
    )
    result = sim.run()
    if result.ok:
        problem = problems(sim, system, finished=True)
        if problem is not None:
            return sim, problem
    return sim, None if result.ok else result.message


@pytest.mark.parametrize("seed", range(12))
def test_choreographed_trips_stay_atomic_under_faults(seed: int) -> None:
    system = trip(flaky=seed % 3)
    _, problem = run(system, seed)
    assert problem is None, problem
    assert system.initiator.outcomes == {"s1": "completed", "s2": "compensated", "s3": "completed"}


def test_faults_happened() -> None:
    crashes = 0
    for seed in range(6):
        sim, problem = run(trip(), seed)
        assert problem is None, problem
        crashes += sim.crashes + sim.drops + sim.duplicates
    assert crashes > 5


def test_a_participant_that_runs_a_redelivered_event_again_is_caught() -> None:
    found = None
    for seed in range(20):
        _, found = run(trip(variant="non_idempotent"), seed)
        if found:
            break
    assert found is not None and "not exactly once" in found, found
