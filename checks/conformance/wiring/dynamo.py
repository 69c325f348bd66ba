"""The Dynamo-style store (``impl/registers/dynamo.py``) wired to ``spec/dynamo.py``,
key by key: every version a server acknowledged kept by it (in memory and in its
synced log) after every step, convergence and no lost acknowledged put at the end,
and each key's trace validated against the spec with one spec client per
coordinated operation.

Where it sits: the store's wiring for ``distcheck simulate dynamo`` and
``distcheck validate dynamo --split key`` (``checks.conformance.simulate.Wiring``);
docs/dynamo-store.md, "Checking the store against the spec", is its user's page.

The projection (``project``).  spec/dynamo has one key, one operation per client
and vectors with one entry per writer; the store has many keys, clients that run
many operations and retry them through other coordinators, and dotted version
vectors with one entry per server.  So a run is split by key, and each
*coordination* (a server's ``op`` id, ``s1.1.3``: one attempt of a client's
operation, whose Put or StartGet names it) is one spec client: a client's put
retried through a second coordinator makes two versions in the store, and two spec
writers.  The key's puts are its spec writers, numbered 1, 2, ... in the order they
began; the number is the spec's value for that write.

Versions.  A store version is named by its dot (coordinator, counter), which no
other put of the key has (a server's counters only grow: docs/dynamo-store.md), so a
dot names the put that made it, and a version maps to that put's spec version.  A
version whose dot no put made, or whose value or context is not what that put
wrote, maps to -1, which the spec never holds.  A put's context (a vector over
servers) maps to the set of the key's puts whose dot it covers; the spec version's
vector has 1 for each of them and for the writer itself, 0 elsewhere, and its
``follows`` are their values.  Then the spec's dominance (one vector at least the
other's everywhere) is the store's "covers" (a version's context covers the other's
dot) as long as covering is transitive: if a context covers a version it covers
that version's context too.  It is whenever contexts come from what was read and
written; where the store makes one that is not, the replicas' versions stop matching
and validation says where.

Contexts are checked against what the clients saw.  A put's context must cover only
puts its client could have seen (``causal_pasts``: what the reads it was answered
returned, with their pasts, and its own puts): a context that covers a put its
client never saw would supersede that put unseen, a lost update, which no behaviour
of the spec has (its contexts are what was read), so validation stops at that Put.

Steps.  ``Put`` is the spec's Put with that context; the first ``Merge`` with cause
``replicate`` of a put's version at a server is ``Store`` (a duplicate delivery
stores nothing new: it is checked, not stepped); ``AckPut`` is ``PutDone``;
``StartGet`` is ``Get``; a ``ReadReplica`` is ``Answer`` when it is the answer the
coordinator used (``ReturnGet`` logs each used answer's dots under ``answers``),
else it is only checked; ``ReturnGet`` is ``GetDone``; a ``Merge`` with cause
``repair`` is ``Repair`` of the latest get of its source that returned those
versions.  ``FailRequest`` is no step (the spec's operation stays pending), nor are
the clients' ``Invoke``/``Return``/``GiveUp`` and the exchange messages
``AntiEntropy``/``AntiEntropyReply`` (they change no replica).  Messages dropped,
or cut by the runtime's partitions, are messages the spec never delivers, so the
spec's own Partition and Heal are not used.  After every step that logs a
server's versions (``siblings``), the spec's replica of that server must hold the
same writes: the possible states are narrowed to those that do.

Where the spec's abstractions do not fit, and what is done (``StoreDynamo``, the spec
as the store runs it, differs from spec/dynamo in exactly these rules):

- *Contexts.*  The spec's writer writes blind or with what its coordinator holds;
  the store's client writes with what it last read and wrote, through any
  coordinator.  StoreDynamo's ``Put`` takes the context the trace names (the puts it
  covers) and is otherwise the spec's rule.
- *A read's coordinator reads at the end.*  The store merges the answers with what
  the coordinator holds when the read returns, not when it began, keeps that merge
  and repairs every other replica that answered with less, and later every late
  answerer that was behind.  StoreDynamo's ``GetDone`` merges the coordinator's
  replica into the answers, keeps the merge there, and sends it as repair to every
  other replica but those whose answer already equalled it (a repair that changes
  nothing is neither logged nor checked).
- *Anti-entropy* is, in the store, a digest and two one-way merges of versions sent
  earlier; in the spec, one atomic step that makes both sides equal.  No spec step
  explains one half alone, so a ``Merge`` with cause ``anti_entropy`` is applied to
  the possible states as a merge of the versions it received into that replica,
  checked only for being versions of puts that began, not for the sender holding
  them: this half of the store is checked by the replica states that follow and by
  convergence, not by a spec step.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import Mismatch, TooLarge, Validation, Validator, trace_events
from distcheck.checks.params import UsageError
from distcheck.checks.traces.trace import Trace
from distcheck.checks.verdict import OK, UNKNOWN, VIOLATED
from distcheck.impl.clocks import Vector
from distcheck.impl.registers import dynamo as impl_dynamo
from distcheck.impl.runtime import FaultPolicy, NodeMain, Simulation
from distcheck.spec.contract import Spec
from distcheck.spec.dynamo import (
    BLIND,
    IDLE,
    PENDING,
    Dynamo,
    DynamoState,
    MsgAnswer,
    MsgGet,
    MsgRepair,
    Version,
    values_of,
)
from distcheck.spec.values import fingerprint

#: store events that are no step of the spec and change no replica
SKIPPED = ("Invoke", "Return", "GiveUp", "FailRequest", "AntiEntropy", "AntiEntropyReply", "ReadRepair")
KEYED = ("Put", "Merge", "AckPut", "StartGet", "ReadReplica", "ReturnGet")
UNKNOWN_VERSION = -1


class ProjectionError(ValueError):
    """An event the projection cannot read (a field missing or of the wrong type)."""


@attrs.frozen
class Written:
    """One put of the key, as its ``Put`` event logged it."""

    op: str
    number: int
    value: Any
    dot: tuple[str, int]
    context: Mapping[str, int]
    step: int


@attrs.frozen
class Step:
    """One store event of a key, projected: the spec event it is (or None), the
    versions it merged outside any spec step (anti-entropy), and the server whose
    replica it logs with the spec numbers of the writes it holds (or None)."""

    source: Mapping[str, Any]
    event: dict[str, Any] | None = None
    merged_in: tuple[int, ...] = ()
    server: str | None = None
    holds: tuple[int, ...] = ()
    problem: str | None = None


@attrs.frozen
class KeyRun:
    """One key's events in the spec's terms, and the operations on it."""

    key: str
    steps: tuple[Step, ...]
    writes: Mapping[str, int]
    reads: tuple[str, ...]
    #: per put, the puts its context covers
    covers: Mapping[str, tuple[str, ...]]
    names: Mapping[int, str]


def _field(event: Mapping[str, Any], name: str, kind: type) -> Any:
    value = event.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProjectionError(f"step {event.get('step')}: {name!r} must be a {kind.__name__}, got {value!r}")
    return value


def _of_action(event: Mapping[str, Any], name: str, kind: type) -> Any:
    """A field of the event's action, read as ``_field`` reads the event's own."""
    value = event["action"].get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProjectionError(f"step {event.get('step')}: action.{name} must be a {kind.__name__}, got {value!r}")
    return value


def _dot(value: Any, event: Mapping[str, Any]) -> tuple[str, int]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not isinstance(value[0], str)
        or type(value[1]) is not int
    ):
        raise ProjectionError(f"step {event.get('step')}: a dot must be [server, counter], got {value!r}")
    return (value[0], value[1])


def _versions(value: Any, event: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, Mapping) and "dot" in v for v in value):
        raise ProjectionError(f"step {event.get('step')}: {name} must be a list of dotted versions, got {value!r}")
    return value


def covers(context: Mapping[str, int], dot: tuple[str, int]) -> bool:
    """Whether a store context (server → counter) has seen the event ``dot``."""
    return int(context.get(dot[0], 0)) >= dot[1]


def context_label(covered: Sequence[str]) -> str:
    """The spec Put's ``context`` for a put whose context covers ``covered``."""
    return "+".join(sorted(covered)) if covered else BLIND


