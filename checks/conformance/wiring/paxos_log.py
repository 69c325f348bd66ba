"""Validating a Multi-Paxos trace against single-decree Paxos, one log slot at a time.

Where it sits: ``distcheck simulate paxos`` (``checks/conformance/wiring/paxos.py``) and
``distcheck validate paxos TRACE --split slot`` call ``validate_log`` on the events
an implementation of a replicated log recorded (ours is ``impl/paxos.py``; any
other, in any language, can log the same events).  Like the wirings in
``checks/conformance/wiring/``, this is one protocol's glue between implementation and spec.

A replicated log runs one instance of Paxos per slot, but runs phase 1 once for
all of them: a ``Prepare`` for ballot b covers every slot from some index on, and
so does each acceptor's promise.  The trace says so: ``Phase1a`` and ``Phase1b``
events carry ``from_slot`` (they happen in every slot from that one on), while
``Phase2a`` and ``Phase2b`` carry ``slot``.  The projection onto slot s keeps, in
their order, the phase 2 events of s and the phase 1 events whose ``from_slot`` is
at most s.  That sequence must be a behaviour of ``spec/paxos.py``.

Actors, the same here as for a single-decree trace (``validate_decree``) and
written in docs/trace-format.md: an acceptor's step (``Phase1b``, ``Phase2b``) is
logged by that acceptor (``actor`` equals its ``acceptor``); a proposer's step
(``Phase1a``, ``Phase2a``) by the proposer under any name, since a ballot belongs to
one proposer: every proposer step of one ballot must name the same actor.  The spec
has no proposers of its own and calls the proposer of ballot b ``p<b>``; that is
the mapping (``p<b>`` is itself a name like any other).

Three renamings make it one, and none changes what Paxos allows: acceptors are
renamed a1..aN in the order given; a slot's ballots are renumbered 0, 1, ... in
increasing order (Paxos only compares ballots, so any order-preserving renaming is
faithful); a slot's values (command ids such as ``c1:3`` or ``noop``) become v1,
v2, ... in order of first appearance.  The spec instance for a slot is then sized
to fit it: N acceptors, as many ballots and values as the slot uses.  A mismatch
is reported in the trace's own names (node, ballot, command).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from distcheck.checks.conformance.validate import (
    DEFAULT_MAX_STATES,
    Mismatch,
    Validation,
    trace_events,
    validate_events,
    validate_trace,
)
from distcheck.checks.traces.trace import Trace, TraceStep
from distcheck.spec.paxos import Config, Paxos

PHASE1 = ("Phase1a", "Phase1b")
PHASE2 = ("Phase2a", "Phase2b")
PROPOSER = ("Phase1a", "Phase2a")
ACCEPTOR = ("Phase1b", "Phase2b")


class LogTraceError(ValueError):
    """An event that is not a Multi-Paxos step (one clear line: which and why);
    ``kind`` is the ``Mismatch.kind`` it stands for (all of them bad input)."""

    def __init__(self, message: str, kind: str = "wrong_type") -> None:
        super().__init__(message)
        self.kind = kind


@attrs.frozen
class SlotTrace:
    """One slot's projection: spec-level events and the spec instance they need."""

    slot: int
    events: tuple[dict[str, Any], ...]
    config: Config


def _action(event: Mapping[str, Any]) -> Mapping[str, Any]:
    action = event.get("action")
    if not isinstance(action, Mapping) or action.get("type") not in (*PHASE1, *PHASE2):
        raise LogTraceError(
            f"step {event.get('step')}: action {action!r} is not a Paxos step; allowed: {', '.join(PHASE1 + PHASE2)}",
            "unknown_action",
        )
    return action


