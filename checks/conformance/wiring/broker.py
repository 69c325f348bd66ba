"""The message broker (``impl/messaging/``) wired to ``spec/broker.py``.

What is checked, and what is not yet.  After every step of a controlled run, the
spec's four invariants are checked on the implementation's real state, under the
spec's names: **NoConfirmedLoss** (every message confirmed to the producer is in
the broker's log as synced, stored and not removed, or its effect was applied, as
the consumers' shared store's synced log says: so what a crash now would keep),
**RemovedAfterAck** (every removal in the broker's synced log is of a message a
consumer applied), **RedeliveryMarked** (at most one delivery attempt of a message
is unmarked) and **EffectivelyOnce** (no effect applied twice).  At the end of the
run: every message confirmed and applied, and the total-queue check
(``checks.histories.queue``) on what the clients saw.

The broker does not yet log its steps in the spec's vocabulary, so a run's trace
is empty and there is no trace to validate: ``validate`` says so instead of
passing an empty trace off as a validated one (issue #15).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import Validation
from distcheck.checks.histories.queue import Delivery, check_total_queue
from distcheck.impl.messaging import broker as impl_broker
from distcheck.impl.messaging import simulation as sim_broker
from distcheck.impl.runtime import FaultPolicy, NodeMain, Simulation
from distcheck.spec.contract import Spec

CONSUMER_VARIANTS = {"non_idempotent_consumer": "the consumers apply every delivery, copies included"}


class BrokerWiring(Wiring):
    spec_name = "broker"
    variants: Mapping[str, str] = {**impl_broker.VARIANTS, **CONSUMER_VARIANTS}
    default_params = ("messages=4", "consumers=2")
    default_steps = 3000
    incremental_trace = False

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        broker_variant = variant if variant in impl_broker.VARIANTS else None
        return sim_broker.system(
            int(params.get("messages", 4)),
            int(params.get("consumers", 2)),
            variant=broker_variant,
            idempotent=variant not in CONSUMER_VARIANTS,
        )

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        s: sim_broker.System = system
        return s.nodes()

    def fault_policy(self, faults: FaultPolicy, system: Any) -> FaultPolicy:
        return faults

    # ------------------------------------------------------------ the real state

    def applied(self, sim: Simulation, system: sim_broker.System) -> set[str]:
        """What a crash of the consumers' store now would keep as applied."""
        return {str(r["applied"]) for r in sim.durable_records(system.store.name, "effects")}

    def kept(self, sim: Simulation) -> tuple[set[str], set[str]]:
        """What the broker's synced log holds: stored (not removed), and removed."""
        stored: set[str] = set()
        removed: set[str] = set()
        for record in sim.durable_records(sim_broker.BROKER, impl_broker.BrokerNode.LOG):
            if "put" in record:
                stored.add(str(record["put"]))
            elif "ack" in record:
                stored.discard(str(record["ack"]))
                removed.add(str(record["ack"]))
        return stored, removed

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        s: sim_broker.System = system
        applied = self.applied(sim, s)
        stored, removed = self.kept(sim)
        lost = sorted(m for m in s.producer.confirmed if m not in stored and m not in applied)
        if lost:
            return f"NoConfirmedLoss violated: {lost[0]} was confirmed, and a crash now would leave it nowhere"
        unapplied = sorted(removed - applied)
        if unapplied:
            return f"RemovedAfterAck violated: {unapplied[0]} was removed, and no consumer applied it"
        unmarked: dict[str, int] = {}
        for c in s.consumers:
            for a in c.attempts:
                if not a.redelivered:
                    unmarked[a.id] = unmarked.get(a.id, 0) + 1
        twice = sorted(m for m, n in unmarked.items() if n > 1)
        if twice:
            return f"RedeliveryMarked violated: {twice[0]} was delivered again without the redelivered mark"
        effects = s.applied()
        doubled = sorted({m for m in effects if effects.count(m) > 1})
        if doubled:
            return f"EffectivelyOnce violated: the effect of {doubled[0]} was applied twice"
        return None

    def done(self, sim: Simulation, system: Any) -> bool:
        s: sim_broker.System = system
        return s.done()

    def finished(self, sim: Simulation, system: Any) -> str | None:
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
        s: sim_broker.System = system
        if not s.done():
            missing = sorted({f"m{i}" for i in range(1, s.producer.messages + 1)} - s.producer.confirmed)
            return f"the run ended with messages not confirmed or not applied (unconfirmed: {missing})"
        attempts = sorted((a for c in s.consumers for a in c.attempts), key=lambda a: a.redelivered)
        verdict = check_total_queue(
            s.producer.published,
            s.producer.confirmed,
            [Delivery(a.id, a.redelivered) for a in attempts],
            {a.id for a in attempts},
        )
        return None if verdict.ok else f"the total-queue check failed: {verdict.message}"

    def validate(self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]]) -> Validation:
        if events:
            raise AssertionError("the broker logs no trace yet; this wiring must validate it when it does")
        return Validation("ok", 0, 0, message="no trace: the broker does not log its steps yet (issue #15)")
