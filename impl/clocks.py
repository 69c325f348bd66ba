"""Logical clocks as a library: Lamport clocks, vector clocks (version vectors) and
hybrid logical clocks (HLC, Kulkarni et al. 2014).

Where it sits: a plain, thread-safe library with no runtime dependency, for the
implementations in ``impl/`` to stamp events and messages (a Dynamo-style store's
version vectors, an HLC for transaction timestamps).  It mirrors ``spec/clocks.py``
without importing it: every update rule here is the spec's rule, and
``tests/impl/test_clocks.py`` drives these classes through random runs, records the
steps in the spec's vocabulary and validates the trace against the spec.

The rules (the spec's module docstring states them; its variants are the classic
mistakes, which these classes avoid):

- Lamport: an event adds 1; a receipt first takes the maximum of its own value and
  the message's (``max(own, stamp) + 1``).
- Vector: an event increments the process's own entry; a receipt first takes the
  entrywise maximum with the message's vector.
- HLC, a pair ``(wall, logical)`` = the paper's ``(l, c)``.  A local event or a send:
  ``l' = max(l, pt)``; ``c' = c + 1`` if ``l' == l`` else 0.  A receipt of
  ``(lm, cm)``: ``l' = max(l, lm, pt)``; ``c'`` is one more than the largest ``c``
  among the ``l``'s that equal ``l'`` (own and message's), or 0 if only ``pt`` does.

Using it::

    clock = HybridLogicalClock(max_offset=500)  # milliseconds
    stamp = clock.now()  # stamp an outgoing message with it
    clock.receive(HlcTimestamp.from_json(payload["hlc"]))  # ValueError if malformed

Everything that crosses the network has ``to_json``/``from_json``; ``from_json``
raises ``ValueError`` with one line on anything malformed, since a hostile peer may
send anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ClockSkewError",
    "HlcTimestamp",
    "HybridLogicalClock",
    "LamportClock",
    "Ordering",
    "Vector",
    "VectorClock",
]

Ordering = Literal["equal", "before", "after", "concurrent"]


def _counter(value: object, what: str) -> int:
    """``value`` as a clock counter (an int >= 0), or a one-line ValueError.  bool is
    an int subclass in Python but never a counter on the wire."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, not {value}")
    return value


# ----------------------------------------------------------------------- Lamport


class LamportClock:
    """A Lamport clock (1978): an integer that every event advances by one; a receipt
    first catches up with the message's stamp.  Thread-safe."""

    def __init__(self, value: int = 0) -> None:
        self._value = _counter(value, "a Lamport clock's value")
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        """The stamp of the last event (0 before any)."""
        with self._lock:
            return self._value

    def tick(self) -> int:
        """A local event or a send: one more; returns the event's stamp."""
        with self._lock:
            self._value += 1
            return self._value

    def receive(self, stamp: int) -> int:
        """A receipt of a message stamped ``stamp``: ``max(own, stamp) + 1``; returns
        the receipt's stamp.  A malformed stamp raises ValueError and changes nothing."""
        stamp = _counter(stamp, "a Lamport stamp")
        with self._lock:
            self._value = max(self._value, stamp) + 1
            return self._value

    def __repr__(self) -> str:
        return f"LamportClock({self.value})"


# ------------------------------------------------------------------------ vectors


