"""Subcommands for implementations: ``distcheck simulate`` and ``distcheck validate``.

Where it sits: ``checks/cli.py`` calls ``register`` to add these subcommands; each
sets ``handler`` (a function of the parsed arguments returning the exit code) and
raises ``checks.params.UsageError`` on bad input.  This is also where the three
parts meet, as DESIGN.md wants the CLI and the tests to be the only place they do:
a ``Wiring`` per implemented protocol builds the implementation's nodes (``impl/``),
maps the implementation's real state to a spec state (the abstraction function, so
the spec's invariants are checked on what the implementation actually holds), and
says what a finished run must have achieved.  ``simulate`` runs a wiring under the
controlled scheduler and validates the run's trace with ``checks.validate``; the
tests use the same ``simulate`` function with hypothesis drawing the choices.

    distcheck simulate SPEC [-p NAME=VALUE ...] [--seed N] [--runs R]
                       [--strategy random|pct] [--pct-depth D]
                       [--faults crash,drop,duplicate,reorder] [--steps K]
                       [--variant V] [--trace-out FILE] [--json]
    distcheck validate SPEC TRACE [--split KEY] [--max-states N] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from checks import trace as trace_file
from checks.linearizability import Operation, check_history
from checks.params import UsageError, build_spec
from checks.paxos_log import LogTraceError, log_acceptors, validate_log
from checks.render import state_table
from checks.validate import (
    Mismatch,
    Validation,
    Validator,
    action_text,
    trace_events,
    validate_events,
    validate_trace,
)
from impl import lock as impl_lock
from impl import paxos as impl_paxos
from impl import twophase as impl_twophase
from impl.lock import server as lock_server
from impl.lock import storage as lock_storage
from impl.runtime import (
    Choice,
    ChoiceSource,
    Context,
    FaultPolicy,
    NodeMain,
    PCTChoices,
    Queue,
    RandomChoices,
    Received,
    RunResult,
    Simulation,
    Storage,
    TraceLog,
)
from impl.runtime.api import Lock as NodeLock
from impl.runtime.api import Message
from spec import lock as spec_lock
from spec.core import FrozenMap, MessageSet, Spec
from spec.paxos import Paxos
from spec.twophase import Abort, Commit, Prepared, TPState

STRATEGIES = ("random", "pct")

# ------------------------------------------------------------------- wirings


class Wiring(ABC):
    """How ``simulate`` runs one protocol's implementation against its spec."""

    spec_name: str = ""
    #: the implementation's deliberately broken variants (name → what is wrong)
    variants: Mapping[str, str] = {}
    #: the event key that separates independent protocol instances in the trace
    split_key: str | None = None
    #: parameters used unless the command line sets them (the spec's defaults may
    #: be too small a model for a run of the implementation to fit in)
    default_params: tuple[str, ...] = ()
    #: scheduler steps per run unless ``--steps`` says otherwise (faults in the first half)
    default_steps: int = 2000

    def wrap_choices(self, choices: ChoiceSource, seed: int, system: Any, faults: FaultPolicy) -> ChoiceSource:
        """The scheduler's choices for one run; a wiring may add its own faults."""
        return choices

    @abstractmethod
    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        """A fresh implementation (its environment's choices drawn from ``rng``)."""

    @abstractmethod
    def nodes(self, system: Any) -> dict[str, NodeMain]: ...

    def abstract(self, sim: Simulation, system: Any) -> Any:
        """The spec state that the implementation's real state stands for."""
        raise NotImplementedError(f"{type(self).__name__} checks the implementation's state with check_state")

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        """After every step: what is wrong with the implementation's state, or None.
        By default, the spec's invariants on the abstraction of that state."""
        state = self.abstract(sim, system)
        for inv in spec.invariants():
            if not inv.holds(state):
                return f"{inv.name} violated: {inv.statement}\n{state_table(state)}"
        return None

    #: whether the trace is validated event by event during the run (so the run
    #: stops at the first unexplained event) or only once, at the end
    incremental_trace: bool = True

    def validate(self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]]) -> Validation:
        """Is the run's trace a behaviour of the spec?"""
        return validate_events(spec, events, split_key=self.split_key)

    def fault_policy(self, faults: FaultPolicy, system: Any) -> FaultPolicy:
        """The faults the scheduler may inject into this system (e.g. which nodes may crash)."""
        return faults

    def done(self, sim: Simulation, system: Any) -> bool:
        """For a system that never goes quiet: has the run done its work (asked only
        once faults are over and every node is up)?"""
        return False

    @abstractmethod
    def finished(self, sim: Simulation, system: Any) -> str | None:
        """At the end of a run (no faults left, nothing more to do): what is wrong, or None."""


