"""Causal broadcast (``impl/messaging/broadcast.py``) wired to ``spec/broadcast.py``'s
``causal_broadcast``.

A run is a group of ``processes`` members (``impl.messaging.group_simulation``), each
broadcasting ``messages`` messages, mostly in answer to what it delivered.  After
every step the spec's invariants are checked on what each member's synced log says
it delivered, under the spec's names: **TypeOK**'s no creation (every message
delivered was broadcast, by its sender, with that clock), **NoDuplication**,
**FifoOrder** and **CausalOrder** (no member delivered a message before one that
happened before it, judged by the messages' vector clocks).  At the end: every
member delivered every message.

Faults: the scheduler's, and in half of the runs with crashes a nemesis
(``HoldbackNemesis``) that crashes a member while it holds messages back, which is
when a member that keeps its hold-back queue in memory only loses them.

The members record ``Broadcast`` and ``Deliver`` in the spec's vocabulary, and the
links under them nothing; the network's copies never reach the broadcast layer (the
links drop them), so a run's trace is validated by the generic validator against
the spec with no bounds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import DEFAULT_MAX_STATES, Validation, trace_events, validate_events
from distcheck.checks.params import UsageError
from distcheck.checks.traces.trace import Trace
from distcheck.impl.messaging import broadcast as impl_broadcast
from distcheck.impl.messaging import group_simulation as group_sim
from distcheck.impl.runtime import ChoiceSource, FaultPolicy, NodeMain, Simulation
from distcheck.impl.runtime.strategies import Choice
from distcheck.spec.broadcast import CausalBroadcast, Config
from distcheck.spec.contract import Spec

Stamp = tuple[str, tuple[int, ...]]


class CausalBroadcastWiring(Wiring):
    spec_name = "causal_broadcast"
    variants: Mapping[str, str] = impl_broadcast.VARIANTS
    default_params = ("processes=3", "messages=2")
    default_steps = 3000

    def wrap_choices(self, choices: ChoiceSource, seed: int, system: Any, faults: FaultPolicy) -> ChoiceSource:
        if not faults.crash or seed % 2:
            return choices
        group: group_sim.Group = system
        return HoldbackNemesis(choices, [p for p in group.peers if isinstance(p, group_sim.BroadcastPeer)])

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        return group_sim.broadcast_group(
            int(params.get("processes", 3)), int(params.get("messages", 2)), variant=variant
        )

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        group: group_sim.Group = system
        return group.nodes()

    # ------------------------------------------------------------ the real state

    def delivered(self, sim: Simulation, group: group_sim.Group) -> dict[str, list[Stamp]]:
        """What each member's synced log says it delivered, in order."""
        out: dict[str, list[Stamp]] = {}
        for peer in group.peers:
            records = sim.durable_records(peer.name, group_sim.BroadcastPeer.LOG)
            out[peer.name] = [
                (str(r["delivered"]), tuple(int(c) for c in r["clock"])) for r in records if "delivered" in r
            ]
        return out

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        group: group_sim.Group = system
        delivered = self.delivered(sim, group)
        if delivered == self._passed:
            return None  # most steps deliver nothing new: the same logs passed already
        verdict = causal_violation(delivered)
        if verdict is None:
            self._passed = delivered
        return verdict

    _passed: dict[str, list[Stamp]] | None = None

    def done(self, sim: Simulation, system: Any) -> bool:
        return self.finished(sim, system) is None

    def finished(self, sim: Simulation, system: Any) -> str | None:
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
        group: group_sim.Group = system
        total = len(group.peers) * group.count
        for q, ms in self.delivered(sim, group).items():
            if len(ms) < total:
                return f"the run ended with {q} having delivered {len(ms)} of {total} messages"
        return None

    # ------------------------------------------------------------ the trace

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        return validate_broadcast(events)

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        if split is not None:
            raise UsageError("a causal broadcast trace is one group: validate it without --split")
        return validate_broadcast(trace_events(trace), max_states)


def causal_violation(delivered: Mapping[str, Sequence[Stamp]]) -> str | None:
    """Which of spec/broadcast's invariants what the members delivered (each a list of
    (sender, clock), in order; the members in clock order) breaks, or None."""
    index = {p: i for i, p in enumerate(delivered)}
    broadcast = {m for p, ms in delivered.items() for m in ms if m[0] == p}
    for q, ms in delivered.items():
        for m in ms:
            if m not in broadcast:
                return f"TypeOK violated: {q} delivered {_text(m)}, which its sender never broadcast"
        if len(set(ms)) != len(ms):
            twice = next(m for m in ms if ms.count(m) > 1)
            return f"NoDuplication violated: {q} delivered {_text(twice)} twice"
        for p, i in index.items():
            numbers = [m[1][i] for m in ms if m[0] == p]
            if numbers != list(range(1, len(numbers) + 1)):
                return f"FifoOrder violated: {q} delivered {p}'s messages numbered {numbers}"
        for k, later in enumerate(ms):
            earlier = set(ms[:k])
            missing = sorted(o for o in broadcast if _happened_before(o, later) and o not in earlier)
            if missing:
                return (
                    f"CausalOrder violated: {q} delivered {_text(later)} before {_text(missing[0])}, "
                    "which happened before it"
                )
    return None


class HoldbackNemesis(ChoiceSource):
    """Crashes a member (at most ``budget`` times a run) when it holds messages back,
    and at no other time; every other choice is the inner source's."""

    def __init__(self, inner: ChoiceSource, members: Sequence[group_sim.BroadcastPeer], budget: int = 2) -> None:
        self.inner = inner
        self.members = list(members)
        self.budget = budget

    def choose(self, options: Sequence[Choice]) -> int:
        texts = [o.text for o in options]
        for member in self.members:
            text = f"crash {member.name}"
            if self.budget and member.member.held_back and text in texts:
                self.budget -= 1
                return texts.index(text)
        # The crashes are the nemesis's (the inner source would spend their budget first).
        kept = [i for i, o in enumerate(options) if o.kind != "crash"]
        if not kept:
            return self.inner.choose(options)
        return kept[self.inner.choose([options[i] for i in kept])]


def validate_broadcast(events: Sequence[Mapping[str, Any]], max_states: int = DEFAULT_MAX_STATES) -> Validation:
    """Is the trace a behaviour of causal broadcast among the processes its clocks
    count, with as many broadcasts each as it shows and no bound on the network?"""
    processes = 2
    sent: dict[str, int] = {}
    for event in events:
        action = event.get("action") or {}
        if action.get("type") == "Broadcast":
            sent[str(action.get("p"))] = sent.get(str(action.get("p")), 0) + 1
        clock = (action.get("m") or {}).get("clock") if isinstance(action.get("m"), Mapping) else None
        if isinstance(clock, list):
            processes = max(processes, len(clock))
    processes = max(processes, len(sent))
    spec = CausalBroadcast(Config(processes, max(sent.values(), default=1), max_msgs=1_000_000))
    return validate_events(spec, events, max_states=max_states)


def _happened_before(a: Stamp, b: Stamp) -> bool:
    return a != b and all(x <= y for x, y in zip(a[1], b[1]))


def _text(m: Stamp) -> str:
    return f"{m[0]}:{'.'.join(map(str, m[1]))}"
