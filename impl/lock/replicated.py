"""The replicated lock service: the lease table on a Raft log, so that a 3- or
5-server lock service survives the loss of a minority.

Where it sits: ``LockMachine`` is the lock service's state machine on the seam of
``impl.raft.machine`` (every server applies the committed log to one), ``LockNode``
is a ``RaftNode`` (``impl.raft.node``) that replicates it and whose leader keeps
the lease clock; ``impl.lock.replicated_server`` runs one as a process.  ``VARIANTS``: the
deliberately broken server that ``distcheck simulate lock --service replicated``
catches.  Clients use
``impl.lock.replicated_client.ReplicatedLockClient``.  docs/lock-service.md,
"The replicated service", is the user's account.

What is replicated.  Per lock: the token counter (``issued``), the queue of
waiting requests, each session's open request (its token, request id, ttl and how
often it was renewed) and the holder (at most one lease per lock).  Every change
is a command in the log, applied once it is committed, in log order, on every
server alike:

- ``acquire`` (a client's): queues a request under the next token.  Tokens are
  counted by applying committed entries, so every server hands out the same ones
  and none is ever handed out twice, across any number of leader changes.  If the
  lock has no holder and nobody waits before it, the same entry grants the lease.
- ``renew``, ``release`` (a client's): renew the holder's lease; end a request
  (a holder's lease, or a waiter's place in the queue).
- ``expire`` (the leader's own, ``RaftNode.propose``): end a lease whose time is
  up by the leader's clock.  It names the renewal count it judged, so that a
  renewal applied between the leader's decision and the expiry's commit wins (the
  expiry is then a no-op).

A lease that ends (released or expired) hands the lock to the oldest waiter in the
same entry: a hand-over is one commit.  A waiter hears of it at once: its look at
its request (``wait_key``) is held by the leader until the grant is applied, or
for the few hundred milliseconds the client asked (a long poll), and an answer
that a grant applied while it was held is marked ``fresh`` (the client may time
the lease from when it sent the look, which was before the grant).

Time: how ticks enter the log.  They do not.  The lease clock is the **leader's own
monotonic clock**, and only its decisions are logged: a lease's deadline lives in
the leader's memory (``deadlines``: when the leader applied its grant or last
renewal, plus its ttl), and when the deadline passes the leader proposes
``expire``.  No tick is ever written or replicated, so an idle lease costs no log
traffic at all, and a busy one costs its renewals (which the client sends anyway).

Why that is safe.

1. *A lease outlives what its client trusts.*  A client times a lease from when it
   first sent the command (or the look) that granted or renewed it, and trusts
   ``ttl * (1 - drift_bound)`` of its own clock (``impl.lock.replicated_client``).
   The leader applies the grant or renewal after that and starts the deadline
   then, so while one leader stays, the lease ends by the leader's clock at least
   ``ttl`` after the client started timing it.
2. *Nothing a client heard of is unknown to the next leader.*  A grant, a renewal,
   an expiry or a release is answered only once applied, so only once committed;
   Raft's leader completeness puts every committed entry in every later leader's
   log.  So the lease table a new leader applies holds every lease any client may
   trust, with its ttl, and a lock with no holder in it is truly free: the old
   leader expired its last lease by a committed ``expire``, decided by its clock,
   or its holder released it.  A deposed leader cannot commit anything, so it can
   neither grant nor expire while it has not noticed.
3. *The new leader does not know when the leases it inherits were last renewed*,
   since the old leader's deadlines were in its memory (and its clock is not this
   one).  So it waits each of them out (spec/lock.py's ``LeaderChange`` rule, lease
   by lease): a lease granted or renewed by an entry that was in its log when it
   took over gets ``ttl * (1 + max_drift)`` of its own clock from the takeover (or
   from when it applies the entry, if that is later) before it may expire it.  The
   client sent that entry's command before the entry reached this server, so
   before the takeover, and trusts it at most ``ttl`` of real time from then;
   ``max_drift`` (how much faster this server's clock may run than real time, as
   a fraction, over one lease) keeps ``ttl * (1 + max_drift)`` of this clock at
   least ``ttl`` of real time.  That is the clock assumption.  Locks with no
   holder are granted at once: unlike spec/lock.py's replacement server, which
   lost its lease records and must wait out everything, a new leader has them
   all (point 2), so it waits only for the leases that are still held.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.raft.machine import Session, SessionMachine
from distcheck.impl.raft.messages import Reply
from distcheck.impl.raft.node import LEADER, RaftNode, RaftOptions, Timing
from distcheck.impl.runtime.actor import MessageError

#: the operations clients send, with their fields
CLIENT_OPERATIONS: dict[str, frozenset[str]] = {
    "acquire": frozenset({"op", "lock", "session", "req", "ttl"}),
    "renew": frozenset({"op", "lock", "session", "token"}),
    "release": frozenset({"op", "lock", "session", "token"}),
}
#: seconds: the longest lease a client may ask for (a new leader waits up to this long)
MAX_TTL = 3600.0

#: deliberately broken servers, which ``distcheck simulate lock --service replicated
#: --variant NAME`` must catch
VARIANTS = {
    "no_lease_wait": "a new leader neither waits out the leases the old one may have granted nor times "
    "the ones it inherits: it ends them and grants at once",
}


def read_key(lock: str, session: str) -> str:
    """The key of a ``Query`` for a session's request on a lock (``LockMachine.read``)."""
    return json.dumps([lock, session])


