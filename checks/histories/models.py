"""Sequential models for ``distcheck linearizable``: what each operation of a
register, a key-value map, a queue, a set, a counter or a lock does, one at a time.

Where it sits: ``checks.histories.linearizability`` searches for an order of a
history's operations that a ``Model`` (``init``, ``step``, ``partition``) explains;
this module holds the models a user names on the command line, and
``checks.histories.formats`` asks a model how a Jepsen-style record (``:f``,
``:value``) becomes one of its operations.  It knows no protocol of ours.

A model here is a ``SequentialModel``: a table of its operations (``SIGNATURES``:
the fields each takes and what it answers) and one method per operation,
``op_<name>(state, **fields) -> (state, result)``.  ``partition`` checks every
operation against the table before the search starts, so a misspelt field is one
clear error, not an order that silently fails to exist.  A user's model is any
class with ``init``, ``step`` and ``partition`` (``Model``); subclassing
``SequentialModel`` gives it the table, the checks and the Jepsen mapping for
free (docs/histories.md, "Adding a model").

States are immutable (None, strings, numbers, tuples, frozensets) because the
search memoises them.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final

import attrs

from distcheck.checks.histories.linearizability import Model, Operation, same_result

# What an operation answers: "ok" (nothing but that it happened), "value" (what it
# read) or "bool" (whether it took effect; a Jepsen ``:fail`` is then the answer false).
OK_ANSWER: Final = "ok"
VALUE_ANSWER: Final = "value"
BOOL_ANSWER: Final = "bool"


@attrs.frozen
class Signature:
    """One operation of a model: the fields it takes besides ``op`` (and ``key`` for a
    keyed model), and what it answers (``ok``, ``value`` or ``bool``)."""

    fields: tuple[str, ...]
    answers: str
    summary: str


_ABSENT: Final = object()


class SequentialModel:
    """The base of the built-in models, and of a user's: subclass it, set ``NAME``,
    ``SUMMARY``, ``SIGNATURES`` (and ``KEYED`` for one state per key), and write
    ``op_<name>(self, state, **fields) -> (state, result)`` for each signature."""

    NAME: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""
    KEYED: ClassVar[bool] = False
    SIGNATURES: ClassVar[Mapping[str, Signature]] = {}
    # The state before any operation when ``--initial`` is not given.
    DEFAULT_INITIAL: ClassVar[Any] = None
    # Whether ``--initial`` may set it (a queue, a set and a lock start empty).
    TAKES_INITIAL: ClassVar[bool] = False

    def __init__(self, initial: Any = _ABSENT) -> None:
        if initial is not _ABSENT and not self.TAKES_INITIAL:
            raise ValueError(f"the {self.NAME or type(self).__name__} model takes no initial value")
        self.initial = self.DEFAULT_INITIAL if initial is _ABSENT else _freeze(initial)
        self._steps: dict[str, tuple[Callable[..., tuple[Any, Any]], tuple[str, ...]]] = {
            name: (getattr(self, f"op_{name}"), signature.fields) for name, signature in self.SIGNATURES.items()
        }

    def init(self) -> Any:
        return self.initial

    def step(self, state: Any, op: Mapping[str, Any]) -> tuple[Any, Any]:
        method, fields = self._steps[op["op"]]
        # The search calls this for every candidate: the common shapes skip building a list.
        if not fields:
            return method(state)
        if len(fields) == 1:
            return method(state, op[fields[0]])
        return method(state, *[op[f] for f in fields])

    def stepper(self, op: Mapping[str, Any]) -> Callable[[Any], tuple[Any, Any]]:
        """``op`` as a function of the state alone, its fields read once: the search
        calls it at every node instead of ``step`` (a subclass that overrides
        ``step`` keeps it)."""
        if type(self).step is not SequentialModel.step:
            step = self.step
            return lambda state: step(state, op)
        method, fields = self._steps[op["op"]]
        if not fields:
            return method
        if len(fields) == 1:
            value = op[fields[0]]
            return lambda state: method(state, value)
        values = [op[f] for f in fields]
        return lambda state: method(state, *values)

    def partition(self, ops: Sequence[Operation]) -> list[list[Operation]]:
        for operation in ops:
            self.check_operation(operation)
        if not self.KEYED:
            return [list(ops)] if ops else []
        by_key: dict[Any, list[Operation]] = {}
        for operation in ops:
            by_key.setdefault(_key_of(operation.op["key"]), []).append(operation)
        return list(by_key.values())

    def check_operation(self, operation: Operation) -> None:
        """``ValueError`` (one line) for an operation this model does not take."""
        op = operation.op
        name = op.get("op")
        where = f"{operation.client}'s operation at line {operation.call}"
        signature = self.SIGNATURES.get(name) if isinstance(name, str) else None
        if signature is None or not isinstance(name, str):
            raise ValueError(f"{where}: unknown operation {name!r}; the {self.NAME} model knows {self.known()}")
        fields = (("key",) if self.KEYED else ()) + signature.fields
        missing = [f for f in fields if f not in op]
        if missing:
            raise ValueError(f"{where}: {name} lacks {', '.join(missing)} ({self.usage(name)})")
        unknown = [str(f) for f in op if f != "op" and f not in fields]
        if unknown:
            raise ValueError(f"{where}: {name} does not take {', '.join(unknown)} ({self.usage(name)})")
        if self.KEYED:
            try:
                hash(_key_of(op["key"]))
            except TypeError:
                raise ValueError(f"{where}: the key {op['key']!r} is not a string, number or list of them") from None
        problem = self.check_arguments(name, op)
        if problem:
            raise ValueError(f"{where}: {problem}")

    def check_arguments(self, name: str, op: Mapping[str, Any]) -> str | None:
        """What is wrong with an operation's values (None: nothing); models override it."""
        return None

    def recorded(self, op: Mapping[str, Any], result: Any) -> Any:
        """A recorded result in the form ``step`` answers it (the readers call this;
        a set's read puts its elements in order)."""
        return result

    def known(self) -> str:
        return ", ".join(self.usage(name) for name in self.SIGNATURES)

    def usage(self, name: str) -> str:
        fields = (("key",) if self.KEYED else ()) + self.SIGNATURES[name].fields
        return f"{name}({', '.join(fields)})"

    def from_jepsen(
        self, f: str, key: Any, has_key: bool, invoked: Any, completed: Any, outcome: str
    ) -> tuple[dict[str, Any], Any] | None:
        """A Jepsen record (``:f``, ``:key``, the invocation's and the completion's
        ``:value``, the completion's ``:type``: ok, fail, info, or pending) as this
        model's operation and result, or None when it did not take effect (a
        ``:fail`` of an operation that answers no bool).  ``ValueError`` when the
        record does not fit the operation."""
        signature = self.SIGNATURES.get(f)
        if signature is None:
            raise ValueError(f"unknown operation :{f}; the {self.NAME} model knows {self.known()}")
        if outcome == "fail" and signature.answers != BOOL_ANSWER:
            return None
        op: dict[str, Any] = {"op": f}
        if self.KEYED:
            if not has_key:
                raise ValueError(f":{f} has no :key; the {self.NAME} model keeps one value per key")
            op["key"] = key
        fields = signature.fields
        if len(fields) == 1:
            op[fields[0]] = invoked
        elif len(fields) > 1:
            if not isinstance(invoked, list) or len(invoked) != len(fields):
                raise ValueError(
                    f":{f} takes its {', '.join(fields)} as a vector of {len(fields)} in :value, not {invoked!r}"
                )
            op.update(zip(fields, invoked))
        if signature.answers == OK_ANSWER:
            result: Any = "ok"
        elif signature.answers == BOOL_ANSWER:
            result = outcome != "fail"
        else:
            result = completed
        return op, result


