"""The spec contract: what every distcheck specification is, and the values it is made of.

Where it sits: every module in ``spec/`` builds on this one, and ``checks/`` (the
explorer, the hypothesis harness, traces, validation) talks to a spec only through
what is defined here.  It imports nothing but the standard library and attrs.

A spec is a value with four functions, in the spirit of TLA+'s Init/Next/Invariants
and Stateright's ``Model``::

    init_states() -> Iterable[State]
    actions(state) -> Iterable[Action]          every enabled action, faults included
    next_state(state, action) -> State | None   pure; None means "not enabled"
    invariants() -> Sequence[Invariant]         named predicates true in every state

and, optionally, ``reachable()`` (properties that must hold in *some* state, so that
a vacuous spec cannot pass), ``canonical(state)`` (symmetry reduction),
``within_bounds(state)`` (a state constraint like TLC's CONSTRAINT),
``observe(state, action)`` (the trace event an implementation would log for a step)
and ``refinement()`` (a mapping to a more abstract spec).

Values.  States and actions are attrs frozen, slotted classes built from ints,
strings, booleans, tuples, frozensets and the two helpers below (``Bag``, a multiset,
and ``FrozenMap``).  ``canonical_text`` gives every such value one text that does not
depend on the process (Python salts ``hash()`` of strings, so set iteration order
changes between runs); fingerprints, the fixed order of ``actions()`` and the JSON
form of traces all derive from it.

Networks.  Three reusable message-passing models, each with the fault actions a
spec turns on through ``NetworkFaults``:

=================  ============================================  ===================
model              semantics                                     faults
=================  ============================================  ===================
``MessageSet``     TLA+ style: sent once, never removed; a       loss and duplication
                   receiver may read a message any number of     are implicit
                   times (or never)
``BagNetwork``     unordered; each copy delivered at most once   drop, duplicate
``FifoNetwork``    one ordered channel per (sender, receiver)    drop, duplicate
=================  ============================================  ===================

and ``Process``, a node's durable and volatile halves, for crash/restart faults:
a crash loses the volatile half, a restart rebuilds it from the durable half.
"""

from __future__ import annotations

import enum
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs

S = TypeVar("S")  # a spec's state type
A = TypeVar("A")  # a spec's action type
AS = TypeVar("AS")  # an abstract spec's state type
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
M = TypeVar("M", bound=Hashable)
D = TypeVar("D")

# --------------------------------------------------------------------------- values


def canonical_text(value: object) -> str:
    """One text for a value, identical in every process and for equal values.

    Sets, bags and maps are written in sorted order of their members' texts, so the
    salted ``hash()`` of strings never leaks into it.
    """
    if isinstance(value, str) or value is None:
        return repr(value)
    if isinstance(value, int):
        # int(), because True == 1 in Python: equal values must have equal texts.
        return repr(int(value))
    if isinstance(value, tuple):
        return "(" + ",".join([_part_text(v) for v in value]) + ")"
    if isinstance(value, frozenset):
        return "{" + ",".join(sorted([_part_text(v) for v in value])) + "}"
    if isinstance(value, enum.Enum):
        return type(value).__name__ + "." + value.name
    text = getattr(value, "_canonical_text", None)
    if text is not None:
        return text()  # type: ignore[no-any-return]
    if attrs.has(type(value)):
        names = _field_names(type(value))
        return type(value).__name__ + "(" + ",".join([_part_text(getattr(value, n)) for n in names]) + ")"
    raise TypeError(
        f"{type(value).__name__} is not a spec value "
        "(allowed: int, str, bool, None, enum, tuple, frozenset, Bag, FrozenMap, attrs frozen class)"
    )


# Parts of states recur from state to state (the same message, the same map of RM
# states), so their texts are remembered by value.  Whole states are not, which
# keeps the cache proportional to the variety of parts rather than of states.
_PART_TEXTS: dict[object, str] = {}
_PART_TEXTS_LIMIT = 1 << 20


