"""CQRS: a command side that appends events, a projection fed by an at-least-once
event bus, and queries that can ask to read their own writes.

The command side is one bank account, event-sourced: its state is the fold of its
event log, and its business rule is that the balance never goes below zero.
Clients send commands: ``Deposit`` is always accepted; ``Withdraw`` is accepted
only if the account, folded from its events, holds enough, and a rejected command
appends nothing.  The command side handles one command at a time (a single writer
per aggregate, or optimistic concurrency on the stream's version, which comes to the
same here).  An accepted command appends one event and answers with its position in
the log (1, 2, ...): the client keeps the latest as its read-your-writes token.

The query side is a read model (the balance) kept by a projector.  An event bus
carries the log's events to the projector and delivers at least once, in no
promised order: any event it holds unacknowledged it may deliver, again and again
(an acknowledgement late or lost, a visibility timeout, a restart), until the
projector acknowledges it.  A bus that delivers in order from the last
acknowledgement (a subscription with an offset) is one of its behaviours; so is a
queue broker that redelivers single messages.  The projector holds the event it was
handed in memory, and handles it by the event's position: the one after the read
model's checkpoint is applied in one transaction that updates the read model and
stores the checkpoint (the position of the last event it holds) together; a copy
(at or below the checkpoint) is dropped; a later one, whose predecessor has not been
applied yet, is given back unacknowledged, to come again.  Applied events and copies
are acknowledged to the bus afterwards.  A crash of the projector loses only what it
held in memory (the event in hand and the acknowledgements not yet sent).  A query
answers from the read model, with the checkpoint it reflects; a query that carries a
token waits until the checkpoint has reached it.

Sources: G. Young, *CQRS Documents* (2010); M. Fowler, "Event Sourcing" (2005)
and "CQRS" (2011); D. Terry et al., "Session Guarantees for Weakly Consistent
Replicated Data" (PDIS 1994), for read-your-writes; the idempotent receiver
(Hohpe and Woolf, *Enterprise Integration Patterns*).

State: the command side's ``log`` (the event store: position i holds ``log[i-1]``)
and ``results`` (each client's commands so far, each answered with its event's
position, 0 for a rejection); the bus's ``acked`` (the positions acknowledged to it,
which it will not deliver again; durable); the projector's ``in_hand`` (the position
of the event it holds, 0 for none) and ``to_ack`` (the positions it has handled and
not yet acknowledged), both volatile; the read model's ``read_balance`` and
``checkpoint`` (durable, written in one transaction);
and histories: ``applied`` (the positions applied to the read model, in order) and
``answers`` (each client's last query answer: its token, the checkpoint and the
balance it read).

Actions
    Deposit(c, amount)      Client c deposits: always accepted, one event appended, its position returned.
    Withdraw(c, amount)     Client c withdraws: accepted if the account holds enough, else rejected (no event).
    Deliver(p)              The bus delivers the event at position p, not yet acknowledged, to the projector.
    Project(p)              The projector handles the event it holds: applies the next, drops a copy, or gives it back.
    Acknowledge(p)          The projector acknowledges p, applied or a copy, to the bus.
    ProjectorCrash          The projector crashes and restarts: the event in hand and unsent acknowledgements are lost.
    Query(c)                Client c reads the read model, once its checkpoint has reached c's token.

Invariants
    TypeOK              every variable holds a value of its type.
    NoOverdraft         the account's balance, the fold of its events, is never negative.
    ExactlyOnce         no event is applied to the read model twice.
    ReadModelIsFold     the read model is the fold of the events up to its checkpoint.
    NothingLost         every event after the checkpoint is held by the projector or unacknowledged at the bus.
    ReadYourWrites      a query with a token was answered from a read model whose checkpoint reached the token.

Reachable
    Converged           every client has sent its commands, and the read model holds every event.
    WithdrawalRejected  a withdrawal was rejected: it would have overdrawn the account.
    OwnWriteRead        a client read the read model with a token, its own accepted command.
    CopyRedelivered     the projector holds a copy of an event it has applied already.

"After the last command the read model converges" is a liveness property; it is
checked as its two halves a search of states can see: ``NothingLost`` (no state has
lost an event the read model lacks, so the bus will bring it) and ``Converged``
(the state holding everything is reached).

Bounds: none needed: each client sends at most ``commands`` commands, and every
other variable is bounded by the log they make.

Variants
    validate_on_read_model      a withdrawal is checked against the read model, not the account's events.
    apply_redelivered_twice     the projector applies every event it is handed, copies included.
    checkpoint_first            the checkpoint is saved before the read model is updated, in a separate write.
    ack_before_apply            the projector acknowledges an event to the bus when it takes it, before applying it.
    apply_out_of_order          the projector applies any event it is handed after its checkpoint, not only the next.
    token_ignored               a query answers at once, whatever its read-your-writes token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant
from distcheck.spec.values import FrozenMap

PROJECTOR, BUS = "projector", "bus"
DEPOSITED, WITHDRAWN = "deposited", "withdrawn"

# ------------------------------------------------------------------ events, answers


@attrs.frozen
class Event:
    kind: str  # DEPOSITED or WITHDRAWN
    amount: int
    client: str

    @property
    def delta(self) -> int:
        """What the event does to the balance."""
        return self.amount if self.kind == DEPOSITED else -self.amount


@attrs.frozen
class Answer:
    token: int  # the client's read-your-writes token, sent with the query
    checkpoint: int  # the read model's checkpoint it was answered from
    balance: int  # the balance it read


def fold(events: Iterable[Event]) -> int:
    """The balance a sequence of events leaves, from an empty account."""
    return sum(e.delta for e in events)


# -------------------------------------------------------------------------- state


@attrs.frozen
class CqrsState:
    log: tuple[Event, ...]
    results: FrozenMap[str, tuple[int, ...]]
    acked: frozenset[int]
    in_hand: int
    to_ack: frozenset[int]
    read_balance: int
    checkpoint: int
    applied: tuple[int, ...]
    answers: FrozenMap[str, Answer]


# ------------------------------------------------------------------------ actions


@attrs.frozen
class Deposit(Action):
    ACTOR = "c"
    c: str
    amount: int


@attrs.frozen
class Withdraw(Action):
    ACTOR = "c"
    c: str
    amount: int


@attrs.frozen
class Deliver(Action):
    ACTOR = BUS
    p: int


@attrs.frozen
class Project(Action):
    ACTOR = PROJECTOR
    p: int


@attrs.frozen
class Acknowledge(Action):
    ACTOR = PROJECTOR
    p: int


@attrs.frozen
class ProjectorCrash(Action):
    ACTOR = PROJECTOR


@attrs.frozen
class Query(Action):
    ACTOR = "c"
    c: str


CqrsAction = Deposit | Withdraw | Deliver | Project | Acknowledge | ProjectorCrash | Query


@attrs.frozen
class Config:
    clients: int = param(2, help="clients sending commands and queries", minimum=1, maximum=4)
    commands: int = param(1, help="commands each client sends", minimum=1, maximum=3)
    max_amount: int = param(1, help="amounts deposited or withdrawn are 1..max_amount", minimum=1, maximum=3)
    variant: str | None = None


def token(results: tuple[int, ...]) -> int:
    """A client's read-your-writes token: the position of its latest accepted command (0: none)."""
    return max(results, default=0)


