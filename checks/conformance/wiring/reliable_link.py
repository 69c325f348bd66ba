"""The reliable links (``impl/messaging/link.py``) wired to ``spec/reliable_link.py``.

A run is a group of nodes (``impl.messaging.group_simulation``), two by default,
each sending ``messages`` messages to every other one; so each ordered pair is one
link, one instance of the spec.  After every step the spec's invariants are
checked on each link's real state, under the spec's names, as a crash now would
leave it: **NoDuplication** and **FifoOrder** (the receiver's synced inbox holds the
sender's messages 0, 1, ... once each and in order, each as sent) and **NoLoss**
(every message the sender's synced log counts as acknowledged is in the
receiver's synced inbox).  At the end: every message delivered on every link.

The trace records each link's steps under the link's name (``"link": "p1>p2"``)
with the message each receipt took; ``validate_link`` checks it link by link
against the spec with no bounds: each node named as the link's sender or receiver,
each receipt taking its message from wherever it is in the channel (the network's
reordering), and a receipt of a message received already explained by the
network's copy (``checks.conformance.directed``).
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from distcheck.checks.conformance.directed import validate_directed
from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import DEFAULT_MAX_STATES, Validation, trace_events
from distcheck.checks.params import UsageError
from distcheck.checks.traces.trace import Trace
from distcheck.impl.messaging import group_simulation as group_sim
from distcheck.impl.messaging import link as impl_link
from distcheck.impl.runtime import NodeMain, Simulation
from distcheck.spec.contract import Spec
from distcheck.spec.reliable_link import (
    ACKS,
    DATA,
    RECEIVER,
    SENDER,
    Ack,
    Config,
    Data,
    Deliver,
    Duplicate,
    LinkState,
    ReceiverCrash,
    RecvAck,
    RecvData,
    ReliableLink,
    Reorder,
    Send,
)


class LinkWiring(Wiring):
    spec_name = "reliable_link"
    variants: Mapping[str, str] = impl_link.VARIANTS
    split_key = "link"
    default_params = ("messages=4", "window=2")
    default_steps = 2000
    incremental_trace = False  # validated at the end (copies are found by looking back)
    unbounded_params = ("max_msgs", "max_crashes")

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        return group_sim.link_group(
            2, int(params.get("messages", 4)), window=int(params.get("window", 2)), variant=variant
        )

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        group: group_sim.Group = system
        return group.nodes()

    # ------------------------------------------------------------ the real state

    @staticmethod
    def durable(sim: Simulation, node: str) -> list[dict[str, Any]]:
        return sim.durable_records(node, group_sim.LinkPeer.LOG)

    def links(self, sim: Simulation, group: group_sim.Group) -> dict[str, tuple[list[tuple[int, Any]], int]]:
        return link_states({p.name: self.durable(sim, p.name) for p in group.peers})

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        return link_violation(self.links(sim, system))

    def done(self, sim: Simulation, system: Any) -> bool:
        return self.finished(sim, system) is None

    def finished(self, sim: Simulation, system: Any) -> str | None:
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
        group: group_sim.Group = system
        for link, (inbox, _) in self.links(sim, system).items():
            if len(inbox) < group.count:
                return f"the run ended with {link} having delivered {len(inbox)} of {group.count} messages"
        return None

    # ------------------------------------------------------------ the trace

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        if not isinstance(spec, ReliableLink):
            raise TypeError(f"the reliable link validates against spec/reliable_link, not {type(spec).__name__}")
        return validate_link(events, spec.config.window)

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        if not isinstance(spec, ReliableLink):
            raise TypeError(f"the reliable link validates against spec/reliable_link, not {type(spec).__name__}")
        if split not in (None, "link"):
            raise UsageError(f"a reliable link trace is validated link by link: use --split link, not --split {split}")
        events = trace_events(trace)
        unnamed = next((e for e in events if not _link_ends(e.get("link"))), None)
        if unnamed is not None:
            raise UsageError(f'step {unnamed.get("step")} names no link ("link": "SENDER>RECEIVER")')
        return validate_link(events, spec.config.window, max_states)


def link_states(logs: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, tuple[list[tuple[int, Any]], int]]:
    """From each node's log (``{node: records}``), each link's receiver's inbox, as
    (seq, body) in order, and its sender's acknowledged base."""
    inbox: dict[str, list[tuple[int, Any]]] = {f"{a}>{b}": [] for a in logs for b in logs if a != b}
    base = dict.fromkeys(inbox, 0)
    for node, records in logs.items():
        for record in records:
            if "in" in record:
                inbox[f"{record['in']}>{node}"].append((int(record["seq"]), record["body"]))
            elif "acked" in record:
                link = f"{node}>{record['acked']}"
                base[link] = max(base[link], int(record["upto"]))
    return {link: (inbox[link], base[link]) for link in inbox}


