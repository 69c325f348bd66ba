"""An event store: writers append to streams with an expected version (optimistic
concurrency) under a global position, and a subscription follows the global order
into a projection with a checkpoint.

Each writer, a few times over, reads a stream's version v and the aggregate's state
it implies, decides an event from it, and appends the event expecting version v:
the store hands the transaction the next global position at once (a sequence, as
a database hands out identity values when the row is inserted) and the append
commits later, or fails because another writer committed version v+1 first (a
unique (stream, version) key).  A writer may crash in the middle, and its
transaction aborts.  So global positions are taken in one order and become
visible in another, and some are never used: a transaction that took position 4
can commit after the one that took 5 is already visible, and an aborted one leaves
a hole for ever.

The subscription reads events in global order into a projection (a read model, one
count per stream) and keeps a checkpoint: the position up to which it has
processed everything.  It may pass position p only once p is decided: committed
(the event is applied, and the read model and the checkpoint are saved in one
transaction) or aborted (a hole, passed over).  While the transaction holding p is
in flight, the subscription waits.  Stores that advance past such a gap skip the
event for good when it commits: the gap problem.  The projector may crash,
losing the event it fetched and had not yet handled.

The aggregate is a counter: each event says the state after it (``state``), which
its writer computed as the state it loaded (by replaying the stream) plus one, so
replaying a stream must give the state its last event says.

Sources: G. Young, "CQRS Documents" (2010), the event store and optimistic
concurrency on an expected version; the event stores' own accounts of the gap
problem (a reader following an identity column passes a value whose transaction
commits later), for example the discussion of global ordering in Marten and in
SQL-backed EventStore implementations; L. Lamport, *Specifying Systems*, for the
style.

State: ``version`` (each stream's committed version), ``events`` (committed events by
global position), ``next_position`` (the next position to hand out), ``txns`` (each
writer's transaction: none, read, or appending at a position), ``aborted``
(positions taken and never used), ``attempts`` (transactions each writer began),
``checkpoint``, ``fetched`` (the position the projector holds, or 0), ``read_model``
(events applied per stream), ``applied`` (positions applied, in order: a history
variable), ``committed_order`` (positions in the order they committed: a history
variable), ``conflicts``, ``writer_crashes``, ``projector_crashes``.

Actions
    Read(w, stream)     Writer w loads the stream's aggregate (its version; its state by replay).
    Append(w)           w's append takes the next global position; it has not committed yet.
    Commit(w)           w's append commits: the stream is still at the version w read; the event gets the next.
    Conflict(w)         w's append fails: another writer committed the version w expected; a position taken is a hole.
    WriterCrash(w)      w crashes mid-transaction; the transaction aborts, and a position it took is a hole.
    Fetch               The subscription fetches the event at the position after its checkpoint, once it is committed.
    Handle              The projector applies the fetched event and saves the checkpoint, in one transaction.
    PassHole            The subscription passes the position after its checkpoint, which was aborted.
    ProjectorCrash      The projector crashes, losing the event it fetched and had not handled.

Invariants
    TypeOK              every variable holds a value of its type.
    VersionsGapless     each stream's committed events have versions 1, 2, ... with none missing or repeated.
    NoLostUpdate        every committed event's version is one more than the version its writer read.
    ReplayMatches       replaying a stream gives the state its last event says the aggregate had.
    NoSkippedEvent      every committed event at or below the checkpoint was applied, or is the one the projector holds.
    AppliedOnce         each event is applied once, in global order, and the read model is the fold of those.

Reachable
    LateCommit          an event committed after one at a higher position and was still applied (the gap race, handled).
    HolePassed          the subscription passed a position that was never used.
    ConflictRejected    an append failed because another writer committed the version it expected.

Bounds: at most ``appends`` transactions per writer, ``max_crashes`` writer crashes and
``max_crashes`` projector crashes.

Variants
    no_expected_version         an append commits at the version its writer expected, unchecked (no unique key).
    append_at_head              an append commits at the stream's next version, whatever version its writer read.
    load_reads_all_streams      loading an aggregate replays every stream's events, not its own.
    reader_skips_gap            the subscription fetches the next committed event, passing positions still in flight.
    checkpoint_before_update    the checkpoint is saved when an event is fetched, before the read model is updated.
    volatile_checkpoint         the checkpoint is kept in memory: after a crash the projector starts from the beginning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant
from distcheck.spec.values import FrozenMap

SUBSCRIPTION = "subscription"

# -------------------------------------------------------------------------- values


@attrs.frozen(order=True)
class Event:
    stream: str
    version: int
    writer: str
    read: int  # the version the writer read before deciding it
    state: int  # the aggregate's state after it, as the writer computed it

    def __str__(self) -> str:
        return f"{self.stream}@{self.version}"


@attrs.frozen(order=True)
class Txn:
    """A writer's transaction: it read version ``read`` of ``stream`` and the
    aggregate's ``state`` there; ``position`` once it appended."""

    stream: str
    read: int
    state: int
    position: int = 0

    def __str__(self) -> str:
        at = f" at {self.position}" if self.position else ""
        return f"{self.stream}:read {self.read}{at}"


