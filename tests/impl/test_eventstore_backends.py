"""The event store's contract (``impl/eventstore/store.py``), run on both backends:
SQLite in a temporary file and PostgreSQL on a fresh database of a private server
(``benchmarks/postgres.py``, one per test session; the PostgreSQL cases skip with
the reason where it cannot run, and CI installs it).

Both backends: appends read back; expected versions (conflicts name the actual
version), ``NO_STREAM`` and ``ANY``; idempotent retries and reused ids; bad input
refused with nothing written; ``read_all``'s order and limits; a subscription's
catch-up then live phase; concurrent writers on a few streams with a reader
following ``read_all`` meanwhile, which must see every event once, in order; a
writer process killed with SIGKILL loses no append it reported.

PostgreSQL only: the gap race of spec/event_store.py's ``reader_skips_gap``, made to
happen (an append held open after taking its position while a later one commits):
the naive ``position > checkpoint`` query passes the held position and the store's
``read_all`` does not; and the case that defeats a filter on transaction ids alone
(an older xid taking a newer position).  Finally the server itself is killed with
SIGKILL and restarted: every append acknowledged before is there after.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from postgres import PostgresServer, missing  # a script folder, on the path above

from distcheck.impl.eventstore.store import (
    ANY,
    NO_STREAM,
    AppendResult,
    DuplicateEventId,
    EventStore,
    NewEvent,
    RecordedEvent,
    SQLiteEventStore,
    WrongExpectedVersion,
)
from tests.impl.waiting import WAIT, wait_for

WHY_NOT_POSTGRES = missing()

if WHY_NOT_POSTGRES is None:
    import psycopg

    from distcheck.impl.eventstore.postgres import PostgresEventStore


@attrs.define
class Backend:
    """A fresh, empty store's location; ``open()`` opens one more instance on it."""

    kind: str
    where: str
    opened: list[EventStore] = attrs.field(factory=list)

    def open(self) -> EventStore:
        store: EventStore
        if self.kind == "sqlite":
            store = SQLiteEventStore(self.where)
        else:
            store = PostgresEventStore(self.where)
        self.opened.append(store)
        return store


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        where = str(tmp_path / "events.db")
    else:
        where = request.getfixturevalue("postgres_dsn")
    backend = Backend(request.param, where)
    yield backend
    for store in backend.opened:
        store.close()


@pytest.fixture
def store(backend: Backend) -> EventStore:
    return backend.open()


def everything(store: EventStore) -> list[RecordedEvent]:
    """The whole global order, in batches (as a reader pages through it)."""
    out: list[RecordedEvent] = []
    while batch := store.read_all(out[-1].position if out else 0, 100):
        out += batch
    return out


# ----------------------------------------------------------------- the contract


def test_appended_events_read_back_by_stream_and_in_the_global_order(store: EventStore) -> None:
    opened = NewEvent("Opened", {"owner": "ada", "limits": [1, 2.5, None]}, {"schema": 2})
    deposited = NewEvent("Deposited", {"amount": 10})
    first = store.append("account-1", [opened, deposited], expected_version=NO_STREAM)
    other = store.append("account-2", [NewEvent("Opened", {"owner": "bob"})], expected_version=NO_STREAM)
    assert first.version == 2 and other.version == 1 and other.position > first.position

    stream = store.read_stream("account-1")
    assert [(e.version, e.id, e.type, e.data, e.metadata) for e in stream] == [
        (1, opened.id, "Opened", {"owner": "ada", "limits": [1, 2.5, None]}, {"schema": 2}),
        (2, deposited.id, "Deposited", {"amount": 10}, {}),
    ]
    assert stream[-1].position == first.position and stream[0].position < stream[1].position
    assert [e.version for e in store.read_stream("account-1", after_version=1)] == [2]
    assert [e.version for e in store.read_stream("account-1", upto_version=1)] == [1]
    assert store.read_stream("nobody") == []
    assert (store.stream_version("account-1"), store.stream_version("nobody")) == (2, 0)

    assert [(e.stream, e.version) for e in store.read_all()] == [("account-1", 1), ("account-1", 2), ("account-2", 1)]
    assert store.head() == other.position
    assert abs(stream[0].recorded_at - stream[1].recorded_at) < 1 and stream[0].recorded_at > 1.6e9


