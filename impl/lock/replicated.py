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
  and none is ever handed out twice, across any number of leader changes.
  The leader stamps the command with ``grant``, whether it may grant at once
  (its waiting rule, below, is over); then, if the lock has no holder and nobody
  waits before it, the same entry grants the lease.
- ``renew``, ``release`` (a client's): renew the holder's lease; end a request
  (a holder's lease, or a waiter's place in the queue).
- ``grant``, ``expire`` (the leader's own, ``RaftNode.propose``): hand the lock to
  the oldest waiter once it is free; end a lease whose time is up by the leader's
  clock.  ``expire`` names the renewal count it judged, so that a renewal applied
  between the leader's decision and the expiry's commit wins (the expiry is then a
  no-op).

Time: how ticks enter the log.  They do not.  The lease clock is the **leader's own
monotonic clock**, and only its decisions are logged: a lease's deadline lives in
the leader's memory (``deadlines``: when the leader applied its grant or last
renewal, plus its ttl), and when the deadline passes the leader proposes
``expire``.  No tick is ever written or replicated, so an idle lease costs no log
traffic at all, and a busy one costs its renewals (which the client sends anyway).

Why that is safe.

1. *A lease outlives what its client trusts.*  A client times a lease from when it
   first sent the command that granted or renewed it, and trusts ``ttl * (1 -
   drift_bound)`` of its own clock (``impl.lock.replicated_client``).  The leader
   applies that command after it was sent and starts the deadline then, so while
   one leader stays, the lease ends by the leader's clock at least ``ttl`` after
   the client started timing it.
2. *Nothing a client heard of is unknown to the next leader.*  A grant, a renewal,
   an expiry or a release is answered only once applied, so only once committed;
   Raft's leader completeness puts every committed entry in every later leader's
   log.  So the lease table a new leader applies holds every lease any client may
   trust, with its ttl, and a lock with no holder in it is truly free: the old
   leader expired its last lease by a committed ``expire``, decided by its clock.
3. *The new leader does not know when those leases were last renewed*, since the
   old leader's deadlines were in its memory (and its clock is not this one).
   That is spec/lock.py's ``LeaderChange``, and its waiting rule: a new leader
   gives every lease it inherits ``ttl * (1 + max_drift)`` of its own clock from
   when it took over (from when it applies it, if it applies it later), and grants
   nothing at all until ``max ttl * (1 + max_drift)`` has passed since it took
   over, where max ttl is the longest ttl of any request in its table or in the
   part of its log it has not applied yet: every lease the old leader may have
   granted is among those.  Every inherited lease was granted or renewed by the
   old leader before this one took over, so by then the old leader's deadline was
   at most ``ttl`` away on its clock; ``max_drift`` (a fraction: how much faster
   this server's clock may run than the old leader's over one lease) covers the
   difference between the two clocks.  The clock assumption is exactly that
   bound: two servers' monotonic clocks do not drift apart by more than
   ``max_drift`` of a lease's length over one lease.  A deposed leader cannot
   commit anything, so it can neither grant nor expire while it has not noticed.
4. *Grants stamped by the old leader.*  An ``acquire`` whose ``grant`` stamp the
   old leader wrote may be committed and applied under the new leader, during its
   wait.  It grants only if the replicated table says the lock is free (point 2),
   which the old leader's clock decided; the new leader's wait is about the
   leases it inherited, and a free lock has none.  The lease then gets its
   deadline by rule 3, like any other inherited one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.raft.machine import Session, SessionMachine
from distcheck.impl.raft.node import LEADER, RaftNode, RaftOptions, Timing
from distcheck.impl.runtime.actor import MessageError

#: the operations clients send, with their fields (``grant`` is the leader's stamp on an acquire)
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
        if kind == "grant":
            if table.holder is None and table.queue and table.queue[0] == op["token"]:
                self._grant(table)
            return None
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
        if op.get("grant") is True and table.holder is None and table.queue[0] == request.token:
            self._grant(table)
        # ``new``: this very command made the request (and, if granted, the lease: the
        # client may time it from this command; impl.lock.replicated_client)
        return {**request.status(), "new": True}

    @staticmethod
    def _grant(table: LockTable) -> None:
        token = table.queue.pop(0)
        request = table.by_token(token)
        assert request is not None
        request.granted = True
        table.holder = token

    @staticmethod
    def _close(table: LockTable, request: LockRequest) -> None:
        del table.requests[request.session]
        if table.holder == request.token:
            table.holder = None
        elif request.token in table.queue:
            table.queue.remove(request.token)

    def read(self, key: str) -> Any:
        try:
            lock, session = json.loads(key)
        except (ValueError, TypeError):
            return None
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
    """The leader's timer: expire leases whose time is up, grant free locks."""


class LockNode(RaftNode):
    """A server of the replicated lock service: a Raft server of ``LockMachine``
    whose leader keeps the lease clock (module docstring).  ``max_drift``: how much
    faster, as a fraction, this server's clock may run than another's over one
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
        #: this leader grants nothing before this time (its waiting rule)
        self.grants_after = math.inf
        #: (lock, token) -> when the lease is over, by this leader's clock
        self.deadlines: dict[tuple[str, int], float] = {}
        #: (kind, lock, token) of this leader's proposals not applied yet
        self.pending: set[tuple[str, str, int]] = set()
        #: the entries up to this index were proposed by earlier leaders
        self.inherited_up_to = 0

    def on_start(self) -> None:
        self._forget_leadership()
        super().on_start()
        self.set_timer(LeaseClock(), self.lease_tick)

    # ------------------------------------------------------------ the leader's clock

    def on_leadership(self, leading: bool) -> None:
        self._forget_leadership()
        if not leading:
            return
        now = self.ctx.now()
        self.took_over = now
        ttls = [r.ttl for t in self.lock_machine.locks.values() for r in t.requests.values()]
        for index in range(self.last_applied + 1, self.log.last_index + 1):
            op = self.log.entry(index)[1].get("op")
            if op is not None and op.get("op") == "acquire":
                ttls.append(float(op["ttl"]))
        self.grants_after = now + max(ttls, default=0.0) * (1 + self.max_drift)
        for name, table in self.lock_machine.locks.items():
            holder = table.by_token(table.holder) if table.holder is not None else None
            if holder is not None:
                self.deadlines[(name, holder.token)] = self._deadline(holder.ttl, inherited=True)
        self.inherited_up_to = self.log.last_index
        if self.lease_variant == "no_lease_wait":
            self.grants_after = now  # the mistake (with _deadline's)

    def _deadline(self, ttl: float, inherited: bool) -> float:
        """A lease granted or renewed now (or inherited) ends then, by this clock."""
        now = self.ctx.now()
        if inherited and self.lease_variant == "no_lease_wait":
            return now  # the mistake: a lease the old leader granted or renewed is taken as over
        return max(now + ttl, self.took_over + ttl * (1 + self.max_drift))

    def prepare(self, op: dict[str, Any]) -> dict[str, Any]:
        if op["op"] == "acquire":
            return {**op, "grant": self.ctx.now() >= self.grants_after}
        return op

    def on_applied(self, index: int, cmd: dict[str, Any], result: Any) -> None:
        if self.role != LEADER or "op" not in cmd:
            return
        op = cmd["op"]
        kind, name = op["op"], op.get("lock")
        if not isinstance(name, str):
            return  # a membership change
        table = self.lock_machine.table(name)
        if kind in ("grant", "expire"):
            self.pending.discard((kind, name, int(op["token"])))
        for key in [k for k in self.deadlines if k[0] == name and k[1] != table.holder]:
            del self.deadlines[key]  # released or expired
        holder = table.by_token(table.holder) if table.holder is not None else None
        granted_now = kind in ("acquire", "grant") and holder is not None and (name, holder.token) not in self.deadlines
        renewed = kind == "renew" and isinstance(result, dict) and result.get("renewed") is True
        if holder is not None and (granted_now or renewed):
            self.deadlines[(name, holder.token)] = self._deadline(holder.ttl, inherited=index <= self.inherited_up_to)
        self._grant_if_free(name)

    def _grant_if_free(self, name: str) -> None:
        table = self.lock_machine.table(name)
        if table.holder is not None or not table.queue or self.ctx.now() < self.grants_after:
            return
        key = ("grant", name, table.queue[0])
        if key not in self.pending:
            self.pending.add(key)
            self.propose({"op": "grant", "lock": name, "token": table.queue[0]})

    def on_other_timer(self, timer: Any) -> None:
        if not isinstance(timer, LeaseClock):
            return
        self.set_timer(LeaseClock(), self.lease_tick)
        if self.role != LEADER:
            return
        now = self.ctx.now()
        for (name, token), deadline in sorted(self.deadlines.items()):
            request = self.lock_machine.table(name).by_token(token)
            if now >= deadline and request is not None and ("expire", name, token) not in self.pending:
                self.pending.add(("expire", name, token))
                self.propose({"op": "expire", "lock": name, "token": token, "renewals": request.renewals})
        for name in sorted(self.lock_machine.locks):
            self._grant_if_free(name)