def project(events: Sequence[Mapping[str, Any]]) -> list[KeyRun]:
    """The run's events per key, in the spec's terms (module docstring)."""
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        action = event.get("action")
        kind = action.get("type") if isinstance(action, Mapping) else None
        if kind in SKIPPED:
            continue
        if kind not in KEYED:
            raise ProjectionError(f"step {event.get('step')}: {kind!r} is not an event of the Dynamo store")
        by_key.setdefault(_of_action(event, "key", str), []).append(event)
    return [_project_key(key, key_events) for key, key_events in by_key.items()]


def _project_key(key: str, events: Sequence[Mapping[str, Any]]) -> KeyRun:
    written: dict[str, Written] = {}
    by_dot: dict[tuple[str, int], Written] = {}
    reused: dict[int, str] = {}  # step → the problem: a dot made twice
    reads: list[str] = []
    answers: dict[str, dict[str, list[Any]]] = {}  # get op → server → the dots of the answer used
    for event in events:
        action = event["action"]
        kind = action["type"]
        if kind == "Put":
            op = _field(event, "op", str)
            dot = _dot(action.get("dot"), event)
            put = Written(
                op, len(written) + 1, action.get("value"), dot, _of_action(event, "context", dict), event["step"]
            )
            if dot in by_dot:
                reused[event["step"]] = (
                    f"{action.get('server')} made the dot {dot[0]}:{dot[1]} of key {key!r} a second time "
                    f"(for {op}; {by_dot[dot].op} made it first), so one name now stands for two versions"
                )
            else:
                by_dot[dot] = put
            written[op] = put
        elif kind == "StartGet":
            reads.append(_field(event, "op", str))
        elif kind == "ReturnGet":
            answers[_field(event, "op", str)] = dict(_of_action(event, "answers", dict))

    def number(version: Mapping[str, Any], event: Mapping[str, Any]) -> int:
        put = by_dot.get(_dot(version.get("dot"), event))
        if put is None or version.get("value") != put.value or version.get("context") != dict(put.context):
            return UNKNOWN_VERSION
        return put.number

    def holds(event: Mapping[str, Any]) -> tuple[int, ...]:
        return tuple(sorted(number(v, event) for v in _versions(event["action"].get("siblings"), event, "siblings")))

    pasts = causal_pasts(events)
    stored: set[tuple[str, str]] = set()  # (server, put op) already stepped
    answered: set[tuple[str, str]] = set()  # (server, get op) already stepped
    returned: list[tuple[str, str, tuple[int, ...]]] = []  # (coordinator, get op, what it returned)
    repaired: set[tuple[str, str]] = set()  # (server, get op) whose repair was stepped
    steps: list[Step] = []
    for event in events:
        action = event["action"]
        kind = action["type"]
        server = _of_action(event, "server", str)
        problem = reused.get(event["step"])
        spec_event: dict[str, Any] | None = None
        merged_in: tuple[int, ...] = ()
        if kind == "Put":
            op = event["op"]
            put = written[op]
            covered = [p.op for p in written.values() if p.op != op and covers(put.context, p.dot)]
            seen = pasts.get((key, put.dot), frozenset())
            unseen = [p for p in written.values() if p.op in covered and p.dot not in seen]
            if unseen and problem is None:
                problem = (
                    f"its context {dict(put.context)} covers {_puts_text(unseen)}, which its client "
                    f"{event.get('client')} never read nor wrote: the version would supersede "
                    f"{'them' if len(unseen) > 1 else 'it'} unseen (a lost update)"
                )
            spec_event = _spec_event(event, op, "Put", client=op, coordinator=server, context=context_label(covered))
        elif kind == "AckPut":
            op = _field(event, "op", str)
            spec_event = _spec_event(event, op, "PutDone", client=op)
        elif kind == "StartGet":
            op = event["op"]
            spec_event = _spec_event(event, op, "Get", client=op, coordinator=server)
        elif kind == "ReadReplica":
            op = _field(event, "op", str)
            used = answers.get(op)
            dots = sorted(
                [list(_dot(v.get("dot"), event)) for v in _versions(action.get("siblings"), event, "siblings")]
            )
            if (server, op) not in answered and (used is None or used.get(server) == dots):
                answered.add((server, op))
                spec_event = _spec_event(event, server, "Answer", server=server, client=op)
        elif kind == "ReturnGet":
            op = event["op"]
            spec_event = _spec_event(event, op, "GetDone", client=op)
            returned.append((server, op, holds(event)))
        elif kind == "Merge":
            cause = _of_action(event, "cause", str)
            received = _versions(action.get("received"), event, "received")
            numbers = tuple(sorted(number(v, event) for v in received))
            if cause == "replicate":
                put_op = next((p.op for p in written.values() if p.number in numbers), None)
                if put_op is not None and (server, put_op) not in stored and numbers == (written[put_op].number,):
                    stored.add((server, put_op))
                    spec_event = _spec_event(event, server, "Store", server=server, client=put_op)
                elif put_op is None:
                    problem = problem or f"{server} stored a version of key {key!r} that no put made"
            elif cause == "repair":
                source = _of_action(event, "source", str)
                get_op = next(
                    (
                        g
                        for coordinator, g, values in reversed(returned)
                        if coordinator == source and values == numbers and (server, g) not in repaired
                    ),
                    None,
                )
                if get_op is None:
                    problem = problem or f"{server} took a repair from {source} that no read of key {key!r} returned"
                else:
                    repaired.add((server, get_op))
                    spec_event = _spec_event(event, server, "Repair", server=server, client=get_op)
            else:
                merged_in = numbers
        else:  # pragma: no cover - KEYED lists every kind
            raise ProjectionError(f"step {event.get('step')}: {kind!r} is not an event of the Dynamo store")
        if "siblings" in action:
            steps.append(Step(event, spec_event, merged_in, server, holds(event), problem))
        else:
            steps.append(Step(event, spec_event, merged_in, None, (), problem))
    writes = {op: put.number for op, put in written.items()}
    covered_by = {
        op: tuple(p.op for p in written.values() if p.op != op and covers(put.context, p.dot))
        for op, put in written.items()
    }
    names = {put.number: f"{put.op}={put.value!r}" for put in written.values()}
    return KeyRun(key, tuple(steps), writes, tuple(reads), covered_by, names)


