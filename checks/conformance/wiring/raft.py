"""The Raft key-value service (``impl/raft/``) wired to ``spec/raft.py``.

Checked after every step, on the implementation's real state: ElectionSafety (at
most one leader per term over the whole run: every (term, leader) seen is
remembered) and agreement of the committed prefixes (no two servers commit
different entries at an index, and an entry once committed never changes).  At the
end: every client finished, every server applied the same command at each index
(and servers that applied as much hold the same store), the clients' results are
linearizable (``checks.histories.linearizability``), and the trace is a behaviour
of spec/raft.

The servers run ``RaftOptions.conformance()``: they log raft.tla's steps one by
one (docs/raft-service.md, "Conformance mode").  What a server cannot know is
added here, before validation (``spec_events``): the command ids it logs as
values become the spec's ``v1..vK`` (``values=K`` in the header), and a
``DuplicateMessage`` of the network is put before the receipt of a message that
was received as many times as it was sent.  Every step being logged, a run's
trace is validated directly from the action each event names (``_directed_step``:
what the generic search finds, much faster on a long trace); ``distcheck validate
raft`` runs the generic search.  The nemesis (``RaftNemesis``) crashes or isolates
the current leader, crashes it just after a commit its followers do not know yet,
or crashes and restarts a voter that another candidate is asking.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from distcheck.checks.conformance.directed import validate_directed
from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import (
    DEFAULT_MAX_STATES,
    Validation,
    event_matches,
    trace_events,
    validate_events,
)
from distcheck.checks.histories.linearizability import Operation, check_history
from distcheck.checks.params import UsageError
from distcheck.checks.traces.trace import Trace
from distcheck.impl import raft as impl_raft
from distcheck.impl.raft import simulation as raft_sim
from distcheck.impl.raft.node import CANDIDATE, LEADER, RaftNode
from distcheck.impl.runtime import Choice, ChoiceSource, FaultPolicy, NodeMain, Simulation
from distcheck.impl.runtime.history import History
from distcheck.spec.contract import Spec
from distcheck.spec.raft import (
    AdvanceCommitIndex,
    AppendEntries,
    BecomeLeader,
    ClientRequest,
    Config,
    DropMessage,
    DuplicateMessage,
    Raft,
    RaftState,
    Receive,
    RequestVote,
    Restart,
    Timeout,
    value_names,
    wire_message,
)
from distcheck.spec.values import fingerprint

#: large bounds for the header: validation applies none
UNBOUNDED = 1_000_000


class RaftWiring(Wiring):
    """``impl.raft`` (servers s1..sN, N = ``servers``, and two clients running a few
    random puts, gets and compare-and-sets on two keys) against ``spec.raft``."""

    spec_name = "raft"
    variants = impl_raft.VARIANTS
    default_params = ("servers=3", f"max_term={UNBOUNDED}", f"max_log={UNBOUNDED}", f"max_msgs={UNBOUNDED}")
    incremental_trace = False
    default_steps = 3000
    clients = ("c1", "c2")
    keys = ("x", "y")
    #: a client gives up on a server sooner than an election takes, so that it
    #: reaches a new leader soon after it is elected
    client_timing = impl_raft.ClientTiming(attempt=5.0, backoff=1.0, max_backoff=4.0, timeout=1e9)
    #: think time (virtual seconds) between a client's operations, so that they span the faults
    pause = 15.0

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        servers = int(params.get("servers", 3))
        workloads = {c: [self.random_op(rng) for _ in range(rng.randint(3, 6))] for c in self.clients}
        cluster = raft_sim.cluster(
            servers,
            workloads,
            options=impl_raft.RaftOptions.conformance(),
            variant=variant,
            prefix="s",
            client_timing=self.client_timing,
            pause=self.pause,
        )
        return RaftSystem(cluster)

    def random_op(self, rng: random.Random) -> dict[str, Any]:
        key = rng.choice(self.keys)
        kind = rng.choice(("put", "get", "cas"))
        if kind == "put":
            return raft_sim.put(key, rng.randint(1, 3))
        if kind == "get":
            return raft_sim.get(key)
        return raft_sim.cas(key, rng.choice((None, 1, 2, 3)), rng.randint(1, 3))

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        raft_system: RaftSystem = system
        return raft_system.cluster.nodes()

    def wrap_choices(self, choices: ChoiceSource, seed: int, system: Any, faults: FaultPolicy) -> ChoiceSource:
        raft_system: RaftSystem = system
        return RaftNemesis(choices, raft_system.cluster.servers, faults, random.Random(f"nemesis {seed}"))

    def fault_policy(self, faults: FaultPolicy, system: Any) -> FaultPolicy:
        raft_system: RaftSystem = system
        servers = tuple(s.name for s in raft_system.cluster.servers)
        return attrs.evolve(faults, crashable=servers, partitioned=servers)

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        raft_system: RaftSystem = system
        for server in raft_system.cluster.servers:
            if not hasattr(server, "log"):
                continue  # not started yet
            problem = raft_system.check_leader(server) or raft_system.check_committed(server)
            if problem is not None:
                return problem
        return None

    def done(self, sim: Simulation, system: Any) -> bool:
        raft_system: RaftSystem = system
        cluster = raft_system.cluster
        if not cluster.done():
            return False
        applied = {s.last_applied for s in cluster.servers if hasattr(s, "log")}
        return len(applied) == 1

    def history(self, system: Any) -> list[Operation]:
        raft_system: RaftSystem = system
        return history_operations(raft_system.cluster.history)

    def finished(self, sim: Simulation, system: Any) -> str | None:
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
        raft_system: RaftSystem = system
        cluster = raft_system.cluster
        for c in cluster.clients:
            if len(c.results) < len(c.ops):
                return f"client {c.name} finished {len(c.results)} of its {len(c.ops)} operations"
        applied: dict[int, tuple[str, str]] = {}
        for s in cluster.servers:
            for index, cid in s.applied:
                first = applied.setdefault(index, (cid, s.name))
                if first[0] != cid:
                    return f"servers applied different commands at index {index}: {first[1]} {first[0]}, {s.name} {cid}"
        by_applied: dict[int, tuple[str, dict[str, Any]]] = {}
        for s in cluster.servers:
            first_store = by_applied.setdefault(s.last_applied, (s.name, s.kv.data))
            if first_store[1] != s.kv.data:
                return (
                    f"{first_store[0]} and {s.name} applied {s.last_applied} entries but hold different stores: "
                    f"{first_store[1]} and {s.kv.data}"
                )
        verdict = check_history(history_operations(cluster.history))
        if not verdict.ok:
            return f"the clients' results are {verdict.message}"
        # The trace file says what a validator needs: the spec's values and their number.
        events, values, _ = spec_events(sim.trace.events, len(cluster.servers))
        sim.trace.events[:] = events
        sim.trace.header["params"] = spec_params(len(cluster.servers), values)
        return None

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        if not isinstance(spec, Raft):
            raise TypeError(f"the Raft service validates against spec/raft, not {type(spec).__name__}")
        return validate_raft(events, spec.config.servers)

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        """A Raft trace with the implementation's values (command ids) or without the
        network's duplicates is made the spec's (``spec_events``) before validation."""
        if not isinstance(spec, Raft):
            raise TypeError(f"the Raft service validates against spec/raft, not {type(spec).__name__}")
        if split is not None:
            raise UsageError("a Raft trace is one instance: validate it without --split")
        events, values, directed = spec_events(trace_events(trace), spec.config.servers, max_states)
        if not directed.ok:
            return directed
        # The reference path: the generic search over every enabled action.
        return validate_events(raft_spec(spec.config.servers, values), events, max_states=max_states)


def history_operations(history: History) -> list[Operation]:
    """The clients' operations for the linearizability check: a put answers "ok";
    a client that gave up on an operation goes on as a new client (its next
    operation may run concurrently with the one it abandoned)."""
    out: list[Operation] = []
    attempt: dict[str, int] = {}
    for e in sorted(history.entries, key=lambda e: e.call):
        result = "ok" if e.op["op"] == "put" and e.ret is not None else e.result
        name = f"{e.client}#{attempt.get(e.client, 0)}"
        if e.ret is None:
            attempt[e.client] = attempt.get(e.client, 0) + 1
        out.append(Operation(name, e.call, e.ret, e.op, result))
    return out


def raft_spec(servers: int, values: int) -> Raft:
    """spec/raft for a trace: its servers and values, no bounds."""
    return Raft(Config(servers=servers, values=values, max_term=UNBOUNDED, max_log=UNBOUNDED, max_msgs=UNBOUNDED))


def spec_params(servers: int, values: int) -> dict[str, Any]:
    return {"servers": servers, "values": values, "max_term": UNBOUNDED, "max_log": UNBOUNDED, "max_msgs": UNBOUNDED}


def _values_in(event: Mapping[str, Any]) -> list[str]:
    action = event.get("action") or {}
    if action.get("type") == "ClientRequest":
        return [str(action.get("value"))]
    msg = action.get("msg")
    if isinstance(msg, Mapping):
        return [str(e.get("value")) for e in msg.get("entries") or () if isinstance(e, Mapping)]
    return []


def _rename(event: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    out = json.loads(json.dumps(event))
    action = out.get("action") or {}
    if action.get("type") == "ClientRequest":
        action["value"] = names[str(action["value"])]
    msg = action.get("msg")
    if isinstance(msg, dict):
        for e in msg.get("entries") or ():
            if isinstance(e, dict):
                e["value"] = names[str(e.get("value"))]
    return dict(out)


def value_map(events: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The implementation's values (command ids) → the spec's ``v1..vK``, in the order
    they first appear; values that are already ``v1..vK`` stay."""
    seen: list[str] = []
    for event in events:
        for value in _values_in(event):
            if value not in seen:
                seen.append(value)
    if set(seen) <= set(value_names(len(seen))):
        return {v: v for v in seen}
    return {v: name for v, name in zip(seen, value_names(len(seen)))}


