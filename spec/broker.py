"""A durable message queue: publisher confirms, consumer acknowledgements, a
visibility timeout, a broker that crashes and restarts.

A producer publishes messages m1, m2, ... to one queue and publishes a message
again until the broker confirms it.  The broker keeps what it receives in memory
until it persists it (an fsync, for a batch), and confirms a message only once it
is persisted.  It delivers a stored message to a consumer, marking it
``redelivered`` when it may have been delivered before; the message stays stored,
in flight, until the consumer acknowledges it, and only then is it removed.  If no
acknowledgement comes within the visibility timeout (left abstract: any moment),
the message is made ready again, marked redelivered.  A crash of the broker loses
what it had not persisted and which messages were in flight; after the restart
every stored message is ready again and marked redelivered (the broker cannot
tell which ones it had delivered).  A consumer applies a message's effect and then
acknowledges it; an idempotent consumer applies each message id once (the ids it
applied are stored with the effects, durably), so duplicates, from a re-published
message or a redelivery, change nothing.  Every message on the network may be lost
or delivered twice.

Sources: the AMQP 0-9-1 model as RabbitMQ implements it (publisher confirms,
``basic.ack``, the ``redelivered`` flag); Amazon SQS's visibility timeout; the
idempotent receiver (Hohpe and Woolf, *Enterprise Integration Patterns*).

State: the producer's ``published`` (how many of its messages it has published at
least once) and ``confirmed``; the broker's ``stored`` (durable: message id → its
redelivered mark), ``pending`` (received, not yet persisted) and ``inflight``
(delivered, not yet acknowledged: id → consumer); each consumer's ``applied`` (the
ids whose effect it applied, in order: a history variable) and ``seen`` (durable
ids it applied, for idempotence); the network's four bags (``publishes``,
``confirms``, ``deliveries``, ``acks``); and histories: ``removed`` (ids the broker
deleted) and ``deliveries_made`` ((id, how many deliveries of it so far, the mark)).

Actions
    Publish(m)          The producer publishes m: its next new message, or one not yet confirmed again.
    Receive(m)          The broker takes a publish of m from the network (ignored if it has m already).
    Persist             The broker persists what it received (one fsync) and confirms it.
    Confirmed(m)        The producer takes a confirm of m.
    Deliver(c, m)       The broker delivers a ready stored message to consumer c.
    Consume(c, m)       Consumer c takes a delivery: applies its effect (unless it has, being idempotent), acknowledges.
    Ack(m)              The broker takes an acknowledgement of m: removes m.
    Timeout(m)          m's visibility timeout expires: it is ready again, marked redelivered.
    BrokerCrash         The broker crashes and restarts: what it had not persisted, and what was
                        in flight, is forgotten.
    Lose(net, m)        The network loses a message of one of its bags.
    Duplicate(net, m)   The network delivers a message twice (a second copy in its bag).

Invariants
    TypeOK              every variable holds a value of its type.
    NoConfirmedLoss     every message confirmed to the producer is held by the broker, or was applied by a consumer.
    RemovedAfterAck     a message is removed only after a consumer applied it and acknowledged it.
    RedeliveryMarked    every delivery of a message delivered before carries the redelivered mark.
    EffectivelyOnce     no consumer applies a message's effect twice.

Reachable
    AllApplied          every message's effect was applied, and the queue is empty.
    AppliedAfterCrash   a message was applied after a broker crash, redelivered.

Bounds: at most ``max_msgs`` messages in each network bag (copies counted), at most
``max_crashes`` broker crashes, at most ``max_deliveries`` deliveries per message.

Variants
    confirm_before_persist      the broker confirms a message when it receives it, before persisting it.
    delete_on_delivery          the broker removes a message when it delivers it (auto-ack).
    redelivery_unmarked         a message made ready again by the visibility timeout is not marked redelivered.
    non_idempotent_consumer     the consumer applies every delivery, copies included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant
from distcheck.spec.values import Bag, FrozenMap

BROKER, PRODUCER = "broker", "producer"
PUBLISHES, CONFIRMS, DELIVERIES, ACKS = "publishes", "confirms", "deliveries", "acks"


@attrs.frozen(order=True)
class Delivery:
    consumer: str
    m: str
    redelivered: bool

    def __str__(self) -> str:
        return f"{self.m}{'*' if self.redelivered else ''}→{self.consumer}"


# -------------------------------------------------------------------------- state


@attrs.frozen
class BrokerState:
    published: int
    confirmed: frozenset[str]
    stored: FrozenMap[str, bool]
    pending: frozenset[str]
    inflight: FrozenMap[str, str]
    applied: FrozenMap[str, tuple[str, ...]]
    seen: FrozenMap[str, frozenset[str]]
    publishes: Bag[str]
    confirms: Bag[str]
    deliveries: Bag[Delivery]
    acks: Bag[str]
    removed: frozenset[str]
    deliveries_made: frozenset[tuple[str, int, bool]]
    crashes: int


# ------------------------------------------------------------------------ actions


@attrs.frozen
class Publish(Action):
    ACTOR = PRODUCER
    m: str


@attrs.frozen
class Receive(Action):
    ACTOR = BROKER
    m: str


@attrs.frozen
class Persist(Action):
    ACTOR = BROKER


@attrs.frozen
class Confirmed(Action):
    ACTOR = PRODUCER
    m: str


@attrs.frozen
class Deliver(Action):
    ACTOR = BROKER
    c: str
    m: str


@attrs.frozen
class Consume(Action):
    ACTOR = "c"
    c: str
    m: str


@attrs.frozen
class Ack(Action):
    ACTOR = BROKER
    m: str


@attrs.frozen
class Timeout(Action):
    ACTOR = BROKER
    m: str


@attrs.frozen
class BrokerCrash(Action):
    ACTOR = BROKER


@attrs.frozen
class Lose(Action):
    ACTOR = "network"
    net: str
    m: str


@attrs.frozen
class Duplicate(Action):
    ACTOR = "network"
    net: str
    m: str


BrokerAction = (
    Publish | Receive | Persist | Confirmed | Deliver | Consume | Ack | Timeout | BrokerCrash | Lose | Duplicate
)


@attrs.frozen
class Config:
    messages: int = param(1, help="messages the producer publishes", minimum=1, maximum=4)
    consumers: int = param(2, help="consumers of the queue", minimum=1, maximum=3)
    # The bounds' maxima are high for trace validation, which applies no bound; an
    # exhaustive check beyond a few would not end.
    max_msgs: int = param(1, help="bound: messages in each network bag, copies counted", minimum=1, maximum=1_000_000)
    max_crashes: int = param(1, help="bound: broker crashes", minimum=0, maximum=1_000_000)
    max_deliveries: int = param(2, help="bound: deliveries of one message", minimum=1, maximum=1_000_000)
    variant: str | None = None


class Broker(Spec[BrokerState, BrokerAction]):
    name = "broker"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.ids = tuple(f"m{i}" for i in range(1, config.messages + 1))
        self.consumers = tuple(f"c{i}" for i in range(1, config.consumers + 1))

    def init_states(self) -> Iterable[BrokerState]:
        yield BrokerState(
            published=0,
            confirmed=frozenset(),
            stored=FrozenMap(),
            pending=frozenset(),
            inflight=FrozenMap(),
            applied=FrozenMap({c: () for c in self.consumers}),
            seen=FrozenMap({c: frozenset() for c in self.consumers}),
            publishes=Bag(),
            confirms=Bag(),
            deliveries=Bag(),
            acks=Bag(),
            removed=frozenset(),
            deliveries_made=frozenset(),
            crashes=0,
        )

    def next(self) -> Next:
        return (
            Exists("m", self.ids, self.publish, self.receive, self.confirmed_rule),
            self.persist,
            Exists("c", self.consumers, Exists("m", self.ids, self.deliver, self.consume)),
            Exists("m", self.ids, self.ack, self.timeout),
            self.broker_crash,
            Exists("net", (PUBLISHES, CONFIRMS, DELIVERIES, ACKS), Exists("m", self.ids, self.lose, self.duplicate)),
        )

    # ------------------------------------------------------------ the producer

    @rule(Publish)
    def publish(self, s: BrokerState, m: str) -> BrokerState | None:
        """The producer publishes its next new message, or again one not confirmed."""
        i = self.ids.index(m)
        if i > s.published or m in s.confirmed:
            return None
        return attrs.evolve(s, published=max(s.published, i + 1), publishes=s.publishes.add(m))

    @rule(Confirmed)
    def confirmed_rule(self, s: BrokerState, m: str) -> BrokerState | None:
        """The producer takes a confirm of m: it will not publish m again."""
        if m not in s.confirms:
            return None
        return attrs.evolve(s, confirms=s.confirms.remove(m), confirmed=s.confirmed | {m})

    # ------------------------------------------------------------ the broker

    @rule(Receive)
    def receive(self, s: BrokerState, m: str) -> BrokerState | None:
        """The broker takes a publish of m; one it has already (pending or stored) is
        confirmed again if stored, and otherwise ignored."""
        if m not in s.publishes:
            return None
        rest = attrs.evolve(s, publishes=s.publishes.remove(m))
        if m in s.stored or m in s.removed:
            return attrs.evolve(rest, confirms=rest.confirms.add(m))  # the first confirm may have been lost
        return self.received(rest, m)

    def received(self, s: BrokerState, m: str) -> BrokerState:
        """A new message, held in memory until persisted."""
        return attrs.evolve(s, pending=s.pending | {m})

    @rule(Persist)
    def persist(self, s: BrokerState) -> BrokerState | None:
        """The broker persists what it received (one fsync for them all) and confirms each."""
        if not s.pending:
            return None
        stored, confirms = s.stored, s.confirms
        for m in sorted(s.pending):
            stored, confirms = stored.set(m, False), self.confirm_on_persist(confirms, m)
        return attrs.evolve(s, stored=stored, pending=frozenset(), confirms=confirms)

    def confirm_on_persist(self, confirms: Bag[str], m: str) -> Bag[str]:
        return confirms.add(m)

    @rule(Deliver)
    def deliver(self, s: BrokerState, c: str, m: str) -> BrokerState | None:
        """The broker delivers a ready stored message (not in flight) to consumer c,
        with its redelivered mark."""
        if m not in s.stored or m in s.inflight:
            return None
        made = 1 + sum(1 for (i, _, _) in s.deliveries_made if i == m)
        if made > self.config.max_deliveries:
            return None
        mark = s.stored[m]
        return self.delivered(
            attrs.evolve(
                s,
                deliveries=s.deliveries.add(Delivery(c, m, mark)),
                deliveries_made=s.deliveries_made | {(m, made, mark)},
            ),
            c,
            m,
        )

    def delivered(self, s: BrokerState, c: str, m: str) -> BrokerState:
        """m is in flight to c until acknowledged."""
        return attrs.evolve(s, inflight=s.inflight.set(m, c))

    @rule(Ack)
    def ack(self, s: BrokerState, m: str) -> BrokerState | None:
        """The broker takes an acknowledgement of m and removes m (durably)."""
        if m not in s.acks:
            return None
        rest = attrs.evolve(s, acks=s.acks.remove(m))
        if m not in s.stored:
            return rest  # a late copy: removed already
        inflight = rest.inflight.remove(m) if m in rest.inflight else rest.inflight  # (or ready again, timed out)
        return attrs.evolve(rest, stored=rest.stored.remove(m), inflight=inflight, removed=s.removed | {m})

    @rule(Timeout)
    def timeout(self, s: BrokerState, m: str) -> BrokerState | None:
        """m's visibility timeout expires without an acknowledgement: it is ready
        again, marked redelivered."""
        if m not in s.inflight:
            return None
        return attrs.evolve(s, inflight=s.inflight.remove(m), stored=s.stored.set(m, self.mark_on_timeout(s, m)))

    def mark_on_timeout(self, s: BrokerState, m: str) -> bool:
        return True

    @rule(BrokerCrash)
    def broker_crash(self, s: BrokerState) -> BrokerState | None:
        """The broker crashes and restarts from its disk: what it received and had not
        persisted is gone, nothing is in flight, and every stored message is marked
        redelivered (it cannot tell which it had delivered)."""
        if s.crashes >= self.config.max_crashes:
            return None
        stored = FrozenMap({m: True for m in s.stored})
        return attrs.evolve(s, stored=stored, pending=frozenset(), inflight=FrozenMap(), crashes=s.crashes + 1)

    # ------------------------------------------------------------ consumers

    @rule(Consume)
    def consume(self, s: BrokerState, c: str, m: str) -> BrokerState | None:
        """Consumer c takes a delivery of m, applies its effect unless it applied m
        before (idempotent: the id is stored with the effect), and acknowledges."""
        found = [d for d in s.deliveries.distinct() if d.consumer == c and d.m == m]
        if not found:
            return None
        rest = attrs.evolve(s, deliveries=s.deliveries.remove(found[0]), acks=s.acks.add(m))
        if not self.applies(s, c, m):
            return rest
        return attrs.evolve(rest, applied=s.applied.set(c, (*s.applied[c], m)), seen=s.seen.set(c, s.seen[c] | {m}))

    def applies(self, s: BrokerState, c: str, m: str) -> bool:
        """Whether c applies m's effect: not if any consumer's store says it was applied
        (the consumers share one store of effects and ids)."""
        return not any(m in seen for seen in s.seen.values())

    # ------------------------------------------------------------ the network

    @rule(Lose)
    def lose(self, s: BrokerState, net: str, m: str) -> BrokerState | None:
        """The network loses a message (for deliveries: every copy of m's first one)."""
        if net == DELIVERIES:
            found = [d for d in s.deliveries.distinct() if d.m == m]
            return attrs.evolve(s, deliveries=s.deliveries.remove(found[0])) if found else None
        bag: Bag[str] = getattr(s, net)
        if m not in bag:
            return None
        if net == PUBLISHES:
            return attrs.evolve(s, publishes=bag.remove(m))
        if net == CONFIRMS:
            return attrs.evolve(s, confirms=bag.remove(m))
        return attrs.evolve(s, acks=bag.remove(m))

    @rule(Duplicate)
    def duplicate(self, s: BrokerState, net: str, m: str) -> BrokerState | None:
        """The network delivers a message twice: a second copy (for deliveries: of m's first one)."""
        if net == DELIVERIES:
            found = [d for d in s.deliveries.distinct() if d.m == m]
            return attrs.evolve(s, deliveries=s.deliveries.add(found[0])) if found else None
        bag: Bag[str] = getattr(s, net)
        if m not in bag:
            return None
        if net == PUBLISHES:
            return attrs.evolve(s, publishes=bag.add(m))
        if net == CONFIRMS:
            return attrs.evolve(s, confirms=bag.add(m))
        return attrs.evolve(s, acks=bag.add(m))

    # ------------------------------------------------------------ properties

    def within_bounds(self, s: BrokerState) -> bool:
        bound = int(self.config.max_msgs)
        return all(len(b) <= bound for b in (s.publishes, s.confirms, s.deliveries, s.acks))

    def invariants(self) -> Sequence[Invariant[BrokerState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self.type_ok),
            Invariant(
                "NoConfirmedLoss",
                "every message confirmed to the producer is held by the broker, or was applied by a consumer",
                no_confirmed_loss,
            ),
            Invariant(
                "RemovedAfterAck",
                "a message is removed only after a consumer applied it and acknowledged it",
                removed_after_ack,
            ),
            Invariant(
                "RedeliveryMarked",
                "every delivery of a message delivered before carries the redelivered mark",
                redelivery_marked,
            ),
            Invariant("EffectivelyOnce", "no consumer applies a message's effect twice", effectively_once),
        )

    def type_ok(self, s: BrokerState) -> bool:
        ids = set(self.ids)
        return (
            0 <= s.published <= len(self.ids)
            and s.confirmed <= ids
            and set(s.stored) <= ids
            and s.pending <= ids
            and set(s.inflight) <= set(s.stored)
            and all(c in self.consumers for c in s.inflight.values())
            and all(set(a) <= ids for a in s.applied.values())
            and 0 <= s.crashes <= self.config.max_crashes
        )

    def reachable(self) -> Sequence[Reachable[BrokerState]]:
        return (
            Reachable(
                "AllApplied",
                "every message's effect was applied, and the queue is empty",
                lambda s: applied_ids(s) == set(self.ids) and not s.stored and not s.pending,
            ),
            Reachable(
                "AppliedAfterCrash",
                "a message was applied after a broker crash, redelivered",
                lambda s: (
                    s.crashes > 0 and any(n > 1 and mark for (_, n, mark) in s.deliveries_made) and bool(applied_ids(s))
                ),
            ),
        )


def applied_ids(s: BrokerState) -> set[str]:
    return {m for a in s.applied.values() for m in a}


def no_confirmed_loss(s: BrokerState) -> bool:
    return all(m in s.stored or m in s.pending or m in applied_ids(s) for m in s.confirmed)


def removed_after_ack(s: BrokerState) -> bool:
    return s.removed <= applied_ids(s)


def redelivery_marked(s: BrokerState) -> bool:
    return all(mark for (_, n, mark) in s.deliveries_made if n > 1)


def effectively_once(s: BrokerState) -> bool:
    everything = [m for a in s.applied.values() for m in a]
    return len(everything) == len(set(everything))


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides the one step it breaks.


@variant("confirm_before_persist", "the broker confirms a message when it receives it, before persisting it")
class ConfirmBeforePersist(Broker):
    def received(self, s: BrokerState, m: str) -> BrokerState:
        """Confirmed at once, persisted later: a crash in between loses a message the
        producer was told is safe, and will never publish again."""
        return attrs.evolve(s, pending=s.pending | {m}, confirms=s.confirms.add(m))

    def confirm_on_persist(self, confirms: Bag[str], m: str) -> Bag[str]:
        return confirms


@variant("delete_on_delivery", "the broker removes a message when it delivers it (auto-ack)")
class DeleteOnDelivery(Broker):
    def delivered(self, s: BrokerState, c: str, m: str) -> BrokerState:
        """Removed as it leaves: a delivery lost on the way (or a consumer that dies
        before applying it) loses the message."""
        return attrs.evolve(s, stored=s.stored.remove(m), removed=s.removed | {m})


@variant("redelivery_unmarked", "a message made ready again by the visibility timeout is not marked redelivered")
class RedeliveryUnmarked(Broker):
    def mark_on_timeout(self, s: BrokerState, m: str) -> bool:
        """The mark is left as it was: a consumer that trusts it to skip its duplicate
        check applies the redelivered message twice."""
        return s.stored[m]


@variant("non_idempotent_consumer", "the consumer applies every delivery, copies included")
class NonIdempotentConsumer(Broker):
    def applies(self, s: BrokerState, c: str, m: str) -> bool:
        """No record of the ids applied: a redelivery, or a message published twice
        because its confirm was lost, is applied again."""
        return True
