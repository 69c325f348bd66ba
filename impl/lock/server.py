"""The lock server: named locks granted as leases with fencing tokens, first come,
first served, with the whole lease table on durable storage.

Where it sits: a runtime node (``LockServer(...).main``), written on
``impl.runtime.api`` only; ``impl.lock.client`` talks to it, ``impl.lock.storage``
checks the tokens it hands out.  It mirrors ``spec/lock.py`` without importing it:
each step the spec names is recorded with ``ctx.record`` (``Acquire``, ``Grant``,
``Renew``, ``Release``, ``Expire``, ``Tick``), tagged with ``lock`` (the lock's
name), so ``distcheck validate lock --split lock`` checks the log.

Time.  The server's clock is a tick counter, advanced by a timer every ``tick``
seconds while it has leases, and a lease lasts ``ttl`` ticks of it: tick *n* of
the counter is the spec's ``now == n``.  A lease granted at tick *g* expires when
the counter reaches *g + ttl*; the first tick may come at once, so a lease is
sure to last ``(ttl - 1) * tick`` seconds after the grant, which is what clients
budget for (``impl.lock.client``).

Durability.  Every change (a queued request, a grant, a renewal, a release, an
expiry) is appended to the log and synced *before* it is recorded and before
anyone hears of it, and recovery replays the log through the same
``LockState.apply`` the live server uses, so a restarted server holds at least the
state it had acknowledged.  The sync is shared (group commit): the server is a
batched actor, so the changes made for every message waiting in one turn of its
loop are appended, synced once in ``on_batch_end``, recorded, and only then does
the actor let the turn's replies out: one sync per turn, however many clients it
served, and at most one per acquire or release.  Ticks are not synced on their
own: one is written just before the next change and made durable by its sync
(``_on_tick`` says why losing one in a crash is safe).  The tick counter is
durable too and does not move while the server is down: every lease in the table
runs out the rest of its time after the restart.  That is how a restarted server
waits out the longest possible lease before granting again, without needing to
know how long it was down (its monotonic clock, in free mode, started again from
nothing).

Model bounds.  ``horizon`` (the last tick) and ``max_requests`` (requests per lock)
exist only so that a simulated run stays inside the finite model it is validated
against (the spec's ``max_time`` and ``max_requests``); a real server leaves them
None.  At the horizon the clock stops: nothing expires any more, which is safe.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

from distcheck.impl.lock.messages import (
    SERVER_MESSAGES,
    Acquire,
    Busy,
    Granted,
    Refused,
    Release,
    Released,
    Renew,
    Renewed,
)
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor
from distcheck.impl.runtime.api import Storage

#: Broken server variants (the implementation tests must catch them).
SERVER_VARIANTS = {
    "volatile_leases": "a restarted server forgets its lease table and grants again at once",
}


@attrs.define
class LeaseRecord:
    holder: str
    granted_at: int
    expires: int


@attrs.define
class Request:
    """A session's open request on one lock: queued, then granted, until it is
    released, refused a renewal, or (never) forgotten."""

    token: int
    req: str
    ttl: int
    granted: bool = False


@attrs.define
class LockTable:
    """One named lock, as the spec's server sees it."""

    issued: int = 0
    last_granted: int = 0
    queue: list[int] = attrs.field(factory=list)  # tokens, oldest request first
    leases: dict[int, LeaseRecord] = attrs.field(factory=dict)
    requests: dict[str, Request] = attrs.field(factory=dict)  # session -> its open request

    def session_of(self, token: int) -> str | None:
        return next((s for s, r in self.requests.items() if r.token == token), None)


@attrs.define
class LockState:
    """Everything the server knows; ``apply`` is the only way it changes, both live
    and when the log is replayed after a restart."""

    now: int = 0
    locks: dict[str, LockTable] = attrs.field(factory=dict)

    def table(self, name: str) -> LockTable:
        return self.locks.setdefault(name, LockTable())

    def apply(self, record: dict[str, Any]) -> None:
        op = record["op"]
        if op == "tick":
            self.now = int(record["now"])
            return
        table = self.table(str(record["lock"]))
        token = int(record["token"])
        if op == "acquire":
            table.issued = token
            table.queue.append(token)
            table.requests[str(record["session"])] = Request(token, str(record["req"]), int(record["ttl"]))
        elif op == "grant":
            session = table.session_of(token)
            assert session is not None
            request = table.requests[session]
            request.granted = True
            table.queue.remove(token)
            table.leases[token] = LeaseRecord(session, self.now, self.now + request.ttl)
            table.last_granted = token
        elif op == "renew":
            session = table.session_of(token)
            assert session is not None
            table.leases[token].expires = self.now + table.requests[session].ttl
        elif op == "close":  # a release, or a renewal refused: the session is done with it
            table.leases.pop(token, None)
            session = table.session_of(token)
            if session is not None:
                del table.requests[session]
        elif op == "expire":
            table.leases.pop(token, None)
        else:  # pragma: no cover - the server writes no other record
            raise ValueError(f"unknown lock server record {record!r}")

    def live(self, lease: LeaseRecord) -> bool:
        return self.now < lease.expires


