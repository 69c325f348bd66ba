"""The event bus between the command side and the query side when they live in
different processes: the store's global order relayed to a queue of our broker
(``impl.messaging``), and projectors fed from that queue.

Where it sits: on ``impl.eventstore.store`` and ``projection`` and on the broker's
client library; it is spec/cqrs's bus.  The broker delivers at least once and
redelivers single messages (an acknowledgement lost or late, a consumer or the
broker restarted); these classes make the read model come out exactly once anyway:

- ``EventRelay`` follows the store from its checkpoint and publishes each event to
  the queue, its id the event's position and its body naming the position of the
  event before it (``after``), and saves its checkpoint once the broker has
  confirmed them (on disk).  After a crash it publishes again from the
  checkpoint; the broker stores an id it has once, and a copy that gets through is
  dropped by the projector.  So every event reaches the queue, in position order.
- ``BusProjector`` takes deliveries and keeps the ``Projector``'s rule: the event
  whose ``after`` is the checkpoint is applied with the checkpoint in one
  transaction, then acknowledged; an event at or below the checkpoint (a copy) is
  acknowledged and dropped; any other (an earlier one is being redelivered) is given
  back (``nack``, requeued: the broker puts it back in its place in the queue), so it
  comes again after the one it waits for.  While an earlier event waits for its
  visibility timeout, the later ones go round; a cost in work, not in correctness.

    relay = EventRelay(store, BrokerClient(address), "events", "relay.db").start()
    with BusProjector(BrokerClient(address), "events", Balances(), "read.db") as balances:
        balances.query(lambda db: ..., token=token)

One ``BusProjector`` per queue: two would take turns with the events and give back
each other's.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from distcheck.impl.eventstore.projection import Projection, Projector
from distcheck.impl.eventstore.store import EventStore, RecordedEvent
from distcheck.impl.messaging.client import BrokerClient, BrokerError, Message


def event_body(event: RecordedEvent) -> dict[str, Any]:
    return {
        "stream": event.stream,
        "version": event.version,
        "position": event.position,
        "id": event.id,
        "type": event.type,
        "data": dict(event.data),
        "metadata": dict(event.metadata),
        "recorded_at": event.recorded_at,
    }


def event_of(body: Any) -> RecordedEvent:
    """The event a message carries; ValueError if the body is not one."""
    try:
        return RecordedEvent(
            str(body["stream"]),
            int(body["version"]),
            int(body["position"]),
            str(body["id"]),
            str(body["type"]),
            dict(body["data"]),
            dict(body["metadata"]),
            float(body["recorded_at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an event: {exc}") from None


class EventRelay:
    """Publishes the store's events, in position order, to ``queue`` (see the module)."""

    def __init__(
        self,
        store: EventStore,
        client: BrokerClient,
        queue: str,
        path: str | Path,
        *,
        batch: int = 200,
        poll: float = 0.05,
    ) -> None:
        self.store = store
        self.client = client
        self.queue = queue
        self.batch = batch
        self.poll = poll
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS relay_checkpoint (queue TEXT PRIMARY KEY, position INTEGER)")
        self._db.execute("INSERT OR IGNORE INTO relay_checkpoint VALUES (?, 0)", (queue,))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def checkpoint(self) -> int:
        """Every event up to this position is on the broker's disk."""
        (position,) = self._db.execute(
            "SELECT position FROM relay_checkpoint WHERE queue = ?", (self.queue,)
        ).fetchone()
        return int(position)

    def relay(self) -> int:
        """Publish the next batch of events (each confirmed before the checkpoint moves
        past it); how many."""
        after = self.checkpoint
        events = self.store.read_all(after, self.batch)
        for event in events:
            # Each message names the event before it in the relay's order, so that a
            # projector knows the next one even where positions have holes.
            body = {**event_body(event), "after": after}
            self.client.publish_async(self.queue, body, id=f"{self.queue}:{event.position}")
            after = event.position
        if events:
            if not self.client.flush():
                raise BrokerError(f"the broker did not confirm events up to position {events[-1].position} in time")
            self._db.execute(
                "UPDATE relay_checkpoint SET position = ? WHERE queue = ?", (events[-1].position, self.queue)
            )
        return len(events)

    def start(self) -> EventRelay:
        self._thread = threading.Thread(target=self._follow, name=f"relay-{self.queue}", daemon=True)
        self._thread.start()
        return self

    def _follow(self) -> None:
        changed = self.store.append_condition()
        while not self._stop.is_set():
            try:
                if self.relay():
                    continue
            except BrokerError as exc:  # the broker is down or slow: try again
                self.error = exc
                self._stop.wait(self.poll)
                continue
            if changed is None:
                self._stop.wait(self.poll)
            else:
                with changed:
                    changed.wait(self.poll)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._db.close()


class BusProjector:
    """A read model fed from a queue of the broker (see the module)."""

    def __init__(
        self,
        client: BrokerClient,
        queue: str,
        projection: Projection,
        path: str | Path,
        *,
        prefetch: int = 50,
        store: EventStore | None = None,
    ) -> None:
        self.client = client
        self.queue = queue
        self.prefetch = prefetch
        # The Projector applies and keeps the checkpoint; it reads no store here.
        self.projector = Projector(store or _NoStore(), projection, path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = self.copies = self.given_back = 0

    def handle(self, msg: Message) -> None:
        """Apply, drop or give back one delivery."""
        try:
            event = event_of(msg.body)
            after = int(msg.body["after"])
        except (ValueError, KeyError, TypeError):
            msg.nack(requeue=False)  # to the dead-letter queue: not an event of the relay's
            return
        checkpoint = self.projector.checkpoint
        if event.position <= checkpoint:
            self.copies += 1
            msg.ack()
        elif after == checkpoint:  # the relay's next event after the checkpoint
            self.projector.apply([event])
            self.applied += 1
            msg.ack()
        else:
            self.given_back += 1
            msg.nack(requeue=True)

    def start(self) -> BusProjector:
        subscription = self.client.consumer(self.queue, prefetch=self.prefetch)

        def run() -> None:
            while not self._stop.is_set():
                msg = subscription.get(timeout=0.1)
                if msg is not None:
                    self.handle(msg)
            subscription.close()

        self._thread = threading.Thread(target=run, name=f"bus-projector-{self.queue}", daemon=True)
        self._thread.start()
        return self

    def query(self, fn: Any, *, token: int = 0, timeout: float = 5.0) -> Any:
        return self.projector.query(fn, token=token, timeout=timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.projector.close()

    def __enter__(self) -> BusProjector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _NoStore(EventStore):
    """What a BusProjector's Projector sees as its store: nothing to read (the events
    come from the queue)."""

    def append(self, stream: str, events: Any, expected_version: int = -1) -> Any:
        raise NotImplementedError("a bus projector does not append")

    def read_stream(self, stream: str, after_version: int = 0, upto_version: int | None = None) -> list[RecordedEvent]:
        return []

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return []

    def stream_version(self, stream: str) -> int:
        return 0

    def head(self) -> int:
        return 0

    def close(self) -> None:
        return None
