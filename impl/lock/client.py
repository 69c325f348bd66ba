"""The client library of the lock service: what a user's node calls.

Where it sits: runs inside a user's runtime node (``impl.runtime.api.Context``) and
talks to ``impl.lock.server.LockServer`` and ``impl.lock.storage.FencedStore`` by
messages, so it works under the controlled scheduler and over TCP alike::

    client = LockClient(ctx, session="worker-7")
    storage = FencedStorage(client)
    with client.lock("reports", ttl=5.0, timeout=10.0) as lease:
        storage.write("report", data, lease)       # carries lease.token, the fencing token

What it does for the user:

- ``lock`` queues a request (re-sent every ``retry`` seconds, with the same request
  id, so a lost message or a restarted server costs time, not a second place in the
  queue) and raises ``LockTimeout`` after ``timeout`` seconds.  A request given up
  on may still be granted later; the next ``lock`` of that name picks it up.
- While the block runs, a background thread renews the lease every third of its
  trusted time; a refused renewal means the lease is gone.
- ``lease.valid()`` says whether the lease can still be trusted, by this node's own
  clock; ``FencedStorage.write`` checks it and sends the token with the write, and
  the storage service rejects tokens older than one it has accepted (``StaleToken``).
- Leaving the block releases the lock (retried until the server confirms) and
  raises ``LockLost`` if the lease was lost before the block ended: whatever the
  block did after that was not protected by the lock, except writes that storage
  fenced.

How long a lease is trusted.  The client starts timing a lease when it *sends* the
message the server answered (a grant made in answer to that Acquire, or a
renewal), so time in flight is on the safe side.  The server guarantees ``(ttl -
1) * tick`` seconds from the grant (``impl.lock.server``), and this node's clock
may run slow by up to ``drift_bound`` (a fraction), so it trusts ``(ttl - 1) *
tick * (1 - drift_bound)`` seconds of its own clock.  A grant pushed to a waiter
when the lock came free answers no message it can time, so the client first renews
it and trusts it from that renewal's send.

It records the client's one spec step, ``Write`` (tagged with ``lock``), just
before the write leaves; the server records the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from distcheck.impl.lock.messages import (
    CLIENT_MESSAGES,
    Acquire,
    Granted,
    Refused,
    Release,
    Released,
    Renew,
    Renewed,
    Write,
    WriteResult,
)
from distcheck.impl.resilience import UNBOUNDED, Deadline, RetryError, Retrying
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import MessageError, encode
from distcheck.impl.runtime.api import Context, Envelope, NodeCrashed, Queue

CLIENT_VARIANTS = {
    "no_drift_margin": "the client trusts its lease for the full ttl by its own clock",
}


class LockTimeout(Exception):
    """The lock was not granted within the acquire timeout."""


class LockLost(Exception):
    """The lease ended (by the client's clock, or the server refused to renew it)
    before the caller was done with the lock."""


class StaleToken(Exception):
    """The storage service rejected a write: a newer lease has written since."""


@attrs.frozen
class ClientTiming(config.Timing):
    """Seconds on the client's own clock, and its drift bound."""

    retry: float = 0.5  # between re-sent requests
    drift_bound: float = 0.1  # the most this node's clock may run slow, as a fraction


@attrs.define(eq=False)
class Lease:
    """A granted lock.  ``token`` is the fencing token to pass to storage."""

    client: LockClient
    name: str
    token: int
    trusted_for: float  # seconds of the client's clock a lease is trusted from its timing message
    trust_until: float = 0.0
    lost: bool = False
    released: bool = False

    def valid(self) -> bool:
        """Whether the lease can still be trusted now, by this node's clock."""
        return self.trusted_at(self.client.ctx.now())

    def trusted_at(self, local_time: float) -> bool:
        return not self.lost and not self.released and local_time < self.trust_until

    def check(self) -> None:
        if not self.valid():
            raise LockLost(self.describe_loss())

    def describe_loss(self) -> str:
        why = "the server refused to renew it" if self.lost else "it ran out by this node's clock before a renewal"
        return f"lease on lock {self.name!r} (fencing token {self.token}) is no longer held: {why}"


class LockClient:
    """A session with the lock server.  One per node incarnation: a restarted node
    opens a new session (a new name), as a crashed client is a new client."""

    def __init__(
        self,
        ctx: Context,
        session: str,
        server: str = "server",
        timing: ClientTiming = ClientTiming(),
        variant: str | None = None,
    ) -> None:
        config.check_variant(variant, CLIENT_VARIANTS, "client variant")
        self.ctx = ctx
        self.session = session
        self.server = server
        self.timing = timing
        self.variant = variant
        self._grants: Queue = ctx.queue()
        self._renewals: dict[tuple[str, int], Queue] = {}
        self._releases: dict[tuple[str, int], Queue] = {}
        self._results: dict[str, Queue] = {}
        #: (lock, token) -> the queue that tells its renewal thread the lease was released
        self._stop_renewing: dict[tuple[str, int], Queue] = {}
        self._sent_at: dict[int, float] = {}  # attempt -> when it was sent, on this clock
        self._attempts = 0
        self._requests = 0
        self._pending: dict[str, str] = {}  # lock -> id of a request that may still be open
        self.held: dict[str, Lease] = {}
        #: (lock, fencing token, write id) of every write this session sent, oldest first
        self.sent_writes: list[tuple[str, int, str]] = []
        ctx.spawn("lock-client", self._dispatch)

    # ----------------------------------------------------------------- public

    @contextmanager
    def lock(self, name: str, ttl: float = 5.0, timeout: float | None = None) -> Iterator[Lease]:
        """Hold lock ``name`` for the block; see the module docstring."""
        lease = self.acquire(name, ttl, timeout)
        try:
            yield lease
        except NodeCrashed:
            raise
        except BaseException:
            self.release(lease)
            raise
        held = lease.valid()
        self.release(lease)
        if not held:
            raise LockLost(lease.describe_loss() + "; the block's work after that was not protected by the lock")

    def acquire(self, name: str, ttl: float = 5.0, timeout: float | None = None) -> Lease:
        """Wait for lock ``name`` (at most ``timeout`` seconds) and return its lease,
        renewed in the background until ``release``."""
        limit = None if timeout is None else Deadline.after(timeout, self.ctx.now)
        req = self._pending.get(name) or self._new_request(name)
        try:
            # Each pass is one request; only a grant that expired before it could be
            # confirmed makes another (under the same deadline).
            while (lease := self._request(name, req, ttl, limit)) is None:
                req = self._new_request(name)
        except RetryError as error:
            if error.reason != "deadline":
                raise
            raise LockTimeout(f"lock {name!r} not granted within {timeout} s (session {self.session})") from None
        del self._pending[name]
        self.held[name] = lease
        stop = self._stop_renewing[(name, lease.token)] = self.ctx.queue()
        self.ctx.spawn(f"renew-{name}-{lease.token}", functools.partial(self._renew_loop, lease, stop))
        return lease

    def release(self, lease: Lease) -> None:
        """Give the lock back; returns once the server has confirmed it."""
        if lease.released:
            return
        lease.released = True
        self.held.pop(lease.name, None)
        key = (lease.name, lease.token)
        stop = self._stop_renewing.pop(key, None)
        if stop is not None:
            # End its renewal thread now rather than at its next renewal: a client that
            # locks many times a second would otherwise keep a sleeping thread per
            # lease it has released, each woken by every message the node receives.
            stop.put(True)
        replies = self._releases.setdefault(key, self.ctx.queue())
        release = encode(Release(lease.name, self.session, lease.token))
        try:
            # Releasing a token twice is releasing it once: the server answers a repeat.
            for attempt in self._resends(idempotent=True):
                with attempt:
                    self.ctx.send(self.server, release)
                    if replies.get(timeout=self.timing.retry) is None:
                        raise TimeoutError(f"release of lock {lease.name!r} not confirmed")
                if attempt.exception is None:
                    return
        finally:
            self._releases.pop(key, None)

    # ---------------------------------------------------------------- private

    def _resends(self, deadline: Deadline | None = None, idempotent: bool = False, key: str | None = None) -> Retrying:
        """The client's retry policy: send again every ``timing.retry`` seconds (each
        attempt is the wait for its answer) until answered or ``deadline``."""
        return Retrying(
            backoff=False,
            max_attempts=UNBOUNDED,
            deadline=deadline,
            retry_on=TimeoutError,
            idempotent=idempotent,
            idempotency_key=key,
            clock=self.ctx.now,
            sleep=self.ctx.sleep,
        )

    def _new_request(self, name: str) -> str:
        self._requests += 1
        req = self._pending[name] = f"{self.session}/{self._requests}"
        return req

    def _request(self, name: str, req: str, ttl: float, limit: Deadline | None) -> Lease | None:
        """Ask for the lock under request id ``req`` (the idempotency key: the server
        queues an id once) until granted, and confirm the grant.  The lease, or None
        if the grant expired before it could be confirmed; RetryError at the deadline."""
        for attempt in self._resends(limit, key=req):
            with attempt:
                number = self._new_attempt()
                self.ctx.send(self.server, encode(Acquire(name, self.session, req, number, ttl)))
                granted = self._await_grant(name, req, self.ctx.now() + attempt.bounded(self.timing.retry))
                if granted is None:
                    raise TimeoutError(f"lock {name!r} not granted yet")
            if attempt.exception is None:
                assert granted is not None
                return granted if self._confirm(granted, limit) else None
        raise AssertionError("unreachable: the attempts end in a return or a RetryError")  # pragma: no cover

    def _new_attempt(self) -> int:
        self._attempts += 1
        self._sent_at[self._attempts] = self.ctx.now()
        return self._attempts

    def _trusted_for(self, ttl_ticks: int, tick: float) -> float:
        if self.variant == "no_drift_margin":
            return ttl_ticks * tick  # BROKEN: no room for the tick's granularity or a slow clock
        return (ttl_ticks - 1) * tick * (1.0 - self.timing.drift_bound)

    def _await_grant(self, name: str, req: str, until: float) -> Lease | None:
        while (left := until - self.ctx.now()) > 0:
            msg = self._grants.get(timeout=left)
            if msg is None:
                return None
            if not isinstance(msg, Granted) or msg.lock != name or msg.req != req:
                continue  # an answer to an earlier request, since closed
            lease = Lease(self, name, msg.token, self._trusted_for(msg.ttl_ticks, msg.tick))
            sent = self._sent_at.get(msg.attempt) if msg.attempt is not None else None
            if sent is not None:
                lease.trust_until = sent + lease.trusted_for
            return lease
        return None

    def _confirm(self, lease: Lease, limit: Deadline | None) -> bool:
        """Make sure the lease can be trusted, renewing it to time it if need be:
        True once it can, False if it was lost; RetryError at the deadline."""
        self._renewals.setdefault((lease.name, lease.token), self.ctx.queue())
        if lease.valid():
            return True  # timed by the Acquire it answered (even one answered at the deadline)
        try:
            # A renewal of one token is idempotent: the server renews it, or refuses.
            for attempt in self._resends(limit, idempotent=True):
                with attempt:
                    if not lease.valid() and not lease.lost:
                        self._renew_once(lease)
                        if not lease.valid() and not lease.lost:
                            raise TimeoutError(f"lease on lock {lease.name!r} not confirmed yet")
                if attempt.exception is None:
                    break
        except BaseException:
            self._renewals.pop((lease.name, lease.token), None)
            raise
        if lease.lost:
            self._renewals.pop((lease.name, lease.token), None)
            return False
        return True

    def _renew_once(self, lease: Lease) -> None:
        replies = self._renewals[(lease.name, lease.token)]
        attempt = self._new_attempt()
        self.ctx.send(self.server, encode(Renew(lease.name, self.session, lease.token, attempt)))
        until = self.ctx.now() + min(self.timing.retry, lease.trusted_for / 3)
        while (left := until - self.ctx.now()) > 0:
            reply = replies.get(timeout=left)
            if reply is None:
                return
            if isinstance(reply, Refused):
                lease.lost = True
                return
            sent = self._sent_at.get(reply.attempt) if reply.attempt is not None else None
            if sent is not None:  # any renewal answered is good evidence, even a late one
                lease.trust_until = max(lease.trust_until, sent + lease.trusted_for)
            if reply.attempt == attempt:
                return

    def _renew_loop(self, lease: Lease, stop: Queue) -> None:
        try:
            while not lease.released and not lease.lost:
                if stop.get(timeout=lease.trusted_for / 3) is not None:
                    return  # released
                if lease.released or lease.lost:
                    return
                self._renew_once(lease)
        finally:
            self._renewals.pop((lease.name, lease.token), None)
            self._stop_renewing.pop((lease.name, lease.token), None)

    def _dispatch(self) -> None:
        """The node's mailbox belongs to the library: route each reply, decoded and
        checked, to whoever waits for it."""
        while True:
            item = self.ctx.receive()
            if not isinstance(item, Envelope):
                continue
            try:
                msg = CLIENT_MESSAGES.decode(item.msg)
            except MessageError as exc:
                self.ctx.log(f"rejected a message from {item.src}: {exc}")
                continue
            queue: Queue | None
            if isinstance(msg, WriteResult):
                queue = self._results.get(msg.wid)
            elif isinstance(msg, Renewed | Refused):
                queue = self._renewals.get((msg.lock, msg.token))
            elif isinstance(msg, Released):
                queue = self._releases.get((msg.lock, msg.token))
            else:  # Granted, Busy
                queue = self._grants
            if queue is not None:
                queue.put(msg)


class FencedStorage:
    """Writes to the fencing storage service (``impl.lock.storage``) under a lease."""

    def __init__(self, client: LockClient, node: str = "storage") -> None:
        self.client = client
        self.node = node
        self._writes = 0

    def write(self, key: str, value: Any, lease: Lease) -> None:
        """Store ``value`` under ``key`` with the lease's fencing token.  Raises
        ``LockLost`` (nothing sent) if the lease cannot be trusted now, and
        ``StaleToken`` if storage has accepted a newer token.  A sent write is
        re-sent until storage answers: storage decides it once, whatever the copies."""
        ctx, session = self.client.ctx, self.client.session
        lease.check()
        self._writes += 1
        wid = f"{session}:{self._writes}"
        replies = self.client._results.setdefault(wid, ctx.queue())
        ctx.record({"type": "Write", "client": session}, lock=lease.name)
        self.client.sent_writes.append((lease.name, lease.token, wid))
        msg = encode(Write(wid, lease.name, lease.token, session, key, value))
        try:
            # Storage decides a write id once, whatever the copies: the id is the key.
            for attempt in self.client._resends(key=wid):
                with attempt:
                    ctx.send(self.node, msg)
                    reply = replies.get(timeout=self.client.timing.retry)
                    if reply is None:
                        raise TimeoutError(f"write {wid} not answered yet")
                if attempt.exception is None:
                    break
        finally:
            self.client._results.pop(wid, None)
        assert reply is not None  # the attempts end answered, or in a RetryError
        if not reply.accepted:
            raise StaleToken(
                f"storage rejected the write of {key!r} with fencing token {lease.token}: a newer lease wrote"
            )