def test_an_append_expecting_a_version_the_stream_has_left_is_refused_with_the_actual_one(store: EventStore) -> None:
    store.append("s", [NewEvent("A", {})], expected_version=NO_STREAM)
    store.append("s", [NewEvent("B", {})], expected_version=1)
    for expected in (NO_STREAM, 1, 5):
        with pytest.raises(WrongExpectedVersion) as refused:
            store.append("s", [NewEvent("C", {})], expected_version=expected)
        assert (refused.value.stream, refused.value.expected, refused.value.actual) == ("s", expected, 2)
    assert store.stream_version("s") == 2 and len(store.read_all()) == 2


def test_no_stream_needs_a_new_stream_and_any_appends_wherever_the_stream_is(store: EventStore) -> None:
    assert store.append("log", [NewEvent("A", {})], expected_version=ANY).version == 1
    assert store.append("log", [NewEvent("B", {})], expected_version=ANY).version == 2
    with pytest.raises(WrongExpectedVersion):
        store.append("log", [NewEvent("C", {})], expected_version=NO_STREAM)
    assert store.append("fresh", [NewEvent("A", {})], expected_version=NO_STREAM).version == 1
    assert [e.type for e in store.read_stream("log")] == ["A", "B"]


def test_a_retried_append_returns_the_first_result_and_stores_nothing_twice(store: EventStore) -> None:
    events = [NewEvent("A", {"n": 1}, id="e-1"), NewEvent("B", {"n": 2}, id="e-2")]
    first = store.append("s", events, expected_version=NO_STREAM)
    store.append("s", [NewEvent("C", {})], expected_version=2)
    # the retry's expected version is stale by now: still the first append's answer
    assert store.append("s", events, expected_version=NO_STREAM) == first
    assert store.append("s", list(events), expected_version=ANY) == first
    assert [e.id for e in store.read_stream("s")][:2] == ["e-1", "e-2"] and len(store.read_all()) == 3


@pytest.mark.parametrize(
    "stream, events",
    [
        ("elsewhere", [NewEvent("A", {}, id="e-1")]),  # the id, in another stream
        ("s", [NewEvent("A", {}, id="e-1"), NewEvent("B", {}, id="new")]),  # the first append's id and a new one
    ],
)
def test_an_id_stored_by_another_append_is_refused(store: EventStore, stream: str, events: list[NewEvent]) -> None:
    store.append("s", [NewEvent("A", {}, id="e-1"), NewEvent("B", {}, id="e-2")])
    with pytest.raises(DuplicateEventId):
        store.append(stream, events)
    assert len(store.read_all()) == 2 and store.stream_version("elsewhere") == 0


class NotAnEvent:
    id = "x"


BAD_APPENDS: list[tuple[str, Any, Any]] = [
    ("", [NewEvent("A", {})], ANY),
    ("s" * 201, [NewEvent("A", {})], ANY),
    ("s", [NewEvent("A", {"when": object()})], ANY),
    ("s", [NewEvent("A", {"x": float("nan")})], ANY),
    ("s", [NewEvent("A", {"x": float("inf")})], ANY),
    ("s", [NewEvent("A", {}), NewEvent("B", {"x": {1, 2}})], ANY),  # the second of two is bad: neither is written
    ("s", [NewEvent("A", {}, metadata=[])], ANY),  # type: ignore[arg-type]
    ("s", [NewEvent("A", {})], -5),
    ("s", [NewEvent("A", {})], 1.0),
    ("s", [NewEvent("A", {})], "1"),
    ("s", [NotAnEvent()], ANY),
    ("s", [], ANY),
    ("s", "AB", ANY),
    ("s", [NewEvent("A", {}, id="same"), NewEvent("B", {}, id="same")], ANY),
]


@pytest.mark.parametrize("stream, events, expected", BAD_APPENDS)
def test_bad_input_is_refused_before_anything_is_written(
    store: EventStore, stream: Any, events: Any, expected: Any
) -> None:
    with pytest.raises(ValueError):
        store.append(stream, events, expected_version=expected)
    assert store.read_all() == [] and store.head() == 0 and store.stream_version("s") == 0


