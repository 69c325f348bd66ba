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

How.  Wing & Gong's search with Lowe's memoisation, as Porcupine runs it.  The
model splits the history into independent sub-histories (one per key for
``KeyValue``); linearizability is local (Herlihy & Wing), so each is checked on its
own (``check_part``; ``checks.histories.parts`` runs them on several cores).  For
one sub-history a depth-first search builds a linearization one operation at a
time.  The next operation may be any not yet placed whose invocation comes no
later than the earliest response among the completed operations not yet placed
(otherwise that one returned before it was invoked and must come first), and whose
recorded result is what the model answers in the current state.  The operations
not yet placed are a doubly linked list in invocation order, so finding those
candidates passes over no placed one.  The search remembers every (set of placed
operations, model state) pair it has reached: two paths to the same pair have the
same future, which is what keeps typical histories far from the exponential worst
case.  Each pair reached is one step; ``steps`` in the result counts them, and
``max_steps`` and a ``deadline`` bound them.  An operation that never returned is
placed or left out at will, its result ignored; placing one that does not change
the state is never needed, so it is not tried.  The sub-history is linearizable
when every completed operation has been placed.

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
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

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
    could come next after it, none with the result its client saw.

    ``steps``: the search's work, the (placed operations, model state) pairs it
    reached, over every sub-history it searched."""

    ok: bool
    order: tuple[Operation, ...] | None
    message: str
    sub_history: tuple[Operation, ...] = ()
    prefix: tuple[Operation, ...] = ()
    stuck: tuple[Stuck, ...] = ()
    steps: int = 0


class HistoryTooLarge(Exception):
    """The search needed more than ``max_steps`` steps: no answer, rather than a wrong one.
    ``steps`` is the work done before giving up."""

    def __init__(self, message: str, steps: int = 0) -> None:
        super().__init__(message)
        self.steps = steps


class SearchTimedOut(Exception):
    """The search passed its deadline (``time.monotonic()``): no answer.  ``steps`` is
    the work done before giving up."""

    def __init__(self, steps: int = 0) -> None:
        super().__init__("the search passed its deadline")
        self.steps = steps


def check_history(
    ops: Sequence[Operation],
    model: Model[Any] = KeyValue(),
    max_steps: int = DEFAULT_MAX_STEPS,
    deadline: float | None = None,
) -> Linearizability:
    """Is ``ops`` linearizable with respect to ``model``?  Raises ``ValueError`` (one
    line) for a malformed history, ``HistoryTooLarge`` when the search exceeds
    ``max_steps`` (counted over all sub-histories) and ``SearchTimedOut`` when it
    is still searching at ``deadline`` (a ``time.monotonic()`` reading).

    Malformed: an entry that is not an ``Operation``; a client that is not a string;
    an ``op`` that is not a mapping; a position that is not an integer; a response
    before its invocation; two events at one position (each invocation and each
    response has its own place in the order); one client's operations overlapping
    (a client runs one operation at a time, and one that never returned is its
    last: a client that gives up on an operation goes on under a new name); and
    whatever the model refuses (for ``KeyValue``: an unknown operation, a missing
    or unknown field, an unhashable key)."""
    check_operations(ops)
    placed: list[tuple[Operation, int]] = []
    partitions = model.partition(ops)
    steps = 0
    for number, part in enumerate(partitions):
        try:
            result = check_part(part, model, max_steps - steps, deadline)
        except HistoryTooLarge as exc:
            raise _too_large(max_steps, part, steps + exc.steps) from None
        except SearchTimedOut as exc:
            raise SearchTimedOut(steps + exc.steps) from None
        steps += result.steps
        if not result.ok:
            return attrs.evolve(result, steps=steps)
        placed.extend((operation, number) for operation in result.order or ())
    return Linearizability(True, _merge(placed), _ok_message(ops, len(partitions)), steps=steps)


def check_operations(ops: Sequence[Operation]) -> None:
    """``ValueError`` (one line) unless ``ops`` is a well-formed history (see
    ``check_history``; what the model refuses is the model's ``partition``'s to say)."""
    for index, operation in enumerate(ops):
        _check_fields(index, operation)
        _check_positions(operation)
    _check_events(ops)


def check_part(
    part: Sequence[Operation], model: Model[Any], max_steps: int = DEFAULT_MAX_STEPS, deadline: float | None = None
) -> Linearizability:
    """Is one sub-history linearizable?  ``part`` is searched whole (the model's
    ``partition`` is not called: it was split already); the operations are assumed
    well formed (``check_operations``).  ``order`` is then the part's own witness.
    Raises ``HistoryTooLarge`` beyond ``max_steps`` steps, ``SearchTimedOut`` at
    ``deadline``."""
    return PartSearch(part, model).check(max_steps, deadline)


class PartSearch:
    """One sub-history's search, which can be taken up again: ``check`` with a budget
    the search runs out of raises ``HistoryTooLarge``, and ``check`` with a larger one
    goes on from where it stopped (the same search, not a new one: the result and
    the steps are those of one call with the larger budget)."""

    def __init__(self, part: Sequence[Operation], model: Model[Any]) -> None:
        self.part = part
        self.search = _Search(model, part)

    @property
    def steps(self) -> int:
        return self.search.steps

    def check(self, max_steps: int = DEFAULT_MAX_STEPS, deadline: float | None = None) -> Linearizability:
        """The verdict (see ``check_part``)."""
        search = self.search
        try:
            found = search.run(max_steps, deadline)
        except _OverBudget as exc:
            raise _too_large(max_steps, self.part, exc.steps) from None
        if found is not None:
            order = tuple(search.ops[i] for i in found)
            return Linearizability(True, order, _ok_message(self.part, 1), steps=search.steps)
        best = search.best
        return Linearizability(
            False,
            None,
            search.failure_message(),
            sub_history=tuple(self.part),
            prefix=tuple(search.ops[i] for i in best.path),
            stuck=tuple(Stuck(search.ops[i], answer) for i, answer in best.stuck),
            steps=search.steps,
        )


def _too_large(max_steps: int, part: Sequence[Operation], steps: int) -> HistoryTooLarge:
    return HistoryTooLarge(
        f"the linearizability search exceeded {max_steps:,} steps on {_where(part)} ({len(part)} operations); "
        "check a shorter history or raise max_steps",
        steps,
    )


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


def _same_state(a: Any, b: Any) -> bool:
    return a is b or _memo_state(a) == _memo_state(b)


# Results compared with ``==`` alone: for these ``same_result`` is ``==``, and the
# hot loop saves its call.  States of these types are memoised as they are (no
# other memo key is a string or None).
_PLAIN: Final = (str, type(None))

_NEVER: Final = float("inf")
# A failure message lists at most this many of the operations ordered before the
# point where no order goes further: the last ones are what the stuck ones follow.
_PREFIX_SHOWN: Final = 8
# The deadline is read once per this many steps (a clock read per step would cost
# more than the step).
_DEADLINE_EVERY: Final = 1024


class _OverBudget(Exception):
    def __init__(self, steps: int) -> None:
        super().__init__(steps)
        self.steps = steps


@attrs.define
class _Furthest:
    """The furthest point a search reached: how many completed operations it had
    placed, by which path (operation numbers), the state there, and the completed
    operations real time allowed next with the model's answer to each."""

    count: int = -1
    path: list[int] = attrs.Factory(list)
    state: Any = None
    stuck: list[tuple[int, Any]] = attrs.Factory(list)