class TwoPhaseWiring(Wiring):
    """``impl.twophase`` (one transaction ``t1`` across RMs r1..rN) against ``spec.twophase``.

    Abstraction: an RM's state is what its log holds (its memory never runs ahead
    of its log: an RM makes a state durable before acting on it); the TM is done
    when it has a decision in memory or in its log; ``tm_prepared`` is the votes the
    TM holds in memory; ``msgs`` is every Prepared, Commit and Abort ever sent."""

    spec_name = "twophase"
    variants = impl_twophase.VARIANTS
    split_key = "txn"
    txn = "t1"
    no_vote_probability = 0.1

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        rms = int(params.get("rms", 3))
        no_votes = [(f"r{i}", self.txn) for i in range(1, rms + 1) if rng.random() < self.no_vote_probability]
        return impl_twophase.cluster(rms, (self.txn,), no_votes, variant)

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        cluster: impl_twophase.Cluster = system
        return cluster.nodes()

    def rm_state(self, sim: Simulation, rm: impl_twophase.ResourceManager) -> str:
        durable = impl_twophase.ResourceManager.recover(sim.durable_records(rm.name, rm.LOG))
        return durable.get(self.txn, impl_twophase.WORKING)

    def abstract(self, sim: Simulation, system: Any) -> TPState:
        cluster: impl_twophase.Cluster = system
        tm = cluster.coordinator
        logged = impl_twophase.Coordinator.recover(sim.durable_records(tm.name, tm.LOG)).get(self.txn)
        in_memory = tm.txns.get(self.txn) if sim.is_up(tm.name) else None
        decided = (logged is not None and logged.decision is not None) or (
            in_memory is not None and in_memory.decision is not None
        )
        prepared = frozenset(in_memory.prepared) if in_memory is not None else frozenset()
        msgs: list[Prepared | Commit | Abort] = []
        for _, _, msg in sim.sent:
            kind = msg.get("type")
            if kind == "Prepared":
                msgs.append(Prepared(str(msg["rm"])))
            elif kind == "Commit":
                msgs.append(Commit())
            elif kind == "Abort":
                msgs.append(Abort())
        return TPState(
            rm_state=FrozenMap({rm.name: self.rm_state(sim, rm) for rm in cluster.rms}),
            tm_state="done" if decided else "init",
            tm_prepared=prepared,
            msgs=MessageSet(frozenset(msgs)),
        )

    def finished(self, sim: Simulation, system: Any) -> str | None:
        cluster: impl_twophase.Cluster = system
        states = {rm.name: self.rm_state(sim, rm) for rm in cluster.rms}
        undecided = [name for name, s in states.items() if s not in (impl_twophase.COMMITTED, impl_twophase.ABORTED)]
        if undecided:
            return f"the run ended with {', '.join(undecided)} undecided: {states}"
        outcomes = set(states.values())
        applied = {(rm.name, outcome) for rm in cluster.rms for _, outcome in rm.applied}
        if len(outcomes) > 1 or len({o for _, o in applied}) > 1:
            return f"RMs disagree on the outcome: logs {states}, applied {sorted(applied)}"
        learned = cluster.client.outcomes.get(self.txn)
        if learned not in outcomes:
            return f"the client learned {learned!r} but the RMs {outcomes.pop()}"
        return None