def _puts_text(puts: Sequence[Written]) -> str:
    return ", ".join(f"{p.op}={p.value!r} (dot {p.dot[0]}:{p.dot[1]})" for p in puts)


def _spec_event(event: Mapping[str, Any], actor: str, kind: str, **fields: str) -> dict[str, Any]:
    return {"step": event.get("step"), "actor": actor, "action": {"type": kind, **fields}}


# ---------------------------------------------------------------- the spec as the store runs it


class StoreDynamo(Dynamo):
    """spec/dynamo with the two rules the store runs differently (module docstring):
    a put's context is the one its trace names, and a read's coordinator merges
    what it holds when the read returns.  Everything else is spec/dynamo's."""

    covered: Mapping[str, tuple[str, ...]] = MappingProxyType({})

    @classmethod
    def for_run(cls, servers: int, r: int, w: int, run: KeyRun) -> StoreDynamo:
        spec = cls.for_operations(servers, run.writes, run.reads, r=r, w=w)
        assert isinstance(spec, StoreDynamo)
        spec.covered = run.covers
        return spec

    def version_of(self, writer: str) -> Version:
        """The version ``writer`` writes: its vector has 1 for itself and each put its
        context covers; it follows those puts."""
        vector = [0] * self.clock_size()
        covered = self.covered.get(writer, ())
        for op in (writer, *covered):
            vector[self.writers[op] - 1] = 1
        return Version(self.writers[writer], tuple(vector), 0, frozenset(self.writers[op] for op in covered))

    def contexts(self, s: DynamoState, client: str, coordinator: str) -> tuple[str, ...]:
        """The context the run's trace names for this put."""
        return (context_label(self.covered.get(client, ())),)

    def put(self, s: DynamoState, client: str, coordinator: str, context: str) -> DynamoState | None:
        """An idle writer writes, with the context its trace names (the puts it covers)."""
        if s.phase[client] != IDLE or context != context_label(self.covered.get(client, ())):
            return None
        return self.write(s, client, coordinator, self.version_of(client))

    def get_done(self, s: DynamoState, client: str) -> DynamoState | None:
        """With answers from R replicas the read returns their merge with what the
        coordinator holds now, which the coordinator keeps, and sends it as repair to
        every other replica whose answer was not already that."""
        if s.phase[client] != PENDING:
            return None
        answers = [m for m in s.msgs.sent if isinstance(m, MsgAnswer) and m.client == client]
        if len(answers) < self.config.r:
            return None
        coordinator = s.coordinator[client]
        merged = self.merge(frozenset().union(s.replica[coordinator], *(m.versions for m in answers)))
        asked = [m for m in s.msgs.sent if isinstance(m, MsgGet) and m.client == client]
        msgs = self.drop(s.msgs, [*answers, *asked])
        said = {m.server: m.versions for m in answers}
        repairs = [MsgRepair(x, client, merged) for x in self.servers if x != coordinator and said.get(x) != merged]
        s = self.take_in(s, coordinator, merged)
        return attrs.evolve(self.returns(s, client, values_of(merged)), msgs=self.send(s, msgs, *repairs))


