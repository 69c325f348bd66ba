"""Conformance: is a recorded trace a behaviour of the spec?

Where it sits: behind ``distcheck validate SPEC TRACE`` and ``distcheck simulate``
(which validates the trace of every controlled run of our implementations).  It
sees the spec only through ``spec.contract``'s contract, and files only through
``checks.trace``; the events it checks are what an implementation logged, in our
``impl/`` or in any other language (docs/validate.md says how to write them).

How.  An implementation logs only some of what happens: its own steps, not the
messages in flight, the network's faults or the spec's internal choices, and never
the global state.  Validation therefore tracks the *set* of spec states that the
events so far could have led to.  Before each event it closes that set under the
spec actions that are not logged (those whose ``observe(state, action)`` is None);
then it keeps every successor by an action whose observation matches the event.
An observation matches when each of its keys (by default ``actor`` and ``action``)
has the same JSON value in the event (the action by value: a set among its
parameters in any order); other keys of the event (a transaction id, a timestamp)
are not the spec's business.  If the event carries a ``state``, the successor must
equal it by value too (sets by members: ``checks.traces.compare``).  When no
possible state has a matching step, that event is the first one no behaviour of
the spec explains: the result names it, with the states that were possible just
before it, what the spec could have logged instead, and what is wrong with it
(``diagnose``: an action outside the spec's vocabulary, a wrong actor, a state
diff, or the rule whose guard fails, with its statement).

A trace of several independent instances of a protocol (several transactions) is
validated instance by instance with ``split_key`` (e.g. ``txn``): events are grouped
by that key, in order, and each group must be a behaviour on its own.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from distcheck.checks.traces.compare import change_json, differences, same
from distcheck.checks.traces.trace import Trace
from distcheck.spec.codec import to_json
from distcheck.spec.contract import Spec
from distcheck.spec.values import fingerprint

DEFAULT_MAX_STATES = 200_000


#: Mismatch kinds that mean the event does not speak the spec's vocabulary at all
#: (bad input, exit 2 on the command line) rather than a step the spec forbids.
BAD_INPUT_KINDS = ("unknown_action", "wrong_type", "unknown_name")


@attrs.frozen
class Mismatch:
    """The first event no behaviour explains.  ``step`` is the event's step number
    (its line in a file is ``step + 2``); ``possible`` holds the spec states possible
    just before it; ``expected`` what the spec could have logged from them.

    ``kind`` says what is wrong, most specific first:

    - ``unknown_action``: the action is not one of the spec's (or misses or adds
      parameters); ``wrong_type``: a parameter has the wrong JSON type;
      ``unknown_name``: a parameter names something the spec does not have (an RM
      ``r4`` of a spec with r1..r3).  These three are bad input (``bad_input``).
    - ``actor``: the spec can take the step, but not by the actor the event names.
    - ``state``: the spec can take the step, but it does not lead to the recorded
      state; ``diff`` lists the parts that differ (``checks.traces.compare``).
    - ``guard``: the action's rule is enabled in none of the possible states.
    - ``unexplained``: anything else (a step 0 state that is not initial).

    ``rule`` and ``statement`` name the rule that governs the event's action and
    its one line of English (from ``spec.rule_of`` where the spec has it, else the
    action's docstring or its entry in the spec module's Actions list)."""

    step: int
    event: Mapping[str, Any]
    possible: tuple[Any, ...]
    expected: tuple[Mapping[str, Any], ...]
    reason: str
    group: str | None = None
    kind: str = "unexplained"
    rule: str | None = None
    statement: str | None = None
    diff: tuple[Mapping[str, Any], ...] = ()

    @property
    def bad_input(self) -> bool:
        return self.kind in BAD_INPUT_KINDS


@attrs.frozen
class Validation:
    """verdict (``checks.verdict``): "ok" (every event explained), "violated" (an
    event no behaviour explains: ``mismatch``), or "unknown" (the unlogged steps
    between two events reach more than ``max_states`` states, so no answer was
    found; the message says which event)."""

    verdict: str
    events: int
    states_explored: int
    mismatch: Mismatch | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


class _TooLarge(Exception):
    pass


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def event_matches(observation: Mapping[str, Any], event: Mapping[str, Any], action: Any = None) -> bool:
    """Does the event carry every key of the observation, with the same JSON value?
    Given the spec ``action`` observed, the ``action`` key compares by value like a
    recorded state (a set among its parameters by members, ``checks.traces.compare``)."""
    for key, value in observation.items():
        if key not in event:
            return False
        recorded = event[key]
        if _canon(value) == _canon(recorded):
            continue
        if (
            key == "action"
            and _has_parts(action)
            and isinstance(value, Mapping)
            and isinstance(recorded, Mapping)
            and value.get("type") == recorded.get("type")
            and same(action, value, recorded)
        ):
            continue
        return False
    return True


def _has_parts(action: Any) -> bool:
    """Has the action a parameter that is not a string, an integer or null (a set,
    a tuple, a record)?  Only then can equal values be written differently."""
    if action is None or not attrs.has(type(action)):
        return False
    return any(not isinstance(getattr(action, f.name), (str, int, type(None))) for f in attrs.fields(type(action)))


class _Search:
    def __init__(self, spec: Spec[Any, Any], max_states: int) -> None:
        self.spec = spec
        self.max_states = max_states
        self.explored = 0

    def _add(self, into: dict[int, Any], state: Any) -> bool:
        key = fingerprint(state)
        if key in into:
            return False
        into[key] = state
        self.explored += 1
        if len(into) > self.max_states:
            raise _TooLarge
        return True

    def close(self, states: Iterable[Any]) -> dict[int, Any]:
        """The states reachable from ``states`` by steps the log does not show."""
        out: dict[int, Any] = {}
        todo = [s for s in states if self._add(out, s)]
        while todo:
            state = todo.pop()
            for action, nxt in self.spec.successors(state):
                if self.spec.observe(state, action) is None and self._add(out, nxt):
                    todo.append(nxt)
        return out

    def step(self, states: Iterable[Any], event: Mapping[str, Any]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        recorded_state = event.get("state")
        for state in states:
            for action, nxt in self.spec.successors(state):
                observation = self.spec.observe(state, action)
                if observation is None or not event_matches(observation, event, action):
                    continue
                if recorded_state is not None and not same(nxt, to_json(nxt), recorded_state):
                    continue
                self._add(out, nxt)
        return out

    def expected(self, states: Iterable[Any]) -> list[Mapping[str, Any]]:
        seen: dict[str, Mapping[str, Any]] = {}
        for state in states:
            for action, _ in self.spec.successors(state):
                observation = self.spec.observe(state, action)
                if observation is not None:
                    seen.setdefault(_canon(observation), observation)
        return [seen[k] for k in sorted(seen)]


class Validator:
    """Incremental validation: ``feed`` events one at a time as a run records them;
    the first event no behaviour explains is returned (and kept in ``mismatch``).
    ``simulate`` feeds it after every scheduler step, so a run stops at the step
    whose event the spec cannot explain."""

    def __init__(
        self,
        spec: Spec[Any, Any],
        *,
        split_key: str | None = None,
        max_states: int = DEFAULT_MAX_STATES,
        initial: Iterable[Any] | None = None,
    ) -> None:
        self.search = _Search(spec, max_states)
        self.initial = list(spec.init_states() if initial is None else initial)
        self.split_key = split_key
        self.groups: dict[str, dict[int, Any]] = {}
        self.events = 0
        self.mismatch: Mismatch | None = None
        self._memo = _Memo()
        self._situation: tuple[frozenset[int], dict[int, Any], frozenset[str]] = (frozenset(), {}, frozenset())
        self._vocabulary: _Vocabulary | None = None

    def feed(self, event: Mapping[str, Any]) -> Mismatch | None:
        """Raises ``TooLarge`` when the unlogged steps before the event reach more
        than ``max_states`` spec states."""
        if self.mismatch is not None:
            return self.mismatch
        self.events += 1
        spec = self.search.spec
        name = "" if self.split_key is None else _group_name(event.get(self.split_key))
        states = self.groups.get(name)
        if states is None:
            states = self._memo.initial(self.initial)
        try:
            before = self._close(states)
        except _TooLarge:
            raise TooLarge(
                f"more than {self.search.max_states:,} spec states are possible before step {event.get('step')}; "
                "the log leaves too much unexplained"
            ) from None
        after = self._step(states, before, event)
        if not after:
            group = None if self.split_key is None else name
            if self._vocabulary is None:
                self._vocabulary = _Vocabulary(spec, self.initial)
            self.mismatch = diagnose(spec, event, tuple(before.values()), group, self._vocabulary)
            return self.mismatch
        self.groups[name] = after
        return None

    def result(self) -> Validation:
        if self.mismatch is not None:
            return Validation("violated", self.events, self.search.explored, self.mismatch, self.mismatch.reason)
        return Validation("ok", self.events, self.search.explored, message=f"all {self.events} events explained")

    # Remembered work (``_Memo``): a long trace repeats the same few situations (a
    # set of possible states, an event), so each is searched once, not once per event.
    def _close(self, states: dict[int, Any]) -> dict[int, Any]:
        key = frozenset(states)
        entry = self._memo.closed.get(key)
        if entry is None:
            before = self.search.close(states.values())
            # The event keys that the spec's observations in these states look at.
            known = frozenset(
                k for s in before.values() for a, _ in self.search.spec.successors(s) for k in self._observed(s, a)
            )
            entry = (key, before, known)
            self._memo.remember(self._memo.closed, key, entry)
        self._situation = entry
        return entry[1]

    def _step(self, states: dict[int, Any], before: dict[int, Any], event: Mapping[str, Any]) -> dict[int, Any]:
        memo = self._memo
        situation, _, known = self._situation  # set by _close(states) just before
        key = (situation, _KEY_TEXT.encode({k: v for k, v in event.items() if k in known or k == "state"}))
        after = memo.stepped.get(key)
        if after is None:
            after = self.search.step(before.values(), event)
            if after:
                memo.remember(memo.stepped, key, after)
        return after

    def _observed(self, state: Any, action: Any) -> Iterable[str]:
        return self.search.spec.observe(state, action) or ()


_KEY_TEXT = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


class _Memo:
    """What a ``Validator`` has worked out, by situation: the initial states; the
    closure of a set of possible states (keyed by their fingerprints), with the event
    keys that the spec's observations in the closure look at; and the states after an event
    (keyed by the set of states before it and the event's text on those keys, so two
    transactions' events that differ only in their id share one search).  Results are
    shared, never changed; each table is bounded and starts over when full."""

    LIMIT = 50_000

    def __init__(self) -> None:
        self.closed: dict[frozenset[int], tuple[frozenset[int], dict[int, Any], frozenset[str]]] = {}
        self.stepped: dict[tuple[frozenset[int], str], dict[int, Any]] = {}
        self._initial: dict[int, Any] | None = None

    def initial(self, states: Iterable[Any]) -> dict[int, Any]:
        if self._initial is None:
            self._initial = {fingerprint(s): s for s in states}
        return self._initial

    def remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if len(table) >= self.LIMIT:
            table.clear()
        table[key] = value


class TooLarge(Exception):
    """The possible spec states between two events exceed the limit."""


def validate_events(
    spec: Spec[Any, Any],
    events: Sequence[Mapping[str, Any]],
    *,
    split_key: str | None = None,
    max_states: int = DEFAULT_MAX_STATES,
    initial: Iterable[Any] | None = None,
) -> Validation:
    """Check ``events`` (each with at least ``step``, ``actor``, ``action``; step 0,
    the initial state, left out) against ``spec``, starting from ``initial`` (by
    default every initial state of the spec)."""
    validator = Validator(spec, split_key=split_key, max_states=max_states, initial=initial)
    try:
        for event in events:
            if validator.feed(event) is not None:
                break
    except TooLarge as exc:
        return Validation("unknown", len(events), validator.search.explored, message=str(exc))
    return validator.result()


def _group_name(value: Any) -> str:
    return value if isinstance(value, str) else _canon(value)


def _reason(spec: Spec[Any, Any], event: Mapping[str, Any], group: str | None, why: str) -> str:
    where = f" of {group}" if group else ""
    return (
        f"no behaviour of {spec.name or type(spec).__name__} explains step {event.get('step')}{where}: "
        f"{_actor_text(event)}{_action_text(event.get('action'))} — {why}"
    )


def _actor_text(event: Mapping[str, Any]) -> str:
    """The event's actor and a space, or nothing for an event that names none (never
    Python's ``None``)."""
    actor = event.get("actor")
    return "" if actor is None else f"{actor} "


def _action_text(action: Any) -> str:
    if not isinstance(action, Mapping):
        return json.dumps(action)
    args = ", ".join(f"{v}" for k, v in action.items() if k != "type")
    return f"{action.get('type')}({args})" if args else str(action.get("type"))


def validate_trace(
    spec: Spec[Any, Any], trace: Trace, *, split_key: str | None = None, max_states: int = DEFAULT_MAX_STATES
) -> Validation:
    """Check a trace read by ``checks.trace``; step 0 is the initial state and must,
    if it records a state, be an initial state of the spec."""
    events = trace_events(trace)
    first = trace.steps[0] if trace.steps else None
    inits = list(spec.init_states())
    if first is not None and first.state is not None:
        inits = [s for s in inits if same(s, to_json(s), first.state)]
        if not inits:
            candidates = list(spec.init_states())
            closest = min(
                ([change_json(c) for c in differences(s, to_json(s), first.state)] for s in candidates), key=len
            )
            mismatch = Mismatch(
                0,
                {"step": 0, "actor": None, "action": None, "state": first.state},
                tuple(candidates),
                (),
                "step 0 records a state that is not an initial state of the spec"
                + (f" ({_diff_summary(closest)})" if closest else ""),
                kind="state",
                diff=tuple(closest),
            )
            return Validation("violated", len(events), 0, mismatch, mismatch.reason)
    return validate_events(spec, events, split_key=split_key, max_states=max_states, initial=inits)


def trace_events(trace: Trace) -> Sequence[dict[str, Any]]:
    """A trace file's steps after step 0 as events (step, actor, action, state if
    recorded, and every extra key).  Each event is made when it is read, so a long
    trace is not held twice in memory."""
    return _Events(trace.steps)


class _Events(Sequence[dict[str, Any]]):
    def __init__(self, steps: Sequence[Any]) -> None:
        self._steps = steps

    def __len__(self) -> int:
        return max(0, len(self._steps) - 1)

    @typing.overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @typing.overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return _event(self._steps[index + 1])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        steps = iter(self._steps)
        next(steps, None)  # step 0 is the initial state, not an event
        for step in steps:
            yield _event(step)


def _event(step: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"step": step.step, "actor": step.actor, "action": step.action}
    if step.state is not None:
        event["state"] = step.state
    event.update(step.extra)
    return event


def action_text(action: Any) -> str:
    """An event's action as people read it: ``RMPrepare(r1)``."""
    return _action_text(action)


# ------------------------------------------------------------------ why an event fails


def diagnose(
    spec: Spec[Any, Any],
    event: Mapping[str, Any],
    possible: tuple[Any, ...],
    group: str | None = None,
    vocabulary: _Vocabulary | None = None,
) -> Mismatch:
    """The mismatch for an event no possible state explains, saying as precisely as
    it can why (``Mismatch.kind``): most specific first, an action outside the spec's
    vocabulary, then a wrong actor or recorded state for a step the spec can take,
    and else the rule whose guard holds in none of the possible states."""
    step = int(event.get("step", 0))
    expected = tuple(_Search(spec, DEFAULT_MAX_STATES).expected(possible))

    def mismatch(kind: str, why: str, rule: tuple[str, str | None] | None = None, **more: Any) -> Mismatch:
        name, statement = rule if rule is not None else (None, None)
        return Mismatch(
            step, event, possible, expected, _reason(spec, event, group, why), group, kind, name, statement, **more
        )

    data = event.get("action")
    vocabulary = vocabulary or _Vocabulary(spec, spec.init_states())

    def shown() -> str:
        return ", ".join(_action_names(spec, vocabulary))

    if not isinstance(data, Mapping) or not isinstance(data.get("type"), str):
        return mismatch("unknown_action", f"an action is an object whose type is one of {shown()}")
    kind_name = data["type"]
    is_action = kind_name in _action_names(spec)
    try:
        action = spec.action_from_json(data)
    except ValueError as exc:
        if not is_action:
            return mismatch("unknown_action", f"{kind_name!r} is not an action of the spec; its actions: {shown()}")
        # A spec may log an action in a form that is not its JSON (raft's messages
        # without their history field): written as the spec logs such a step here,
        # the event speaks the vocabulary, and only its values are not explained.
        logged = _logged_alike(spec, possible, data)
        if logged is None:
            return mismatch("unknown_action", str(exc))
        return mismatch(
            "guard",
            f"{kind_name} is written as the spec logs it, but no step the spec can take here logs these values",
            rule_of(spec, logged),
        )
    if not is_action:
        return mismatch("unknown_action", f"{kind_name} is a value of the spec, not an action; its actions: {shown()}")
    rule = rule_of(spec, action)
    problem = _type_problem(type(action), data)
    if problem is not None:
        return mismatch("wrong_type", problem, rule)
    unknown = vocabulary.unknown_name(data, possible)
    if unknown is not None:
        return mismatch("unknown_name", unknown, rule)

    # Steps the spec can take that match everything but the actor or the state.
    recorded_state = event.get("state")
    by_actor: list[str] = []
    closest: list[dict[str, Any]] | None = None
    for state in possible:
        for act, nxt in spec.successors(state):
            observation = spec.observe(state, act)
            if observation is None or not event_matches(
                {k: v for k, v in observation.items() if k != "actor"}, event, act
            ):
                continue
            if "actor" in observation and _canon(observation["actor"]) != _canon(event.get("actor")):
                by_actor.append(str(observation["actor"]))
                continue
            if recorded_state is not None:
                changes = [change_json(c) for c in differences(nxt, to_json(nxt), recorded_state)]
                if closest is None or len(changes) < len(closest):
                    closest = changes
    if closest is not None:
        return mismatch(
            "state",
            f"{kind_name} is a step of the spec here, but it does not lead to the recorded state "
            f"({_diff_summary(closest)})",
            rule,
            diff=tuple(closest),
        )
    if by_actor:
        actors = ", ".join(sorted(set(by_actor)))
        return mismatch(
            "actor",
            f"{kind_name} is a step of the spec here, but taken by {actors}, not by {event.get('actor') or 'no actor'}",
            rule,
        )
    what = f"rule {rule[0]}" + (f" ({rule[1]})" if rule[1] else "")
    return mismatch("guard", f"{what} is enabled in none of the {len(possible)} spec state(s) possible before it", rule)


def _shape(value: Any) -> Any:
    """The keys of a JSON value, nested (lists and scalars as such): what a log line
    must have to be written as an observation is."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _shape(v)) for k, v in value.items()))
    return "list" if isinstance(value, list) else "scalar"


def _logged_alike(spec: Spec[Any, Any], possible: Sequence[Any], data: Mapping[str, Any]) -> Any:
    """A step the spec can take in one of the ``possible`` states whose observed
    action has the shape of ``data`` (the same type and keys), or None."""
    shape = _shape(data)
    for state in possible:
        for act, _ in spec.successors(state):
            observation = spec.observe(state, act)
            logged = observation.get("action") if observation is not None else None
            if isinstance(logged, Mapping) and logged.get("type") == data.get("type") and _shape(logged) == shape:
                return act
    return None


def _diff_summary(changes: Sequence[Mapping[str, Any]]) -> str:
    from distcheck.checks.traces.compare import change_text

    shown = "; ".join(change_text(c) for c in changes[:3])
    return shown + (f"; and {len(changes) - 3} more difference(s)" if len(changes) > 3 else "")


def rule_of(spec: Spec[Any, Any], action: Any) -> tuple[str, str | None]:
    """The rule that governs ``action``: its name and its one-line statement.

    The spec's ``rule_of`` answers where the spec has it; otherwise the action
    class's own docstring, else its entry in the spec module's ``Actions`` list
    (each spec module's docstring lists its actions, one statement each)."""
    lookup = getattr(spec, "rule_of", None)
    if callable(lookup):
        info = lookup(action)
        if info is not None:
            statement = getattr(info, "statement", None)
            return str(getattr(info, "name", type(action).__name__)), str(statement) if statement else None
    cls = type(action)
    doc = cls.__dict__.get("__doc__")
    if isinstance(doc, str) and doc.strip():
        return cls.__name__, " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    for klass in type(spec).__mro__:
        module = sys.modules.get(klass.__module__)
        listed = _listed_action(module.__doc__ if module else None, cls.__name__)
        if listed:
            return cls.__name__, listed
    return cls.__name__, None


def _listed_action(doc: str | None, name: str) -> str | None:
    """The statement of ``name`` in a module docstring's list of actions, e.g.
    ``    RMPrepare(rm)       A working RM prepares and sends Prepared.``"""
    if not doc:
        return None
    lines = doc.splitlines()
    pattern = re.compile(rf"^(\s+){re.escape(name)}(\([^)]*\))?\s{{2,}}(\S.*)$")
    for i, line in enumerate(lines):
        found = pattern.match(line)
        if found is None:
            continue
        column = found.start(3)
        parts = [found.group(3).strip()]
        for more in lines[i + 1 :]:
            if len(more) - len(more.lstrip()) != column or not more.strip():
                break
            parts.append(more.strip())
        return " ".join(parts)
    return None


def _action_names(spec: Spec[Any, Any], vocabulary: _Vocabulary | None = None) -> list[str]:
    """The names of the spec's actions: its rules where the spec lists them, else the
    actions its states enable (as far as ``vocabulary`` walked), else the record
    types of its JSON that name an actor."""
    rules = getattr(spec, "rules", None)
    if callable(rules):
        return sorted({str(r.name) for r in rules()})
    if vocabulary is not None and vocabulary.taken_actions():
        return sorted(vocabulary.actions)
    return sorted(name for name, cls in spec.value_types().items() if isinstance(getattr(cls, "actor", None), property))


_TYPE_WORDS = {str: "a string", int: "an integer", bool: "true or false", type(None): "null"}


def _type_problem(cls: type, data: Mapping[str, Any]) -> str | None:
    """The first parameter of a record (as JSON) whose JSON type is not its field's
    type, said as "rm: expected a string, got 4"; None when all fit or the types
    cannot be read."""
    if not attrs.has(cls):
        return None
    try:
        hints = typing.get_type_hints(cls)  # each class in the MRO in its own module
    except Exception:  # an annotation that does not resolve: nothing to check against
        return None
    for f in attrs.fields(cls):
        if f.name not in data or f.name not in hints:
            continue
        problem = _value_problem(data[f.name], hints[f.name])
        if problem is not None:
            return f"{cls.__name__}'s parameter {f.name}: {problem}, got {json.dumps(data[f.name])}"
    return None


def _value_problem(value: Any, hint: Any) -> str | None:
    if hint is Any or isinstance(hint, typing.TypeVar):
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        problems = [_value_problem(value, a) for a in args]
        if all(p is not None for p in problems):
            return " or ".join(dict.fromkeys(p for p in problems if p is not None))
        return None
    if hint in _TYPE_WORDS:
        ok = (
            isinstance(value, hint) and not (hint is int and isinstance(value, bool))
            if hint is not type(None)
            else value is None
        )
        return None if ok else f"expected {_TYPE_WORDS[hint]}"
    if origin in (tuple, frozenset, set, list) or hint in (tuple, frozenset, set, list):
        if not isinstance(value, list):
            return "expected a list"
        member_types = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return f"expected a list of {len(args)}"
            pairs = list(zip(value, args))
        else:
            pairs = [(v, member_types[0]) for v in value] if member_types else []
        for v, t in pairs:
            problem = _value_problem(v, t)
            if problem is not None:
                return f"a member: {problem}"
        return None
    if isinstance(hint, type) and attrs.has(hint):
        if not isinstance(value, Mapping) or value.get("type") != hint.__name__:
            return f"expected a {hint.__name__} record"
        return _type_problem(hint, value)
    return None  # a type whose JSON form is not checked here (a map, a bag, ...)


class _Vocabulary:
    """The names a spec uses: every string in its initial and possible states and in
    the actions it takes, found by a breadth-first walk from its initial states that
    goes only as far as it must (until every name asked about is found, or at most
    ``LIMIT`` states).  A string parameter found nowhere (an RM ``r4`` of a spec with
    r1..r3) is an unknown name.  Built only when an event fails to match, so a valid
    trace never pays for it."""

    LIMIT = 1_000

    def __init__(self, spec: Spec[Any, Any], initial: Iterable[Any]) -> None:
        self.spec = spec
        self.strings: set[str] = set()
        self.actions: set[str] = set()
        self.by_field: dict[tuple[str, str], set[str]] = {}
        self._seen: set[int] = set()
        self._frontier = [s for s in initial if self._visit(s)]
        for state in self._frontier:
            self.strings.update(_strings(to_json(state)))

    def _visit(self, state: Any) -> bool:
        key = fingerprint(state)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def _walk_until(self, wanted: set[str]) -> None:
        """Walk on, a level at a time, until every string of ``wanted`` is known."""
        while self._frontier and len(self._seen) < self.LIMIT and not wanted <= self.strings:
            following = []
            for state in self._frontier:
                for action, nxt in self.spec.successors(state):
                    self._note_action(to_json(action))
                    if len(self._seen) < self.LIMIT and self._visit(nxt):
                        following.append(nxt)
            self._frontier = following

    def taken_actions(self) -> set[str]:
        """The action types the spec takes, as far as the walk may go."""
        self._walk_until({"\0 no such name"})
        return self.actions

    def _note_action(self, data: Any) -> None:
        if isinstance(data, Mapping):
            self.actions.add(str(data.get("type")))
            for key, value in data.items():
                if key != "type" and isinstance(value, str):
                    self.by_field.setdefault((str(data.get("type")), key), set()).add(value)
        self.strings.update(_strings(data))

    def unknown_name(self, data: Mapping[str, Any], possible: Iterable[Any]) -> str | None:
        """ "unknown name 'r4' for RMPrepare's rm ..." for the first string parameter
        the spec never uses; None when every one is a name of the spec."""
        for state in possible:
            self.strings.update(_strings(to_json(state)))
        params = {key: list(_strings(value)) for key, value in data.items() if key != "type"}
        self._walk_until({text for texts in params.values() for text in texts})
        for key, texts in params.items():
            for text in texts:
                if text in self.strings:
                    continue
                known = sorted(self.by_field.get((str(data.get("type")), key), ()))
                where = f"{data.get('type')}'s {key}"
                if known:
                    return f"unknown name {text!r} for {where}: the spec's are {', '.join(known)}"
                return f"unknown name {text!r} for {where}: no state or action of the spec names it"
        return None


def _strings(data: Any) -> Iterable[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, list):
        for v in data:
            yield from _strings(v)
    elif isinstance(data, Mapping):
        for k, v in data.items():
            if k != "type":
                yield k
                yield from _strings(v)
