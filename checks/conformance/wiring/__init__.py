"""One wiring per implemented protocol: how ``distcheck simulate`` and the tests run
that implementation against its spec (``checks.conformance.simulate.Wiring``).

This is the one place besides ``checks/proofs/`` where ``checks/`` holds protocol-
specific code: each module maps one implementation's real state to its spec's
vocabulary, which no generic code can know.  ``cap`` is the one module here that
is not a wiring: the CAP demonstration (``distcheck simulate cap``) runs two
implementations, the ABD and Dynamo stores, under one partition schedule.
"""

from __future__ import annotations

from collections.abc import Callable

from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.wiring import cap
from distcheck.checks.conformance.wiring.abd import AbdWiring
from distcheck.checks.conformance.wiring.broker import BrokerWiring
from distcheck.checks.conformance.wiring.causal_broadcast import CausalBroadcastWiring
from distcheck.checks.conformance.wiring.dynamo import DynamoWiring
from distcheck.checks.conformance.wiring.lock import LockSystem, LockWiring
from distcheck.checks.conformance.wiring.lock_replicated import ReplicatedLockSystem, ReplicatedLockWiring
from distcheck.checks.conformance.wiring.paxos import LeaderNemesis, PaxosSystem, PaxosWiring
from distcheck.checks.conformance.wiring.pbft import PbftWiring
from distcheck.checks.conformance.wiring.raft import RaftNemesis, RaftSystem, RaftWiring
from distcheck.checks.conformance.wiring.reliable_link import LinkWiring
from distcheck.checks.conformance.wiring.saga import SagaWiring
from distcheck.checks.conformance.wiring.twophase import TwoPhaseWiring
from distcheck.checks.params import UsageError

#: ``distcheck simulate NAME`` for a demonstration: name → (what it shows, a function
#: of seed, runs, trace file and JSON flag that returns the exit code and the text)
DEMONSTRATIONS: dict[str, tuple[str, Callable[[int, int, str | None, bool], tuple[int, str]]]] = {
    "cap": (cap.SUMMARY, cap.demonstrate)
}

WIRINGS: dict[str, Wiring] = {
    w.spec_name: w
    for w in (
        TwoPhaseWiring(),
        LockWiring(),
        PaxosWiring(),
        RaftWiring(),
        BrokerWiring(),
        LinkWiring(),
        CausalBroadcastWiring(),
        SagaWiring(),
        PbftWiring(),
        AbdWiring(),
        DynamoWiring(),
    )
}


#: (spec, service) -> the wiring of an alternative implementation of that spec
#: (``distcheck simulate SPEC --service NAME``)
SERVICES: dict[tuple[str, str], Wiring] = {(w.spec_name, w.service): w for w in (ReplicatedLockWiring(),)}


def find_wiring(name: str, service: str | None = None) -> Wiring:
    """The wiring of spec ``name``'s implementation, or of its alternative ``service``."""
    wiring = WIRINGS.get(name)
    if wiring is None:
        raise UsageError(f"no implementation of {name!r} to simulate; implemented: {', '.join(WIRINGS)}")
    if not service:
        return wiring
    alternative = SERVICES.get((name, service))
    if alternative is None:
        others = ", ".join(s for n, s in SERVICES if n == name) or "none"
        raise UsageError(f"no service {service!r} of {name}; its alternative implementations: {others}")
    return alternative


__all__ = [
    "DEMONSTRATIONS",
    "SERVICES",
    "WIRINGS",
    "AbdWiring",
    "BrokerWiring",
    "CausalBroadcastWiring",
    "DynamoWiring",
    "LeaderNemesis",
    "LinkWiring",
    "LockSystem",
    "LockWiring",
    "PaxosSystem",
    "PaxosWiring",
    "PbftWiring",
    "RaftNemesis",
    "RaftSystem",
    "RaftWiring",
    "ReplicatedLockSystem",
    "ReplicatedLockWiring",
    "SagaWiring",
    "TwoPhaseWiring",
    "cap",
    "find_wiring",
]
