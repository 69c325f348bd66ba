"""The ABD store (``impl/registers/abd.py``) wired to ``spec/abd.py``, key by key:
TagsGrow on the servers' real copies after every step, linearizable client results
at the end, and each key's trace validated against the spec with one spec client
per operation of the run.

The projection (``project``).  spec/abd runs one operation per client, writers
``wi`` writing i; the store's clients run many operations, and write any values.
So a key's events are validated against ``Abd.for_operations``: a spec client per
operation, named by the operation's id (``c1.3``, the name the store's tags carry
as their writer, so tags compare alike in both), each write writing its number
among the key's writes (1, 2, ...; the key's initial value, None, is 0).  The
events are renamed accordingly: a client step's ``client`` (and ``actor``) becomes
its ``op``, a server step's ``client`` too, and the copy an ``EndQuery`` names has
its value replaced by that number, looked up by its tag (a value that is not what
the tag's write wrote becomes -1, which no behaviour explains).

A server answers every query and update it receives, re-sent or duplicated ones
too; the spec's server answers each client once, which loses no behaviour (an
answer sent again could have been sent later the first time).  So of one server's
answers to one operation, the projection keeps one: for a query, the answer the
client used (``EndQuery`` logs each server's answered tag under ``answers``), else
the first; for an update, the first (a later one changes nothing: copies only
grow, and are durable before acknowledged).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

from distcheck.checks.conformance.simulate import Wiring
from distcheck.checks.conformance.validate import Mismatch, TooLarge, Validation, Validator, trace_events
from distcheck.checks.histories.linearizability import Operation, check_history
from distcheck.checks.params import UsageError
from distcheck.checks.traces.trace import Trace
from distcheck.checks.verdict import OK, UNKNOWN, VIOLATED
from distcheck.impl.registers import abd as impl_abd
from distcheck.impl.runtime import FaultPolicy, NodeMain, Simulation
from distcheck.spec.abd import Abd
from distcheck.spec.contract import Spec

CLIENT_STEPS = ("Invoke", "EndQuery", "EndUpdate")
SERVER_STEPS = ("ReplyQuery", "ReplyUpdate")


class ProjectionError(ValueError):
    """An event the projection cannot read (a field missing or of the wrong type)."""


@attrs.frozen
class KeyRun:
    """One key's events, renamed for the spec, and the operations on it."""

    key: str
    events: tuple[dict[str, Any], ...]
    writes: Mapping[str, int]
    reads: tuple[str, ...]


def _field(event: Mapping[str, Any], name: str, kind: type) -> Any:
    value = event.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProjectionError(f"step {event.get('step')}: {name!r} must be a {kind.__name__}, got {value!r}")
    return value


def _tag(value: Any, event: Mapping[str, Any], name: str) -> tuple[int, str]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or type(value[0]) is not int
        or not isinstance(value[1], str)
    ):
        raise ProjectionError(f"step {event.get('step')}: {name} must be a tag [number, writer], got {value!r}")
    return (value[0], value[1])


def project(events: Sequence[Mapping[str, Any]]) -> list[KeyRun]:
    """The run's events per key, in the spec's names (module docstring)."""
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        action = event.get("action")
        kind = action.get("type") if isinstance(action, Mapping) else None
        if kind not in (*CLIENT_STEPS, *SERVER_STEPS):
            raise ProjectionError(f"step {event.get('step')}: {kind!r} is not a step of spec/abd")
        by_key.setdefault(_field(event, "key", str), []).append(event)
    return [_project_key(key, key_events) for key, key_events in by_key.items()]


