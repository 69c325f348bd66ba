"""The trace model: one behaviour of a protocol, from any source, on disk and in memory.

Where it sits: every tool that writes, reads or shows a behaviour goes through this
module: the explorer's counterexamples (``distcheck check``), the hypothesis harness
(``checks.stateful``, ``distcheck fuzz``), our implementations' logs and logs written by
programs in other languages.  ``docs/trace-format.md`` is the specification of the file
format and ``docs/trace-format.schema.json`` its JSON Schema; this module reads and
writes exactly that.  It knows specs only through ``spec.contract``'s contract.

A trace is a header (spec, parameters, variant, source, the violated property if any)
and numbered steps.  Step 0 is the initial state; each later step names its actor, its
action in the spec's vocabulary, the resulting state (optional for implementations,
which may not know the global state), and for message-passing specs the messages the
step sent and received.  Actions, states and messages are kept in their JSON form
(``spec.codec.to_json``): that form is what other languages write, so it is the one
thing every tool here agrees on.  ``replay`` turns a trace back into spec values by
re-executing its actions, and says where and why it stops being a behaviour.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from distcheck.checks.inputs import DEFAULT_LIMITS, InputError, JsonReader, Limits, read_lines
from distcheck.checks.search.explore import Step
from distcheck.checks.verdict import INVALID, OK, VIOLATED
from distcheck.spec.codec import from_json, to_json, value_problem
from distcheck.spec.contract import Action, Spec
from distcheck.spec.network import Network
from distcheck.spec.values import fingerprint

FORMAT = "distcheck-trace"
VERSION = 1
SOURCES = ("explorer", "swarm", "hypothesis", "fuzz", "simulate", "impl", "external")
VIOLATION_KINDS = ("invariant", "deadlock", "refinement", "action", "liveness")

# ------------------------------------------------------------------------- the model


@attrs.frozen
class TraceViolation:
    """The property a trace violates: its name, one line of English, and its kind."""

    invariant: str
    statement: str = ""
    kind: str = "invariant"


@attrs.frozen
class TraceHeader:
    """Line 1 of a trace file."""

    spec: str
    params: Mapping[str, Any] = attrs.field(factory=dict)
    variant: str | None = None
    source: str = "external"
    violation: TraceViolation | None = None
    version: int = VERSION
    #: keys this version does not define (``impl_variant``; what a protocol's wiring
    #: notes about the run, such as PBFT's Byzantine messages), kept as written
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class TraceStep:
    """One step.  ``action`` and ``state`` are JSON forms; ``action`` is None only for
    step 0, ``state`` is None when the writer did not know it."""

    step: int
    actor: str | None
    action: Any
    state: Any = None
    action_text: str | None = None
    sent: tuple[Any, ...] = ()
    received: tuple[Any, ...] = ()
    extra: Mapping[str, Any] = attrs.field(factory=dict)  # keys this version does not define, kept as written


@attrs.frozen
class Trace:
    header: TraceHeader
    steps: tuple[TraceStep, ...]

    @property
    def length(self) -> int:
        """The number of steps after the initial state."""
        return len(self.steps) - 1


class TraceFormatError(InputError):
    """A trace file that does not follow the format: ``line`` is 1-based (0: the file
    as a whole), ``reason`` says what is wrong (``checks.inputs`` reads the file
    within its limits and raises this too)."""


# --------------------------------------------------------------- building from a spec


def from_behaviour(
    spec: Spec[Any, Any],
    steps: Sequence[Step],
    *,
    spec_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    variant: str | None = None,
    source: str = "explorer",
    violation: TraceViolation | None = None,
) -> Trace:
    """The trace of a behaviour given as spec values (the explorer's or hypothesis's).

    ``params`` defaults to the spec's Config fields other than ``variant``; sent and
    received messages are worked out from the state's network fields (see
    ``messages_of_step``)."""
    config = getattr(spec, "config", None)
    if params is None:
        params = {}
        if config is not None and attrs.has(type(config)):
            params = {f.name: getattr(config, f.name) for f in attrs.fields(type(config)) if f.name != "variant"}
    if variant is None and config is not None:
        variant = getattr(config, "variant", None)
    header = TraceHeader(spec_name or spec.name, dict(params), variant, source, violation)
    out = [TraceStep(0, None, None, to_json(steps[0].state))]
    for i in range(1, len(steps)):
        action, before, after = steps[i].action, steps[i - 1].state, steps[i].state
        sent, received = messages_of_step(spec, before, action, after)
        out.append(
            TraceStep(
                i,
                action.actor,
                to_json(action),
                to_json(after),
                str(action),
                tuple(to_json(m) for m in sent),
                tuple(to_json(m) for m in received),
            )
        )
    return Trace(header, tuple(out))


def network_fields(state: Any) -> list[str]:
    """Names of the state's top-level fields that hold a network model
    (``distcheck.spec.network.Network``)."""
    if not attrs.has(type(state)):
        return []
    return [f.name for f in attrs.fields(type(state)) if isinstance(getattr(state, f.name), Network)]


def messages_of_step(spec: Spec[Any, Any], before: Any, action: Any, after: Any) -> tuple[list[Any], list[Any]]:
    """(sent, received) for one step of a message-passing spec.

    Sent: the copies the step added to a network.  Received: the messages the step
    needs, i.e. those whose removal from the network would disable the action.  That
    one rule covers every network model, including TLA+-style message sets where a
    receive removes nothing.  A step of the network itself (an action whose actor is
    ``net``: a loss, a duplication) sends and receives nothing."""
    if getattr(action, "actor", None) == "net":
        return [], []
    sent: list[Any] = []
    received: list[Any] = []
    for name in network_fields(before):
        old, new = getattr(before, name), getattr(after, name)
        sent += new.added_since(old)
        for msg in old.deliverable():
            without = attrs.evolve(before, **{name: old.without(msg)})
            if spec.next_state(without, action) is None:
                received.append(msg)
    return sent, received


# ------------------------------------------------------------------- JSON Lines I/O


def header_json(header: TraceHeader) -> dict[str, Any]:
    v = header.violation
    return {
        **header.extra,
        "format": FORMAT,
        "version": header.version,
        "spec": header.spec,
        "params": dict(header.params),
        "variant": header.variant,
        "source": header.source,
        "violation": None if v is None else {"invariant": v.invariant, "statement": v.statement, "kind": v.kind},
    }


def step_json(step: TraceStep) -> dict[str, Any]:
    out: dict[str, Any] = {"step": step.step, "actor": step.actor, "action": step.action}
    if step.action_text is not None:
        out["action_text"] = step.action_text
    if step.state is not None:
        out["state"] = step.state
    if step.sent:
        out["sent"] = list(step.sent)
    if step.received:
        out["received"] = list(step.received)
    out.update(step.extra)
    return out


def steps_json(trace: Trace) -> list[dict[str, Any]]:
    """The steps as JSON objects (what ``--json`` outputs put under ``violation.trace``)."""
    return [step_json(s) for s in trace.steps]


def dumps(trace: Trace) -> str:
    """The trace as JSON Lines text (ending in a newline)."""
    lines = [header_json(trace.header), *(step_json(s) for s in trace.steps)]
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


DEFAULT_DIR = Path(".distcheck") / "traces"


def default_path(header: TraceHeader, directory: str | Path = DEFAULT_DIR) -> Path:
    """Where a failure's trace goes when no path is given: one file per spec, variant,
    property and source, so the latest counterexample of a kind replaces the last."""
    parts = [
        header.spec,
        header.variant,
        header.violation.invariant if header.violation else "behaviour",
        header.source,
    ]
    name = "-".join(p for p in parts if p)
    return Path(directory) / f"{''.join(c if c.isalnum() or c in '-_' else '_' for c in name)}.jsonl"


def write(trace: Trace, path: str | Path) -> Path:
    """Write the trace to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(trace), encoding="utf-8")
    return path


