"""A circuit breaker shared by threads, and by processes through a store:
spec/circuit_breaker.py's rules as a library.

Where it sits: part of ``impl/resilience``; it guards calls to a service that may
be down.  It reads the time only through its injectable ``clock``, so it runs under
the project's deterministic scheduler (pass ``ctx.now``) and under a test's fake
clock.

The rules, each the spec's (docs/circuit_breaker.md explains them):

- **Closed**: every call is admitted; the outcomes of the last ``window`` calls are
  kept, and the breaker opens when at least ``min_calls`` of them are kept and the
  failures among them reach ``failure_rate``.
- **Open**: every call is rejected (``CircuitOpenError``) until ``open_timeout`` has
  passed since it opened; then the next call turns it half-open and is its first
  probe (lazily, at that call, as the spec and most libraries do).
- **Half-open**: at most ``probes`` probes are in flight at once, the rest are
  rejected; a probe's success closes the breaker, its failure opens it again.
- **Generations**: every change of mode is a new generation; a call remembers the
  generation that admitted it, and its report counts only if the breaker is still
  in that generation, so a slow call admitted before the breaker opened cannot
  close it (the spec's ``racing_reset`` variant).
- **Durable**: every change of mode is written to a ``BreakerStore`` (mode, opening
  time, generation) with a compare-and-set on the generation; a breaker built on
  the same store (another process, or this one after a restart) starts from the
  record, so an open breaker stays open for the rest of its timeout.  The window
  and the probes in flight are each process's own.

Using it::

    breaker = CircuitBreaker("payments", window=20, failure_rate=0.5, open_timeout=30.0, probes=2)

    @breaker
    def charge(order: Order) -> Receipt: ...

    with breaker:  # or around any block
        reply = client.get(url)

Thread safety: one lock guards the breaker's state; listeners are called outside
it, after the change they report.
"""

from __future__ import annotations

import functools
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar

from distcheck.impl.resilience.deadline import Clock
from distcheck.impl.telemetry import count, gauge

P = ParamSpec("P")
T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
MODES = (CLOSED, OPEN, HALF_OPEN)
#: the ``distcheck.breaker.state`` gauge's value for each mode (``impl.telemetry``)
STATE_LEVELS = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
CALL, PROBE = "call", "probe"


@dataclass(frozen=True)
class BreakerRecord:
    """What a store keeps of a breaker: its mode, when it last opened (None: never)
    and its generation (its changes of mode so far)."""

    mode: str
    opened_at: float | None
    generation: int


INITIAL = BreakerRecord(CLOSED, None, 0)


class BreakerStore(Protocol):
    """Where breakers keep their records.  ``durable``: the record outlives the
    process (then the breaker's default clock is the wall clock, which every process
    and every boot reads alike)."""

    durable: bool

    def load(self, name: str) -> BreakerRecord | None:
        """The stored record, None if there is none."""

    def replace(self, name: str, expected_generation: int, record: BreakerRecord) -> tuple[bool, BreakerRecord]:
        """Store ``record`` if the stored generation is ``expected_generation`` (0
        when there is no record), atomically; return whether it was stored, and the
        record stored afterwards (``record``, or the one another writer stored
        first, which may be equal to it: two breakers that time out at once
        compute the same half-open record, and only one of them made the change)."""


class MemoryStore:
    """Records in this process's memory: breakers built on one MemoryStore share
    their mode; nothing survives the process."""

    durable = False

    def __init__(self) -> None:
        self._records: dict[str, BreakerRecord] = {}
        self._lock = threading.Lock()

    def load(self, name: str) -> BreakerRecord | None:
        return self._records.get(name)

    def replace(self, name: str, expected_generation: int, record: BreakerRecord) -> tuple[bool, BreakerRecord]:
        with self._lock:
            stored = self._records.get(name, INITIAL)
            if stored.generation != expected_generation:
                return False, stored
            self._records[name] = record
            return True, record


