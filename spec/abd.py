"""ABD: Attiya, Bar-Noy and Dolev's atomic register on majority quorums, multi-writer.

N servers (``servers``) each hold a copy of one register: a value with a tag, a
(number, writer) pair ordered by number, then writer.  Clients run operations in
two phases, each a round trip to a quorum (a majority: any two share a server).

- **Write(v)** by writer w: *query* a quorum for their tags and take the highest
  number; then *update* a quorum with v under the tag (number + 1, w).  A server
  keeps an update only if its tag is higher than the one it holds.
- **Read**: *query* a quorum for their tags and values and take the value of the
  highest tag; then *write back* that tag and value to a quorum before returning
  it, so that any later read's quorum meets a server holding it.

Every operation finishes while a quorum is reachable (no leader, no election), and
every history is linearizable: a write's tag is above every tag a completed
operation returned or wrote (its query meets their quorums), and a read returns no
older value than a completed read did (the write-back).  Skip the write-back and
two reads that do not overlap may return new, then old: a *new-old inversion*.

Sources: H. Attiya, A. Bar-Noy, D. Dolev, "Sharing memory robustly in message-
passing systems" (JACM 1995); N. Lynch, A. Shvartsman, "Robust emulation of shared
memory using dynamic quorum-acknowledged broadcasts" (FTCS 1997), the multi-writer
form; M. Herlihy, J. Wing, "Linearizability" (TOPLAS 1990).

Abstractions.  One TLA+-style message set: a message sent stays, so loss, delay,
duplication and reordering are behaviours of the spec; a server answers a query
with its copy at that moment, any moment after the query.  Each
client runs one operation: writers ``w1..wW`` write 1..W, readers ``r1..rR`` read;
the register starts at 0 under tag (0, "").  Servers do not crash (a crashed
server is a slow one: it answers nothing, which the message set already allows).

State: each server's ``copy`` (tag and value); each client's ``phase`` (idle,
query, update, done) and the tag and value it ``carries`` into its update phase;
``msgs``; and
``history``, the operations' invocations and responses in real-time order (a
history variable: what linearizability is a property of).

Actions
    Invoke(client)               The client starts its operation: it sends its query.
    ReplyQuery(server, client)   A server answers a client's query with its copy.
    EndQuery(client, highest)    With one answer from each server of a quorum, the highest of
                                 them ``highest``: a writer tags its value above it, a reader
                                 takes it; each sends its update.
    ReplyUpdate(server, client)  A server takes a client's update if its tag is higher, and acknowledges.
    EndUpdate(client)            With acknowledgements from a quorum, the operation returns.

A client's receipt of each answer is not a step of its own: what the client does
depends only on the highest answer of the quorum it heard from, so EndQuery ranges
over every highest answer some quorum's answers (one each, any each sent) can give.

Invariants
    TypeOK          every variable holds a value of its type.
    Linearizable    the history so far is linearizable: its operations can be put in one
                    order, respecting real time, in which each read returns the last value written.
    TagsGrow        a server's copy only moves to higher tags (a step property's state form:
                    every copy's tag is at least the tag of every update it acknowledged).

Reachable
    ReadNewValue        a read returned a written value.
    ReadsSplit          two reads returned different values.
    AllDone             every operation returned.

Variants, each caught
    read_skips_write_back   a read returns after its query, without writing back   Linearizable
    small_quorums           quorums of N // 2 servers, which need not intersect    Linearizable
    overwrite_older         a server stores every update, older tags too           TagsGrow
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Spec, param, rule, variant
from distcheck.spec.network import MessageSet
from distcheck.spec.values import FrozenMap

IDLE, QUERY, UPDATE, DONE = "idle", "query", "update", "done"
PHASES = (IDLE, QUERY, UPDATE, DONE)

# ----------------------------------------------------------------------- values


@attrs.frozen(order=True)
class Tag:
    """A write's timestamp: ordered by ``number``, then ``writer`` (unique per write)."""

    number: int
    writer: str

    def __str__(self) -> str:
        return f"{self.number}.{self.writer or '-'}"


INITIAL = Tag(0, "")


@attrs.frozen
class Copy:
    tag: Tag
    value: int

    def __str__(self) -> str:
        return f"{self.value}@{self.tag}"


# --------------------------------------------------------------------- messages


@attrs.frozen
class MsgQuery:
    client: str

    def __str__(self) -> str:
        return f"query({self.client})"


@attrs.frozen
class MsgQueryReply:
    server: str
    client: str
    copy: Copy

    def __str__(self) -> str:
        return f"query-reply({self.server}→{self.client}, {self.copy})"


