"""Dynamo: a leaderless register replicated on N servers, read and written through
any of them with R and W acknowledgements, in the style of Amazon's Dynamo.

One key, replicated on every server ``s1..sN`` (the key's preference list).  A
client sends its operation to any server, the *coordinator*, which fans it out to
all N replicas and answers the client once enough of them have:

- **Put.**  The coordinator makes the new version, stores it, sends it to the
  other replicas and returns "ok" once W replicas (itself included) stored it.
- **Get.**  The coordinator asks every replica, and once R of them answered it
  returns what they hold, merged; then, without waiting, it pushes the merged
  result to the replicas whose answer was behind (*read repair*).
- **Anti-entropy.**  Any two replicas that can talk compare their states and both
  keep the merge (Dynamo does it with Merkle trees; here one atomic step).

Conflicts are handled by the ``mode`` parameter:

- ``vv``: *version vectors with siblings*.  A write carries a context, the version
  vector of what its client read (or the empty context, a blind write); the new
  version's vector is the context with the writer's own entry incremented (one
  entry per client, the "client-side ids" fix of Riak).  A replica keeps every
  version no other version it holds dominates: concurrent writes are all kept, as
  *siblings*, and a read returns them all for the client to reconcile.
- ``lww``: *last writer wins*.  A write is stamped with its writer's physical clock;
  a replica keeps the version with the highest (timestamp, value).  Clocks are
  skewed by at most ``skew``: a clock reads anywhere in [now, now + skew], where
  true time ``now`` is the number of operations invoked so far.

Sources: G. DeCandia et al., "Dynamo: Amazon's highly available key-value store"
(SOSP 2007); D. S. Parker et al., "Detection of mutual inconsistency in
distributed systems" (1983), version vectors; N. Preguiça et al., "Dotted version
vectors" (2010), the lost update of per-server version vectors; M. Kleppmann,
"Designing Data-Intensive Applications" (2017), ch. 5, why R + W > N is not
linearizable.

Abstractions.  Clients reach every server; a *partition* cuts one server off from
the others (``partitions`` of them at most, each healed by a step): messages in
flight across the cut are lost when it starts, and messages sent across it while it
lasts are lost too (the coordinator does not retry: read repair, anti-entropy and
later writes are what bring a replica back).  Messages are otherwise delivered in
any order, each at most once.  Each client runs one operation: writers ``w1..wW``
write 1..W, readers ``r1..rR`` read; the key starts absent (a read of nothing
returns no value, the register's 0).  A writer's context is what its coordinator
holds as it writes (a get there just before the put), or empty (a blind write).
Clients use the first ``coordinators`` servers as coordinators (every server by
default).  An operation whose replicas stay out of reach stays pending: a timeout
would tell the client nothing more than that.  No sloppy quorums: see
docs/dynamo.md.

State: each server's ``replica`` (its set of versions); each client's ``phase``
and ``coordinator``; ``msgs``, the messages in flight; the partition ``cut`` (the
server cut off, or "") and the ``partitions`` left; each read's ``results``; and
history variables, each kept only where a property reads it: in lww mode
``received`` (the writes that reached each replica) and ``acked_before`` (the
writes acknowledged before each write began), which LaterWriteWins reads; and
``history`` (calls and returns in real-time order), which Linearizable reads.

Actions
    Put(client, coordinator, context)     vv: a writer writes through a coordinator, with the
                                          context it read there ("read") or none ("blind").
    StampedPut(client, coordinator, clock) lww: a writer writes, stamped ``clock``.
    Store(server, client)                 a replica stores a write and acknowledges it.
    PutDone(client)                       with W replicas storing it, the write returns.
    Get(client, coordinator)              a reader asks every replica through a coordinator.
    Answer(server, client)                a replica answers a read with what it holds.
    GetDone(client)                       with R answers, the read returns their merge and
                                          sends read repair to the replicas that were behind.
    Repair(server, client)                a replica merges a read repair.
    AntiEntropy(server, peer)             two replicas that can talk both keep their merge.
    Partition(server)                     the server is cut off from the others.
    Heal                                  the partition ends.

Invariants
    TypeOK          every variable holds a value of its type.
    NoLostWrite     (vv) every acknowledged write is held by some replica, itself or in a
                    version whose write causally followed it (its context included it).
    LaterWriteWins  (lww) no replica that received a write holds instead one that was
                    acknowledged before that write began.
    Linearizable    (only where a variant checks it) the history is linearizable.

Eventually
    Convergence     every replica holds the same versions.

Reachable
    WriteAcknowledged   a write returned.
    ReadSiblings        (vv) a read returned two concurrent writes as siblings.
    WriteDiscarded      (lww) a replica discarded a write it received, for a higher timestamp.
    Converged           every write returned and every replica holds the same versions.

Variants, each caught
    server_version_vectors  one vector entry per server, bumped by the coordinator   NoLostWrite
    no_anti_entropy         replicas never compare states (read repair only)        Convergence
    no_write_back           R + W > N taken for linearizable: reads return before
                            their repair lands (checks Linearizable)                Linearizable
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from distcheck.spec import abd
from distcheck.spec.contract import (
    Action,
    Eventually,
    Exists,
    Invariant,
    Next,
    Reachable,
    Spec,
    param,
    rule,
    variant,
)
from distcheck.spec.network import MessageSet
from distcheck.spec.values import FrozenMap

VV, LWW = "vv", "lww"
MODES = (VV, LWW)
IDLE, PENDING, DONE = "idle", "pending", "done"
PHASES = (IDLE, PENDING, DONE)
NOBODY = ""  # no server: no coordinator yet, no partition
BLIND, READ = "blind", "read"  # a put's context: none, or what the coordinator holds

# ----------------------------------------------------------------------- values


@attrs.frozen
class Version:
    """One write's version: its value (writer ``wi`` writes i), its version vector
    (vv mode) or timestamp (lww mode), and the writes it causally follows (a history
    variable: what the write's context included, whatever the vector says)."""

    value: int
    vv: tuple[int, ...]
    ts: int
    follows: frozenset[int]

    def __str__(self) -> str:
        if self.vv:
            return f"{self.value}[{','.join(map(str, self.vv))}]"
        return f"{self.value}@t{self.ts}"


Versions = frozenset[Version]


def dominates(a: Version, b: Version) -> bool:
    """``a``'s vector is at least ``b``'s everywhere and differs: b is in a's past."""
    return a.vv != b.vv and all(x >= y for x, y in zip(a.vv, b.vv, strict=True))


def merge_siblings(versions: Iterable[Version]) -> Versions:
    """vv: every version that no other dominates."""
    pool = frozenset(versions)
    return frozenset(v for v in pool if not any(dominates(u, v) for u in pool))


def merge_latest(versions: Iterable[Version]) -> Versions:
    """lww: the one version with the highest (timestamp, value), if any."""
    pool = list(versions)
    return frozenset([max(pool, key=lambda v: (v.ts, v.value))]) if pool else frozenset()


def values_of(versions: Versions) -> tuple[int, ...]:
    return tuple(sorted(v.value for v in versions))


# --------------------------------------------------------------------- messages


@attrs.frozen
class MsgStore:
    """The coordinator of ``client``'s put asks ``server`` to store ``version``."""

    server: str
    client: str
    version: Version

    def __str__(self) -> str:
        return f"store({self.client}→{self.server}, {self.version})"


@attrs.frozen
class MsgAck:
    server: str
    client: str

    def __str__(self) -> str:
        return f"ack({self.server}→{self.client})"


@attrs.frozen
class MsgGet:
    server: str
    client: str

    def __str__(self) -> str:
        return f"get({self.client}→{self.server})"


@attrs.frozen
class MsgAnswer:
    server: str
    client: str
    versions: Versions

    def __str__(self) -> str:
        return f"answer({self.server}→{self.client}, {{{', '.join(sorted(map(str, self.versions)))}}})"


@attrs.frozen
class MsgRepair:
    server: str
    client: str
    versions: Versions

    def __str__(self) -> str:
        return f"repair({self.client}→{self.server}, {{{', '.join(sorted(map(str, self.versions)))}}})"


# Every message runs between a server and the coordinator of a client's operation.
Message = MsgStore | MsgAck | MsgGet | MsgAnswer | MsgRepair


@attrs.frozen
class Event:
    """One entry of the history: a call or a return, with its values (a write's
    call: the value written; a read's return: the values read; else none)."""

    kind: str  # "call" or "return"
    client: str
    values: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.kind} {self.client}" + (f" {list(self.values)}" if self.values else "")