def _part_text(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    try:
        return _PART_TEXTS[value]
    except KeyError:
        pass
    text = canonical_text(value)
    if len(_PART_TEXTS) >= _PART_TEXTS_LIMIT:
        _PART_TEXTS.clear()
    _PART_TEXTS[value] = text
    return text


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = tuple(f.name for f in attrs.fields(cls))
        _FIELD_NAMES[cls] = names
    return names


_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """A 64-bit finaliser (splitmix64): spreads every input bit over the output."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


_STRING_FPS: dict[str, int] = {}
_PART_FPS: dict[object, int] = {}
_TUPLE_SEED, _SET_SEED, _MAP_SEED, _BAG_SEED = (_digest(t) for t in ("tuple", "set", "map", "bag"))


def fingerprint(value: object) -> int:
    """A 64-bit fingerprint of a value, stable across processes and machines.

    Built bottom-up rather than from ``canonical_text``: strings are digested
    once (blake2b); an ordered value folds its parts' fingerprints in order; a set,
    bag or map *adds* its members' mixed fingerprints, which needs no sorting and
    lets ``MessageSet.send`` and ``FrozenMap.set`` update a fingerprint in O(1).
    Parts recur from state to state (the same message in many message sets), so
    their fingerprints are remembered by value; whole states are not.
    Equal values have equal fingerprints (True and 1 included, as in Python).
    """
    kind = type(value)
    compute = _FP_BY_TYPE.get(kind)
    if compute is None:
        compute = _fingerprint_function(kind)
    return compute(value)


def _part_fingerprint(value: object) -> int:
    """``fingerprint`` for a part of a larger value, remembered by value."""
    kind = type(value)
    if kind in _UNCACHED:
        return _FP_BY_TYPE[kind](value)
    try:
        return _PART_FPS[value]
    except KeyError:
        pass
    fp = fingerprint(value)
    if len(_PART_FPS) >= _PART_TEXTS_LIMIT:
        _PART_FPS.clear()
    _PART_FPS[value] = fp
    return fp


def _str_fp(value: str) -> int:
    fp = _STRING_FPS.get(value)
    if fp is None:
        fp = _STRING_FPS[value] = _digest("s" + value)
    return fp


def _int_fp(value: int) -> int:
    return _mix(int(value) & _MASK ^ 0x5DEECE66D)


def _tuple_fp(value: tuple[object, ...]) -> int:
    h = _TUPLE_SEED
    for v in value:
        h = (h ^ _part_fingerprint(v)) * 0x100000001B3 & _MASK
    return _mix(h)


def _set_sum(values: Iterable[object]) -> int:
    total = 0
    for v in values:  # _mix, inlined: this runs for every message sent
        x = _part_fingerprint(v)
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
        total += x ^ (x >> 31)
    return total & _MASK


def _set_fp(value: frozenset[object]) -> int:
    return _mix(_SET_SEED + _set_sum(value) & _MASK)


def _map_term(key: object, value: object) -> int:
    x = _part_fingerprint(key) * 31 + _part_fingerprint(value) & _MASK
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK  # _mix, inlined (a hot path)
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


def _fingerprint_function(kind: type) -> Callable[[Any], int]:
    """Choose (once per type) how values of ``kind`` are fingerprinted."""
    compute: Callable[[Any], int]
    if issubclass(kind, enum.Enum):

        def compute(value: Any) -> int:
            return _str_fp(type(value).__name__ + "." + value.name)

    elif hasattr(kind, "_fingerprint"):

        def compute(value: Any) -> int:
            return value._fingerprint()  # type: ignore[no-any-return]

        _UNCACHED.add(kind)  # such values remember their own fingerprint
    elif attrs.has(kind):
        names = _field_names(kind)
        seed = _str_fp(kind.__name__)

        def compute(value: Any) -> int:
            # Fields are folded with a multiply (order matters: it is not
            # commutative) and mixed once at the end.
            h = seed
            for name in names:
                h = (h ^ _part_fingerprint(getattr(value, name))) * 0x100000001B3 & _MASK
            return _mix(h)

    else:
        raise TypeError(f"{kind.__name__} is not a spec value")
    _FP_BY_TYPE[kind] = compute
    return compute


_FP_BY_TYPE: dict[type, Callable[[Any], int]] = {
    str: _str_fp,
    int: _int_fp,
    bool: _int_fp,
    type(None): lambda _: 0x9E3779B97F4A7C15,
    tuple: _tuple_fp,
    frozenset: _set_fp,
}
_UNCACHED: set[type] = {str, int, bool, type(None)}


def sort_key(value: object) -> str:
    """A total order on spec values (used to give ``actions()`` a fixed order)."""
    return _part_text(value)


def sorted_values(values: Iterable[V]) -> list[V]:
    return sorted(values, key=sort_key)


class Bag(Generic[M]):
    """An immutable multiset: each member with a positive count."""

    __slots__ = ("_counts", "_hash")

    def __init__(self, items: Iterable[M] | Mapping[M, int] = ()) -> None:
        counts: dict[M, int] = {}
        if isinstance(items, Mapping):
            for item, n in items.items():
                if n < 0:
                    raise ValueError(f"negative count {n} for {item!r}")
                if n:
                    counts[item] = n
        else:
            for item in items:
                counts[item] = counts.get(item, 0) + 1
        self._counts = counts
        self._hash: int | None = None

    def count(self, item: M) -> int:
        return self._counts.get(item, 0)

    def __contains__(self, item: object) -> bool:
        return item in self._counts

    def __len__(self) -> int:
        return sum(self._counts.values())

    def distinct(self) -> list[M]:
        """The distinct members, in canonical order."""
        return sorted_values(self._counts)

    def items(self) -> list[tuple[M, int]]:
        return [(m, self._counts[m]) for m in self.distinct()]

    def add(self, item: M, n: int = 1) -> Bag[M]:
        counts = dict(self._counts)
        counts[item] = counts.get(item, 0) + n
        return Bag(counts)

    def remove(self, item: M) -> Bag[M]:
        """One copy fewer of ``item``; it must be present."""
        if item not in self._counts:
            raise KeyError(item)
        counts = dict(self._counts)
        counts[item] -= 1
        return Bag(counts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bag) and self._counts == other._counts

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._counts.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"Bag({dict(self.items())!r})"

    def __str__(self) -> str:
        parts = [str(m) if n == 1 else f"{m} ×{n}" for m, n in self.items()]
        return "⟅" + ", ".join(parts) + "⟆"

    def _fingerprint(self) -> int:
        total = sum([_mix(_part_fingerprint(m) + n & _MASK) for m, n in self._counts.items()])
        return _mix(_BAG_SEED + total & _MASK)

    def _canonical_text(self) -> str:
        parts = sorted(_part_text(m) + "*" + str(n) for m, n in self._counts.items())
        return "Bag{" + ",".join(parts) + "}"

    def to_json(self) -> object:
        return {"bag": [[to_json(m), n] for m, n in self.items()]}


class FrozenMap(Mapping[K, V]):
    """An immutable, hashable mapping (TLA+'s function with a finite domain)."""

    __slots__ = ("_d", "_sum")

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._d: dict[K, V] = dict(items)
        self._sum: int | None = None  # sum of the entries' fingerprint terms, once known

    def __getitem__(self, key: K) -> V:
        return self._d[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def set(self, key: K, value: V) -> FrozenMap[K, V]:
        """TLA+'s ``[f EXCEPT ![key] = value]``."""
        d = dict(self._d)
        d[key] = value
        new = FrozenMap(d)
        if self._sum is not None:  # update the fingerprint by one entry's term
            old = _map_term(key, self._d[key]) if key in self._d else 0
            new._sum = self._sum - old + _map_term(key, value) & _MASK
        return new

    def _fingerprint(self) -> int:
        if self._sum is None:
            self._sum = sum([_map_term(k, v) for k, v in self._d.items()]) & _MASK
        return _mix(_MAP_SEED + self._sum & _MASK)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap):
            return self._d == other._d
        return NotImplemented

    def __hash__(self) -> int:
        return self._fingerprint()

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def __str__(self) -> str:
        return "[" + ", ".join(f"{k} ↦ {v}" for k, v in self._d.items()) + "]"

    def _canonical_text(self) -> str:
        parts = sorted(_part_text(k) + ":" + _part_text(v) for k, v in self._d.items())
        return "[" + ",".join(parts) + "]"

    def to_json(self) -> object:
        if all(isinstance(k, str) for k in self._d):
            return {str(k): to_json(v) for k, v in sorted(self._d.items(), key=lambda kv: str(kv[0]))}
        return {"map": [[to_json(k), to_json(v)] for k, v in sorted(self._d.items(), key=lambda kv: sort_key(kv[0]))]}


# ----------------------------------------------------------------------------- JSON


def to_json(value: object) -> Any:
    """The JSON form of a spec value, as it appears in trace files.

    attrs classes become objects with a ``type`` key; tuples and frozensets become
    lists (sets in canonical order).  Readable by people and by other languages.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, tuple):
        return [to_json(v) for v in value]
    if isinstance(value, frozenset):
        return [to_json(v) for v in sorted_values(value)]
    if isinstance(value, enum.Enum):
        return value.name
    method = getattr(value, "to_json", None)
    if method is not None:
        return method()
    if attrs.has(type(value)):
        out: dict[str, Any] = {"type": type(value).__name__}
        for name in _field_names(type(value)):
            out[name] = to_json(getattr(value, name))
        return out
    raise TypeError(f"{type(value).__name__} is not a spec value")


def from_json(data: Any, types: Mapping[str, type]) -> Any:
    """Rebuild a value written by ``to_json``; ``types`` names the allowed classes.

    Lists come back as tuples; a field whose attrs converter is ``frozenset`` (or
    any other converter) gets its own container back.  Raises ``ValueError`` with a
    readable reason on input that names an unknown type or misses a field.
    """
    if isinstance(data, list):
        return tuple(from_json(v, types) for v in data)
    if isinstance(data, dict):
        if "type" not in data:
            raise ValueError(f"object without a 'type' key: {json.dumps(data)[:80]}")
        name = data["type"]
        cls = types.get(name)
        if cls is None:
            raise ValueError(f"unknown type {name!r}; known: {', '.join(sorted(types))}")
        names = _field_names(cls)
        missing = [n for n in names if n not in data and attrs.fields_dict(cls)[n].default is attrs.NOTHING]
        extra = sorted(set(data) - set(names) - {"type"})
        if missing or extra:
            raise ValueError(
                f"{name}: "
                + "; ".join(
                    ([f"missing field(s) {', '.join(missing)}"] if missing else [])
                    + ([f"unknown field(s) {', '.join(extra)}"] if extra else [])
                )
            )
        kwargs = {n: from_json(data[n], types) for n in names if n in data}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: {exc}") from None
    return data


def value_types(*modules_or_types: object) -> dict[str, type]:
    """The attrs classes named in the given modules (defined or imported there), or
    given directly, by name."""
    out: dict[str, type] = {}
    for item in modules_or_types:
        if isinstance(item, type):
            out[item.__name__] = item
            continue
        for name, obj in vars(item).items():
            if isinstance(obj, type) and attrs.has(obj):
                out[name] = obj
    return out


# ------------------------------------------------------------------------- actions


class Action:
    """Base for action records: a named step with its parameters.

    Subclasses are attrs frozen classes.  ``actor`` names the node that takes the
    step (shown in traces); ``str()`` is the short form used in step tables, e.g.
    ``RMPrepare(r1)``.
    """

    __slots__ = ()

    @property
    def actor(self) -> str:
        for name in ("actor_name", "node", "rm", "acceptor", "server", "client", "src"):
            value = getattr(self, name, None)
            if isinstance(value, str):
                return value
        return "env"

    def __str__(self) -> str:
        names = _field_names(type(self)) if attrs.has(type(self)) else ()
        args = ", ".join(short_text(getattr(self, n)) for n in names)
        return f"{type(self).__name__}({args})" if args else type(self).__name__


def name_set(names: Iterable[str]) -> frozenset[str]:
    """attrs converter for a set of node names (a quorum, a partition side): a JSON
    list comes back as a frozenset."""
    return frozenset(names)


def short_text(value: object) -> str:
    """A value as people read it in a step table: sets in canonical order (never
    Python's per-process set order), tuples in angle brackets."""
    if isinstance(value, frozenset):
        return "{" + ", ".join(short_text(v) for v in sorted_values(value)) + "}"
    if isinstance(value, tuple):
        return "⟨" + ", ".join(short_text(v) for v in value) + "⟩"
    return str(value)


# ------------------------------------------------------------------- the contract


@attrs.frozen
class Invariant(Generic[S]):
    """A named property that must hold in every reachable state ("always")."""

    name: str
    statement: str  # one line of English
    holds: Callable[[S], bool] = attrs.field(eq=False)


@attrs.frozen
class Reachable(Generic[S]):
    """A named property that must hold in some reachable state ("sometimes").

    A check fails when it is never reached, so an invariant that holds only because
    nothing interesting ever happens cannot pass unnoticed.
    """

    name: str
    statement: str
    holds: Callable[[S], bool] = attrs.field(eq=False)


@attrs.frozen
class Refinement(Generic[S, AS]):
    """``spec`` refines ``abstract`` under ``mapping``: every step of ``spec`` maps to a
    step of ``abstract`` or to a stutter (the abstract state unchanged)."""

    abstract: Spec[AS, Any]
    mapping: Callable[[S], AS] = attrs.field(eq=False)


class Spec(ABC, Generic[S, A]):
    """A specification: initial states, enabled actions, a pure next-state function
    and named invariants.  Subclasses fill in the four abstract methods."""

    #: Registry name, e.g. "twophase"; set by each subclass.
    name: str = ""

    @abstractmethod
    def init_states(self) -> Iterable[S]: ...

    @abstractmethod
    def actions(self, state: S) -> Iterable[A]:
        """Every action enabled in ``state``, in a fixed order (same in every process)."""

    @abstractmethod
    def next_state(self, state: S, action: A) -> S | None:
        """The state after ``action``, or None when it is not enabled.  Pure."""

    @abstractmethod
    def invariants(self) -> Sequence[Invariant[S]]: ...

    def reachable(self) -> Sequence[Reachable[S]]:
        return ()

    def canonical(self, state: S) -> S:
        """A representative of the state's symmetry class (identity by default)."""
        return state

    def has_symmetry(self) -> bool:
        return type(self).canonical is not Spec.canonical

    def within_bounds(self, state: S) -> bool:
        """A state constraint: successors of a state out of bounds are not explored."""
        return True

    def refinement(self) -> Refinement[S, Any] | None:
        return None

    def actor(self, action: A) -> str:
        return getattr(action, "actor", "env")

    def observe(self, state: S, action: A) -> Mapping[str, Any] | None:
        """The trace event an implementation logs for this step (None: not logged)."""
        return {"actor": self.actor(action), "action": to_json(action)}

    def value_types(self) -> Mapping[str, type]:
        """The classes that may appear in this spec's JSON (actions, messages, ...)."""
        import sys

        return value_types(sys.modules[type(self).__module__], sys.modules[__name__])

    def action_from_json(self, data: Any) -> A:
        return from_json(data, self.value_types())  # type: ignore[no-any-return]

    def successors(self, state: S) -> Iterator[tuple[A, S]]:
        """Every (action, next state) pair from ``state``."""
        for action in self.actions(state):
            nxt = self.next_state(state, action)
            if nxt is not None:
                yield action, nxt


def param(default: Any, *, help: str, minimum: int | None = None, maximum: int | None = None) -> Any:
    """A Config field that the CLI exposes as ``-p NAME=VALUE``."""
    return attrs.field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum})


# ------------------------------------------------------------------------- faults


@attrs.frozen
class NetworkFaults:
    """Which message faults a spec's network may inject, and how often."""

    drop: bool = False
    duplicate: bool = False
    max_copies: int = 2  # bag/channel bound on copies of one message, to keep the space finite


@attrs.frozen
class Drop(Action):
    """The network loses one copy of ``msg`` (on a FIFO network, the head of ``channel``)."""

    msg: Any
    channel: tuple[str, str] | None = None

    @property
    def actor(self) -> str:
        return "net"


@attrs.frozen
class Duplicate(Action):
    """The network delivers ``msg`` one extra time later."""

    msg: Any
    channel: tuple[str, str] | None = None

    @property
    def actor(self) -> str:
        return "net"


@attrs.frozen
class Crash(Action):
    """``node`` stops; its volatile state is lost."""

    node: str


@attrs.frozen
class Restart(Action):
    """``node`` comes back and rebuilds its volatile state from its durable state."""

    node: str


# ----------------------------------------------------------------------- networks


class MessageSet(Generic[M]):
    """TLA+-style network: a message is sent once and stays; receivers may read it
    any number of times.  Loss and duplication are implicit (a message can be
    ignored or read twice), so there are no fault actions.

    Sending keeps the set's fingerprint up to date in O(1) (specs such as Paxos
    Commit carry dozens of messages in every state)."""

    __slots__ = ("_sum", "sent")

    def __init__(self, sent: Iterable[M] = frozenset()) -> None:
        self.sent: frozenset[M] = frozenset(sent)
        self._sum: int | None = None

    def send(self, *msgs: M) -> MessageSet[M]:
        new_msgs = [m for m in msgs if m not in self.sent]
        if not new_msgs:
            return self
        new = MessageSet(self.sent.union(new_msgs))
        if self._sum is not None:
            new._sum = self._sum + _set_sum(set(new_msgs)) & _MASK
        return new

    def __contains__(self, msg: object) -> bool:
        return msg in self.sent

    def __len__(self) -> int:
        return len(self.sent)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MessageSet) and self.sent == other.sent

    def __hash__(self) -> int:
        return hash(self.sent)

    def _fingerprint(self) -> int:
        if self._sum is None:
            self._sum = _set_sum(self.sent)
        return _mix(_SET_SEED + self._sum & _MASK)

    def _canonical_text(self) -> str:
        return "MessageSet" + canonical_text(self.sent)

    def deliverable(self) -> list[M]:
        return sorted_values(self.sent)

    def fault_actions(self, faults: NetworkFaults) -> list[Action]:
        return []

    def __repr__(self) -> str:
        return f"MessageSet({set(self.sent)!r})"

    def __str__(self) -> str:
        return "{" + ", ".join(str(m) for m in self.deliverable()) + "}"

    def to_json(self) -> object:
        return [to_json(m) for m in self.deliverable()]


