"""A Dynamo-style leaderless key-value store (N/R/W quorums, version vectors with
siblings or last-writer-wins, read repair, anti-entropy) and its client library:
the "AP" half of the CAP demonstration beside ``impl.registers.abd``.

Where it sits: written on ``impl.runtime`` only, so one code path runs under the
controlled scheduler and free over TCP; it uses ``impl.clocks.Vector`` for its
version vectors and imports neither ``spec/`` nor ``checks/``.  Every server step
is recorded with ``ctx.record`` (after its durable write, before its messages
leave) with the whole detail a wiring needs to map it onto ``spec/dynamo.py``:
the server, the key, the dot and version vector (or the timestamp), and the
siblings kept.  docs/dynamo-store.md is the user's page.

Using it::

    system = cluster(3, {"c1": [put("x", 1), get("x")]}, r=2, w=2)
    # or, inside any client node:
    kv = DynamoClient(ctx, ["s1", "s2", "s3"])
    kv.put("x", 1); kv.get("x")          # → "ok", [1]  (the sorted sibling values)

How it works.  Servers ``s1..sN`` each hold, per key, a set of versions.  A key's
replicas are ``n_replicas`` servers picked by a hash of the key (all of them by
default).  Any replica of a key coordinates a request for it; the client tries its
servers in its own preference order and moves to the next one when a coordinator
fails or does not answer within ``client_retry``.

- **vv mode** (default).  A version is a value with its *dot* (the event that wrote
  it: the coordinator and a counter) and the causal *context* it was written in;
  its version vector is the context plus the dot.  A put's coordinator takes the
  client's context for that key (what it last read and wrote of it), picks the next counter of its own
  (above every counter of its own that it holds for the key or that the context
  names), stores the new version, and drops every version whose dot the context
  covers: what the client read is superseded, a concurrent version stays beside
  it as a sibling.  Dominance is decided by dots, not by comparing whole vectors
  (dotted version vectors, as Riak 2 does), because two blind puts through one
  coordinator would otherwise get vectors ``{s1: 1}`` and ``{s1: 2}`` and the
  second would silently discard the first.
- **lww mode**.  One version per key with a timestamp ``(microseconds, server)``
  from the coordinator's physical clock plus its injected ``skew``; the higher
  timestamp wins everywhere.  A coordinator whose clock runs ahead makes a later
  write lose to an earlier one: the test shows it.
- **Put.**  The coordinator stores the version (append + sync), sends it to the
  other replicas, each of which merges it, syncs and acknowledges; the put returns
  after W acknowledgements, the coordinator's own included.
- **Get.**  The coordinator reads its own versions and asks the other replicas;
  after R answers it returns the merge (the versions no other covers) and its
  context, and sends the merge to every replica that answered with less (read
  repair), late answers included until ``replica_timeout``.
- **Anti-entropy.**  Every ``anti_entropy`` seconds a server sends a digest (a hash
  per key) to the next other server in turn; that server answers with its versions
  of every key whose digest differs and asks for the sender's; each side merges
  what it gets (push-pull, so one exchange makes the two agree on those keys).
- **No sloppy quorum.**  With strict quorums a coordinator that cannot reach W (or
  R) replicas fails the request; docs/dynamo-store.md says why hinted handoff is
  left out.

Variants (deliberately broken, for the checks to catch)

===================  ==========================================================
``unsynced_writes``  servers append versions without syncing them: a crash after
                     the acknowledgement loses an acknowledged write.
===================  ==========================================================
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.clocks import Vector
from distcheck.impl.paxos import KeyValueCalls, get, put
from distcheck.impl.resilience import UNBOUNDED, Deadline, RetryError, Retrying
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor, MessageError, Messages, Rejected, encode
from distcheck.impl.runtime.api import Context, Envelope, Storage
from distcheck.impl.runtime.history import History

__all__ = [
    "MODES",
    "VARIANTS",
    "Cluster",
    "DynamoClient",
    "DynamoServer",
    "Stamped",
    "Timing",
    "Unavailable",
    "Version",
    "Workload",
    "check_parameters",
    "cluster",
    "get",
    "history_result",
    "merge_stamped",
    "merge_versions",
    "preference_list",
    "put",
    "sibling_values",
]

MODES = ("vv", "lww")
VARIANTS = {
    "unsynced_writes": "servers append versions without syncing them, so a crash can lose an acknowledged write",
}


@attrs.frozen
class Timing(config.Timing):
    #: a client gives up on an operation (``Unavailable``) after this long
    request_timeout: float = 30.0
    #: a client waits this long for one coordinator before trying the next
    client_retry: float = 3.0
    #: a coordinator waits this long for W (or R) answers before failing the request
    replica_timeout: float = 2.0
    #: how often each server starts an anti-entropy exchange
    anti_entropy: float = 5.0


class Unavailable(Exception):
    """The client could not complete an operation within ``request_timeout``: no
    coordinator it may use reached its quorum.  A put may or may not have taken
    effect; the history records no return for it."""


# ------------------------------------------------------------------ versions


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@attrs.frozen(eq=False)
class Version:
    """vv mode: a value, the dot that wrote it (coordinator, counter) and the causal
    context the writer had read.  Its version vector is the context plus the dot."""

    value: Any
    dot: tuple[str, int]
    context: Vector

    @property
    def vector(self) -> Vector:
        return self.context.merge(Vector({self.dot[0]: self.dot[1]}))

    def covered_by(self, context: Vector) -> bool:
        """Whether ``context`` has seen the event that wrote this version."""
        return context.get(self.dot[0]) >= self.dot[1]

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "dot": [self.dot[0], self.dot[1]], "context": self.context.to_json()}

    def record_form(self) -> dict[str, Any]:
        """What trace events carry: the wire form and the version vector."""
        return {**self.to_json(), "vv": self.vector.to_json()}

    @classmethod
    def from_json(cls, obj: object, servers: frozenset[str]) -> Version:
        """ValueError (one line) unless ``obj`` is a version naming only ``servers``."""
        if not isinstance(obj, Mapping) or set(obj) != {"value", "dot", "context"}:
            raise ValueError("a version must be an object with value, dot and context")
        dot = obj["dot"]
        if not (isinstance(dot, list | tuple) and len(dot) == 2 and isinstance(dot[0], str)):
            raise ValueError(f"a version's dot must be [server, counter], got {dot!r}"[:120])
        counter = dot[1]
        if isinstance(counter, bool) or not isinstance(counter, int) or counter < 1:
            raise ValueError(f"a dot's counter must be an integer >= 1, got {counter!r}"[:120])
        context = Vector.from_json(obj["context"])
        strangers = sorted({dot[0], *context.nodes()} - servers)
        if strangers:
            raise ValueError(f"a version names unknown servers {strangers}"[:120])
        return cls(obj["value"], (dot[0], counter), context)


@attrs.frozen(eq=False)
class Stamped:
    """lww mode: a value and its timestamp (microseconds on the coordinator's
    clock, coordinator); the higher timestamp wins."""

    value: Any
    ts: tuple[int, str]

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "ts": [self.ts[0], self.ts[1]]}

    def record_form(self) -> dict[str, Any]:
        return self.to_json()

    @classmethod
    def from_json(cls, obj: object, servers: frozenset[str]) -> Stamped:
        if not isinstance(obj, Mapping) or set(obj) != {"value", "ts"}:
            raise ValueError("a timestamped value must be an object with value and ts")
        ts = obj["ts"]
        if not (isinstance(ts, list | tuple) and len(ts) == 2 and isinstance(ts[1], str)):
            raise ValueError(f"a timestamp must be [microseconds, server], got {ts!r}"[:120])
        if isinstance(ts[0], bool) or not isinstance(ts[0], int):
            raise ValueError(f"a timestamp's time must be an integer, got {ts[0]!r}"[:120])
        if ts[1] not in servers:
            raise ValueError(f"a timestamp names unknown server {ts[1]!r}"[:120])
        return cls(obj["value"], (ts[0], ts[1]))


#: a key's versions as a server holds them (all of one mode)
Versions = tuple[Version | Stamped, ...]


def merge_versions(*groups: Iterable[Version]) -> tuple[Version, ...]:
    """The siblings of the union: every version whose dot no other version's context
    covers, one per dot, sorted by dot.  Commutative, associative, idempotent."""
    by_dot: dict[tuple[str, int], Version] = {}
    for group in groups:
        for version in group:
            by_dot.setdefault(version.dot, version)
    everything = list(by_dot.values())
    kept = [v for v in everything if not any(o.dot != v.dot and v.covered_by(o.context) for o in everything)]
    return tuple(sorted(kept, key=lambda v: v.dot))


def merge_stamped(*groups: Iterable[Stamped]) -> tuple[Stamped, ...]:
    """Last writer wins: the one version with the highest timestamp (none if none)."""
    best: Stamped | None = None
    for group in groups:
        for version in group:
            if best is None or version.ts > best.ts:
                best = version
    return () if best is None else (best,)


def _merge(mode: str, *groups: Versions) -> Versions:
    everything = [v for group in groups for v in group]
    if mode == "vv":
        return merge_versions(v for v in everything if isinstance(v, Version))
    return merge_stamped(v for v in everything if isinstance(v, Stamped))


def _identity(versions: Versions) -> list[Any]:
    """What tells two sets of versions apart: their dots or timestamps."""
    return sorted([list(v.dot) if isinstance(v, Version) else list(v.ts) for v in versions])


def _wire(versions: Versions) -> tuple[dict[str, Any], ...]:
    return tuple(v.to_json() for v in versions)


def _recorded(versions: Versions) -> list[dict[str, Any]]:
    return [v.record_form() for v in versions]


def _digest(versions: Versions) -> str:
    return hashlib.sha256(_canonical(_wire(versions)).encode()).hexdigest()[:16]


def seen_context(versions: Iterable[Version | Stamped]) -> Vector:
    """The causal context of what a client sees in ``versions``: per server, the
    longest run of its events 1..n that the client has seen, each event either the
    dot of a version seen or inside a seen version's context (each context being
    such a run itself).  A version vector names every event of a server up to its
    entry, so merely joining the versions' vectors could name an event the client
    never saw (a coordinator's second write seen at a replica that missed the first,
    written by someone else), and a put in that context would silently supersede it."""
    entries: dict[str, int] = {}
    dots: set[tuple[str, int]] = set()
    for version in versions:
        if isinstance(version, Version):
            for node, count in version.context.items():
                entries[node] = max(entries.get(node, 0), count)
            dots.add(version.dot)
    for node in {node for node, _ in dots}:
        count = entries.get(node, 0)
        while (node, count + 1) in dots:
            count += 1
        entries[node] = count
    return Vector(entries)


def sibling_values(versions: Versions) -> list[Any]:
    """The distinct values of ``versions``, sorted by their JSON text."""
    by_text = {_canonical(v.value): v.value for v in versions}
    return [by_text[t] for t in sorted(by_text)]


def history_result(op: Mapping[str, Any], result: Any) -> Any:
    """What the history records for a result the client returned: a put's ``"ok"``;
    a get's single value when there is exactly one sibling (None when the key is
    absent), and ``{"siblings": [...]}`` when there are several, which no register
    returns, so the linearizability check sees a read that fits no order."""
    if op["op"] != "get":
        return result
    if not result:
        return None
    if len(result) == 1:
        return result[0]
    return {"siblings": list(result)}


def preference_list(key: str, servers: Sequence[str], n_replicas: int) -> tuple[str, ...]:
    """The ``n_replicas`` servers that hold ``key``: consecutive servers from a place
    fixed by a hash of the key (crc32, the same in every process)."""
    start = zlib.crc32(key.encode()) % len(servers)
    ring = [*servers[start:], *servers[:start]]
    return tuple(ring[:n_replicas])


# ------------------------------------------------------------------ messages


def _check_context(context: Mapping[str, int], where: str) -> None:
    try:
        Vector.from_json(dict(context))
    except ValueError as exc:
        raise MessageError(f"{where}: {exc}") from None


@attrs.frozen
class PutRequest:
    """client → coordinator: write ``value`` in the context the client last read."""

    req: int
    key: str
    value: Any
    context: dict[str, int]

    def validate(self) -> None:
        _check_context(self.context, "PutRequest.context")


@attrs.frozen
class GetRequest:
    req: int
    key: str


@attrs.frozen
class PutReply:
    """coordinator → client: the put is acknowledged by W replicas; ``context`` is
    the new version's vector (the client merges it into its context for the key)."""

    req: int
    context: dict[str, int]

    def validate(self) -> None:
        _check_context(self.context, "PutReply.context")