# ------------------------------------------------------------------------ state


@attrs.frozen
class DynamoState:
    replica: FrozenMap[str, Versions]  # each server's versions
    phase: FrozenMap[str, str]  # each client's phase
    coordinator: FrozenMap[str, str]  # each client's coordinator ("" before it calls)
    msgs: MessageSet[Message]  # the messages in flight (taken or lost: removed)
    cut: str  # the server cut off from the others, or ""
    partitions: int  # partitions left
    results: FrozenMap[str, tuple[int, ...]]  # what each reader's read returned
    received: FrozenMap[str, frozenset[int]]  # lww: the writes that reached each replica
    acked_before: FrozenMap[str, frozenset[int]]  # lww: the writes acknowledged before each write began
    history: tuple[Event, ...]  # calls and returns, kept only where Linearizable is checked


# ---------------------------------------------------------------------- actions


class ClientAction(Action):
    __slots__ = ()
    ACTOR = "client"


class ServerAction(Action):
    __slots__ = ()
    ACTOR = "server"


class NetAction(Action):
    __slots__ = ()
    ACTOR = "net"


@attrs.frozen
class Put(ClientAction):
    client: str
    coordinator: str
    context: str  # "read": what the coordinator holds; "blind": none


@attrs.frozen
class StampedPut(ClientAction):
    client: str
    coordinator: str
    clock: int


