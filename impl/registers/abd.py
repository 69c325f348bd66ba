"""ABD: an atomic (linearizable) key-value store on majority quorums, with no leader.

Where it sits: written on ``impl.runtime`` only, so the same code runs under the
controlled scheduler (tests, ``distcheck simulate abd``) and in free mode over TCP.
It mirrors ``spec/abd.py`` without importing it: every key is one ABD register,
and every step the spec names is recorded with ``ctx.record`` in its vocabulary
(``Invoke``, ``ReplyQuery``, ``EndQuery``, ``ReplyUpdate``, ``EndUpdate``), so that
``distcheck validate abd --split key`` checks each key against the spec
(docs/abd.md, "The implementation").

Using it::

    system = cluster(servers=3, workloads={"c1": [put("x", 1), get("x")]})
    # run system.nodes() in a runtime; or, inside any client node:
    kv = AbdClient(ctx, ["s1", "s2", "s3"])
    kv.put("x", 1); kv.get("x")                       # → "ok", 1

- **Servers** ``s1..sN`` keep, per key, a copy: a value under a tag (number,
  writer), tags ordered by number, then writer.  A server answers a ``Query`` with
  its copy, and takes an ``Update`` only if its tag is higher than its copy's; it
  appends and syncs the new copy *before* acknowledging (``UpdateAck``), and
  acknowledges either way.  After a restart it rebuilds every copy from its log.
- **A write** of v: query every server and wait for a majority of answers; take the
  highest number n among them; update every server with v under (n + 1, op) and
  wait for a majority of acknowledgements.  ``op`` is the operation's id, the
  client's name and its count (``c1.3``): unique per write, even when a client gave
  up on a write that left its tag on a few servers and then writes again.
- **A read**: query a majority; take the copy with the highest tag; *write it back*
  to a majority (the same update phase), then return its value.  Without the write
  back, two reads that do not overlap can return new, then old.
- **Timing.**  A client re-sends its query or update every ``timing.resend``
  seconds to the servers that have not answered, and gives up after
  ``timing.request_timeout`` seconds with ``Unavailable`` (no majority reachable: a
  minority partition, or most servers down).  An operation given up may or may not
  have taken effect; the history records no return for it.
- Any client may write and read any key (multi-writer).  ``cas`` is refused: a
  register has no atomic read-modify-write without consensus.

Variants (deliberately broken, for the checks to catch)

=========================  =======================================================
``read_skips_write_back``  A read returns the highest value its query saw without
                           writing it back: a new-old inversion between reads.
``small_quorums``          Clients wait for N // 2 servers, not a majority: two
                           quorums need not meet (1 of 3).
``skips_sync``             A server appends an update but acknowledges it without
                           syncing: a crash forgets acknowledged writes.
=========================  =======================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.paxos import KeyValueCalls, get, put
from distcheck.impl.resilience import UNBOUNDED, Deadline, RetryError, Retrying
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor, MessageError, Messages
from distcheck.impl.runtime.api import Context, Envelope, NodeMain
from distcheck.impl.runtime.history import History

__all__ = [
    "VARIANTS",
    "AbdClient",
    "Cluster",
    "Server",
    "Timing",
    "Unavailable",
    "Workload",
    "cluster",
    "get",
    "put",
]

VARIANTS: dict[str, str] = {
    "read_skips_write_back": "a read returns the highest value its query saw, without writing it back",
    "small_quorums": "clients wait for N // 2 servers, not a majority: two quorums need not meet",
    "skips_sync": "a server acknowledges an update it appended but did not sync: a crash forgets it",
}

#: the tag of a key no one has written: below every write's tag
INITIAL_TAG: tuple[int, str] = (0, "")

#: longest key and operation id a server accepts (a hostile peer's strings stay small)
MAX_NAME = 200


@attrs.frozen
class Timing(config.Timing):
    #: a client re-sends to the servers that have not answered after this long
    resend: float = 0.5
    #: a client gives up on an operation (``Unavailable``) after this long
    request_timeout: float = 5.0


class Unavailable(Exception):
    """No majority of servers answered within ``request_timeout``: the operation may
    or may not have taken effect."""


# --------------------------------------------------------------------- messages


def _check_name(what: str, text: str) -> None:
    if not text or len(text) > MAX_NAME:
        raise MessageError(f"{what} must be 1 to {MAX_NAME} characters, got {len(text)}")


def _check_tag(number: int, writer: str) -> None:
    if number < 0:
        raise MessageError(f"a tag's number must not be negative, got {number}")
    if number == 0 and writer:
        raise MessageError("a tag of number 0 is the initial tag, whose writer is empty")
    if number > 0:
        _check_name("a tag's writer", writer)


@attrs.frozen
class Query:
    """client → server: your copy of ``key``, for operation ``op``."""

    key: str
    op: str

    def validate(self) -> None:
        _check_name("key", self.key)
        _check_name("op", self.op)


@attrs.frozen
class QueryReply:
    """server → client: my copy of ``key`` (``value`` under the tag (number, writer))."""

    key: str
    op: str
    number: int
    writer: str
    value: Any

    def validate(self) -> None:
        _check_name("key", self.key)
        _check_tag(self.number, self.writer)


@attrs.frozen
class Update:
    """client → server: keep ``value`` under (number, writer) for ``key`` if that tag is
    higher than your copy's."""

    key: str
    op: str
    number: int
    writer: str
    value: Any

    def validate(self) -> None:
        _check_name("key", self.key)
        _check_name("op", self.op)
        _check_tag(self.number, self.writer)


