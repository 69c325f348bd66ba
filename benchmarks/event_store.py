"""Event stores side by side in one run: distcheck's ``impl/eventstore`` and the
``eventsourcing`` library from PyPI (9.5), on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/event_store.py [--events 10000] [--single 1000] [--repeats 5]
        [--backends sqlite,postgres] [--json]

What is measured, per backend, ours beside theirs (``eventsourcing``):

1. **append, 1 event per append**: ``--single`` commands on one aggregate, each
   saved at once: one append of one event, with an expected version, in its own
   durable transaction.  Ours: ``Counter.add`` (``Aggregate.record``), then
   ``Repository.save`` (``store.append(..., expected_version=v)``).  Theirs: an
   ``@event`` command method on an ``eventsourcing.domain.Aggregate``, then
   ``Application.save`` (the recorder's ``insert_events``; the primary key on
   (originator_id, originator_version) is its expected-version check).  The first
   command creates the aggregate on both sides.  Events/s and the p99 latency of
   one command plus its save.
2. **append, 100 events per append**: the same aggregate, 100 commands then one
   save, up to ``--events`` events.  Events/s and the p99 of one save of 100.
3. **replay**: a stream of ``--events`` events read back, decoded.  Ours:
   ``store.read_stream(id)`` (``RecordedEvent`` values, data parsed from JSON).
   Theirs: ``app.events.get(id)`` (the mapper turns each stored event back into its
   domain event object, data parsed from JSON).  Events/s.
4. **projection catch-up**: ``--events`` events in streams of 100, projected from
   position 0 into a read model that counts events per stream (one ``INSERT ... ON
   CONFLICT DO UPDATE`` per event), in a SQLite file of its own (WAL, synchronous
   FULL on both), 500 events and the checkpoint per transaction.  Ours:
   ``Projector.catch_up`` with a trivial ``Projection``.  Theirs: the same loop
   written here from its pieces, since its ``ProjectionRunner`` needs a recorder
   that can subscribe and its SQLite one cannot: ``select_notifications``
   in batches of 500 from the application's recorder, each notification turned
   into its domain event by the application's mapper (as its ``ProjectionRunner``
   does), then one transaction of a ``SQLiteTrackingRecorder`` subclass (its
   materialised-view pattern) that runs the same statement per event and records
   the tracking position (``_insert_tracking``) before committing.  The same
   work: read the global order in batches, decode, one read-model transaction per
   batch with the checkpoint inside it.  Events/s until the read model has them
   all.  On PostgreSQL the events are read from it and the read model is the same
   SQLite file on both sides.
5. **load a ``--events``-event aggregate**, without snapshots (replay every event)
   and with a snapshot every 100 versions (ours: ``Repository(..., snapshot_every=100)``;
   theirs: ``snapshotting_intervals = {Counter: 100}``), written 100 events per
   save; the latest snapshot is then at the last version on both sides, so a load
   reads one snapshot and an empty tail.  Milliseconds per load, no cache on
   either side.

The storage settings, the same on both sides:

- **SQLite**: a file in WAL mode with ``synchronous=FULL`` (each commit is fsync'd
  before it returns).  Ours: ``SQLiteEventStore(path, fsync=True)`` sets both.
  Theirs: ``PERSISTENCE_MODULE=eventsourcing.sqlite``, ``SQLITE_DBNAME=path``; it
  turns WAL on itself and does not expose ``synchronous``, so it runs with
  SQLite's compiled default, which this script reads through its own connection
  and prints (FULL on this machine's SQLite 3.40); a build whose default is lower
  is reported on the table's header, not hidden.
- **PostgreSQL**: one private server for the run (``benchmarks/postgres.py``:
  ``fsync=on``, ``synchronous_commit=on``) and a fresh database per measurement,
  over its unix socket.  Ours: ``PostgresEventStore(dsn)`` (which also sets
  ``synchronous_commit=on`` per connection).  Theirs:
  ``PERSISTENCE_MODULE=eventsourcing.postgres`` with ``POSTGRES_HOST`` the socket
  directory (it leaves ``synchronous_commit`` at the server's ``on``).  Skipped,
  with the reason, where the server, psycopg, our backend or theirs (which needs
  ``psycopg_pool``: ``eventsourcing[postgres]``) is missing.

Each side's measurement runs in a fresh temporary directory (and a fresh
PostgreSQL database), removed afterwards; writes are measured ``--repeats`` times
on fresh data, reads ``--repeats`` times on one populated store, alternating which
side goes first; the table shows medians (p99s over every sample).  The column
``ours/this`` reads "how many times better ours is": ours ÷ theirs for rates,
theirs ÷ ours for latencies and load times; above 1, ours is better.  The machine
has 2 cores shared by everything: compare within one run.  Benchmarks are not run
by CI.

What still differs, by design of each library: ours looks up the append's event
ids first (idempotent retries: one indexed query per append) and, on PostgreSQL,
serializes appends per stream (an advisory lock) and pays for a gap-free global
order at read time; theirs locks the whole events table per append on PostgreSQL
(which one writer, as here, does not feel) and its events carry a timestamp that
is decoded into a ``datetime`` on every read.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.metadata
import itertools
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from postgres import PostgresServer  # noqa: E402  (this folder, put on the path above)
from postgres import missing as postgres_missing  # noqa: E402

from distcheck.impl.eventstore.aggregate import Aggregate, Repository  # noqa: E402
from distcheck.impl.eventstore.projection import Projection, Projector  # noqa: E402
from distcheck.impl.eventstore.store import EventStore, RecordedEvent, SQLiteEventStore  # noqa: E402

try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate as TheirAggregate
    from eventsourcing.domain import DomainEventProtocol, event
    from eventsourcing.persistence import Tracking
    from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder

    WHY_NOT_EVENTSOURCING: str | None = None
except ImportError as exc:
    WHY_NOT_EVENTSOURCING = f"the eventsourcing library is not installed ({exc}; pip install -e '.[bench]')"

BACKENDS = ("sqlite", "postgres")
#: events per save in the batch rows, and the snapshot interval on both sides
BATCH = 100
#: events per projector transaction, on both sides (our Projector's default)
PROJECTION_BATCH = 500

COUNTS_TABLE = "CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)"
COUNT_ONE = "INSERT INTO counts VALUES (?, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1"


# --------------------------------------------------------------------- ours


class OurCounter(Aggregate):
    """A counter: ``open`` creates it, ``add`` adds to its total."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.total = 0

    def open(self) -> None:
        self.record("Opened")

    def add(self, amount: int) -> None:
        self.record("Added", amount=amount)

    def apply(self, type: str, data: Mapping[str, Any]) -> None:
        if type == "Added":
            self.total += int(data["amount"])