def _renumber(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, event in enumerate(events, start=1):
        event["step"] = i
    return events


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def spec_events(
    events: Sequence[Mapping[str, Any]], servers: int, max_states: int | None = None
) -> tuple[list[dict[str, Any]], int, Validation]:
    """The events as spec/raft speaks, the number of values, and the validation of
    the result: values renamed (``value_map``), and a ``DuplicateMessage`` (actor
    "network") put before the previous receipt of a message whose receipt the spec
    cannot explain because every copy sent was received already (a network that
    delivered it twice).  The trace is validated as it goes, which tells the copies
    in flight."""
    names = value_map(events)
    renamed = _renumber([_rename(e, names) for e in events])
    values = max(len(names), 1)
    validation, out = _validate_inserting(raft_spec(servers, values), renamed, max_states)
    return out, values, validation


#: the spec's actions by name, for the events that name them
_ACTIONS: dict[str, type] = {
    cls.__name__: cls
    for cls in (Restart, Timeout, RequestVote, BecomeLeader, ClientRequest, AdvanceCommitIndex, AppendEntries)
}
_MESSAGE_ACTIONS: dict[str, type] = {cls.__name__: cls for cls in (Receive, DuplicateMessage, DropMessage)}


def _candidates(state: RaftState, action: Mapping[str, Any]) -> list[Any]:
    """The spec actions whose observation can be ``action``: the one it names, or,
    for a message's step, one per message in flight that is written as it is (the
    spec's messages carry the history field ``log``, which the event leaves out)."""
    kind = action.get("type")
    fields = {k: v for k, v in action.items() if k != "type"}
    cls = _ACTIONS.get(str(kind))
    if cls is not None:
        try:
            return [cls(**fields)]
        except TypeError:
            return []
    cls = _MESSAGE_ACTIONS.get(str(kind))
    if cls is None or set(fields) != {"msg"}:
        return []
    wanted = _canon(fields["msg"])
    return [cls(m) for m in state.messages.distinct() if _wire_text(m) == wanted]


@functools.lru_cache(maxsize=4096)
def _wire_text(m: Any) -> str:
    return _canon(wire_message(m))


def _directed_step(spec: Raft, states: Sequence[RaftState], event: Mapping[str, Any]) -> list[RaftState]:
    """The spec states after ``event``: what the generic validator's search finds
    when every step is logged (spec/raft's ``observe``), found directly from the
    actions the event can stand for instead of from every enabled action."""
    action = event.get("action")
    if not isinstance(action, Mapping) or "state" in event:
        return []
    out: dict[int, RaftState] = {}
    for state in states:
        for candidate in _candidates(state, action):
            nxt = spec.next_state(state, candidate)
            if nxt is None or not event_matches(spec.observe(state, candidate) or {}, event, candidate):
                continue
            out.setdefault(fingerprint(nxt), nxt)
    return list(out.values())


def _validate_inserting(
    spec: Raft, events: list[dict[str, Any]], max_states: int | None = None
) -> tuple[Validation, list[dict[str, Any]]]:
    """The directed validation (``checks.conformance.directed``): a ``Receive`` of a
    message every copy of which was received already is explained by the network's
    ``DuplicateMessage``."""

    def receipt(event: Mapping[str, Any]) -> str | None:
        action = event.get("action") or {}
        return _canon(action.get("msg")) if action.get("type") == "Receive" else None

    def copy(states: Sequence[RaftState], event: Mapping[str, Any]) -> dict[str, Any]:
        msg = (event.get("action") or {}).get("msg")
        return {"step": 0, "actor": "network", "action": {"type": "DuplicateMessage", "msg": msg}}

    def step(states: Sequence[RaftState], event: Mapping[str, Any]) -> list[RaftState]:
        return _directed_step(spec, states, event)

    return validate_directed(
        spec, events, step, receipt, copy, DEFAULT_MAX_STATES if max_states is None else max_states
    )


def validate_raft(events: Sequence[Mapping[str, Any]], servers: int, max_states: int | None = None) -> Validation:
    """Is the implementation's trace a behaviour of spec/raft (``spec_events``)?"""
    return spec_events(events, servers, max_states)[2]


class RaftNemesis(ChoiceSource):
    """Faults aimed where Raft is fragile, as Jepsen's nemeses aim at the primary.
    Each run draws one mode:

    - ``leader``: whenever some server leads (and a budget is left), crash it or cut
      it off from the other servers (its clients still reach it: a deposed leader
      that goes on answering is what a stale read needs), healing a partition some
      steps later;
    - ``commit``: crash the leader just after it committed entries that its
      followers do not know committed yet (the next leader has not applied them);
    - ``voter``: crash a server that voted in a term while another candidate's
      RequestVote of that term is on its way to it, and restart it at once (the
      request then finds a server that must remember its vote);
    - ``off`` (one run in ten): the inner source's faults only.

    Independently, ``patience``: when time could jump to the next deadline (without
    a leader, an election timeout) while messages are in flight, it usually waits,
    or elections rarely end.  Every other choice is the inner source's, without the
    faults the mode injects itself (their budgets are the nemesis's)."""

    MODES = ("leader", "leader", "leader", "commit", "commit", "voter", "voter", "voter", "voter", "off")

    def __init__(
        self,
        inner: ChoiceSource,
        servers: Sequence[RaftNode],
        faults: FaultPolicy,
        rng: random.Random,
        patience: float = 0.75,
    ) -> None:
        self.inner = inner
        self.servers = list(servers)
        self.faults = faults
        self.rng = rng
        self.mode = rng.choice(self.MODES) if faults.crash or faults.partition else "off"
        self.patience = patience
        self.cut_at: int | None = None
        self.restart: str | None = None
        self.steps = 0
        self.hold = rng.randint(30, 300)
        self.delay = rng.randint(0, 60)

    def choose(self, options: Sequence[Choice]) -> int:
        self.steps += 1
        texts = [o.text for o in options]
        strike = self._strike(texts)
        if strike is not None:
            return strike
        # The nemesis owns the budgets of the faults it injects (the inner source would
        # spend them in the first steps).
        owned = {"leader": ("crash", "partition", "heal"), "off": ()}.get(self.mode, ("crash",))
        kept = [i for i, o in enumerate(options) if o.kind not in owned]
        if self.patience and self.rng.random() < self.patience:
            # Time jumps to the next deadline, which without a leader is an election
            # timeout: let messages in flight race it less, or elections rarely end.
            waiting = [i for i in kept if options[i].kind != "advance"]
            if any(options[i].kind in ("run", "deliver") for i in waiting):
                kept = waiting
        if not kept:
            return self.inner.choose(options)
        return kept[self.inner.choose([options[i] for i in kept])]

    def _up(self) -> list[RaftNode]:
        return [s for s in self.servers if hasattr(s, "log")]

    def _strike(self, texts: list[str]) -> int | None:
        if self.restart is not None and f"restart {self.restart}" in texts:
            name, self.restart = self.restart, None
            return texts.index(f"restart {name}")
        if self.cut_at is not None and self.steps - self.cut_at >= self.hold and "heal the partition" in texts:
            self.cut_at = None
            return texts.index("heal the partition")
        if self.steps < self.delay:
            return None
        leaders = [s for s in self._up() if s.role == LEADER]
        leader = max(leaders, key=lambda s: s.log.term) if leaders else None
        if self.mode == "leader" and leader is not None:
            kinds = [k for k in ("crash", "partition") if getattr(self.faults, k)]
            kind = self.rng.choice(kinds)
            text = f"crash {leader.name}" if kind == "crash" else f"isolate {leader.name}"
            if text in texts:
                self.delay = self.steps + self.rng.randint(20, 200)
                if kind == "partition":
                    self.cut_at = self.steps
                return texts.index(text)
        elif self.mode == "commit" and leader is not None and self.faults.crash:
            others = [s.commit_index for s in self._up() if s is not leader]
            text = f"crash {leader.name}"
            # (once its answers to the clients are on their way)
            if others and leader.commit_index > max(others) and not leader.outbox and text in texts:
                self.delay = self.steps + self.rng.randint(20, 200)
                return texts.index(text)
        elif self.mode == "voter" and self.faults.crash:
            for voter in self._up():
                term, vote = voter.log.term, voter.log.voted_for
                if vote is None or vote == voter.name:
                    continue
                rivals = [c.name for c in self._up() if c.role == CANDIDATE and c.name != vote and c.log.term == term]
                asks = [f"deliver {r}→{voter.name} RequestVoteRequest(term={term}," for r in rivals]
                text = f"crash {voter.name}"
                if any(t.startswith(a) for a in asks for t in texts) and text in texts:
                    self.restart = voter.name
                    return texts.index(text)
        return None


@attrs.define
class RaftSystem:
    cluster: raft_sim.Cluster
    #: term -> the first server seen leading it
    leaders: dict[int, str] = attrs.field(factory=dict)
    #: index -> (term, command id, server) of the first entry seen committed there
    committed: dict[int, tuple[int, str, str]] = attrs.field(factory=dict)

    def check_leader(self, server: RaftNode) -> str | None:
        """ElectionSafety: one leader per term."""
        if server.role != LEADER:
            return None
        first = self.leaders.setdefault(server.log.term, server.name)
        if first != server.name:
            return f"ElectionSafety violated: two leaders in term {server.log.term}: {first} and {server.name}"
        return None

    def check_committed(self, server: RaftNode) -> str | None:
        log = server.log
        if server.commit_index > log.last_index:
            return (
                f"StateMachineSafety violated: {server.name} commits up to {server.commit_index} "
                f"but its log ends at {log.last_index}"
            )
        for index in range(log.base_index + 1, server.commit_index + 1):
            term, cmd = log.entry(index)
            cid = str(cmd["id"])
            first = self.committed.setdefault(index, (term, cid, server.name))
            if first[:2] != (term, cid):
                return (
                    f"StateMachineSafety violated at index {index}: {first[2]} committed {first[1]} of term "
                    f"{first[0]}, {server.name} commits {cid} of term {term}"
                )
        return None