def _project_key(key: str, events: Sequence[Mapping[str, Any]]) -> KeyRun:
    writes: dict[str, int] = {}
    written: dict[str, Any] = {}  # op → the value it wrote
    reads: list[str] = []
    used: dict[tuple[str, str], tuple[int, str]] = {}  # (server, op) → the tag of the answer used
    for event in events:
        kind = event["action"]["type"]
        op = _field(event, "op", str)
        if kind == "Invoke":
            if _field(event, "kind", str) == "put":
                writes[op] = len(writes) + 1
                written[op] = event.get("value")
            else:
                reads.append(op)
        elif kind == "EndQuery":
            answers = _field(event, "answers", dict)
            for server, tag in answers.items():
                used[(server, op)] = _tag(tag, event, f"answers[{server}]")
    kept_query: dict[tuple[str, str], int] = {}  # (server, op) → index of the ReplyQuery kept
    kept_update: set[tuple[str, str]] = set()
    for i, event in enumerate(events):
        kind = event["action"]["type"]
        if kind not in SERVER_STEPS:
            continue
        pair = (_field(event["action"], "server", str), _field(event, "op", str))
        if kind == "ReplyUpdate":
            kept_update.add(pair)
            continue
        tag = _tag(event.get("tag"), event, "tag")
        if pair not in kept_query or (tag == used.get(pair) and _tag_at(events, kept_query[pair]) != tag):
            kept_query[pair] = i
    out: list[dict[str, Any]] = []
    seen_update: set[tuple[str, str]] = set()
    for i, event in enumerate(events):
        action = dict(event["action"])
        kind = action["type"]
        op = event["op"]
        renamed = dict(event)
        if kind in SERVER_STEPS:
            pair = (action["server"], op)
            if kind == "ReplyQuery" and kept_query.get(pair) != i:
                continue
            if kind == "ReplyUpdate":
                if pair in seen_update:
                    continue
                seen_update.add(pair)
        else:
            renamed["actor"] = op
        action["client"] = op
        if kind == "EndQuery":
            action["highest"] = _highest(action.get("highest"), event, writes, written)
        renamed["action"] = action
        out.append(renamed)
    return KeyRun(key, tuple(out), writes, tuple(reads))


def _tag_at(events: Sequence[Mapping[str, Any]], index: int) -> tuple[int, str]:
    return _tag(events[index].get("tag"), events[index], "tag")


def _highest(copy: Any, event: Mapping[str, Any], writes: Mapping[str, int], written: Mapping[str, Any]) -> Any:
    """The copy an EndQuery names, its value replaced by the spec's value for it."""
    if not isinstance(copy, Mapping) or not isinstance(copy.get("tag"), Mapping):
        raise ProjectionError(f"step {event.get('step')}: highest must be a Copy of a Tag and a value, got {copy!r}")
    tag = copy["tag"]
    number, writer = tag.get("number"), tag.get("writer")
    if type(number) is not int or not isinstance(writer, str):
        raise ProjectionError(f"step {event.get('step')}: highest.tag must have an integer number and a writer")
    value = copy.get("value")
    if (number, writer) == impl_abd.INITIAL_TAG:
        spec_value = 0 if value is None else -1
    elif writer in writes:
        spec_value = writes[writer] if value == written[writer] else -1
    else:
        spec_value = -1  # a tag no write of this key made
    return {**copy, "value": spec_value}


def validate_run(spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], max_states: int = 200_000) -> Validation:
    """Each key's events against spec/abd instantiated for that key's operations;
    the first key whose trace no behaviour explains is the verdict."""
    if not isinstance(spec, Abd):
        raise TypeError(f"the ABD store validates against spec/abd, not {type(spec).__name__}")
    total = explored = 0
    for run in project(events):
        keyed = Abd.for_operations(spec.config.servers, run.writes, run.reads)
        result = validate_key(keyed, run.events, max_states)
        total += result.events
        explored += result.states_explored
        if not result.ok:
            message = f"key {run.key!r}: {result.message}"
            mismatch = result.mismatch
            if mismatch is not None:
                mismatch = attrs.evolve(mismatch, group=run.key, reason=f"key {run.key!r}: {mismatch.reason}")
            return attrs.evolve(result, events=total, states_explored=explored, message=message, mismatch=mismatch)
    return Validation(OK, total, explored, message=f"all {total} events explained, key by key")