class SlowClock(Context):
    """A node's context whose clock runs at ``rate`` (at most 1: slow) of the
    runtime's, for every timing call (now, sleep, timeouts, timers, queue waits): the
    bounded clock drift of spec/lock.py, injected without the node knowing."""

    def __init__(self, inner: Context, rate: float) -> None:
        self.inner = inner
        self.rate = rate
        self.name = inner.name
        self.origin = inner.now()

    def at(self, runtime_time: float) -> float:
        """This clock's reading when the runtime's clock reads ``runtime_time``."""
        return self.origin + (runtime_time - self.origin) * self.rate

    def _span(self, seconds: float | None) -> float | None:
        return None if seconds is None else seconds / self.rate

    def send(self, dst: str, msg: Message) -> None:
        self.inner.send(dst, msg)

    def receive(self, timeout: float | None = None) -> Received | None:
        return self.inner.receive(self._span(timeout))

    def set_timer(self, name: str, delay: float) -> None:
        self.inner.set_timer(name, delay / self.rate)

    def cancel_timer(self, name: str) -> None:
        self.inner.cancel_timer(name)

    def now(self) -> float:
        return self.at(self.inner.now())

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds / self.rate)

    def yield_now(self) -> None:
        self.inner.yield_now()

    def lock(self) -> NodeLock:
        return self.inner.lock()

    def queue(self) -> Queue:
        return _SlowQueue(self.inner.queue(), self)

    def storage(self, name: str) -> Storage:
        return self.inner.storage(name)

    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        self.inner.spawn(name, fn)

    def record(self, action: Mapping[str, Any], **extra: Any) -> None:
        self.inner.record(action, **extra)

    def log(self, text: str) -> None:
        self.inner.log(text)


class _SlowQueue(Queue):
    def __init__(self, inner: Queue, clock: SlowClock) -> None:
        self.inner = inner
        self.clock = clock

    def put(self, item: Any) -> None:
        self.inner.put(item)

    def get(self, timeout: float | None = None) -> Any | None:
        return self.inner.get(self.clock._span(timeout))


class PausingChoices(ChoiceSource):
    """Process pauses (a long garbage collection): now and then the scheduler
    freezes every thread of one client node while the clock advances ``advances``
    times, then lets it go on as if nothing happened.  Messages keep moving."""

    def __init__(
        self,
        inner: ChoiceSource,
        nodes: Sequence[str],
        rng: random.Random,
        rate: float = 0.02,
        advances: tuple[int, int] = (1, 6),
        at_send_rate: float = 0.1,
    ) -> None:
        self.inner = inner
        self.at_send_rate = at_send_rate
        self.nodes = tuple(nodes)
        self.rng = rng
        self.rate = rate
        self.advances = advances
        self.paused: dict[str, int] = {}  # node -> clock advances left
        self.pauses = 0

    @staticmethod
    def node_of(option: Choice) -> str:
        return option.agent.split(".")[0].split("#")[0] if option.kind == "run" else ""

    def choose(self, options: Sequence[Choice]) -> int:
        runnable = sorted({self.node_of(o) for o in options} & set(self.nodes))
        # A pause strikes anywhere, but hurts most just before a message leaves (the
        # client checked its lease, then stalls before its write goes out), so a
        # node about to send is paused more often.
        sending = sorted({self.node_of(o) for o in options if o.text.endswith("(send)")} & set(self.nodes))
        if sending and self.rng.random() < self.at_send_rate:
            runnable = sending
        elif not (runnable and self.rng.random() < self.rate):
            runnable = []
        if runnable:
            node = self.rng.choice(runnable)
            if node not in self.paused:
                self.paused[node] = self.rng.randint(*self.advances)
                self.pauses += 1
        allowed = [i for i, o in enumerate(options) if self.node_of(o) not in self.paused]
        if not allowed:  # nothing else can happen, not even time: the pause is over
            self.paused.clear()
            allowed = list(range(len(options)))
        index = allowed[self.inner.choose([options[i] for i in allowed])]
        if options[index].kind == "advance":
            self.paused = {n: left - 1 for n, left in self.paused.items() if left > 1}
        return index


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
        lock_system: LockSystem = system
        tokens = [int(w["token"]) for w in self.store_state(sim).writes if w["lock"] == self.lock_name]
        if tokens != sorted(tokens):
            return f"FencedWrites broken in storage's contents: accepted writes carry tokens {tokens}, in that order"
        for worker in lock_system.service.workers:
            if worker.current is not None and worker.current not in worker.outcomes:
                return f"{worker.name}'s session {worker.current} never finished its lock() call"
        return None


