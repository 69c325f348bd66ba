"""The choreographed saga library under the controlled scheduler, with our broker as
the bus: trips (flight, hotel, payment) whose participants react to each other's
events, with a declined card, a cancellation that fails transiently, the initiator
cancelling sagas that take too long, and crashes (the broker's too), loss,
duplication and reordering; semantic atomicity and exactly-once effects checked on
the participants' own books, every trace validated against spec/saga
(choreography), and the broken variants caught."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from distcheck.checks.conformance.validate import validate_events
from distcheck.checks.conformance.wiring.saga import book_problems, choreographed
from distcheck.impl.messaging.broker import BrokerNode, BrokerTiming
from distcheck.impl.messaging.messages import Publish
from distcheck.impl.runtime import FaultPolicy, RandomChoices, Simulation, TraceLog
from distcheck.impl.runtime.actor import encode
from distcheck.impl.runtime.api import Context
from distcheck.impl.saga.choreography import ChoreographedParticipant, Choreography, Initiator, Timing
from distcheck.impl.saga.orchestrator import SagaDefinition, Step
from distcheck.impl.saga.participant import StepRefused, TryAgain
from distcheck.spec.saga import CHOREOGRAPHY, Config, Saga

TRIP = SagaDefinition(
    "trip",
    (
        Step("reserve_flight", "flights", "cancel_flight"),
        Step("book_hotel", "hotels", "cancel_hotel"),
        Step("charge_card", "payments", "refund_card"),
    ),
)
SAGAS = ("s1", "s2", "s3")
ALL_FAULTS = FaultPolicy(crash=True, drop=True, duplicate=True, reorder=True)
SPEC = Saga(Config(style=CHOREOGRAPHY, steps=3))


def trip(
    declined: Sequence[str] = ("s2",), flaky: int = 1, variant: str | None = None, saga_timeout: float = 60.0
) -> Choreography:
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
    timing = Timing(heartbeat=2.0, republish=2.0, saga_timeout=saga_timeout)
    participants = [
        ChoreographedParticipant(n, TRIP, h, "initiator", timing=timing, variant=variant) for n, h in handlers.items()
    ]
    initiator = Initiator("initiator", TRIP, [(s, {"traveller": f"t-{s}"}) for s in SAGAS], timing=timing)
    broker = BrokerNode("broker", BrokerTiming(visibility=3.0, consumer_timeout=8.0, tick=1.0))
    return Choreography(broker, participants, initiator)


def problems(sim: Simulation, system: Choreography, finished: bool) -> str | None:
    """The simulate wiring's check of the participants' books (append-only, so a step
    run twice shows at the end too) and, once finished, of the sagas' outcomes."""
    return book_problems(sim, choreographed(system), finished)


def run(system: Choreography, seed: int, faults: FaultPolicy = ALL_FAULTS) -> Any:
    sim = Simulation(
        system.nodes(),
        RandomChoices(seed, fault_rate=0.1),
        faults,
        fault_steps=400,
        max_steps=30_000,
        trace=TraceLog("saga"),
        until=lambda s: len(system.initiator.outcomes) == len(SAGAS),
    )
    result = sim.run()
    if not result.ok:  # what the books say first, if anything: it explains the rest
        return sim, problems(sim, system, finished=False) or result.message
    problem = problems(sim, system, finished=True)
    if problem is not None:
        return sim, problem
    # The broker's own steps are in the log too (spec/broker's): the saga's carry its name.
    validation = validate_events(SPEC, [e for e in sim.trace.events if "saga" in e], split_key="saga")
    return sim, None if validation.ok else f"the trace is not a behaviour of the spec: {validation.message}"


@pytest.mark.parametrize("seed", range(8))
def test_choreographed_trips_stay_atomic_under_faults(seed: int) -> None:
    system = trip(flaky=seed % 3, saga_timeout=3.0 if seed % 2 else 60.0)
    _, problem = run(system, seed)
    assert problem is None, problem
    outcomes = system.initiator.outcomes
    assert outcomes["s2"] == "compensated"  # declined (or cancelled first)
    for saga in ("s1", "s3"):  # a trip not cancelled goes through
        assert outcomes[saga] == ("compensated" if saga in system.initiator.cancelled else "completed")


def test_not_vacuous_faults_happened_and_cancels_raced_the_steps() -> None:
    faults = cancels = tombstones = 0
    for seed in range(3):
        sim, problem = run(trip(saga_timeout=3.0), seed)
        assert problem is None, problem
        faults += sim.crashes + sim.drops + sim.duplicates
        kinds = [e["action"]["type"] for e in sim.trace.events if "saga" in e]
        cancels += kinds.count("CancelSaga")
        tombstones += kinds.count("StepCancelled")
    assert faults > 10 and cancels > 0 and tombstones > 0


@pytest.mark.parametrize(
    ("variant", "symptom"),
    [("non_idempotent", "not at most once"), ("no_tombstone", "")],
    ids=["non_idempotent", "no_tombstone"],
)
def test_each_broken_participant_is_caught(variant: str, symptom: str) -> None:
    found = None
    for seed in range(30):
        _, found = run(trip(variant=variant, saga_timeout=3.0), seed)
        if found:
            break
    assert found is not None and symptom in found, found


def test_a_delivery_that_is_no_saga_event_is_dead_lettered_and_nothing_crashes() -> None:
    system = trip()
    nodes = system.nodes()

    def stray(ctx: Context) -> None:
        for body in ({"not": "an event"}, {"saga": "s1", "event": "StepDone", "step": "zero", "data": {}}, [1, 2]):
            ctx.send("broker", encode(Publish(f"stray-{len(str(body))}", "flights", body)))

    nodes["stray"] = stray
    sim = Simulation(nodes, RandomChoices(1), FaultPolicy(), max_steps=30_000, trace=TraceLog("saga"))
    sim.until = lambda s: len(system.initiator.outcomes) == len(SAGAS)
    result = sim.run()
    assert result.ok and not sim.failures, result.message
    flights = system.participants[0]
    dead = {d.split()[1].rstrip(":") for d in flights.diagnostics if "not a saga event" in d}
    assert len(dead) == 3  # each stray once at least (a redelivery before its dead-lettering may repeat it)
    assert problems(sim, system, finished=True) is None
