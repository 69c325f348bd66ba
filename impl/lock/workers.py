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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from distcheck.impl.lock.client import ClientTiming, FencedStorage, LockClient, LockLost, LockTimeout, StaleToken
from distcheck.impl.lock.server import LockServer
from distcheck.impl.lock.storage import FencedStore
from distcheck.impl.runtime import config
from distcheck.impl.runtime.api import Context

VARIANTS = {
    "unfenced_storage": "storage applies every write, whatever its fencing token",
    "no_drift_margin": "the client trusts its lease for the full ttl by its own clock",
    "volatile_leases": "a restarted server forgets its lease table and grants again at once",
}


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
        self.current = None
        log = ctx.storage(self.LOG)
        used = len(log.records())
        if used >= len(self.sessions):
            return
        session = self.sessions[used]
        log.append({"session": session})
        log.sync()
        self.current = session
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