# ---------------------------------------------------------------- validation


def validate_run(spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], max_states: int = 200_000) -> Validation:
    """Each key's events against the spec instantiated for that key's operations;
    the first key whose trace no behaviour explains is the verdict."""
    if not isinstance(spec, Dynamo):
        raise TypeError(f"the Dynamo store validates against spec/dynamo, not {type(spec).__name__}")
    if spec.lww:
        raise UsageError("the Dynamo store's trace validates in vv mode only (mode=vv)")
    total = explored = 0
    for run in project(events):
        keyed = StoreDynamo.for_run(spec.config.servers, spec.config.r, spec.config.w, run)
        result = validate_key(keyed, run, max_states)
        total += result.events
        explored += result.states_explored
        if not result.ok:
            message = f"key {run.key!r}: {result.message}"
            mismatch = result.mismatch
            if mismatch is not None:
                mismatch = attrs.evolve(mismatch, group=run.key, reason=f"key {run.key!r}: {mismatch.reason}")
            return attrs.evolve(result, events=total, states_explored=explored, message=message, mismatch=mismatch)
    return Validation(OK, total, explored, message=f"all {total} events explained, key by key")


def validate_key(spec: StoreDynamo, run: KeyRun, max_states: int) -> Validation:
    """One key's projected steps: each spec event fed to a ``Validator``, and after
    each step that logs a server's versions, the possible states narrowed to those
    whose replica of that server holds the same writes."""
    validator = Validator(spec, max_states=max_states)
    initial = {fingerprint(s): s for s in spec.init_states()}
    checked = 0
    try:
        for step in run.steps:
            checked += 1
            if step.problem is not None:
                before = tuple(validator.groups.get("", initial).values())
                return _violated(spec, validator, step, step.problem, before)
            if step.event is not None and validator.feed(step.event) is not None:
                return validator.result()
            states = validator.groups.get("", initial)
            if step.merged_in:
                states = _merge_outside(spec, states, step)
                if not states:
                    why = "it merges a version that no put of the key had made by then"
                    return _violated(spec, validator, step, why, ())
            if step.server is None:
                continue
            kept = {k: s for k, s in states.items() if values_of(s.replica[step.server]) == step.holds}
            if not kept:
                held = sorted({values_of(s.replica[step.server]) for s in states.values()})
                why = (
                    f"{step.server} holds {_writes_text(run, step.holds)}, but in every behaviour that reaches it "
                    f"{step.server} holds {' or '.join(_writes_text(run, h) for h in held)}"
                )
                return _violated(spec, validator, step, why, tuple(states.values()))
            validator.groups[""] = kept
    except TooLarge as exc:
        return Validation(UNKNOWN, checked, validator.search.explored, message=str(exc))
    return Validation(OK, checked, validator.search.explored, message=f"all {checked} events explained")


