"""Linearizability: do the results clients observed fit one sequential order of their operations?

Where it sits: among the checks, next to ``checks.validate``.  Validation asks
whether what *servers* logged is a behaviour of a spec; this module asks the
client's question about a service (our KV store, lock, queue, or anyone's): every
operation seems to take effect at one instant between its invocation and its
response, so is there one sequential order of all operations that respects real
time (an operation that returned before another was invoked comes first) and in
which a sequential ``Model`` gives every operation the result its client saw?  It
imports nothing from ``spec/`` or ``impl/``: a history is a list of ``Operation``
records, however they were collected.

How.  Wing & Gong's search with Lowe's memoisation.  The model splits the history
into independent sub-histories (one per key for ``KeyValue``); linearizability is
local (Herlihy & Wing), so each is checked on its own.  For one sub-history a
depth-first search builds a linearization one operation at a time.  The next
operation may be any not yet placed whose invocation comes no later than the
earliest response among the completed operations not yet placed (otherwise that
one returned before it was invoked and must come first), and whose recorded result
is what the model answers in the current state.  The search remembers every
(set of placed operations, model state) pair it has reached: two paths to the same
pair have the same future, which is what keeps typical histories far from the
exponential worst case.  An operation that never returned is placed or left out at
will, its result ignored; placing one that does not change the state is never
needed, so it is not tried.  The sub-history is linearizable when every completed
operation has been placed.

The witness.  The per-key orders are merged into one order of the whole history
by giving each operation a point in time inside its interval (the latest
invocation among itself and those before it in its key's order); sorting by those
points respects every key's order and real time across keys.

When no order exists, the message names the key and the operations at the
furthest point any order reached: each could come next in real time, and the
model answers each differently from what its client saw.  The result carries the
same as data (``sub_history``, ``prefix``, ``stuck``) for the CLI's report and
``checks.histories.timeline``'s picture.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs

DEFAULT_MAX_STEPS = 1_000_000

S = TypeVar("S")


@attrs.frozen
class Operation:
    """One client operation.  ``call`` and ``ret`` are positions in one global order of
    invocation and response events; ``ret`` is None when the client never saw a
    response (the operation may or may not have taken effect, and ``result`` is
    ignored)."""

    client: str
    call: int
    ret: int | None
    op: Mapping[str, Any]
    result: Any

    def __str__(self) -> str:
        return describe(self)


class Model(Protocol[S]):
    """A sequential specification.  ``step`` is pure: the state after ``op`` and the
    result a client would see.  ``partition`` splits a history into sub-histories no
    operation of which affects another's (one per key for a KV store); it also
    checks every operation and raises ``ValueError`` (one line) for one the model
    does not know.  States are compared and memoised, so they should be hashable
    (an unhashable state is memoised through its JSON text)."""

    def init(self) -> S: ...

    def step(self, state: S, op: Mapping[str, Any]) -> tuple[S, Any]: ...

    def partition(self, ops: Sequence[Operation]) -> list[list[Operation]]: ...


_KV_FIELDS: Mapping[str, tuple[str, ...]] = {
    "put": ("key", "value"),
    "get": ("key",),
    "cas": ("key", "expected", "value"),
}


class KeyValue:
    """A register per key.  The state of one key is its value, None when absent.

    - ``put(key, value)`` sets it and returns ``"ok"``;
    - ``get(key)`` returns it (None when absent);
    - ``cas(key, expected, value)`` sets it to ``value`` and returns True when it is
      ``expected`` (None: absent), and otherwise leaves it and returns False.
    """

    def init(self) -> Any:
        return None

    def step(self, state: Any, op: Mapping[str, Any]) -> tuple[Any, Any]:
        name = op.get("op")
        if name == "put":
            return op["value"], "ok"
        if name == "get":
            return state, state
        if name == "cas":
            if same_result(state, op["expected"]):
                return op["value"], True
            return state, False
        raise ValueError(f"unknown operation {name!r}; KeyValue knows {', '.join(_KV_FIELDS)}")

    def partition(self, ops: Sequence[Operation]) -> list[list[Operation]]:
        by_key: dict[Any, list[Operation]] = {}
        for operation in ops:
            _check_kv_op(operation)
            try:
                by_key.setdefault(operation.op["key"], []).append(operation)
            except TypeError:
                raise ValueError(
                    f"{operation.client}'s operation at call {operation.call} has an unhashable key "
                    f"{operation.op['key']!r}"
                ) from None
        return list(by_key.values())


def _check_kv_op(operation: Operation) -> None:
    name = operation.op.get("op")
    fields = _KV_FIELDS.get(name) if isinstance(name, str) else None
    if fields is None:
        raise ValueError(
            f"unknown operation {name!r} in {operation.client}'s operation at call {operation.call}; "
            f"KeyValue knows {', '.join(_KV_FIELDS)}"
        )
    missing = [f for f in fields if f not in operation.op]
    if missing:
        raise ValueError(
            f"{operation.client}'s {name} at call {operation.call} lacks {', '.join(missing)}: {dict(operation.op)!r}"
        )
    # A field the model would ignore means the check would answer for an operation
    # other than the one the client ran (a get that carries a value, a misspelt name).
    unknown = [str(f) for f in operation.op if f != "op" and f not in fields]
    if unknown:
        raise ValueError(
            f"{operation.client}'s {name} at call {operation.call} has {', '.join(unknown)}, which {name} does not "
            f"take (it takes {', '.join(fields)}): {dict(operation.op)!r}"
        )


@attrs.frozen
class Stuck:
    """An operation that real time allows next at the furthest point any order
    reached, and what the model would have answered it there."""

    operation: Operation
    answer: Any


@attrs.frozen
class Linearizability:
    """``ok``: some order explains every result.  ``order`` is then a witness: a
    linearization of the whole history (operations that never returned appear in it
    only if the witness needed them to take effect).  ``message`` says what was
    checked, or, when not ok, which key and which operations no order explains.

    When not ok, the same as data (for a picture of the failure, or a report):
    ``sub_history``, the operations of the part no order explains (one key's, for a
    keyed model); ``prefix``, the longest order of its operations that the model
    explains (what the search reached furthest); ``stuck``, the operations that
    could come next after it, none with the result its client saw."""

    ok: bool
    order: tuple[Operation, ...] | None
    message: str
    sub_history: tuple[Operation, ...] = ()
    prefix: tuple[Operation, ...] = ()
    stuck: tuple[Stuck, ...] = ()


class HistoryTooLarge(Exception):
    """The search needed more than ``max_steps`` steps: no answer, rather than a wrong one."""


def check_history(
    ops: Sequence[Operation], model: Model[Any] = KeyValue(), max_steps: int = DEFAULT_MAX_STEPS
) -> Linearizability:
    """Is ``ops`` linearizable with respect to ``model``?  Raises ``ValueError`` (one
    line) for a malformed history and ``HistoryTooLarge`` when the search exceeds
    ``max_steps`` (counted over all sub-histories).

    Malformed: an entry that is not an ``Operation``; a client that is not a string;
    an ``op`` that is not a mapping; a position that is not an integer; a response
    before its invocation; two events at one position (each invocation and each
    response has its own place in the order); one client's operations overlapping
    (a client runs one operation at a time, and one that never returned is its
    last: a client that gives up on an operation goes on under a new name); and
    whatever the model refuses (for ``KeyValue``: an unknown operation, a missing
    or unknown field, an unhashable key)."""
    for index, operation in enumerate(ops):
        _check_fields(index, operation)
        _check_positions(operation)
    _check_events(ops)
    budget = _Budget(max_steps)
    placed: list[tuple[Operation, int]] = []
    partitions = model.partition(ops)
    for number, part in enumerate(partitions):
        search = _Search(model, part, budget)
        order = search.run()
        if order is None:
            return Linearizability(
                False,
                None,
                search.failure_message(),
                sub_history=tuple(part),
                prefix=tuple(search.ops[i] for i in search.best_path),
                stuck=tuple(Stuck(search.ops[i], answer) for i, answer in search.best_stuck),
            )
        placed.extend((operation, number) for operation in order)
    return Linearizability(True, _merge(placed), _ok_message(ops, len(partitions)))


def _check_fields(index: int, operation: Any) -> None:
    if not isinstance(operation, Operation):
        raise ValueError(f"history entry {index} is {_brief(operation)}, not an Operation")
    if not isinstance(operation.client, str):
        raise ValueError(f"history entry {index} has client {_brief(operation.client)}; a client is named by a string")
    if not isinstance(operation.op, Mapping):
        raise ValueError(
            f"{operation.client}'s operation at call {operation.call!r} is {_brief(operation.op)}; "
            'an operation is a mapping such as {"op": "put", "key": "x", "value": 1}'
        )


def _brief(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _check_events(ops: Sequence[Operation]) -> None:
    """Each position holds one event, and each client's operations follow one another."""
    events: dict[int, str] = {}
    for operation in ops:
        for kind, position in (("invocation", operation.call), ("response", operation.ret)):
            if position is None:
                continue
            here = f"the {kind} of {describe(operation)}"
            if position in events:
                raise ValueError(
                    f"position {position} holds two events, {events[position]} and {here}; "
                    "each invocation and each response has a position of its own"
                )
            events[position] = here
    by_client: dict[str, list[Operation]] = {}
    for operation in ops:
        by_client.setdefault(operation.client, []).append(operation)
    for client, mine in by_client.items():
        mine.sort(key=lambda o: o.call)
        for earlier, later in itertools.pairwise(mine):
            if earlier.ret is None:
                raise ValueError(
                    f"{client} invoked {describe(later)} after {describe(earlier)}; a client runs one operation "
                    "at a time, so one that never returned is its last (a client that gives up on an operation "
                    "goes on under a new name)"
                )
            if later.call < earlier.ret:
                raise ValueError(
                    f"{client}'s operations overlap: {describe(earlier)} and {describe(later)}; "
                    "a client runs one operation at a time"
                )