class Vector:
    """A vector timestamp / version vector: node name -> counter (absent = 0).

    Immutable and hashable; zero entries are not stored, so ``Vector({"a": 0}) ==
    Vector()``.  ``<=`` and ``<`` are the causal partial order (``a < b``: every entry
    of ``a`` is at most ``b``'s and they differ), so for two concurrent vectors
    neither ``a <= b`` nor ``b <= a`` holds.
    """

    __slots__ = ("_counts", "_entries", "_hash")

    _entries: tuple[tuple[str, int], ...]  # sorted by node, counters > 0
    _counts: dict[str, int]  # the same, for lookups (never handed out)
    _hash: int

    def __init__(self, entries: Mapping[str, int] | None = None) -> None:
        items: list[tuple[str, int]] = []
        for node, count in (entries or {}).items():
            if not isinstance(node, str):
                raise ValueError(f"a vector's node names must be strings, not {type(node).__name__}")
            if _counter(count, f"the counter of {node!r}") > 0:
                items.append((node, count))
        self._set(tuple(sorted(items)))

    def _set(self, entries: tuple[tuple[str, int], ...]) -> None:
        object.__setattr__(self, "_entries", entries)
        object.__setattr__(self, "_counts", dict(entries))
        object.__setattr__(self, "_hash", hash(entries))

    @classmethod
    def _of(cls, entries: dict[str, int]) -> Vector:
        """A vector from entries already known to be well formed (no checks)."""
        v = cls.__new__(cls)
        v._set(tuple(sorted((n, c) for n, c in entries.items() if c > 0)))
        return v

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Vector is immutable")

    # ---------------------------------------------------------------- reading

    def get(self, node: str) -> int:
        """The counter of ``node`` (0 if absent)."""
        return self._counts.get(node, 0)

    def __getitem__(self, node: str) -> int:
        return self.get(node)

    def items(self) -> tuple[tuple[str, int], ...]:
        """The nonzero entries, sorted by node."""
        return self._entries

    def nodes(self) -> tuple[str, ...]:
        """The nodes with a nonzero counter, sorted."""
        return tuple(n for n, _ in self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes())

    def __len__(self) -> int:
        return len(self._entries)

    # -------------------------------------------------------------- operations

    def increment(self, node: str) -> Vector:
        """This vector with ``node``'s counter one more (an event at ``node``)."""
        if not isinstance(node, str):
            raise ValueError(f"a node name must be a string, not {type(node).__name__}")
        entries = dict(self._counts)
        entries[node] = entries.get(node, 0) + 1
        return Vector._of(entries)

    def merge(self, other: Vector) -> Vector:
        """The entrywise maximum (the least vector that descends from both)."""
        entries = dict(self._counts)
        for n, c in other._entries:
            if c > entries.get(n, 0):
                entries[n] = c
        return Vector._of(entries)

    def descends(self, other: Vector) -> bool:
        """Whether every entry of this vector is at least ``other``'s (equal counts)."""
        mine = self._counts
        return all(mine.get(n, 0) >= c for n, c in other._entries)

    def compare(self, other: Vector) -> Ordering:
        """``"equal"``, ``"before"`` (self < other: other descends from self and
        differs), ``"after"`` or ``"concurrent"`` (neither descends from the other)."""
        up, down = other.descends(self), self.descends(other)
        if up and down:
            return "equal"
        if up:
            return "before"
        if down:
            return "after"
        return "concurrent"

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Vector):
            return NotImplemented
        return other.descends(self)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Vector):
            return NotImplemented
        return other.descends(self) and self != other

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Vector):
            return NotImplemented
        return self.descends(other)

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Vector):
            return NotImplemented
        return self.descends(other) and self != other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vector):
            return NotImplemented
        return self._entries == other._entries

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Vector({dict(self._entries)!r})"

    # ------------------------------------------------------------------- wire

    def to_json(self) -> dict[str, int]:
        """The nonzero entries as a JSON object."""
        return dict(self._counts)

    @classmethod
    def from_json(cls, obj: object) -> Vector:
        """A vector from its JSON form; ValueError (one line) on anything malformed:
        not an object, a non-string key, a counter that is not an integer >= 0."""
        if not isinstance(obj, dict):
            raise ValueError(f"a vector must be a JSON object, not {type(obj).__name__}")
        return cls(obj)


class VectorClock:
    """One process's vector clock: thread-safe.

    ``nodes``, if given, is the known membership: a received stamp that names any
    other node is rejected with ValueError (and the clock is unchanged), since a
    vector entry for a node that does not exist can only come from a confused or
    hostile peer and would otherwise be carried forever.
    """

    def __init__(self, node: str, nodes: Sequence[str] | None = None) -> None:
        if not isinstance(node, str):
            raise ValueError(f"a node name must be a string, not {type(node).__name__}")
        if nodes is not None and node not in nodes:
            raise ValueError(f"node {node!r} is not among the nodes {list(nodes)!r}")
        self.node = node
        self.nodes = None if nodes is None else frozenset(nodes)
        self._value = Vector()
        self._lock = threading.Lock()

    @property
    def value(self) -> Vector:
        """The stamp of the last event (the empty vector before any)."""
        with self._lock:
            return self._value

    def tick(self) -> Vector:
        """A local event or a send: increment the own entry; returns the event's stamp."""
        with self._lock:
            self._value = self._value.increment(self.node)
            return self._value

    def receive(self, stamp: Vector) -> Vector:
        """A receipt of a message stamped ``stamp``: merge, then increment the own
        entry; returns the receipt's stamp."""
        if not isinstance(stamp, Vector):
            raise ValueError(f"a vector stamp must be a Vector, not {type(stamp).__name__}")
        if self.nodes is not None:
            strangers = [n for n in stamp.nodes() if n not in self.nodes]
            if strangers:
                raise ValueError(f"the stamp names unknown nodes {strangers!r}")
        with self._lock:
            self._value = self._value.merge(stamp).increment(self.node)
            return self._value

    def __repr__(self) -> str:
        return f"VectorClock({self.node!r}, {self.value!r})"