def _merge_outside(spec: StoreDynamo, states: Mapping[int, DynamoState], step: Step) -> dict[int, DynamoState]:
    """The states after ``step.server`` merges the versions of ``step.merged_in``
    (anti-entropy: no spec step), where each of those puts had begun."""
    assert step.server is not None
    by_number = {n: op for op, n in spec.writers.items()}
    out: dict[int, DynamoState] = {}
    for state in states.values():
        ops = [by_number.get(n) for n in step.merged_in]
        if any(op is None or state.phase[op] == IDLE for op in ops):
            continue
        versions = frozenset(spec.version_of(op) for op in ops if op is not None)
        after = spec.take_in(state, step.server, versions)
        out[fingerprint(after)] = after
    return out


def _violated(spec: Dynamo, validator: Validator, step: Step, why: str, possible: tuple[Any, ...]) -> Validation:
    event = step.source
    action = event["action"]
    args = ", ".join(f"{k}={v}" for k, v in action.items() if k in ("server", "cause", "source"))
    reason = f"no behaviour of {spec.name} explains step {event.get('step')}: {action['type']}({args}) — {why}"
    mismatch = Mismatch(int(event.get("step", 0)), event, possible, (), reason, kind="state")
    return Validation(VIOLATED, validator.events, validator.search.explored, mismatch, reason)