def wait_key(lock: str, session: str, seconds: float) -> str:
    """The key of a ``Query`` that the leader may hold up to ``seconds`` while the
    session's request waits in the queue (a long poll; ``LockNode``)."""
    return json.dumps([lock, session, seconds])


def parse_key(key: str) -> tuple[str, str, float] | None:
    """(lock, session, seconds it may be held) of a query's key; None if malformed."""
    try:
        parts = json.loads(key)
    except ValueError:
        return None
    if not isinstance(parts, list) or len(parts) not in (2, 3):
        return None
    lock, session, *rest = parts
    seconds = rest[0] if rest else 0.0
    if not isinstance(lock, str) or not isinstance(session, str):
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return None
    return lock, session, max(0.0, float(seconds))


@attrs.define
class LockRequest:
    """A session's open request on one lock: queued, then granted, until it is
    released or its lease expires."""

    token: int
    session: str
    req: str
    ttl: float
    granted: bool = False
    renewals: int = 0

    def status(self) -> dict[str, Any]:
        return {"token": self.token, "req": self.req, "granted": self.granted, "ttl": self.ttl}


@attrs.define
class LockTable:
    issued: int = 0
    queue: list[int] = attrs.field(factory=list)  # tokens, oldest request first
    requests: dict[str, LockRequest] = attrs.field(factory=dict)  # session -> its open request
    holder: int | None = None  # the token whose lease is held

    def by_token(self, token: int) -> LockRequest | None:
        return next((r for r in self.requests.values() if r.token == token), None)