# -------------------------------------------------------------------------- state


@attrs.frozen
class StoreState:
    version: FrozenMap[str, int]
    events: FrozenMap[int, Event]
    next_position: int
    txns: FrozenMap[str, Txn | None]
    aborted: frozenset[int]
    attempts: FrozenMap[str, int]
    checkpoint: int
    fetched: int
    read_model: FrozenMap[str, int]
    applied: tuple[int, ...]
    committed_order: tuple[int, ...]
    conflicts: int
    writer_crashes: int
    projector_crashes: int


# ------------------------------------------------------------------------ actions


@attrs.frozen
class Read(Action):
    ACTOR = "w"
    w: str
    stream: str


@attrs.frozen
class Append(Action):
    ACTOR = "w"
    w: str


@attrs.frozen
class Commit(Action):
    ACTOR = "w"
    w: str


@attrs.frozen
class Conflict(Action):
    ACTOR = "w"
    w: str


@attrs.frozen
class WriterCrash(Action):
    ACTOR = "w"
    w: str


@attrs.frozen
class Fetch(Action):
    ACTOR = SUBSCRIPTION


@attrs.frozen
class Handle(Action):
    ACTOR = SUBSCRIPTION


@attrs.frozen
class PassHole(Action):
    ACTOR = SUBSCRIPTION


@attrs.frozen
class ProjectorCrash(Action):
    ACTOR = SUBSCRIPTION


StoreAction = Read | Append | Commit | Conflict | WriterCrash | Fetch | Handle | PassHole | ProjectorCrash


@attrs.frozen
class Config:
    # The maxima are a trace's sizes (a validated run has a writer per command), not
    # sizes to explore: a search beyond 3 writers or 2 appends takes minutes.
    writers: int = param(2, help="writers appending concurrently", minimum=1, maximum=1_000_000)
    streams: int = param(2, help="streams they append to", minimum=1, maximum=1_000_000)
    appends: int = param(1, help="bound: transactions each writer begins", minimum=1, maximum=1_000_000)
    max_crashes: int = param(1, help="bound: writer crashes, and projector crashes", minimum=0, maximum=1_000_000)
    variant: str | None = None


# --------------------------------------------------------------------- the protocol