@attrs.frozen
class BagNetwork(Generic[M]):
    """Unordered network: each sent copy is delivered at most once."""

    in_flight: Bag[M] = Bag()

    def send(self, *msgs: M) -> BagNetwork[M]:
        bag = self.in_flight
        for m in msgs:
            bag = bag.add(m)
        return BagNetwork(bag)

    def __contains__(self, msg: object) -> bool:
        return msg in self.in_flight

    def deliverable(self) -> list[M]:
        return self.in_flight.distinct()

    def deliver(self, msg: M) -> BagNetwork[M]:
        """The network after one copy of ``msg`` is received."""
        return BagNetwork(self.in_flight.remove(msg))

    def fault_actions(self, faults: NetworkFaults) -> list[Action]:
        out: list[Action] = []
        for m in self.in_flight.distinct():
            if faults.drop:
                out.append(Drop(m))
            if faults.duplicate and self.in_flight.count(m) < faults.max_copies:
                out.append(Duplicate(m))
        return out

    def apply_fault(self, action: Action) -> BagNetwork[M] | None:
        if isinstance(action, Drop) and action.msg in self.in_flight:
            return BagNetwork(self.in_flight.remove(action.msg))
        if isinstance(action, Duplicate) and action.msg in self.in_flight:
            return BagNetwork(self.in_flight.add(action.msg))
        return None

    def __str__(self) -> str:
        return str(self.in_flight)

    def to_json(self) -> object:
        return self.in_flight.to_json()


