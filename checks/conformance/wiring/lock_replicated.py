"""The replicated lock service (``impl/lock/replicated.py``: the lease table on a
Raft log) under the controlled scheduler: ``distcheck simulate lock --service
replicated``.  Leader crashes and partitions come from the Raft nemesis, process
pauses of the clients from ``PausingChoices``, a leader crash while the lock is
held and awaited from ``LeaseNemesis``, and every node's clock may run slow.

What is checked after every step is the lock spec's safety on the service's real
state, not on an abstraction of it: the replicated service has no single server
whose state spec/lock.py's ``Server`` could stand for (its lease clock is the
leader's memory, by design).  So:

- MutualExclusion: no two sessions trust a lease on the lock at once, each by its
  own (slow) clock, as ``lease.valid()`` would answer inside the client;
- FencedWrites on the storage's durable contents: the accepted writes were
  applied in the order of their tokens, and each token's writes come from one
  session (no token was handed out twice);
- UniqueTokens on the servers' applied lease tables: a (lock, token) is the
  request of one session on every server;
- Raft's ElectionSafety and StateMachineSafety on the servers' logs (as
  ``distcheck simulate raft`` checks them).

The trace the servers record is Raft's, and it is validated against spec/raft
(``checks.conformance.wiring.raft``): the replication under the lock service is a
behaviour of the Raft spec.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import Validation, trace_events
from distcheck.checks.conformance.wiring.raft import RaftNemesis, RaftSystem, spec_events
from distcheck.checks.params import UsageError
from distcheck.checks.traces.trace import Trace
from distcheck.impl.lock import replicated as impl_replicated
from distcheck.impl.lock import storage as lock_storage
from distcheck.impl.lock import workers as lock_workers
from distcheck.impl.lock.replicated_client import ReplicatedTiming
from distcheck.impl.raft import RaftOptions, Timing
from distcheck.impl.raft import client as raft_client
from distcheck.impl.raft import simulation as raft_sim
from distcheck.impl.raft.node import LEADER
from distcheck.impl.runtime import Choice, ChoiceSource, Context, FaultPolicy, NodeMain, Simulation
from distcheck.impl.runtime.faults import PausingChoices, SlowClock
from distcheck.impl.runtime.history import History
from distcheck.spec.contract import Spec


class ReplicatedLockWiring(Wiring):
    """``impl.lock.replicated`` (servers s1..sN, as spec/raft names them, N = ``servers``; a fencing storage
    service; two workers whose sessions c1, c2, ... each take the lock once and
    write twice under it) against spec/lock.py's safety properties (module
    docstring).

    Time: one tick of the spec is ``tick`` = 10 virtual seconds.  Heartbeats every 1,
    elections after 5 to 10, leases of ``ttl`` ticks (default 3: 30 s), held (and
    renewed) for ``hold`` = 30 s between the two writes, so that a leader is often
    lost while a lease is held and the next leader has to wait it out.  Drift: every node's clock
    runs at a rate drawn from [1 - ``max_drift``/``ttl``, 1] (default: a third
    slow); clients trust ``ttl * (1 - drift)`` of theirs, a new leader waits ``ttl *
    (1 + drift)`` of its own.  The spec's other parameters bound its state space and
    mean nothing here."""

    spec_name = "lock"
    service = "replicated"
    trace_spec = "raft servers=3"
    variants = impl_replicated.VARIANTS
    default_params = ("clients=4", "ttl=3", "max_drift=1")
    incremental_trace = False
    default_steps = 8000
    state_checks = (
        "MutualExclusion, FencedWrites on the storage's contents, UniqueTokens and Raft's safety checked after "
        "every step"
    )
    lock_name = "L"
    servers = 3
    tick = 20.0
    hold = 40.0
    timing = Timing(heartbeat=1.0, election_timeout=5.0)
    raft_timing = raft_client.ClientTiming(attempt=3.0, backoff=1.0, max_backoff=4.0, timeout=1e9)

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        clients, ticks = int(params.get("clients", 4)), int(params.get("ttl", 3))
        drift, ttl = int(params.get("max_drift", 1)) / ticks, ticks * self.tick
        if not drift < 1:
            raise UsageError(f"the replicated service needs max_drift < ttl, got {params.get('max_drift')} and {ticks}")
        workers = 2 if clients >= 2 else 1
        names = [f"s{i}" for i in range(1, self.servers + 1)] + [f"w{i + 1}" for i in range(workers)]
        rates = {n: 1.0 - rng.uniform(0, drift) if rng.random() < 0.5 else 1.0 for n in names}
        clocks: dict[str, SlowClock] = {}
        service = lock_workers.replicated_service(
            self.servers,
            workers,
            clients // workers,
            ttl=ttl,
            hold=self.hold,
            max_drift=drift,
            timing=self.timing,
            options=RaftOptions.conformance(),
            client_timing=ReplicatedTiming(poll=1.0, drift_bound=drift, raft=self.raft_timing),
            variant=variant,
            wraps={n: _slow(clocks, n, rate) for n, rate in rates.items() if rate < 1.0},
            prefix="s",
        )
        raft = RaftSystem(raft_sim.Cluster(list(service.servers), [], History()))
        return ReplicatedLockSystem(service, raft, clocks)

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        return _system(system).service.nodes()

    def wrap_choices(self, choices: ChoiceSource, seed: int, system: Any, faults: FaultPolicy) -> ChoiceSource:
        service = _system(system).service
        pauses = PausingChoices(choices, [w.name for w in service.workers], random.Random(f"pauses {seed}"))
        raft = RaftNemesis(pauses, service.servers, faults, random.Random(f"nemesis {seed}"))
        return LeaseNemesis(raft, service.servers, self.lock_name, faults, random.Random(f"leases {seed}"))

    def fault_policy(self, faults: FaultPolicy, system: Any) -> FaultPolicy:
        servers = tuple(s.name for s in _system(system).service.servers)
        return attrs.evolve(faults, crashable=servers, partitioned=servers)

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        lock_system = _system(system)
        for server in lock_system.service.servers:
            if not hasattr(server, "log"):
                continue  # not started yet
            problem = lock_system.raft.check_leader(server) or lock_system.raft.check_committed(server)
            if problem is not None:
                return problem
        return (
            self.mutual_exclusion(sim, lock_system)
            or self.fenced_writes(sim)
            or self.unique_tokens(lock_system, sim.now)
        )

    def mutual_exclusion(self, sim: Simulation, system: ReplicatedLockSystem) -> str | None:
        trusting = []
        for worker in system.service.workers:
            session = worker.current
            lease = worker.leases.get(session) if session is not None else None
            if lease is None or lease.name != self.lock_name or not sim.is_up(worker.name):
                continue
            clock = system.clocks.get(worker.name)
            if lease.trusted_at(clock.at(sim.now) if clock is not None else sim.now):
                trusting.append(f"{session} (token {lease.token})")
        if len(trusting) > 1:
            return (
                f"MutualExclusion violated: at most one client holds the lock at a time; at {sim.now:.2f} "
                f"{' and '.join(trusting)} both trust a lease on {self.lock_name}"
            )
        return None

    def fenced_writes(self, sim: Simulation) -> str | None:
        store = lock_storage.recover(sim.durable_records("storage", lock_storage.FencedStore.LOG))
        writes = [(int(w["token"]), str(w["session"])) for w in store.writes if w["lock"] == self.lock_name]
        tokens = [t for t, _ in writes]
        if tokens != sorted(tokens):
            return (
                "FencedWrites violated: storage applies a write only with the highest token seen; its accepted "
                f"writes carry tokens {tokens}, in that order"
            )
        owners: dict[int, str] = {}
        for token, session in writes:
            if owners.setdefault(token, session) != session:
                return (
                    f"UniqueTokens violated: no fencing token is handed out twice; storage accepted token {token} "
                    f"from {owners[token]} and from {session}"
                )
        return None

    def unique_tokens(self, system: ReplicatedLockSystem, now: float) -> str | None:
        for server in system.service.servers:
            if not hasattr(server, "log"):
                continue
            table = server.lock_machine.locks.get(self.lock_name)
            for request in [] if table is None else table.requests.values():
                owner = system.owners.setdefault(request.token, (request.session, server.name))
                if owner[0] != request.session:
                    return (
                        f"UniqueTokens violated: no fencing token is handed out twice; token {request.token} is "
                        f"{owner[0]}'s on {owner[1]} and {request.session}'s on {server.name}"
                    )
        return None

    def done(self, sim: Simulation, system: Any) -> bool:
        service = _system(system).service
        if any(w.current is not None and w.current not in w.outcomes for w in service.workers):
            return False
        applied = {s.last_applied for s in service.servers if hasattr(s, "log")}
        return len(applied) == 1

    def finished(self, sim: Simulation, system: Any) -> str | None:
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
        service = _system(system).service
        for worker in service.workers:
            if worker.current is not None and worker.current not in worker.outcomes:
                return f"{worker.name}'s session {worker.current} never finished its lock() call"
        return None

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        """The servers' trace is Raft's: it is validated against spec/raft."""
        return spec_events(self.server_events(events), self.servers)[2]

    def server_events(self, events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The servers' events (the storage service logs its own, of spec/lock.py)."""
        names = {f"s{i}" for i in range(1, self.servers + 1)}
        return [e for e in events if e.get("actor") is None or e.get("actor") in names]

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        if split is not None:
            raise UsageError("the replicated lock service's trace is one Raft log: validate it without --split")
        return spec_events(self.server_events(trace_events(trace)), self.servers, max_states)[2]