@attrs.frozen
class UpdateAck:
    """server → client: I hold ``key`` at the tag (number, writer) or higher."""

    key: str
    op: str
    number: int
    writer: str


SERVER_WIRE = Messages(Query, Update)
CLIENT_WIRE = Messages(QueryReply, UpdateAck)


@attrs.frozen
class Copy:
    """What a server holds for one key."""

    number: int
    writer: str
    value: Any

    @property
    def tag(self) -> tuple[int, str]:
        return (self.number, self.writer)


EMPTY = Copy(0, "", None)


def copy_json(copy: Copy) -> dict[str, Any]:
    """A copy in spec/abd's vocabulary (``Copy`` of a ``Tag`` and a value), as traces carry it."""
    return {
        "type": "Copy",
        "tag": {"type": "Tag", "number": copy.number, "writer": copy.writer},
        "value": copy.value,
    }


# ----------------------------------------------------------------------- server


class Server(Actor):
    """One replica of every register: per key a copy, durable before acknowledged."""

    messages = SERVER_WIRE

    def __init__(self, name: str, variant: str | None = None) -> None:
        super().__init__(name)
        config.check_variant(variant, VARIANTS)
        self.variant = variant
        self.copies: dict[str, Copy] = {}

    def on_start(self) -> None:
        # The log holds every copy the server took, in order, each higher than the
        # last for its key: the last per key is the copy.  Taking the highest keeps
        # that true even of a log some other version of this code wrote.
        self.log = self.ctx.storage("copies")
        self.copies = {}
        for record in self.log.records():
            copy = Copy(int(record["number"]), str(record["writer"]), record["value"])
            key = str(record["key"])
            if copy.tag > self.copy(key).tag:
                self.copies[key] = copy

    def copy(self, key: str) -> Copy:
        return self.copies.get(key, EMPTY)

    def on_message(self, src: str, msg: Any) -> None:
        if isinstance(msg, Query):
            held = self.copy(msg.key)
            self.ctx.record(
                {"type": "ReplyQuery", "server": self.name, "client": src},
                key=msg.key,
                op=msg.op,
                tag=[held.number, held.writer],
            )
            self.send(src, QueryReply(msg.key, msg.op, held.number, held.writer, held.value))
        elif isinstance(msg, Update):
            offered = Copy(msg.number, msg.writer, msg.value)
            if offered.tag > self.copy(msg.key).tag:
                self.log.append({"key": msg.key, "number": msg.number, "writer": msg.writer, "value": msg.value})
                if self.variant != "skips_sync":
                    self.log.sync()  # durable before anyone hears that we hold it
                self.copies[msg.key] = offered
            self.ctx.record(
                {"type": "ReplyUpdate", "server": self.name, "client": src},
                key=msg.key,
                op=msg.op,
                tag=[msg.number, msg.writer],
            )
            self.send(src, UpdateAck(msg.key, msg.op, msg.number, msg.writer))


# ----------------------------------------------------------------------- client


