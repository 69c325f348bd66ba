"""Conformance: is a recorded trace a behaviour of the spec?

Where it sits: behind ``distcheck validate SPEC TRACE`` and ``distcheck simulate``
(which validates the trace of every controlled run of our implementations).  It
sees the spec only through ``spec.core``'s contract, and files only through
``checks.trace``; the events it checks are what an implementation logged, in our
``impl/`` or in any other language (docs/validate.md says how to write them).

How.  An implementation logs only some of what happens: its own steps, not the
messages in flight, the network's faults or the spec's internal choices, and never
the global state.  Validation therefore tracks the *set* of spec states that the
events so far could have led to.  Before each event it closes that set under the
spec actions that are not logged (those whose ``observe(state, action)`` is None);
then it keeps every successor by an action whose observation matches the event.
An observation matches when each of its keys (by default ``actor`` and ``action``)
has the same JSON value in the event; other keys of the event (a transaction id, a
timestamp) are not the spec's business.  If the event carries a ``state``, the
successor's JSON form must equal it too.  When no possible state has a matching
step, that event is the first one no behaviour of the spec explains: the result
names it, with the states that were possible just before it and what the spec
could have logged instead.

A trace of several independent instances of a protocol (several transactions) is
validated instance by instance with ``split_key`` (e.g. ``txn``): events are grouped
by that key, in order, and each group must be a behaviour on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import attrs

from distcheck.checks.traces.trace import Trace
from distcheck.spec.codec import to_json
from distcheck.spec.contract import Spec
from distcheck.spec.values import fingerprint

DEFAULT_MAX_STATES = 200_000


@attrs.frozen
class Mismatch:
    """The first event no behaviour explains.  ``step`` is the event's step number
    (its line in a file is ``step + 2``); ``possible`` holds the spec states possible
    just before it; ``expected`` what the spec could have logged from them."""

    step: int
    event: Mapping[str, Any]
    possible: tuple[Any, ...]
    expected: tuple[Mapping[str, Any], ...]
    reason: str
    group: str | None = None


@attrs.frozen
class Validation:
    """outcome: "ok" (every event explained), "mismatch", or "too_large" (the
    unlogged steps between two events reach more than ``max_states`` states, so no
    answer was found; the message says which event)."""

    outcome: str
    events: int
    states_explored: int
    mismatch: Mismatch | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class _TooLarge(Exception):
    pass


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def event_matches(observation: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    return all(key in event and _canon(value) == _canon(event[key]) for key, value in observation.items())


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
                if observation is None or not event_matches(observation, event):
                    continue
                if recorded_state is not None and _canon(to_json(nxt)) != _canon(recorded_state):
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
            self.mismatch = Mismatch(
                int(event.get("step", 0)),
                event,
                tuple(before.values()),
                tuple(self.search.expected(before.values())),
                _reason(spec, event, len(before), group),
                group,
            )
            return self.mismatch
        self.groups[name] = after
        return None

    def result(self) -> Validation:
        if self.mismatch is not None:
            return Validation("mismatch", self.events, self.search.explored, self.mismatch, self.mismatch.reason)
        return Validation("ok", self.events, self.search.explored, message=f"all {self.events} events explained")

    # Remembered work (``_Memo``): a long trace repeats the same few situations (a
    # set of possible states, an event), so each is searched once, not once per event.
    def _close(self, states: dict[int, Any]) -> dict[int, Any]:
        key = frozenset(states)
        before = self._memo.closed.get(key)
        if before is None:
            before = self.search.close(states.values())
            self._memo.remember(self._memo.closed, key, before)
        return before

    def _step(self, states: dict[int, Any], before: dict[int, Any], event: Mapping[str, Any]) -> dict[int, Any]:
        memo = self._memo
        known = memo.keys_seen.get(frozenset(states))
        if known is None:  # the event keys that the spec's observations in these states look at
            known = frozenset(
                k for s in before.values() for a, _ in self.search.spec.successors(s) for k in self._observed(s, a)
            )
            memo.remember(memo.keys_seen, frozenset(states), known)
        key = (frozenset(states), _KEY_TEXT.encode({k: v for k, v in event.items() if k in known or k == "state"}))
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
    closure of a set of possible states (keyed by their fingerprints); the event keys
    that the spec's observations in a closure look at; and the states after an event
    (keyed by the set of states before it and the event's text on those keys, so two
    transactions' events that differ only in their id share one search).  Results are
    shared, never changed; each table is bounded and starts over when full."""

    LIMIT = 50_000

    def __init__(self) -> None:
        self.closed: dict[frozenset[int], dict[int, Any]] = {}
        self.keys_seen: dict[frozenset[int], frozenset[str]] = {}
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
        return Validation("too_large", len(events), validator.search.explored, message=str(exc))
    return validator.result()


def _group_name(value: Any) -> str:
    return value if isinstance(value, str) else _canon(value)


def _reason(spec: Spec[Any, Any], event: Mapping[str, Any], possible: int, group: str | None) -> str:
    action = event.get("action")
    name = action.get("type") if isinstance(action, Mapping) else action
    where = f" of {group}" if group else ""
    with_state = " leading to the recorded state" if event.get("state") is not None else ""
    return (
        f"no behaviour of {spec.name or type(spec).__name__} explains step {event.get('step')}{where}: "
        f"{event.get('actor')} {_action_text(action)} — in none of the {possible} spec state(s) possible "
        f"before it can {event.get('actor')} take {name}{with_state}"
    )


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
        inits = [s for s in inits if _canon(to_json(s)) == _canon(first.state)]
        if not inits:
            mismatch = Mismatch(
                0,
                {"step": 0, "actor": None, "action": None, "state": first.state},
                tuple(spec.init_states()),
                (),
                "step 0 records a state that is not an initial state of the spec",
            )
            return Validation("mismatch", len(events), 0, mismatch, mismatch.reason)
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

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
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