def test_read_all_pages_through_the_global_order(store: EventStore) -> None:
    for n in range(10):
        store.append(f"s{n % 3}", [NewEvent("E", {"n": n})])
    whole = store.read_all()
    assert [e.data["n"] for e in whole] == list(range(10))
    assert [e.position for e in whole] == sorted({e.position for e in whole})
    assert store.read_all(0, 3) == whole[:3]
    assert store.read_all(whole[2].position, 3) == whole[3:6]
    assert store.read_all(whole[8].position, 5) == whole[9:]
    assert store.read_all(whole[-1].position) == [] and store.head() == whole[-1].position
    bad: list[tuple[Any, Any]] = [(-1, 10), (0, 0), (0, -3), (1.5, 10), (0, None)]
    for after, limit in bad:
        with pytest.raises(ValueError):
            store.read_all(after, limit)


def test_a_subscription_catches_up_then_follows_new_events(store: EventStore) -> None:
    for n in range(3):
        store.append("s", [NewEvent("E", {"n": n})])
    subscription = store.subscribe(after=0, poll=0.01)
    seen: list[int] = []
    follower = threading.Thread(target=lambda: seen.extend(e.data["n"] for e in subscription), daemon=True)
    follower.start()
    try:
        wait_for(lambda: len(seen) == 3, "the catch-up")
        store.append("t", [NewEvent("E", {"n": 3}), NewEvent("E", {"n": 4})])
        store.append("s", [NewEvent("E", {"n": 5})])
        wait_for(lambda: len(seen) == 6, "the live events")
    finally:
        subscription.close()
        follower.join(WAIT)
    assert seen == list(range(6)) and not follower.is_alive()
    assert subscription.position == store.head()


WRITERS, APPENDS_EACH, STREAMS = 6, 15, 3


def test_concurrent_writers_lose_nothing_and_a_reader_following_them_misses_nothing(backend: Backend) -> None:
    """Writers on their own store instances (connections), each appending with the
    version it read and reading again after a conflict; a reader pages through
    ``read_all`` meanwhile.  Afterwards: versions gapless per stream, positions
    increasing, every event once, and the reader saw exactly that order."""
    reader_store = backend.open()
    total = WRITERS * APPENDS_EACH
    errors: list[BaseException] = []
    seen: list[RecordedEvent] = []

    def write(w: int, store: EventStore) -> None:
        try:
            for n in range(APPENDS_EACH):
                stream = f"s{(w + n) % STREAMS}"
                while True:
                    version = store.stream_version(stream)
                    try:
                        store.append(stream, [NewEvent("E", {"w": w, "n": n})], expected_version=version)
                        break
                    except WrongExpectedVersion:
                        continue
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            while len(seen) < total and not errors:
                batch = reader_store.read_all(seen[-1].position if seen else 0, 7)
                seen.extend(batch)
                if not batch:
                    time.sleep(0.002)  # leave the cores to the writers
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w, backend.open())) for w in range(WRITERS)]
    threads.append(threading.Thread(target=read))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == [] and not any(t.is_alive() for t in threads)

    final = everything(backend.open())
    assert len(final) == total
    assert len({e.id for e in final}) == total
    assert all(a.position < b.position for a, b in itertools.pairwise(final))
    for s in range(STREAMS):
        versions = [e.version for e in final if e.stream == f"s{s}"]
        assert versions == list(range(1, len(versions) + 1))
    assert sorted((e.data["w"], e.data["n"]) for e in final) == [
        (w, n) for w in range(WRITERS) for n in range(APPENDS_EACH)
    ]
    assert [e.id for e in seen] == [e.id for e in final]


# -------------------------------------------------- a writer killed with SIGKILL

WRITER = """
import json, sys
from distcheck.impl.eventstore.store import NewEvent, SQLiteEventStore
kind, where = sys.argv[1], sys.argv[2]
if kind == "sqlite":
    store = SQLiteEventStore(where)
else:
    from distcheck.impl.eventstore.postgres import PostgresEventStore
    store = PostgresEventStore(where)
for n in range(1, 100_000):
    stream = "s" + str(n % 3)
    result = store.append(stream, [NewEvent("Tick", {"n": n}), NewEvent("Tock", {"n": n})])
    print(json.dumps([stream, n, result.version, result.position]), flush=True)
"""


