"""FIFO broadcast and causal broadcast with vector clocks, among N processes.

Each process broadcasts a few messages to the group.  A broadcast is delivered at
once by its sender and travels to every other process over a network that
reorders and may duplicate (a bag).  A process keeps a vector clock: entry p counts
the messages of p it has delivered.  A message carries its sender's clock as it
was when broadcast, its sender's own entry counted up: so its entry for the
sender is its number among the sender's messages, and its other entries say what
the sender had delivered before sending it.  A message waits in the network (the
hold-back queue) until the receiver may deliver it:

- **FIFO broadcast**: when it is the next message of its sender, ``V[p] = VC[p] + 1``;
- **causal broadcast**: that, and the receiver has delivered everything its sender
  had delivered before sending it, ``V[k] <= VC[k]`` for every other process k.

A copy that can no longer be delivered (``V[p] <= VC[p]``: delivered already) is
discarded.  Delivery sets the receiver's entry for the sender to ``V[p]``.

Sources: K. Birman, A. Schiper, P. Stephenson, "Lightweight causal and atomic group
multicast" (ACM TOCS 1991), the vector-clock delivery rule; C. Fidge and F.
Mattern (1988) for vector clocks; C. Cachin, R. Guerraoui, L. Rodrigues,
*Reliable and Secure Distributed Programming*, ch. 3 (FIFO and causal broadcast,
their properties).

State: ``clock`` (each process's vector clock, a tuple in process order),
``sent`` (broadcasts so far, per process), ``delivered`` (each process's deliveries
in order: a history variable the invariants read), ``network`` (a bag of
envelopes, each a message and its destination).

Actions
    Broadcast(p)        p broadcasts its next message: delivers it itself and sends it to every other process.
    Deliver(q, m)       q delivers m from the network, once the delivery rule allows it.
    Discard(q, m)       q drops a copy of a message it has delivered already.
    Duplicate(q, m)     The network copies an envelope.

Invariants
    TypeOK          every variable holds a value of its type; every message delivered was broadcast (no creation).
    NoDuplication   no process delivers a message twice.
    FifoOrder       every process delivers each sender's messages in the order sent, none skipped.
    CausalOrder     (causal broadcast) no process delivers a message before one that happened before it.

Reachable
    AllDelivered        every process has delivered every message.
    CausalChain         a process broadcast a message after delivering another process's message.

Bounds: at most ``max_msgs`` envelopes in the network, counting copies.

Variants
    fifo_broadcast:
        deliver_on_receipt      a message is delivered as soon as it arrives, with no hold-back.
        stale_copies            the check lets through a copy of a message delivered already (``<=`` for ``=``).
    causal_broadcast:
        sender_entry_only       the check compares only the sender's entry (FIFO order, not causal).
        ignore_sender_entry     the check compares every entry but the sender's.
        stale_copies            as for FIFO broadcast, in the causal check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant
from distcheck.spec.values import Bag, FrozenMap

# ------------------------------------------------------------------------ messages


@attrs.frozen(order=True)
class Msg:
    sender: str
    clock: tuple[int, ...]  # the sender's vector clock when it broadcast this message

    def __str__(self) -> str:
        return f"{self.sender}:{'.'.join(map(str, self.clock))}"


@attrs.frozen(order=True)
class Envelope:
    dest: str
    msg: Msg

    def __str__(self) -> str:
        return f"{self.msg}→{self.dest}"


# -------------------------------------------------------------------------- state


@attrs.frozen
class BroadcastState:
    clock: FrozenMap[str, tuple[int, ...]]
    sent: FrozenMap[str, int]
    delivered: FrozenMap[str, tuple[Msg, ...]]
    network: Bag[Envelope]


# ------------------------------------------------------------------------ actions


@attrs.frozen
class Broadcast(Action):
    ACTOR = "p"
    p: str


@attrs.frozen
class Deliver(Action):
    ACTOR = "q"
    q: str
    m: Msg


@attrs.frozen
class Discard(Action):
    ACTOR = "q"
    q: str
    m: Msg


@attrs.frozen
class Duplicate(Action):
    ACTOR = "network"
    q: str
    m: Msg


BroadcastAction = Broadcast | Deliver | Discard | Duplicate


@attrs.frozen
class Config:
    processes: int = param(3, help="processes in the group", minimum=2, maximum=5)
    messages: int = param(1, help="broadcasts per process", minimum=1, maximum=3)
    max_msgs: int = param(3, help="bound: envelopes in the network, counting copies", minimum=1, maximum=12)
    variant: str | None = None


def process_names(n: int) -> tuple[str, ...]:
    return tuple(f"p{i}" for i in range(1, n + 1))


def happened_before(a: Msg, b: Msg) -> bool:
    """Whether ``a`` happened before ``b``: ``a``'s clock is below ``b``'s in every entry."""
    return a != b and all(x <= y for x, y in zip(a.clock, b.clock))


# ------------------------------------------------------------------ FIFO broadcast


class FifoBroadcast(Spec[BroadcastState, BroadcastAction]):
    name = "fifo_broadcast"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.processes = process_names(config.processes)
        self.index = {p: i for i, p in enumerate(self.processes)}

    def init_states(self) -> Iterable[BroadcastState]:
        zero = tuple(0 for _ in self.processes)
        yield BroadcastState(
            clock=FrozenMap({p: zero for p in self.processes}),
            sent=FrozenMap({p: 0 for p in self.processes}),
            delivered=FrozenMap({p: () for p in self.processes}),
            network=Bag(),
        )

    def next(self) -> Next:
        return (
            Exists("p", self.processes, self.broadcast),
            Exists("q", self.processes, Exists("m", self._arrived, self.deliver, self.discard, self.duplicate)),
        )

    def _arrived(self, s: BroadcastState, q: str) -> list[Msg]:
        """The messages in the network on their way to ``q``."""
        return [e.msg for e in s.network.distinct() if e.dest == q]

    # ------------------------------------------------------------ the delivery rule

    def deliverable(self, clock: tuple[int, ...], m: Msg) -> bool:
        """FIFO: ``m`` is its sender's next message."""
        p = self.index[m.sender]
        return m.clock[p] == clock[p] + 1

    def stale(self, clock: tuple[int, ...], m: Msg) -> bool:
        """A copy of a message delivered already."""
        p = self.index[m.sender]
        return m.clock[p] <= clock[p]

    # ------------------------------------------------------------ rules

    @rule(Broadcast)
    def broadcast(self, s: BroadcastState, p: str) -> BroadcastState | None:
        """p broadcasts its next message, stamped with its clock (its own entry counted
        up), delivers it itself and sends it to every other process."""
        if s.sent[p] >= self.config.messages:
            return None
        i = self.index[p]
        clock = tuple(c + 1 if k == i else c for k, c in enumerate(s.clock[p]))
        m = Msg(p, clock)
        network = s.network
        for q in self.processes:
            if q != p:
                network = network.add(Envelope(q, m))
        return BroadcastState(
            clock=s.clock.set(p, clock),
            sent=s.sent.set(p, s.sent[p] + 1),
            delivered=s.delivered.set(p, (*s.delivered[p], m)),
            network=network,
        )

    @rule(Deliver)
    def deliver(self, s: BroadcastState, q: str, m: Msg) -> BroadcastState | None:
        """q delivers m, once the delivery rule allows it; its entry for the sender
        becomes m's."""
        envelope = Envelope(q, m)
        if envelope not in s.network or not self.deliverable(s.clock[q], m):
            return None
        p = self.index[m.sender]
        clock = tuple(m.clock[p] if k == p else c for k, c in enumerate(s.clock[q]))
        return attrs.evolve(
            s,
            clock=s.clock.set(q, clock),
            delivered=s.delivered.set(q, (*s.delivered[q], m)),
            network=s.network.remove(envelope),
        )

    @rule(Discard)
    def discard(self, s: BroadcastState, q: str, m: Msg) -> BroadcastState | None:
        """q drops a copy of a message it has delivered already."""
        envelope = Envelope(q, m)
        if envelope not in s.network or not self.stale(s.clock[q], m) or self.deliverable(s.clock[q], m):
            return None
        return attrs.evolve(s, network=s.network.remove(envelope))

    @rule(Duplicate)
    def duplicate(self, s: BroadcastState, q: str, m: Msg) -> BroadcastState | None:
        """The network copies an envelope."""
        envelope = Envelope(q, m)
        if envelope not in s.network:
            return None
        return attrs.evolve(s, network=s.network.add(envelope))

    # ------------------------------------------------------------ properties

    def within_bounds(self, s: BroadcastState) -> bool:
        return len(s.network) <= int(self.config.max_msgs)

    def invariants(self) -> Sequence[Invariant[BroadcastState]]:
        return (
            Invariant(
                "TypeOK",
                "every variable holds a value of its type, and every message delivered was broadcast",
                self.type_ok,
            ),
            Invariant("NoDuplication", "no process delivers a message twice", no_duplication),
            Invariant(
                "FifoOrder", "every process delivers each sender's messages in the order sent, none skipped", self.fifo
            ),
        )

    def type_ok(self, s: BroadcastState) -> bool:
        n = len(self.processes)
        broadcast = {m for p in self.processes for m in s.delivered[p] if m.sender == p}
        return (
            all(len(s.clock[p]) == n and 0 <= s.sent[p] <= self.config.messages for p in self.processes)
            and all(m in broadcast for p in self.processes for m in s.delivered[p])
            and all(e.dest in self.index and e.msg in broadcast for e in s.network.distinct())
        )

    def fifo(self, s: BroadcastState) -> bool:
        for q in self.processes:
            for p in self.processes:
                numbers = [m.clock[self.index[p]] for m in s.delivered[q] if m.sender == p]
                if numbers != list(range(1, len(numbers) + 1)):
                    return False
        return True

    def reachable(self) -> Sequence[Reachable[BroadcastState]]:
        total = len(self.processes) * self.config.messages
        return (
            Reachable(
                "AllDelivered",
                "every process has delivered every message",
                lambda s: all(len(s.delivered[q]) == total for q in self.processes),
            ),
            Reachable(
                "CausalChain",
                "a process broadcast a message after delivering another process's message",
                lambda s: any(
                    m.sender == p and any(happened_before(o, m) for o in s.delivered[p] if o.sender != p)
                    for p in self.processes
                    for m in s.delivered[p]
                ),
            ),
        )