@attrs.frozen
class Store(ServerAction):
    server: str
    client: str


@attrs.frozen
class PutDone(ClientAction):
    client: str


@attrs.frozen
class Get(ClientAction):
    client: str
    coordinator: str


@attrs.frozen
class Answer(ServerAction):
    server: str
    client: str


@attrs.frozen
class GetDone(ClientAction):
    client: str


@attrs.frozen
class Repair(ServerAction):
    server: str
    client: str


@attrs.frozen
class AntiEntropy(ServerAction):
    server: str
    peer: str


@attrs.frozen
class Partition(NetAction):
    server: str


@attrs.frozen
class Heal(NetAction):
    pass


DynamoAction = Put | StampedPut | Store | PutDone | Get | Answer | GetDone | Repair | AntiEntropy | Partition | Heal


@attrs.frozen
class Config:
    servers: int = param(3, help="N: servers s1, s2, ..., each a replica of the key", minimum=1, maximum=5)
    r: int = param(2, help="R: answers a read waits for", minimum=1, maximum=5)
    w: int = param(2, help="W: replicas (the coordinator included) a write waits for", minimum=1, maximum=5)
    writers: int = param(1, help="writer clients w1, w2, ...; wi writes i", minimum=0, maximum=3)
    readers: int = param(1, help="reader clients r1, r2, ...", minimum=0, maximum=3)
    mode: str = param(VV, help="conflict handling: vv (version vectors, siblings) or lww (last writer wins)")
    skew: int = param(0, help="lww: a writer's clock reads [now, now + skew]", minimum=0, maximum=3)
    coordinators: int = param(
        0, help="servers a client may send its operation to: s1 .. sK (0: every server)", minimum=0, maximum=5
    )
    partitions: int = param(1, help="bound: partitions that cut one server off, each healed", minimum=0, maximum=2)
    variant: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for f in attrs.fields(Config):
            minimum, maximum = f.metadata.get("minimum"), f.metadata.get("maximum")
            value = getattr(self, f.name)
            if minimum is not None and not minimum <= value <= maximum:
                raise ValueError(f"{f.name} must be between {minimum} and {maximum}, got {value}")
        if max(self.r, self.w, self.coordinators) > self.servers:
            raise ValueError(
                f"r, w and coordinators must be at most servers ({self.servers}), "
                f"got r={self.r}, w={self.w}, coordinators={self.coordinators}"
            )


# ------------------------------------------------------------------------- spec


