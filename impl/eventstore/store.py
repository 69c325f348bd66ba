"""An event store: streams of immutable events with optimistic concurrency, one
global order, and reads that never skip an event.  The interface, and its SQLite
backend (the embedded default).

Where it sits: the bottom of ``impl/eventstore/``; aggregates (``aggregate.py``),
projections and the command/query split (``projection.py``) are written against
``EventStore`` and run on either backend (``postgres.py`` is the other).  It
mirrors ``spec/event_store.py``: an append names the version it expects and fails
with ``WrongExpectedVersion`` if another writer got there first; every event has a
stream version (1, 2, ... per stream, gapless) and a global position; a reader of
the global order (``read_all``, ``subscribe``) gets every committed event, in
position order, none skipped, none twice.

    store = SQLiteEventStore("bank.db")
    result = store.append("account-1", [NewEvent("Opened", {"owner": "ada"})], expected_version=NO_STREAM)
    store.append("account-1", [NewEvent("Deposited", {"amount": 10})], expected_version=result.version)
    for event in store.read_stream("account-1"): ...
    for event in store.subscribe(after=0): ...        # every event, then new ones as they commit

Guarantees of the SQLite backend, and how:

- **Durable when ``append`` returns.**  WAL journal, ``synchronous=FULL``: the commit
  is fsync'd before ``append`` returns.
- **Expected versions.**  ``append`` takes SQLite's write lock first (``BEGIN
  IMMEDIATE``), reads the stream's version, and refuses if it is not the one
  expected; a unique key on (stream, version) backs the check.
- **No gaps in the global order.**  Writers are serialized by that lock and
  positions come from an ``AUTOINCREMENT`` key inside the same transaction (a rolled
  back transaction gives its positions back), so positions commit in order and a
  reader never sees position p+1 before p: the gap race of spec/event_store's
  ``reader_skips_gap`` cannot happen here (the PostgreSQL backend must work for it).
- **Idempotent appends.**  Every event has an id (a UUID unless given: version 7,
  time-ordered, so that the index on ids grows at its end); an append whose events
  are all already in the stream, with those ids at those versions, is a retry of
  one that committed: it returns the first one's result.  An id stored anywhere
  else is refused (``DuplicateEventId``).  The ids are not looked up before the
  insert (the unique key refuses a stored one, and then they are), unless the
  expected version is not the stream's (a retry's, once its first try committed).

Bad input (an empty stream name, an expected version that is not a version, data
that is not JSON) raises ``ValueError`` naming what is wrong, before anything is
written.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Final

import attrs

#: ``expected_version``: the stream must not exist yet
NO_STREAM: Final = 0
#: ``expected_version``: no check (an append that cannot conflict: a log, not an aggregate)
ANY: Final = -1

#: the most events one ``append`` takes, and the longest stream name
MAX_BATCH = 10_000
MAX_STREAM_NAME = 200
#: a version or position no store reaches (SQLite's integers are 64-bit)
NO_LIMIT = 2**62


def new_event_id() -> str:
    """A fresh event id: a version 7 UUID (RFC 9562), its first 48 bits the time in
    milliseconds and 74 random bits after.  Ids made one after the other sort near
    each other, so the unique index on ids grows at its end, as the positions do,
    instead of dirtying a page anywhere in it for every event (which a random UUID
    would: a large part of an append's cost in writes, once the store is big)."""
    bits = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    # the version (0111) in bits 76-79, the variant (10) in bits 62-63
    bits = (bits & _UUID7_KEEP) | _UUID7_SET
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_UUID7_KEEP = ~(0xF << 76 | 0x3 << 62) & (2**128 - 1)
_UUID7_SET = 0x7 << 76 | 0x2 << 62


class FairLock:
    """A lock handed to its waiters in the order they came.  ``threading.Lock`` is
    not: a thread that releases it and asks again at once usually takes it back
    before the waiters wake, so under contention some appends wait for many others
    (with 8 writers, the p99 of an append was 1.2 times the eventsourcing library's)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def __enter__(self) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder as it hands the lock over

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            if self._waiters:
                self._waiters.popleft().release()  # still held: now by the next in line
            else:
                self._held = False


class EventStoreError(Exception):
    """Something the store refused; the message says what and why."""


class WrongExpectedVersion(EventStoreError):
    """Another writer appended to the stream since the version the caller read."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, not the expected {expected}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class DuplicateEventId(EventStoreError):
    """An event id that is already stored, not as a retry of the same append."""


@attrs.frozen
class NewEvent:
    """An event to append: its type, its data (a JSON object), metadata (a JSON
    object; ``schema`` there is the data's shape version, for upcasters) and an id."""

    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    id: str = attrs.field(factory=new_event_id)


@attrs.frozen
class RecordedEvent:
    """An event as stored: where it is in its stream (``version``, from 1) and in the
    store (``position``, from 1), and when it was recorded (seconds since the epoch)."""

    stream: str
    version: int
    position: int
    id: str
    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]
    recorded_at: float