class Cqrs(Spec[CqrsState, CqrsAction]):
    name = "cqrs"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.clients = tuple(f"c{i}" for i in range(1, config.clients + 1))
        self.amounts = tuple(range(1, config.max_amount + 1))
        self.positions = tuple(range(1, config.clients * config.commands + 1))

    def init_states(self) -> Iterable[CqrsState]:
        yield CqrsState(
            log=(),
            results=FrozenMap({c: () for c in self.clients}),
            acked=frozenset(),
            in_hand=0,
            to_ack=frozenset(),
            read_balance=0,
            checkpoint=0,
            applied=(),
            answers=FrozenMap(),
        )

    def next(self) -> Next:
        return (
            Exists("c", self.clients, Exists("amount", self.amounts, self.deposit, self.withdraw)),
            Exists("p", self.positions, self.deliver, self.project, self.acknowledge),
            self.projector_crash,
            Exists("c", self.clients, self.query),
        )

    # ------------------------------------------------------------ the command side

    def append(self, s: CqrsState, c: str, event: Event) -> CqrsState:
        """An accepted command: its event is appended, and its position is c's answer."""
        log = (*s.log, event)
        return attrs.evolve(s, log=log, results=s.results.set(c, (*s.results[c], len(log))))

    @rule(Deposit)
    def deposit(self, s: CqrsState, c: str, amount: int) -> CqrsState | None:
        """Client c deposits an amount: always accepted; the event is appended and its
        position returned."""
        if len(s.results[c]) >= self.config.commands:
            return None
        return self.append(s, c, Event(DEPOSITED, amount, c))

    @rule(Withdraw)
    def withdraw(self, s: CqrsState, c: str, amount: int) -> CqrsState | None:
        """Client c withdraws an amount: accepted (appended, position returned) if the
        account, folded from its events, holds enough; else rejected, with no event."""
        if len(s.results[c]) >= self.config.commands:
            return None
        if self.funds(s) < amount:
            return attrs.evolve(s, results=s.results.set(c, (*s.results[c], 0)))
        return self.append(s, c, Event(WITHDRAWN, amount, c))

    def funds(self, s: CqrsState) -> int:
        """What the command side checks a withdrawal against: the aggregate, its events folded."""
        return fold(s.log)

    # ------------------------------------------------------------ the bus

    @rule(Deliver)
    def deliver(self, s: CqrsState, p: int) -> CqrsState | None:
        """The bus delivers the event at position p to the projector, whose hands are
        free: any event in the log it holds unacknowledged, for the first time or again
        (in order or not: redelivery after a timeout or a restart is any moment)."""
        if p > len(s.log) or p in s.acked or s.in_hand:
            return None
        return self.taken(attrs.evolve(s, in_hand=p), p)

    def taken(self, s: CqrsState, p: int) -> CqrsState:
        """The projector holds p in memory; the bus still counts it unacknowledged."""
        return s

    # ------------------------------------------------------------ the projector

    @rule(Project)
    def project(self, s: CqrsState, p: int) -> CqrsState | None:
        """The projector handles the event it holds: the one after the checkpoint is
        applied to the read model and becomes the checkpoint, in one transaction, and
        is to be acknowledged; a copy of one at or below the checkpoint is dropped, and
        acknowledged too; a later one is given back unacknowledged, to come again once
        the events before it are in."""
        if s.in_hand != p:
            return None
        if self.applies(s, p):
            return attrs.evolve(
                s,
                in_hand=0,
                to_ack=s.to_ack | {p},
                read_balance=s.read_balance + s.log[p - 1].delta,
                checkpoint=max(s.checkpoint, p),
                applied=(*s.applied, p),
            )
        if p <= s.checkpoint:
            return attrs.evolve(s, in_hand=0, to_ack=s.to_ack | {p})
        return attrs.evolve(s, in_hand=0)

    def applies(self, s: CqrsState, p: int) -> bool:
        """Whether the projector applies p: only the next event after its checkpoint."""
        return p == s.checkpoint + 1

    @rule(Acknowledge)
    def acknowledge(self, s: CqrsState, p: int) -> CqrsState | None:
        """The projector acknowledges p, which it has applied or dropped as a copy, to
        the bus: the bus will not deliver it again."""
        if p not in s.to_ack:
            return None
        return attrs.evolve(s, acked=s.acked | {p}, to_ack=s.to_ack - {p})

    @rule(ProjectorCrash)
    def projector_crash(self, s: CqrsState) -> CqrsState | None:
        """The projector crashes and restarts: the event it held and the
        acknowledgements it had not sent are lost, and the read model and its checkpoint
        are as the last transaction left them; the bus has every unacknowledged event
        to deliver again.  (With nothing to lose, it is no step.)"""
        if not s.in_hand and not s.to_ack:
            return None
        return self.restarted(attrs.evolve(s, in_hand=0, to_ack=frozenset()), s.in_hand)

    def restarted(self, s: CqrsState, held: int) -> CqrsState:
        """The durable state after a crash while holding ``held`` (0: nothing): the read
        model and checkpoint of the last transaction, untouched."""
        return s

    # ------------------------------------------------------------ queries

    @rule(Query)
    def query(self, s: CqrsState, c: str) -> CqrsState | None:
        """Client c reads the read model with its token; the query waits until the
        checkpoint has reached the token."""
        t = token(s.results[c])
        if not self.answers_now(s, t):
            return None
        answer = Answer(t, s.checkpoint, s.read_balance)
        if s.answers.get(c) == answer:
            return None  # the same answer again changes nothing
        return attrs.evolve(s, answers=s.answers.set(c, answer))

    def answers_now(self, s: CqrsState, t: int) -> bool:
        """Read-your-writes: answer only from a read model at checkpoint t or later."""
        return s.checkpoint >= t

    def observe(self, s: CqrsState, a: CqrsAction) -> Mapping[str, Any] | None:
        """What an implementation logs: each step by its actor and action, and a query
        with what it read (the checkpoint and the balance), which must be what the spec's
        read model holds at that step."""
        seen = super().observe(s, a)
        if isinstance(a, Query) and seen is not None:
            return {**seen, "read": {"checkpoint": s.checkpoint, "balance": s.read_balance}}
        return seen

    # ------------------------------------------------------------ properties

    def invariants(self) -> Sequence[Invariant[CqrsState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self.type_ok),
            Invariant("NoOverdraft", "the account's balance, the fold of its events, is never negative", no_overdraft),
            Invariant("ExactlyOnce", "no event is applied to the read model twice", exactly_once),
            Invariant(
                "ReadModelIsFold", "the read model is the fold of the events up to its checkpoint", read_model_is_fold
            ),
            Invariant(
                "NothingLost",
                "every event after the checkpoint is held by the projector or unacknowledged at the bus",
                nothing_lost,
            ),
            Invariant(
                "ReadYourWrites",
                "a query with a token was answered from a read model whose checkpoint reached the token",
                read_your_writes,
            ),
        )

    def type_ok(self, s: CqrsState) -> bool:
        n = len(s.log)
        return (
            n <= len(self.positions)
            and all(e.kind in (DEPOSITED, WITHDRAWN) and e.amount in self.amounts for e in s.log)
            and set(s.results) == set(self.clients)
            and all(len(r) <= self.config.commands and all(0 <= p <= n for p in r) for r in s.results.values())
            and all(1 <= p <= n for p in s.acked | s.to_ack)
            and 0 <= s.in_hand <= n
            and 0 <= s.checkpoint <= n
            and all(1 <= p <= n for p in s.applied)
            and set(s.answers) <= set(self.clients)
        )

    def reachable(self) -> Sequence[Reachable[CqrsState]]:
        return (
            Reachable(
                "Converged",
                "every client has sent its commands, and the read model holds every event",
                lambda s: (
                    all(len(r) == self.config.commands for r in s.results.values())
                    and s.checkpoint == len(s.log)
                    and s.read_balance == fold(s.log)
                ),
            ),
            Reachable(
                "WithdrawalRejected",
                "a withdrawal was rejected: it would have overdrawn the account",
                lambda s: any(0 in r for r in s.results.values()),
            ),
            Reachable(
                "OwnWriteRead",
                "a client read the read model with a token, its own accepted command",
                lambda s: any(a.token > 0 for a in s.answers.values()),
            ),
            Reachable(
                "CopyRedelivered",
                "the projector holds a copy of an event it has applied already",
                lambda s: 0 < s.in_hand <= s.checkpoint,
            ),
        )


