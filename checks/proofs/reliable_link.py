"""The sliding-window link (``spec/reliable_link.py``) in z3: the inductive invariant
that proves NoDuplication, FifoOrder and NoLoss for Go-Back-N with unbounded
sequence numbers, over channels that lose, duplicate and reorder.

Where it sits: the one module in ``checks/`` that knows the link spec's state; it
subclasses ``checks.proofs.system.Encoding`` and is registered in
``checks.proofs.registry`` (``distcheck prove reliable_link``).

**An abstraction.**  With sequence numbers that are the messages' indexes, what a
channel holds matters, not in which order: so the encoding keeps, for messages
0..M-1 (M = ``messages``):

- the sender's ``base`` and ``next_new``;
- ``delivered[i]`` (i was delivered), ``dcount`` (how many deliveries), and two
  booleans that say whether the delivered sequence is the prefix 0..dcount-1
  (``in_order``) and free of repeats (``dup_free``);
- ``taken[i]`` (i was taken and not yet delivered), ``tcount`` (how many) and
  ``taken_next`` (they are the next ones, dcount, dcount+1, ...);
- ``data[i]``: some copy of the data message of i is on its channel; ``ack[a]``:
  some copy of Ack(a) is on its channel.

It forgets the channels' order and counts, and the crash count.  Its steps:
``Send(i)`` (the spec's), ``DataArrives(i, last)``, ``DeliverNext(i, rest_next)`` (the
receiver delivers the oldest message it took, i), ``AckArrives(a, last)``,
``DataLost(i)`` and ``AckLost(a)`` (the last copy is gone), and ``Crash`` (the
receiver loses what it took).  A duplicate or a reordering changes nothing the
abstraction sees.  Every spec step is matched by these (``simulate``), with guards
no stronger than the spec's, so the proof covers every channel bound and crash
bound: the abstract instance depends on ``messages`` and ``window`` only.

**The inductive invariant LinkInv**:

- **DeliveredPrefix**: in_order and dup_free, and ``delivered[i]`` exactly for
  i < dcount;
- **TakenNext**: taken_next, ``taken[i]`` exactly for dcount ≤ i < dcount +
  tcount, and dcount + tcount ≤ next_new;
- **DataWasSent**: ``data[i]`` ⇒ i < next_new;
- **AcksBelowDelivered**: ``ack[a]`` ⇒ a ≤ dcount;
- **BaseBelowDelivered**: base ≤ dcount.

Why it is inductive: the receiver takes only i = dcount + tcount, which was sent
(DataWasSent), so what it took is the next messages, and what it delivers is
dcount; it acknowledges only what it delivered; the sender moves ``base`` only to
an acknowledged number.  A crash empties what was taken.  NoDuplication and
FifoOrder are DeliveredPrefix; NoLoss follows from BaseBelowDelivered.

**Where z3 stops.**  With a finite ``seq_space`` (over FIFO channels) the argument
needs the channels' order: a stale copy is harmless only because it was sent
after the messages the receiver took since (the classic Go-Back-N argument,
``seq_space > window``).  This abstraction forgets order, so the encoding
refuses ``seq_space > 0``; ``distcheck check`` covers those sizes exhaustively.
Of the variants, ``ack_before_deliver`` (AcksBelowDelivered fails at
``DataArrives``) and ``deliver_out_of_order`` (DeliveredPrefix fails at
``DeliverNext``) are encoded; ``no_duplicate_suppression`` delivers without bound
and ``window_over_seq_space`` needs a finite space.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import attrs
import z3

from distcheck.checks.proofs.system import Candidate, Encoding, Field, Predicate, SymState, Transition
from distcheck.spec.contract import Action
from distcheck.spec.network import Channel
from distcheck.spec.reliable_link import (
    ACKS,
    DATA,
    Ack,
    Data,
    Deliver,
    Duplicate,
    LinkState,
    Lose,
    ReceiverCrash,
    RecvAck,
    RecvData,
    ReliableLink,
    Reorder,
    Send,
    fifo_order,
    no_duplication,
)

ENCODED_VARIANTS = frozenset({"ack_before_deliver", "deliver_out_of_order"})


@attrs.frozen
class DataArrives(Action):
    """The receiver takes a copy of i's data message off its channel (``last``: the
    last copy)."""

    ACTOR = "receiver"
    i: int
    last: bool


@attrs.frozen
class DeliverNext(Action):
    """The receiver delivers the oldest message it took, i; ``rest_next``: what it
    still holds is the next messages (always, if what it held was)."""

    ACTOR = "receiver"
    i: int
    rest_next: bool = True


@attrs.frozen
class AckArrives(Action):
    ACTOR = "sender"
    a: int
    last: bool


@attrs.frozen
class DataLost(Action):
    ACTOR = "network"
    i: int


@attrs.frozen
class AckLost(Action):
    ACTOR = "network"
    a: int


@attrs.frozen
class Crash(Action):
    ACTOR = "receiver"


def delivered(i: int) -> str:
    return f"delivered[{i}]"


def taken(i: int) -> str:
    return f"taken[{i}]"


def data(i: int) -> str:
    return f"data[{i}]"


def ack(a: int) -> str:
    return f"ack[{a}]"


class LinkEncoding(Encoding[LinkState, Any]):
    abstraction = True

    def __init__(self, spec: ReliableLink) -> None:
        super().__init__(spec)
        if spec.config.seq_space:
            raise ValueError(
                f"seq_space={spec.config.seq_space}: the z3 encoding covers unbounded sequence numbers (seq_space=0) "
                "only; with a finite space the proof needs the channels' order (see checks/proofs/reliable_link.py)"
            )
        if spec.variant is not None and spec.variant not in ENCODED_VARIANTS:
            raise ValueError(f"variant {spec.variant!r} has no z3 encoding; encoded: {', '.join(ENCODED_VARIANTS)}")
        self.link = spec
        self.variant = spec.variant
        self.m = spec.config.messages
        self.w = spec.window()
        self.counts = tuple(range(self.m + 1))

    # ------------------------------------------------------------------ state

    def state_fields(self) -> Sequence[Field]:
        fields = [Field(name, self.counts) for name in ("base", "next_new", "dcount", "tcount")]
        fields += [Field("in_order"), Field("dup_free"), Field("taken_next")]
        fields += [Field(delivered(i)) for i in range(self.m)]
        fields += [Field(taken(i)) for i in range(self.m)]
        fields += [Field(data(i)) for i in range(self.m)]
        fields += [Field(ack(a)) for a in self.counts]
        return fields

    def values(self, state: LinkState) -> Mapping[str, Hashable]:
        d, t = len(state.delivered), len(state.taken)
        out: dict[str, Hashable] = {
            "base": state.base,
            "next_new": state.next_new,
            "dcount": min(d, self.m),
            "tcount": min(t, self.m),
            "in_order": fifo_order(state),
            "dup_free": no_duplication(state),
            "taken_next": state.taken == tuple(range(d, d + t)),
        }
        for i in range(self.m):
            out[delivered(i)] = i in state.delivered
            out[taken(i)] = i in state.taken
            out[data(i)] = any(x.msg == i for x in state.data.items)
        for a in self.counts:
            out[ack(a)] = Ack(a) in state.acks.items
        return out

    def state(self, values: Mapping[str, Hashable]) -> LinkState:
        """A spec state with the abstraction ``values`` (when it describes one: the
        delivered prefix, the next messages taken, one copy of each message)."""
        d = int(values["dcount"])  # type: ignore[call-overload]
        seq = [i for i in range(self.m) if values[delivered(i)]]
        if not values["in_order"] and seq == list(range(len(seq))):
            seq.reverse()  # the same messages, out of order
        while seq and len(seq) < d:
            seq.append(seq[0])  # repeated, when the abstraction says so
        held = [i for i in range(self.m) if values[taken(i)]]
        if not values["taken_next"] and held == list(range(d, d + len(held))):
            held.reverse()
        return LinkState(
            base=int(values["base"]),  # type: ignore[call-overload]
            next_new=int(values["next_new"]),  # type: ignore[call-overload]
            delivered=tuple(seq),
            taken=tuple(held),
            data=Channel(tuple(Data(i, i) for i in range(self.m) if values[data(i)])),
            acks=Channel(tuple(Ack(a) for a in self.counts if values[ack(a)])),
            crashes=0,
        )

    def init(self, s: SymState) -> z3.BoolRef:
        zero = [s.is_(name, 0) for name in ("base", "next_new", "dcount", "tcount")]
        flags = [s["in_order"], s["dup_free"], s["taken_next"]]
        empty = [
            z3.Not(s[f.name]) for f in self.fields() if f.name.startswith(("delivered[", "taken[", "data[", "ack["))
        ]
        return z3.And(*zero, *flags, *empty)

    # ---------------------------------------------------------------- actions

    def actions(self) -> Sequence[Any]:
        out: list[Any] = [Crash()]
        for i in range(self.m):
            out += [Send(i), DataLost(i), DataArrives(i, True), DataArrives(i, False)]
            out += [DeliverNext(i, True), DeliverNext(i, False)]
        for a in self.counts:
            out += [AckArrives(a, True), AckArrives(a, False), AckLost(a)]
        return out

    def transition(self, action: Any, s: SymState) -> Transition:
        def n(name: str) -> z3.ArithRef:
            return s[name]

        expected = n("dcount") + n("tcount")
        match action:
            case Send(i):
                guard = z3.And(n("base") <= i, i < n("base") + self.w, i <= n("next_new"))
                return Transition(guard, {"next_new": z3.If(n("next_new") > i, n("next_new"), i + 1), data(i): True})
            case DataArrives(i, last):
                updates: dict[str, Hashable | z3.ExprRef] = {data(i): not last}
                takes = self.takes(s, i, expected)
                grown = z3.If(takes, n("tcount") + 1, n("tcount"))
                updates["tcount"] = z3.If(grown > self.m, self.m, grown)
                updates["taken_next"] = z3.And(s["taken_next"], z3.Implies(takes, i == expected))
                updates[taken(i)] = z3.Or(s[taken(i)], takes)
                answer = z3.If(takes, expected + 1, expected) if self.variant == "ack_before_deliver" else None
                for a in self.counts:
                    if answer is not None:
                        updates[ack(a)] = z3.Or(s[ack(a)], answer == a)
                    else:
                        updates[ack(a)] = z3.Or(s[ack(a)], z3.And(z3.Not(takes), n("dcount") == a))
                return Transition(s[data(i)], updates)
            case DeliverNext(i, rest_next):
                guard = z3.And(
                    n("tcount") > 0,
                    s[taken(i)],
                    z3.Implies(s["taken_next"], z3.And(n("dcount") == i, rest_next)),
                    z3.Implies(n("tcount") == 1, rest_next),
                )
                after = n("dcount") + 1
                updates = {
                    delivered(i): True,
                    taken(i): False,
                    "dcount": z3.If(after > self.m, self.m, after),
                    "tcount": n("tcount") - 1,
                    "in_order": z3.And(s["in_order"], n("dcount") == i),
                    "dup_free": z3.And(s["dup_free"], z3.Not(s[delivered(i)])),
                    "taken_next": rest_next,
                }
                if self.variant != "ack_before_deliver":
                    for a in self.counts:
                        updates[ack(a)] = z3.Or(s[ack(a)], after == a)
                return Transition(guard, updates)
            case AckArrives(a, last):
                moves = z3.And(n("base") < a, a <= n("next_new"))
                return Transition(s[ack(a)], {"base": z3.If(moves, a, n("base")), ack(a): not last})
            case DataLost(i):
                return Transition(s[data(i)], {data(i): False})
            case AckLost(a):
                return Transition(s[ack(a)], {ack(a): False})
            case Crash():
                cleared: dict[str, Hashable | z3.ExprRef] = {taken(i): False for i in range(self.m)}
                return Transition(z3.BoolVal(True), {"tcount": 0, "taken_next": True, **cleared})
        raise ValueError(f"not a step of the link's abstraction: {action!r}")

    def takes(self, s: SymState, i: int, expected: z3.ArithRef) -> z3.BoolRef:
        """Whether the receiver takes i's data message (deliver_out_of_order: any of
        its window that it does not hold already)."""
        if self.variant == "deliver_out_of_order":
            return z3.And(expected <= i, i < expected + self.w, z3.Not(s[taken(i)]))
        return expected == i

    def simulate(self, state: LinkState, action: Any, after: LinkState) -> Sequence[Any]:
        match action:
            case Send():
                return [action]
            case RecvData():
                head = state.data.head
                assert head is not None
                return [DataArrives(head.msg, sum(1 for x in state.data.items if x.msg == head.msg) == 1)]
            case Deliver():
                d = len(after.delivered)
                return [DeliverNext(state.taken[0], after.taken == tuple(range(d, d + len(after.taken))))]
            case RecvAck():
                a = state.acks.head
                assert a is not None
                return [AckArrives(a.seq, state.acks.items.count(a) == 1)]
            case ReceiverCrash():
                return [Crash()]
            case Lose(ch, i):
                channel: Channel[Any] = state.data if ch == DATA else state.acks
                lost = channel.items[i]
                if channel.items.count(lost) > 1:
                    return []
                if ch == ACKS:
                    return [AckLost(lost.seq)]
                return [] if any(x.msg == lost.msg for x in after.data.items) else [DataLost(lost.msg)]
            case Duplicate() | Reorder():
                return []
        raise ValueError(f"not a link step: {action!r}")

    # ------------------------------------------------------------- invariants

    def properties(self) -> Sequence[Predicate]:
        def n(s: SymState, name: str) -> z3.ArithRef:
            return s[name]

        def no_loss(s: SymState) -> z3.BoolRef:
            return z3.And(*[z3.Implies(i < n(s, "base"), z3.Or(s[delivered(i)], s[taken(i)])) for i in range(self.m)])

        return (
            Predicate("NoDuplication", "no message is delivered twice", lambda s: s["dup_free"]),
            Predicate(
                "FifoOrder",
                "the receiver has delivered the first messages sent, in order (a prefix of the sender's input)",
                lambda s: s["in_order"],
            ),
            Predicate(
                "NoLoss",
                "every message the sender counts as acknowledged has been delivered or waits, taken, in the receiver",
                no_loss,
            ),
        )

    def candidates(self) -> Sequence[Candidate]:
        def n(s: SymState, name: str) -> z3.ArithRef:
            return s[name]

        conjuncts = (
            Predicate(
                "DeliveredPrefix",
                "what was delivered is 0..dcount-1, in order, once each",
                lambda s: z3.And(
                    s["in_order"],
                    s["dup_free"],
                    *[s[delivered(i)] == (i < n(s, "dcount")) for i in range(self.m)],
                ),
            ),
            Predicate(
                "TakenNext",
                "what was taken is the next messages, all of them sent",
                lambda s: z3.And(
                    s["taken_next"],
                    n(s, "dcount") + n(s, "tcount") <= n(s, "next_new"),
                    *[
                        s[taken(i)] == z3.And(n(s, "dcount") <= i, i < n(s, "dcount") + n(s, "tcount"))
                        for i in range(self.m)
                    ],
                ),
            ),
            Predicate(
                "DataWasSent",
                "a data message on its channel is of a message the sender sent",
                lambda s: z3.And(*[z3.Implies(s[data(i)], i < n(s, "next_new")) for i in range(self.m)]),
            ),
            Predicate(
                "AcksBelowDelivered",
                "an Ack(a) on its channel acknowledges only delivered messages: a <= dcount",
                lambda s: z3.And(*[z3.Implies(s[ack(a)], a <= n(s, "dcount")) for a in self.counts]),
            ),
            Predicate(
                "BaseBelowDelivered", "the sender's base is at most dcount", lambda s: n(s, "base") <= n(s, "dcount")
            ),
        )
        return (
            Candidate("LinkInv", "the link's inductive invariant (see checks/proofs/reliable_link.py)", conjuncts),
            Candidate("Safety", "NoDuplication, FifoOrder and NoLoss alone", tuple(self.properties())),
        )
