"""Trip booking as a saga: a flight, a hotel and a payment, each a service of its own,
run twice: by an orchestrator, and by choreography over our message broker.

    .venv/bin/python examples/trip.py [DIRECTORY]

Each part runs its nodes (services, orchestrator or initiator, broker) talking over
TCP on this machine.  Orchestrated, three trips:

- ada's goes through: every step committed;
- bob's card is declined at the last step: the hotel is cancelled, then the flight
  (in reverse order), and the airline's first two cancellations fail (it is busy)
  and are retried with backoff;
- during cy's the orchestrator crashes while the hotel books the room: it restarts,
  reads its saga log, asks the hotel again (which answers from its book: one room,
  not two) and goes on.

Choreographed, the services react to each other's events: ada's goes through; the
hotel is full for bob, so his flight is cancelled; the hotel is slow with cy's room,
the initiator's deadline passes and it cancels cy's trip, and the cancel reaches the
payment service before the hotel's "booked": it leaves a tombstone there, so the late
step is refused and the hotel and the flight are undone.

It prints each saga's outcome and what each service holds at the end.  The nodes'
logs are in DIRECTORY (a fresh temporary directory unless given).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distcheck.impl.messaging.broker import BrokerNode, BrokerTiming
from distcheck.impl.runtime.free import FreeRuntime
from distcheck.impl.saga.choreography import ChoreographedParticipant, Choreography, Initiator
from distcheck.impl.saga.choreography import Timing as ChoreographyTiming
from distcheck.impl.saga.orchestrator import Client, Orchestrator, SagaDefinition, Step, Timing
from distcheck.impl.saga.participant import Participant, StepRefused, TryAgain

TRIP = SagaDefinition(
    "trip",
    (
        Step("reserve_flight", "flights", "cancel_flight"),
        Step("book_hotel", "hotels", "cancel_hotel"),
        Step("charge_card", "payments", "refund_card"),
    ),
)


class Airline:
    """Seats; its cancellation desk is busy twice before it answers."""

    def __init__(self) -> None:
        self.busy = 2

    def reserve(self, saga: str, data: Any) -> str:
        return f"seat 12A for {data['traveller']}"

    def cancel(self, saga: str, seat: Any) -> None:
        if self.busy:
            self.busy -= 1
            print(f"    (airline busy: the cancellation for {saga} fails, to be retried)")
            raise TryAgain("the airline's system is busy")


class Hotel:
    def __init__(self) -> None:
        self.when_booking: Any = None  # called with the saga, as a room is booked

    def book(self, saga: str, data: Any) -> str:
        if self.when_booking is not None:
            self.when_booking(saga)
        return f"room 7 for {data['traveller']}"

    def cancel(self, saga: str, room: Any) -> None:
        return None


def charge(saga: str, data: Any) -> str:
    if data.get("card") == "declined":
        raise StepRefused("the card was declined")
    return f"charged {data['traveller']} 420 EUR"


TRIPS = [
    ("trip-ada", {"traveller": "ada", "card": "ok"}),
    ("trip-bob", {"traveller": "bob", "card": "declined"}),
    ("trip-cy", {"traveller": "cy", "card": "ok"}),
]


def wait(done: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


def holdings(services: Sequence[Any]) -> None:
    print("  what each service holds:")
    for service in services:
        held = {saga: result for (saga, _), result in sorted(service.effects().items())}
        print(f"    {service.name}: {held or 'nothing'}")


def orchestrated(directory: Path) -> bool:
    """The three trips run by an orchestrator; cy's with the orchestrator crashing."""
    print("orchestrated:")
    airline, hotel = Airline(), Hotel()
    services = [
        Participant("flights", {"reserve_flight": airline.reserve, "cancel_flight": airline.cancel}),
        Participant("hotels", {"book_hotel": hotel.book, "cancel_hotel": hotel.cancel}),
        Participant("payments", {"charge_card": charge, "refund_card": lambda saga, charged: None}),
    ]
    orchestrator = Orchestrator("orchestrator", {"trip": TRIP}, Timing(step_timeout=10.0, retry_initial=0.2))
    client = Client("client", "orchestrator", [(saga, "trip", data) for saga, data in TRIPS])
    nodes = {"orchestrator": orchestrator.main, "client": client.main}
    nodes.update({s.name: s.main for s in services})
    runtime = FreeRuntime(nodes, directory, restart_delay=0.2)

    def crash_for_cy(saga: str) -> None:
        if saga == "trip-cy":
            hotel.when_booking = None
            print("  the orchestrator crashes while cy's room is booked; it restarts and resumes")
            runtime.crash(runtime.nodes["orchestrator"], "crashed on purpose by the example")

    hotel.when_booking = crash_for_cy
    runtime.start()
    try:
        wait(lambda: len(client.outcomes) == len(TRIPS))
    finally:
        runtime.stop()
    for saga, data in TRIPS:
        outcome = client.outcomes.get(saga)
        if outcome is None:
            print(f"  {saga}: did not finish in time")
            continue
        why = f" ({outcome.reason})" if outcome.reason else ""
        print(f"  {saga} ({data['traveller']}): {outcome.status}{why}")
        for step, result in outcome.results.items():
            print(f"      {step}: {result}")
    holdings(services)
    return len(client.outcomes) == len(TRIPS)