@attrs.frozen
class MsgUpdate:
    client: str
    copy: Copy

    def __str__(self) -> str:
        return f"update({self.client}, {self.copy})"


@attrs.frozen
class MsgAck:
    server: str
    client: str
    tag: Tag

    def __str__(self) -> str:
        return f"ack({self.server}→{self.client}, {self.tag})"


Message = MsgQuery | MsgQueryReply | MsgUpdate | MsgAck


@attrs.frozen
class Event:
    """One entry of the history: an invocation (``result`` None) or a response."""

    kind: str  # "call" or "return"
    client: str
    value: int | None  # a write's argument, a read's result; None for a read's call and a write's return

    def __str__(self) -> str:
        return f"{self.kind} {self.client}" + ("" if self.value is None else f" {self.value}")


# ------------------------------------------------------------------------ state


@attrs.frozen
class AbdState:
    copy: FrozenMap[str, Copy]  # each server's copy
    phase: FrozenMap[str, str]  # each client's phase
    carries: FrozenMap[str, Copy | None]  # what each client writes in its update phase
    msgs: MessageSet[Message]
    history: tuple[Event, ...]


# ---------------------------------------------------------------------- actions


class ClientAction(Action):
    __slots__ = ()
    ACTOR = "client"


class ServerAction(Action):
    __slots__ = ()
    ACTOR = "server"


@attrs.frozen
class Invoke(ClientAction):
    client: str


@attrs.frozen
class ReplyQuery(ServerAction):
    server: str
    client: str


@attrs.frozen
class EndQuery(ClientAction):
    client: str
    highest: Copy


@attrs.frozen
class ReplyUpdate(ServerAction):
    server: str
    client: str


@attrs.frozen
class EndUpdate(ClientAction):
    client: str


AbdAction = Invoke | ReplyQuery | EndQuery | ReplyUpdate | EndUpdate


@attrs.frozen
class Config:
    servers: int = param(3, help="servers s1, s2, ...", minimum=1, maximum=7)
    writers: int = param(1, help="writer clients w1, w2, ...; wi writes i", minimum=0, maximum=3)
    readers: int = param(1, help="reader clients r1, r2, ...", minimum=0, maximum=3)
    variant: str | None = None


# --------------------------------------------------------------- linearizability


def linearizable(history: Sequence[Event], writers: Mapping[str, int]) -> bool:
    """Can the operations of ``history`` be put in one order that respects real
    time (an operation that returned before another was called comes first), in
    which each read returns the value of the last write before it (0 if none)?
    Operations still pending may take effect or not.  ``writers``: each writer's
    value (a client not in it is a reader)."""
    called: dict[str, int] = {}
    returned: dict[str, int] = {}
    result: dict[str, int | None] = {}
    for i, e in enumerate(history):
        if e.kind == "call":
            called[e.client] = i
        else:
            returned[e.client] = i
            result[e.client] = e.value
    done = [c for c in called if c in returned]
    pending_writes = [c for c in called if c not in returned and c in writers]
    for k in range(len(pending_writes) + 1):
        for chosen in itertools.combinations(pending_writes, k):
            ops = [*done, *chosen]
            for order in itertools.permutations(ops):
                if _legal(order, called, returned, result, writers):
                    return True
    return False


def _legal(
    order: Sequence[str],
    called: Mapping[str, int],
    returned: Mapping[str, int],
    result: Mapping[str, int | None],
    writers: Mapping[str, int],
) -> bool:
    value = 0
    for i, c in enumerate(order):
        # Real time: no later operation in the order returned before this one was called.
        if any(d in returned and returned[d] < called[c] for d in order[i + 1 :]):
            return False
        if c in writers:
            value = writers[c]
        elif result[c] != value:
            return False
    return True


# ------------------------------------------------------------------------- spec