@attrs.frozen
class AppendResult:
    """The stream's version after the append and its last event's global position
    (the read-your-writes token of the command that appended it)."""

    version: int
    position: int


class EventStore(ABC):
    """What every backend provides."""

    @abstractmethod
    def append(self, stream: str, events: Sequence[NewEvent], expected_version: int = ANY) -> AppendResult:
        """Append ``events`` to ``stream`` atomically, if the stream is at
        ``expected_version`` (``NO_STREAM``: it does not exist; ``ANY``: no check)."""

    @abstractmethod
    def read_stream(self, stream: str, after_version: int = 0, upto_version: int | None = None) -> list[RecordedEvent]:
        """The stream's events with versions in (``after_version``, ``upto_version``], in order."""

    @abstractmethod
    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events after global position ``after``, in position order,
        none skipped: every event at a position below the last one returned is
        committed and returned (or was returned by an earlier read)."""

    @abstractmethod
    def stream_version(self, stream: str) -> int:
        """The stream's version (0: no such stream)."""

    @abstractmethod
    def head(self) -> int:
        """The highest position ``read_all`` can return now."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscribe(self, after: int = 0, *, poll: float = 0.05, batch: int = 500) -> Subscription:
        """Every event after position ``after``, in order: those stored now (catch-up),
        then each new one as it commits (live), until ``close()``."""
        return Subscription(self, after, poll, batch)

    def append_condition(self) -> threading.Condition | None:
        """A condition notified when this process appends (None: poll only)."""
        return None

    # Hooks for a store that records what is done with it (``traced.TracedStore``);
    # nothing here.

    def begin(self, stream: str) -> None:
        """A command on ``stream`` starts: it loads the aggregate, then appends."""
        return None

    def committing(self) -> AbstractContextManager[object]:
        """Held by a projector while it commits a transaction and reports it
        (``projected``): a recording store holds its lock there, so that nobody reads a
        read model whose commit is not recorded yet."""
        return nullcontext()

    def projected(self, checkpoint: int, events: Sequence[RecordedEvent]) -> None:
        """A projector applied ``events`` (in order) after ``checkpoint``, and committed."""
        return None

    def projector_restarted(self) -> None:
        """A projector started on a read model that had a checkpoint."""
        return None


class Subscription:
    """Iterates over the global order from a position: catch-up, then live.  Other
    processes' appends are seen by polling every ``poll`` seconds; this process's at
    once.  ``position`` is the last position handed out."""

    def __init__(self, store: EventStore, after: int, poll: float, batch: int) -> None:
        if after < 0:
            raise ValueError(f"a subscription starts after a position >= 0, got {after}")
        self.store = store
        self.position = after
        self.poll = poll
        self.batch = batch
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        changed = self.store.append_condition()
        if changed is not None:
            with changed:
                changed.notify_all()

    def __iter__(self) -> Iterator[RecordedEvent]:
        changed = self.store.append_condition()
        while not self._closed.is_set():
            events = self.store.read_all(self.position, self.batch)
            for event in events:
                if self._closed.is_set():
                    return
                self.position = event.position
                yield event
            if events:
                continue
            if changed is None:
                self._closed.wait(self.poll)
            else:
                with changed:
                    if self.store.head() <= self.position and not self._closed.is_set():
                        changed.wait(self.poll)


# --------------------------------------------------------------------- checks


def check_stream(stream: object) -> str:
    if not isinstance(stream, str) or not stream or len(stream) > MAX_STREAM_NAME:
        raise ValueError(f"a stream name is 1 to {MAX_STREAM_NAME} characters, got {stream!r:.80}")
    return stream


def check_expected(expected: object) -> int:
    if type(expected) is not int or expected < ANY:
        raise ValueError(f"expected_version is a version >= 0, NO_STREAM or ANY, got {expected!r:.80}")
    return expected


#: ``json.dumps(value, separators=(",", ":"), allow_nan=False, sort_keys=True)``,
#: made once (``dumps`` with options builds an encoder for every call)
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, sort_keys=True)


def encode_json(value: object, what: str) -> str:
    """``value`` as compact JSON; ValueError if it is not a JSON object of finite values."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a JSON object (a mapping), got {type(value).__name__}")
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None