def project(events: Sequence[Mapping[str, Any]], acceptors: Sequence[str]) -> list[SlotTrace]:
    """Every slot's events, renamed into the spec's vocabulary (module docstring)."""
    slots: set[int] = set()
    for e in events:
        action = _action(e)
        kind = action["type"]
        key = "from_slot" if kind in PHASE1 else "slot"
        fields: dict[str, Any] = {key: e.get(key), "bal": action.get("bal")}
        for name, value in fields.items():
            if not _is_int(value) or value < 0:
                raise LogTraceError(f"step {e.get('step')}: a {kind} event needs a non-negative integer {name!r}")
        if kind in ("Phase1b", "Phase2b") and not isinstance(action.get("acceptor"), str):
            raise LogTraceError(f"step {e.get('step')}: a {kind} event needs an 'acceptor' name")
        if kind in PHASE2 and not isinstance(action.get("val"), str):
            raise LogTraceError(f"step {e.get('step')}: a {kind} event needs a 'val' (the command's id)")
        # A phase 1 event is checked at least in the first slot it covers, even when
        # no slot from there on has phase 2 events yet (a leader elected last).
        slots.add(int(e[key]))
    names = {a: f"a{i}" for i, a in enumerate(acceptors, 1)}
    # Each slot's events in trace order, without scanning the whole trace per slot.
    phase2: dict[int, list[tuple[int, Mapping[str, Any]]]] = {}
    phase1: list[tuple[int, Mapping[str, Any]]] = []
    for index, e in enumerate(events):
        if _action(e)["type"] in PHASE1:
            phase1.append((index, e))
        else:
            phase2.setdefault(int(e["slot"]), []).append((index, e))
    out: list[SlotTrace] = []
    for slot in sorted(slots):
        covering = [(i, e) for i, e in phase1 if int(e["from_slot"]) <= slot]
        group = [e for _, e in heapq.merge(covering, phase2.get(slot, []), key=lambda pair: pair[0])]
        ballots = {b: i for i, b in enumerate(sorted({int(_action(e)["bal"]) for e in group}))}
        values: dict[str, str] = {}
        for e in group:
            val = _action(e).get("val")
            if val is not None and str(val) not in values:
                values[str(val)] = f"v{len(values) + 1}"
        translated = []
        for e in group:
            action = dict(_action(e))
            original = {"node": e.get("actor"), "ballot": action["bal"], "slot": slot}
            action["bal"] = ballots[int(action["bal"])]
            if "acceptor" in action:
                if action["acceptor"] not in names:
                    raise LogTraceError(
                        f"step {e.get('step')}: acceptor {action['acceptor']!r} is not one of {', '.join(acceptors)}",
                        "unknown_name",
                    )
                action["acceptor"] = names[action["acceptor"]]
                actor = action["acceptor"]
            else:
                actor = f"p{action['bal']}"  # the spec names a proposer by its ballot
            if "val" in action:
                original["command"] = action["val"]
                action["val"] = values[str(action["val"])]
            translated.append({"step": e.get("step"), "actor": actor, "action": action, **original})
        config = Config(acceptors=len(acceptors), values=max(1, len(values)), max_ballot=max(0, len(ballots) - 1))
        out.append(SlotTrace(slot, tuple(translated), config))
    return out