def _writes_text(run: KeyRun, numbers: Sequence[int]) -> str:
    names = [run.names.get(n, "a version no put made") for n in numbers]
    return "{" + ", ".join(names) + "}"


# ---------------------------------------------------------------- the wiring


class DynamoWiring(Wiring):
    """``impl.registers.dynamo`` (servers s1..sN, N = ``servers``, every server a
    replica of every key, R = ``r``, W = ``w``, vv mode, and two clients each
    running a few puts and gets on two keys) against ``spec.dynamo``, key by key.

    Checked after every step, on the servers' real state: every version a server
    acknowledged storing (a replica's ``Stored``, a coordinator's own copy as it
    sends ``Store``) is held, or covered by the context of a version held, both in
    memory (a server that is up) and in what a crash now would keep (its synced
    log).  At the end, once faults are over and anti-entropy has run: every client
    finished (each operation completed or given up on with ``Unavailable``), every
    replica of every key holds the same versions, and every acknowledged put is held
    or covered there; the trace is validated key by key (module docstring).
    Servers crash and restart; clients do not."""

    spec_name = "dynamo"
    variants = impl_dynamo.VARIANTS
    split_key = "key"
    default_params = ("servers=3",)
    incremental_trace = False
    default_steps = 1600
    unbounded_params = ("writers", "readers", "partitions", "coordinators")
    state_checks = "acknowledged versions kept after every step; converged with no acknowledged put lost at the end"
    validate_splits: Mapping[str, str] = MappingProxyType(
        {"key": "one register per key, each coordinated operation a client of spec/dynamo (docs/dynamo-store.md)"}
    )
    clients = ("c1", "c2")
    keys = ("x", "y")
    #: generous against the scheduler's clock, as the ABD wiring's: a coordinator
    #: fails a request only when its quorum stays out of reach
    timing = impl_dynamo.Timing(request_timeout=40.0, client_retry=8.0, replica_timeout=6.0, anti_entropy=3.0)

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        if params.get("mode", "vv") != "vv":
            raise UsageError("the Dynamo store is checked in vv mode only (mode=vv)")
        servers = int(params.get("servers", 3))
        values = iter(range(1, 100))
        workloads: dict[str, list[dict[str, Any]]] = {}
        for client in self.clients:
            ops = []
            for _ in range(rng.randint(2, 4)):
                key = rng.choice(self.keys)
                ops.append(impl_dynamo.put(key, next(values)) if rng.random() < 0.5 else impl_dynamo.get(key))
            workloads[client] = ops
        cluster = impl_dynamo.cluster(
            servers,
            workloads,
            timing=self.timing,
            variant=variant,
            r=int(params.get("r", 2)),
            w=int(params.get("w", 2)),
        )
        return DynamoSystem(cluster)

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        dynamo_system: DynamoSystem = system
        return dynamo_system.cluster.nodes()

    def fault_policy(self, faults: FaultPolicy, system: Any) -> FaultPolicy:
        dynamo_system: DynamoSystem = system
        return attrs.evolve(faults, crashable=tuple(s.name for s in dynamo_system.cluster.servers))

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        dynamo_system: DynamoSystem = system
        dynamo_system.read_messages(sim)
        servers = {s.name: s for s in dynamo_system.cluster.servers}
        durable: dict[str, dict[str, list[impl_dynamo.Version]]] = {}
        for name, key, op in sorted(dynamo_system.acked):
            version = dynamo_system.versions.get(op)
            if version is None:
                continue
            if name not in durable:
                durable[name] = dynamo_system.durable(sim, servers[name])
            held = {"after a crash": durable[name].get(key, [])}
            if sim.is_up(name):
                held["in memory"] = [v for v in servers[name].store.get(key, ()) if isinstance(v, impl_dynamo.Version)]
            for where, versions in held.items():
                if not held_or_covered(version, versions):
                    return (
                        "StoredKept violated: every version a server acknowledged storing stays held by it, or "
                        f"covered by the context of a version it holds; {name} acknowledged {version.value!r} "
                        f"of {key!r} (dot {version.dot[0]}:{version.dot[1]}, {op}) but holds {_dots_text(versions)} "
                        f"{where}"
                    )
        return None

    def done(self, sim: Simulation, system: Any) -> bool:
        dynamo_system: DynamoSystem = system
        cluster = dynamo_system.cluster
        return all(c.finished == len(c.ops) for c in cluster.clients) and cluster.converged()

    def finished(self, sim: Simulation, system: Any) -> str | None:
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
        dynamo_system: DynamoSystem = system
        cluster = dynamo_system.cluster
        for c in cluster.clients:
            if c.finished < len(c.ops):
                return f"client {c.name} finished {c.finished} of its {len(c.ops)} operations"
        if not cluster.converged():
            held = {k: cluster.siblings(k) for k in self.keys}
            return f"Convergence: the replicas still differ once the run is over: {held}"
        return lost_put(sim.trace.events, cluster)

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        return validate_run(spec, events)

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        """A store's trace (its events carry ``op``) is a behaviour of spec/dynamo
        only key by key, each coordinated operation a client: ``--split key``
        validates it so; without it, such a trace is refused rather than misread.
        Any other trace takes the generic path."""
        events = trace_events(trace)
        store_trace = any("op" in step.extra for step in trace.steps)
        if split != "key":
            if store_trace:
                raise UsageError("a trace of the Dynamo store (its events carry op); validate it with --split key")
            return None
        try:
            return validate_run(spec, events, max_states)
        except ProjectionError as exc:
            raise UsageError(str(exc)) from None