class OurCounts(Projection):
    """The trivial read model: how many events each stream has."""

    name = "counts"

    def setup(self, db: Any) -> None:
        db.execute(COUNTS_TABLE)

    def handle(self, db: Any, event: RecordedEvent) -> None:
        db.execute(COUNT_ONE, (event.stream,))


# --------------------------------------------------------------------- theirs

if WHY_NOT_EVENTSOURCING is None:

    class TheirCounter(TheirAggregate):
        """The same counter: created by the constructor, ``add`` adds to its total."""

        def __init__(self) -> None:
            self.total = 0

        @event("Added")
        def add(self, amount: int) -> None:
            self.total += amount

    class TheirApp(Application[UUID]):
        """No snapshots (and no aggregate cache: ``AGGREGATE_CACHE_MAXSIZE`` unset)."""

    class TheirSnapshottingApp(Application[UUID]):
        """A snapshot every ``BATCH`` versions of a counter."""

        snapshotting_intervals: ClassVar[dict[type[Any], int]] = {TheirCounter: BATCH}

    class TheirCounts(SQLiteTrackingRecorder):
        """The same read model as ``OurCounts``, with its tracking table."""

        def construct_create_table_statements(self) -> list[str]:
            return [*super().construct_create_table_statements(), COUNTS_TABLE]

        def project(self, batch: Sequence[tuple[DomainEventProtocol[UUID], Tracking]]) -> None:
            """Apply ``batch`` and record the last one's position, in one transaction."""
            with self.datastore.transaction(commit=True) as cursor:
                for domain_event, _ in batch:
                    cursor.execute(COUNT_ONE, (str(domain_event.originator_id),))
                self._insert_tracking(cursor, batch[-1][1])

        def total(self) -> int:
            with self.datastore.transaction(commit=False) as cursor:
                cursor.execute("SELECT COALESCE(SUM(n), 0) FROM counts")
                return int(cursor.fetchone()[0])

        def synchronous(self) -> int:
            """SQLite's ``synchronous`` on this library's connections (2: FULL)."""
            with self.datastore.transaction(commit=False) as cursor:
                cursor.execute("PRAGMA synchronous")
                return int(cursor.fetchone()[0])