def log_acceptors(events: Sequence[Mapping[str, Any]], count: int) -> list[str]:
    """The acceptors of a trace file: the names its events use, in natural order
    (r2 before r10), padded to ``count`` with names no event uses (an acceptor that
    never acted still counts towards quorums)."""
    used = sorted(
        {str(a["acceptor"]) for e in events for a in [e.get("action")] if isinstance(a, Mapping) and "acceptor" in a},
        # isdecimal, not isdigit: "²" is a digit that int() does not read.
        key=lambda name: [int(part) if part.isdecimal() else part for part in re.split(r"(\d+)", name)],
    )
    if len(used) > count:
        raise LogTraceError(
            f"the trace names {len(used)} acceptors ({', '.join(used)}) but its header says {count}", "unknown_name"
        )
    return used + [f"(silent acceptor {i})" for i in range(1, count - len(used) + 1)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_log(events: Sequence[Mapping[str, Any]], acceptors: Sequence[str]) -> Validation:
    """Each slot's projection validated against spec/paxos; the mismatch reported is
    the earliest event (by step) that some slot's projection cannot explain."""
    try:
        project(events, acceptors)
    except LogTraceError as exc:
        mismatch = Mismatch(0, {}, (), (), str(exc), kind=exc.kind)
        return Validation("violated", len(events), 0, mismatch, str(exc))
    problem = naming_problem(events)
    if problem is not None:
        index, naming = problem
        before = _validate_slots(events[:index], acceptors)
        if before.ok:
            return Validation("violated", len(events), before.states_explored, naming, naming.reason)
        return attrs.evolve(before, events=len(events))
    return _validate_slots(events, acceptors)


def _validate_slots(events: Sequence[Mapping[str, Any]], acceptors: Sequence[str]) -> Validation:
    slots = project(events, acceptors)
    explored = 0
    worst: tuple[SlotTrace, Validation] | None = None
    specs: dict[Config, Paxos] = {}
    for st in slots:
        spec = specs.setdefault(st.config, Paxos(st.config))
        v = validate_events(spec, st.events)
        explored += v.states_explored
        if v.ok:
            continue
        if worst is None or _step(v) < _step(worst[1]):
            worst = (st, v)
    if worst is None:
        return Validation(
            "ok", len(events), explored, message=f"all {len(events)} events explained, in {len(slots)} slot(s)"
        )
    st, v = worst
    if v.mismatch is None:  # too large: cannot happen with every step logged, but say so if it does
        return Validation(v.verdict, len(events), explored, message=f"slot {st.slot}: {v.message}")
    event = v.mismatch.event
    recorded = (
        f" (recorded by {event.get('node')} in slot {st.slot}: {event['action']['type']} at ballot "
        f"{event.get('ballot')}" + (f" for {event['command']}" if "command" in event else "") + ")"
    )
    mismatch = attrs.evolve(v.mismatch, reason=v.mismatch.reason + recorded, group=f"slot {st.slot}")
    return Validation("violated", len(events), explored, mismatch, mismatch.reason)


def _step(v: Validation) -> int:
    return v.mismatch.step if v.mismatch is not None else 1 << 62


# ------------------------------------------------------------------- actor naming


def naming_problem(
    events: Sequence[Mapping[str, Any]], *, one_proposer_per_ballot: bool = True
) -> tuple[int, Mismatch] | None:
    """The first event that breaks the actor-naming rule (module docstring), as its
    index and a mismatch: an acceptor step logged by another node, or a proposer step
    of a ballot that another actor already proposed in (unless the spec checked
    against lets proposers share a ballot: the ``shared_ballot`` variant)."""
    owner: dict[Any, tuple[Any, Any]] = {}
    for index, event in enumerate(events):
        action = event.get("action")
        if not isinstance(action, Mapping):
            continue
        kind, actor, step = action.get("type"), event.get("actor"), event.get("step")
        if kind in ACCEPTOR and "acceptor" in action and actor != action["acceptor"]:
            reason = (
                f"step {step}: {actor} logs {kind} of acceptor {action['acceptor']}: "
                "an acceptor's step is logged by that acceptor (actor = acceptor)"
            )
        elif kind in PROPOSER and _is_int(action.get("bal")) and one_proposer_per_ballot:
            first_actor, first_step = owner.setdefault(action["bal"], (actor, step))
            if first_actor == actor:
                continue
            reason = (
                f"step {step}: {actor} logs {kind} in ballot {action['bal']}, which belongs to {first_actor} "
                f"(its proposer since step {first_step}): each ballot belongs to one proposer"
            )
        else:
            continue
        statement = "Each ballot belongs to one proposer." if kind in PROPOSER else None
        mismatch = Mismatch(
            step if isinstance(step, int) else 0,
            event,
            (),
            (),
            reason,
            kind="actor",
            rule=str(kind),
            statement=statement,
        )
        return index, mismatch
    return None


def validate_decree(
    spec: Paxos, trace: Trace, *, split_key: str | None = None, max_states: int = DEFAULT_MAX_STATES
) -> Validation:
    """A single-decree Paxos trace against ``spec`` with the same actor naming as a
    replicated log (module docstring): a proposer logs its steps under its own name,
    one name per ballot, which the spec calls ``p<ballot>``."""
    events = trace_events(trace)
    problem = naming_problem(events, one_proposer_per_ballot=getattr(spec, "variant", None) != "shared_ballot")
    end = len(trace.steps) if problem is None else problem[0] + 1
    renamed: list[TraceStep] = []
    originals: dict[int, Mapping[str, Any]] = {}
    for step, event in zip(trace.steps[1:end], events):
        action = step.action
        if isinstance(action, Mapping) and action.get("type") in PROPOSER and _is_int(action.get("bal")):
            originals[step.step] = event
            step = attrs.evolve(step, actor=f"p{action['bal']}")
        renamed.append(step)
    result = validate_trace(
        spec, Trace(trace.header, (trace.steps[0], *renamed)), split_key=split_key, max_states=max_states
    )
    if result.mismatch is not None and result.mismatch.step in originals:
        m = result.mismatch
        own = originals[m.step]
        note = f" (p{own['action']['bal']} is the spec's name for the proposer of ballot {own['action']['bal']}, "
        note += f"which this trace calls {own.get('actor')})"
        mismatch = attrs.evolve(m, event=own, reason=m.reason + note)
        return attrs.evolve(result, mismatch=mismatch, message=mismatch.reason)
    if problem is not None and result.ok:
        return Validation("violated", len(events), result.states_explored, problem[1], problem[1].reason)
    return attrs.evolve(result, events=len(events)) if result.verdict != "unknown" else result