def no_overdraft(s: CqrsState) -> bool:
    return fold(s.log) >= 0


def exactly_once(s: CqrsState) -> bool:
    return len(set(s.applied)) == len(s.applied)


def read_model_is_fold(s: CqrsState) -> bool:
    return s.checkpoint <= len(s.log) and s.read_balance == fold(s.log[: s.checkpoint])


def nothing_lost(s: CqrsState) -> bool:
    return all(p not in s.acked or p == s.in_hand for p in range(s.checkpoint + 1, len(s.log) + 1))


def read_your_writes(s: CqrsState) -> bool:
    return all(a.checkpoint >= a.token for a in s.answers.values())


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides the one step it breaks.


@variant(
    "validate_on_read_model",
    "a withdrawal is checked against the read model, not the account's events",
    params={"clients": 3},
)
class ValidateOnReadModel(Cqrs):
    def funds(self, s: CqrsState) -> int:
        """The read model's balance: it lags the events, so a withdrawal accepted but not
        yet projected is not subtracted, and a second one overdraws the account."""
        return s.read_balance


@variant("apply_redelivered_twice", "the projector applies every event it is handed, copies included")
class ApplyRedeliveredTwice(Cqrs):
    def applies(self, s: CqrsState, p: int) -> bool:
        """The order is kept, but copies are not looked for: an event delivered again,
        because its acknowledgement was late or lost, is applied again."""
        return p <= s.checkpoint + 1