class PaxosWiring(Wiring):
    """``impl.paxos`` (replicas r1..rN, N = ``acceptors``, and two clients running a
    few random key-value operations) against ``spec.paxos``, slot by slot.

    Checked after every step, on the implementation's real state: Agreement in
    every slot, both for what the acceptors voted (a value is chosen in a slot once
    a quorum sent Accepted for it in one ballot; every Accepted ever sent counts)
    and for what each replica learned.  At the end: every client finished, every
    replica applied the same log to the same store, and the clients' results are
    linearizable (``checks.linearizability``).  The trace is validated at the end,
    each slot against spec/paxos (``checks.paxos_log``).  Clients do not crash;
    replicas do."""

    spec_name = "paxos"
    variants = impl_paxos.VARIANTS
    split_key = "slot"
    default_params = ("acceptors=3",)
    incremental_trace = False
    # Elections, heartbeats and retries make a run of a replicated log long.
    default_steps = 5000
    clients = ("c1", "c2")
    keys = ("x", "y")

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        replicas = int(params.get("acceptors", 3))
        workloads = {c: [self.random_op(rng) for _ in range(rng.randint(2, 4))] for c in self.clients}
        return PaxosSystem(impl_paxos.cluster(replicas, workloads, variant))

    def random_op(self, rng: random.Random) -> dict[str, Any]:
        key = rng.choice(self.keys)
        kind = rng.choice(("put", "get", "cas"))
        if kind == "put":
            return impl_paxos.put(key, rng.randint(1, 3))
        if kind == "get":
            return impl_paxos.get(key)
        return impl_paxos.cas(key, rng.choice((None, 1, 2, 3)), rng.randint(1, 3))

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        paxos_system: PaxosSystem = system
        return paxos_system.cluster.nodes()

    def wrap_choices(self, choices: ChoiceSource, seed: int, system: Any, faults: FaultPolicy) -> ChoiceSource:
        paxos_system: PaxosSystem = system
        if not (faults.crash and faults.partition):
            return choices
        return LeaderNemesis(choices, paxos_system.cluster.replicas, random.Random(f"nemesis {seed}"))

    def fault_policy(self, faults: FaultPolicy, system: Any) -> FaultPolicy:
        paxos_system: PaxosSystem = system
        replicas = tuple(r.name for r in paxos_system.cluster.replicas)
        return attrs.evolve(faults, crashable=replicas, partitioned=replicas)

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        paxos_system: PaxosSystem = system
        replicas = paxos_system.cluster.replicas
        quorum = len(replicas) // 2 + 1
        for src, _, msg in sim.sent[paxos_system.seen :]:
            if msg.get("type") != "Accepted":
                continue
            slot, bal, val = int(msg["slot"]), int(msg["bal"]), str(msg["val"])
            voters = paxos_system.votes.setdefault((slot, bal, val), set())
            voters.add(src)
            if len(voters) >= quorum:
                paxos_system.chosen.setdefault(slot, {}).setdefault(val, (bal, tuple(sorted(voters))))
        paxos_system.seen = len(sim.sent)
        for slot, values in sorted(paxos_system.chosen.items()):
            if len(values) > 1:
                how = "; ".join(f"{v} in ballot {b} by {', '.join(who)}" for v, (b, who) in sorted(values.items()))
                return f"Agreement violated in slot {slot}: two values chosen: {how}"
        learned: dict[int, dict[str, str]] = {}
        for r in replicas:
            for slot, val in r.learned:
                learned.setdefault(slot, {}).setdefault(val, r.name)
        for slot, by in sorted(learned.items()):
            if len(by) > 1:
                how = ", ".join(f"{who} learned {v}" for v, who in sorted(by.items()))
                return f"Agreement violated in slot {slot}: replicas learned different values: {how}"
        return None

    def done(self, sim: Simulation, system: Any) -> bool:
        paxos_system: PaxosSystem = system
        cluster = paxos_system.cluster
        if any(len(c.results) < len(c.ops) for c in cluster.clients):
            return False
        known = max((slot + 1 for r in cluster.replicas for slot in r.chosen), default=0)
        return all(r.applied == known for r in cluster.replicas)

    def finished(self, sim: Simulation, system: Any) -> str | None:
        paxos_system: PaxosSystem = system
        cluster = paxos_system.cluster
        for c in cluster.clients:
            if len(c.results) < len(c.ops):
                return f"client {c.name} finished {len(c.results)} of its {len(c.ops)} operations"
        logs = {r.name: [impl_paxos.command_id(r.chosen[s]) for s in range(r.applied)] for r in cluster.replicas}
        if len({tuple(log) for log in logs.values()}) > 1:
            return "replicas applied different logs: " + "; ".join(f"{n}: {log}" for n, log in logs.items())
        stores = {r.name: r.store.data for r in cluster.replicas}
        if any(data != stores[cluster.replicas[0].name] for data in stores.values()):
            return f"replicas hold different stores: {stores}"
        history = [Operation(e.client, e.call, e.ret, e.op, e.result) for e in cluster.history.entries]
        verdict = check_history(history)
        if not verdict.ok:
            return f"the clients' results are {verdict.message}"
        return None

    def validate(self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]]) -> Validation:
        replicas = spec.config.acceptors if isinstance(spec, Paxos) else 3
        return validate_log(events, [f"r{i}" for i in range(1, replicas + 1)])