def _stepper(model: Model[Any], op: Mapping[str, Any]) -> Callable[[Any], tuple[Any, Any]]:
    """``op`` as a function of the state; a model may compile it once (``stepper``)
    rather than read the operation at every step."""
    compile_op = getattr(model, "stepper", None)
    if callable(compile_op):
        compiled: Callable[[Any], tuple[Any, Any]] = compile_op(op)
        return compiled
    step = model.step
    return lambda state: step(state, op)


class _Search:
    """The search over one sub-history.  Operations are numbered in invocation order;
    a set of placed operations is a bit mask (a Python int).

    Depth first, as Porcupine's: a node is a pair (placed operations, model state);
    its children are the operations that may come next, with their recorded
    result, first invoked first, each with the state it leads to.  A node reached
    before, by another path, is not entered again (Lowe's memo: the same pair has
    the same future); each node entered is one step.  A node's children are
    computed when it is entered and entered one at a time, so a path that succeeds
    never enters its siblings.  The order in which nodes are entered, and so the
    furthest point reached and the report, is that of the search's first version,
    which computed and counted every child up front; the work is the same or less."""

    def __init__(self, model: Model[Any], ops: Sequence[Operation]) -> None:
        self.model = model
        self.ops = sorted(ops, key=lambda o: (o.call, _NEVER if o.ret is None else o.ret))
        self.steps = 0
        self.best = _Furthest()
        self.limit = 0
        self.deadline: float | None = None
        self.explorer: Generator[None, None, list[int] | None] | None = None
        self.done = False
        self.found: list[int] | None = None

    def run(self, max_steps: int, deadline: float | None = None) -> list[int] | None:
        """The operation numbers of a linearization, or None (``best`` holds the
        furthest point).  ``_OverBudget`` beyond ``max_steps`` nodes (a later call
        with a larger budget goes on from there), ``SearchTimedOut`` at the deadline."""
        if self.done:
            return self.found
        self.limit, self.deadline = max_steps, deadline
        if self.explorer is None:
            self.explorer = self._explore()
        try:
            next(self.explorer)
        except StopIteration as stop:
            self.done, self.found = True, stop.value
            return self.found
        except SearchTimedOut:
            # The generator is finished without an answer: any later call says so again.
            self.explorer = _timed_out(self.steps)
            raise
        raise _OverBudget(self.steps)

    def _explore(self) -> Generator[None, None, list[int] | None]:
        # A generator so that running out of budget suspends it (yield) with the whole
        # search in its locals, and a larger budget resumes it.
        ops = self.ops
        n = len(ops)
        # Per operation, what the inner loop reads, in lists rather than attributes.
        calls = [o.call for o in ops]
        rets = [_NEVER if o.ret is None else o.ret for o in ops]
        pending = [o.ret is None for o in ops]
        results = [o.result for o in ops]
        plain = [type(o.result) in _PLAIN for o in ops]
        step = [_stepper(self.model, o.op) for o in ops]
        full = sum(1 << i for i in range(n) if not pending[i])
        best = self.best
        path: list[int] = []
        # The unplaced operations in invocation order, as a doubly linked list
        # (Porcupine's, after Knuth's dancing links): placing one unlinks it, taking
        # it back relinks it, each in constant time, so a scan for the next
        # candidates passes over no placed operation.  Entry n is the list's head.
        following = [*range(1, n + 1), 0]
        preceding = [n, *range(n)]

        def children(mask: int, state: Any) -> list[tuple[int, Any]]:
            """The operations that may come next and the states they lead to, in
            invocation order; the furthest point is updated here."""
            count = (mask & full).bit_count()
            furthest = count > best.count
            kids: list[tuple[int, Any]] = []
            stuck: list[tuple[int, Any]] = []
            # An unplaced operation may come next unless an unplaced completed one
            # returned before it was invoked; that one was invoked earlier still, so
            # a scan in invocation order, from the first unplaced operation, needs
            # only the earliest response seen so far and can stop at the first
            # invocation after it.
            earliest = _NEVER
            i = following[n]
            while i < n:
                if calls[i] > earliest:
                    break
                after, answer = step[i](state)
                if pending[i]:
                    # One that never returned is placed only if it changes the state.
                    if not _same_state(after, state):
                        kids.append((i, after))
                else:
                    if rets[i] < earliest:
                        earliest = rets[i]
                    expected = results[i]
                    if answer == expected if plain[i] else same_result(answer, expected):
                        kids.append((i, after))
                    elif furthest:
                        stuck.append((i, answer))
                i = following[i]
            if furthest:
                best.count, best.path, best.state, best.stuck = count, list(path), state, stuck
            return kids

        state = self.model.init()
        seen = {_memo_key(0, state)}
        steps = 1
        limit, deadline = self.limit, self.deadline
        try:
            if not full:
                return []
            frames: list[list[Any]] = [[0, children(0, state), 0]]  # [mask, children, next child] per node on the path
            while frames:
                frame = frames[-1]
                mask, kids, at = frame
                while at < len(kids):
                    i, after = kids[at]
                    at += 1
                    child = mask | 1 << i
                    key = (child, after) if type(after) in _PLAIN else _memo_key(child, after)
                    if key in seen:
                        continue
                    while steps >= limit:
                        self.steps = steps
                        yield  # out of budget; resumed with a larger one
                        limit, deadline = self.limit, self.deadline
                    seen.add(key)
                    steps += 1
                    if deadline is not None and steps % _DEADLINE_EVERY == 0 and time.monotonic() > deadline:
                        raise SearchTimedOut(steps)
                    path.append(i)
                    if child & full == full:
                        return path
                    frame[2] = at
                    following[preceding[i]] = following[i]
                    preceding[following[i]] = preceding[i]
                    frames.append([child, children(child, after), 0])
                    break
                else:
                    frames.pop()
                    if frames:
                        i = path.pop()
                        following[preceding[i]] = i
                        preceding[following[i]] = i
            return None
        finally:
            self.steps = steps

    def failure_message(self) -> str:
        best = self.best
        total = sum(1 for o in self.ops if o.ret is not None)
        state = _value_text(best.state)
        where = _where(self.ops)
        if best.path:
            shown = [describe(self.ops[i]) for i in best.path[-_PREFIX_SHOWN:]]
            if len(best.path) > _PREFIX_SHOWN:
                shown.insert(0, f"… {len(best.path) - _PREFIX_SHOWN} earlier")
            prefix = (
                f"At best {best.count} of its {total} completed operations can be ordered first "
                f"({'; '.join(shown)}), after which the state is {state}"
            )
        else:
            prefix = f"None of its {total} completed operations can come first, from the initial state {state}"
        stuck = "; ".join(
            f"{describe(self.ops[i])}, where the model answers {_value_text(answer)}" for i, answer in best.stuck
        )
        return (
            f"not linearizable: no order of the operations on {where} explains their results. {prefix}; "
            f"then every operation that real time allows next has a result the model does not give: {stuck}."
        )


def _timed_out(steps: int) -> Generator[None, None, list[int] | None]:
    raise SearchTimedOut(steps)
    yield  # a generator, for _Search.explorer


def _memo_key(mask: int, state: Any) -> tuple[int, Any]:
    return (mask, state) if type(state) in _PLAIN else (mask, _memo_state(state))


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
