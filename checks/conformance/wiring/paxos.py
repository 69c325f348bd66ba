"""The Multi-Paxos replicated log (``impl/paxos.py``) wired to ``spec/paxos.py``,
slot by slot: Agreement per slot after every step, linearizable client results
and per-slot trace validation (``checks.paxos_log``) at the end, and a nemesis
aimed at the leader."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import Validation, trace_events
from distcheck.checks.conformance.wiring.paxos_log import (
    LogTraceError,
    log_acceptors,
    project,
    validate_decree,
    validate_log,
)
from distcheck.checks.histories.linearizability import Operation, check_history
from distcheck.checks.params import UsageError
from distcheck.checks.traces.trace import Trace
from distcheck.impl import paxos as impl_paxos
from distcheck.impl.runtime import Choice, ChoiceSource, FaultPolicy, NodeMain, Simulation
from distcheck.spec.contract import Spec
from distcheck.spec.paxos import Paxos


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
    validate_splits: Mapping[str, str] = MappingProxyType(
        {"slot": "a replicated log, each slot against single-decree Paxos (docs/paxos.md)"}
    )
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

    def history(self, system: Any) -> list[Operation]:
        paxos_system: PaxosSystem = system
        return [Operation(e.client, e.call, e.ret, e.op, e.result) for e in paxos_system.cluster.history.entries]

    def finished(self, sim: Simulation, system: Any) -> str | None:
        # A handler that raised crashed its node, which was restarted: the run went
        # on, but the code is wrong.
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
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

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        if not isinstance(spec, Paxos):
            raise TypeError(f"the replicated log validates against spec/paxos, not {type(spec).__name__}")
        replicas = spec.config.acceptors
        return validate_log(events, [f"r{i}" for i in range(1, replicas + 1)])

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        """A replicated log's trace (its phase 1 events carry ``from_slot``) is only
        a behaviour of spec/paxos slot by slot: ``--split slot`` validates it with
        ``paxos_log``; without it, such a trace is refused rather than misread.  A
        single decree is validated with the same actor naming as a log
        (``paxos_log.validate_decree``: a proposer may log under its own name)."""
        if not isinstance(spec, Paxos):
            raise TypeError(f"the replicated log validates against spec/paxos, not {type(spec).__name__}")
        if split != "slot":
            if any("from_slot" in step.extra for step in trace.steps):
                raise UsageError("a replicated log (its events carry from_slot); validate it with --split slot")
            return validate_decree(spec, trace, split_key=split, max_states=max_states)
        events = trace_events(trace)
        try:
            acceptors = log_acceptors(events, spec.config.acceptors)
            project(events, acceptors)  # a malformed event is bad input, not a mismatch
        except LogTraceError as exc:
            raise UsageError(str(exc)) from None
        return validate_log(events, acceptors)


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