class LeaderNemesis(ChoiceSource):
    """A targeted fault, as Jepsen's nemeses aim at the primary: in about half the
    runs, once some replica leads, cut one follower off from the other replicas,
    let the leader get a value chosen by the remaining bare majority, crash the
    leader, then heal.  The next leader must find that value in the votes the
    survivors remember; random faults alone rarely line these steps up.  Every
    other choice is the inner source's, without crashes and partitions until the
    nemesis is done (so that their budgets are left for it)."""

    def __init__(self, inner: ChoiceSource, replicas: Sequence[impl_paxos.Replica], rng: random.Random) -> None:
        self.inner = inner
        self.replicas = list(replicas)
        self.rng = rng
        self.phase = "wait" if rng.random() < 0.5 else "off"
        self.leader: impl_paxos.Replica | None = None
        self.learned = 0

    def choose(self, options: Sequence[Choice]) -> int:
        texts = [o.text for o in options]
        if self.phase == "wait":
            leaders = [r for r in self.replicas if r.role == impl_paxos.LEADER]
            followers = [r for r in self.replicas if r.role != impl_paxos.LEADER]
            if leaders and followers:
                cut = f"isolate {self.rng.choice(followers).name}"
                if cut in texts:
                    self.leader, self.learned, self.phase = leaders[0], len(leaders[0].learned), "cut"
                    return texts.index(cut)
        elif self.phase == "cut" and self.leader is not None:
            crash = f"crash {self.leader.name}"
            if len(self.leader.learned) > self.learned and crash in texts:
                self.phase = "crashed"
                return texts.index(crash)
        elif self.phase == "crashed" and "heal the partition" in texts:
            self.phase = "off"
            return texts.index("heal the partition")
        if self.phase != "off":
            # Until it is done, the nemesis owns the crash and partition budgets.
            kept = [i for i, o in enumerate(options) if o.kind not in ("crash", "partition", "heal")]
            if kept:
                return kept[self.inner.choose([options[i] for i in kept])]
        return self.inner.choose(options)


@attrs.define
class PaxosSystem:
    cluster: impl_paxos.Cluster
    #: (slot, ballot, value) -> the acceptors that sent Accepted for it
    votes: dict[tuple[int, int, str], set[str]] = attrs.field(factory=dict)
    #: slot -> value -> (ballot, voters) for each value a quorum voted for
    chosen: dict[int, dict[str, tuple[int, tuple[str, ...]]]] = attrs.field(factory=dict)
    #: how many of ``sim.sent`` have been read
    seen: int = 0


@attrs.define
class LockSystem:
    service: impl_lock.Service
    clocks: dict[str, SlowClock]
    clients: int
    ttl: int
    #: session -> the server's tick when the abstraction first saw it crashed
    crashed_at: dict[str, int]


