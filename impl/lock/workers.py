"""Ready-made nodes that use the lock service, and a whole service wired together:
what ``distcheck simulate lock``, the tests and the free-mode example run.

Where it sits: on top of ``impl.lock.client`` (the library a user would call from
their own node).  A ``Worker`` takes the lock, writes to the fencing storage twice
with a pause in between, and releases; what happened is kept in ``outcomes``.  It
is a plain ``main(ctx)`` node, not an actor (``impl.runtime.actor``): its work is a
sequence of blocking library calls (``with client.lock(...)``), which handlers
that must return cannot express.  The server and storage it talks to are actors.

Sessions.  A crashed client is a new client (spec/lock.py), so each incarnation of
a worker node opens a new session: the names it may use are given up front, and
the one it takes is logged (synced) before use, so a restart never reuses a
session.  A worker out of names does nothing.

``ReplicatedWorker`` and ``replicated_service`` are the same for the replicated
service (``impl.lock.replicated``): Raft servers ``n1..nN`` instead of one server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import attrs

from distcheck.impl.lock.client import ClientTiming, FencedStorage, LockClient, LockLost, LockTimeout, StaleToken
from distcheck.impl.lock.messages import CLIENT_MESSAGES, Write, WriteResult
from distcheck.impl.lock.replicated import VARIANTS as REPLICATED_VARIANTS
from distcheck.impl.lock.replicated import LockNode
from distcheck.impl.lock.replicated_client import ReplicatedLease, ReplicatedLockClient, ReplicatedTiming
from distcheck.impl.lock.server import LockServer
from distcheck.impl.lock.storage import FencedStore
from distcheck.impl.raft.client import NodeClient
from distcheck.impl.raft.node import RaftOptions, Timing
from distcheck.impl.resilience import UNBOUNDED, Retrying
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import MessageError, encode
from distcheck.impl.runtime.api import Context, Envelope

VARIANTS = {
    "unfenced_storage": "storage applies every write, whatever its fencing token",
    "no_drift_margin": "the client trusts its lease for the full ttl by its own clock",
    "volatile_leases": "a restarted server forgets its lease table and grants again at once",
}


def claim_session(ctx: Context, log_name: str, sessions: Sequence[str]) -> str | None:
    """The next of ``sessions`` this node has not used, logged (synced) before it is
    used, so that a restart never reuses one; None once they are all used."""
    log = ctx.storage(log_name)
    used = len(log.records())
    if used >= len(sessions):
        return None
    log.append({"session": sessions[used]})
    log.sync()
    return sessions[used]


class Worker:
    """A node that holds lock ``lock`` once per session and writes under it."""

    LOG = "sessions"

    def __init__(
        self,
        name: str,
        sessions: Sequence[str],
        *,
        lock: str = "L",
        ttl: float = 3.0,
        hold: float = 1.0,
        timeout: float = 8.0,
        timing: ClientTiming = ClientTiming(),
        variant: str | None = None,
        wrap: Callable[[Context], Context] | None = None,
    ) -> None:
        self.name = name
        self.sessions = tuple(sessions)
        self.lock_name = lock
        self.ttl = ttl
        self.hold = hold
        self.timeout = timeout
        self.timing = timing
        self.variant = variant
        self.wrap = wrap
        #: session -> what its attempt came to: "done", "timeout", "lost", "stale"
        self.outcomes: dict[str, str] = {}
        #: session -> the client it used (the wiring reads what each one holds)
        self.clients: dict[str, LockClient] = {}
        #: the session of the node's current incarnation (None: out of names)
        self.current: str | None = None

    def main(self, ctx: Context) -> None:
        if self.wrap is not None:
            ctx = self.wrap(ctx)
        self.current = session = claim_session(ctx, self.LOG, self.sessions)
        if session is None:
            return
        client = LockClient(ctx, session, timing=self.timing, variant=self.variant)
        self.clients[session] = client
        storage = FencedStorage(client)
        try:
            with client.lock(self.lock_name, ttl=self.ttl, timeout=self.timeout) as lease:
                storage.write("k", f"{session} first", lease)
                ctx.sleep(self.hold)
                storage.write("k", f"{session} second", lease)
            self.outcomes[session] = "done"
        except LockTimeout:
            self.outcomes[session] = "timeout"
        except LockLost:
            self.outcomes[session] = "lost"
        except StaleToken:
            self.outcomes[session] = "stale"


@attrs.define
class Service:
    """A lock server ``server``, a storage service ``storage`` and workers."""

    server: LockServer
    store: FencedStore
    workers: list[Worker]

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        out: dict[str, Callable[[Context], None]] = {"server": self.server.main, "storage": self.store.main}
        for w in self.workers:
            out[w.name] = w.main
        return out

    def sessions(self) -> list[str]:
        return [s for w in self.workers for s in w.sessions]


def service(
    workers: int = 2,
    sessions_per_worker: int = 2,
    *,
    tick: float = 1.0,
    ttl: float = 3.0,
    hold: float = 1.0,
    variant: str | None = None,
    horizon: int | None = None,
    max_requests: int | None = None,
    timing: ClientTiming = ClientTiming(),
    wraps: Sequence[Callable[[Context], Context] | None] = (),
) -> Service:
    """Workers ``w1..wN`` whose sessions are named ``c1, c2, ...`` (worker 1 gets the
    first ``sessions_per_worker`` names), as spec/lock.py names its clients."""
    config.check_variant(variant, VARIANTS)
    server = LockServer(
        "server",
        tick,
        horizon=horizon,
        max_requests=max_requests,
        variant=variant if variant == "volatile_leases" else None,
    )
    store = FencedStore("storage", variant=variant if variant == "unfenced_storage" else None)
    team = []
    for i in range(workers):
        names = [f"c{i * sessions_per_worker + j + 1}" for j in range(sessions_per_worker)]
        team.append(
            Worker(
                f"w{i + 1}",
                names,
                ttl=ttl,
                hold=hold,
                timing=timing,
                variant=variant if variant == "no_drift_margin" else None,
                wrap=wraps[i] if i < len(wraps) else None,
            )
        )
    return Service(server, store, team)


# ----------------------------------------------------------- the replicated service


class ReplicatedWorker:
    """A ``Worker`` for the replicated service (``impl.lock.replicated``): the same
    two writes under one lease per session, with ``ReplicatedLockClient`` over a
    ``NodeClient``, so that it runs under the controlled scheduler.  As one thread
    of control it renews by itself while it holds the lock, instead of in the background."""

    LOG = "sessions"

    def __init__(
        self,
        name: str,
        sessions: Sequence[str],
        servers: Sequence[str],
        *,
        lock: str = "L",
        ttl: float = 30.0,
        hold: float = 30.0,
        timeout: float = 300.0,
        timing: ReplicatedTiming = ReplicatedTiming(),
        storage: str = "storage",
    ) -> None:
        self.name = name
        self.sessions = tuple(sessions)
        self.servers = tuple(servers)
        self.lock_name = lock
        self.ttl = ttl
        self.hold = hold
        self.timeout = timeout
        self.timing = timing
        self.storage = storage
        #: session -> what its attempt came to: "done", "timeout", "lost", "stale"
        self.outcomes: dict[str, str] = {}
        #: session -> the lease it was granted (the wiring asks whether it is trusted)
        self.leases: dict[str, ReplicatedLease] = {}
        #: (lock, token, write id) of every write sent
        self.sent_writes: list[tuple[str, int, str]] = []
        self.current: str | None = None
        #: this node's context as its code sees it (its clock may run slow)
        self.ctx: Context | None = None

    def main(self, ctx: Context) -> None:
        self.ctx = ctx
        self.current = session = claim_session(ctx, self.LOG, self.sessions)
        if session is None:
            return
        raft = NodeClient(ctx, self.servers, self.timing.raft, client_id=session)
        client = ReplicatedLockClient(
            {}, session, self.timing, raft=raft, clock=ctx.now, sleep=ctx.sleep, renew_in_background=False
        )
        try:
            lease = client.acquire(self.lock_name, ttl=self.ttl, timeout=self.timeout)
            self.leases[session] = lease
            # (what a reader of a run's schedule wants to see beside the servers' steps)
            ctx.record({"type": "Hold", "client": session, "token": lease.token}, lock=lease.name)
            try:
                self._write(ctx, session, lease, f"{session} first", 1)
                # the work between the writes, renewing as the background thread would
                every = lease.trusted_for * self.timing.renew_every
                end = ctx.now() + self.hold
                while (left := end - ctx.now()) > 0:
                    ctx.sleep(min(every, left))
                    client.renew(lease)
                self._write(ctx, session, lease, f"{session} second", 2)
            finally:
                ctx.record({"type": "Release", "client": session, "token": lease.token}, lock=lease.name)
                client.release(lease)
            self.outcomes[session] = "done"
        except LockTimeout:
            self.outcomes[session] = "timeout"
        except LockLost:
            self.outcomes[session] = "lost"
        except StaleToken:
            self.outcomes[session] = "stale"

    def _write(self, ctx: Context, session: str, lease: ReplicatedLease, value: str, number: int) -> None:
        """One write to the fencing storage under the lease, re-sent until answered
        (storage decides a write id once): ``LockLost`` if the lease cannot be trusted
        now (nothing sent), ``StaleToken`` if storage has seen a newer token."""
        lease.check()
        wid = f"{session}:{number}"
        ctx.record({"type": "Write", "client": session}, lock=lease.name)
        self.sent_writes.append((lease.name, lease.token, wid))
        msg = encode(Write(wid, lease.name, lease.token, session, "k", value))
        # Storage decides a write id once, whatever the copies: the id is the key.
        resends = Retrying(
            backoff=False,
            max_attempts=UNBOUNDED,
            retry_on=TimeoutError,
            idempotent=True,
            idempotency_key=wid,
            clock=ctx.now,
            sleep=ctx.sleep,
        )
        for attempt in resends:
            with attempt:
                ctx.send(self.storage, msg)
                reply = self._await_write(ctx, wid)
            if attempt.exception is None:
                break
        if not reply.accepted:
            raise StaleToken(f"storage rejected {wid} (fencing token {lease.token}): a newer lease wrote")

    def _await_write(self, ctx: Context, wid: str) -> WriteResult:
        """Storage's answer to write ``wid``; ``TimeoutError`` if none comes in one attempt's time."""
        until = ctx.now() + self.timing.raft.attempt
        while (left := until - ctx.now()) > 1e-6:
            item = ctx.receive(timeout=left)
            if not isinstance(item, Envelope) or item.src != self.storage:
                continue  # a late answer of a server: the Raft client has moved on
            try:
                reply = CLIENT_MESSAGES.decode(item.msg)
            except MessageError:
                continue
            if isinstance(reply, WriteResult) and reply.wid == wid:
                return reply
        raise TimeoutError(f"write {wid} not answered yet")


@attrs.define
class ReplicatedService:
    """Lock servers ``n1..nN`` (``LockNode``), a storage service and workers."""

    servers: list[LockNode]
    store: FencedStore
    workers: list[ReplicatedWorker]
    #: node name -> a wrapper of its context (a slow clock)
    wraps: Mapping[str, Callable[[Context], Context]] = attrs.field(factory=dict)

    def nodes(self) -> dict[str, Callable[[Context], None]]:
        mains: dict[str, Callable[[Context], None]] = {s.name: s.main for s in self.servers}
        mains["storage"] = self.store.main
        mains.update({w.name: w.main for w in self.workers})
        return {name: self._wrapped(name, main) for name, main in mains.items()}

    def _wrapped(self, name: str, main: Callable[[Context], None]) -> Callable[[Context], None]:
        wrap = self.wraps.get(name)
        return main if wrap is None else lambda ctx: main(wrap(ctx))


def replicated_service(
    servers: int = 3,
    workers: int = 2,
    sessions_per_worker: int = 2,
    *,
    ttl: float = 30.0,
    hold: float = 30.0,
    max_drift: float = 0.1,
    timing: Timing = Timing(heartbeat=1.0, election_timeout=5.0),
    options: RaftOptions = RaftOptions(),
    client_timing: ReplicatedTiming = ReplicatedTiming(),
    variant: str | None = None,
    wraps: Mapping[str, Callable[[Context], Context]] | None = None,
    prefix: str = "n",
) -> ReplicatedService:
    """Servers ``n1..nN`` (``prefix``: ``s`` for spec/raft's names), workers
    ``w1..wM`` with sessions ``c1, c2, ...``, and a fencing storage node ``storage``;
    ``variant``: one of ``replicated.VARIANTS``; ``wraps``: node name -> a wrapper of
    its context (a slow clock)."""
    config.check_variant(variant, REPLICATED_VARIANTS)
    wraps = wraps or {}
    names = [f"{prefix}{i}" for i in range(1, servers + 1)]
    nodes = [
        LockNode(
            n,
            names,
            timing,
            options,
            max_drift=max_drift,
            lease_tick=timing.heartbeat,
            lease_variant=variant,
        )
        for n in names
    ]
    team = [
        ReplicatedWorker(
            f"w{i + 1}",
            [f"c{i * sessions_per_worker + j + 1}" for j in range(sessions_per_worker)],
            names,
            ttl=ttl,
            hold=hold,
            timing=client_timing,
        )
        for i in range(workers)
    ]
    return ReplicatedService(nodes, FencedStore("storage"), team, dict(wraps))