# --------------------------------------------------------------------- where the data goes


class Place:
    """Where one side's measurement keeps its data: a fresh temporary directory
    (SQLite files, read models) and, on PostgreSQL, a fresh database."""

    def __init__(self, directory: Path, open_ours: Callable[[], EventStore], their_env: dict[str, str]) -> None:
        self.directory = directory
        self._open_ours = open_ours
        self.their_env = their_env

    @contextmanager
    def ours(self) -> Iterator[EventStore]:
        store = self._open_ours()
        try:
            yield store
        finally:
            store.close()

    @contextmanager
    def theirs(self, snapshots: bool = False) -> Iterator[Application[UUID]]:
        app: Application[UUID] = (TheirSnapshottingApp if snapshots else TheirApp)(env=self.their_env)
        try:
            yield app
        finally:
            app.close()


class SQLiteBackend:
    name = "sqlite"

    def setting(self) -> str:
        with tempfile.TemporaryDirectory(prefix="distcheck-es-bench-") as directory:
            view = TheirCounts(SQLiteDatastore(str(Path(directory) / "probe.db")))
            try:
                level = view.synchronous()
            finally:
                view.datastore.close()
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        theirs = names.get(level, str(level))
        warning = "" if level == 2 else "  (NOT the same: theirs commits without waiting for the disk)"
        return f"WAL, synchronous: ours FULL, theirs {theirs} (SQLite's default here){warning}"

    @contextmanager
    def place(self) -> Iterator[Place]:
        with tempfile.TemporaryDirectory(prefix="distcheck-es-bench-") as name:
            directory = Path(name)
            path = directory / "events.db"
            env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
            yield Place(directory, lambda: SQLiteEventStore(path, fsync=True), env)

    def close(self) -> None:
        return None


class PostgresBackend:
    name = "postgres"

    def __init__(self) -> None:
        self.server = PostgresServer()
        self._names = itertools.count(1)
        try:
            self.server.start()
        except BaseException:
            self.server.close()
            raise

    def setting(self) -> str:
        return "a private server, fsync=on, synchronous_commit=on; a fresh database per measurement"

    @contextmanager
    def place(self) -> Iterator[Place]:
        from distcheck.impl.eventstore.postgres import PostgresEventStore

        database = f"bench_{next(self._names)}"
        dsn = self.server.create_database(database)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": database,
            "POSTGRES_HOST": str(self.server.directory),
            "POSTGRES_PORT": str(self.server.port),
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": "",
        }
        try:
            with tempfile.TemporaryDirectory(prefix="distcheck-es-bench-") as name:
                yield Place(Path(name), lambda: PostgresEventStore(dsn), env)
        finally:
            import psycopg

            with psycopg.connect(self.server.dsn("postgres"), autocommit=True) as db:
                db.execute(f"DROP DATABASE {database} WITH (FORCE)")

    def close(self) -> None:
        self.server.close()


Backend = SQLiteBackend | PostgresBackend


def why_not_postgres() -> str | None:
    why = postgres_missing()
    if why is not None:
        return why
    for module, hint in (
        ("distcheck.impl.eventstore.postgres", "our PostgreSQL backend"),
        ("eventsourcing.postgres", "eventsourcing's PostgreSQL module (pip install 'eventsourcing[postgres]')"),
    ):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"{hint} cannot be imported: {exc}"
    return None


