"""The lock service (``impl/lock/``) wired to ``spec/lock.py``: slow clocks and
process pauses for its clients, and the abstraction from the service's durable
state to the spec's."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from distcheck.checks.conformance.simulate import Wiring
from distcheck.impl import lock as impl_lock
from distcheck.impl.lock import server as lock_server
from distcheck.impl.lock import storage as lock_storage
from distcheck.impl.runtime import ChoiceSource, Context, FaultPolicy, NodeMain, Simulation
from distcheck.impl.runtime.faults import PausingChoices, SlowClock
from distcheck.spec import lock as spec_lock
from distcheck.spec.values import FrozenMap


class LockWiring(Wiring):
    """``impl.lock`` (a lock server, a fencing storage service, two workers whose
    sessions are the spec's clients c1, c2, ...) against ``spec.lock``.

    Time: one tick of the spec is one second of the server's tick counter
    (``tick=1.0``); the spec's ``ttl`` is the lease's length in ticks and its
    ``max_time`` the server's horizon.  Drift: each worker's clock runs at a rate
    drawn from [1 - max_drift/ttl, 1] (``SlowClock``), and clients budget for that
    bound.  Pauses: ``PausingChoices`` freezes a worker now and then.

    Abstraction: the server and storage as their durable logs say (they sync every
    change before anyone hears of it), so the spec's invariants are checked on what
    would survive a crash; FencedWrites there is the storage's real contents: the
    accepted write applied last carries the highest token accepted.  A session is
    waiting or holds a token as the server's table says; it is ``holding`` while its
    client trusts the lease by its own clock and ``lapsed`` otherwise, ``crashed``
    once its node crashed (a restart opens the next session).  The spec-only fields
    ``deadline`` and ``lag`` get values that fit TypeOK; whether a client trusts a
    lease it should not is LeaseValidity's business."""

    spec_name = "lock"
    variants = impl_lock.VARIANTS
    split_key = "lock"
    lock_name = "L"
    default_params = ("clients=4", "ttl=3", "max_drift=1", "max_time=12", "max_requests=8")

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        clients, ttl = int(params.get("clients", 4)), int(params.get("ttl", 3))
        max_drift = int(params.get("max_drift", 1))
        workers = 2 if clients >= 2 else 1
        drift_bound = max_drift / ttl
        rates = [1.0 - rng.uniform(0, drift_bound) if rng.random() < 0.5 else 1.0 for _ in range(workers)]
        clocks: dict[str, SlowClock] = {}

        def slow(worker: str, rate: float) -> Callable[[Context], Context]:
            def wrap(ctx: Context) -> Context:
                clocks[worker] = SlowClock(ctx, rate)
                return clocks[worker]

            return wrap

        system = impl_lock.service(
            workers,
            clients // workers,
            tick=1.0,
            ttl=float(ttl),
            hold=1.0,
            variant=variant,
            horizon=int(params.get("max_time", 12)),
            max_requests=int(params.get("max_requests", 8)),
            timing=impl_lock.ClientTiming(retry=0.5, drift_bound=drift_bound),
            wraps=[slow(f"w{i + 1}", rate) for i, rate in enumerate(rates)],
        )
        return LockSystem(system, clocks, int(params.get("clients", 4)), ttl, {})

    def wrap_choices(self, choices: ChoiceSource, seed: int, system: Any, faults: FaultPolicy) -> ChoiceSource:
        return PausingChoices(choices, ("w1", "w2"), random.Random(f"pauses {seed}"))

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        lock_system: LockSystem = system
        return lock_system.service.nodes()

    def server_state(self, sim: Simulation) -> lock_server.LockState:
        return lock_server.recover(sim.durable_records("server", lock_server.LockServer.LOG))

    def store_state(self, sim: Simulation) -> lock_storage.StoreState:
        return lock_storage.recover(sim.durable_records("storage", lock_storage.FencedStore.LOG))

    def abstract(self, sim: Simulation, system: Any) -> spec_lock.LockState:
        lock_system: LockSystem = system
        server = self.server_state(sim)
        table = server.locks.get(self.lock_name, lock_server.LockTable())
        store = self.store_state(sim)
        now = server.now
        leases = FrozenMap(
            {t: spec_lock.Lease(lease.holder, lease.granted_at, lease.expires) for t, lease in table.leases.items()}
        )
        queue = tuple((t, session) for t in table.queue for session in [table.session_of(t)] if session is not None)
        clients: dict[str, spec_lock.Client] = {}
        for name in spec_lock.client_names(lock_system.clients):
            clients[name] = self.client_state(sim, lock_system, name, table, store, now)
        writes = [w for w in store.writes if w["lock"] == self.lock_name]
        return spec_lock.LockState(
            now,
            FrozenMap(clients),
            spec_lock.Server(queue, leases, table.issued, table.last_granted),
            spec_lock.Storage(
                store.highest.get(self.lock_name, 0),
                int(writes[-1]["token"]) if writes else 0,
                store.rejected.get(self.lock_name, 0) > 0,
            ),
        )

    def client_state(
        self,
        sim: Simulation,
        system: LockSystem,
        session: str,
        table: lock_server.LockTable,
        store: lock_storage.StoreState,
        now: int,
    ) -> spec_lock.Client:
        worker = next((w for w in system.service.workers if session in w.sessions), None)
        client = worker.clients.get(session) if worker is not None else None
        if worker is None or client is None:
            return spec_lock.Client()
        in_flight = next(
            (
                token
                for lock, token, wid in reversed(client.sent_writes)
                if lock == self.lock_name and wid not in store.decided
            ),
            None,
        )
        request = table.requests.get(session)
        superseded = worker.sessions.index(session) < max(worker.sessions.index(s) for s in worker.clients)
        if superseded or not sim.is_up(worker.name):
            if request is None:
                return spec_lock.Client(spec_lock.IDLE, in_flight=in_flight)
            crashed_at = system.crashed_at.setdefault(session, now)
            record = table.leases.get(request.token)
            if record is not None:
                # A renewal sent just before the crash may reach the server after
                # it; in the spec's atomic Renew it happened before the crash, at
                # the tick the server took it.
                crashed_at = max(crashed_at, record.expires - request.ttl)
            return spec_lock.Client(spec_lock.CRASHED, in_flight=in_flight, crashed_at=crashed_at)
        if request is None:
            return spec_lock.Client(spec_lock.IDLE, in_flight=in_flight)
        if not request.granted:
            return spec_lock.Client(spec_lock.WAITING, request.token, in_flight=in_flight)
        lease = client.held.get(self.lock_name)
        clock = system.clocks.get(worker.name)
        local = clock.at(sim.now) if clock is not None else sim.now
        if lease is not None and lease.token == request.token and lease.trusted_at(local):
            record = table.leases.get(request.token)
            deadline = max(now + 1, record.expires if record is not None else 0)
            return spec_lock.Client(spec_lock.HOLDING, request.token, deadline, 0, in_flight)
        return spec_lock.Client(spec_lock.LAPSED, request.token, in_flight=in_flight)

    def finished(self, sim: Simulation, system: Any) -> str | None:
        # A handler that raised crashed its node, which was restarted: the run went
        # on, but the code is wrong.
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
        lock_system: LockSystem = system
        tokens = [int(w["token"]) for w in self.store_state(sim).writes if w["lock"] == self.lock_name]
        if tokens != sorted(tokens):
            return f"FencedWrites broken in storage's contents: accepted writes carry tokens {tokens}, in that order"
        for worker in lock_system.service.workers:
            if worker.current is not None and worker.current not in worker.outcomes:
                return f"{worker.name}'s session {worker.current} never finished its lock() call"
        return None


@attrs.define
class LockSystem:
    service: impl_lock.Service
    clocks: dict[str, SlowClock]
    clients: int
    ttl: int
    #: session -> the server's tick when the abstraction first saw it crashed
    crashed_at: dict[str, int]