# ---------------------------------------------------------------------------- HLC


class ClockSkewError(ValueError):
    """A received HLC stamp is further ahead of the physical clock than ``max_offset``."""


@dataclass(frozen=True, order=True)
class HlcTimestamp:
    """A hybrid logical clock's value: ``wall`` (the paper's ``l``: the largest
    physical time heard of) and ``logical`` (``c``: counts events sharing a wall).
    Ordered as pairs, which is the order HLC keeps causality in."""

    wall: int
    logical: int

    def __post_init__(self) -> None:
        _counter(self.wall, "an HLC wall time")
        _counter(self.logical, "an HLC logical counter")

    def __str__(self) -> str:
        return f"{self.wall}.{self.logical}"

    def to_json(self) -> list[int]:
        """``[wall, logical]``."""
        return [self.wall, self.logical]

    @classmethod
    def from_json(cls, obj: object) -> HlcTimestamp:
        """A timestamp from ``[wall, logical]``; ValueError (one line) on anything else."""
        if not isinstance(obj, list | tuple) or len(obj) != 2:
            raise ValueError("an HLC timestamp must be a JSON array [wall, logical]")
        return cls(obj[0], obj[1])


def _milliseconds() -> int:
    return time.time_ns() // 1_000_000


class HybridLogicalClock:
    """A hybrid logical clock (Kulkarni et al., "Logical physical clocks", 2014):
    thread-safe.

    ``physical`` reads the physical clock in integer units (default: Unix time in
    milliseconds).  The clock never goes backwards, whatever ``physical`` does (an
    NTP step back only makes ``logical`` count on), and its wall stays within the
    peers' clock offset of physical time.

    ``max_offset``: the physical clocks are assumed to differ by at most this much,
    which is what bounds HLC's drift from physical time.  A peer whose clock is far
    in the future (misconfigured, or hostile) would otherwise drag every clock that
    hears from it into the future at once, and they could never come back: ``l``
    never decreases, so every later stamp would carry that wall and the counters
    would be all that moves.  So, as CockroachDB's HLC does, a receipt whose wall is
    more than ``max_offset`` ahead of the local physical clock is refused with
    ``ClockSkewError`` and the clock is left as it was; the caller drops (or reports)
    the message.
    """

    def __init__(self, physical: Callable[[], int] | None = None, max_offset: int | None = None) -> None:
        if max_offset is not None:
            _counter(max_offset, "max_offset")
        self._physical = physical if physical is not None else _milliseconds
        self.max_offset = max_offset
        self._last = HlcTimestamp(0, 0)
        self._lock = threading.Lock()

    @property
    def last(self) -> HlcTimestamp:
        """The stamp of the last event (0.0 before any)."""
        with self._lock:
            return self._last

    def now(self) -> HlcTimestamp:
        """A local event or a send: ``l' = max(l, pt)``; ``c' = c + 1`` if ``l' == l``
        else 0.  Returns the event's stamp."""
        with self._lock:
            pt = self._physical()
            own = self._last
            wall = max(own.wall, pt)
            self._last = HlcTimestamp(wall, own.logical + 1 if wall == own.wall else 0)
            return self._last

    def receive(self, stamp: HlcTimestamp) -> HlcTimestamp:
        """A receipt of a message stamped ``stamp``: ``l' = max(l, lm, pt)``; ``c'`` is
        one more than the largest ``c`` among the ``l``'s equal to ``l'`` (0 if only
        ``pt`` is).  Returns the receipt's stamp.  Raises ``ClockSkewError`` (and
        changes nothing) if ``stamp.wall`` is more than ``max_offset`` ahead of the
        physical clock."""
        if not isinstance(stamp, HlcTimestamp):
            raise ValueError(f"an HLC stamp must be an HlcTimestamp, not {type(stamp).__name__}")
        with self._lock:
            pt = self._physical()
            if self.max_offset is not None and stamp.wall - pt > self.max_offset:
                raise ClockSkewError(
                    f"HLC stamp {stamp} is {stamp.wall - pt} ahead of the physical clock {pt}, "
                    f"more than max_offset {self.max_offset}"
                )
            own = self._last
            wall = max(own.wall, stamp.wall, pt)
            if wall == own.wall and wall == stamp.wall:
                logical = max(own.logical, stamp.logical) + 1
            elif wall == own.wall:
                logical = own.logical + 1
            elif wall == stamp.wall:
                logical = stamp.logical + 1
            else:
                logical = 0
            self._last = HlcTimestamp(wall, logical)
            return self._last

    def __repr__(self) -> str:
        return f"HybridLogicalClock(last={self.last})"