class Abd(Spec[AbdState, AbdAction]):
    name = "abd"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.servers = tuple(f"s{i}" for i in range(1, config.servers + 1))
        self.writers = {f"w{i}": i for i in range(1, config.writers + 1)}
        self.readers = tuple(f"r{i}" for i in range(1, config.readers + 1))
        self.clients = (*self.writers, *self.readers)
        self.quorum = len(self.servers) // 2 + 1

    @classmethod
    def for_operations(
        cls, servers: int, writes: Mapping[str, int], reads: Sequence[str], variant: str | None = None
    ) -> Abd:
        """The register as one run used it, for validating that run's trace: one
        client per operation, named as the run names it, each write (``writes``:
        operation → the value it writes, distinct and above 0) and each read
        (``reads``).  An implementation's client runs many operations; each is one
        of the spec's one-operation clients, and a write's tag is (number, its name)."""
        spec = cls(Config(servers=servers, writers=0, readers=0, variant=variant))
        spec.writers = dict(writes)
        spec.readers = tuple(reads)
        spec.clients = (*spec.writers, *spec.readers)
        spec._compile_next()  # Next quantifies over the clients: bind it to these
        return spec

    def init_states(self) -> Iterable[AbdState]:
        yield AbdState(
            copy=FrozenMap({s: Copy(INITIAL, 0) for s in self.servers}),
            phase=FrozenMap({c: IDLE for c in self.clients}),
            carries=FrozenMap({c: None for c in self.clients}),
            msgs=MessageSet(),
            history=(),
        )

    def next(self) -> Next:
        return (
            Exists(
                "client",
                self.clients,
                self.invoke,
                Exists("highest", self.highest_answers, self.end_query),
                self.end_update,
            ),
            Exists("server", self.servers, Exists("client", self.clients, self.reply_query, self.reply_update)),
        )

    # ------------------------------------------------------------ helpers

    def returns(self, s: AbdState, client: str, value: int | None) -> AbdState:
        return attrs.evolve(
            s,
            phase=s.phase.set(client, DONE),
            carries=s.carries.set(client, None),
            history=(*s.history, Event("return", client, value)),
        )

    # -------------------------------------------------------------- rules

    @rule(Invoke)
    def invoke(self, s: AbdState, client: str) -> AbdState | None:
        """An idle client starts its operation by querying every server."""
        if s.phase[client] != IDLE:
            return None
        return attrs.evolve(
            s,
            phase=s.phase.set(client, QUERY),
            msgs=s.msgs.send(MsgQuery(client)),
            history=(*s.history, Event("call", client, self.writers.get(client))),
        )

    @rule(ReplyQuery)
    def reply_query(self, s: AbdState, server: str, client: str) -> AbdState | None:
        """A server answers a query, once, with the copy it holds then (when it
        answers is any moment: an answer it would send again later is one it could
        have sent later in the first place)."""
        reply = MsgQueryReply(server, client, s.copy[server])
        if MsgQuery(client) not in s.msgs:
            return None
        if any(isinstance(m, MsgQueryReply) and (m.server, m.client) == (server, client) for m in s.msgs.sent):
            return None
        return attrs.evolve(s, msgs=s.msgs.send(reply))

    def highest_answers(self, s: AbdState, client: str) -> list[Copy]:
        """Every copy that can be the highest of one answer from each server of some
        quorum (each server's answer any of those it sent the client)."""
        sent: dict[str, set[Copy]] = {}
        for m in s.msgs.sent:
            if isinstance(m, MsgQueryReply) and m.client == client:
                sent.setdefault(m.server, set()).add(m.copy)
        out: set[Copy] = set()
        for quorum in itertools.combinations(sorted(sent), self.quorum):
            for answers in itertools.product(*(sent[server] for server in quorum)):
                out.add(max(answers, key=lambda c: c.tag))
        return sorted(out, key=lambda c: c.tag)

    @rule(EndQuery)
    def end_query(self, s: AbdState, client: str, highest: Copy) -> AbdState | None:
        """With one answer from each server of a quorum, the highest of them
        ``highest``: a writer tags its value above its number, a reader takes it;
        each sends its update."""
        if s.phase[client] != QUERY:
            return None
        if client in self.writers:
            carried = Copy(Tag(highest.tag.number + 1, client), self.writers[client])
        else:
            carried = highest
            if not self.writes_back():
                return self.returns(s, client, carried.value)
        return attrs.evolve(
            s,
            phase=s.phase.set(client, UPDATE),
            carries=s.carries.set(client, carried),
            msgs=s.msgs.send(MsgUpdate(client, carried)),
        )

    def writes_back(self) -> bool:
        """A read writes back the value it is about to return."""
        return True

    def newer(self, tag: Tag, held: Tag) -> bool:
        """A server replaces its copy only with a higher tag."""
        return tag > held

    @rule(ReplyUpdate)
    def reply_update(self, s: AbdState, server: str, client: str) -> AbdState | None:
        """A server keeps an update whose tag is higher than its copy's, and
        acknowledges it either way."""
        updates = [m for m in s.msgs.sent if isinstance(m, MsgUpdate) and m.client == client]
        if not updates:
            return None
        update = updates[0]  # one operation per client: one update
        ack = MsgAck(server, client, update.copy.tag)
        if ack in s.msgs:
            return None
        copy = update.copy if self.newer(update.copy.tag, s.copy[server].tag) else s.copy[server]
        return attrs.evolve(s, copy=s.copy.set(server, copy), msgs=s.msgs.send(ack))

    @rule(EndUpdate)
    def end_update(self, s: AbdState, client: str) -> AbdState | None:
        """With acknowledgements from a quorum the operation returns: a write "ok", a
        read the value it wrote back."""
        carried = s.carries[client]
        if s.phase[client] != UPDATE or carried is None:
            return None
        acked = sum(1 for server in self.servers if MsgAck(server, client, carried.tag) in s.msgs)
        if acked < self.quorum:
            return None
        return self.returns(s, client, None if client in self.writers else carried.value)

    def canonical(self, s: AbdState) -> AbdState:
        """Symmetry over servers.  A server's whole role in a state is its signature
        (its copy, the answers and acknowledgements it sent, to whom); servers are
        otherwise interchangeable, so sorting the signatures and handing them out to
        s1, s2, ... in order gives one representative per orbit."""

        def signature(server: str) -> tuple[Copy, tuple[tuple[str, Copy], ...], tuple[tuple[str, Tag], ...]]:
            answers = sorted(
                ((m.client, m.copy) for m in s.msgs.sent if isinstance(m, MsgQueryReply) and m.server == server),
                key=str,
            )
            acks = sorted(
                ((m.client, m.tag) for m in s.msgs.sent if isinstance(m, MsgAck) and m.server == server), key=str
            )
            return s.copy[server], tuple(answers), tuple(acks)

        signatures = sorted((signature(server) for server in self.servers), key=str)
        sent: list[Message] = [m for m in s.msgs.sent if isinstance(m, MsgQuery | MsgUpdate)]
        for server, (_, answers, acks) in zip(self.servers, signatures, strict=True):
            sent += [MsgQueryReply(server, client, copy) for client, copy in answers]
            sent += [MsgAck(server, client, tag) for client, tag in acks]
        copies = FrozenMap({server: sig[0] for server, sig in zip(self.servers, signatures, strict=True)})
        return attrs.evolve(s, copy=copies, msgs=MessageSet(sent))

    # ========================================================== properties

    def invariants(self) -> Sequence[Invariant[AbdState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self._type_ok),
            Invariant(
                "Linearizable",
                "the history so far is linearizable: its operations can be put in one order, "
                "respecting real time, in which each read returns the last value written",
                lambda s: linearizable(s.history, self.writers),
            ),
            Invariant(
                "TagsGrow",
                "every server's copy has a tag at least that of every update it acknowledged",
                lambda s: all(s.copy[m.server].tag >= m.tag for m in s.msgs.sent if isinstance(m, MsgAck)),
            ),
        )

    def _type_ok(self, s: AbdState) -> bool:
        return (
            set(s.copy) == set(self.servers)
            and set(s.phase) == set(self.clients)
            and all(p in PHASES for p in s.phase.values())
            and all(c.value in (0, *self.writers.values()) for c in s.copy.values())
        )

    def reads(self, s: AbdState) -> list[int | None]:
        """What the reads that returned returned."""
        return [e.value for e in s.history if e.kind == "return" and e.client in self.readers]

    def reachable(self) -> Sequence[Reachable[AbdState]]:
        out: list[Reachable[AbdState]] = [
            Reachable("AllDone", "every operation returned", lambda s: all(p == DONE for p in s.phase.values()))
        ]
        if self.writers and self.readers:
            out.append(Reachable("ReadNewValue", "a read returned a written value", lambda s: any(self.reads(s))))
        if self.writers and len(self.readers) > 1:
            out.append(
                Reachable("ReadsSplit", "two reads returned different values", lambda s: len(set(self.reads(s))) > 1)
            )
        return out


# ------------------------------------------------------------------------ variants


@variant(
    "read_skips_write_back",
    "a read returns the highest value its query saw without writing it back",
    params={"readers": 2},
)
class ReadSkipsWriteBack(Abd):
    def writes_back(self) -> bool:
        """The second phase of a read looks like a waste of a round trip."""
        return False


@variant("small_quorums", "quorums of N // 2 servers (2 of 4, 1 of 3): two of them need not share a server")
class SmallQuorums(Abd):
    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        self.quorum = max(1, len(self.servers) // 2)


@variant("overwrite_older", "a server stores every update it receives, even one older than its copy")
class OverwriteOlder(Abd):
    def newer(self, tag: Tag, held: Tag) -> bool:
        """The last update to arrive wins, as if updates arrived in the order sent."""
        return True