class _FrozenMap(tuple[tuple[Any, Any], ...]):
    """A JSON object kept in a state: its members as sorted pairs, told apart from a list."""


def _freeze(value: Any) -> Any:
    """A JSON value as an immutable one (lists as tuples), for a state the search memoises."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return _FrozenMap(sorted(((k, _freeze(v)) for k, v in value.items()), key=lambda kv: _canonical(kv[0])))
    return value


def _key_of(key: Any) -> Any:
    return _freeze(key)


def _equal(a: Any, b: Any) -> bool:
    # A compare in a cas: a stored tuple (a frozen list) equals the list a client sent.
    return same_result(_thaw(a), _thaw(b))


def _thaw(value: Any) -> Any:
    if not isinstance(value, tuple):
        return value
    if isinstance(value, _FrozenMap):
        return {k: _thaw(v) for k, v in value}
    return [_thaw(v) for v in value]


def _read(state: Any) -> tuple[Any, Any]:
    # A read of a register or a key, as one call: the search makes it at nearly every node.
    return state, state if not isinstance(state, tuple) else _thaw(state)


# ----------------------------------------------------------------- registers


class Register(SequentialModel):
    """One value: ``read()`` answers it, ``write(value)`` sets it."""

    NAME = "register"
    SUMMARY = "one value: read, write"
    TAKES_INITIAL = True
    SIGNATURES: ClassVar[Mapping[str, Signature]] = {
        "read": Signature((), VALUE_ANSWER, "answers the value"),
        "write": Signature(("value",), OK_ANSWER, "sets the value"),
    }

    def op_read(self, state: Any) -> tuple[Any, Any]:
        return state, _thaw(state)

    def op_write(self, state: Any, value: Any) -> tuple[Any, Any]:
        return _freeze(value), "ok"

    def stepper(self, op: Mapping[str, Any]) -> Callable[[Any], tuple[Any, Any]]:
        if op["op"] == "read" and type(self).op_read is Register.op_read and type(self).step is SequentialModel.step:
            return _read
        return super().stepper(op)


class CasRegister(Register):
    """A register with compare-and-set: ``cas(expected, value)`` sets it and answers
    true when it holds ``expected``, and otherwise answers false."""

    NAME = "cas-register"
    SUMMARY = "one value: read, write, cas (compare-and-set)"
    SIGNATURES: ClassVar[Mapping[str, Signature]] = {
        **Register.SIGNATURES,
        "cas": Signature(("expected", "value"), BOOL_ANSWER, "sets the value if it is expected; answers whether"),
    }

    def op_cas(self, state: Any, expected: Any, value: Any) -> tuple[Any, Any]:
        if _equal(state, expected):
            return _freeze(value), True
        return state, False


class KeyValueMap(SequentialModel):
    """A map of keys to values, each key checked on its own (linearizability is
    local).  A key never written (or deleted) holds the initial value, null unless
    ``--initial`` says otherwise (Porcupine's key-value histories read it as "")."""

    NAME = "kv"
    SUMMARY = "a map, checked per key: get, put, append (strings), cas, delete"
    KEYED = True
    TAKES_INITIAL = True
    SIGNATURES: ClassVar[Mapping[str, Signature]] = {
        "get": Signature((), VALUE_ANSWER, "answers the key's value"),
        "put": Signature(("value",), OK_ANSWER, "sets the key's value"),
        "append": Signature(("value",), OK_ANSWER, "appends a string to the key's string value"),
        "cas": Signature(("expected", "value"), BOOL_ANSWER, "sets the key's value if it is expected; answers whether"),
        "delete": Signature((), OK_ANSWER, "makes the key hold the initial value again"),
    }

    def op_get(self, state: Any) -> tuple[Any, Any]:
        return state, _thaw(state)

    def stepper(self, op: Mapping[str, Any]) -> Callable[[Any], tuple[Any, Any]]:
        if op["op"] == "get" and type(self).op_get is KeyValueMap.op_get and type(self).step is SequentialModel.step:
            return _read
        return super().stepper(op)

    def op_put(self, state: Any, value: Any) -> tuple[Any, Any]:
        return _freeze(value), "ok"

    def op_append(self, state: Any, value: str) -> tuple[Any, Any]:
        if state is None:
            return value, "ok"
        if isinstance(state, str):
            return state + value, "ok"
        # A store answers an error for an append to a number; no client saw "ok" then.
        return state, "not a string"

    def op_cas(self, state: Any, expected: Any, value: Any) -> tuple[Any, Any]:
        if _equal(state, expected):
            return _freeze(value), True
        return state, False

    def op_delete(self, state: Any) -> tuple[Any, Any]:
        return self.initial, "ok"

    def check_arguments(self, name: str, op: Mapping[str, Any]) -> str | None:
        if name == "append" and not isinstance(op["value"], str):
            return f"append takes a string value, not {op['value']!r}"
        return None


# ---------------------------------------------------------- queue, set, counter


class FifoQueue(SequentialModel):
    """A first-in first-out queue: ``enqueue(value)``; ``dequeue()`` answers the oldest
    value and removes it, or null when the queue is empty."""

    NAME = "queue"
    SUMMARY = "a FIFO queue: enqueue, dequeue (null when empty)"
    DEFAULT_INITIAL = ()
    SIGNATURES: ClassVar[Mapping[str, Signature]] = {
        "enqueue": Signature(("value",), OK_ANSWER, "adds a value at the back"),
        "dequeue": Signature((), VALUE_ANSWER, "removes and answers the front value (null when empty)"),
    }

    def op_enqueue(self, state: tuple[Any, ...], value: Any) -> tuple[Any, Any]:
        return (*state, _freeze(value)), "ok"

    def op_dequeue(self, state: tuple[Any, ...]) -> tuple[Any, Any]:
        if not state:
            return state, None
        return state[1:], _thaw(state[0])


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _sorted(values: Any) -> list[Any]:
    # Elements of mixed types have no order of their own; their JSON text does.
    return sorted(values, key=_canonical)


class SetModel(SequentialModel):
    """A set: ``add(value)``, ``remove(value)``, ``contains(value)`` (a bool) and
    ``read()``, which answers every element (in any order: a read's recorded result is
    compared as a set)."""

    NAME = "set"
    SUMMARY = "a set: add, remove, contains, read (all elements)"
    DEFAULT_INITIAL: ClassVar[Any] = frozenset()
    SIGNATURES: ClassVar[Mapping[str, Signature]] = {
        "add": Signature(("value",), OK_ANSWER, "adds an element"),
        "remove": Signature(("value",), OK_ANSWER, "removes an element (if present)"),
        "contains": Signature(("value",), VALUE_ANSWER, "answers whether an element is present"),
        "read": Signature((), VALUE_ANSWER, "answers every element"),
    }

    def op_add(self, state: frozenset[Any], value: Any) -> tuple[Any, Any]:
        return state | {value}, "ok"

    def op_remove(self, state: frozenset[Any], value: Any) -> tuple[Any, Any]:
        return state - {value}, "ok"

    def op_contains(self, state: frozenset[Any], value: Any) -> tuple[Any, Any]:
        return state, value in state

    def op_read(self, state: frozenset[Any]) -> tuple[Any, Any]:
        return state, _sorted(state)

    def check_arguments(self, name: str, op: Mapping[str, Any]) -> str | None:
        if "value" in op and isinstance(op["value"], list | dict):
            return f"{name} takes a string, number, bool or null as the element, not {op['value']!r}"
        return None

    def recorded(self, op: Mapping[str, Any], result: Any) -> Any:
        # A client may list a read's elements in any order: compare them as a set.
        if op.get("op") == "read" and isinstance(result, list):
            return _sorted(result)
        return result


class Counter(SequentialModel):
    """A counter: ``add(value)`` adds an integer (negative too), ``read()`` answers the
    total.  It starts at 0 unless ``--initial`` says otherwise."""

    NAME = "counter"
    SUMMARY = "a counter: add (an integer), read"
    DEFAULT_INITIAL = 0
    TAKES_INITIAL = True
    SIGNATURES: ClassVar[Mapping[str, Signature]] = {
        "add": Signature(("value",), OK_ANSWER, "adds an integer"),
        "read": Signature((), VALUE_ANSWER, "answers the total"),
    }

    def op_add(self, state: int, value: int) -> tuple[Any, Any]:
        return state + value, "ok"

    def op_read(self, state: int) -> tuple[Any, Any]:
        return state, state

    def check_arguments(self, name: str, op: Mapping[str, Any]) -> str | None:
        value = op.get("value")
        if name == "add" and (not isinstance(value, int) or isinstance(value, bool)):
            return f"add takes an integer value, not {value!r}"
        return None


class Mutex(SequentialModel):
    """A mutual-exclusion lock: ``acquire()`` answers "ok" and takes the lock when it is
    free (a completed acquire cannot fall while another client holds it);
    ``release()`` answers "ok" and frees it when it is held."""

    NAME = "lock"
    SUMMARY = "a mutex: acquire, release"
    DEFAULT_INITIAL = False
    SIGNATURES: ClassVar[Mapping[str, Signature]] = {
        "acquire": Signature((), OK_ANSWER, "takes the lock, when it is free"),
        "release": Signature((), OK_ANSWER, "frees the lock, when it is held"),
    }

    def op_acquire(self, state: bool) -> tuple[Any, Any]:
        return (True, "ok") if not state else (state, "held")

    def op_release(self, state: bool) -> tuple[Any, Any]:
        return (False, "ok") if state else (state, "not held")


MODELS: Final[Mapping[str, type[SequentialModel]]] = {
    m.NAME: m for m in (Register, CasRegister, KeyValueMap, FifoQueue, SetModel, Counter, Mutex)
}


def load_model(name: str, initial: Any = _ABSENT) -> Model[Any]:
    """The model a user names: a built-in (``MODELS``) or ``package.module:Class`` (a
    class built with no arguments).  ``ValueError`` (one line) when it cannot be had."""
    if ":" not in name:
        built_in = MODELS.get(name)
        if built_in is None:
            raise ValueError(f"unknown model {name!r}; built in: {', '.join(MODELS)}, or package.module:Class")
        return built_in(initial)
    module_name, _, class_name = name.partition(":")
    if not module_name or not class_name.isidentifier():
        raise ValueError(f"--model {name!r}: a model of your own is named package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: whatever importing it raises is theirs
        raise ValueError(f"cannot import {module_name!r} for --model: {type(exc).__name__}: {exc}") from None
    made = getattr(module, class_name, None)
    if not isinstance(made, type):
        raise ValueError(f"{module_name} has no class {class_name!r} for --model")
    missing = [m for m in ("init", "step", "partition") if not callable(getattr(made, m, None))]
    if missing:
        raise ValueError(f"{name} is not a model: it lacks {', '.join(missing)} (see docs/histories.md)")
    try:
        model = made(initial) if initial is not _ABSENT else made()
    except Exception as exc:  # the user's constructor
        raise ValueError(f"cannot build {name}: {type(exc).__name__}: {exc}") from None
    built: Model[Any] = model
    return built


NO_INITIAL: Final = _ABSENT