# --------------------------------------------------------------------- the measurements

#: one side's write measurement: the total time and each append's
Appends = tuple[float, list[float]]
#: one side's prepared read measurement: each call makes one and returns its seconds
Timed = Callable[[], float]


def check(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(f"the benchmark went wrong: {what}")


def p99(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def timed(count: int, step: Callable[[int], None]) -> Appends:
    """Run ``step(0)``, ..., ``step(count - 1)``: the total time and each step's."""
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        before = time.perf_counter()
        step(i)
        latencies.append(time.perf_counter() - before)
    return time.perf_counter() - started, latencies


def our_appends(place: Place, events: int, per_save: int) -> Appends:
    """``events`` events on one counter, ``per_save`` commands per save (the first
    creates it); each save is one append with the expected version."""
    with place.ours() as store:
        repository = Repository(store, OurCounter)
        counter = OurCounter("counter-1")

        def step(i: int) -> None:
            if i == 0:
                counter.open()
            for _ in range(per_save - 1 if i == 0 else per_save):
                counter.add(1)
            repository.save(counter)

        result = timed(events // per_save, step)
        check(store.stream_version(counter.id) == events, "ours did not store every event")
    return result


def their_appends(place: Place, events: int, per_save: int) -> Appends:
    with place.theirs() as app:
        made: list[TheirCounter] = []

        def step(i: int) -> None:
            if i == 0:
                made.append(TheirCounter())
            counter = made[0]
            for _ in range(per_save - 1 if i == 0 else per_save):
                counter.add(1)
            app.save(counter)

        result = timed(events // per_save, step)
        check(sum(1 for _ in app.events.get(made[0].id)) == events, "theirs did not store every event")
    return result


def concurrently(writers: int, each: int, step: Callable[[int, int], None]) -> Appends:
    """``writers`` threads, thread w running ``step(w, 0)``, ..., ``step(w, each - 1)``:
    the total time and every step's."""
    latencies: list[float] = []
    lock = threading.Lock()

    def run(w: int) -> None:
        mine = []
        for i in range(each):
            before = time.perf_counter()
            step(w, i)
            mine.append(time.perf_counter() - before)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies


def our_concurrent_appends(place: Place, events: int, writers: int) -> Appends:
    """``writers`` threads, each saving one event at a time to a counter of its own."""
    with place.ours() as store:
        repository = Repository(store, OurCounter)
        counters = [OurCounter(f"counter-{w}") for w in range(writers)]

        def step(w: int, i: int) -> None:
            counter = counters[w]
            counter.open() if i == 0 else counter.add(1)
            repository.save(counter)

        result = concurrently(writers, events // writers, step)
        stored = sum(store.stream_version(c.id) for c in counters)
        check(stored == writers * (events // writers), "ours did not store every event")
    return result


def their_concurrent_appends(place: Place, events: int, writers: int) -> Appends:
    with place.theirs() as app:
        counters = [TheirCounter() for _ in range(writers)]

        def step(w: int, i: int) -> None:
            if i:
                counters[w].add(1)
            app.save(counters[w])

        result = concurrently(writers, events // writers, step)
        stored = sum(sum(1 for _ in app.events.get(c.id)) for c in counters)
        check(stored == writers * (events // writers), "theirs did not store every event")
    return result


def fill_ours(store: EventStore, streams: int, events: int, snapshot_every: int | None = None) -> list[str]:
    """``streams`` counters of ``events`` events each, saved ``BATCH`` at a time."""
    repository = Repository(store, OurCounter, snapshot_every=snapshot_every)
    ids = []
    for s in range(streams):
        counter = OurCounter(f"counter-{s + 1}")
        counter.open()
        for version in range(2, events + 1):
            counter.add(1)
            if version % BATCH == 0:
                repository.save(counter)
        repository.save(counter)
        ids.append(counter.id)
    return ids


def fill_theirs(app: Application[UUID], streams: int, events: int) -> list[UUID]:
    ids = []
    for _ in range(streams):
        counter = TheirCounter()
        for version in range(2, events + 1):
            counter.add(1)
            if version % BATCH == 0:
                app.save(counter)
        if counter.pending_events:
            app.save(counter)
        ids.append(counter.id)
    return ids


def seconds(action: Callable[[], object]) -> tuple[float, object]:
    before = time.perf_counter()
    result = action()
    return time.perf_counter() - before, result


@contextmanager
def our_replay(place: Place, events: int) -> Iterator[Timed]:
    with place.ours() as store:
        (stream,) = fill_ours(store, 1, events)

        def run() -> float:
            elapsed, read = seconds(lambda: store.read_stream(stream))
            check(isinstance(read, list) and len(read) == events, "ours read back the wrong number of events")
            return elapsed

        yield run


@contextmanager
def their_replay(place: Place, events: int) -> Iterator[Timed]:
    with place.theirs() as app:
        (stream,) = fill_theirs(app, 1, events)

        def run() -> float:
            elapsed, read = seconds(lambda: list(app.events.get(stream)))
            check(isinstance(read, list) and len(read) == events, "theirs read back the wrong number of events")
            return elapsed

        yield run


@contextmanager
def our_projection(place: Place, events: int) -> Iterator[Timed]:
    with place.ours() as store:
        fill_ours(store, events // BATCH, BATCH)
        models = itertools.count(1)

        def run() -> float:
            projector = Projector(store, OurCounts(), place.directory / f"ours-read-{next(models)}.db")
            try:
                applied = 0
                started = time.perf_counter()
                # On PostgreSQL read_all may stop short of the head for a moment while
                # another transaction holds an xid (autovacuum): late, never wrong.
                while applied < events and time.perf_counter() - started < 60:
                    applied += projector.catch_up()
                elapsed = time.perf_counter() - started
                total = projector.query(
                    lambda db: int(db.execute("SELECT COALESCE(SUM(n), 0) FROM counts").fetchone()[0])
                )
                check(applied == events and total == events, f"ours projected {applied} events, counted {total}")
            finally:
                projector.close()
            return elapsed

        yield run


@contextmanager
def their_projection(place: Place, events: int) -> Iterator[Timed]:
    with place.theirs() as app:
        fill_theirs(app, events // BATCH, BATCH)
        models = itertools.count(1)

        def run() -> float:
            view = TheirCounts(SQLiteDatastore(str(place.directory / f"theirs-read-{next(models)}.db")))
            view.create_table()
            try:
                started = time.perf_counter()
                last = view.max_tracking_id(app.name) or 0
                while True:
                    notifications = app.recorder.select_notifications(
                        start=last, limit=PROJECTION_BATCH, inclusive_of_start=False
                    )
                    if not notifications:
                        break
                    view.project([(app.mapper.to_domain_event(n), Tracking(app.name, n.id)) for n in notifications])
                    last = notifications[-1].id
                elapsed = time.perf_counter() - started
                total = view.total()
                check(total == events and view.max_tracking_id(app.name) == last, f"theirs counted {total} events")
            finally:
                view.datastore.close()
            return elapsed

        yield run


@contextmanager
def our_load(place: Place, events: int, snapshots: bool) -> Iterator[Timed]:
    every = BATCH if snapshots else None
    with place.ours() as store:
        (stream,) = fill_ours(store, 1, events, snapshot_every=every)
        check(store.stream_version(stream + ".snapshots") == (events // BATCH if snapshots else 0), "our snapshots")
        repository = Repository(store, OurCounter, snapshot_every=every)

        def run() -> float:
            elapsed, counter = seconds(lambda: repository.load(stream))
            check(
                isinstance(counter, OurCounter) and counter.version == events and counter.total == events - 1,
                "ours loaded the wrong state",
            )
            return elapsed

        yield run


@contextmanager
def their_load(place: Place, events: int, snapshots: bool) -> Iterator[Timed]:
    with place.theirs(snapshots=snapshots) as app:
        (stream,) = fill_theirs(app, 1, events)
        taken = 0 if app.snapshots is None else sum(1 for _ in app.snapshots.get(stream))
        check(taken == (events // BATCH if snapshots else 0), "their snapshots")

        def load() -> TheirCounter:
            counter: TheirCounter = app.repository.get(stream)
            return counter

        def run() -> float:
            elapsed, counter = seconds(load)
            check(
                isinstance(counter, TheirCounter) and counter.version == events and counter.total == events - 1,
                "theirs loaded the wrong state",
            )
            return elapsed

        yield run


# --------------------------------------------------------------------- the table


class Row:
    """One line of the table: a measurement on both sides."""

    def __init__(self, what: str, unit: str, ours: float, theirs: float) -> None:
        self.what = what
        self.unit = unit
        self.ours = ours
        self.theirs = theirs

    @property
    def higher_is_better(self) -> bool:
        return self.unit == "events/s"

    @property
    def ratio(self) -> float | None:
        """How many times better ours is (above 1: ours is better)."""
        numerator, denominator = (self.ours, self.theirs) if self.higher_is_better else (self.theirs, self.ours)
        return numerator / denominator if denominator else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "measurement": self.what,
            "unit": self.unit,
            "ours": self.ours,
            "eventsourcing": self.theirs,
            "ours_over_this": self.ratio,
            "higher_is_better": self.higher_is_better,
        }

    def line(self, backend: str) -> str:
        digits = 0 if self.higher_is_better else 2
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}"
        return (
            f"{backend:<9} {self.what:<46} {self.unit:>8} {self.ours:>10.{digits}f} {self.theirs:>13.{digits}f}"
            f" {ratio:>9}"
        )


HEADER = f"{'backend':<9} {'measurement':<46} {'unit':>8} {'ours':>10} {'eventsourcing':>13} {'ours/this':>9}"


def write_pair(
    backend: Backend, repeats: int, ours: Callable[[Place], Appends], theirs: Callable[[Place], Appends]
) -> tuple[list[Appends], list[Appends]]:
    """Each side ``repeats`` times, each time on fresh data, taking turns to go first."""
    results: tuple[list[Appends], list[Appends]] = ([], [])
    for r in range(repeats):
        for side in (0, 1) if r % 2 == 0 else (1, 0):
            with backend.place() as place:
                results[side].append((ours, theirs)[side](place))
    return results


def read_pair(
    backend: Backend,
    repeats: int,
    ours: Callable[[Place], Any],
    theirs: Callable[[Place], Any],
) -> tuple[list[float], list[float]]:
    """Both sides prepared (each on its own fresh data), then each measured
    ``repeats`` times, taking turns to go first."""
    results: tuple[list[float], list[float]] = ([], [])
    with backend.place() as our_place, backend.place() as their_place:
        with ours(our_place) as our_run, theirs(their_place) as their_run:
            runs: tuple[Timed, Timed] = (our_run, their_run)
            for r in range(repeats):
                for side in (0, 1) if r % 2 == 0 else (1, 0):
                    results[side].append(runs[side]())
    return results


def append_rows(label: str, events_per_append: int, sides: tuple[list[Appends], list[Appends]]) -> list[Row]:
    ours, theirs = sides

    def rate(runs: list[Appends]) -> float:
        return statistics.median(events_per_append * len(latencies) / elapsed for elapsed, latencies in runs)

    def latency(runs: list[Appends]) -> float:
        return p99([x for _, latencies in runs for x in latencies]) * 1000

    return [
        Row(f"append, {label}", "events/s", rate(ours), rate(theirs)),
        Row(f"append, {label}: p99", "ms", latency(ours), latency(theirs)),
    ]


def measure(backend: Backend, args: argparse.Namespace, say: Callable[[str], None]) -> list[Row]:
    events: int = args.events
    repeats: int = args.repeats
    rows: list[Row] = []

    def add(*new: Row) -> None:
        for row in new:
            rows.append(row)
            say(row.line(backend.name))

    single = write_pair(
        backend, repeats, lambda p: our_appends(p, args.single, 1), lambda p: their_appends(p, args.single, 1)
    )
    add(*append_rows("1 event/append", 1, single))
    writers = args.writers
    parallel = write_pair(
        backend,
        repeats,
        lambda p: our_concurrent_appends(p, args.single, writers),
        lambda p: their_concurrent_appends(p, args.single, writers),
    )
    add(*append_rows(f"1 event/append, {writers} writers on {writers} streams", 1, parallel))
    batches = write_pair(
        backend, repeats, lambda p: our_appends(p, events, BATCH), lambda p: their_appends(p, events, BATCH)
    )
    add(*append_rows(f"{BATCH} events/append", BATCH, batches))

    def rate(times: list[float]) -> float:
        return events / statistics.median(times)

    def ms(times: list[float]) -> float:
        return statistics.median(times) * 1000

    ours, theirs = read_pair(backend, repeats, lambda p: our_replay(p, events), lambda p: their_replay(p, events))
    add(Row(f"replay a {events:,}-event stream", "events/s", rate(ours), rate(theirs)))
    ours, theirs = read_pair(
        backend, repeats, lambda p: our_projection(p, events), lambda p: their_projection(p, events)
    )
    add(Row(f"projection catch-up, {events:,} events", "events/s", rate(ours), rate(theirs)))
    for snapshots in (False, True):
        ours, theirs = read_pair(
            backend,
            repeats,
            functools.partial(our_load, events=events, snapshots=snapshots),
            functools.partial(their_load, events=events, snapshots=snapshots),
        )
        how = f"snapshots every {BATCH}" if snapshots else "no snapshots"
        add(Row(f"load a {events:,}-event aggregate, {how}", "ms", ms(ours), ms(theirs)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000, help="events in the batch, replay, projection, load rows")
    parser.add_argument("--single", type=int, default=1000, help="appends of one event each in the first row")
    parser.add_argument("--repeats", type=int, default=5, help="measurements of each row on each side")
    parser.add_argument("--writers", type=int, default=8, help="threads in the concurrent append row")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        print(
            f"--backends is a comma-separated list among {', '.join(BACKENDS)}, got {args.backends!r}", file=sys.stderr
        )
        return 2
    if args.events < BATCH or args.events % BATCH or args.single < 1 or args.repeats < 1:
        print(
            f"--events is a positive multiple of {BATCH}; --single and --repeats are at least 1"
            f" (got {args.events}, {args.single}, {args.repeats})",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.writers <= args.single:
        print(f"--writers is between 1 and --single ({args.single}), got {args.writers}", file=sys.stderr)
        return 2
    if WHY_NOT_EVENTSOURCING is not None:
        print(f"nothing to compare with: {WHY_NOT_EVENTSOURCING}", file=sys.stderr)
        return 2
    say: Callable[[str], None] = (lambda line: None) if args.json else print
    version = importlib.metadata.version("eventsourcing")
    started = time.monotonic()
    results: dict[str, Any] = {
        "eventsourcing": version,
        "events": args.events,
        "single": args.single,
        "repeats": args.repeats,
        "backends": {},
    }
    say(f"ours: distcheck.impl.eventstore; this: eventsourcing {version}.  {args.repeats} runs per row, medians.")
    say("ours/this: how many times better ours is (events/s: ours/theirs; ms: theirs/ours); above 1: ours is better.")
    for name in sorted(names, key=BACKENDS.index):
        why = why_not_postgres() if name == "postgres" else None
        backend: Backend | None = None
        if why is None:
            try:
                backend = SQLiteBackend() if name == "sqlite" else PostgresBackend()
            except Exception as exc:  # a server that would not start: the reason, and the other rows
                why = f"the PostgreSQL server did not start: {exc}".splitlines()[0]
        if backend is None:
            results["backends"][name] = {"skipped": why}
            say(f"{name}: skipped: {why}")
            continue
        try:
            setting = backend.setting()
            say(f"\n{name}: {setting}")
            say(HEADER)
            rows = measure(backend, args, say)
        finally:
            backend.close()
        results["backends"][name] = {"setting": setting, "rows": [row.as_dict() for row in rows]}
    results["seconds"] = time.monotonic() - started
    say(f"\n({results['seconds']:.0f} s)")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