class Dynamo(Spec[DynamoState, DynamoAction]):
    name = "dynamo"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.servers = tuple(f"s{i}" for i in range(1, config.servers + 1))
        self.writers = {f"w{i}": i for i in range(1, config.writers + 1)}
        self.readers = tuple(f"r{i}" for i in range(1, config.readers + 1))
        self.clients = (*self.writers, *self.readers)
        self.coordinators = self.servers[: config.coordinators or len(self.servers)]
        self.lww = config.mode == LWW
        self.merge = merge_latest if self.lww else merge_siblings

    @classmethod
    def for_operations(
        cls,
        servers: int,
        writes: Mapping[str, int],
        reads: Sequence[str],
        *,
        r: int = 2,
        w: int = 2,
        mode: str = VV,
        partitions: int = 0,
        variant: str | None = None,
    ) -> Dynamo:
        """The key as one run used it, for validating that run's trace: one client
        per operation, named as the run names it, each write (``writes``: operation →
        the value it writes, 1, 2, ... in the order the writes began, so that write i
        owns entry i of every version vector) and each read (``reads``).  A store's
        client runs many operations; each is one of the spec's one-operation clients."""
        spec = cls(
            Config(servers=servers, r=r, w=w, writers=0, readers=0, mode=mode, partitions=partitions, variant=variant)
        )
        spec.writers = dict(writes)
        spec.readers = tuple(reads)
        spec.clients = (*spec.writers, *spec.readers)
        spec._compile_next()  # Next quantifies over the clients: bind it to these
        return spec

    def init_states(self) -> Iterable[DynamoState]:
        yield DynamoState(
            replica=FrozenMap({s: frozenset() for s in self.servers}),
            phase=FrozenMap({c: IDLE for c in self.clients}),
            coordinator=FrozenMap({c: NOBODY for c in self.clients}),
            msgs=MessageSet(),
            cut=NOBODY,
            partitions=self.config.partitions,
            results=FrozenMap({c: () for c in self.readers}),
            received=FrozenMap({s: frozenset() for s in self.servers}),
            acked_before=FrozenMap({c: frozenset() for c in self.writers} if self.lww else {}),
            history=(),
        )

    def next(self) -> Next:
        put = (
            Exists("clock", self.clock_readings, self.stamped_put)
            if self.lww
            else Exists("context", self.contexts, self.put)
        )
        return (
            Exists("client", tuple(self.writers), Exists("coordinator", self.coordinators, put), self.put_done),
            Exists("client", self.readers, Exists("coordinator", self.coordinators, self.get), self.get_done),
            Exists(
                "server",
                self.servers,
                Exists("client", self.clients, self.store, self.answer, self.repair),
                Exists("peer", self.servers, self.anti_entropy),
                self.partition,
            ),
            self.heal,
        )

    # ------------------------------------------------------------ helpers

    def crosses(self, s: DynamoState, m: Message) -> bool:
        """The message runs between the cut-off server and another one."""
        return s.cut != NOBODY and (m.server == s.cut) != (s.coordinator[m.client] == s.cut)

    def send(self, s: DynamoState, msgs: MessageSet[Message], *new: Message) -> MessageSet[Message]:
        """Send what does not cross the partition (what does is lost)."""
        return msgs.send(*(m for m in new if not self.crosses(s, m)))

    def drop(self, msgs: MessageSet[Message], gone: Iterable[Message]) -> MessageSet[Message]:
        """The messages in flight without ``gone`` (taken, withdrawn or lost)."""
        for m in gone:
            msgs = msgs.without(m)
        return msgs

    def take_in(self, s: DynamoState, server: str, versions: Versions) -> DynamoState:
        """The replica merges ``versions`` into its own."""
        received = s.received
        if self.lww:
            received = received.set(server, received[server] | {v.value for v in versions})
        return attrs.evolve(
            s, replica=s.replica.set(server, self.merge(s.replica[server] | versions)), received=received
        )

    def keeps_history(self) -> bool:
        """The real-time order of calls and returns is kept only where a property
        reads it: elsewhere it would multiply the states by the orders in which
        independent operations start and end, and change no step."""
        return False

    def record(self, s: DynamoState, event: Event) -> tuple[Event, ...]:
        return (*s.history, event) if self.keeps_history() else s.history

    def call(self, s: DynamoState, client: str, coordinator: str, values: tuple[int, ...]) -> DynamoState:
        acked_before = s.acked_before
        if self.lww and client in self.writers:
            acked_before = acked_before.set(client, frozenset(self.acknowledged(s)))
        return attrs.evolve(
            s,
            phase=s.phase.set(client, PENDING),
            coordinator=s.coordinator.set(client, coordinator),
            acked_before=acked_before,
            history=self.record(s, Event("call", client, values)),
        )

    def returns(self, s: DynamoState, client: str, values: tuple[int, ...]) -> DynamoState:
        results = s.results.set(client, values) if client in self.readers else s.results
        return attrs.evolve(
            s,
            phase=s.phase.set(client, DONE),
            results=results,
            history=self.record(s, Event("return", client, values)),
        )

    def clock_size(self) -> int:
        """A version vector has one entry per writer (client-side ids)."""
        return len(self.writers)

    def new_clock(self, s: DynamoState, client: str, coordinator: str, context: tuple[int, ...]) -> tuple[int, ...]:
        """The new version's vector: the context with the writer's own entry incremented."""
        mine = self.writers[client] - 1
        return tuple(n + 1 if i == mine else n for i, n in enumerate(context))

    def write(self, s: DynamoState, client: str, coordinator: str, version: Version) -> DynamoState:
        """The coordinator stores the new version and sends it to the other replicas."""
        s = self.call(s, client, coordinator, (version.value,))
        s = self.take_in(s, coordinator, frozenset([version]))
        others = [MsgStore(server, client, version) for server in self.servers if server != coordinator]
        return attrs.evolve(s, msgs=self.send(s, s.msgs, *others))

    # -------------------------------------------------------------- rules

    def contexts(self, s: DynamoState, client: str, coordinator: str) -> tuple[str, ...]:
        """A blind write, or one whose context is what the coordinator holds."""
        return (BLIND, READ) if s.replica[coordinator] else (BLIND,)

    @rule(Put)
    def put(self, s: DynamoState, client: str, coordinator: str, context: str) -> DynamoState | None:
        """vv: an idle writer writes through a coordinator, with the context of what
        the coordinator holds if it reads first (else none: a blind write); the
        coordinator stores the new version and sends it to the other replicas."""
        if s.phase[client] != IDLE:
            return None
        read = s.replica[coordinator] if context == READ else frozenset()
        seen = tuple(max((v.vv[i] for v in read), default=0) for i in range(self.clock_size()))
        follows = frozenset(v.value for v in read).union(*(v.follows for v in read))
        version = Version(self.writers[client], self.new_clock(s, client, coordinator, seen), 0, follows)
        return self.write(s, client, coordinator, version)

    def clock_readings(self, s: DynamoState, client: str, coordinator: str) -> range:
        """What the writer's clock may read: true time (the operations invoked so
        far) up to ``skew`` ahead."""
        now = sum(1 for phase in s.phase.values() if phase != IDLE)
        return range(now, now + self.config.skew + 1)

    @rule(StampedPut)
    def stamped_put(self, s: DynamoState, client: str, coordinator: str, clock: int) -> DynamoState | None:
        """lww: an idle writer writes through a coordinator, stamped with its clock's
        reading; the coordinator stores it and sends it to the other replicas."""
        if s.phase[client] != IDLE:
            return None
        return self.write(s, client, coordinator, Version(self.writers[client], (), clock, frozenset()))

    @rule(Store)
    def store(self, s: DynamoState, server: str, client: str) -> DynamoState | None:
        """A replica merges a version sent to it and acknowledges (an acknowledgement
        to a write that has returned is not listened to)."""
        found = [m for m in s.msgs.sent if isinstance(m, MsgStore) and (m.server, m.client) == (server, client)]
        if not found:
            return None
        s = self.take_in(s, server, frozenset([found[0].version]))
        msgs = s.msgs.without(found[0])
        if s.phase[client] == PENDING:
            msgs = self.send(s, msgs, MsgAck(server, client))
        return attrs.evolve(s, msgs=msgs)

    @rule(PutDone)
    def put_done(self, s: DynamoState, client: str) -> DynamoState | None:
        """With acknowledgements from W - 1 replicas besides the coordinator, the
        write returns "ok"."""
        if s.phase[client] != PENDING:
            return None
        acks = [m for m in s.msgs.sent if isinstance(m, MsgAck) and m.client == client]
        if 1 + len(acks) < self.config.w:
            return None
        return attrs.evolve(self.returns(s, client, ()), msgs=self.drop(s.msgs, acks))

    @rule(Get)
    def get(self, s: DynamoState, client: str, coordinator: str) -> DynamoState | None:
        """An idle reader asks every replica through a coordinator, which answers
        at once for its own."""
        if s.phase[client] != IDLE:
            return None
        s = self.call(s, client, coordinator, ())
        asks = [MsgGet(server, client) for server in self.servers if server != coordinator]
        own = MsgAnswer(coordinator, client, s.replica[coordinator])
        return attrs.evolve(s, msgs=self.send(s, s.msgs, own, *asks))

    @rule(Answer)
    def answer(self, s: DynamoState, server: str, client: str) -> DynamoState | None:
        """A replica answers a read with the versions it holds then."""
        asked = MsgGet(server, client)
        if asked not in s.msgs:
            return None
        return attrs.evolve(s, msgs=self.send(s, s.msgs.without(asked), MsgAnswer(server, client, s.replica[server])))

    @rule(GetDone)
    def get_done(self, s: DynamoState, client: str) -> DynamoState | None:
        """With answers from R replicas the read returns their merge (every sibling),
        and sends it as read repair to those whose answer was behind."""
        if s.phase[client] != PENDING:
            return None
        answers = [m for m in s.msgs.sent if isinstance(m, MsgAnswer) and m.client == client]
        if len(answers) < self.config.r:
            return None
        merged = self.merge(frozenset().union(*(m.versions for m in answers)))
        # The read is over: questions not yet answered are withdrawn.
        msgs = self.drop(s.msgs, [*answers, *(m for m in s.msgs.sent if isinstance(m, MsgGet) and m.client == client)])
        behind = [MsgRepair(m.server, client, merged) for m in answers if m.versions != merged]
        msgs = self.send(s, msgs, *behind)
        return attrs.evolve(self.returns(s, client, values_of(merged)), msgs=msgs)

    @rule(Repair)
    def repair(self, s: DynamoState, server: str, client: str) -> DynamoState | None:
        """A replica merges a read repair sent to it."""
        found = [m for m in s.msgs.sent if isinstance(m, MsgRepair) and (m.server, m.client) == (server, client)]
        if not found:
            return None
        s = self.take_in(s, server, found[0].versions)
        return attrs.evolve(s, msgs=s.msgs.without(found[0]))

    @rule(AntiEntropy)
    def anti_entropy(self, s: DynamoState, server: str, peer: str) -> DynamoState | None:
        """Two replicas on the same side of any partition, whose states differ, both
        keep the merge of their states."""
        if server >= peer or s.replica[server] == s.replica[peer] or s.cut in (server, peer):
            return None
        s = self.take_in(s, server, s.replica[peer])
        return self.take_in(s, peer, s.replica[server])

    @rule(Partition)
    def partition(self, s: DynamoState, server: str) -> DynamoState | None:
        """With partitions left and none holding, the server is cut off from the
        others; the messages in flight across the cut are lost."""
        if s.cut != NOBODY or s.partitions == 0:
            return None
        s = attrs.evolve(s, cut=server, partitions=s.partitions - 1)
        return attrs.evolve(s, msgs=self.drop(s.msgs, [m for m in s.msgs.sent if self.crosses(s, m)]))

    @rule(Heal)
    def heal(self, s: DynamoState) -> DynamoState | None:
        """The partition ends."""
        if s.cut == NOBODY:
            return None
        return attrs.evolve(s, cut=NOBODY)

    # ========================================================== properties

    def acknowledged(self, s: DynamoState) -> list[int]:
        """The values of the writes that returned."""
        return [value for writer, value in self.writers.items() if s.phase[writer] == DONE]

    def no_lost_write(self, s: DynamoState) -> bool:
        held = [v for versions in s.replica.values() for v in versions]
        return all(any(v.value == w or w in v.follows for v in held) for w in self.acknowledged(s))

    def later_write_wins(self, s: DynamoState) -> bool:
        return not any(
            held.value in s.acked_before[f"w{later}"]
            for server, versions in s.replica.items()
            for held in versions
            for later in s.received[server]
        )

    def converged(self, s: DynamoState) -> bool:
        return len(set(s.replica.values())) == 1

    def invariants(self) -> Sequence[Invariant[DynamoState]]:
        out = [Invariant("TypeOK", "every variable holds a value of its type", self._type_ok)]
        if self.lww:
            out.append(
                Invariant(
                    "LaterWriteWins",
                    "no replica that received a write holds instead one acknowledged before that write began",
                    self.later_write_wins,
                )
            )
        else:
            out.append(
                Invariant(
                    "NoLostWrite",
                    "every acknowledged write is held by some replica, itself or in a version whose write "
                    "causally followed it",
                    self.no_lost_write,
                )
            )
        return out

    def _type_ok(self, s: DynamoState) -> bool:
        values = set(self.writers.values())
        return (
            set(s.replica) == set(self.servers)
            and set(s.phase) == set(self.clients)
            and all(p in PHASES for p in s.phase.values())
            and all(v.value in values for versions in s.replica.values() for v in versions)
            and all(len(versions) <= (1 if self.lww else len(values)) for versions in s.replica.values())
            and s.cut in (NOBODY, *self.servers)
            and 0 <= s.partitions <= self.config.partitions
        )

    def eventually(self) -> Sequence[Eventually[DynamoState]]:
        return (Eventually("Convergence", "every replica holds the same versions", self.converged),)

    def reads(self, s: DynamoState) -> list[tuple[int, ...]]:
        """What the reads that returned returned."""
        return [s.results[reader] for reader in self.readers if s.phase[reader] == DONE]

    def reachable(self) -> Sequence[Reachable[DynamoState]]:
        out: list[Reachable[DynamoState]] = []
        if self.writers:
            out.append(Reachable("WriteAcknowledged", "a write returned", lambda s: bool(self.acknowledged(s))))
            out.append(
                Reachable(
                    "Converged",
                    "every write returned and every replica holds the same versions",
                    lambda s: len(self.acknowledged(s)) == len(self.writers) and self.converged(s),
                )
            )
        if self.lww and len(self.writers) > 1:
            out.append(
                Reachable(
                    "WriteDiscarded",
                    "a replica discarded a write it received, for one with a higher timestamp",
                    lambda s: any(s.received[server] - {v.value for v in s.replica[server]} for server in self.servers),
                )
            )
        if not self.lww and len(self.writers) > 1 and self.readers:
            out.append(
                Reachable(
                    "ReadSiblings",
                    "a read returned two concurrent writes as siblings",
                    lambda s: any(len(values) > 1 for values in self.reads(s)),
                )
            )
        return out