def read(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Trace:
    """Read a trace file; ``TraceFormatError`` names the line and what is wrong.

    The file is read line by line through ``checks.inputs`` (its limits: size,
    lines, line length, nesting, integers, strings), so memory grows with the steps
    kept, not with the text."""
    reader = JsonReader(limits)
    origin = str(path)
    try:
        return _from_lines(origin, read_lines(path, limits), reader)
    except InputError as exc:
        if isinstance(exc, TraceFormatError):
            raise
        raise TraceFormatError(exc.origin, exc.line, exc.reason) from None


def loads(text: str, origin: str = "<trace>", limits: Limits = DEFAULT_LIMITS) -> Trace:
    """Parse JSON Lines text.  Blank lines are not allowed between steps: line numbers
    are how errors are reported and how people find a step in the file."""
    reader = JsonReader(limits)
    lines = text.split("\n")
    if len(lines) > limits.lines + 1:
        raise TraceFormatError(origin, limits.lines + 1, f"more than {limits.lines:,} lines")
    return _from_lines(origin, ((n, line.removesuffix("\r")) for n, line in enumerate(lines, start=1)), reader)


def _from_lines(origin: str, lines: Iterable[tuple[int, str]], reader: JsonReader) -> Trace:
    header: TraceHeader | None = None
    steps: list[TraceStep] = []
    blank: int | None = None
    checked: set[int] = set()
    for number, text in lines:
        if not text.strip():
            blank = blank or number
            continue
        if blank is not None:
            raise TraceFormatError(origin, blank, "a blank line: one step per line, no blank lines between steps")
        data = _parse_json(origin, number, text, reader)
        if header is None:
            header = _parse_header(data, origin)
        else:
            steps.append(_parse_step(data, origin, number, reader, checked))
    if header is None:
        raise TraceFormatError(origin, 0, "empty file: expected a header line and at least step 0")
    if not steps:
        raise TraceFormatError(
            origin, 1, "the header is not followed by any step (step 0, the initial state, is required)"
        )
    return Trace(header, tuple(steps))


def _parse_json(origin: str, line_no: int, line: str, reader: JsonReader) -> dict[str, Any]:
    try:
        value = reader.parse(line)
    except ValueError as exc:
        raise TraceFormatError(origin, line_no, str(exc)) from None
    if not isinstance(value, dict):
        raise TraceFormatError(origin, line_no, f"expected a JSON object, got {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true or false"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


_HEADER_KEYS = ("format", "version", "spec", "params", "variant", "source", "violation")


def _parse_header(data: dict[str, Any], origin: str) -> TraceHeader:
    def bad(reason: str) -> TraceFormatError:
        return TraceFormatError(origin, 1, f"header: {reason}")

    if data.get("format") != FORMAT:
        raise bad(f'"format" must be "{FORMAT}", got {_brief(data.get("format"))}')
    if data.get("version") != VERSION:
        raise bad(f'"version" {_brief(data.get("version"))} is not supported; this reader knows version {VERSION}')
    missing = [k for k in _HEADER_KEYS if k not in data]
    if missing:
        raise bad(f"missing key(s) {', '.join(missing)}")
    if not isinstance(data["spec"], str) or not data["spec"]:
        raise bad('"spec" must be a non-empty string (a name from distcheck list)')
    if not isinstance(data["params"], dict):
        raise bad('"params" must be an object of parameter values')
    for name, value in data["params"].items():
        if not isinstance(value, (str, int, bool)):
            raise bad(f"parameter {_brief(name)}: a value is a string, an integer or a boolean, got {_brief(value)}")
    if data["variant"] is not None and not isinstance(data["variant"], str):
        raise bad('"variant" must be a string or null')
    if data["source"] not in SOURCES:
        raise bad(f'"source" must be one of {", ".join(SOURCES)}, got {_brief(data["source"])}')
    violation = None
    raw = data["violation"]
    if raw is not None:
        if not isinstance(raw, dict) or not isinstance(raw.get("invariant"), str):
            raise bad('"violation" must be null or an object with a string "invariant"')
        kind = raw.get("kind", "invariant")
        if kind not in VIOLATION_KINDS:
            raise bad(f'violation "kind" must be one of {", ".join(VIOLATION_KINDS)}, got {_brief(kind)}')
        statement = raw.get("statement", "")
        if not isinstance(statement, str):
            raise bad('violation "statement" must be a string')
        violation = TraceViolation(raw["invariant"], statement, kind)
    extra = {k: v for k, v in data.items() if k not in _HEADER_KEYS}
    return TraceHeader(data["spec"], data["params"], data["variant"], data["source"], violation, data["version"], extra)


_STEP_KEYS = ("step", "actor", "action", "action_text", "state", "sent", "received")


def _parse_step(
    data: dict[str, Any], origin: str, line_no: int, reader: JsonReader | None = None, checked: set[int] | None = None
) -> TraceStep:
    """One step line.  ``checked`` holds the ids of shared action objects whose
    encodings were checked already (a long trace repeats a few actions)."""
    expected = line_no - 2
    problem = _step_problem(data, expected)
    action = data["action"] if problem is None else None
    if problem is None and action is not None:
        if reader is not None:
            action = reader.share(action)
        if checked is None or id(action) not in checked:
            found = value_problem(action)
            problem = None if found is None else f'"action": {found}'
            if checked is not None and found is None:
                checked.add(id(action))
    if problem is None and len(data) > 3:
        for key in ("state", "sent", "received"):
            found = value_problem(data[key]) if key in data else None
            if found is not None:
                problem = f'"{key}": {found}'
                break
    if problem is not None:
        raise TraceFormatError(origin, line_no, f"step {expected}: {problem}")
    extra = {k: v for k, v in data.items() if k not in _STEP_KEYS} if len(data) > 3 else {}
    return TraceStep(
        expected,
        data["actor"],
        action,
        data.get("state"),
        data.get("action_text"),
        tuple(data["sent"]) if "sent" in data else (),
        tuple(data["received"]) if "received" in data else (),
        reader.share(extra) if reader is not None and extra else extra,
    )


def _step_problem(data: dict[str, Any], expected: int) -> str | None:
    """What is wrong with a step line's keys (not its values' encodings), or None."""
    for key in ("step", "actor", "action"):
        if key not in data:
            return f'missing key "{key}"'
    step, actor, action = data["step"], data["actor"], data["action"]
    if type(step) is not int or step != expected:
        return f'"step" must be {expected} (steps are numbered 0, 1, 2, ... one per line), got {_brief(step)}'
    if expected == 0:
        if action is not None:
            return 'step 0 is the initial state: its "action" must be null'
    elif type(action) is not dict or type(action.get("type")) is not str:
        return '"action" must be an object with a string "type" (the action\'s name)'
    if actor is not None and type(actor) is not str:
        return '"actor" must be a string or null'
    if len(data) > 3:
        if "action_text" in data and type(data["action_text"]) is not str:
            return '"action_text" must be a string'
        for key in ("sent", "received"):
            if key in data and type(data[key]) is not list:
                return f'"{key}" must be a list of messages'
    return None


def _brief(value: Any) -> str:
    """A value of the input for a message: JSON, ASCII only, cut short."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- JSON-level changes


class _Absent:
    """The value on the side of a change where a key does not exist."""

    def __repr__(self) -> str:
        return "∅"


ABSENT: Any = _Absent()

PathKey = str | int


@attrs.frozen
class Change:
    """One changed part of a state, in JSON form.

    ``path`` walks records (by field, shown ``.field``) and maps (by key, shown
    ``[key]``).  A change to a list is a change of members (``added``/``removed``)
    unless only the order moved; any other change is ``old`` → ``new``."""

    path: tuple[PathKey, ...]
    kinds: tuple[str, ...]  # for each path element: "field" or "key"
    old: Any = None
    new: Any = None
    added: tuple[Any, ...] = ()
    removed: tuple[Any, ...] = ()

    @property
    def is_members(self) -> bool:
        return bool(self.added or self.removed)


def is_record(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("type"), str)


def _map_entries(value: Any) -> dict[str, Any] | None:
    """A JSON map as key → value (keys of non-string maps as their JSON text)."""
    if not isinstance(value, dict) or is_record(value):
        return None
    if set(value) == {"map"} and isinstance(value["map"], list):
        return {json.dumps(k, sort_keys=True): v for k, v in value["map"]}
    if set(value) == {"bag"}:
        return None
    return value


def multiset(value: Any) -> list[tuple[Any, int]] | None:
    """The members of a JSON list or bag with their counts; None for anything else."""
    if isinstance(value, list):
        return [(m, 1) for m in value]
    if isinstance(value, dict) and set(value) == {"bag"} and isinstance(value["bag"], list):
        return [(m, n) for m, n in value["bag"]]
    return None


def frozen(value: Any) -> Any:
    """A hashable form of a JSON value, equal exactly when the values are equal."""
    if isinstance(value, dict):
        return ("{}", frozenset((k, frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("[]", tuple(frozen(v) for v in value))
    return value


def diff(old: Any, new: Any) -> list[Change]:
    """What differs between two JSON states, one ``Change`` per changed part."""
    out: list[Change] = []
    _diff(old, new, (), (), out)
    return out


def _diff(old: Any, new: Any, path: tuple[PathKey, ...], kinds: tuple[str, ...], out: list[Change]) -> None:
    if old == new:
        return
    if is_record(old) and is_record(new) and old["type"] == new["type"]:
        for key in [k for k in old if k != "type"] + [k for k in new if k not in old]:
            _diff(old.get(key, ABSENT), new.get(key, ABSENT), (*path, key), (*kinds, "field"), out)
        return
    old_map, new_map = _map_entries(old), _map_entries(new)
    if old_map is not None and new_map is not None:
        for key in list(old_map) + [k for k in new_map if k not in old_map]:
            _diff(old_map.get(key, ABSENT), new_map.get(key, ABSENT), (*path, key), (*kinds, "key"), out)
        return
    old_items, new_items = multiset(old), multiset(new)
    if old_items is not None and new_items is not None:
        added, removed = _subtract(new_items, old_items), _subtract(old_items, new_items)
        if added or removed:
            out.append(Change(path, kinds, old, new, tuple(added), tuple(removed)))
            return
    out.append(Change(path, kinds, old, new))


_MAX_REPEAT = 100  # copies of one member listed in a change (a bag's count may be huge)


def _subtract(items: list[tuple[Any, int]], minus: list[tuple[Any, int]]) -> list[Any]:
    """The members of ``items`` not matched by one in ``minus``, counts subtracted, in
    linear time; a member is listed once per extra copy, at most ``_MAX_REPEAT`` times."""
    rest: dict[Any, int] = {}
    for member, count in minus:
        key = frozen(member)
        rest[key] = rest.get(key, 0) + count
    out: list[Any] = []
    for member, count in items:
        key = frozen(member)
        matched = min(count, rest.get(key, 0))
        if matched:
            rest[key] -= matched
        out += [member] * min(count - matched, _MAX_REPEAT)
    return out


# ---------------------------------------------------------------------------- replay


@attrs.frozen
class ReplayResult:
    """What re-executing a trace on its spec showed.

    verdict (``checks.verdict``): "violated" (a property fails at ``step``), "ok" (a
    behaviour of the spec on which every invariant holds) or "invalid" (the trace is
    not a behaviour: ``step`` is the first one the spec does not explain; ``reason``
    says why).  ``behaviour`` holds the spec's values for every step replayed before
    the verdict was known."""

    verdict: str
    reason: str
    behaviour: tuple[Step, ...]
    step: int | None = None
    violation: TraceViolation | None = None
    matches_recorded: bool = True  # for "violation": is it the one the header records?
    # For each trace step replayed, its index in ``behaviour`` (empty: the same index).
    # They differ when replay had to infer steps the log leaves out (``UNLOGGED_SEARCH``).
    positions: tuple[int, ...] = ()

    @property
    def exit_code(self) -> int:
        return {VIOLATED: 1, OK: 0}.get(self.verdict, 2)


def replay(trace: Trace, spec: Spec[Any, Any]) -> ReplayResult:
    """Re-execute the trace's actions on ``spec`` (built for the trace's header) and
    check the recorded actor and state of every step.

    The first failure of a property is the verdict, unless the trace goes on and a
    later step diverges: a trace must be a behaviour all the way through.  A header
    that records a violation which does not happen is reported as a divergence at
    the last step."""
    steps = trace.steps
    behaviour: list[Step] = []
    positions: list[int] = []

    def diverged(at: int, reason: str) -> ReplayResult:
        return ReplayResult(INVALID, f"step {at}: {reason}", tuple(behaviour), at)

    inits = list(spec.init_states())
    first = steps[0]
    if first.state is None:
        if len(inits) != 1:
            return diverged(0, f"records no state and the spec has {len(inits)} initial states to choose from")
        state = inits[0]
    else:
        matching = [s for s in inits if _same(s, first.state)]
        if not matching:
            return diverged(
                0, "the recorded state is not an initial state of the spec: " + _explain(inits[0], first.state)
            )
        state = matching[0]
    behaviour.append(Step(None, state))
    positions.append(0)
    found = _broken(spec, state)
    found_at = 0 if found else None
    types = spec.value_types()
    for step in steps[1:]:
        i = step.step
        try:
            action = from_json(step.action, types)
        except ValueError as exc:
            return diverged(i, f"the action is not one of the spec's: {exc}")
        if not isinstance(action, Action):
            return diverged(i, f"{_brief(step.action.get('type'))} is a value of the spec but not an action")
        nxt = _apply(spec, state, action)
        if nxt is None and step.state is None:
            # An implementation's log leaves out the steps the spec does not log
            # (``observe`` None: a clock's drift, a message lost): infer the fewest.
            unlogged = _unlogged_before(spec, state, action)
            if unlogged is not None:
                for between, after in unlogged:
                    state = after
                    behaviour.append(Step(between, state))
                    if found is None:
                        found = _broken(spec, state)
                        found_at = i if found else None
                nxt = _apply(spec, state, action)
        if nxt is None:
            return diverged(i, f"{action} is not enabled in the state after step {i - 1}")
        actor = action.actor
        if step.actor is not None and step.actor != actor and _logs_actor(spec, state, action):
            return diverged(i, f"{action} is taken by {actor}, but the trace says {_brief(step.actor)}")
        if step.state is not None and not _same(nxt, step.state):
            return diverged(
                i, f"after {action} the recorded state differs from the spec's: " + _explain(nxt, step.state)
            )
        refinement_broken = _breaks_refinement(spec, state, nxt, trace.header.violation) or _breaks_step_property(
            spec, state, nxt
        )
        state = nxt
        behaviour.append(Step(action, state))
        positions.append(len(behaviour) - 1)
        if found is None:
            found = refinement_broken or _broken(spec, state)
            found_at = i if found else None

    recorded = trace.header.violation
    if found is None and recorded is not None and recorded.kind == "deadlock":
        if not any(True for _ in spec.successors(state)):
            found, found_at = recorded, len(steps) - 1
    if found is None and recorded is not None and recorded.kind == "liveness":
        found = _out_of_reach(spec, state, recorded)
        found_at = len(steps) - 1 if found else None
    if found is None:
        if recorded is not None:
            return diverged(
                len(steps) - 1,
                f"the header records {recorded.invariant} violated, but every property holds on replay",
            )
        return ReplayResult(
            OK,
            "every step is a step of the spec and every invariant holds",
            tuple(behaviour),
            positions=tuple(positions),
        )
    matches = recorded is not None and recorded.invariant == found.invariant
    note = "" if matches else f" (the header records {recorded.invariant if recorded else 'no violation'})"
    return ReplayResult(
        VIOLATED,
        f"{found.invariant} is violated at step {found_at}{note}: {found.statement}",
        tuple(behaviour),
        found_at,
        found,
        matches,
        tuple(positions),
    )


UNLOGGED_SEARCH = 10_000  # the most spec states replay visits looking for steps a log left out


def _apply(spec: Spec[Any, Any], state: Any, action: Any) -> Any:
    """``spec.next_state``, where an action decoded from a file that the spec's rules
    cannot even evaluate (a parameter of the wrong kind) is simply not enabled."""
    try:
        return spec.next_state(state, action)
    except (TypeError, KeyError, ValueError, AttributeError, IndexError):
        return None


def _logs_actor(spec: Spec[Any, Any], state: Any, action: Any) -> bool:
    """Does the spec say who logs this step?  Its ``observe`` names the actor for most
    specs; a spec whose events leave the actor out (a lock server logs its clients'
    steps) lets an implementation name it as it does."""
    observed = spec.observe(state, action)
    return observed is None or "actor" in observed


def _unlogged_before(spec: Spec[Any, Any], state: Any, action: Any) -> list[tuple[Any, Any]] | None:
    """The shortest run of steps the spec does not log (``observe`` None) after which
    ``action`` is enabled; None when there is none within ``UNLOGGED_SEARCH`` states."""
    start = fingerprint(state)
    parent: dict[int, tuple[int, Any, Any] | None] = {start: None}
    queue = [state]
    for current in queue:
        for between, after in spec.successors(current):
            if spec.observe(current, between) is not None:
                continue
            key = fingerprint(after)
            if key in parent:
                continue
            parent[key] = (fingerprint(current), between, after)
            if _apply(spec, after, action) is not None:
                path: list[tuple[Any, Any]] = []
                link = parent[key]
                while link is not None:
                    path.append((link[1], link[2]))
                    link = parent[link[0]]
                return path[::-1]
            if len(parent) >= UNLOGGED_SEARCH:
                return None
            queue.append(after)
    return None


def completed(trace: Trace, spec: Spec[Any, Any]) -> Trace | None:
    """The trace with what its writer could not know filled in from the spec: the
    state after every step, and the messages sent and received.  An implementation's
    log records only actions; replaying them gives the rest.  None when the trace is
    not a behaviour of ``spec``.  What the writer did record is kept."""
    result = replay(trace, spec)
    if result.verdict == INVALID:
        return None
    full = from_behaviour(spec, result.behaviour)
    spec_steps = [full.steps[p] for p in result.positions] if result.positions else list(full.steps)
    steps = tuple(
        attrs.evolve(
            spec_step,
            step=own.step,
            actor=own.actor if own.actor is not None else spec_step.actor,
            action_text=own.action_text or spec_step.action_text,
            sent=own.sent or spec_step.sent,
            received=own.received or spec_step.received,
            extra=own.extra,
        )
        for own, spec_step in zip(trace.steps, spec_steps)
    )
    return Trace(trace.header, steps)


LIVENESS_SEARCH = 1_000_000  # the most states replay searches from a trace's end for a liveness goal


def _out_of_reach(spec: Spec[Any, Any], state: Any, recorded: TraceViolation) -> TraceViolation | None:
    """The recorded liveness property, if no state reachable from ``state`` (the
    trace's last) satisfies it: every behaviour from there, fair or not, misses it."""
    prop = next((p for p in spec.eventually() if p.name == recorded.invariant), None)
    if prop is None:
        return None
    seen = {fingerprint(state)}
    frontier = [state]
    while frontier:
        current = frontier.pop()
        if prop.holds(current):
            return None
        for _, nxt in spec.successors(current):
            if not spec.within_bounds(nxt):
                return None  # beyond the bound, unknown (the explorer counts it as reaching it)
            fp = fingerprint(nxt)
            if fp not in seen:
                if len(seen) >= LIVENESS_SEARCH:
                    return None  # too many to tell: not confirmed
                seen.add(fp)
                frontier.append(nxt)
    return TraceViolation(prop.name, prop.statement, "liveness")


def _broken(spec: Spec[Any, Any], state: Any) -> TraceViolation | None:
    for inv in spec.invariants():
        if not inv.holds(state):
            return TraceViolation(inv.name, inv.statement, "invariant")
    return None


def _breaks_refinement(
    spec: Spec[Any, Any], state: Any, nxt: Any, recorded: TraceViolation | None
) -> TraceViolation | None:
    # Only checked when the trace claims a refinement failure: the mapping is an
    # optional, separately requested check, as in ``distcheck check --refinement``.
    refinement = spec.refinement()
    if recorded is None or recorded.kind != "refinement" or refinement is None:
        return None
    a, b = refinement.mapping(state), refinement.mapping(nxt)
    if a == b or any(t == b for _, t in refinement.abstract.successors(a)):
        return None
    return recorded


def _breaks_step_property(spec: Spec[Any, Any], state: Any, nxt: Any) -> TraceViolation | None:
    for prop in spec.step_properties():
        if not prop.holds(state, nxt):
            return TraceViolation(prop.name, prop.statement, "action")
    return None


def _same(spec_state: Any, recorded: Any) -> bool:
    """Is the recorded JSON state the spec's, sets compared by members?"""
    from distcheck.checks.traces.compare import same  # compare builds on this module's diff

    return same(spec_state, to_json(spec_state), recorded)


def _explain(spec_state: Any, recorded: Any) -> str:
    """The first few differences between the spec's state and the recorded one."""
    from distcheck.checks.traces.compare import differences

    changes = differences(spec_state, to_json(spec_state), recorded)
    parts = [f"{path_text(c)}: spec has {_short(c.old)}, trace has {_short(c.new)}" for c in changes[:3]]
    more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
    return "; ".join(parts) + more if parts else "they differ"


def _short(value: Any) -> str:
    text = "∅" if value is ABSENT else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def path_text(change: Change) -> str:
    out = ""
    for key, kind in zip(change.path, change.kinds):
        out += f".{key}" if kind == "field" else f"[{_key_text(key)}]"
    return out.lstrip(".") or "state"


def _key_text(key: PathKey) -> str:
    """A map key as people write it: a composite key (stored as its JSON text)
    becomes ``r1, a2`` rather than ``["r1", "a2"]``."""
    if isinstance(key, str) and key[:1] == "[":
        try:
            parts = json.loads(key)
        except ValueError:
            return key
        if isinstance(parts, list) and all(isinstance(p, (str, int)) for p in parts):
            return ", ".join(str(p) for p in parts)
    return str(key)


def violation_of(name: str, statement: str, kind: str) -> TraceViolation | None:
    """The header's violation for an explorer ``Violation`` (None for "unreached",
    which has no trace)."""
    return None if kind == "unreached" else TraceViolation(name, statement, kind)


def actors(trace: Trace) -> list[str]:
    """The nodes that act in the trace, in order of first appearance."""
    out: dict[str, None] = {}
    for step in trace.steps:
        if step.actor is not None:
            out.setdefault(step.actor)
    return list(out)
