"""A durable message broker as an actor: named queues, publisher confirms, consumer
prefetch, acknowledgements, a visibility timeout, redelivery with a mark, and a
dead-letter queue.

Where it sits: ``BrokerNode`` runs in either runtime (``impl.runtime``); its server
process is ``impl.messaging.server`` and its client library ``impl.messaging.client``.
It mirrors ``spec/broker.py``: a publish is held in memory until persisted, and
confirmed only once persisted; a delivered message stays stored, in flight, until
acknowledged; without an acknowledgement within the visibility timeout it is ready
again, marked redelivered; after a restart every stored message is marked
redelivered.

- **Durability.**  One append-only log (``ctx.storage("broker")``): ``{"put": id,
  "q": queue, "body": ..., "seq": n}`` for a stored message, ``{"ack": id}`` for a
  removed one, ``{"dead": id, "q": queue}`` for one moved to its queue's dead-letter
  queue.  Writes are grouped: what arrives while the node is busy is written, then
  one fsync covers it all (``SyncTimer``, armed with no delay, fires after the
  messages already read), then every publish in it is confirmed and every
  acknowledged message in it removed (a crash before that fsync forgets the
  acknowledgement: the message is delivered again, marked).
- **Order.**  Each queue hands out its ready messages in the order they arrived
  (``seq``); a message made ready again goes back to its place.  So one producer's
  messages, published one after another, are delivered in order, redeliveries
  aside.
- **Duplicates.**  A publish of an id the broker stores, holds for the next fsync or
  removed recently (the last ``remember_removed`` ids) is not stored again: it is
  confirmed again (once durable).  Consumers see a message more than once only
  after a redelivery, which is marked.
- **Consumers.**  A consumer subscribes to a queue with a prefetch; messages are
  dealt round-robin among the consumers with room.  A consumer must subscribe again
  within ``consumer_timeout`` (the client library does, as a heartbeat), or it is
  dropped and its messages in flight become ready again.
- **Dead letters.**  A message delivered ``max_deliveries`` times without an
  acknowledgement (since the broker last started: counts are not persisted) goes
  to ``<queue>.dead``, where it waits for a consumer of its own.

Every step is recorded in ``spec/broker.py``'s vocabulary (``Receive``,
``Persist``, ``Deliver``, ``Ack``, ``Timeout``, and ``BrokerCrash`` at a restart);
producers and consumers record theirs (``Publish``, ``Confirmed``, ``Consume``).

Variants (``VARIANTS``): deliberately broken brokers the checks must catch.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Any

import attrs

from distcheck.impl.messaging.messages import (
    BROKER_MESSAGES,
    Ack,
    Confirm,
    Deliver,
    Nack,
    Publish,
    Subscribe,
    SyncTimer,
    TickTimer,
    Unsubscribe,
)
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor

DEAD_SUFFIX = ".dead"

VARIANTS = {
    "confirm_before_persist": "the broker confirms a publish when it receives it, before the fsync",
    "delete_on_delivery": "the broker removes a message when it delivers it (auto-ack)",
    "redelivery_unmarked": "a message made ready again by the visibility timeout is not marked redelivered",
}


@attrs.frozen
class BrokerTiming(config.Timing):
    """Seconds."""

    #: a delivered message not acknowledged within this is ready again
    visibility: float = 30.0
    #: a consumer that has not subscribed again within this is dropped
    consumer_timeout: float = 10.0
    #: how often timeouts are looked at
    tick: float = 0.1


@attrs.define
class Stored:
    """A message the broker holds: on disk once ``durable``."""

    id: str
    queue: str
    body: Any
    seq: int
    durable: bool = False
    redelivered: bool = False
    deliveries: int = 0
    holder: str | None = None  # the consumer it is in flight to
    removing: bool = False  # acknowledged; gone once the acknowledgement is synced
    deadline: float = 0.0  # when its visibility timeout expires


@attrs.define
class Consumer:
    name: str
    queue: str
    prefetch: int
    seen: float  # when it last subscribed
    holding: set[str] = attrs.field(factory=set)


class BrokerNode(Actor):
    """The broker.  ``applied`` and ``history`` are for tests and checks: every
    (delivery, acknowledgement) event, kept across restarts."""

    LOG = "broker"
    messages = BROKER_MESSAGES

    def __init__(
        self,
        name: str = "broker",
        timing: BrokerTiming = BrokerTiming(),
        *,
        max_deliveries: int = 5,
        remember_removed: int = 100_000,
        variant: str | None = None,
    ) -> None:
        config.check_variant(variant, VARIANTS)
        if max_deliveries < 1 or remember_removed < 0:
            raise ValueError("max_deliveries must be at least 1 and remember_removed at least 0")
        super().__init__(name, None)
        self.timing = timing
        self.max_deliveries = max_deliveries
        self.remember_removed = remember_removed
        self.variant = variant
        self.starts = 0

    # ------------------------------------------------------------ start

    def on_start(self) -> None:
        self.log = self.ctx.storage(self.LOG)
        self.stored: dict[str, Stored] = {}
        self.ready: dict[str, list[tuple[int, str]]] = {}  # queue -> heap of (seq, id)
        self.removed: OrderedDict[str, None] = OrderedDict()
        self.consumers: dict[str, Consumer] = {}
        self.turn: dict[str, int] = {}  # queue -> where round-robin resumes
        # id -> clients to confirm once durable, each once however often it published
        # (a list of every publish grew without bound while a slow fsync made a
        # producer publish again and again, and the confirms then kept the broker busy)
        self.waiting_confirms: dict[str, dict[str, None]] = {}
        self.sync_armed = False
        self.seq = 0
        for record in self.log.records():
            if "put" in record:
                m = Stored(str(record["put"]), str(record["q"]), record["body"], int(record["seq"]), durable=True)
                m.redelivered = True  # it may have been delivered before the restart
                self.stored[m.id] = m
                self.seq = max(self.seq, m.seq)
            elif "ack" in record:
                if self.stored.pop(str(record["ack"]), None) is not None:
                    self._forget(str(record["ack"]))
            elif "dead" in record:
                dead = self.stored.get(str(record["dead"]))
                if dead is not None:
                    dead.queue = str(record["q"])
        for m in sorted(self.stored.values(), key=lambda m: m.seq):
            self._make_ready(m)
        if self.starts > 0:
            self._record({"type": "BrokerCrash"})  # the crash and the restart, as one step
        self.starts += 1
        self.set_timer(TickTimer(), self.timing.tick)

    # ------------------------------------------------------------ dispatch

    def on_message(self, src: str, msg: Any) -> None:
        match msg:
            case Publish():
                self._on_publish(src, msg)
            case Subscribe():
                self._on_subscribe(src, msg)
            case Unsubscribe():
                self._drop_consumer(src)
            case Ack():
                self._on_ack(src, msg)
            case Nack():
                self._on_nack(src, msg)
        self._dispatch()

    def on_timer(self, timer: Any) -> None:
        if isinstance(timer, SyncTimer):
            self._sync()
        elif isinstance(timer, TickTimer):
            self._tick()
            self.set_timer(timer, self.timing.tick)
        self._dispatch()

    # ------------------------------------------------------------ publishing

    def _on_publish(self, src: str, msg: Publish) -> None:
        self._record({"type": "Receive", "m": msg.id})
        m = self.stored.get(msg.id)
        if (m is not None and m.durable) or msg.id in self.removed:
            self._send(src, Confirm(msg.id))  # durable already: the first confirm was lost
            return
        if m is None:
            self.seq += 1
            m = Stored(msg.id, msg.queue, msg.body, self.seq)
            self.stored[m.id] = m
            self.log.append({"put": m.id, "q": m.queue, "body": m.body, "seq": m.seq})
            self._arm_sync()
            if self.variant == "confirm_before_persist":  # the mistake: confirmed before the fsync
                self._send(src, Confirm(msg.id))
                return
        self.waiting_confirms.setdefault(msg.id, {})[src] = None

    def _arm_sync(self) -> None:
        if not self.sync_armed:
            self.sync_armed = True
            self.set_timer(SyncTimer(), 0.0)

    def _sync(self) -> None:
        self.sync_armed = False
        self.log.sync()
        if any(not m.durable for m in self.stored.values()):
            self._record({"type": "Persist"})
        for m in sorted((m for m in self.stored.values() if m.removing), key=lambda m: m.seq):
            self._record({"type": "Ack", "m": m.id})  # the acknowledgement, durable: the message goes
            del self.stored[m.id]
            self._forget(m.id)
        for m in sorted((m for m in self.stored.values() if not m.durable), key=lambda m: m.seq):
            m.durable = True
            self._make_ready(m)
            for client in self.waiting_confirms.pop(m.id, ()):
                self._send(client, Confirm(m.id))

    # ------------------------------------------------------------ consuming

    def _on_subscribe(self, src: str, msg: Subscribe) -> None:
        consumer = self.consumers.get(src)
        if consumer is not None and consumer.queue != msg.queue:
            self._drop_consumer(src)
            consumer = None
        if consumer is None:
            self.consumers[src] = Consumer(src, msg.queue, msg.prefetch, self.ctx.now())
        else:
            consumer.prefetch, consumer.seen = msg.prefetch, self.ctx.now()

    def _drop_consumer(self, name: str) -> None:
        consumer = self.consumers.pop(name, None)
        if consumer is None:
            return
        for mid in sorted(consumer.holding):
            m = self.stored.get(mid)
            if m is not None and m.holder == name:
                self._requeue(m)

    def _dispatch(self) -> None:
        """Deal ready messages to consumers with room, round-robin per queue."""
        by_queue: dict[str, list[Consumer]] = {}
        for consumer in self.consumers.values():
            by_queue.setdefault(consumer.queue, []).append(consumer)
        for queue, consumers in by_queue.items():
            heap = self.ready.get(queue)
            start = self.turn.get(queue, 0)
            while heap:
                room = [c for c in consumers if len(c.holding) < c.prefetch and self.ctx.knows(c.name)]
                if not room:
                    break
                consumer = room[start % len(room)]
                start += 1
                _, mid = heapq.heappop(heap)
                m = self.stored.get(mid)
                if m is None or m.holder is not None or not m.durable or m.removing or m.queue != queue:
                    continue  # removed (or being removed), or moved, since it was made ready
                self._deliver(m, consumer)
            self.turn[queue] = start

    def _deliver(self, m: Stored, consumer: Consumer) -> None:
        if m.deliveries >= self.max_deliveries and not m.queue.endswith(DEAD_SUFFIX):
            self._dead_letter(m)
            return
        m.deliveries += 1
        self._record({"type": "Deliver", "c": consumer.name, "m": m.id})
        self._send(consumer.name, Deliver(m.id, m.queue, m.body, m.redelivered, m.deliveries))
        if self.variant == "delete_on_delivery":  # the mistake: gone as it leaves
            self._remove(m)
            return
        m.holder, m.deadline = consumer.name, self.ctx.now() + self.timing.visibility
        consumer.holding.add(m.id)

    def _on_ack(self, src: str, msg: Ack) -> None:
        m = self.stored.get(msg.id)
        if m is None or not m.durable or m.removing:
            return  # removed already (a late or repeated acknowledgement), being removed, or unknown
        # Written now, removed once the next fsync makes it durable (``_sync``): a crash
        # before that forgets the acknowledgement, and the message is delivered again.
        self._release(m)
        m.removing = True
        self.log.append({"ack": m.id})
        self._arm_sync()

    def _on_nack(self, src: str, msg: Nack) -> None:
        m = self.stored.get(msg.id)
        if m is None or m.holder != src or m.removing:
            return
        self._release(m)
        if msg.requeue:
            m.redelivered = True
            self._make_ready(m)
        else:
            self._dead_letter(m)

    # ------------------------------------------------------------ timeouts

    def _tick(self) -> None:
        now = self.ctx.now()
        for name in [c.name for c in self.consumers.values() if now - c.seen > self.timing.consumer_timeout]:
            self._drop_consumer(name)
        for m in sorted((m for m in self.stored.values() if m.holder is not None), key=lambda m: m.seq):
            if m.deadline <= now:
                self._requeue(m)

    def _requeue(self, m: Stored) -> None:
        """Ready again, marked redelivered (the visibility timeout, a dropped consumer)."""
        self._record({"type": "Timeout", "m": m.id})
        self._release(m)
        if self.variant != "redelivery_unmarked":
            m.redelivered = True
        self._make_ready(m)

    # ------------------------------------------------------------ helpers

    def _make_ready(self, m: Stored) -> None:
        heapq.heappush(self.ready.setdefault(m.queue, []), (m.seq, m.id))

    def _release(self, m: Stored) -> None:
        consumer = self.consumers.get(m.holder) if m.holder is not None else None
        if consumer is not None:
            consumer.holding.discard(m.id)
        m.holder = None

    def _remove(self, m: Stored) -> None:
        self._release(m)
        del self.stored[m.id]
        self.log.append({"ack": m.id})
        self._arm_sync()
        self._forget(m.id)

    def _forget(self, mid: str) -> None:
        """Remember a removed id (for duplicate publishes), the newest ``remember_removed``."""
        if self.remember_removed:
            self.removed[mid] = None
            while len(self.removed) > self.remember_removed:
                self.removed.popitem(last=False)

    def _dead_letter(self, m: Stored) -> None:
        self._release(m)
        m.queue = m.queue + DEAD_SUFFIX
        m.deliveries = 0
        self.log.append({"dead": m.id, "q": m.queue})
        self._arm_sync()
        self._make_ready(m)

    def _record(self, action: dict[str, Any]) -> None:
        """A step, in spec/broker's vocabulary (docs/broker-service.md, "The trace")."""
        self.ctx.record(action)

    def _send(self, dst: str, msg: Any) -> None:
        if self.ctx.knows(dst):  # a client whose connection is gone is not answered
            self.send(dst, msg)