WIRINGS: dict[str, Wiring] = {w.spec_name: w for w in (TwoPhaseWiring(), LockWiring(), PaxosWiring())}


def find_wiring(name: str) -> Wiring:
    wiring = WIRINGS.get(name)
    if wiring is None:
        raise UsageError(f"no implementation of {name!r} to simulate; implemented: {', '.join(WIRINGS)}")
    return wiring


# ----------------------------------------------------------------- simulate


@attrs.frozen
class SimOptions:
    seed: int = 0
    strategy: str = "random"
    faults: FaultPolicy = FaultPolicy()
    #: the most scheduler steps a run may take; faults only in the first half, so
    #: that the run can recover and finish
    steps: int = 2000
    pct_depth: int = 3
    variant: str | None = None
    #: the two independent checks, each of which can be turned off to show that
    #: the other one alone catches a broken variant
    check_invariants: bool = True
    check_trace: bool = True


@attrs.frozen
class SimOutcome:
    """status: ok, or why the run failed: violation (an invariant of the spec on the
    abstraction, or the end-of-run check), deadlock, error (a node raised),
    step_limit (did not finish), invalid_trace (the trace is not a behaviour)."""

    status: str
    message: str
    run: RunResult
    validation: Validation

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def make_choices(options: SimOptions) -> ChoiceSource:
    if options.strategy == "pct":
        return PCTChoices(options.seed, depth=options.pct_depth, expected_steps=max(options.steps // 4, 2))
    return RandomChoices(options.seed)


def simulate(
    spec: Spec[Any, Any],
    wiring: Wiring,
    params: Mapping[str, Any],
    options: SimOptions,
    choices: ChoiceSource | None = None,
    environment: random.Random | None = None,
) -> SimOutcome:
    """One controlled run: the spec's invariants are checked on the abstraction of
    the implementation's state after every step, the wiring's end-of-run check at
    the end, and the trace the nodes recorded is validated against the spec."""
    system = wiring.build(params, options.variant, environment or random.Random(options.seed))
    if choices is None:
        choices = wiring.wrap_choices(make_choices(options), options.seed, system, options.faults)
    tracelog = TraceLog(wiring.spec_name, params, None, source="simulate")
    if options.variant is not None:
        tracelog.header["impl_variant"] = options.variant
    validator = Validator(spec, split_key=wiring.split_key)
    fed = 0

    def check(sim: Simulation) -> str | None:
        nonlocal fed
        # The trace first: a run stops at the first event the spec cannot explain.
        while options.check_trace and wiring.incremental_trace and fed < len(tracelog.events):
            fed += 1
            mismatch = validator.feed(tracelog.events[fed - 1])
            if mismatch is not None:
                return f"the trace is not a behaviour of {spec.name}: {mismatch.reason}"
        if not options.check_invariants:
            return None
        return wiring.check_state(spec, sim, system)

    sim = Simulation(
        wiring.nodes(system),
        choices,
        wiring.fault_policy(options.faults, system),
        fault_steps=options.steps // 2,
        max_steps=options.steps,
        trace=tracelog,
        check=check,
        final_check=lambda s: wiring.finished(s, system),
        until=lambda s: wiring.done(s, system),
    )
    run = sim.run()
    # Validate the whole trace once more from scratch: a run that stopped on an
    # invariant still tells whether its trace was a behaviour up to there.
    validation = wiring.validate(spec, tracelog.events)
    if options.check_trace and not validation.ok and run.status in ("ok", "violation"):
        return SimOutcome("invalid_trace", validation.message, run, validation)
    return SimOutcome(run.status, run.message, run, validation)


def _fault_policy(text: str | None) -> FaultPolicy:
    if not text:
        return FaultPolicy()
    try:
        return FaultPolicy.parse(text)
    except ValueError as exc:
        raise UsageError(f"--faults: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    wiring = find_wiring(args.spec)
    entry, params, spec = build_spec(args.spec, [*wiring.default_params, *args.param])
    if args.variant is not None and args.variant not in wiring.variants:
        allowed = ", ".join(wiring.variants) or "none"
        raise UsageError(f"unknown implementation variant {args.variant!r} for {entry.name}; allowed: {allowed}")
    steps = wiring.default_steps if args.steps is None else args.steps
    faults = _fault_policy(args.faults)
    started = time.perf_counter()
    passed = 0
    failure: tuple[int, SimOutcome] | None = None
    last: SimOutcome | None = None
    for seed in range(args.seed, args.seed + args.runs):
        options = SimOptions(seed, args.strategy, faults, steps, args.pct_depth, args.variant)
        last = simulate(spec, wiring, params, options)
        if not last.ok:
            failure = (seed, last)
            break
        passed += 1
    seconds = time.perf_counter() - started
    assert last is not None
    shown = failure[1] if failure else last
    if args.trace_out:
        Path(args.trace_out).write_text(shown.run.trace.text())
    replay = (
        f"distcheck simulate {entry.name}"
        + "".join(f" -p {k}={v}" for k, v in params.items())
        + f" --seed {failure[0] if failure else args.seed} --strategy {args.strategy}"
        + (f" --pct-depth {args.pct_depth}" if args.strategy == "pct" else "")
        + (f" --faults {','.join(faults.names())}" if faults.names() else "")
        + f" --steps {steps}"
        + (f" --variant {args.variant}" if args.variant else "")
    )
    if args.json:
        out: dict[str, Any] = {
            "spec": entry.name,
            "params": params,
            "variant": args.variant,
            "strategy": args.strategy,
            "faults": faults.names(),
            "seeds": [args.seed, args.seed + args.runs - 1],
            "passed": passed,
            "failed": 0 if failure is None else 1,
            "seconds": round(seconds, 3),
            "result": "ok" if failure is None else failure[1].status,
        }
        if failure is not None:
            seed, outcome = failure
            out["failure"] = {
                "seed": seed,
                "status": outcome.status,
                "message": outcome.message,
                "steps": outcome.run.steps,
                "choices": outcome.run.indices,
                "schedule": outcome.run.render().splitlines(),
                "trace": [json.loads(line) for line in outcome.run.trace.lines()],
                "validation": validation_json(outcome.validation),
                "replay": replay,
            }
        print(json.dumps(out, indent=2))
        return 0 if failure is None else 1
    label = f"{entry.name}" + "".join(f" {k}={v}" for k, v in params.items())
    label += f" strategy={args.strategy}" + (f" faults={','.join(faults.names())}" if faults.names() else "")
    label += f" variant={args.variant}" if args.variant else ""
    if failure is None:
        print(
            f"{label}: ok: {passed} schedule(s) passed (seeds {args.seed}..{args.seed + args.runs - 1}), "
            f"invariants checked after every step and every trace valid, {seconds:.2f} s"
        )
        return 0
    seed, outcome = failure
    print(f"{label}: {outcome.status} with seed {seed} after {passed} passing schedule(s)\n")
    print(outcome.run.render(compact=True))
    if not outcome.validation.ok:
        print()
        print(validation_text(outcome.validation, "the run's trace"))
    print(f"\nreplay: {replay}")
    return 1


# ----------------------------------------------------------------- validate


def validation_json(v: Validation) -> dict[str, Any]:
    out: dict[str, Any] = {"result": v.outcome, "events": v.events, "states_explored": v.states_explored}
    if v.message:
        out["message"] = v.message
    if v.mismatch is not None:
        m = v.mismatch
        out["mismatch"] = {
            "step": m.step,
            "line": m.step + 2,
            "event": dict(m.event),
            "reason": m.reason,
            "group": m.group,
            "possible_states": [state_table(s).splitlines() for s in m.possible[:10]],
            "possible_count": len(m.possible),
            "expected": [dict(o) for o in m.expected],
        }
    return out


def validation_text(v: Validation, what: str) -> str:
    if v.ok:
        return f"{what}: ok, {v.message}"
    if v.mismatch is None:
        return f"{what}: no answer: {v.message}"
    m = v.mismatch
    lines = [f"{what}: step {m.step} (line {m.step + 2}) is not explained", f"  {m.reason}", ""]
    lines.append(f"  the spec state(s) possible just before it ({len(m.possible)}):")
    for state in m.possible[:5]:
        lines += ["    " + line for line in state_table(state).splitlines()]
        lines.append("")
    if len(m.possible) > 5:
        lines.append(f"    ... and {len(m.possible) - 5} more")
    if m.expected:
        lines.append("  what the spec could have logged instead:")
        lines += [f"    {o.get('actor')} {action_text(o.get('action'))}" for o in m.expected[:12]]
    else:
        lines.append("  the spec can take no further step there")
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        recorded = trace_file.read(args.trace)
    except trace_file.TraceFormatError as exc:
        raise UsageError(f"malformed trace {exc}") from None
    header = recorded.header
    if header.spec != args.spec:
        raise UsageError(f"{args.trace} is a trace of {header.spec!r}, not {args.spec!r}")
    raw = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in header.params.items()]
    try:
        entry, params, spec = build_spec(args.spec, raw, header.variant)
    except UsageError as exc:
        raise UsageError(f"{args.trace} line 1: {exc}") from None
    if args.max_states < 1:
        raise UsageError(f"--max-states must be positive, got {args.max_states}")
    if isinstance(spec, Paxos) and args.split != "slot" and any("from_slot" in s.extra for s in recorded.steps):
        raise UsageError(
            f"{args.trace} is a replicated log (its events carry from_slot); validate it with --split slot"
        )
    if isinstance(spec, Paxos) and args.split == "slot":
        # A replicated log: each slot against single-decree Paxos (checks/paxos_log.py).
        events = trace_events(recorded)
        try:
            acceptors = log_acceptors(events, spec.config.acceptors)
        except LogTraceError as exc:
            raise UsageError(f"{args.trace}: {exc}") from None
        result = validate_log(events, acceptors)
    else:
        result = validate_trace(spec, recorded, split_key=args.split, max_states=args.max_states)
    if result.outcome == "too_large":
        raise UsageError(f"{args.trace}: {result.message} (raise --max-states, or log more of what happens)")
    if args.json:
        out = {"spec": entry.name, "params": params, "variant": header.variant, "trace": str(args.trace)}
        out.update(validation_json(result))
        print(json.dumps(out, indent=2))
    else:
        label = entry.name + "".join(f" {k}={v}" for k, v in params.items())
        label += f" variant={header.variant}" if header.variant else ""
        print(validation_text(result, f"{args.trace} against {label}"))
    return 0 if result.ok else 1


# ----------------------------------------------------------------- register


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the ``distcheck`` parser."""
    p = sub.add_parser("simulate", help="run our implementation of a spec under the controlled scheduler")
    p.add_argument("spec", help=f"spec name; implemented: {', '.join(WIRINGS)}")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a parameter")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the first run (default 0)")
    p.add_argument("--runs", type=_int_at_least(1), default=1, help="run seeds SEED..SEED+RUNS-1 (default 1)")
    p.add_argument("--strategy", choices=STRATEGIES, default="random", help="where choices come from")
    p.add_argument("--pct-depth", type=_int_at_least(1), default=3, help="PCT bug depth d (default 3)")
    p.add_argument(
        "--faults", default="", help="comma-separated: crash, drop, duplicate, reorder, partition (default none)"
    )
    p.add_argument(
        "--steps",
        type=_int_at_least(10),
        default=None,
        help="most scheduler steps per run; faults only in the first half (default 2000; paxos 5000)",
    )
    p.add_argument("--variant", help="a deliberately broken implementation variant")
    p.add_argument("--trace-out", metavar="FILE", help="write the (first failing, else last) run's trace")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_simulate)

    v = sub.add_parser("validate", help="check that a recorded trace is a behaviour of a spec")
    v.add_argument("spec", help="spec name (must match the trace's header)")
    v.add_argument("trace", help="trace file (JSON Lines, docs/trace-format.md)")
    v.add_argument(
        "--split",
        metavar="KEY",
        help="validate each value of this event key on its own (e.g. txn); for paxos, "
        "--split slot validates a replicated log slot by slot (docs/paxos.md)",
    )
    v.add_argument("--max-states", type=int, default=200_000, help="give up beyond this many possible states")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(handler=cmd_validate)


__all__ = ["Mismatch", "SimOptions", "SimOutcome", "Wiring", "register", "simulate"]