def _check_positions(operation: Operation) -> None:
    def is_position(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not is_position(operation.call) or not (operation.ret is None or is_position(operation.ret)):
        raise ValueError(
            f"{operation.client}'s operation has call {operation.call!r} and ret {operation.ret!r}; "
            "both must be integer positions (ret may be None)"
        )
    if operation.ret is not None and operation.ret < operation.call:
        raise ValueError(
            f"{operation.client}'s operation {dict(operation.op)!r} returns at {operation.ret}, "
            f"before its call at {operation.call}"
        )


def _ok_message(ops: Sequence[Operation], partitions: int) -> str:
    pending = sum(1 for o in ops if o.ret is None)
    never = f", {pending} of which never returned" if pending else ""
    parts = "1 independent sub-history" if partitions == 1 else f"{partitions} independent sub-histories"
    return f"linearizable: {len(ops)} operations{never}, in {parts}"


class _Budget:
    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps
        self.steps = 0

    def spend(self, where: str, size: int) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise HistoryTooLarge(
                f"the linearizability search exceeded {self.max_steps:,} steps on {where} ({size} operations); "
                "check a shorter history or raise max_steps"
            )


def same_result(a: Any, b: Any) -> bool:
    """Equality that does not let True stand for 1 (Python's ``True == 1``): a cas that
    answered True is not a get that read 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same_result(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_result(a[k], b[k]) for k in a)
    return bool(a == b)


def _memo_state(state: Any) -> Any:
    # The type is part of the key because True and 1 hash and compare equal.
    try:
        hash(state)
    except TypeError:
        return ("json", json.dumps(state, sort_keys=True, default=repr))
    return (type(state), state)


_NEVER = float("inf")
# A failure message lists at most this many of the operations ordered before the
# point where no order goes further: the last ones are what the stuck ones follow.
_PREFIX_SHOWN = 8


class _Search:
    """The search over one sub-history.  Operations are numbered in invocation order;
    a set of placed operations is a bit mask."""

    def __init__(self, model: Model[Any], ops: Sequence[Operation], budget: _Budget) -> None:
        self.model = model
        self.budget = budget
        self.ops = sorted(ops, key=lambda o: (o.call, _NEVER if o.ret is None else o.ret))
        self.completed = [i for i, o in enumerate(self.ops) if o.ret is not None]
        self.all_completed = sum(1 << i for i in self.completed)
        self.where = _where(self.ops)
        # The furthest point reached (most completed operations placed), kept for
        # the message when no order exists.
        self.best_count = -1
        self.best_path: list[int] = []
        self.best_state: Any = None
        self.best_stuck: list[tuple[int, Any]] = []

    def _candidates(self, mask: int) -> Iterator[int]:
        # An unplaced operation may come next unless an unplaced completed one
        # returned before it was invoked; that one was invoked earlier still, so a
        # scan in invocation order, from the first unplaced operation, needs only
        # the earliest response seen so far and can stop at the first invocation
        # after it.
        first = (~mask & (mask + 1)).bit_length() - 1
        earliest_ret: int | None = None
        for i in range(first, len(self.ops)):
            operation = self.ops[i]
            if earliest_ret is not None and operation.call > earliest_ret:
                return
            if mask >> i & 1:
                continue
            yield i
            if operation.ret is not None and (earliest_ret is None or operation.ret < earliest_ret):
                earliest_ret = operation.ret

    def run(self) -> list[Operation] | None:
        """A linearization of the sub-history, or None (the furthest point reached is
        kept for ``failure_message``)."""
        start = (0, _memo_state(self.model.init()))
        # memo key -> (parent key, operation placed to get here, model state)
        seen: dict[tuple[int, Any], tuple[tuple[int, Any] | None, int, Any]] = {start: (None, -1, self.model.init())}
        self.budget.spend(self.where, len(self.ops))
        stack = [start]
        while stack:
            key = stack.pop()
            mask = key[0]
            if mask & self.all_completed == self.all_completed:
                return [self.ops[i] for i in self._path(seen, key)]
            state = seen[key][2]
            children: list[tuple[tuple[int, Any], int, Any]] = []
            stuck: list[tuple[int, Any]] = []
            for i in self._candidates(mask):
                operation = self.ops[i]
                after, result = self.model.step(state, operation.op)
                if operation.ret is None:
                    if _memo_state(after) == _memo_state(state):
                        continue
                elif not same_result(result, operation.result):
                    stuck.append((i, result))
                    continue
                children.append(((mask | 1 << i, _memo_state(after)), i, after))
            count = (mask & self.all_completed).bit_count()
            if count > self.best_count:
                self.best_count = count
                self.best_path = self._path(seen, key)
                self.best_state = state
                self.best_stuck = stuck
            # Pushed in reverse so that the earliest-invoked candidate is tried first.
            for child, i, after in reversed(children):
                if child not in seen:
                    self.budget.spend(self.where, len(self.ops))
                    seen[child] = (key, i, after)
                    stack.append(child)
        return None

    @staticmethod
    def _path(seen: Mapping[tuple[int, Any], tuple[Any, int, Any]], key: tuple[int, Any]) -> list[int]:
        path: list[int] = []
        at: tuple[int, Any] | None = key
        while at is not None:
            parent, placed, _ = seen[at]
            if placed >= 0:
                path.append(placed)
            at = parent
        path.reverse()
        return path

    def failure_message(self) -> str:
        total = len(self.completed)
        state = _value_text(self.best_state)
        if self.best_path:
            shown = [describe(self.ops[i]) for i in self.best_path[-_PREFIX_SHOWN:]]
            if len(self.best_path) > _PREFIX_SHOWN:
                shown.insert(0, f"… {len(self.best_path) - _PREFIX_SHOWN} earlier")
            prefix = (
                f"At best {self.best_count} of its {total} completed operations can be ordered first "
                f"({'; '.join(shown)}), after which the state is {state}"
            )
        else:
            prefix = f"None of its {total} completed operations can come first, from the initial state {state}"
        stuck = "; ".join(
            f"{describe(self.ops[i])}, where the model answers {_value_text(answer)}" for i, answer in self.best_stuck
        )
        return (
            f"not linearizable: no order of the operations on {self.where} explains their results. {prefix}; "
            f"then every operation that real time allows next has a result the model does not give: {stuck}."
        )


def _where(ops: Sequence[Operation]) -> str:
    keys = {_memo_state(o.op.get("key")) for o in ops}
    if len(keys) == 1 and ops and "key" in ops[0].op:
        return f"key {_key_text(ops[0].op['key'])}"
    return "the history"


def _merge(placed: Sequence[tuple[Operation, int]]) -> tuple[Operation, ...]:
    # Each operation's point is the latest invocation among itself and those placed
    # before it in its sub-history's order.  It is at or after its own call, and no
    # later than its response: an operation placed earlier was invoked no later
    # than this one's response, or the order would break real time.  So if a
    # returned before b was invoked, a's point is before b's.
    points: list[tuple[int, int, int, Operation]] = []
    latest: dict[int, int] = {}
    for index, (operation, part) in enumerate(placed):
        point = max(latest.get(part, operation.call), operation.call)
        latest[part] = point
        points.append((point, part, index, operation))
    points.sort(key=lambda p: (p[0], p[1], p[2]))
    return tuple(p[3] for p in points)


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else _value_text(key)


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "absent"
    return str(value)


def describe(operation: Operation) -> str:
    """``c1 put(x, 1) → ok [call 3, ret 9]``: an operation as the messages show it."""
    op = operation.op
    args = [_key_text(op["key"])] if "key" in op else []
    args += [_value_text(v) for k, v in op.items() if k not in ("op", "key")]
    if operation.ret is None:
        outcome, interval = "(no response)", f"[call {operation.call}, never returned]"
    else:
        result = operation.result
        outcome = result if result == "ok" and op.get("op") == "put" else _value_text(result)
        interval = f"[call {operation.call}, ret {operation.ret}]"
    return f"{operation.client} {op.get('op')}({', '.join(args)}) → {outcome} {interval}"