def recover(records: Iterable[dict[str, Any]]) -> LockState:
    """The server's state after a restart, from its log records."""
    state = LockState()
    for record in records:
        state.apply(record)
    return state


def forget_leases(state: LockState) -> None:
    """BROKEN (``volatile_leases``): drop every grant, as a server whose lease table
    lived in memory only would, and keep just the queue of waiters."""
    for table in state.locks.values():
        table.leases.clear()
        for session in [s for s, r in table.requests.items() if r.granted]:
            del table.requests[session]


@attrs.frozen
class Tick:
    """The timer that advances the server's clock by one tick."""


class LockServer(Actor):
    """The lock server node.  ``state`` is its memory, rebuilt from its log at every
    start.  ``tick`` is the clock's period in seconds."""

    LOG = "leases"
    messages = SERVER_MESSAGES
    #: group commit: one sync per batch of messages (impl.runtime.actor, "Batches")
    batched = True

    def __init__(
        self,
        name: str = "server",
        tick: float = 1.0,
        *,
        horizon: int | None = None,
        max_requests: int | None = None,
        variant: str | None = None,
    ) -> None:
        config.check_variant(variant, SERVER_VARIANTS, "server variant")
        if tick <= 0:
            raise ValueError(f"tick must be positive, got {tick}")
        super().__init__(name)
        self.tick = tick
        self.horizon = horizon
        self.max_requests = max_requests
        self.variant = variant
        self.state = LockState()
        self.clients: dict[str, str] = {}
        self._clock_armed = False
        #: the trace steps of changes not yet synced (or, for ticks, not yet written),
        #: recorded in order once a sync has made them durable: (action, lock)
        self._steps: list[tuple[dict[str, Any], str]] = []
        #: records appended since the last sync
        self._unsynced = False
        #: ``now`` has moved past the last tick written to the log
        self._tick_unwritten = False

    # ------------------------------------------------------------------ running

    def on_start(self) -> None:
        # What the last incarnation had not synced is gone with it.
        self._steps = []
        self._unsynced = False
        self._tick_unwritten = False
        self.log: Storage = self.ctx.storage(self.LOG)
        self.state = recover(self.log.records())
        if self.variant == "volatile_leases":
            forget_leases(self.state)
        self._clock_armed = False
        # Session -> the node it last wrote from; memory only: after a restart a
        # waiter learns of its grant when it asks again, as it does periodically.
        self.clients = {}
        for name in sorted(self.state.locks):
            self._grant_next(name, None)
        self._arm_clock()

    def on_timer(self, timer: Any) -> None:
        self._clock_armed = False
        self._on_tick()

    def on_message(self, src: str, msg: Any) -> None:
        match msg:
            case Acquire():
                self._on_acquire(src, msg)
            case Renew(name, session, token, attempt):
                self._on_renew(src, name, session, token, attempt)
            case Release(name, session, token):
                self._on_release(src, name, session, token)

    def _commit(self, record: dict[str, Any], action: dict[str, Any], lock: str) -> None:
        """Append a change and apply it; its trace step waits for the batch's sync
        (``on_batch_end``), and so does every message the batch sends, since the
        actor holds them until after it."""
        self._write_tick()
        self.log.append(record)
        self._unsynced = True
        self.state.apply(record)
        self._steps.append((action, lock))

    def _write_tick(self) -> None:
        """Put the clock's reading in the log ahead of a change made at that reading,
        so that a change is never durable without the ticks before it."""
        if self._tick_unwritten:
            self.log.append({"op": "tick", "now": self.state.now})
            self._tick_unwritten = False

    def on_batch_end(self) -> None:
        """One sync for everything the batch changed, then its trace steps; the
        actor lets the batch's replies out after this."""
        if not self._unsynced:
            return  # nothing to make durable (at most ticks, held in memory: below)
        self.log.sync()
        self._unsynced = False
        steps, self._steps = self._steps, []
        for action, lock in steps:
            self.ctx.record(action, lock=lock)

    def _arm_clock(self) -> None:
        """The clock ticks only while some lease may still need to expire; an idle
        server waits for messages alone (and a simulated run can end)."""
        has_leases = any(t.leases for t in self.state.locks.values())
        at_horizon = self.horizon is not None and self.state.now >= self.horizon
        if has_leases and not at_horizon and not self._clock_armed:
            self.set_timer(Tick(), self.tick)
            self._clock_armed = True

    def _on_tick(self) -> None:
        if self.horizon is not None and self.state.now >= self.horizon:
            return
        # A tick is neither written nor synced on its own: it is written just before
        # the next change (``_write_tick``) and made durable by that change's sync,
        # and its trace step waits for that sync too.  A crash before then loses
        # the tick, and the restarted server's clock reads less than it did.  That
        # is safe: a clock that reads less makes every lease in the table last
        # longer, never shorter, and the server already counts on its clock not
        # moving while it is down (every lease runs out the rest of its time after
        # a restart, module docstring).  Whatever anyone learnt was made durable
        # by a sync that also covered every tick before it, so after a restart the
        # clock reads at least what it read when any grant, renewal or expiry that
        # anyone heard of was decided.
        self.state.apply({"op": "tick", "now": self.state.now + 1})
        self._tick_unwritten = True
        for name in sorted(self.state.locks):
            self._steps.append(({"type": "Tick"}, name))
        for name in sorted(self.state.locks):
            table = self.state.locks[name]
            for token in sorted(table.leases):
                if not self.state.live(table.leases[token]):
                    self._commit(
                        {"op": "expire", "lock": name, "token": token}, {"type": "Expire", "token": token}, name
                    )
            self._grant_next(name, None)
        self._arm_clock()

    # ----------------------------------------------------------------- messages

    def _on_acquire(self, src: str, msg: Acquire) -> None:
        name, session, req = msg.lock, msg.session, msg.req
        table = self.state.table(name)
        open_request = table.requests.get(session)
        if open_request is not None:
            if open_request.req != req:
                # The session still holds (or waits for) this lock under another
                # request; the client library never does that.  Say so, change nothing.
                self.send(src, Busy(name, req, open_request.token))
            elif open_request.granted:
                # A retried request for a lock already granted: the grant again, but
                # without an attempt to time it from, since it is older than this copy.
                self._send_grant(src, name, open_request, None)
            return
        if self.max_requests is not None and table.issued >= self.max_requests:
            self.ctx.log(f"model bound: no more than {self.max_requests} requests on {name}")
            return
        # At least two ticks: a lease is only sure to last ttl - 1 of them.
        seconds = msg.ttl if msg.ttl is not None else 2 * self.tick
        ttl = max(2, math.ceil(seconds / self.tick - 1e-9))
        token = table.issued + 1
        record = {"op": "acquire", "lock": name, "token": token, "session": session, "req": req, "ttl": ttl}
        self._commit(record, {"type": "Acquire", "client": session}, name)
        self.clients[session] = src
        self._grant_next(name, (session, msg.attempt))

    def _grant_next(self, name: str, asking: tuple[str, int | None] | None) -> None:
        """Grant ``name`` to its oldest waiter if no lease on it is live.  ``asking``
        is the session whose request is being handled, with the attempt number it
        sent: a grant made in answer to that very message can be timed from it."""
        table = self.state.table(name)
        if not table.queue or any(self.state.live(lease) for lease in table.leases.values()):
            return
        token = table.queue[0]
        session = table.session_of(token)
        assert session is not None
        self._commit({"op": "grant", "lock": name, "token": token}, {"type": "Grant", "client": session}, name)
        attempt = asking[1] if asking is not None and asking[0] == session else None
        client = self.clients.get(session)
        if client is not None:  # else it learns when it asks again
            self._send_grant(client, name, table.requests[session], attempt)
        self._arm_clock()

    def _send_grant(self, dst: str, name: str, request: Request, attempt: int | None) -> None:
        self.send(dst, Granted(name, request.req, request.token, request.ttl, self.tick, attempt))

    def _on_renew(self, src: str, name: str, session: str, token: int, attempt: int | None) -> None:
        table = self.state.table(name)
        request = table.requests.get(session)
        if request is None or request.token != token or not request.granted:
            # Already released or refused (this is a late copy), or never granted.
            self.send(src, Refused(name, token, attempt))
            return
        lease = table.leases.get(token)
        if lease is not None and self.state.live(lease):
            self._commit({"op": "renew", "lock": name, "token": token}, {"type": "Renew", "client": session}, name)
            self.send(src, Renewed(name, token, attempt, request.ttl))
            return
        # Expired: the lock may have passed on.  The session has lost it for good.
        self._commit({"op": "close", "lock": name, "token": token}, {"type": "Renew", "client": session}, name)
        self.send(src, Refused(name, token, attempt))
        self._grant_next(name, None)

    def _on_release(self, src: str, name: str, session: str, token: int) -> None:
        table = self.state.table(name)
        request = table.requests.get(session)
        if request is not None and request.token == token and request.granted:
            self._commit({"op": "close", "lock": name, "token": token}, {"type": "Release", "client": session}, name)
            self._grant_next(name, None)
        self.send(src, Released(name, token))
