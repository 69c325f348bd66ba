"""A broker, a producer and consumers as runtime nodes, for the controlled scheduler.

Where it sits: what ``checks/conformance/wiring/broker.py`` runs under
``impl.runtime.Simulation`` (and what tests build).  The producer publishes
messages m1..mN one after another, publishing each again (same id) until it is
confirmed; each consumer subscribes (again, every ``heartbeat``, which is also how
the broker knows it is alive), has each delivery's effect applied by the
consumers' shared store (a node of its own, ``db``, which applies each id once,
durably: the idempotent receiver), and then acknowledges it.  Everything the
clients saw is kept for the checks: what was published and confirmed, each
delivery attempt and its mark, what was applied.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from distcheck.impl.messaging.broker import BrokerNode, BrokerTiming
from distcheck.impl.messaging.messages import CLIENT_MESSAGES, Ack, Confirm, Deliver, Publish, Subscribe
from distcheck.impl.resilience import UNBOUNDED, Retrying
from distcheck.impl.runtime.actor import MessageError, encode
from distcheck.impl.runtime.api import Context, Envelope, Storage

BROKER = "broker"
DB = "db"
QUEUE = "q"


@attrs.define
class Producer:
    name: str
    messages: int
    retry: float
    published: list[str] = attrs.field(factory=list)
    confirmed: set[str] = attrs.field(factory=set)

    def main(self, ctx: Context) -> None:
        # What it confirmed survives a restart in its storage: it goes on from there.
        log = ctx.storage("producer")
        done = {str(r["confirmed"]) for r in log.records()}
        for i in range(1, self.messages + 1):
            mid = f"m{i}"
            if mid in done:
                continue
            self.published.append(mid)
            # Published again every ``retry`` seconds until confirmed, under its id
            # (the idempotency key: the broker stores an id once).
            resends = Retrying(
                backoff=False,
                max_attempts=UNBOUNDED,
                retry_on=TimeoutError,
                idempotency_key=mid,
                clock=ctx.now,
                sleep=ctx.sleep,
            )
            for attempt in resends:
                with attempt:
                    ctx.record({"type": "Publish", "m": mid})
                    ctx.send(BROKER, encode(Publish(mid, QUEUE, {"n": i})))
                    self._await_confirm(ctx, log, mid, ctx.now() + attempt.bounded(self.retry))
                    if mid not in self.confirmed:
                        raise TimeoutError(f"{mid} not confirmed yet")
                if attempt.exception is None:
                    break

    def _await_confirm(self, ctx: Context, log: Storage, mid: str, until: float) -> None:
        """Take answers until ``mid`` is confirmed or ``until``."""
        while mid not in self.confirmed and (left := until - ctx.now()) > 1e-6:
            item = ctx.receive(timeout=left)
            if isinstance(item, Envelope):
                try:
                    answer = CLIENT_MESSAGES.decode(item.msg)
                except MessageError:
                    continue
                if isinstance(answer, Confirm) and answer.id == mid:
                    # Durably before it counts: a restart must not publish it again.
                    log.append({"confirmed": mid})
                    log.sync()
                    ctx.record({"type": "Confirmed", "m": mid})
                    self.confirmed.add(mid)


@attrs.frozen
class Attempt:
    """One delivery a consumer took: the id, the broker's count and the mark."""

    consumer: str
    id: str
    deliveries: int
    redelivered: bool


@attrs.define
class EffectStore:
    """The consumers' shared database (a node): applies a message's effect and
    records its id in one durable write, once per id (idempotent), and answers
    whether it applied it.  ``applied`` is every effect applied, across restarts."""

    name: str = DB
    idempotent: bool = True
    applied: list[str] = attrs.field(factory=list)

    def main(self, ctx: Context) -> None:
        log = ctx.storage("effects")
        seen = {str(r["applied"]) for r in log.records()}
        while True:
            item = ctx.receive()
            if not isinstance(item, Envelope) or item.msg.get("type") != "Apply":
                continue
            mid = str(item.msg.get("id"))
            fresh = not self.idempotent or mid not in seen
            if fresh:
                log.append({"applied": mid})
                log.sync()  # the effect and its id, durably, before the answer
                seen.add(mid)
                self.applied.append(mid)
            ctx.send(item.src, {"type": "Applied", "id": mid, "fresh": fresh})