@attrs.frozen
class GetReply:
    """coordinator → client: the sibling values and their causal context."""

    req: int
    values: tuple[Any, ...]
    context: dict[str, int]

    def validate(self) -> None:
        _check_context(self.context, "GetReply.context")


@attrs.frozen
class Failed:
    """coordinator → client: no quorum answered within ``replica_timeout``."""

    req: int
    reason: str


@attrs.frozen
class Store:
    """coordinator → replica: merge these versions, sync, acknowledge."""

    op: str
    key: str
    versions: tuple[dict[str, Any], ...]


@attrs.frozen
class Stored:
    op: str
    key: str


@attrs.frozen
class Read:
    op: str
    key: str


@attrs.frozen
class ReadReply:
    op: str
    key: str
    versions: tuple[dict[str, Any], ...]


@attrs.frozen
class Repair:
    """coordinator → replica that answered a read with less than the merge."""

    key: str
    versions: tuple[dict[str, Any], ...]


@attrs.frozen
class Digest:
    """anti-entropy, first message: a hash of each key's versions."""

    digests: dict[str, str]


@attrs.frozen
class Sync:
    """anti-entropy: versions of the keys whose digests differ, and the keys whose
    versions the sender wants back (none in the last message of an exchange)."""

    entries: dict[str, tuple[dict[str, Any], ...]]
    wanted: tuple[str, ...]