# ----------------------------------------------------------------- linearizability


def register_history(history: Sequence[Event]) -> list[abd.Event] | None:
    """The history as a register's (reads return one value, 0 for none), or None
    where a read returned siblings: two values at once, which no register returns."""
    out = []
    for e in history:
        if len(e.values) > 1:
            return None
        out.append(abd.Event(e.kind, e.client, e.values[0] if e.values else (0 if e.kind == "return" else None)))
    return out


def linearizable(history: Sequence[Event], writers: Mapping[str, int]) -> bool:
    """Is the history a linearizable register's (``abd.linearizable``)?"""
    as_register = register_history(history)
    return as_register is not None and abd.linearizable(as_register, writers)


# ------------------------------------------------------------------------ variants


@variant(
    "server_version_vectors",
    "version vectors with one entry per server, the coordinator's own bumped above what it holds",
    params={"writers": 2, "readers": 0},
)
class ServerVersionVectors(Dynamo):
    def clock_size(self) -> int:
        """One entry per server, as Dynamo's paper describes its vector clocks."""
        return len(self.servers)

    def new_clock(self, s: DynamoState, client: str, coordinator: str, context: tuple[int, ...]) -> tuple[int, ...]:
        """The coordinator's entry goes above every version it holds: a blind write
        through it then dominates a concurrent write it stored earlier."""
        mine = self.servers.index(coordinator)
        local = max((v.vv[mine] for v in s.replica[coordinator]), default=0)
        return tuple(max(n, local) + 1 if i == mine else n for i, n in enumerate(context))


@variant("no_anti_entropy", "replicas never compare their states: read repair alone brings them together")
class NoAntiEntropy(Dynamo):
    def anti_entropy(self, s: DynamoState, server: str, peer: str) -> DynamoState | None:
        """Merkle trees look like an optimisation when reads repair what they see."""
        return None


@variant(
    "no_write_back",
    "R + W > N taken for linearizable: a read returns before its read repair lands (Linearizable checked)",
    params={"readers": 2, "partitions": 0, "coordinators": 2},
)
class NoWriteBack(Dynamo):
    def keeps_history(self) -> bool:
        """Linearizable reads the real-time order of calls and returns."""
        return True

    def invariants(self) -> Sequence[Invariant[DynamoState]]:
        """Strict quorums meet, so it is tempting to expect linearizable reads."""
        return (
            *super().invariants(),
            Invariant(
                "Linearizable",
                "the history so far is linearizable: its operations can be put in one order, "
                "respecting real time, in which each read returns the last value written",
                lambda s: linearizable(s.history, self.writers),
            ),
        )