def no_duplication(s: BroadcastState) -> bool:
    return all(len(set(ms)) == len(ms) for ms in s.delivered.values())


# ------------------------------------------------------------------ causal broadcast


class CausalBroadcast(FifoBroadcast):
    name = "causal_broadcast"

    def deliverable(self, clock: tuple[int, ...], m: Msg) -> bool:
        """Causal: ``m`` is its sender's next message, and everything its sender had
        delivered before sending it is delivered here."""
        p = self.index[m.sender]
        return m.clock[p] == clock[p] + 1 and all(m.clock[k] <= clock[k] for k in range(len(clock)) if k != p)

    def invariants(self) -> Sequence[Invariant[BroadcastState]]:
        return (
            *super().invariants(),
            Invariant("CausalOrder", "no process delivers a message before one that happened before it", causal_order),
        )


def causal_order(s: BroadcastState) -> bool:
    for ms in s.delivered.values():
        for i, later in enumerate(ms):
            earlier = set(ms[:i])
            if any(happened_before(o, later) and o not in earlier for ms2 in s.delivered.values() for o in ms2):
                return False
    return True


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides the one rule or check it breaks.


@variant(
    "deliver_on_receipt", "a message is delivered as soon as it arrives, with no hold-back", params={"messages": 2}
)
class DeliverOnReceipt(FifoBroadcast):
    def deliverable(self, clock: tuple[int, ...], m: Msg) -> bool:
        """Whatever arrives is delivered: a later message overtaking an earlier one in
        the network is delivered first."""
        return not self.stale(clock, m)