CLIENT_REQUESTS = (PutRequest, GetRequest)
SERVER_MESSAGES = Messages(PutRequest, GetRequest, Store, Stored, Read, ReadReply, Repair, Digest, Sync)
CLIENT_MESSAGES = Messages(PutReply, GetReply, Failed)


@attrs.frozen
class AntiEntropyTimer:
    pass


@attrs.frozen
class RequestTimer:
    """The end of a coordinated request's wait for its quorum (and for late reads)."""

    op: str


# ------------------------------------------------------------------- server


@attrs.define
class _Pending:
    """A request this server coordinates."""

    kind: str  # "put" | "get"
    client: str
    req: int
    key: str
    answers: dict[str, Versions]  # get: replica → its versions; put: replica → ()
    version: Version | Stamped | None = None
    merged: Versions = ()
    done: bool = False


class DynamoServer(Actor):
    """One server.  Its memory (``store``: key → versions) is rebuilt from its log at
    every start; every change is appended and synced before anything is sent."""

    LOG = "store"
    messages = SERVER_MESSAGES

    def __init__(
        self,
        name: str,
        servers: Sequence[str],
        *,
        n_replicas: int | None = None,
        r: int = 2,
        w: int = 2,
        mode: str = "vv",
        timing: Timing = Timing(),
        skew: float = 0.0,
        variant: str | None = None,
    ) -> None:
        config.check_variant(variant, VARIANTS)
        check_parameters(len(servers), n_replicas, r, w, mode)
        if name not in servers:
            raise ValueError(f"server {name!r} is not among the servers {list(servers)}")
        super().__init__(name, None)
        self.servers = tuple(servers)
        self.known = frozenset(servers)
        self.n_replicas = len(servers) if n_replicas is None else n_replicas
        self.r, self.w, self.mode = r, w, mode
        self.timing = timing
        self.skew = skew
        self.variant = variant
        self.store: dict[str, Versions] = {}
        self.pending: dict[str, _Pending] = {}

    # ------------------------------------------------------------- start

    def on_start(self) -> None:
        self.store = {}
        self.pending = {}
        self.rounds = 0
        self.ops = 0
        self.last_ts = 0
        self.log: Storage = self.ctx.storage(self.LOG)
        incarnation = 0
        for record in self.log.records():
            if "incarnation" in record:
                incarnation = max(incarnation, int(record["incarnation"]))
            else:
                self.store[str(record["key"])] = self._parse(record["versions"])
        # Request ids name the incarnation, so that an answer to a request of an
        # earlier life is never taken for one to a request of this one.
        self.incarnation = incarnation + 1
        self.log.append({"incarnation": self.incarnation})
        self.log.sync()
        index = self.servers.index(self.name)
        self.set_timer(AntiEntropyTimer(), self.timing.anti_entropy * (index + 1) / len(self.servers))

    def replicas_for(self, key: str) -> tuple[str, ...]:
        return preference_list(key, self.servers, self.n_replicas)

    def accepts_sender(self, src: str, msg: Any) -> bool:
        return isinstance(msg, CLIENT_REQUESTS) or src in self.known

    def _parse(self, versions: Iterable[object]) -> Versions:
        """Versions of this server's mode from their JSON form (ValueError if not)."""
        if self.mode == "vv":
            return merge_versions(Version.from_json(v, self.known) for v in versions)
        return merge_stamped(Stamped.from_json(v, self.known) for v in versions)

    def _received(self, key: str, versions: Iterable[object]) -> Versions:
        """Versions a peer sent for ``key``: refused (``Rejected``) if malformed or if
        this server does not hold ``key``."""
        if self.name not in self.replicas_for(key):
            raise Rejected(f"{self.name} is not a replica of key {key!r}")
        try:
            return self._parse(versions)
        except (ValueError, TypeError) as exc:
            raise Rejected(str(exc)) from None

    def _persist(self, key: str, versions: Versions) -> None:
        self.store[key] = versions
        self.log.append({"key": key, "versions": list(_wire(versions))})
        if self.variant != "unsynced_writes":  # BROKEN in that variant: lost in a crash
            self.log.sync()

    def _merge_in(self, key: str, incoming: Versions) -> tuple[bool, Versions]:
        """Merge ``incoming`` into ``key``'s versions, durably; whether it changed."""
        before = self.store.get(key, ())
        after = _merge(self.mode, before, incoming)
        changed = _identity(after) != _identity(before)
        if changed:
            self._persist(key, after)
        return changed, after

    def _next_op(self) -> str:
        self.ops += 1
        return f"{self.name}.{self.incarnation}.{self.ops}"

    # ---------------------------------------------------------- messages

    def on_message(self, src: str, msg: Any) -> None:
        match msg:
            case PutRequest(req, key, value, context):
                self._coordinate_put(src, req, key, value, Vector.from_json(context))
            case GetRequest(req, key):
                self._coordinate_get(src, req, key)
            case Store(op, key, versions):
                incoming = self._received(key, versions)
                _, kept = self._merge_in(key, incoming)
                self._record_merge(src, key, "replicate", incoming, kept)
                self.send(src, Stored(op, key))
            case Stored(op, key):
                self._on_stored(src, op, key)
            case Read(op, key):
                self._on_read(src, op, key)
            case ReadReply(op, key, versions):
                self._on_read_reply(src, op, key, self._received(key, versions))
            case Repair(key, versions):
                incoming = self._received(key, versions)
                changed, kept = self._merge_in(key, incoming)
                if changed:
                    self._record_merge(src, key, "repair", incoming, kept)
            case Digest(digests):
                self._on_digest(src, digests)
            case Sync(entries, wanted):
                self._on_sync(src, entries, wanted)

    def _on_read(self, src: str, op: str, key: str) -> None:
        if self.name not in self.replicas_for(key):
            raise Rejected(f"{self.name} is not a replica of key {key!r}")
        held = self.store.get(key, ())
        self.ctx.record({"type": "ReadReplica", "server": self.name, "key": key, "siblings": _recorded(held)}, op=op)
        self.send(src, ReadReply(op, key, _wire(held)))

    def _record_merge(self, src: str, key: str, cause: str, incoming: Versions, kept: Versions) -> None:
        self.ctx.record(
            {
                "type": "Merge",
                "server": self.name,
                "key": key,
                "source": src,
                "cause": cause,
                "received": _recorded(incoming),
                "siblings": _recorded(kept),
            }
        )

    # --------------------------------------------------------------- put

    def _own_counter(self, key: str) -> int:
        """The highest counter of this server's own that ``key``'s versions show.  A
        version leaves the store only when another's context covers its dot, so this
        never goes down, and a new dot above it is one this server never used."""
        top = 0
        for version in self.store.get(key, ()):
            if isinstance(version, Version):
                if version.dot[0] == self.name:
                    top = max(top, version.dot[1])
                top = max(top, version.context.get(self.name))
        return top

    def _timestamp(self) -> tuple[int, str]:
        now = round((self.ctx.now() + self.skew) * 1_000_000)
        self.last_ts = max(now, self.last_ts + 1)
        return (self.last_ts, self.name)

    def _coordinate_put(self, client: str, req: int, key: str, value: Any, context: Vector) -> None:
        replicas = self.replicas_for(key)
        if self.name not in replicas:
            raise Rejected(f"{self.name} is not a replica of key {key!r}; its replicas are {list(replicas)}")
        strangers = sorted(set(context.nodes()) - self.known)
        if strangers:
            raise Rejected(f"the put's context names unknown servers {strangers}")
        version: Version | Stamped
        if self.mode == "vv":
            counter = max(self._own_counter(key), context.get(self.name)) + 1
            version = Version(value, (self.name, counter), context)
            stamp: dict[str, Any] = {"dot": [self.name, counter], "context": context.to_json()}
            stamp["vv"] = version.vector.to_json()
        else:
            version = Stamped(value, self._timestamp())
            stamp = {"ts": list(version.ts)}
        _, kept = self._merge_in(key, (version,))
        op = self._next_op()
        self.ctx.record(
            {"type": "Put", "server": self.name, "key": key, "value": value, **stamp, "siblings": _recorded(kept)},
            client=client,
            op=op,
            req=req,
        )
        pending = _Pending("put", client, req, key, {self.name: ()}, version)
        self.pending[op] = pending
        for peer in replicas:
            if peer != self.name:
                self.send(peer, Store(op, key, (version.to_json(),)))
        if len(pending.answers) >= self.w:
            self._ack_put(op, pending)
        else:
            self.set_timer(RequestTimer(op), self.timing.replica_timeout)

    def _on_stored(self, src: str, op: str, key: str) -> None:
        pending = self.pending.get(op)
        if pending is None or pending.kind != "put" or pending.key != key or src not in self.replicas_for(key):
            return  # late, duplicated or confused: nothing waits for it
        pending.answers[src] = ()
        if not pending.done and len(pending.answers) >= self.w:
            self._ack_put(op, pending)

    def _ack_put(self, op: str, pending: _Pending) -> None:
        pending.done = True
        self.pending.pop(op, None)
        self.cancel_timer(RequestTimer(op))
        version = pending.version
        assert version is not None
        stamp: dict[str, Any]
        if isinstance(version, Version):
            stamp = {"dot": list(version.dot), "vv": version.vector.to_json()}
            context = version.vector.to_json()
        else:
            stamp, context = {"ts": list(version.ts)}, {}
        self.ctx.record(
            {"type": "AckPut", "server": self.name, "key": pending.key, **stamp, "acks": sorted(pending.answers)},
            client=pending.client,
            op=op,
        )
        self.send(pending.client, PutReply(pending.req, context))

    # --------------------------------------------------------------- get

    def _coordinate_get(self, client: str, req: int, key: str) -> None:
        replicas = self.replicas_for(key)
        if self.name not in replicas:
            raise Rejected(f"{self.name} is not a replica of key {key!r}; its replicas are {list(replicas)}")
        op = self._next_op()
        own = self.store.get(key, ())
        self.ctx.record(
            {"type": "StartGet", "server": self.name, "key": key, "siblings": _recorded(own)}, client=client, op=op
        )
        pending = _Pending("get", client, req, key, {self.name: own})
        self.pending[op] = pending
        for peer in replicas:
            if peer != self.name:
                self.send(peer, Read(op, key))
        self.set_timer(RequestTimer(op), self.timing.replica_timeout)
        if len(pending.answers) >= self.r:
            self._return_get(op, pending)

    def _on_read_reply(self, src: str, op: str, key: str, versions: Versions) -> None:
        pending = self.pending.get(op)
        if pending is None or pending.kind != "get" or pending.key != key or src in pending.answers:
            return
        pending.answers[src] = versions
        if not pending.done:
            if len(pending.answers) >= self.r:
                self._return_get(op, pending)
        elif _identity(versions) != _identity(pending.merged):
            # A late answer, older than what the read returned: repair it too.
            self.ctx.record(
                {
                    "type": "ReadRepair",
                    "server": self.name,
                    "key": key,
                    "to": [src],
                    "siblings": _recorded(pending.merged),
                },
                op=op,
            )
            self.send(src, Repair(key, _wire(pending.merged)))
        if len(pending.answers) == len(self.replicas_for(key)):
            self.pending.pop(op, None)
            self.cancel_timer(RequestTimer(op))

    def _return_get(self, op: str, pending: _Pending) -> None:
        """R answers are in: merge them (durably, here too), answer the client, and
        repair every replica that answered with less."""
        pending.done = True
        key = pending.key
        merged = _merge(self.mode, *pending.answers.values())
        _, merged = self._merge_in(key, merged)
        pending.merged = merged
        stale = sorted(s for s, v in pending.answers.items() if s != self.name and _identity(v) != _identity(merged))
        values = sibling_values(merged)
        context = seen_context(merged)
        self.ctx.record(
            {
                "type": "ReturnGet",
                "server": self.name,
                "key": key,
                "siblings": _recorded(merged),
                "values": values,
                "context": context.to_json(),
                "answered": sorted(pending.answers),
                "answers": {s: _identity(v) for s, v in sorted(pending.answers.items())},
                "repair": stale,
            },
            client=pending.client,
            op=op,
        )
        self.send(pending.client, GetReply(pending.req, tuple(values), context.to_json()))
        for peer in stale:
            self.send(peer, Repair(key, _wire(merged)))
        if len(pending.answers) == len(self.replicas_for(key)):
            self.pending.pop(op, None)
            self.cancel_timer(RequestTimer(op))

    # ------------------------------------------------------------ timers

    def on_timer(self, timer: Any) -> None:
        match timer:
            case RequestTimer(op):
                pending = self.pending.pop(op, None)
                if pending is None or pending.done:
                    return
                got = len(pending.answers)
                need = self.w if pending.kind == "put" else self.r
                reason = f"{pending.kind} of {pending.key!r}: {got} of the {need} replicas needed answered"
                self.ctx.record(
                    {"type": "FailRequest", "server": self.name, "key": pending.key, "kind": pending.kind},
                    client=pending.client,
                    op=op,
                    answered=sorted(pending.answers),
                )
                self.send(pending.client, Failed(pending.req, reason))
            case AntiEntropyTimer():
                self._start_anti_entropy()

    # ------------------------------------------------------- anti-entropy

    def _shared_keys(self, peer: str, keys: Iterable[str]) -> list[str]:
        return sorted(k for k in keys if {self.name, peer} <= set(self.replicas_for(k)))

    def _start_anti_entropy(self) -> None:
        self.set_timer(AntiEntropyTimer(), self.timing.anti_entropy)
        others = [s for s in self.servers if s != self.name]
        if not others:
            return
        peer = others[self.rounds % len(others)]
        self.rounds += 1
        digests = {k: _digest(self.store[k]) for k in self._shared_keys(peer, self.store)}
        self.ctx.record({"type": "AntiEntropy", "server": self.name, "peer": peer, "digests": digests})
        self.send(peer, Digest(digests))

    def _on_digest(self, src: str, digests: Mapping[str, str]) -> None:
        keys = self._shared_keys(src, {*digests, *self.store})
        mine = {k: _digest(self.store[k]) for k in keys if k in self.store}
        differing = tuple(k for k in keys if mine.get(k) != digests.get(k))
        if not differing:
            return
        entries = {k: _wire(self.store[k]) for k in differing if k in self.store}
        self.ctx.record(
            {"type": "AntiEntropyReply", "server": self.name, "peer": src, "differing": list(differing)},
        )
        self.send(src, Sync(entries, differing))

    def _on_sync(self, src: str, entries: Mapping[str, Sequence[object]], wanted: Sequence[str]) -> None:
        parsed = {key: self._received(key, versions) for key, versions in entries.items()}
        for key, incoming in sorted(parsed.items()):
            changed, kept = self._merge_in(key, incoming)
            if changed:
                self._record_merge(src, key, "anti_entropy", incoming, kept)
        back = {k: _wire(self.store[k]) for k in self._shared_keys(src, wanted) if k in self.store}
        if back:
            self.send(src, Sync(back, ()))