@attrs.define
class Consumer:
    """Takes deliveries one at a time: has the shared store apply each (asking again
    until it answers), then acknowledges it."""

    name: str
    heartbeat: float
    retry: float
    prefetch: int = 2
    attempts: list[Attempt] = attrs.field(factory=list)

    def main(self, ctx: Context) -> None:
        taken: set[tuple[str, int]] = set()  # attempts this incarnation took (network copies skipped)
        backlog: list[str] = []
        asked_at = 0.0
        ctx.send(BROKER, encode(Subscribe(QUEUE, self.prefetch)))
        beat = ctx.now() + self.heartbeat
        while True:
            wake = min(beat, asked_at + self.retry) if backlog else beat
            item = ctx.receive(timeout=max(wake - ctx.now(), 1e-3))
            now = ctx.now()
            if now >= beat:
                ctx.send(BROKER, encode(Subscribe(QUEUE, self.prefetch)))
                beat = now + self.heartbeat
            if backlog and now >= asked_at + self.retry:
                ctx.send(DB, {"type": "Apply", "id": backlog[0]})
                asked_at = now
            if not isinstance(item, Envelope):
                continue
            if item.src == DB:
                if item.msg.get("type") == "Applied" and backlog and item.msg.get("id") == backlog[0]:
                    ctx.record({"type": "Consume", "c": self.name, "m": backlog[0]})
                    ctx.send(BROKER, encode(Ack(backlog.pop(0))))
                    if backlog:
                        ctx.send(DB, {"type": "Apply", "id": backlog[0]})
                        asked_at = ctx.now()
                continue
            try:
                msg = CLIENT_MESSAGES.decode(item.msg)
            except MessageError:
                continue
            if not isinstance(msg, Deliver) or (msg.id, msg.deliveries) in taken:
                continue
            taken.add((msg.id, msg.deliveries))
            self.attempts.append(Attempt(self.name, msg.id, msg.deliveries, msg.redelivered))
            backlog.append(msg.id)
            if len(backlog) == 1:
                ctx.send(DB, {"type": "Apply", "id": msg.id})
                asked_at = ctx.now()


@attrs.define
class System:
    broker: BrokerNode
    producer: Producer
    consumers: list[Consumer]
    store: EffectStore

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        out: dict[str, Callable[[Context], None]] = {BROKER: self.broker.main, self.producer.name: self.producer.main}
        out.update({c.name: c.main for c in self.consumers})
        out[self.store.name] = self.store.main
        return out

    def applied(self) -> list[str]:
        return list(self.store.applied)

    def done(self) -> bool:
        """Every message confirmed, and every one applied."""
        wanted = {f"m{i}" for i in range(1, self.producer.messages + 1)}
        return self.producer.confirmed >= wanted and set(self.applied()) >= wanted


def system(
    messages: int = 4,
    consumers: int = 2,
    *,
    timing: BrokerTiming = BrokerTiming(visibility=20.0, consumer_timeout=15.0, tick=1.0),
    heartbeat: float = 5.0,
    retry: float = 10.0,
    variant: str | None = None,
    idempotent: bool = True,
) -> System:
    """Virtual seconds: a visibility timeout of 20, consumers beating every 5."""
    return System(
        BrokerNode(BROKER, timing, max_deliveries=1000, variant=variant),
        Producer("producer", messages, retry),
        [Consumer(f"c{i}", heartbeat, retry) for i in range(1, consumers + 1)],
        EffectStore(idempotent=idempotent),
    )