def test_a_writer_killed_mid_run_loses_no_append_it_reported(backend: Backend) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, backend.kind, backend.where], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    reported: list[str] = []
    try:
        while len(reported) < 40:
            line = writer.stdout.readline()
            assert line, f"the writer stopped early (status {writer.poll()})"
            reported.append(line)
    finally:
        writer.send_signal(signal.SIGKILL)
        # Read the rest through the same file object: readline may already hold lines
        # in its buffer, which communicate(timeout=...) would skip (it reads the pipe
        # itself), so reports would go missing and the count below fail.
        rest = writer.stdout.read()
        writer.wait(timeout=WAIT)
    assert writer.returncode == -signal.SIGKILL
    # what was flushed before the kill; a torn last line was not a report
    reported += [line for line in rest.splitlines(keepends=True) if line.endswith("\n")]
    acknowledged = [json.loads(line) for line in reported]

    stored = {(e.stream, e.version): e for e in everything(backend.open())}
    for stream, n, version, position in acknowledged:
        tick, tock = stored[stream, version - 1], stored[stream, version]
        assert (tick.type, tick.data, tock.type, tock.data) == ("Tick", {"n": n}, "Tock", {"n": n})
        assert tick.position < tock.position == position
    # at most the append in flight at the kill went unreported
    assert len(acknowledged) * 2 <= len(stored) <= len(acknowledged) * 2 + 2


# ---------------------------------------------------------- PostgreSQL: the gap


@pytest.fixture
def postgres(postgres_dsn: str) -> Iterator[Callable[[], PostgresEventStore]]:
    """Opens PostgresEventStore instances on a fresh database."""
    opened: list[PostgresEventStore] = []

    def open_store() -> PostgresEventStore:
        store = PostgresEventStore(postgres_dsn)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


def naive_read(dsn: str, after: int) -> list[int]:
    """The query a store without a defence against the gap would run."""
    with psycopg.connect(dsn, autocommit=True) as db:
        rows = db.execute("SELECT position FROM events WHERE position > %s ORDER BY position", (after,))
        return [int(p) for (p,) in rows]


@pytest.mark.skipif(WHY_NOT_POSTGRES is not None, reason=str(WHY_NOT_POSTGRES))
@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_an_append_in_flight_holds_readers_before_its_position(
    postgres: Callable[[], PostgresEventStore], postgres_dsn: str, outcome: str
) -> None:
    class HeldAppend(PostgresEventStore):
        """A store whose append stops after its rows are inserted (positions taken),
        before its commit, until released; then commits, or aborts if told to."""

        def __init__(self, dsn: str) -> None:
            super().__init__(dsn)
            self.positions: list[int] = []
            self.holding = threading.Event()
            self.release = threading.Event()

        def _inserted(self, db: Any, positions: list[int]) -> None:
            self.positions = positions
            self.holding.set()
            assert self.release.wait(WAIT)
            if outcome == "rollback":
                raise RuntimeError("the held append aborts")

    reader = postgres()
    early = reader.append("early", [NewEvent("E", {})])
    assert [e.position for e in reader.read_all()] == [early.position]

    held = HeldAppend(postgres_dsn)
    slow_result: list[AppendResult | BaseException] = []

    def slow() -> None:
        try:
            slow_result.append(held.append("slow", [NewEvent("Slow", {})]))
        except BaseException as exc:
            slow_result.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        assert held.holding.wait(WAIT)
        fast = postgres().append("fast", [NewEvent("Fast", {})])
        (slow_position,) = held.positions
        assert early.position < slow_position < fast.position

        # The race exists: the naive query returns the later event while the earlier
        # position is in flight, and a reader that moved its checkpoint there would
        # never see the earlier one.
        assert naive_read(postgres_dsn, early.position) == [fast.position]
        # The store holds its readers before the position in flight, fresh or not.
        assert reader.read_all(early.position) == []
        assert [e.position for e in reader.read_all()] == [early.position]
        assert reader.head() == early.position
        assert [e.position for e in postgres().read_all()] in ([], [early.position])
    finally:
        held.release.set()
        thread.join(WAIT)
        held.close()

    if outcome == "commit":
        assert slow_result == [AppendResult(1, slow_position)]
        assert [e.stream for e in reader.read_all(early.position)] == ["slow", "fast"]
        assert naive_read(postgres_dsn, fast.position) == []  # where the naive reader stands: slow is lost to it
    else:
        assert isinstance(slow_result[0], RuntimeError)
        assert [e.stream for e in reader.read_all(early.position)] == ["fast"]  # the hole is passed
    assert reader.head() == fast.position


