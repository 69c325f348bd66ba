"""The event bus over our broker: commands append to the store, a relay publishes
the global order to a queue, a projector in another client builds the read model
from the queue.  Each event is applied once and the read model is the fold of the
events, with the broker killed (SIGKILL) and restarted mid-workload, with the relay
restarted from its checkpoint (publishing again what the broker had), and with a
message that is not an event in the queue."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distcheck.impl.eventstore.aggregate import Aggregate, Repository
from distcheck.impl.eventstore.bus import BusProjector, EventRelay
from distcheck.impl.eventstore.projection import Projection
from distcheck.impl.eventstore.store import RecordedEvent, SQLiteEventStore
from distcheck.impl.messaging.client import BrokerClient
from tests.impl.test_messaging import FAST, broker, start_server
from tests.impl.waiting import wait_for

QUEUE = "events"


class Tally(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.n = 0

    def add(self, k: int) -> None:
        self.record("Added", k=k)

    def apply(self, type: str, data: Mapping[str, Any]) -> None:
        self.n += data["k"]


class Totals(Projection):
    name = "totals"

    def setup(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS total (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS applied (position INTEGER NOT NULL)")

    def handle(self, db: sqlite3.Connection, event: RecordedEvent) -> None:
        db.execute(
            "INSERT INTO total VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET n = n + excluded.n",
            (event.stream, event.data["k"]),
        )
        db.execute("INSERT INTO applied VALUES (?)", (event.position,))


def commands(store: SQLiteEventStore, threads: int, each: int) -> None:
    tallies = Repository(store, Tally)

    def work(t: int) -> None:
        for i in range(each):

            def add(tally: Tally, k: int = i + 1) -> None:
                tally.add(k)

            tallies.update(f"t{t % 3}", add, attempts=1000)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def check_read_model(store: SQLiteEventStore, projector: BusProjector) -> None:
    head = store.head()
    wait_for(lambda: projector.projector.checkpoint >= head, "the bus projector to reach the store's head")
    applied = projector.query(lambda db: [p for (p,) in db.execute("SELECT position FROM applied ORDER BY rowid")])
    assert applied == list(range(1, head + 1))  # every event, once, in order
    totals = dict(projector.query(lambda db: db.execute("SELECT stream, n FROM total").fetchall()))
    expected: dict[str, int] = {}
    for event in store.read_all(0, 100_000):
        expected[event.stream] = expected.get(event.stream, 0) + event.data["k"]
    assert totals == expected


def test_the_read_model_is_the_fold_of_the_events_through_the_bus(tmp_path: Path) -> None:
    with broker(tmp_path / "broker", FAST) as (_, client):
        store = SQLiteEventStore(tmp_path / "events.db", fsync=False)
        consumer = BrokerClient(client.address, timeout=5.0, heartbeat=0.2)
        relay = EventRelay(store, client, QUEUE, tmp_path / "relay.db").start()
        with BusProjector(consumer, QUEUE, Totals(), tmp_path / "read.db") as projector:
            commands(store, 4, 15)
            check_read_model(store, projector)
        relay.stop()
        consumer.close()
        store.close()


def test_a_relay_restarted_from_its_checkpoint_and_a_stray_message_change_nothing(tmp_path: Path) -> None:
    with broker(tmp_path / "broker", FAST) as (_, client):
        store = SQLiteEventStore(tmp_path / "events.db", fsync=False)
        commands(store, 2, 10)
        first = EventRelay(store, client, QUEUE, tmp_path / "relay.db", batch=7)
        first.relay()
        first.relay()
        first.stop()
        # The checkpoint file forgot the second batch (a crash before it was saved).
        db = sqlite3.connect(tmp_path / "relay.db")
        db.execute("UPDATE relay_checkpoint SET position = 7")
        db.commit()
        db.close()
        client.publish(QUEUE, {"not": "an event"}, id="stray")
        consumer = BrokerClient(client.address, timeout=5.0, heartbeat=0.2)
        with BusProjector(consumer, QUEUE, Totals(), tmp_path / "read.db") as projector:
            relay = EventRelay(store, client, QUEUE, tmp_path / "relay.db", batch=7).start()
            check_read_model(store, projector)
            relay.stop()
        consumer.close()
        store.close()


def test_the_broker_killed_mid_workload_loses_no_event_of_the_read_model(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = start_server(port, tmp_path / "broker")
    address = f"127.0.0.1:{port}"
    store = SQLiteEventStore(tmp_path / "events.db", fsync=False)
    publisher = BrokerClient(address, timeout=30.0, heartbeat=0.2)
    consumer = BrokerClient(address, timeout=30.0, heartbeat=0.2)
    relay = EventRelay(store, publisher, QUEUE, tmp_path / "relay.db", batch=20).start()
    projector = BusProjector(consumer, QUEUE, Totals(), tmp_path / "read.db", prefetch=20).start()
    try:
        writer = threading.Thread(target=commands, args=(store, 3, 40))
        writer.start()
        wait_for(lambda: projector.applied >= 20, "the projector to apply 20 events")
        server.kill()
        server.wait()
        at_kill = projector.applied
        server = start_server(port, tmp_path / "broker")
        writer.join()
        check_read_model(store, projector)
        assert at_kill < store.head(), "the broker was killed after the workload, not in the middle"
    finally:
        projector.stop()
        relay.stop()
        publisher.close()
        consumer.close()
        server.kill()
        server.wait()
        store.close()


class Recorder:
    """Stands for the broker client in ``Message``: keeps what the projector answered."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def _send(self, msg: Any) -> None:
        self.sent.append(msg)


def test_the_projector_applies_the_next_event_gives_back_a_later_one_and_drops_a_copy(tmp_path: Path) -> None:
    from distcheck.impl.eventstore.bus import event_body
    from distcheck.impl.messaging.client import Message
    from distcheck.impl.messaging.messages import Ack, Nack

    store = SQLiteEventStore(tmp_path / "events.db", fsync=False)
    commands(store, 1, 2)
    first, second = store.read_all(0, 10)
    client = Recorder()
    projector = BusProjector(client, QUEUE, Totals(), tmp_path / "read.db")  # type: ignore[arg-type]

    def deliver(event: RecordedEvent, after: int) -> Any:
        body = {**event_body(event), "after": after}
        projector.handle(Message(f"e{event.position}", QUEUE, body, False, 1, client))  # type: ignore[arg-type]
        return client.sent[-1]

    assert deliver(second, 1) == Nack("e2", True)  # its predecessor has not been applied: back in the queue
    assert deliver(first, 0) == Ack("e1")
    assert deliver(second, 1) == Ack("e2")
    assert deliver(first, 0) == Ack("e1")  # a copy: acknowledged, not applied again
    projector.handle(Message("junk", QUEUE, {"not": "an event"}, False, 1, client))  # type: ignore[arg-type]
    assert client.sent[-1] == Nack("junk", False)  # to the dead letters
    assert (projector.applied, projector.copies, projector.given_back) == (2, 1, 1)
    assert projector.projector.checkpoint == 2
    projector.stop()
    store.close()
