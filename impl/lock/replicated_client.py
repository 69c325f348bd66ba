"""The client library of the replicated lock service (``impl.lock.replicated``).

Where it sits: a library a user calls from any process, over TCP, on
``impl.raft.client.RaftClient`` (which finds the leader, follows a follower's hint,
fails over to another server when one stops answering, and numbers commands so
that one re-sent to a new leader is applied once).  It has the user API of
``impl.lock.client.LockClient``::

    client = ReplicatedLockClient("n1=127.0.0.1:8001,n2=...,n3=...")  # client ports
    with client.lock("reports", ttl=5.0, timeout=10.0) as lease:
        write(data, token=lease.token)                  # the fencing token

What it does:

- ``lock`` sends an ``acquire``.  If the leader granted the lock in that very
  command, the lease is timed from when the command was first sent.  Otherwise it
  waits in the queue, looking at its request with a linearizable read that the
  leader holds for up to ``poll`` seconds, until a release or expiry hands the
  lock over (a long poll).  A look answered because the grant was applied while
  it was held times the lease from when the look was sent; a grant that happened
  between looks is timed by a renewal first, from that renewal's first send.
  ``LockTimeout`` after ``timeout`` seconds: the request is then withdrawn (a
  ``release`` of its place), or, if that cannot be confirmed, picked up by the
  next ``lock`` of that name.
- A background thread renews the lease every third of its trusted time
  (``renew_every``), on its own connection; a refused renewal means the lease is
  gone.  A lease that ran out by this clock is trusted again if a later renewal is
  accepted: the service accepted it only because nobody else was granted the lock
  meanwhile.
- ``lease.valid()``: whether the lease can be trusted now by this process's clock,
  which may run slow by up to ``drift_bound``: a lease is trusted for ``ttl * (1 -
  drift_bound)`` seconds from the first send of the command that granted or
  renewed it (the leader starts its ``ttl`` when it applies that command, later).
- Leaving the block releases the lock and raises ``LockLost`` if the lease was lost
  before the block ended.

A leader change costs time, not safety: a command in flight is re-sent to the new
leader and applied once; a lease stays trusted by its clock alone, and the new
leader does not hand the lock to anyone else before that lease is over
(``impl.lock.replicated``, its waiting rule).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import attrs

from distcheck.impl.lock.client import LockLost, LockTimeout
from distcheck.impl.lock.replicated import wait_key
from distcheck.impl.raft.client import Address, ClientTiming, RaftClient, Unavailable

_sessions = itertools.count(1)


class Commands(Protocol):
    """What the client needs of a Raft session: ``RaftClient`` over TCP, or
    ``impl.raft.client.NodeClient`` inside a runtime node."""

    client_id: str

    def command(self, op: Mapping[str, Any]) -> Any: ...

    def read(self, key: str) -> Any: ...


@attrs.frozen
class ReplicatedTiming:
    """Seconds on the client's clock, and its drift bound."""

    #: the longest the leader holds one look at a request waiting in the queue (it
    #: answers at once when the lock is handed over); below ``raft.attempt``, the
    #: time after which a silent server is given up
    poll: float = 0.25
    #: the most this process's clock may run slow, as a fraction
    drift_bound: float = 0.1
    #: renew a held lease after this fraction of its trusted time
    renew_every: float = 1 / 3
    #: each call to the cluster (leader discovery, failover): see ``impl.raft.client``
    raft: ClientTiming = ClientTiming(attempt=0.5, timeout=10.0)


@attrs.define(eq=False)
class ReplicatedLease:
    """A granted lock.  ``token`` is the fencing token to pass to storage."""

    name: str
    token: int
    trusted_for: float  # seconds of this clock a lease is trusted from its timing command
    clock: Callable[[], float] = time.monotonic
    trust_until: float = 0.0
    lost: bool = False
    released: bool = False
    _stop: threading.Event = attrs.field(factory=threading.Event)

    def valid(self) -> bool:
        """Whether the lease can still be trusted now, by this process's clock."""
        return self.trusted_at(self.clock())

    def trusted_at(self, local_time: float) -> bool:
        return not self.lost and not self.released and local_time < self.trust_until

    def check(self) -> None:
        if not self.valid():
            raise LockLost(self.describe_loss())

    def describe_loss(self) -> str:
        why = "the service refused to renew it" if self.lost else "it ran out by this clock before a renewal"
        return f"lease on lock {self.name!r} (fencing token {self.token}) is no longer held: {why}"

    def _extend(self, sent: float) -> None:
        self.trust_until = max(self.trust_until, sent + self.trusted_for)