class EventStore(Spec[StoreState, StoreAction]):
    name = "event_store"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.writers = tuple(f"w{i}" for i in range(1, config.writers + 1))
        self.streams = tuple(f"s{i}" for i in range(1, config.streams + 1))

    def init_states(self) -> Iterable[StoreState]:
        yield StoreState(
            version=FrozenMap({s: 0 for s in self.streams}),
            events=FrozenMap(),
            next_position=1,
            txns=FrozenMap({w: None for w in self.writers}),
            aborted=frozenset(),
            attempts=FrozenMap({w: 0 for w in self.writers}),
            checkpoint=0,
            fetched=0,
            read_model=FrozenMap({s: 0 for s in self.streams}),
            applied=(),
            committed_order=(),
            conflicts=0,
            writer_crashes=0,
            projector_crashes=0,
        )

    def next(self) -> Next:
        return (
            Exists("w", self.writers, Exists("stream", self.streams, self.read)),
            Exists("w", self.writers, self.append, self.commit, self.conflict, self.writer_crash),
            self.fetch,
            self.handle,
            self.pass_hole,
            self.projector_crash,
        )

    # ------------------------------------------------------------ the writers

    @rule(Read)
    def read(self, s: StoreState, w: str, stream: str) -> StoreState | None:
        """An idle writer with transactions left loads a stream's aggregate: its
        version, and its state by replaying its events."""
        if s.txns[w] is not None or s.attempts[w] >= self.config.appends:
            return None
        txn = Txn(stream, s.version[stream], self.load(s, stream))
        return attrs.evolve(s, txns=s.txns.set(w, txn), attempts=s.attempts.set(w, s.attempts[w] + 1))

    def load(self, s: StoreState, stream: str) -> int:
        """The aggregate's state: the fold of its stream's committed events."""
        return fold([e for e in s.events.values() if e.stream == stream])

    @rule(Append)
    def append(self, s: StoreState, w: str) -> StoreState | None:
        """The writer's append takes the next global position, uncommitted."""
        txn = s.txns[w]
        if txn is None or txn.position:
            return None
        return attrs.evolve(
            s, txns=s.txns.set(w, attrs.evolve(txn, position=s.next_position)), next_position=s.next_position + 1
        )

    def expected_version_holds(self, s: StoreState, txn: Txn) -> bool:
        """The unique (stream, version) key: the stream is still at the version read."""
        return s.version[txn.stream] == txn.read

    def version_of(self, s: StoreState, txn: Txn) -> int:
        """The version a committed append gets: the one after the version read (which
        the expected-version check has made the stream's next)."""
        return txn.read + 1

    @rule(Commit)
    def commit(self, s: StoreState, w: str) -> StoreState | None:
        """The append commits as the stream's next version, the event carrying the
        state its writer computed from what it read."""
        txn = s.txns[w]
        if txn is None or not txn.position or not self.expected_version_holds(s, txn):
            return None
        version = self.version_of(s, txn)
        event = Event(txn.stream, version, w, txn.read, txn.state + 1)
        return attrs.evolve(
            s,
            version=s.version.set(txn.stream, version),
            events=s.events.set(txn.position, event),
            txns=s.txns.set(w, None),
            committed_order=(*s.committed_order, txn.position),
        )

    @rule(Conflict)
    def conflict(self, s: StoreState, w: str) -> StoreState | None:
        """Another writer committed first: the append fails, before or after it took a
        position (a store may check the version first); a position taken is a hole."""
        txn = s.txns[w]
        if txn is None or self.expected_version_holds(s, txn):
            return None
        aborted = s.aborted | {txn.position} if txn.position else s.aborted
        return attrs.evolve(s, txns=s.txns.set(w, None), aborted=aborted, conflicts=s.conflicts + 1)

    @rule(WriterCrash)
    def writer_crash(self, s: StoreState, w: str) -> StoreState | None:
        """A writer crashes mid-transaction: it aborts, and a position it took is a hole."""
        txn = s.txns[w]
        if txn is None or s.writer_crashes >= self.config.max_crashes:
            return None
        aborted = s.aborted | {txn.position} if txn.position else s.aborted
        return attrs.evolve(s, txns=s.txns.set(w, None), aborted=aborted, writer_crashes=s.writer_crashes + 1)

    # ------------------------------------------------------------ the subscription

    def next_to_fetch(self, s: StoreState) -> int | None:
        """The position the subscription fetches next: the one after its checkpoint,
        once committed (while it is in flight, the subscription waits)."""
        p = s.checkpoint + 1
        return p if p in s.events else None

    @rule(Fetch)
    def fetch(self, s: StoreState) -> StoreState | None:
        """The subscription fetches the event after its checkpoint, once committed."""
        p = self.next_to_fetch(s)
        if s.fetched or p is None:
            return None
        return attrs.evolve(s, fetched=p)

    @rule(Handle)
    def handle(self, s: StoreState) -> StoreState | None:
        """The projector applies the fetched event to the read model and saves the
        checkpoint, in one transaction."""
        if not s.fetched:
            return None
        stream = s.events[s.fetched].stream
        return attrs.evolve(
            s,
            read_model=s.read_model.set(stream, s.read_model[stream] + 1),
            applied=(*s.applied, s.fetched),
            checkpoint=max(s.checkpoint, s.fetched),
            fetched=0,
        )

    @rule(PassHole)
    def pass_hole(self, s: StoreState) -> StoreState | None:
        """The position after the checkpoint was never used: the subscription passes it."""
        if s.fetched or s.checkpoint + 1 not in s.aborted:
            return None
        return attrs.evolve(s, checkpoint=s.checkpoint + 1)

    @rule(ProjectorCrash)
    def projector_crash(self, s: StoreState) -> StoreState | None:
        """The projector crashes: the event it fetched is lost; the read model and the
        checkpoint are durable."""
        if s.projector_crashes >= self.config.max_crashes:
            return None
        return attrs.evolve(s, fetched=0, projector_crashes=s.projector_crashes + 1)

    # ------------------------------------------------------------ properties

    def invariants(self) -> Sequence[Invariant[StoreState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self.type_ok),
            Invariant(
                "VersionsGapless",
                "each stream's committed events have versions 1, 2, ... with none missing or repeated",
                self.versions_gapless,
            ),
            Invariant(
                "NoLostUpdate",
                "every committed event's version is one more than the version its writer read",
                no_lost_update,
            ),
            Invariant(
                "ReplayMatches",
                "replaying a stream gives the state its last event says the aggregate had",
                self.replay_matches,
            ),
            Invariant(
                "NoSkippedEvent",
                "every committed event at or below the checkpoint was applied, or is the one the projector holds",
                no_skipped_event,
            ),
            Invariant(
                "AppliedOnce",
                "each event is applied once, in global order, and the read model is the fold of those",
                self.applied_once,
            ),
        )

    def type_ok(self, s: StoreState) -> bool:
        positions = range(1, s.next_position)
        return (
            all(p in positions for p in (*s.events, *s.aborted))
            and not set(s.events) & s.aborted
            and 0 <= s.checkpoint < s.next_position
            and (s.fetched == 0 or s.fetched in s.events)
            and all(0 <= s.attempts[w] <= self.config.appends for w in self.writers)
        )

    def versions_gapless(self, s: StoreState) -> bool:
        for stream in self.streams:
            versions = sorted(e.version for e in s.events.values() if e.stream == stream)
            if versions != list(range(1, s.version[stream] + 1)):
                return False
        return True

    def replay_matches(self, s: StoreState) -> bool:
        for stream in self.streams:
            history = sorted((e for e in s.events.values() if e.stream == stream), key=lambda e: e.version)
            if history and fold(history) != history[-1].state:
                return False
        return True

    def applied_once(self, s: StoreState) -> bool:
        if len(set(s.applied)) != len(s.applied) or list(s.applied) != sorted(s.applied):
            return False
        return all(
            s.read_model[stream] == sum(1 for p in s.applied if s.events[p].stream == stream) for stream in self.streams
        )

    def reachable(self) -> Sequence[Reachable[StoreState]]:
        return (
            Reachable(
                "LateCommit",
                "an event committed after one at a higher position and was still applied (the gap race, handled)",
                late_commit_applied,
            ),
            Reachable(
                "HolePassed",
                "the subscription passed a position that was never used",
                lambda s: any(p <= s.checkpoint for p in s.aborted),
            ),
            Reachable(
                "ConflictRejected",
                "an append failed because another writer committed the version it expected",
                lambda s: s.conflicts > 0,
            ),
        )