def link_violation(links: Mapping[str, tuple[Sequence[tuple[int, Any]], int]]) -> str | None:
    """Which of spec/reliable_link's invariants the links' state breaks (the messages
    on each being {"n": 0}, {"n": 1}, ...), or None."""
    for link, (inbox, base) in links.items():
        seqs = [seq for seq, _ in inbox]
        if len(set(seqs)) != len(seqs):
            twice = next(s for s in seqs if seqs.count(s) > 1)
            return f"NoDuplication violated on {link}: message {twice} was delivered twice"
        if seqs != list(range(len(seqs))) or any(body != {"n": seq} for seq, body in inbox):
            return f"FifoOrder violated on {link}: the receiver delivered {seqs}, not the first messages in order"
        if base > len(seqs):
            return (
                f"NoLoss violated on {link}: the sender counts {base} message(s) as acknowledged, "
                f"the receiver has {len(seqs)}"
            )
    return None


def _link_ends(link: Any) -> tuple[str, str] | None:
    if not isinstance(link, str) or link.count(">") != 1:
        return None
    sender, receiver = link.split(">")
    return (sender, receiver) if sender and receiver and sender != receiver else None


def validate_link(events: Sequence[Mapping[str, Any]], window: int, max_states: int = DEFAULT_MAX_STATES) -> Validation:
    """Is each link's part of the trace a behaviour of spec/reliable_link (sequence
    numbers unbounded, a channel that reorders, no bounds)?  The first link that is
    not decides."""
    by_link: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_link.setdefault(str(event.get("link")), []).append(dict(event))
    total = 0
    explored = 0
    for link, part in by_link.items():
        result, _ = validate_one_link(link, part, window, max_states)
        if not result.ok:
            message = f"link {link}: {result.message}"
            return Validation(result.verdict, total + result.events, explored, result.mismatch, message)
        total += result.events
        explored += result.states_explored
    return Validation("ok", total, explored, message=f"all {total} events of {len(by_link)} link(s) explained")


def validate_one_link(
    link: str, events: Sequence[Mapping[str, Any]], window: int, max_states: int = DEFAULT_MAX_STATES
) -> tuple[Validation, list[dict[str, Any]]]:
    """One link's events, each node named by its role, against the spec; the
    verdict and the events with the network's copies put back."""
    ends = _link_ends(link)
    roles = {} if ends is None else {ends[0]: SENDER, ends[1]: RECEIVER}
    renamed = [{**e, "actor": roles.get(str(e.get("actor")), e.get("actor"))} for e in events]
    sent = [int(e["action"]["i"]) for e in renamed if (e.get("action") or {}).get("type") == "Send"]
    messages = max(sent, default=0) + 1
    big = 1_000_000
    spec = ReliableLink(Config(messages, window, 0, True, max_msgs=big, max_crashes=big))

    def step(states: Sequence[LinkState], event: Mapping[str, Any]) -> list[LinkState]:
        out: list[LinkState] = []
        for s in states:
            nxt = _directed(spec, s, event)
            if nxt is not None:
                out.append(nxt)
        return out

    def copy(states: Sequence[LinkState], event: Mapping[str, Any]) -> dict[str, Any] | None:
        found = _carried(event)
        if found is None or not states:
            return None
        ch, item = found
        items = (states[0].data if ch == DATA else states[0].acks).items
        if item not in items:
            return None
        action = {"type": "Duplicate", "ch": ch, "i": items.index(item)}
        return {"step": 0, "actor": "network", "link": link, "action": action}

    return validate_directed(spec, renamed, step, _receipt, copy, max_states)


def _carried(event: Mapping[str, Any]) -> tuple[str, Data | Ack] | None:
    """The channel a receipt takes from and the message it took."""
    kind = (event.get("action") or {}).get("type")
    try:
        if kind == "RecvData":
            seq = int(event["data"]["seq"])
            return DATA, Data(seq, seq)
        if kind == "RecvAck":
            return ACKS, Ack(int(event["ack"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _receipt(event: Mapping[str, Any]) -> Hashable | None:
    return _carried(event)


def _directed(spec: ReliableLink, s: LinkState, event: Mapping[str, Any]) -> LinkState | None:
    """The state after ``event`` from ``s``: a receipt first brings its message to the
    channel's head by the network's reordering; every other step is the one it names."""
    action = event.get("action") or {}
    found = _carried(event)
    if found is not None:
        ch, item = found
        items = (s.data if ch == DATA else s.acks).items
        if item not in items:
            return None
        for k in range(items.index(item) - 1, -1, -1):
            moved = spec.next_state(s, Reorder(ch, k))
            if moved is None:
                return None
            s = moved
        taken = RecvData() if ch == DATA else RecvAck()
        return spec.next_state(s, taken) if event.get("actor") == taken.actor else None
    try:
        named = spec.action_from_json(action)
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(named, Send | Deliver | ReceiverCrash | Duplicate) or event.get("actor") != named.actor:
        return None
    return spec.next_state(s, named)