class ReplicatedLockClient:
    """A session with the replicated lock service: ``servers`` are the servers'
    client addresses (``"n1=HOST:PORT,..."`` or a mapping).  Thread-safe for
    different locks; one session per process incarnation (a restarted process is a
    new client).

    Inside a runtime node (the controlled scheduler of ``distcheck simulate``), pass
    ``raft`` (an ``impl.raft.client.NodeClient``), the node's ``clock`` and
    ``sleep``, and ``renew_in_background=False``: the node then renews with
    ``renew`` itself, as one thread of control.  ``servers`` is then unused."""

    def __init__(
        self,
        servers: str | Mapping[str, Address],
        session: str | None = None,
        timing: ReplicatedTiming = ReplicatedTiming(),
        *,
        raft: Commands | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        renew_in_background: bool = True,
    ) -> None:
        if (
            not 0 <= timing.drift_bound < 1
            or not 0 < timing.poll < timing.raft.attempt
            or not 0 < timing.renew_every < 1
        ):
            raise ValueError(
                f"drift_bound must be in [0, 1), renew_every in (0, 1), poll positive and below raft.attempt: {timing}"
            )
        self.servers = servers
        self.session = session or f"{os.getpid()}-{next(_sessions)}-{os.urandom(4).hex()}"
        self.timing = timing
        self.clock = clock
        self.sleep = sleep
        self.renew_in_background = renew_in_background
        self._own_raft = raft is None
        self.raft: Commands = RaftClient(servers, timing.raft) if raft is None else raft
        self._requests = itertools.count(1)
        #: lock -> (request id, its token if known) of a request that may still be open
        self._pending: dict[str, tuple[str, int | None]] = {}
        self._guard = threading.Lock()

    def close(self) -> None:
        if isinstance(self.raft, RaftClient) and self._own_raft:
            self.raft.close()

    # ------------------------------------------------------------ public

    @contextmanager
    def lock(self, name: str, ttl: float = 5.0, timeout: float | None = None) -> Iterator[ReplicatedLease]:
        """Hold lock ``name`` for the block (module docstring)."""
        lease = self.acquire(name, ttl, timeout)
        try:
            yield lease
        except BaseException:
            self.release(lease)
            raise
        held = lease.valid()
        self.release(lease)
        if not held:
            raise LockLost(lease.describe_loss() + "; the block's work after that was not protected by the lock")

    def acquire(self, name: str, ttl: float = 5.0, timeout: float | None = None) -> ReplicatedLease:
        """Wait for lock ``name`` (at most ``timeout`` seconds) and return its lease,
        renewed in the background until ``release``."""
        deadline = None if timeout is None else self.clock() + timeout
        trusted_for = ttl * (1 - self.timing.drift_bound)
        while True:
            with self._guard:
                req = self._pending.get(name, (f"{self.session}/{next(self._requests)}", None))[0]
                self._pending[name] = (req, None)
            sent = self.clock()
            status = self._call(
                {"op": "acquire", "lock": name, "session": self.session, "req": req, "ttl": ttl}, deadline, name
            )
            if "busy" in status:  # an older request of ours that we lost track of: withdraw it
                self._call(self._op("release", name, int(status["busy"])), deadline, name)
                continue
            token = int(status["token"])
            with self._guard:
                self._pending[name] = (req, token)
            lease = ReplicatedLease(name, token, trusted_for, self.clock)
            if status["granted"] and status.get("new"):
                lease._extend(sent)  # granted by this very command
                # A command that took its whole trusted time (resent across a leader
                # change) grants a lease already over by this clock: time it anew.
                if not lease.valid() and not self._renew_through(self.raft, lease) and lease.lost:
                    continue  # it expired meanwhile: ask again
            elif not self._await_grant(lease, req, deadline):
                continue  # it expired before we could renew it: ask again
            with self._guard:
                self._pending.pop(name, None)
            if self.renew_in_background:
                threading.Thread(target=self._renew_loop, args=(lease,), name=f"renew-{name}", daemon=True).start()
            return lease

    def renew(self, lease: ReplicatedLease) -> bool:
        """Renew the lease once, now (the background thread does this every
        ``renew_every`` of its trusted time): False if the service refused it (the
        lease is lost), or no leader answered (it lapses by its clock if that lasts)."""
        return self._renew_through(self.raft, lease)

    def _renew_through(self, raft: Commands, lease: ReplicatedLease) -> bool:
        sent = self.clock()
        try:
            result = raft.command(self._op("renew", lease.name, lease.token))
        except Unavailable:
            return False
        if lease.released:
            return False
        if not result["renewed"]:
            lease.lost = True
            return False
        lease._extend(sent)
        return True

    def release(self, lease: ReplicatedLease) -> None:
        """Give the lock back (its renewals stop at once).  If no leader confirms
        within the call's timeout, the lease runs out by its ttl instead."""
        if lease.released:
            return
        lease.released = True
        lease._stop.set()
        try:
            self.raft.command(self._op("release", lease.name, lease.token))
        except Unavailable:
            pass

    # ------------------------------------------------------------ private

    def _op(self, kind: str, name: str, token: int) -> dict[str, Any]:
        return {"op": kind, "lock": name, "session": self.session, "token": token}

    def _call(self, op: Mapping[str, Any], deadline: float | None, name: str) -> Any:
        """One command, re-sent (after ``Unavailable``) until the deadline."""
        while True:
            try:
                return self.raft.command(op)
            except Unavailable:
                if deadline is not None and self.clock() >= deadline:
                    raise LockTimeout(f"lock {name!r}: no leader answered (session {self.session})") from None

    def _await_grant(self, lease: ReplicatedLease, req: str, deadline: float | None) -> bool:
        """Wait in the queue until granted (and timed): True
        once it can be trusted, False if the request ended meanwhile (its lease
        expired); ``LockTimeout`` at the deadline (the request is withdrawn)."""
        while True:
            if deadline is not None and self.clock() >= deadline:
                self._withdraw(lease)
                raise LockTimeout(f"lock {lease.name!r} not granted in time (session {self.session})")
            looked = self.clock()
            try:
                status = self.raft.read(wait_key(lease.name, self.session, self.timing.poll))
            except Unavailable:
                continue
            if status is None or status["req"] != req:
                with self._guard:
                    self._pending.pop(lease.name, None)
                return False
            if status["granted"] and status.get("fresh"):
                lease._extend(looked)  # granted while this look was held: after it was sent
                return True
            if status["granted"]:
                sent = self.clock()
                result = self._call(self._op("renew", lease.name, lease.token), deadline, lease.name)
                if not result["renewed"]:
                    with self._guard:
                        self._pending.pop(lease.name, None)
                    return False
                lease._extend(sent)
                return True

    def _withdraw(self, lease: ReplicatedLease) -> None:
        try:
            self.raft.command(self._op("release", lease.name, lease.token))
        except Unavailable:
            return  # still pending: the next ``lock`` of this name picks the request up
        with self._guard:
            self._pending.pop(lease.name, None)

    def _renew_loop(self, lease: ReplicatedLease) -> None:
        # its own connection, so that a renewal never waits behind the user's calls
        client = RaftClient(self.servers, self.timing.raft, client_id=f"{self.raft.client_id}/renew-{lease.token}")
        try:
            while not lease._stop.wait(lease.trusted_for * self.timing.renew_every):
                if not self._renew_through(client, lease) and (lease.lost or lease.released):
                    return
        finally:
            client.close()