def raw_append(db: Any, stream: str) -> tuple[int, int]:
    """An append's first steps as the store takes them, on a raw connection in a
    transaction: the sequence's value (returned), then the xid (returned as a number)."""
    (floor,) = db.execute("SELECT COALESCE(pg_sequence_last_value('event_positions'), 0)").fetchone()
    (xid,) = db.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    return floor, xid


def raw_insert(db: Any, stream: str, floor: int) -> int:
    """The append's insert, as the store does it: its position is taken now."""
    (position,) = db.execute(
        "INSERT INTO events (stream, version, id, type, data, metadata, recorded_at, txid, floor_position)"
        " VALUES (%s, 1, %s, 'Raw', '{}', '{}', 0, pg_current_xact_id(), %s) RETURNING position",
        (stream, f"raw-{stream}", floor),
    ).fetchone()
    return int(position)


@pytest.mark.skipif(WHY_NOT_POSTGRES is not None, reason=str(WHY_NOT_POSTGRES))
def test_an_older_transaction_with_a_newer_position_does_not_fool_the_reader(
    postgres: Callable[[], PostgresEventStore], postgres_dsn: str
) -> None:
    """T1 takes its xid, T2 takes a later xid and then a position, T1 takes a later
    position and commits while T2 is open.  A filter on xids alone (rows of
    transactions below the snapshot's xmin) returns T1's event and passes T2's
    position; the store does not."""
    store = postgres()
    with psycopg.connect(postgres_dsn) as t1, psycopg.connect(postgres_dsn) as t2:
        floor1, xid1 = raw_append(t1, "t1")
        floor2, xid2 = raw_append(t2, "t2")
        position2 = raw_insert(t2, "t2", floor2)
        position1 = raw_insert(t1, "t1", floor1)
        t1.commit()
        assert xid1 < xid2 and position2 < position1

        with psycopg.connect(postgres_dsn, autocommit=True) as db:
            by_xid = db.execute(
                "SELECT position FROM events WHERE txid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY position"
            ).fetchall()
        assert by_xid == [(position1,)]  # would pass position2, still in flight
        assert store.read_all() == [] and store.head() == 0

        t2.commit()
    assert [e.position for e in store.read_all()] == [position2, position1]


# ------------------------------------------------- PostgreSQL: the server killed


@pytest.mark.skipif(WHY_NOT_POSTGRES is not None, reason=str(WHY_NOT_POSTGRES))
def test_every_append_acknowledged_before_the_server_is_killed_is_there_after_its_restart(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    acknowledged: list[tuple[str, AppendResult]] = []
    lock = threading.Lock()
    ends: list[BaseException] = []

    def write(w: int) -> None:
        store = PostgresEventStore(postgres_dsn)
        try:
            for n in itertools.count():
                event = NewEvent("E", {"w": w, "n": n})
                result = store.append(f"s{w}", [event], expected_version=n)
                with lock:
                    acknowledged.append((event.id, result))
        except BaseException as exc:  # the server is gone (checked below)
            ends.append(exc)
        finally:
            store.close()

    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for writer in writers:
        writer.start()
    wait_for(lambda: len(acknowledged) >= 60, "acknowledged appends")
    postgres_server.kill()
    for writer in writers:
        writer.join(WAIT)
    assert not any(w.is_alive() for w in writers)
    assert len(ends) == len(writers) and all(isinstance(e, psycopg.OperationalError) for e in ends), ends
    with lock:
        before_kill = list(acknowledged)

    postgres_server.start()
    with PostgresEventStore(postgres_dsn) as store:
        stored = {e.id: e for e in everything(store)}
        for event_id, result in before_kill:
            assert (stored[event_id].version, stored[event_id].position) == (result.version, result.position)
        assert len(stored) <= len(before_kill) + len(writers)  # at most one unacknowledged commit per writer
        new = store.append("after", [NewEvent("E", {})])
        assert new.position > max(e.position for e in stored.values())