def validate_key(spec: Abd, events: Sequence[Mapping[str, Any]], max_states: int) -> Validation:
    """One key's projected events against its spec, each answer to a query checked
    too: the tag a server logs having answered must be the tag of the spec's copy of
    that server then.  (The spec's ``ReplyQuery`` names no copy, so without this a
    server that lost an acknowledged copy could answer an old one unnoticed until
    that answer decided some operation's outcome.)"""
    validator = Validator(spec, max_states=max_states)
    try:
        for event in events:
            if validator.feed(event) is not None:
                break
            if event["action"]["type"] != "ReplyQuery":
                continue
            server = event["action"]["server"]
            recorded = _tag(event.get("tag"), event, "tag")
            possible = tuple(validator.groups[""].values())
            held = sorted({(s.copy[server].tag.number, s.copy[server].tag.writer) for s in possible})
            if recorded not in held:
                reason = (
                    f"no behaviour of abd explains step {event.get('step')}: {server} ReplyQuery("
                    f"{server}, {event['action']['client']}) answers {_tag_text(recorded)}, but {server}'s copy "
                    f"is at {' or '.join(_tag_text(t) for t in held)} in every behaviour that reaches it"
                )
                mismatch = Mismatch(int(event.get("step", 0)), event, possible, (), reason, kind="state")
                return Validation(VIOLATED, validator.events, validator.search.explored, mismatch, reason)
    except TooLarge as exc:
        return Validation(UNKNOWN, len(events), validator.search.explored, message=str(exc))
    return validator.result()