def fold(history: Sequence[Event]) -> int:
    """The aggregate's state after these events: the counter counts them."""
    state = 0
    for _ in history:
        state += 1
    return state


def no_lost_update(s: StoreState) -> bool:
    return all(e.version == e.read + 1 for e in s.events.values())


def no_skipped_event(s: StoreState) -> bool:
    done = set(s.applied) | ({s.fetched} if s.fetched else set())
    return all(p in done for p in s.events if p <= s.checkpoint)


def late_commit_applied(s: StoreState) -> bool:
    order = s.committed_order
    return any(
        order[j] < order[i] and order[j] in s.applied for i in range(len(order)) for j in range(i + 1, len(order))
    )


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides the one rule it breaks.


@variant("no_expected_version", "an append commits at the version its writer expected, unchecked (no unique key)")
class NoExpectedVersion(EventStore):
    def expected_version_holds(self, s: StoreState, txn: Txn) -> bool:
        """No unique key on (stream, version): two writers that read version v both
        commit at v+1."""
        return True


@variant("append_at_head", "an append commits at the stream's next version, whatever version its writer read")
class AppendAtHead(EventStore):
    def expected_version_holds(self, s: StoreState, txn: Txn) -> bool:
        """No concurrency check at all: the event goes to the head of the stream."""
        return True

    def version_of(self, s: StoreState, txn: Txn) -> int:
        """The stream's next version, though the writer decided on an older state:
        the update made in between is lost."""
        return s.version[txn.stream] + 1