class SQLiteStore:
    """Records in a SQLite database file, shared by every process that opens it; a
    compare-and-set is one ``BEGIN IMMEDIATE`` transaction, so concurrent processes
    never both win a change of mode."""

    durable = True

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS breakers ("
                "name TEXT PRIMARY KEY, mode TEXT NOT NULL, opened_at REAL, generation INTEGER NOT NULL)"
            )

    def load(self, name: str) -> BreakerRecord | None:
        with self._lock:
            return self._read(name)

    def replace(self, name: str, expected_generation: int, record: BreakerRecord) -> tuple[bool, BreakerRecord]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # takes the write lock before reading
            try:
                stored = self._read(name) or INITIAL
                won = stored.generation == expected_generation
                if won:
                    self._db.execute(
                        "INSERT OR REPLACE INTO breakers (name, mode, opened_at, generation) VALUES (?, ?, ?, ?)",
                        (name, record.mode, record.opened_at, record.generation),
                    )
                    stored = record
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return won, stored

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _read(self, name: str) -> BreakerRecord | None:
        row = self._db.execute("SELECT mode, opened_at, generation FROM breakers WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        mode, opened_at, generation = row
        if mode not in MODES or not isinstance(generation, int) or not isinstance(opened_at, (int, float, type(None))):
            raise ValueError(f"{self.path}: the record of breaker {name!r} is malformed: {row!r}")
        return BreakerRecord(mode, None if opened_at is None else float(opened_at), generation)


class CircuitOpenError(Exception):
    """The breaker rejected the call: it is open (``retry_after``: seconds until it
    lets a probe through) or half-open with all its probes in flight."""

    def __init__(self, name: str, mode: str, retry_after: float | None) -> None:
        self.name, self.mode, self.retry_after = name, mode, retry_after
        if mode == OPEN:
            why = f"open for another {retry_after:.3f} s"
        else:
            why = "half-open with all its probes in flight"
        super().__init__(f"circuit breaker {name!r} rejected the call: {why}")


@dataclass(frozen=True)
class StateChange:
    """What a listener hears: the breaker went from ``old`` to ``new`` because of
    ``cause`` (``window``, ``timeout``, ``success``, ``failure``, or ``store``: another
    breaker on the same store changed it), at ``at`` on its clock."""

    name: str
    old: str
    new: str
    cause: str
    generation: int
    at: float


class Permit:
    """An admitted call: ``kind`` call (closed) or probe (half-open), and the
    generation that admitted it.  Report its outcome with ``success()``/``failure()``.
    (A plain slotted class: one is made per call, and a frozen dataclass costs more.)"""

    __slots__ = ("breaker", "generation", "kind")

    def __init__(self, breaker: CircuitBreaker, kind: str, generation: int) -> None:
        self.breaker = breaker
        self.kind = kind
        self.generation = generation

    def __repr__(self) -> str:
        return f"Permit({self.kind}@{self.generation})"

    def success(self) -> None:
        self.breaker.report(self, success=True)

    def failure(self) -> None:
        self.breaker.report(self, success=False)


FailureOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


class CircuitBreaker:
    """A circuit breaker (module docstring).  ``failure_on``: the exceptions that
    count as failures (types or a predicate); any other exception counts as a
    success, the service having answered.  ``clock``: by default ``time.monotonic``,
    or ``time.time`` on a durable store."""

    def __init__(
        self,
        name: str = "breaker",
        *,
        window: int = 20,
        failure_rate: float = 0.5,
        min_calls: int | None = None,
        open_timeout: float = 30.0,
        probes: int = 1,
        failure_on: FailureOn = Exception,
        clock: Clock | None = None,
        store: BreakerStore | None = None,
        listeners: Iterable[Callable[[StateChange], object]] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        _check_count("window", window)
        _check_count("probes", probes)
        if min_calls is None:
            min_calls = window
        _check_count("min_calls", min_calls)
        if min_calls > window:
            raise ValueError(f"min_calls ({min_calls}) must be at most window ({window})")
        if not (isinstance(failure_rate, (int, float)) and not isinstance(failure_rate, bool)) or not (
            0 < failure_rate <= 1
        ):
            raise ValueError(f"failure_rate must be a number in (0, 1], got {failure_rate!r}")
        if (
            not isinstance(open_timeout, (int, float))
            or isinstance(open_timeout, bool)
            or not math.isfinite(open_timeout)
            or open_timeout < 0
        ):
            raise ValueError(f"open_timeout must be a finite number of at least 0, got {open_timeout!r}")
        if clock is not None and not callable(clock):
            raise ValueError(f"clock must be a function, got {clock!r}")
        self.name = name
        self.window_size, self.failure_rate, self.min_calls = window, float(failure_rate), min_calls
        self.open_timeout, self.probes = float(open_timeout), probes
        self.failure_on = _exception_predicate("failure_on", failure_on)
        # Only a store someone else may write needs reading before each decision.
        self._shared = store is not None
        self.store: BreakerStore = store if store is not None else MemoryStore()
        self.clock: Clock = clock if clock is not None else (time.time if self.store.durable else time.monotonic)
        self.listeners = list(listeners)
        self._lock = threading.Lock()
        self._record = self.store.load(name) or INITIAL
        self._window: deque[bool] = deque(maxlen=window)  # True: a failure
        self._failures = 0  # failures in the window, kept as it slides
        self._probes = 0  # probes of the current generation in flight
        self._held = threading.local()  # ``with breaker:`` permits, per thread

    # ------------------------------------------------------------ reading

    @property
    def state(self) -> str:
        """The mode: closed, open or half_open (open stays open here until a call
        after the timeout turns it half-open)."""
        return self.record.mode

    @property
    def record(self) -> BreakerRecord:
        changes: list[StateChange] = []
        with self._lock:
            self._sync(changes)
            record = self._record
        self._notify(changes)
        return record

    def window(self) -> tuple[bool, ...]:
        """The closed breaker's kept outcomes, oldest first (True: a failure)."""
        with self._lock:
            return tuple(self._window)

    # ------------------------------------------------------------ calls

    def acquire(self) -> Permit:
        """Admit a call or raise ``CircuitOpenError``; report the call's outcome on
        the permit."""
        with self._lock:
            record = self._record
            if record.mode == CLOSED and not self._shared:  # the common case, without the general path's lists
                return Permit(self, CALL, record.generation)
            changes: list[StateChange] = []
            admitted = self._admit(changes)
        self._notify(changes)
        if isinstance(admitted, CircuitOpenError):
            raise admitted
        return admitted

    def report(self, permit: Permit, *, success: bool) -> None:
        """A call's outcome.  A report from an earlier generation changes nothing."""
        changes: list[StateChange] = []
        with self._lock:
            if self._shared:
                self._sync(changes)
            record = self._record
            if permit.generation == record.generation:
                if record.mode == HALF_OPEN:
                    self._probes -= 1
                    if success:
                        self._change(CLOSED, "success", changes)
                    else:
                        self._change(OPEN, "failure", changes, opened=True)
                elif record.mode == CLOSED:
                    window = self._window
                    if len(window) == self.window_size:
                        self._failures -= window[0]  # the oldest outcome leaves the window
                    window.append(not success)
                    self._failures += not success
                    if len(window) >= self.min_calls and self._failures >= self.failure_rate * len(window):
                        self._change(OPEN, "window", changes, opened=True)
        if changes:
            self._notify(changes)

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` through the breaker."""
        permit = self.acquire()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            self.report(permit, success=not self._counts(error))
            raise
        permit.success()
        return result

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Use the breaker as a decorator."""

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(fn, *args, **kwargs)

        return guarded

    def __enter__(self) -> Permit:
        permit = self.acquire()
        held: list[Permit] = self._held.__dict__.setdefault("permits", [])
        held.append(permit)
        return permit

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        permit: Permit = self._held.permits.pop()
        self.report(permit, success=exc is None or not self._counts(exc))

    # ------------------------------------------------------------ rules

    def _admit(self, changes: list[StateChange]) -> Permit | CircuitOpenError:
        self._sync(changes)
        while True:  # loops only when another writer on the store won a change first
            record = self._record
            if record.mode == CLOSED:
                return Permit(self, CALL, record.generation)
            if record.mode == HALF_OPEN:
                if self._probes < self.probes:
                    self._probes += 1
                    return Permit(self, PROBE, record.generation)
                return CircuitOpenError(self.name, HALF_OPEN, None)
            opened_at = record.opened_at if record.opened_at is not None else -math.inf
            left = opened_at + self.open_timeout - self.clock()
            if left > 0:
                return CircuitOpenError(self.name, OPEN, left)
            if self._change(HALF_OPEN, "timeout", changes):
                self._probes = 1
                return Permit(self, PROBE, self._record.generation)

    def _counts(self, error: BaseException) -> bool:
        return isinstance(error, Exception) and self.failure_on(error)

    def _change(self, mode: str, cause: str, changes: list[StateChange], *, opened: bool = False) -> bool:
        """A change of mode: a new generation written to the store if nobody else
        wrote one first.  Returns whether this change won; either way the breaker
        now holds the stored record."""
        old = self._record
        now = self.clock()
        new = BreakerRecord(mode, now if opened else old.opened_at, old.generation + 1)
        won, stored = self.store.replace(self.name, old.generation, new)
        self._adopt(stored, cause if won else "store", changes, now)
        return won

    def _sync(self, changes: list[StateChange]) -> None:
        """Adopt what another breaker on the same store wrote since."""
        if self._shared:
            stored = self.store.load(self.name)
            if stored is not None and stored.generation > self._record.generation:
                self._adopt(stored, "store", changes, self.clock())

    def _adopt(self, stored: BreakerRecord, cause: str, changes: list[StateChange], now: float) -> None:
        old = self._record
        if stored.generation == old.generation:
            return
        self._record = stored
        self._window.clear()
        self._failures = 0
        self._probes = 0
        changes.append(StateChange(self.name, old.mode, stored.mode, cause, stored.generation, now))

    def _notify(self, changes: list[StateChange]) -> None:
        for change in changes:
            gauge("distcheck.breaker.state", STATE_LEVELS[change.new], breaker=self.name)
            count("distcheck.breaker.transitions", breaker=self.name, to=change.new)
            for listener in self.listeners:
                listener(change)

    def __repr__(self) -> str:
        r = self._record
        return f"CircuitBreaker({self.name!r}, mode={r.mode}, generation={r.generation})"


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer of at least 1, got {value!r}")


def _exception_predicate(name: str, kinds: FailureOn) -> Callable[[BaseException], bool]:
    if isinstance(kinds, type) and issubclass(kinds, BaseException):
        chosen: tuple[type[BaseException], ...] = (kinds,)
    elif (
        isinstance(kinds, tuple) and kinds and all(isinstance(k, type) and issubclass(k, BaseException) for k in kinds)
    ):
        chosen = kinds
    elif callable(kinds) and not isinstance(kinds, type):
        return kinds
    else:
        raise ValueError(f"{name} must be an exception type, a tuple of them or a predicate, got {kinds!r}")
    return lambda error: isinstance(error, chosen)