def check_events(events: Sequence[NewEvent]) -> list[tuple[NewEvent, str, str]]:
    """Each event with its data and metadata encoded; ValueError on bad input."""
    if not isinstance(events, Sequence) or isinstance(events, str | bytes):
        raise ValueError("events must be a sequence of NewEvent")
    if not 1 <= len(events) <= MAX_BATCH:
        raise ValueError(f"an append takes 1 to {MAX_BATCH} events, got {len(events)}")
    out = []
    ids: set[str] = set()
    for i, event in enumerate(events):
        if not isinstance(event, NewEvent):
            raise ValueError(f"event {i} is a {type(event).__name__}, not a NewEvent")
        if not isinstance(event.type, str) or not event.type or len(event.type) > MAX_STREAM_NAME:
            raise ValueError(f"event {i}'s type must be 1 to {MAX_STREAM_NAME} characters, got {event.type!r:.80}")
        if not isinstance(event.id, str) or not event.id or len(event.id) > MAX_STREAM_NAME:
            raise ValueError(f"event {i}'s id must be 1 to {MAX_STREAM_NAME} characters, got {event.id!r:.80}")
        if event.id in ids:
            raise ValueError(f"event id {event.id!r} appears twice in one append")
        ids.add(event.id)
        out.append(
            (event, encode_json(event.data, f"event {i}'s data"), encode_json(event.metadata, f"event {i}'s metadata"))
        )
    return out


def retry_result(stream: str, events: Sequence[NewEvent], stored: Sequence[tuple[str, int, int, str]]) -> AppendResult:
    """The result of the append whose events ``stored`` (stream, version, position, id
    of each id found, in the append's order) shows committed before; DuplicateEventId
    if they are not exactly that append's events."""
    if len(stored) == len(events) and all(s == stream for s, _, _, _ in stored):
        versions = [v for _, v, _, _ in stored]
        if versions == list(range(versions[0], versions[0] + len(versions))):
            return AppendResult(versions[-1], stored[-1][2])
    where = ", ".join(f"{i} in {s!r} at version {v}" for s, v, _, i in stored[:3])
    raise DuplicateEventId(f"event id(s) already stored, not by a retry of this append: {where}")