class LeaseNemesis(ChoiceSource):
    """A fault aimed where the lease-waiting rule matters: crash the leader just
    after it granted or renewed a lease while another session waits for the lock
    (once or twice a run, where crashes are allowed).  The holder then trusts its
    lease for nearly its whole length and will not renew for a while, so the next
    leader must wait it out before it hands the lock to the waiter.  Every other
    choice is the inner source's (the Raft nemesis's)."""

    def __init__(
        self,
        inner: ChoiceSource,
        servers: Sequence[impl_replicated.LockNode],
        lock: str,
        faults: FaultPolicy,
        rng: random.Random,
    ) -> None:
        self.inner = inner
        self.servers = list(servers)
        self.lock = lock
        self.strikes = rng.choice((1, 2)) if faults.crash else 0
        #: (leader, holder's token, its renewals) when last looked at
        self.seen: tuple[str, int, int] | None = None

    def choose(self, options: Sequence[Choice]) -> int:
        if self.strikes:
            texts = [o.text for o in options]
            for server in self.servers:
                if not hasattr(server, "log") or server.role != LEADER:
                    continue
                table = server.lock_machine.locks.get(self.lock)
                holder = None if table is None or table.holder is None else table.by_token(table.holder)
                if holder is None:
                    continue
                now = (server.name, holder.token, holder.renewals)
                fresh, self.seen = now != self.seen, now
                text = f"crash {server.name}"
                if fresh and table is not None and table.queue and text in texts:
                    self.strikes -= 1
                    return texts.index(text)
        return self.inner.choose(options)


def _slow(clocks: dict[str, SlowClock], node: str, rate: float) -> Callable[[Context], Context]:
    def wrap(ctx: Context) -> Context:
        clocks[node] = SlowClock(ctx, rate)
        return clocks[node]

    return wrap


def _system(system: Any) -> ReplicatedLockSystem:
    assert isinstance(system, ReplicatedLockSystem)
    return system


@attrs.define
class ReplicatedLockSystem:
    service: lock_workers.ReplicatedService
    raft: RaftSystem
    clocks: dict[str, SlowClock]
    #: token -> (session, server) where the token was first seen
    owners: dict[int, tuple[str, str]] = attrs.field(factory=dict)
