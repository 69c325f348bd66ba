"""The catalogue of specs: name, parameters (with defaults and ranges), variants.

Where it sits: ``checks/`` (the CLI, ``check all``, the contract tests) finds every
spec here and nowhere else.  A new spec module adds one ``SpecEntry`` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from distcheck.spec import (
    abd,
    broadcast,
    broker,
    circuit_breaker,
    clocks,
    consensus,
    cqrs,
    dynamo,
    event_store,
    failure_detector,
    lock,
    paxos,
    paxoscommit,
    pbft,
    raft,
    reliable_link,
    retry,
    saga,
    twophase,
    voting,
)
from distcheck.spec.contract import Spec


@attrs.frozen
class ParamInfo:
    name: str
    default: Any
    type: type
    help: str
    minimum: int | None
    maximum: int | None


@attrs.frozen
class SpecEntry:
    name: str
    summary: str
    config_type: type
    build: type[Spec[Any, Any]] = attrs.field(eq=False)

    @property
    def variants(self) -> Mapping[str, str]:
        """Each variant's name and one-line description, as the spec declares them."""
        return {name: info.description for name, info in self.build.variants().items()}

    @property
    def variant_params(self) -> Mapping[str, Mapping[str, Any]]:
        """Per variant, the parameters at which its mistake shows (when the default
        size is too small to show it, or too large to explore quickly)."""
        return {name: info.params for name, info in self.build.variants().items() if info.params}

    def params(self) -> list[ParamInfo]:
        """The tunable parameters: every Config field except ``variant``."""
        out = []
        for f in attrs.fields(self.config_type):
            if f.name == "variant":
                continue
            kind = f.type if isinstance(f.type, type) else {"int": int, "bool": bool, "str": str}.get(str(f.type), str)
            out.append(
                ParamInfo(
                    f.name,
                    f.default,
                    kind,
                    f.metadata.get("help", ""),
                    f.metadata.get("minimum"),
                    f.metadata.get("maximum"),
                )
            )
        return out

    def defaults(self, variant: str | None = None) -> dict[str, Any]:
        """Every parameter's value when none is given: the variant's own size, if it
        has one, else the spec's defaults."""
        values = {p.name: p.default for p in self.params()}
        values.update(self.variant_params.get(variant or "", {}))
        return values

    def make(self, variant: str | None = None, **params: Any) -> Spec[Any, Any]:
        """The spec for these parameter values (``defaults(variant)`` for the rest)."""
        return self.build(self.config_type(variant=variant, **{**self.defaults(variant), **params}))


REGISTRY: dict[str, SpecEntry] = {
    entry.name: entry
    for entry in (
        SpecEntry(
            "twophase",
            "Lamport's two-phase commit: a TM, RMs and a message set",
            twophase.Config,
            twophase.TwoPhase,
        ),
        SpecEntry(
            "tcommit",
            "the abstract transaction-commit problem that TwoPhase refines",
            twophase.TCConfig,
            twophase.TCommit,
        ),
        SpecEntry(
            "paxos",
            "Lamport's single-decree Paxos: acceptors, ballots and a message set",
            paxos.Config,
            paxos.Paxos,
        ),
        SpecEntry(
            "voting",
            "Lamport's Voting: the abstraction of Paxos that Paxos refines",
            voting.VotingConfig,
            voting.Voting,
        ),
        SpecEntry(
            "consensus",
            "the consensus problem itself: at most one value is ever chosen",
            consensus.ConsensusConfig,
            consensus.Consensus,
        ),
        SpecEntry(
            "paxoscommit",
            "Gray and Lamport's Paxos Commit: 2PC with each vote decided by Paxos",
            paxoscommit.Config,
            paxoscommit.PaxosCommit,
        ),
        SpecEntry(
            "lock",
            "a lock service with leases, clock drift, fencing tokens, FIFO waiters and leader changes",
            lock.Config,
            lock.Lock,
        ),
        SpecEntry(
            "raft",
            "Ongaro's Raft (raft.tla): elections, log replication, a bag of messages, restarts",
            raft.Config,
            raft.Raft,
        ),
        SpecEntry(
            "reliable_link",
            "a sliding window (Go-Back-N; the alternating-bit protocol at window 1) over lossy channels",
            reliable_link.Config,
            reliable_link.ReliableLink,
        ),
        SpecEntry(
            "fifo_broadcast",
            "FIFO broadcast among N processes over a network that reorders and duplicates",
            broadcast.Config,
            broadcast.FifoBroadcast,
        ),
        SpecEntry(
            "causal_broadcast",
            "causal broadcast with vector clocks (Birman, Schiper, Stephenson)",
            broadcast.Config,
            broadcast.CausalBroadcast,
        ),
        SpecEntry(
            "broker",
            "a durable queue: publisher confirms, acks, a visibility timeout, a broker that crashes",
            broker.Config,
            broker.Broker,
        ),
        SpecEntry(
            "event_store",
            "an event store: appends with an expected version, global positions, a subscription with a checkpoint",
            event_store.Config,
            event_store.EventStore,
        ),
        SpecEntry(
            "cqrs",
            "CQRS: an event-sourced account, a projection over an at-least-once bus, read-your-writes queries",
            cqrs.Config,
            cqrs.Cqrs,
        ),
        SpecEntry(
            "saga",
            "a saga: steps with compensations, orchestrated or choreographed, over lossy networks and crashes",
            saga.Config,
            saga.Saga,
        ),
        SpecEntry(
            "pbft",
            "PBFT: Byzantine consensus, normal case and view change, with a Byzantine primary",
            pbft.Config,
            pbft.Pbft,
        ),
        SpecEntry(
            "abd",
            "ABD: a linearizable multi-writer register on majority quorums (query, then update or write back)",
            abd.Config,
            abd.Abd,
        ),
        SpecEntry(
            "clocks",
            "logical clocks: Lamport, vector and hybrid logical clocks over drifting, jumping physical clocks",
            clocks.Config,
            clocks.Clocks,
        ),
        SpecEntry(
            "dynamo",
            "Dynamo: a leaderless N/R/W register, version vectors or LWW, read repair, anti-entropy, partitions",
            dynamo.Config,
            dynamo.Dynamo,
        ),
        SpecEntry(
            "retry",
            "retries with exponential backoff and jitter under a deadline and a budget; idempotency keys",
            retry.Config,
            retry.RetryBackoff,
        ),
        SpecEntry(
            "circuit_breaker",
            "a circuit breaker: closed, open, half-open probes, concurrent callers, a durable record across restarts",
            circuit_breaker.Config,
            circuit_breaker.CircuitBreaker,
        ),
        SpecEntry(
            "failure_detector",
            "heartbeat failure detection: a timeout and a phi-accrual detector over a lossy, delaying network, crashes",
            failure_detector.Config,
            failure_detector.FailureDetector,
        ),
    )
}


def get(name: str) -> SpecEntry:
    """The entry for ``name``; KeyError names the known specs."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown spec {name!r}; known specs: {', '.join(REGISTRY)}") from None