class AbdClient(KeyValueCalls):
    """Blocking ``put`` and ``get`` on an ABD cluster; ``Unavailable`` when no majority
    answers within ``timing.request_timeout``.  One client object is one identity:
    two live clients must not share a name (their operation ids, and so their tags,
    would collide)."""

    def __init__(
        self,
        ctx: Context,
        servers: Sequence[str],
        history: History | None = None,
        timing: Timing = Timing(),
        variant: str | None = None,
    ) -> None:
        if not servers:
            raise ValueError("an ABD client needs at least one server")
        config.check_variant(variant, VARIANTS)
        self.ctx = ctx
        self.name = ctx.name
        self.servers = tuple(servers)
        self.history = history
        self.timing = timing
        self.variant = variant
        majority = len(self.servers) // 2 + 1
        self.quorum = max(1, len(self.servers) // 2) if variant == "small_quorums" else majority
        self.count = 0
        #: the name the history knows this client by: a new one after each operation
        #: given up on, since that operation may still take effect at any later time
        #: (a linearizability check sees a client with one operation in flight at a time)
        self.session = self.name
        self.given_up = 0

    def execute(self, op: Mapping[str, Any]) -> Any:
        kind = op.get("op")
        if kind == "cas":
            raise ValueError("cas is not supported by the ABD store: a register has no atomic read-modify-write")
        fields = {"get": {"op", "key"}, "put": {"op", "key", "value"}}
        if kind not in fields or set(op) != fields[str(kind)] or not isinstance(op["key"], str):
            raise ValueError(f"an operation is get(key) or put(key, value) with a string key, got {dict(op)!r}")
        key = str(op["key"])
        _check_name("a key", key)  # what a server would refuse
        self.count += 1
        op_id = f"{self.name}.{self.count}"
        entry = self.history.call(self.session, op) if self.history is not None else None
        started = self.ctx.now()
        deadline = started + self.timing.request_timeout
        self.ctx.record(
            {"type": "Invoke", "client": self.name},
            key=key,
            op=op_id,
            kind=kind,
            **({"value": op["value"]} if kind == "put" else {}),
        )
        try:
            answers = self._query(key, op_id, deadline)
            highest = max(answers.values(), key=lambda c: c.tag)
            carried = Copy(highest.number + 1, op_id, op["value"]) if kind == "put" else highest
            self.ctx.record(
                {"type": "EndQuery", "client": self.name, "highest": copy_json(highest)},
                key=key,
                op=op_id,
                answers={server: [c.number, c.writer] for server, c in sorted(answers.items())},
            )
            if kind == "get" and self.variant == "read_skips_write_back":
                return self._returns(entry, key, op_id, highest.value)
            self._update(key, op_id, carried, deadline)
        except Unavailable:
            self.given_up += 1
            self.session = f"{self.name}/{self.given_up}"
            raise
        return self._returns(entry, key, op_id, "ok" if kind == "put" else carried.value)

    def _returns(self, entry: Any, key: str, op_id: str, result: Any) -> Any:
        self.ctx.record({"type": "EndUpdate", "client": self.name}, key=key, op=op_id, result=result)
        if entry is not None and self.history is not None:
            self.history.ret(entry, result)
        return result

    def _query(self, key: str, op_id: str, deadline: float) -> dict[str, Copy]:
        answers: dict[str, Copy] = {}

        def take(server: str, msg: Any) -> None:
            if isinstance(msg, QueryReply) and msg.key == key and msg.op == op_id:
                answers.setdefault(server, Copy(msg.number, msg.writer, msg.value))

        self._round(Query(key, op_id), answers, take, deadline, f"query {key!r}")
        return answers

    def _update(self, key: str, op_id: str, carried: Copy, deadline: float) -> None:
        acks: dict[str, bool] = {}

        def take(server: str, msg: Any) -> None:
            if isinstance(msg, UpdateAck) and msg.key == key and msg.op == op_id:
                acks[server] = True

        update = Update(key, op_id, carried.number, carried.writer, carried.value)
        self._round(update, acks, take, deadline, f"update {key!r}")

    def _round(
        self,
        request: Query | Update,
        heard: Mapping[str, Any],
        take: Callable[[str, Any], None],
        deadline: float,
        what: str,
    ) -> None:
        """Send ``request`` to every server, re-send it every ``resend`` seconds to
        those not yet ``heard`` from, until a quorum answered (``take`` files each
        answer) or the deadline passed (``Unavailable``)."""
        wire = SERVER_WIRE.encode(request)
        # The operation's id is the idempotency key: a server files an id's query or
        # update once (a repeat changes nothing and is acknowledged again).
        resends = Retrying(
            backoff=False,
            max_attempts=UNBOUNDED,
            deadline=Deadline(deadline, self.ctx.now),
            retry_on=TimeoutError,
            idempotency_key=request.op,
            clock=self.ctx.now,
            sleep=self.ctx.sleep,
        )
        try:
            for attempt in resends:
                with attempt:
                    resend_at = self.ctx.now() + attempt.bounded(self.timing.resend)
                    for server in self.servers:
                        if server not in heard:
                            self.ctx.send(server, wire)
                    self._hear(heard, take, resend_at)
                    if len(heard) < self.quorum:
                        raise TimeoutError(f"{len(heard)} of {self.quorum} answers so far")
                if attempt.exception is None:
                    return
        except RetryError:
            pass
        raise Unavailable(
            f"{self.name}: {what}: {len(heard)} of {len(self.servers)} servers answered "
            f"({', '.join(sorted(heard)) or 'none'}), {self.quorum} needed, within "
            f"{self.timing.request_timeout:g} s"
        )

    def _hear(self, heard: Mapping[str, Any], take: Callable[[str, Any], None], until: float) -> None:
        """File answers (``take``) until a quorum is heard from or ``until``."""
        while len(heard) < self.quorum and (left := until - self.ctx.now()) > 0:
            item = self.ctx.receive(timeout=left)
            if not isinstance(item, Envelope) or item.src not in self.servers:
                continue
            try:
                msg = CLIENT_WIRE.decode(item.msg)
            except MessageError as exc:
                self.ctx.log(f"ignored a message from {item.src}: {exc}")
                continue
            take(item.src, msg)


# ---------------------------------------------------------------------- cluster


class Workload:
    """A client node that runs ``ops`` one after another: the results of those that
    completed, and the operations given up on (``Unavailable``), in ``unavailable``."""

    def __init__(
        self,
        name: str,
        servers: Sequence[str],
        ops: Sequence[Mapping[str, Any]],
        history: History,
        timing: Timing = Timing(),
        variant: str | None = None,
    ) -> None:
        self.name = name
        self.servers = tuple(servers)
        self.ops = [dict(op) for op in ops]
        self.history = history
        self.timing = timing
        self.variant = variant
        self.results: list[Any] = []
        self.unavailable: list[dict[str, Any]] = []

    @property
    def finished(self) -> int:
        """How many of ``ops`` are over, completed or given up on."""
        return len(self.results) + len(self.unavailable)

    def main(self, ctx: Context) -> None:
        client = AbdClient(ctx, self.servers, self.history, self.timing, self.variant)
        self.results, self.unavailable = [], []
        for op in self.ops:
            try:
                self.results.append(client.execute(op))
            except Unavailable as exc:
                ctx.log(str(exc))
                self.unavailable.append(op)


@attrs.define
class Cluster:
    """Servers and client workloads wired together: ``nodes()`` is what a runtime runs."""

    servers: list[Server]
    clients: list[Workload]
    history: History

    def nodes(self) -> dict[str, NodeMain]:
        out: dict[str, NodeMain] = {s.name: s.main for s in self.servers}
        out.update({c.name: c.main for c in self.clients})
        return {name: out[name] for name in sorted(out)}

    def unavailable(self) -> dict[str, int]:
        """Per client, how many of its operations it gave up on."""
        return {c.name: len(c.unavailable) for c in self.clients}


def cluster(
    servers: int = 3,
    workloads: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    *,
    timing: Timing = Timing(),
    variant: str | None = None,
) -> Cluster:
    """Servers ``s1..sN`` and one client node per workload (name → operations)."""
    config.check_variant(variant, VARIANTS)
    if servers < 1:
        raise ValueError(f"an ABD cluster needs at least one server, got {servers}")
    names = [f"s{i}" for i in range(1, servers + 1)]
    workloads = workloads if workloads is not None else {"c1": [put("x", 1), get("x")]}
    clash = sorted(set(workloads) & set(names))
    if clash:
        raise ValueError(f"client name(s) {', '.join(clash)} are taken by servers")
    history = History()
    clients = [Workload(name, names, ops, history, timing, variant) for name, ops in workloads.items()]
    return Cluster([Server(name, variant) for name in names], clients, history)
