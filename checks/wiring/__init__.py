"""One wiring per implemented protocol: how ``distcheck simulate`` and the tests run
that implementation against its spec (``checks.conformance.Wiring``).

This is the one place besides ``checks/smt/`` where ``checks/`` holds protocol-
specific code: each module maps one implementation's real state to its spec's
vocabulary, which no generic code can know.
"""

from __future__ import annotations

from checks.conformance import Wiring
from checks.params import UsageError
from checks.wiring.lock import LockSystem, LockWiring, PausingChoices, SlowClock
from checks.wiring.paxos import LeaderNemesis, PaxosSystem, PaxosWiring
from checks.wiring.twophase import TwoPhaseWiring

WIRINGS: dict[str, Wiring] = {w.spec_name: w for w in (TwoPhaseWiring(), LockWiring(), PaxosWiring())}


def find_wiring(name: str) -> Wiring:
    wiring = WIRINGS.get(name)
    if wiring is None:
        raise UsageError(f"no implementation of {name!r} to simulate; implemented: {', '.join(WIRINGS)}")
    return wiring


__all__ = [
    "WIRINGS",
    "LeaderNemesis",
    "LockSystem",
    "LockWiring",
    "PausingChoices",
    "PaxosSystem",
    "PaxosWiring",
    "SlowClock",
    "TwoPhaseWiring",
    "find_wiring",
]
