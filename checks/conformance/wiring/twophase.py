"""The two-phase commit implementation (``impl/twophase.py``) wired to ``spec/twophase.py``."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from distcheck.checks.conformance.simulate import Wiring
from distcheck.impl import twophase as impl_twophase
from distcheck.impl.runtime import NodeMain, Simulation
from distcheck.spec.network import MessageSet
from distcheck.spec.twophase import Abort, Commit, Prepared, TPState
from distcheck.spec.values import FrozenMap


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
        # A handler that raised crashed its node, which was restarted: the run went
        # on, but the code is wrong.
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
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