@variant("stale_copies", "the check lets through a copy of a message delivered already (<= for =)")
class StaleCopies(FifoBroadcast):
    def deliverable(self, clock: tuple[int, ...], m: Msg) -> bool:
        """``V[p] <= VC[p] + 1``: meant to allow the next message, it also allows every
        earlier one again, so a duplicate in the network is delivered twice."""
        p = self.index[m.sender]
        return m.clock[p] <= clock[p] + 1


@variant("sender_entry_only", "the check compares only the sender's entry (FIFO order, not causal)")
class SenderEntryOnly(CausalBroadcast):
    def deliverable(self, clock: tuple[int, ...], m: Msg) -> bool:
        """Only ``V[p] = VC[p] + 1``: a reply can be delivered before the message it
        answers, when the two come from different senders."""
        return FifoBroadcast.deliverable(self, clock, m)


@variant(
    "ignore_sender_entry", "the check compares every entry but the sender's", params={"processes": 2, "messages": 2}
)
class IgnoreSenderEntry(CausalBroadcast):
    def deliverable(self, clock: tuple[int, ...], m: Msg) -> bool:
        """``V[k] <= VC[k]`` for k other than the sender, and the sender's entry not
        looked at: two messages of one sender are delivered in either order."""
        p = self.index[m.sender]
        return not self.stale(clock, m) and all(m.clock[k] <= clock[k] for k in range(len(clock)) if k != p)


@variant("stale_copies", "the check lets through a copy of a message delivered already (<= for =)")
class CausalStaleCopies(CausalBroadcast):
    def deliverable(self, clock: tuple[int, ...], m: Msg) -> bool:
        """``V[p] <= VC[p] + 1`` in the causal check: a copy of a message delivered
        already passes it again."""
        p = self.index[m.sender]
        return m.clock[p] <= clock[p] + 1 and all(m.clock[k] <= clock[k] for k in range(len(clock)) if k != p)
