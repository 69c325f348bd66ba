"""The durable queue (``spec/broker.py``) in z3: the inductive invariant that proves
NoConfirmedLoss (no message confirmed to the producer is lost) and RemovedAfterAck
(a message is removed only after a consumer applied it).

Where it sits: the one module in ``checks/`` that knows the broker spec's state; it
subclasses ``checks.proofs.system.Encoding`` and is registered in
``checks.proofs.registry``, so ``distcheck prove broker`` cross-checks it against
the executable spec and then discharges the obligations.

**An abstraction.**  Both properties are about one message at a time, and about
where that message is, not about who holds a copy of it: so the encoding keeps,
for each message m, seven booleans:

- ``confirmed[m]``: the producer took a confirm of m;
- ``stored[m]``, ``pending[m]``, ``removed[m]``: the broker has m on disk, has it
  in memory only, has deleted it;
- ``applied[m]``: some consumer applied m's effect;
- ``confirm_sent[m]``, ``ack_sent[m]``: some copy of a confirm, of an
  acknowledgement, of m is on the network.

It forgets the publishes, the deliveries, which messages are in flight and their
marks, the consumers' names, the crash count and the bounds: the abstraction of a
step that touches only those is no step at all.  Its steps are ``Persist`` (the
spec's) and its own: ``Accept(m)`` (the broker takes a new m into memory; any
time, as if a publish of it were always there), ``Reconfirm(m)`` (a publish of an m
it stored or deleted is confirmed again), ``ConfirmArrives(m, last)``,
``ConfirmLost(m, last)``, ``Apply(m)`` (a consumer takes a delivery of an m the
broker stored or deleted, and acknowledges), ``AckArrives(m, last)``,
``AckLost(m, last)`` (``last``: it was the last copy) and ``Crash`` (every
``pending`` forgotten).  For the variants: with ``confirm_before_persist``,
``Accept`` also sends a confirm; with ``delete_on_delivery``, ``DeleteOnDeliver(m)``
deletes a stored m.  Every spec step is matched by these (``simulate``), with
guards no stronger than the spec's, so the abstraction of every reachable state
is reachable here, and the proof covers every number of consumers, network bound,
crash bound and delivery bound at once: the abstract instance depends on
``messages`` only.

**The inductive invariant NoLossInv**, for every message m:

- **ConfirmedIsKept**: confirmed ⇒ stored ∨ applied (stronger than
  NoConfirmedLoss, which also allows ``pending``);
- **ConfirmSentIsKept**: a confirm on the network ⇒ stored ∨ applied;
- **RemovedWasApplied**: removed ⇒ applied (that is RemovedAfterAck);
- **AckMeansApplied**: an acknowledgement on the network ⇒ applied.

Why it is inductive: a confirm is sent only by ``Persist`` (which stores m) or
``Reconfirm`` (of a stored m, or of a deleted one, which was applied); an
acknowledgement only by ``Apply``, which applies m; ``AckArrives`` deletes m
only with an acknowledgement on the network, hence applied; ``Crash`` touches only
``pending``, which no conjunct mentions.  With ``confirm_before_persist`` the
confirm sent by ``Accept`` breaks ConfirmSentIsKept; with ``delete_on_delivery``,
``DeleteOnDeliver`` breaks RemovedWasApplied.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import attrs
import z3

from distcheck.checks.proofs.system import Candidate, Encoding, Field, Predicate, SymState, Transition
from distcheck.spec.broker import (
    ACKS,
    CONFIRMS,
    DELIVERIES,
    PUBLISHES,
    Ack,
    Broker,
    BrokerCrash,
    BrokerState,
    Confirmed,
    Consume,
    Deliver,
    Duplicate,
    Lose,
    Persist,
    Publish,
    Receive,
    Timeout,
    applied_ids,
)
from distcheck.spec.contract import Action
from distcheck.spec.values import Bag, FrozenMap

FLAGS = ("confirmed", "stored", "pending", "removed", "applied", "confirm_sent", "ack_sent")
ENCODED_VARIANTS = frozenset(
    {"confirm_before_persist", "delete_on_delivery", "redelivery_unmarked", "non_idempotent_consumer"}
)


def flag(name: str, m: str) -> str:
    return f"{name}[{m}]"


# ------------------------------------------------------------ the abstraction's own steps


@attrs.frozen
class Accept(Action):
    """The broker takes a new message into memory."""

    ACTOR = "broker"
    m: str


@attrs.frozen
class Reconfirm(Action):
    """A publish of a message stored or deleted is confirmed again."""

    ACTOR = "broker"
    m: str


@attrs.frozen
class ConfirmArrives(Action):
    ACTOR = "producer"
    m: str
    last: bool


@attrs.frozen
class ConfirmLost(Action):
    ACTOR = "network"
    m: str
    last: bool


@attrs.frozen
class Apply(Action):
    """A consumer takes a delivery of m, applies it (or has), and acknowledges."""

    ACTOR = "consumer"
    m: str


@attrs.frozen
class AckArrives(Action):
    ACTOR = "broker"
    m: str
    last: bool


@attrs.frozen
class AckLost(Action):
    ACTOR = "network"
    m: str
    last: bool


@attrs.frozen
class Crash(Action):
    """The broker restarts: what it held in memory only is gone."""

    ACTOR = "broker"


@attrs.frozen
class DeleteOnDeliver(Action):
    """(delete_on_delivery) The broker deletes a stored message as it delivers it."""

    ACTOR = "broker"
    m: str


NoLossAction = (
    Persist | Accept | Reconfirm | ConfirmArrives | ConfirmLost | Apply | AckArrives | AckLost | Crash | DeleteOnDeliver
)


class BrokerNoLossEncoding(Encoding[BrokerState, Any]):
    abstraction = True

    def __init__(self, spec: Broker) -> None:
        super().__init__(spec)
        if spec.variant is not None and spec.variant not in ENCODED_VARIANTS:
            raise ValueError(f"variant {spec.variant!r} has no z3 encoding; encoded: {', '.join(ENCODED_VARIANTS)}")
        self.broker = spec
        self.variant = spec.variant
        self.ids = spec.ids

    # ------------------------------------------------------------------ state

    def state_fields(self) -> Sequence[Field]:
        return [Field(flag(name, m)) for m in self.ids for name in FLAGS]

    def values(self, state: BrokerState) -> Mapping[str, Hashable]:
        applied = applied_ids(state)
        out: dict[str, Hashable] = {}
        for m in self.ids:
            out[flag("confirmed", m)] = m in state.confirmed
            out[flag("stored", m)] = m in state.stored
            out[flag("pending", m)] = m in state.pending
            out[flag("removed", m)] = m in state.removed
            out[flag("applied", m)] = m in applied
            out[flag("confirm_sent", m)] = m in state.confirms
            out[flag("ack_sent", m)] = m in state.acks
        return out

    def state(self, values: Mapping[str, Hashable]) -> BrokerState:
        """A spec state with the abstraction ``values``: what was applied, applied by
        the first consumer; one copy of each confirm and acknowledgement."""

        def having(name: str) -> list[str]:
            return [m for m in self.ids if values[flag(name, m)]]

        first = self.broker.consumers[0]
        applied = tuple(having("applied"))
        init = next(iter(self.broker.init_states()))
        mentioned = [i for i, m in enumerate(self.ids) if any(values[flag(name, m)] for name in FLAGS)]
        return attrs.evolve(
            init,
            published=max(mentioned, default=-1) + 1,
            confirmed=frozenset(having("confirmed")),
            stored=FrozenMap({m: False for m in having("stored")}),
            pending=frozenset(having("pending")),
            removed=frozenset(having("removed")),
            applied=init.applied.set(first, applied),
            seen=init.seen.set(first, frozenset(applied)),
            confirms=Bag(having("confirm_sent")),
            acks=Bag(having("ack_sent")),
        )

    def init(self, s: SymState) -> z3.BoolRef:
        return z3.And(*[z3.Not(s[f.name]) for f in self.fields()])

    # ---------------------------------------------------------------- actions

    def actions(self) -> Sequence[Any]:
        out: list[Any] = [Persist(), Crash()]
        for m in self.ids:
            out += [Accept(m), Reconfirm(m), Apply(m)]
            for last in (True, False):
                out += [ConfirmArrives(m, last), ConfirmLost(m, last), AckArrives(m, last), AckLost(m, last)]
            if self.variant == "delete_on_delivery":
                out.append(DeleteOnDeliver(m))
        return out

    def transition(self, action: Any, s: SymState) -> Transition:
        def f(name: str, m: str) -> z3.ExprRef:
            return s[flag(name, m)]

        match action:
            case Persist():
                updates: dict[str, Hashable | z3.ExprRef] = {}
                for m in self.ids:
                    updates[flag("stored", m)] = z3.Or(f("stored", m), f("pending", m))
                    updates[flag("confirm_sent", m)] = z3.Or(f("confirm_sent", m), f("pending", m))
                    updates[flag("pending", m)] = False
                if self.variant == "confirm_before_persist":  # confirmed on receipt already
                    for m in self.ids:
                        del updates[flag("confirm_sent", m)]
                return Transition(z3.Or(*[f("pending", m) for m in self.ids]), updates)
            case Accept(m):
                new = z3.And(z3.Not(f("stored", m)), z3.Not(f("removed", m)))
                updates = {flag("pending", m): True}
                if self.variant == "confirm_before_persist":
                    updates[flag("confirm_sent", m)] = True
                return Transition(new, updates)
            case Reconfirm(m):
                return Transition(z3.Or(f("stored", m), f("removed", m)), {flag("confirm_sent", m): True})
            case ConfirmArrives(m, last):
                return Transition(f("confirm_sent", m), {flag("confirmed", m): True, flag("confirm_sent", m): not last})
            case ConfirmLost(m, last):
                return Transition(f("confirm_sent", m), {flag("confirm_sent", m): not last})
            case Apply(m):
                return Transition(
                    z3.Or(f("stored", m), f("removed", m)), {flag("applied", m): True, flag("ack_sent", m): True}
                )
            case AckArrives(m, last):
                return Transition(
                    f("ack_sent", m),
                    {
                        flag("stored", m): False,
                        flag("removed", m): z3.Or(f("removed", m), f("stored", m)),
                        flag("ack_sent", m): not last,
                    },
                )
            case AckLost(m, last):
                return Transition(f("ack_sent", m), {flag("ack_sent", m): not last})
            case Crash():
                return Transition(z3.BoolVal(True), {flag("pending", m): False for m in self.ids})
            case DeleteOnDeliver(m):
                return Transition(f("stored", m), {flag("stored", m): False, flag("removed", m): True})
        raise ValueError(f"not a step of the broker's abstraction: {action!r}")

    def simulate(self, state: BrokerState, action: Any, after: BrokerState) -> Sequence[Any]:
        match action:
            case Publish() | Timeout() | Duplicate():
                return []  # (a second copy of a message: "some copy is on the network" already)
            case Receive(m):
                if m in state.stored or m in state.removed:
                    return [Reconfirm(m)]
                return [Accept(m)]
            case Persist():
                return [action]
            case Confirmed(m):
                return [ConfirmArrives(m, state.confirms.count(m) == 1)]
            case Deliver(_, m):
                return [DeleteOnDeliver(m)] if self.variant == "delete_on_delivery" else []
            case Consume(_, m):
                return [Apply(m)]
            case Ack(m):
                return [AckArrives(m, state.acks.count(m) == 1)]
            case BrokerCrash():
                return [Crash()]
            case Lose(net, m):
                if net == CONFIRMS:
                    return [ConfirmLost(m, state.confirms.count(m) == 1)]
                if net == ACKS:
                    return [AckLost(m, state.acks.count(m) == 1)]
                if net in (PUBLISHES, DELIVERIES):
                    return []
        raise ValueError(f"not a broker step: {action!r}")

    # ------------------------------------------------------------- invariants

    def properties(self) -> Sequence[Predicate]:
        def f(s: SymState, name: str, m: str) -> z3.ExprRef:
            return s[flag(name, m)]

        return (
            Predicate(
                "NoConfirmedLoss",
                "every message confirmed to the producer is held by the broker, or was applied by a consumer",
                lambda s: z3.And(
                    *[
                        z3.Implies(
                            f(s, "confirmed", m), z3.Or(f(s, "stored", m), f(s, "pending", m), f(s, "applied", m))
                        )
                        for m in self.ids
                    ]
                ),
            ),
            Predicate(
                "RemovedAfterAck",
                "a message is removed only after a consumer applied it and acknowledged it",
                lambda s: z3.And(*[z3.Implies(f(s, "removed", m), f(s, "applied", m)) for m in self.ids]),
            ),
        )

    def candidates(self) -> Sequence[Candidate]:
        def each(body: Any) -> Any:
            return lambda s: z3.And(*[body(s, m) for m in self.ids])

        def kept(s: SymState, m: str, name: str) -> z3.BoolRef:
            return z3.Implies(s[flag(name, m)], z3.Or(s[flag("stored", m)], s[flag("applied", m)]))

        conjuncts = (
            Predicate(
                "ConfirmedIsKept",
                "a message confirmed to the producer is stored, or was applied",
                each(lambda s, m: kept(s, m, "confirmed")),
            ),
            Predicate(
                "ConfirmSentIsKept",
                "a message with a confirm on the network is stored, or was applied",
                each(lambda s, m: kept(s, m, "confirm_sent")),
            ),
            Predicate(
                "RemovedWasApplied",
                "a message removed was applied",
                each(lambda s, m: z3.Implies(s[flag("removed", m)], s[flag("applied", m)])),
            ),
            Predicate(
                "AckMeansApplied",
                "a message with an acknowledgement on the network was applied",
                each(lambda s, m: z3.Implies(s[flag("ack_sent", m)], s[flag("applied", m)])),
            ),
        )
        return (
            Candidate("NoLossInv", "the queue's inductive invariant (see checks/proofs/broker.py)", conjuncts),
            Candidate("NoConfirmedLoss", "NoConfirmedLoss and RemovedAfterAck alone", tuple(self.properties())),
        )