@attrs.frozen
class FifoNetwork(Generic[M]):
    """One ordered channel per (sender, receiver); only a channel's head can be
    received, dropped or duplicated."""

    channels: FrozenMap[tuple[str, str], tuple[M, ...]] = FrozenMap()

    def send(self, src: str, dst: str, msg: M) -> FifoNetwork[M]:
        queue = self.channels.get((src, dst), ())
        return FifoNetwork(self.channels.set((src, dst), (*queue, msg)))

    def heads(self) -> list[tuple[str, str, M]]:
        """(sender, receiver, message) for every non-empty channel, in fixed order."""
        return [(s, d, q[0]) for (s, d), q in sorted(self.channels.items()) if q]

    def deliver(self, src: str, dst: str) -> tuple[M, FifoNetwork[M]]:
        """The head of channel (src, dst) and the network without it."""
        queue = self.channels.get((src, dst), ())
        if not queue:
            raise KeyError((src, dst))
        rest = queue[1:]
        channels = (
            self.channels.set((src, dst), rest)
            if rest
            else FrozenMap[tuple[str, str], tuple[M, ...]]({k: v for k, v in self.channels.items() if k != (src, dst)})
        )
        return queue[0], FifoNetwork(channels)

    def fault_actions(self, faults: NetworkFaults) -> list[Action]:
        out: list[Action] = []
        for src, dst, m in self.heads():
            if faults.drop:
                out.append(Drop(m, (src, dst)))
            queue = self.channels[(src, dst)]
            if faults.duplicate and len(queue) < faults.max_copies * 2 and queue.count(m) < faults.max_copies:
                out.append(Duplicate(m, (src, dst)))
        return out

    def apply_fault(self, action: Action) -> FifoNetwork[M] | None:
        if not isinstance(action, (Drop, Duplicate)) or action.channel is None:
            return None
        src, dst = action.channel
        queue = self.channels.get((src, dst), ())
        if not queue or queue[0] != action.msg:
            return None
        if isinstance(action, Drop):
            return self.deliver(src, dst)[1]
        return FifoNetwork(self.channels.set((src, dst), (queue[0], *queue)))

    def __str__(self) -> str:
        return "; ".join(f"{s}→{d}: {', '.join(str(m) for m in q)}" for (s, d), q in sorted(self.channels.items()))

    def to_json(self) -> object:
        return {f"{s}->{d}": [to_json(m) for m in q] for (s, d), q in sorted(self.channels.items())}


@attrs.frozen
class Process(Generic[D, V]):
    """One node's state split into what survives a crash (``durable``: its disk)
    and what does not (``volatile``: its memory)."""

    durable: D
    volatile: V
    up: bool = True

    def crash(self, lost: V) -> Process[D, V]:
        """The node stops; its memory is replaced by ``lost`` (a fixed empty value,
        so that crashed states that differ only in forgotten memory coincide)."""
        return Process(self.durable, lost, up=False)

    def restart(self, recover: Callable[[D], V]) -> Process[D, V]:
        """The node comes back with memory rebuilt from its durable state."""
        return Process(self.durable, recover(self.durable), up=True)