@variant("checkpoint_first", "the checkpoint is saved before the read model is updated, in a separate write")
class CheckpointFirst(Cqrs):
    def restarted(self, s: CqrsState, held: int) -> CqrsState:
        """Two writes, not one transaction: a crash while handling the next event falls
        between them, with its position saved as the checkpoint and the read model not
        updated.  Its copies will be dropped as applied: the event is skipped for good."""
        if held != s.checkpoint + 1:
            return s
        return attrs.evolve(s, checkpoint=held)


@variant("ack_before_apply", "the projector acknowledges an event to the bus when it takes it, before applying it")
class AckBeforeApply(Cqrs):
    def taken(self, s: CqrsState, p: int) -> CqrsState:
        """Acknowledged on receipt (auto-ack): if the projector crashes before applying
        it, the bus will not deliver it again."""
        return attrs.evolve(s, acked=s.acked | {p})


@variant(
    "apply_out_of_order", "the projector applies whatever event it is handed after its checkpoint, not only the next"
)
class ApplyOutOfOrder(Cqrs):
    def applies(self, s: CqrsState, p: int) -> bool:
        """Every new event is applied, and the checkpoint jumps to it: when the bus
        hands over a later event first (the earlier one waits for its redelivery), the
        earlier one is then taken for a copy and never applied."""
        return p > s.checkpoint


@variant("token_ignored", "a query answers at once, whatever its read-your-writes token")
class TokenIgnored(Cqrs):
    def answers_now(self, s: CqrsState, t: int) -> bool:
        """No wait for the checkpoint: a client that has just deposited can read a
        balance without its deposit."""
        return True