@attrs.define
class LockMachine(SessionMachine):
    """The lease table, replicated (module docstring).  Deterministic: no clock."""

    locks: dict[str, LockTable] = attrs.field(factory=dict)
    sessions: dict[str, Session] = attrs.field(factory=dict)
    max_sessions: int = 100_000

    def table(self, name: str) -> LockTable:
        return self.locks.setdefault(name, LockTable())

    def check(self, op: Mapping[str, Any]) -> None:
        kind = op.get("op")
        if not isinstance(kind, str) or kind not in CLIENT_OPERATIONS or set(op) != CLIENT_OPERATIONS[kind]:
            allowed = "; ".join(f"{k}: {', '.join(sorted(f))}" for k, f in CLIENT_OPERATIONS.items())
            raise MessageError(f"a lock command is one of ({allowed}), got {op!r}")
        if not isinstance(op["lock"], str) or not isinstance(op["session"], str):
            raise MessageError("lock and session must be strings")
        if kind == "acquire":
            ttl = op["ttl"]
            if not isinstance(op["req"], str) or isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
                raise MessageError("an acquire's req is a string and its ttl a number")
            if not (math.isfinite(ttl) and 0 < ttl <= MAX_TTL):
                raise MessageError(f"ttl must be in (0, {MAX_TTL:g}] seconds, got {ttl!r}")
        elif isinstance(op["token"], bool) or not isinstance(op["token"], int):
            raise MessageError("token must be an integer")

    def execute(self, op: Mapping[str, Any]) -> Any:
        kind = op["op"]
        table = self.table(str(op["lock"]))
        if kind == "acquire":
            return self._acquire(table, op)
        if kind == "renew":
            request = table.requests.get(str(op["session"]))
            if request is None or request.token != op["token"] or table.holder != request.token:
                return {"renewed": False}
            request.renewals += 1
            return {"renewed": True, "ttl": request.ttl}
        if kind == "release":
            request = table.requests.get(str(op["session"]))
            if request is None or request.token != op["token"]:
                return False
            self._close(table, request)
            return True
        if kind == "expire":
            request = table.by_token(int(op["token"]))
            if request is not None and table.holder == request.token and request.renewals == op["renewals"]:
                self._close(table, request)
            return None
        raise ValueError(f"unknown lock command {op!r}")  # pragma: no cover - checked before the log

    def _acquire(self, table: LockTable, op: Mapping[str, Any]) -> dict[str, Any]:
        session = str(op["session"])
        open_request = table.requests.get(session)
        if open_request is not None:
            if open_request.req != op["req"]:
                return {"busy": open_request.token}  # held or awaited under another request
            return open_request.status()
        table.issued += 1
        request = LockRequest(table.issued, session, str(op["req"]), float(op["ttl"]))
        table.requests[session] = request
        table.queue.append(request.token)
        self._grant_next(table)
        # ``new``: this very command made the request (and, if granted, the lease: the
        # client may time it from this command; impl.lock.replicated_client)
        return {**request.status(), "new": True}

    @staticmethod
    def _grant_next(table: LockTable) -> None:
        """A free lock goes to the oldest waiter."""
        if table.holder is not None or not table.queue:
            return
        token = table.queue.pop(0)
        request = table.by_token(token)
        assert request is not None
        request.granted = True
        table.holder = token

    def _close(self, table: LockTable, request: LockRequest) -> None:
        del table.requests[request.session]
        if table.holder == request.token:
            table.holder = None
            self._grant_next(table)
        elif request.token in table.queue:
            table.queue.remove(request.token)

    def read(self, key: str) -> Any:
        parsed = parse_key(key)
        if parsed is None:
            return None
        lock, session, _ = parsed
        table = self.locks.get(str(lock))
        request = None if table is None else table.requests.get(str(session))
        return None if request is None else request.status()

    def state_json(self) -> dict[str, Any]:
        return {
            "locks": {
                name: {
                    "issued": t.issued,
                    "queue": list(t.queue),
                    "holder": t.holder,
                    "requests": [attrs.asdict(r) for r in t.requests.values()],
                }
                for name, t in self.locks.items()
            }
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.locks = {}
        for name, t in dict(state["locks"]).items():
            requests = [LockRequest(**r) for r in t["requests"]]
            self.locks[str(name)] = LockTable(
                int(t["issued"]), [int(x) for x in t["queue"]], {r.session: r for r in requests}, t["holder"]
            )


@attrs.frozen
class LeaseClock:
    """The leader's timer: expire leases whose time is up, answer held looks."""


#: the longest a leader holds a look at a waiting request, whatever the client asks
MAX_HOLD = 5.0


@attrs.frozen
class HeldRead:
    """A look at a waiting request, held by the leader until its grant (or ``until``)."""

    until: float
    src: str
    route: str
    client: str
    seq: int
    key: str
    lock: str
    session: str


class LockNode(RaftNode):
    """A server of the replicated lock service: a Raft server of ``LockMachine``
    whose leader keeps the lease clock (module docstring).  ``max_drift``: how much
    faster, as a fraction, this server's clock may run than real time over one
    lease; ``lease_tick``: seconds between two looks at the deadlines."""

    def __init__(
        self,
        name: str,
        peers: Sequence[str],
        timing: Timing = Timing(),
        options: RaftOptions = RaftOptions(),
        *,
        max_drift: float = 0.1,
        lease_tick: float = 0.05,
        lease_variant: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not (0 <= max_drift < 1) or not lease_tick > 0:
            raise ValueError(f"max_drift must be in [0, 1) and lease_tick positive, got {max_drift}, {lease_tick}")
        if lease_variant is not None and lease_variant not in VARIANTS:
            raise ValueError(f"unknown lock service variant {lease_variant!r}; allowed: {', '.join(VARIANTS)}")
        super().__init__(name, peers, timing, options, machine=LockMachine, **kwargs)
        self.lease_variant = lease_variant
        self.max_drift = max_drift
        self.lease_tick = lease_tick
        self._forget_leadership()

    @property
    def lock_machine(self) -> LockMachine:
        assert isinstance(self.machine, LockMachine)
        return self.machine

    def _forget_leadership(self) -> None:
        #: when this server last became leader, on its clock
        self.took_over = 0.0
        #: the entries up to this index were in the log when it took over (earlier leaders')
        self.inherited_up_to = 0
        #: (lock, token) -> when the lease is over, by this leader's clock
        self.deadlines: dict[tuple[str, int], float] = {}
        #: (lock, token) of this leader's expiries not applied yet
        self.expiring: set[tuple[str, int]] = set()
        #: looks at waiting requests, held until granted (dropped with the leadership:
        #: their clients ask again)
        self.held: list[HeldRead] = []

    def on_start(self) -> None:
        self._forget_leadership()
        super().on_start()
        self.set_timer(LeaseClock(), self.lease_tick)

    # ------------------------------------------------------------ the leader's clock

    def on_leadership(self, leading: bool) -> None:
        self._forget_leadership()
        if not leading:
            return
        self.took_over = self.ctx.now()
        self.inherited_up_to = self.log.last_index
        for name, table in self.lock_machine.locks.items():
            holder = table.by_token(table.holder) if table.holder is not None else None
            if holder is not None:
                self.deadlines[(name, holder.token)] = self._deadline(holder.ttl, inherited=True)

    def _deadline(self, ttl: float, inherited: bool) -> float:
        """When a lease granted or renewed now ends, by this clock; an inherited one
        (granted or renewed by an entry from before the takeover) is waited out."""
        now = self.ctx.now()
        if not inherited:
            return now + ttl
        if self.lease_variant == "no_lease_wait":
            return now  # the mistake: a lease the old leader granted or renewed is taken as over
        return max(now + ttl, self.took_over + ttl * (1 + self.max_drift))

    def on_applied(self, index: int, cmd: dict[str, Any], result: Any) -> None:
        if self.role != LEADER or "op" not in cmd:
            return
        op = cmd["op"]
        kind, name = op["op"], op.get("lock")
        if not isinstance(name, str):
            return  # a membership change
        table = self.lock_machine.table(name)
        if kind == "expire":
            self.expiring.discard((name, int(op["token"])))
        for key in [k for k in self.deadlines if k[0] == name and k[1] != table.holder]:
            del self.deadlines[key]  # released or expired
        holder = table.by_token(table.holder) if table.holder is not None else None
        renewed = kind == "renew" and isinstance(result, dict) and result.get("renewed") is True
        if holder is not None and ((name, holder.token) not in self.deadlines or renewed):
            self.deadlines[(name, holder.token)] = self._deadline(holder.ttl, inherited=index <= self.inherited_up_to)
        self._answer_held(lambda h: h.lock == name, fresh=True)

    def on_other_timer(self, timer: Any) -> None:
        if not isinstance(timer, LeaseClock):
            return
        self.set_timer(LeaseClock(), self.lease_tick)
        if self.role != LEADER:
            return
        now = self.ctx.now()
        for (name, token), deadline in sorted(self.deadlines.items()):
            request = self.lock_machine.table(name).by_token(token)
            if now >= deadline and request is not None and (name, token) not in self.expiring:
                self.expiring.add((name, token))
                self.propose({"op": "expire", "lock": name, "token": token, "renewals": request.renewals})
        self._answer_held(lambda h: now >= h.until, fresh=False)

    # ------------------------------------------------------------ long polls

    def serve_read(self, src: str, route: str, client: str, seq: int, key: str) -> None:
        """A look at a request that is waiting in the queue, with time to wait, is
        held until the request is granted or ends (``fresh``), or its time is up."""
        parsed = parse_key(key)
        status = self.machine.read(key)
        if parsed is not None and parsed[2] > 0 and status is not None and not status["granted"]:
            lock, session, seconds = parsed
            until = self.ctx.now() + min(seconds, MAX_HOLD)
            self.held.append(HeldRead(until, src, route, client, seq, key, lock, session))
            return
        super().serve_read(src, route, client, seq, key)

    def _answer_held(self, due: Callable[[HeldRead], bool], fresh: bool) -> None:
        """Answer the held looks that ``due`` picks: with ``fresh``, those whose
        request an entry just applied granted or ended (the answer says so); else
        with their request as it stands."""
        waiting = []
        for h in self.held:
            status = self.machine.read(h.key) if due(h) else None
            if not due(h) or (fresh and status is not None and not status["granted"]):
                waiting.append(h)
                continue
            answer = {**status, "fresh": True} if fresh and status is not None else status
            self._reply(h.src, Reply(h.route, h.client, h.seq, True, answer, self.name))
        self.held = waiting