class AbdWiring(Wiring):
    """``impl.registers.abd`` (servers s1..sN, N = ``servers``, and two clients each
    running a few puts and gets on two keys) against ``spec.abd``, key by key.

    Checked after every step, on the servers' real state: TagsGrow, every copy at
    least as high as every update its server acknowledged, both in memory (a server
    that is up) and in what a crash now would keep (its synced log).  At the end:
    every client finished (each operation completed or given up on with
    ``Unavailable``) and the clients' history is linearizable
    (``checks.histories.linearizability``); the trace is validated key by key (module
    docstring).  Servers crash and restart; clients do not.  A partition may cut
    off any node, a client included."""

    spec_name = "abd"
    variants = impl_abd.VARIANTS
    split_key = "key"
    default_params = ("servers=3",)
    incremental_trace = False
    default_steps = 4000
    unbounded_params = ("writers", "readers")
    state_checks = "TagsGrow on the servers' copies after every step, a linearizable history"
    validate_splits: Mapping[str, str] = MappingProxyType(
        {"key": "one register per key, each operation a client of spec/abd (docs/abd.md)"}
    )
    clients = ("c1", "c2")
    keys = ("x", "y")
    #: generous against the scheduler's clock (an advance is as likely as a quarter of
    #: any other step): an operation gives up only when a majority stays out of reach
    timing = impl_abd.Timing(resend=1.0, request_timeout=20.0)

    def build(self, params: Mapping[str, Any], variant: str | None, rng: random.Random) -> Any:
        servers = int(params.get("servers", 3))
        values = iter(range(1, 100))
        workloads: dict[str, list[dict[str, Any]]] = {}
        for client in self.clients:
            ops = []
            for _ in range(rng.randint(2, 3)):
                key = rng.choice(self.keys)
                ops.append(impl_abd.put(key, next(values)) if rng.random() < 0.5 else impl_abd.get(key))
            workloads[client] = ops
        return AbdSystem(impl_abd.cluster(servers, workloads, timing=self.timing, variant=variant))

    def nodes(self, system: Any) -> dict[str, NodeMain]:
        abd_system: AbdSystem = system
        return abd_system.cluster.nodes()

    def fault_policy(self, faults: FaultPolicy, system: Any) -> FaultPolicy:
        abd_system: AbdSystem = system
        return attrs.evolve(faults, crashable=tuple(s.name for s in abd_system.cluster.servers))

    def check_state(self, spec: Spec[Any, Any], sim: Simulation, system: Any) -> str | None:
        abd_system: AbdSystem = system
        for src, _, msg in sim.sent[abd_system.seen :]:
            if msg.get("type") == "UpdateAck":
                pair = (src, str(msg["key"]))
                tag = (int(msg["number"]), str(msg["writer"]))
                abd_system.acked[pair] = max(abd_system.acked.get(pair, impl_abd.INITIAL_TAG), tag)
        abd_system.seen = len(sim.sent)
        servers = {s.name: s for s in abd_system.cluster.servers}
        durable: dict[str, dict[str, tuple[int, str]]] = {}
        for (name, key), tag in sorted(abd_system.acked.items()):
            if name not in durable:
                durable[name] = kept_tags(sim.durable_records(name, "copies"))
            held = {"after a crash": durable[name].get(key, impl_abd.INITIAL_TAG)}
            if sim.is_up(name):
                held["in memory"] = servers[name].copy(key).tag
            for where, copy_tag in held.items():
                if copy_tag < tag:
                    return (
                        "TagsGrow violated: every server's copy has a tag at least that of every update it "
                        f"acknowledged; {name} acknowledged {key!r} at {_tag_text(tag)} but holds "
                        f"{_tag_text(copy_tag)} {where}"
                    )
        return None

    def history(self, system: Any) -> list[Operation]:
        abd_system: AbdSystem = system
        return [Operation(e.client, e.call, e.ret, e.op, e.result) for e in abd_system.cluster.history.entries]

    def finished(self, sim: Simulation, system: Any) -> str | None:
        if sim.failures:
            return f"a node's own code failed: {sim.failures[0]}"
        abd_system: AbdSystem = system
        for c in abd_system.cluster.clients:
            if c.finished < len(c.ops):
                return f"client {c.name} finished {c.finished} of its {len(c.ops)} operations"
        history = [Operation(e.client, e.call, e.ret, e.op, e.result) for e in abd_system.cluster.history.entries]
        verdict = check_history(history)
        if not verdict.ok:
            return f"the clients' results are {verdict.message}"
        return None

    def validate(
        self, spec: Spec[Any, Any], events: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None = None
    ) -> Validation:
        return validate_run(spec, events)

    def validate_file(
        self, spec: Spec[Any, Any], trace: Trace, split: str | None, max_states: int
    ) -> Validation | None:
        """A store's trace (its events carry ``op``) is a behaviour of spec/abd only key
        by key, each operation a client: ``--split key`` validates it so; without it,
        such a trace is refused rather than misread.  Any other trace takes the
        generic path."""
        events = trace_events(trace)
        store_trace = any("op" in step.extra for step in trace.steps)
        if split != "key":
            if store_trace:
                raise UsageError("a trace of the ABD store (its events carry op); validate it with --split key")
            return None
        try:
            return validate_run(spec, events, max_states)
        except ProjectionError as exc:
            raise UsageError(str(exc)) from None


def kept_tags(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, str]]:
    """Per key, the tag a server rebuilds from these log records (the highest)."""
    out: dict[str, tuple[int, str]] = {}
    for r in records:
        key, tag = str(r["key"]), (int(r["number"]), str(r["writer"]))
        out[key] = max(out.get(key, impl_abd.INITIAL_TAG), tag)
    return out


def _tag_text(tag: tuple[int, str]) -> str:
    return f"{tag[0]}.{tag[1] or '-'}"


@attrs.define
class AbdSystem:
    cluster: impl_abd.Cluster
    #: (server, key) → the highest tag that server acknowledged for that key
    acked: dict[tuple[str, str], tuple[int, str]] = attrs.field(factory=dict)
    #: how many of ``sim.sent`` have been read
    seen: int = 0