@variant(
    "load_reads_all_streams",
    "loading an aggregate replays every stream's events, not its own (a missing WHERE stream = ?)",
    params={"streams": 2},
)
class LoadReadsAllStreams(EventStore):
    def load(self, s: StoreState, stream: str) -> int:
        """Every committed event is folded, whichever stream it belongs to."""
        return fold(list(s.events.values()))


@variant("reader_skips_gap", "the subscription fetches the next committed event, passing positions still in flight")
class ReaderSkipsGap(EventStore):
    def next_to_fetch(self, s: StoreState) -> int | None:
        """The next visible event, as ``WHERE position > checkpoint ORDER BY position
        LIMIT 1`` gives it: a position whose transaction has not committed yet is
        not there, and is passed."""
        later = [p for p in s.events if p > s.checkpoint]
        return min(later) if later else None


@variant(
    "checkpoint_before_update", "the checkpoint is saved when an event is fetched, before the read model is updated"
)
class CheckpointBeforeUpdate(EventStore):
    @rule(Fetch)
    def fetch(self, s: StoreState) -> StoreState | None:
        """Fetching saves the checkpoint at once (its own transaction): a crash before
        the update leaves the event counted as processed and never applied."""
        p = self.next_to_fetch(s)
        if s.fetched or p is None:
            return None
        return attrs.evolve(s, fetched=p, checkpoint=p)


@variant(
    "volatile_checkpoint", "the checkpoint is kept in memory: after a crash the projector starts from the beginning"
)
class VolatileCheckpoint(EventStore):
    @rule(ProjectorCrash)
    def projector_crash(self, s: StoreState) -> StoreState | None:
        """The read model is durable, the checkpoint is not: a restarted projector
        applies every event again."""
        if s.projector_crashes >= self.config.max_crashes:
            return None
        return attrs.evolve(s, fetched=0, checkpoint=0, projector_crashes=s.projector_crashes + 1)
