"""Spec values: the immutable data states and actions are made of, and the one text
and fingerprint every such value has in every process.

Where it sits: the bottom of ``spec/``; the contract, the codec, the network models
and every spec build on it.  It imports nothing but the standard library and attrs.

States and actions are attrs frozen, slotted classes built from ints, strings,
booleans, tuples, frozensets and the two helpers here (``Bag``, a multiset, and
``FrozenMap``, TLA+'s function with a finite domain).  ``canonical_text`` gives every
such value one text that does not depend on the process (Python salts ``hash()`` of
strings, so set iteration order changes between runs); ``fingerprint`` a 64-bit
number with the same property.  The fixed order of ``actions()`` (``sort_key``) and
the JSON form of traces derive from them.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Hashable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any, Generic, TypeVar

import attrs

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
M = TypeVar("M", bound=Hashable)


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


# A map's entries recur from map to map (the same acceptor in the same state), and
# ``FrozenMap.set`` needs two entries' terms per call, so they are remembered by
# (key, value): one lookup instead of two fingerprints and a 64-bit mix.
_MAP_TERMS: dict[tuple[object, object], int] = {}


def _map_term(key: object, value: object) -> int:
    entry = (key, value)
    try:
        return _MAP_TERMS[entry]
    except KeyError:
        pass
    x = _part_fingerprint(key) * 31 + _part_fingerprint(value) & _MASK
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK  # _mix, inlined (a hot path)
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    x ^= x >> 31
    if len(_MAP_TERMS) >= _PART_TEXTS_LIMIT:
        _MAP_TERMS.clear()
    _MAP_TERMS[entry] = x
    return x


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
        _DIRECT_FP[kind] = kind._fingerprint
    elif attrs.has(kind):
        compute = _attrs_fingerprint_function(kind)
    else:
        raise TypeError(f"{kind.__name__} is not a spec value")
    _FP_BY_TYPE[kind] = compute
    return compute


def _attrs_fingerprint_function(kind: type) -> Callable[[Any], int]:
    """The fingerprint of an attrs class's values, as straight-line code.

    Fields are folded with a multiply (order matters: it is not commutative) and
    mixed once at the end.  This runs for every successor the explorer computes,
    so the loop over fields is unrolled, and a field whose value fingerprints
    itself cheaply (a string, a number, a map or message set that keeps its own
    fingerprint) is dispatched on its type without the detour through
    ``_part_fingerprint``; the result is the same number either way.
    """
    names = _field_names(kind)
    lines = ["def compute(value):", "    h = seed"]
    for name in names:
        lines += [
            f"    v = value.{name}",
            "    f = direct(type(v))",
            "    h = (h ^ (f(v) if f is not None else part(v))) * 0x100000001B3 & mask",
        ]
    lines += [  # _mix, inlined
        "    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 & mask",
        "    h = (h ^ (h >> 27)) * 0x94D049BB133111EB & mask",
        "    return h ^ (h >> 31)",
    ]
    namespace: dict[str, Any] = {
        "seed": _str_fp(kind.__name__),
        "direct": _DIRECT_FP.get,
        "part": _part_fingerprint,
        "mask": _MASK,
    }
    # Field names are Python identifiers (attrs makes them attributes), so the
    # generated text is plain attribute access.
    exec(compile("\n".join(lines), f"<fingerprint of {kind.__qualname__}>", "exec"), namespace)
    return namespace["compute"]  # type: ignore[no-any-return]


_FP_BY_TYPE: dict[type, Callable[[Any], int]] = {
    str: _str_fp,
    int: _int_fp,
    bool: _int_fp,
    type(None): lambda _: 0x9E3779B97F4A7C15,
    tuple: _tuple_fp,
    frozenset: _set_fp,
}
_UNCACHED: set[type] = {str, int, bool, type(None)}
#: The fingerprint functions of the ``_UNCACHED`` types (values that are not
#: remembered by value), for a dispatch on the type alone.
_DIRECT_FP: dict[type, Callable[[Any], int]] = {kind: _FP_BY_TYPE[kind] for kind in _UNCACHED}


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
        from distcheck.spec.codec import to_json

        return {"bag": [[to_json(m), n] for m, n in self.items()]}


_ABSENT = object()  # a key's value in a map that lacks it (None may be a value)


class FrozenMap(Mapping[K, V]):
    """An immutable, hashable mapping (TLA+'s function with a finite domain)."""

    __slots__ = ("_d", "_fp", "_sum")

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._d: dict[K, V] = dict(items)
        self._sum: int | None = None  # sum of the entries' fingerprint terms, once known
        self._fp: int | None = None  # the fingerprint, once asked for

    def __getitem__(self, key: K) -> V:
        return self._d[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    # The dict's own methods and views, rather than Mapping's generic ones written
    # in Python on top of __getitem__ and __iter__ (specs call these on every state).

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def get(self, key: K, default: Any = None) -> Any:
        return self._d.get(key, default)

    def keys(self) -> KeysView[K]:
        return self._d.keys()

    def values(self) -> ValuesView[V]:
        return self._d.values()

    def items(self) -> ItemsView[K, V]:
        return self._d.items()

    def set(self, key: K, value: V) -> FrozenMap[K, V]:
        """TLA+'s ``[f EXCEPT ![key] = value]``."""
        # Specs call this for nearly every successor: one copy of the dict (not
        # two, as through __init__), and the fingerprint updated by one entry.
        d = self._d.copy()
        old = d.get(key, _ABSENT)
        d[key] = value
        new = _new_map(FrozenMap)
        new._d = d
        new._fp = None
        total = self._sum
        if total is None:
            new._sum = None
        elif old is _ABSENT:
            new._sum = total + _map_term(key, value) & _MASK
        else:
            new._sum = total - _map_term(key, old) + _map_term(key, value) & _MASK
        return new

    def remove(self, key: K) -> FrozenMap[K, V]:
        """The map without ``key`` (which must be in it)."""
        d = self._d.copy()
        value = d.pop(key)
        new = _new_map(FrozenMap)
        new._d = d
        new._fp = None
        new._sum = None if self._sum is None else self._sum - _map_term(key, value) & _MASK
        return new

    def _fingerprint(self) -> int:
        fp = self._fp
        if fp is None:
            if self._sum is None:
                self._sum = sum([_map_term(k, v) for k, v in self._d.items()]) & _MASK
            fp = self._fp = _mix(_MAP_SEED + self._sum & _MASK)
        return fp

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
        from distcheck.spec.codec import to_json

        if all(isinstance(k, str) for k in self._d):
            return {str(k): to_json(v) for k, v in sorted(self._d.items(), key=lambda kv: str(kv[0]))}
        return {"map": [[to_json(k), to_json(v)] for k, v in sorted(self._d.items(), key=lambda kv: sort_key(kv[0]))]}


_new_map = object.__new__


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


def field_names(cls: type) -> tuple[str, ...]:
    """The names of an attrs class's fields, in order (remembered per class)."""
    return _field_names(cls)