def kept_versions(records: Sequence[Mapping[str, Any]], server: impl_dynamo.DynamoServer) -> dict[str, list[Any]]:
    """Per key, the versions a server rebuilds from these log records (the last)."""
    out: dict[str, list[Any]] = {}
    for record in records:
        if "key" in record:
            out[str(record["key"])] = [impl_dynamo.Version.from_json(v, server.known) for v in record["versions"]]
    return out


def held_or_covered(version: impl_dynamo.Version, held: Sequence[impl_dynamo.Version]) -> bool:
    """Whether ``held`` keeps ``version`` or a version whose context covers it."""
    return any(v.dot == version.dot or version.covered_by(v.context) for v in held)


def causal_pasts(events: Sequence[Mapping[str, Any]]) -> dict[tuple[str, tuple[str, int]], frozenset[tuple[str, int]]]:
    """Per version made (key, dot), the dots of the key's versions its writer could
    have seen before it wrote: what every read it was answered returned, with their
    pasts in turn, and every put of its own (each try of each request).  Taken from the trace, not
    from the store's vectors, so that a context covering more than its client saw
    does not count as having seen it.  Over rather than under: a client is taken to
    have seen every answer addressed to it, even one it dropped as late."""
    seen: dict[tuple[str, str], set[tuple[str, int]]] = {}  # (client, key) → dots seen
    past: dict[tuple[str, tuple[str, int]], frozenset[tuple[str, int]]] = {}
    for event in events:
        action = event.get("action") or {}
        kind, key, client = action.get("type"), action.get("key"), event.get("client")
        if not isinstance(key, str) or not isinstance(client, str):
            continue
        mine = seen.setdefault((client, key), set())
        if kind == "Put":
            dot = (action["dot"][0], action["dot"][1])
            past[(key, dot)] = frozenset(mine)
            mine.add(dot)  # its own write, whichever coordinator's try of it was acknowledged
        elif kind == "AckPut":
            dot = (action["dot"][0], action["dot"][1])
            mine |= {dot, *past.get((key, dot), ())}
        elif kind == "ReturnGet":
            for version in action.get("siblings") or ():
                dot = (version["dot"][0], version["dot"][1])
                mine |= {dot, *past.get((key, dot), ())}
    return past