def check_parameters(servers: int, n_replicas: int | None, r: int, w: int, mode: str) -> None:
    """ValueError (one line) unless the parameters make a store."""
    if isinstance(servers, bool) or not isinstance(servers, int) or servers < 1:
        raise ValueError(f"a Dynamo store needs at least 1 server, got {servers!r}")
    n = servers if n_replicas is None else n_replicas
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= servers:
        raise ValueError(f"n_replicas must be between 1 and the {servers} servers, got {n_replicas!r}")
    for name, value in (("r", r), ("w", w)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n:
            raise ValueError(f"{name} must be between 1 and n_replicas = {n}, got {value!r}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")


# ------------------------------------------------------------------- client


class DynamoClient(KeyValueCalls):
    """The client library: blocking ``get``/``put``.  ``servers`` are the
    coordinators this client may use, in its order of preference (a client on one
    side of a partition names the servers on its side); ``all_servers`` and
    ``n_replicas`` say which servers hold a key, as the servers compute it.

    It keeps, per key, the causal context of what it has read and written: a put
    carries it, so a put after a get supersedes the siblings the get returned
    (and a client's later put supersedes its earlier one), while puts that saw
    nothing of each other become siblings.  ``get`` returns the sorted sibling
    values (``[]`` for an absent key); ``put`` returns ``"ok"``."""

    def __init__(
        self,
        ctx: Context,
        servers: Sequence[str],
        history: History | None = None,
        timing: Timing = Timing(),
        *,
        all_servers: Sequence[str] | None = None,
        n_replicas: int | None = None,
    ) -> None:
        if not servers:
            raise ValueError("a Dynamo client needs at least one server to talk to")
        self.ctx = ctx
        self.name = ctx.name
        self.servers = tuple(servers)
        self.all_servers = tuple(all_servers) if all_servers is not None else self.servers
        unknown = [s for s in self.servers if s not in self.all_servers]
        if unknown:
            raise ValueError(f"servers {unknown} are not among all_servers {list(self.all_servers)}")
        self.n_replicas = len(self.all_servers) if n_replicas is None else n_replicas
        self.history = history
        self.timing = timing
        self.contexts: dict[str, Vector] = {}
        self.req = 0
        #: the name this client's operations have in the history: a new one (``c1/1``)
        #: after each operation it gave up on, since that one may still take effect
        #: (a linearizability check sees a client with one operation in flight at a time)
        self.session = self.name
        self.given_up = 0

    def coordinators(self, key: str) -> list[str]:
        """The servers this client may ask about ``key``, in its order."""
        replicas = preference_list(key, self.all_servers, self.n_replicas)
        return [s for s in self.servers if s in replicas]

    def execute(self, op: Mapping[str, Any]) -> Any:
        kind = op.get("op")
        if kind == "cas":
            raise ValueError("cas is not supported by the Dynamo store: it has no single order of writes to compare in")
        if kind not in ("put", "get") or not isinstance(op.get("key"), str):
            raise ValueError(f"unknown operation {dict(op)!r}; allowed: put(key, value), get(key) with a string key")
        key: str = op["key"]
        self.req += 1
        context = self.contexts.get(key, Vector())
        if kind == "put":
            request: Any = PutRequest(self.req, key, op["value"], context.to_json())
        else:
            request = GetRequest(self.req, key)
        entry = self.history.call(self.session, op) if self.history is not None else None
        self.ctx.record({"type": "Invoke", "client": self.name, "op": dict(op)}, req=self.req)
        coordinators = self.coordinators(key)
        # Each attempt asks the next coordinator in this client's order; a failure
        # moves on at once, an attempt unanswered within ``client_retry`` too.  The
        # request number is the idempotency key (answers are matched by it).
        tries = Retrying(
            backoff=False,
            max_attempts=UNBOUNDED,
            deadline=Deadline.after(self.timing.request_timeout, self.ctx.now),
            retry_on=TimeoutError,
            idempotency_key=f"{self.name}:{self.req}",
            clock=self.ctx.now,
            sleep=self.ctx.sleep,
        )
        try:
            for attempt in tries if coordinators else ():
                with attempt:
                    self.ctx.send(coordinators[(attempt.number - 1) % len(coordinators)], encode(request))
                    answer = self._answer(attempt.bounded(self.timing.client_retry))
                    if answer is None or isinstance(answer, Failed):
                        raise TimeoutError(f"request {self.req} not answered, or failed")
                if attempt.exception is None:
                    assert answer is not None and not isinstance(answer, Failed)
                    self.contexts[key] = context.merge(self._learned(context, answer))
                    result: Any = "ok" if isinstance(answer, PutReply) else list(answer.values)
                    self.ctx.record(
                        {"type": "Return", "client": self.name, "op": dict(op), "result": result}, req=self.req
                    )
                    if entry is not None and self.history is not None:
                        self.history.ret(entry, history_result(op, result))
                    return result
        except RetryError:
            pass
        self.ctx.record({"type": "GiveUp", "client": self.name, "op": dict(op)}, req=self.req)
        self.given_up += 1
        self.session = f"{self.name}/{self.given_up}"
        raise Unavailable(
            f"{self.name}: {kind} of key {key!r} did not complete within {self.timing.request_timeout:g} s: "
            f"no quorum reachable through {coordinators or 'any server this client may use'}"
        )

    @staticmethod
    def _learned(context: Vector, answer: PutReply | GetReply) -> Vector:
        """What an answer adds to this client's context for the key.  A get's context
        is what the client saw (``seen_context``).  A put's is the context it was
        written in plus its dot (s, n); that names s's events 1..n, so it is kept
        only if the client had seen 1..n-1 already — otherwise a later put would
        supersede another client's write at s it never saw, and the client's own
        write stays a sibling of its next one instead."""
        learned = Vector.from_json(answer.context)
        if isinstance(answer, GetReply):
            return learned
        if all(learned.get(node) <= context.get(node) + 1 for node in learned.nodes()):
            return learned
        return Vector()

    def _answer(self, timeout: float) -> PutReply | GetReply | Failed | None:
        """The answer to the current request within ``timeout`` seconds, or None."""
        deadline = self.ctx.now() + timeout
        while (left := deadline - self.ctx.now()) > 0:
            item = self.ctx.receive(timeout=left)
            if not isinstance(item, Envelope):
                continue
            try:
                answer: PutReply | GetReply | Failed = CLIENT_MESSAGES.decode(item.msg)
            except MessageError as exc:
                self.ctx.log(f"ignored a message from {item.src}: {exc}")
                continue
            if answer.req == self.req:
                return answer
        return None


class Workload:
    """A client node that runs ``ops`` one after another.  An operation that raises
    ``Unavailable`` is noted in ``unavailable`` and the next one runs."""

    def __init__(
        self,
        name: str,
        servers: Sequence[str],
        ops: Sequence[Mapping[str, Any]],
        history: History,
        timing: Timing = Timing(),
        *,
        all_servers: Sequence[str] | None = None,
        n_replicas: int | None = None,
    ) -> None:
        self.name = name
        self.servers = tuple(servers)
        self.all_servers = all_servers
        self.n_replicas = n_replicas
        self.ops = [dict(op) for op in ops]
        self.history = history
        self.timing = timing
        self.results: list[Any] = []
        self.unavailable: list[dict[str, Any]] = []

    @property
    def finished(self) -> int:
        """How many of ``ops`` are over, completed or given up on."""
        return len(self.results) + len(self.unavailable)

    def main(self, ctx: Context) -> None:
        client = DynamoClient(
            ctx, self.servers, self.history, self.timing, all_servers=self.all_servers, n_replicas=self.n_replicas
        )
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

    servers: list[DynamoServer]
    clients: list[Workload]
    history: History
    mode: str

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        out: dict[str, Callable[[Context], None]] = {s.name: s.main for s in self.servers}
        out.update({c.name: c.main for c in self.clients})
        return out

    def unavailable(self) -> dict[str, int]:
        """Per client, how many of its operations gave up (``Unavailable``)."""
        return {c.name: len(c.unavailable) for c in self.clients}

    def siblings(self, key: str) -> dict[str, list[Any]]:
        """Per server holding ``key``, the sibling values it holds now."""
        return {s.name: sibling_values(s.store.get(key, ())) for s in self.servers if s.name in s.replicas_for(key)}

    def converged(self) -> bool:
        """Whether every replica of every key holds the same versions of it."""
        keys = {k for s in self.servers for k in s.store}
        for key in keys:
            held = {_canonical(_identity(s.store.get(key, ()))) for s in self.servers if s.name in s.replicas_for(key)}
            if len(held) > 1:
                return False
        return True


def cluster(
    servers: int = 3,
    workloads: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    *,
    timing: Timing = Timing(),
    variant: str | None = None,
    n_replicas: int | None = None,
    r: int = 2,
    w: int = 2,
    mode: str = "vv",
    skew: Mapping[str, float] | None = None,
    coordinators: Mapping[str, Sequence[str]] | None = None,
) -> Cluster:
    """Servers ``s1..sN`` and one client node per workload (name → operations).

    ``skew``: seconds added to a server's clock (lww timestamps).  ``coordinators``:
    per client, the servers it may use, in order (default: every server, starting
    from a different one for each client, so that clients spread their requests)."""
    config.check_variant(variant, VARIANTS)
    check_parameters(servers, n_replicas, r, w, mode)
    names = [f"s{i}" for i in range(1, servers + 1)]
    skew = dict(skew or {})
    coordinators = dict(coordinators or {})
    strangers = sorted(set(skew) - set(names)) + sorted({s for c in coordinators.values() for s in c} - set(names))
    if strangers:
        raise ValueError(f"unknown server(s) {', '.join(strangers)}; the servers are {', '.join(names)}")
    workloads = workloads if workloads is not None else {"c1": [put("x", 1), get("x")]}
    clashing = sorted(set(workloads) & set(names))
    if clashing:
        raise ValueError(f"client name(s) {', '.join(clashing)} clash with server names")
    unknown_clients = sorted(set(coordinators) - set(workloads))
    if unknown_clients:
        raise ValueError(f"coordinators given for unknown client(s) {', '.join(unknown_clients)}")
    history = History()
    clients = []
    for index, (name, ops) in enumerate(workloads.items()):
        order = list(coordinators.get(name) or [*names[index % servers :], *names[: index % servers]])
        clients.append(Workload(name, order, list(ops), history, timing, all_servers=names, n_replicas=n_replicas))
    nodes = [
        DynamoServer(
            n,
            names,
            n_replicas=n_replicas,
            r=r,
            w=w,
            mode=mode,
            timing=timing,
            skew=float(skew.get(n, 0.0)),
            variant=variant,
        )
        for n in names
    ]
    return Cluster(nodes, clients, history, mode)
