"""Trip booking as a saga: a flight, a hotel and a payment, each a service of its own.

    .venv/bin/python examples/trip.py [DIRECTORY]

Runs an orchestrator and three services (flights, hotels, payments) as separate
nodes talking over TCP on this machine, and books three trips:

- ada's, which goes through: every step committed;
- bob's, whose card is declined at the last step: the hotel is cancelled, then the
  flight (in reverse order), and the airline's first two cancellations fail (it is
  busy) and are retried with backoff;
- cy's, during which the orchestrator crashes while the hotel books the room: it
  restarts, reads its saga log, asks the hotel again (which answers from its book:
  one room, not two) and goes on.

It prints each saga's outcome and what each service holds at the end.  The nodes'
logs are in DIRECTORY (a fresh temporary directory unless given).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from distcheck.impl.runtime.free import FreeRuntime
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


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: examples/trip.py [DIRECTORY]", file=sys.stderr)
        return 2
    directory = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="trip-"))
    directory.mkdir(parents=True, exist_ok=True)
    airline, hotel = Airline(), Hotel()
    services = [
        Participant("flights", {"reserve_flight": airline.reserve, "cancel_flight": airline.cancel}),
        Participant("hotels", {"book_hotel": hotel.book, "cancel_hotel": hotel.cancel}),
        Participant("payments", {"charge_card": charge, "refund_card": lambda saga, charged: None}),
    ]
    orchestrator = Orchestrator("orchestrator", {"trip": TRIP}, Timing(step_timeout=10.0, retry_initial=0.2))
    trips = [
        ("trip-ada", "trip", {"traveller": "ada", "card": "ok"}),
        ("trip-bob", "trip", {"traveller": "bob", "card": "declined"}),
        ("trip-cy", "trip", {"traveller": "cy", "card": "ok"}),
    ]
    client = Client("client", "orchestrator", trips)
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
        deadline = time.monotonic() + 60
        while len(client.outcomes) < len(trips) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runtime.stop()
    print("\nsagas:")
    for saga, _, data in trips:
        outcome = client.outcomes.get(saga)
        if outcome is None:
            print(f"  {saga}: did not finish in time")
            continue
        why = f" ({outcome.reason})" if outcome.reason else ""
        print(f"  {saga} ({data['traveller']}): {outcome.status}{why}")
        for step, result in outcome.results.items():
            print(f"      {step}: {result}")
    print("\nwhat each service holds:")
    for service in services:
        held = {saga: result for (saga, _), result in sorted(service.effects().items())}
        print(f"  {service.name}: {held or 'nothing'}")
    print(f"\n(saga logs in {directory})")
    return 0 if len(client.outcomes) == len(trips) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