# --------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    metadata TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    UNIQUE (stream, version)
);
"""


#: the most rows one INSERT statement takes (fewer where SQLite takes fewer values
#: per statement than 7 times as many: 999 values before 3.32)
_INSERT_CHUNK = 1000


@functools.lru_cache(maxsize=64)
def _insert_rows(count: int) -> str:
    """An INSERT of ``count`` rows (its text made once per count, sqlite3 keeps the
    compiled statement in its cache by text)."""
    values = ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * count)
    return f"INSERT INTO events (stream, version, id, type, data, metadata, recorded_at) VALUES {values}"


class SQLiteEventStore(EventStore):
    """The SQLite backend: one database file (WAL), safe across threads and
    processes.  Each thread uses a connection of its own."""

    def __init__(self, path: str | Path, *, fsync: bool = True, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self.fsync = fsync
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._appended = threading.Condition()
        self._writing = FairLock()
        self._closed = False
        with self._connection() as db:
            db.executescript(_SCHEMA)
            self._chunk = max(1, min(_INSERT_CHUNK, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 7))

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise EventStoreError(f"the event store {self.path} is closed")
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'OFF'}")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def append_condition(self) -> threading.Condition:
        return self._appended

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: int = ANY) -> AppendResult:
        check_stream(stream)
        check_expected(expected_version)
        rows = check_events(events)
        db = self._connection()
        # SQLite serializes writers anyway; this process's wait in a queue of its own,
        # first come first served, rather than in SQLite's busy handler, which sleeps
        # and retries (a long tail).
        with self._writing:
            result = self._append_locked(db, stream, events, expected_version, rows)
        with self._appended:
            self._appended.notify_all()
        return result

    def _append_locked(
        self,
        db: sqlite3.Connection,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int,
        rows: list[tuple[NewEvent, str, str]],
    ) -> AppendResult:
        db.execute("BEGIN IMMEDIATE")  # the write lock: appends are serialized, positions commit in order
        try:
            (version,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = ?", (stream,)
            ).fetchone()
            if expected_version != ANY and version != expected_version:
                # a retry of an append that committed expects a version the stream has
                # left: its answer is the first one's, not a conflict
                retried = self._stored(db, stream, events)
                db.execute("ROLLBACK")
                if retried is not None:
                    return retried
                raise WrongExpectedVersion(stream, expected_version, version)
            # The ids are not looked up first: the unique key on ids refuses an id
            # stored already, and only then is the append a retry or a reuse.
            now = time.time()
            position = 0
            try:
                for start in range(0, len(rows), self._chunk):
                    chunk = rows[start : start + self._chunk]
                    parameters: list[object] = []
                    for n, (event, data, metadata) in enumerate(chunk, start=version + start + 1):
                        parameters += (stream, n, event.id, event.type, data, metadata, now)
                    # one statement for many rows, inserted in the order of their
                    # values: the last row's position is the append's
                    position = int(db.execute(_insert_rows(len(chunk)), parameters).lastrowid or 0)
            except sqlite3.IntegrityError:
                retried = self._stored(db, stream, events)
                if retried is None:
                    raise
                db.execute("ROLLBACK")
                return retried
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return AppendResult(version + len(rows), position)

    def _stored(self, db: sqlite3.Connection, stream: str, events: Sequence[NewEvent]) -> AppendResult | None:
        """None if none of ``events``' ids is stored; else the result of the append
        that stored them, if this one is its retry (``retry_result``)."""
        ids = [e.id for e in events]
        found: dict[str, tuple[str, int, int, str]] = {}
        for start in range(0, len(ids), self._chunk):
            chunk = ids[start : start + self._chunk]
            rows = db.execute(
                f"SELECT stream, version, position, id FROM events WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update((r[3], r) for r in rows)
        if not found:
            return None
        return retry_result(stream, events, [found[i] for i in ids if i in found])

    def read_stream(self, stream: str, after_version: int = 0, upto_version: int | None = None) -> list[RecordedEvent]:
        check_stream(stream)
        upto = NO_LIMIT if upto_version is None else upto_version
        rows = self._connection().execute(
            "SELECT stream, version, position, id, type, data, metadata, recorded_at FROM events"
            " WHERE stream = ? AND version > ? AND version <= ? ORDER BY version",
            (stream, after_version, upto),
        )
        return [_recorded(r) for r in rows]

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        if type(after) is not int or after < 0 or type(limit) is not int or limit < 1:
            raise ValueError(f"read_all takes a position >= 0 and a limit >= 1, got {after!r}, {limit!r}")
        rows = self._connection().execute(
            "SELECT stream, version, position, id, type, data, metadata, recorded_at FROM events"
            " WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [_recorded(r) for r in rows]

    def stream_version(self, stream: str) -> int:
        check_stream(stream)
        (version,) = (
            self._connection()
            .execute("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = ?", (stream,))
            .fetchone()
        )
        return int(version)

    def head(self) -> int:
        (position,) = self._connection().execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
        return int(position)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        with self._appended:
            self._appended.notify_all()


def _recorded(row: Sequence[Any]) -> RecordedEvent:
    stream, version, position, event_id, kind, data, metadata, recorded_at = row
    return RecordedEvent(
        str(stream),
        int(version),
        int(position),
        str(event_id),
        str(kind),
        json.loads(data),
        json.loads(metadata),
        float(recorded_at),
    )