def lost_put(events: Sequence[Mapping[str, Any]], cluster: impl_dynamo.Cluster) -> str | None:
    """The first acknowledged put that some replica of its key has lost, or None
    (NoLostWrite on the real stores).  A client's put may be tried through several
    coordinators, each making a version (the Put events of one client request,
    ``client`` and ``req``); it is acknowledged when one of them is (``AckPut``), and
    lost at a replica that holds none of them nor a version causally after one (its
    writer had seen it: ``causal_pasts``)."""
    attempts: dict[tuple[str, str, Any], list[tuple[str, int]]] = {}  # (key, client, req) → its dots
    request: dict[tuple[str, tuple[str, int]], tuple[str, str, Any]] = {}
    made: dict[tuple[str, tuple[str, int]], Mapping[str, Any]] = {}
    for event in events:
        action = event.get("action") or {}
        if action.get("type") == "Put":
            key, dot = action["key"], (action["dot"][0], action["dot"][1])
            made[(key, dot)] = action
            asked = (key, str(event.get("client")), event.get("req", event.get("op")))
            attempts.setdefault(asked, []).append(dot)
            request[(key, dot)] = asked
    past = causal_pasts(events)
    for event in events:
        action = event.get("action") or {}
        if action.get("type") != "AckPut":
            continue
        key, dot = action["key"], (action["dot"][0], action["dot"][1])
        put = made.get((key, dot))
        if put is None:
            return f"NoLostWrite violated: {action['server']} acknowledged a put of {key!r} it never logged making"
        dots = attempts[request[(key, dot)]]
        for server in cluster.servers:
            if server.name not in server.replicas_for(key):
                continue
            held = [v for v in server.store.get(key, ()) if isinstance(v, impl_dynamo.Version)]
            if any(v.dot == d or d in past.get((key, v.dot), ()) for v in held for d in dots):
                continue
            version = impl_dynamo.Version(put["value"], dot, Vector(put["context"]))
            covered = any(version.covered_by(v.context) for v in held)
            why = (
                "covered by the context of a version whose writer never saw it"
                if covered
                else "neither held nor covered"
            )
            return (
                "NoLostWrite violated: every acknowledged put is held, or seen by the writer of a version held; "
                f"the acknowledged put of {put['value']!r} to {key!r} (dot {dot[0]}:{dot[1]}) is {why} at "
                f"{server.name}, which holds {_dots_text(held)}"
            )
    return None


def _dots_text(versions: Sequence[impl_dynamo.Version]) -> str:
    if not versions:
        return "nothing"
    return ", ".join(f"{v.value!r}@{v.dot[0]}:{v.dot[1]}" for v in versions)


@attrs.define
class DynamoSystem:
    cluster: impl_dynamo.Cluster
    #: (server, key, op) for each version a server acknowledged storing
    acked: set[tuple[str, str, str]] = attrs.field(factory=set)
    #: op → the version its coordinator made
    versions: dict[str, impl_dynamo.Version] = attrs.field(factory=dict)
    #: how many of ``sim.sent`` have been read
    seen: int = 0
    #: per server, its synced log's length and last record, and the versions rebuilt from it
    rebuilt: dict[str, tuple[int, int, dict[str, list[Any]]]] = attrs.field(factory=dict)

    def durable(self, sim: Simulation, server: impl_dynamo.DynamoServer) -> dict[str, list[Any]]:
        """Per key, the versions ``server`` would rebuild after a crash now (parsed
        again only when its synced log changed: most steps sync nothing)."""
        records = sim.durable_records(server.name, impl_dynamo.DynamoServer.LOG)
        mark = (len(records), id(records[-1]) if records else 0)
        cached = self.rebuilt.get(server.name)
        if cached is None or cached[:2] != mark:
            cached = (*mark, kept_versions(records, server))
            self.rebuilt[server.name] = cached
        return cached[2]

    def read_messages(self, sim: Simulation) -> None:
        """Note the versions sent for storing and the acknowledgements, from the
        messages sent since last time."""
        servers = {s.name: s for s in self.cluster.servers}
        for src, _, msg in sim.sent[self.seen :]:
            kind = msg.get("type")
            if kind == "Store" and src in servers and msg["op"] not in self.versions:
                version = impl_dynamo.Version.from_json(msg["versions"][0], servers[src].known)
                if version.dot[0] == src:  # the coordinator's own: stored before it sent this
                    self.versions[msg["op"]] = version
                    self.acked.add((src, str(msg["key"]), str(msg["op"])))
            elif kind == "Stored" and src in servers:
                self.acked.add((src, str(msg["key"]), str(msg["op"])))
        self.seen = len(sim.sent)
