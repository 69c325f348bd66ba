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

The broker, the producer and the consumers log their steps in the spec's
vocabulary (the network's duplicates aside, which ``validate_broker`` puts back),
and a run's trace is validated against spec/broker with no bounds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from distcheck.checks.conformance.directed import validate_directed
from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import Validation, trace_events, validate_events
from distcheck.checks.histories.queue import Delivery, check_total_queue
from distcheck.checks.params import UsageError
from distcheck.checks.traces.trace import Trace
from distcheck.impl.messaging import broker as impl_broker
from distcheck.impl.messaging import simulation as sim_broker
from distcheck.impl.runtime import FaultPolicy, NodeMain, Simulation
from distcheck.spec.broker import ACKS, PUBLISHES, Broker, BrokerState, Config
from distcheck.spec.contract import Spec

CONSUMER_VARIANTS = {"non_idempotent_consumer": "the consumers apply every delivery, copies included"}


class BrokerWiring(Wiring):
    spec_name = "broker"
    variants: Mapping[str, str] = {**impl_broker.VARIANTS, **CONSUMER_VARIANTS}
    default_params = ("messages=4", "consumers=2")
    default_steps = 3000
    incremental_trace = False  # validated once at the end (duplicates are found by looking back)
    unbounded_params = ("max_msgs", "max_crashes", "max_deliveries")

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

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        if not isinstance(spec, Broker):
            raise TypeError(f"the broker validates against spec/broker, not {type(spec).__name__}")
        return validate_broker(events, spec.config.messages, spec.config.consumers)[1]

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        """A broker trace: the network's duplicates put back (``validate_broker``), then
        the generic search over the result, against the spec with no bounds."""
        if not isinstance(spec, Broker):
            raise TypeError(f"the broker validates against spec/broker, not {type(spec).__name__}")
        if split is not None:
            raise UsageError("a broker trace is one instance: validate it without --split")
        events, directed = validate_broker(trace_events(trace), spec.config.messages, spec.config.consumers)
        if not directed.ok:
            return directed
        return validate_events(unbounded(spec.config.messages, spec.config.consumers), events, max_states=max_states)


def unbounded(messages: int, consumers: int) -> Broker:
    """The spec a whole run is checked against: the run's messages and consumers, no
    bound on crashes, deliveries or messages in flight."""
    big = 1_000_000
    return Broker(Config(messages, consumers, max_msgs=big, max_crashes=big, max_deliveries=big))


#: the receipts a network's duplicate can explain: the action, and the bag its copy is taken from
_RECEIPTS = {"Receive": PUBLISHES, "Ack": ACKS}


def validate_broker(
    events: Sequence[Mapping[str, Any]], messages: int, consumers: int
) -> tuple[list[dict[str, Any]], Validation]:
    """Is a run's trace a behaviour of spec/broker?  Every step but the network's is
    logged, so the trace is followed step by step, each event's action applied to
    the one state it leads to (a message lost stays in the spec's bag, where it does
    no harm); a receipt no copy explains (the publish or acknowledgement was
    received as many times as it was sent) is explained by the network's
    ``Duplicate`` (``checks.conformance.directed``).  The events with those
    duplicates (numbered again), and the verdict."""
    spec = unbounded(messages, consumers)

    def step(states: Sequence[BrokerState], event: Mapping[str, Any]) -> list[BrokerState]:
        try:
            action = spec.action_from_json(event.get("action"))
        except (KeyError, TypeError, ValueError):
            return []
        out = []
        for state in states:
            nxt = spec.next_state(state, action)
            if nxt is not None and spec.observe(state, action) == {
                "actor": event.get("actor"),
                "action": event["action"],
            }:
                out.append(nxt)
        return out

    def receipt(event: Mapping[str, Any]) -> tuple[str, Any] | None:
        action = event.get("action") or {}
        kind = str(action.get("type"))
        return (kind, action.get("m")) if kind in _RECEIPTS else None

    def copy(states: Sequence[BrokerState], event: Mapping[str, Any]) -> dict[str, Any] | None:
        action = event.get("action") or {}
        net = _RECEIPTS[str(action.get("type"))]
        return {"actor": "network", "action": {"type": "Duplicate", "net": net, "m": action.get("m")}}

    verdict, trace = validate_directed(spec, events, step, receipt, copy)
    return trace, verdict