def choreographed(directory: Path) -> bool:
    """The same travellers with no orchestrator: the services react to each other's
    events on our broker.  The hotel is full for bob; it is slow with cy's room, so
    the initiator's deadline passes and it cancels cy's trip: the cancel reaches the
    payment service before the hotel's "booked", and leaves a tombstone there."""
    print("\nchoreographed (events over the broker):")
    airline, hotel = Airline(), Hotel()

    def full_for_bob_slow_for_cy(saga: str) -> None:
        if saga == "trip-bob":
            raise StepRefused("the hotel is full")
        if saga == "trip-cy":
            print("  the hotel is slow with cy's room: the initiator's deadline passes, and it cancels cy's trip")
            time.sleep(2.0)

    hotel.when_booking = full_for_bob_slow_for_cy
    bus = ChoreographyTiming(heartbeat=0.5, republish=0.3, retry_initial=0.05, saga_timeout=1.0)
    handlers = {
        "flights": {"reserve_flight": airline.reserve, "cancel_flight": airline.cancel},
        "hotels": {"book_hotel": hotel.book, "cancel_hotel": hotel.cancel},
        "payments": {"charge_card": charge, "refund_card": lambda saga, charged: None},
    }
    services = [ChoreographedParticipant(name, TRIP, h, "initiator", timing=bus) for name, h in handlers.items()]
    initiator = Initiator("initiator", TRIP, TRIPS, timing=bus)
    broker = BrokerNode("broker", BrokerTiming(visibility=5.0, consumer_timeout=5.0, tick=0.2))
    runtime = FreeRuntime(Choreography(broker, services, initiator).nodes(), directory, restart_delay=0.2)
    runtime.start()
    try:
        wait(lambda: len(initiator.outcomes) == len(TRIPS))
    finally:
        runtime.stop()
    for saga, data in TRIPS:
        outcome = initiator.outcomes.get(saga, "did not finish in time")
        cancelled = " (cancelled by the initiator)" if saga in initiator.cancelled else ""
        print(f"  {saga} ({data['traveller']}): {outcome}{cancelled}")
    tombstones = [saga for (saga, _), e in sorted(services[2].book.entries.items()) if e.state == "cancelled"]  # type: ignore[union-attr]
    print(f"  tombstones at payments (a cancel before the step; the step refused when it came): {tombstones}")
    holdings(services)
    return len(initiator.outcomes) == len(TRIPS)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: examples/trip.py [DIRECTORY]", file=sys.stderr)
        return 2
    directory = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="trip-"))
    directory.mkdir(parents=True, exist_ok=True)
    ok = orchestrated(directory / "orchestrated")
    ok = choreographed(directory / "choreographed") and ok
    print(f"\n(the nodes' logs are in {directory})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
