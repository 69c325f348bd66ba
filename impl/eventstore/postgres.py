"""The PostgreSQL backend of the event store: the shared store, for writers and
readers in many processes and on many machines.

Where it sits: beside ``store.py``, which defines the interface (``EventStore``)
and its contract, the SQLite backend and the input checks both backends share;
aggregates and projections run on either.  It needs psycopg 3 (``psycopg[binary]``,
in the ``dev`` and ``bench`` extras) and a PostgreSQL 13 or later (``xid8``).

    store = PostgresEventStore("host=/run/postgresql dbname=bank")
    store.append("account-1", [NewEvent("Opened", {"owner": "ada"})], expected_version=NO_STREAM)

Guarantees, and how:

- **Durable when ``append`` returns**: one transaction per append, committed with
  ``synchronous_commit`` on (set by every connection, whatever the server's default).
- **Expected versions**: the append reads the stream's version and refuses if it is
  not the one expected; a unique key on (stream, version) backs the check.  Appends
  to one stream wait for each other on a transaction-scoped advisory lock keyed by
  the stream's name (they would conflict on that key anyway, and an ``ANY`` append
  then never has to retry); appends to different streams run in parallel.
- **Idempotent appends**: as in ``store.py`` (unique event ids; a retry of a committed
  append returns its result, an id stored elsewhere is ``DuplicateEventId``).
- **Events as JSON**: data and metadata are ``json`` columns holding exactly the text
  ``store.encode_json`` made (``jsonb`` would turn 1e300 into an integer and refuse
  ``\\u0000``); cast them to ``jsonb`` to query them.

The gap, and why ``read_all`` never skips an event
--------------------------------------------------

Positions come from a sequence, which hands a value out when the row is inserted;
transactions commit in another order.  A reader that asks for ``position >
checkpoint`` can see 8 while 7 is still in flight, move its checkpoint to 8, and
never see 7 (spec/event_store.py, variant ``reader_skips_gap``).  Two tempting
fixes are wrong: stopping at the first missing position stalls for ever at a
position whose transaction aborted; and returning only rows whose transaction id
is below the snapshot's ``xmin`` (all older transactions have finished) fails
because xids and positions are taken in different orders: T1 takes xid 100, T2 takes
xid 101 and position 7, T1 takes position 8 and commits; with T2 open, ``xmin`` is
101, T1's row passes the filter, and 8 is returned while 7 is not decided.

What is done instead.  An append, in its transaction, (1) reads the sequence's
last value ``f`` while it has no xid yet, (2) takes its xid ``x``, (3) takes its
positions, (4) commits or aborts; each row stores ``x`` and ``f``.  PostgreSQL hands
out xids and (with ``CACHE 1``) sequence values in increasing order of real time, and
a snapshot's ``xmin`` is below the xid of every transaction still running.

*Lemma.* If an append U committed (x_U, f_U), whoever took a position p <= f_U has
an xid below x_U.  The holder T took p before U read f_U (the sequence only grows),
and took its xid before p, so before U took x_U, which came after reading f_U.

*Rule.* In a snapshot with ``xmin`` m, every position p <= f_U of a visible row with
x_U < m is decided: its holder's xid is below x_U < m, so it has finished, and its
event is visible if it committed (an aborted one's position is a hole for ever).
A transaction that starts later gets an xid above x_U and, by the lemma, a position
above f_U.  So ``read_all`` returns the visible rows with positions in (after, B],
where B is the largest such f_U (the row with the greatest txid below ``xmin``,
through an index), or larger by two more sources of the same certainty:

- the reader's own pair: the sequence's value v, read in a statement before the
  reading one, and the next xid N, read in the reading one (``age(xid)`` counts from
  it).  Every holder of a position <= v took its xid before v was read, so below N;
  if ``xmin`` >= N, all of them have finished.  This is what lets a reader reach the
  last appends once nothing is running.  (A snapshot's ``xmax`` is not the next xid
  but the latest finished one plus one: transactions above it may be running, so
  ``xmin = xmax`` does not mean that nothing runs.)
- the highest B this store instance has seen: a decided position stays decided.

Events at or below B are returned in position order, none skipped.

Consequences.  Appends to different streams do not wait for one another (one table
lock around every append would make them, at a quarter of the throughput with 8
writers here); they pay two more statements (the sequence read and the xid), and
the reader an index lookup.  ``read_all`` may lag the commits a little under load (B
moves with each finished append) and catches up as soon as nothing is running.  Any
transaction of the cluster holding an xid (a long write, a prepared transaction)
holds B back to the appends that took their xids before it, until it ends: late,
never wrong.  The premises are checked where they can be: an append refuses to go
on if it holds an xid before step (1), and the store refuses a position sequence
with a cache above 1; nothing but this store's appends may take positions.  Read
from the primary: a standby's copy of a sequence runs up to 32 values ahead of what
the primary has handed out.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors

from distcheck.impl.eventstore.store import (
    ANY,
    AppendResult,
    EventStore,
    EventStoreError,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
    _recorded,
    check_events,
    check_expected,
    check_stream,
    retry_result,
)

#: advisory lock class ids (the first key of ``pg_advisory_xact_lock(int, int)``);
#: other users of advisory locks in the database should pick others
STREAM_LOCK = 0x45565354  # "EVST": appends to one stream, keyed by hashtext(stream)
SCHEMA_LOCK = 0x45565343  # "EVSC": creating the schema

#: attempts of an append that lost a race on a unique key (an event id appended
#: elsewhere at the same moment); the next attempt sees the winner and answers
MAX_ATTEMPTS = 5

_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS event_positions AS bigint CACHE 1;
CREATE TABLE IF NOT EXISTS events (
    position bigint PRIMARY KEY DEFAULT nextval('event_positions'),
    stream text NOT NULL,
    version bigint NOT NULL,
    id text NOT NULL UNIQUE,
    type text NOT NULL,
    data json NOT NULL,
    metadata json NOT NULL,
    recorded_at double precision NOT NULL,
    txid xid8 NOT NULL,
    floor_position bigint NOT NULL,
    UNIQUE (stream, version)
);
ALTER SEQUENCE event_positions OWNED BY events.position;
CREATE INDEX IF NOT EXISTS events_txid ON events (txid);
"""

_COLUMNS = "stream, version, position, id, type, data::text, metadata::text, recorded_at"

#: B of the module docstring, in the statement's own snapshot; parameters ``known``
#: (the highest B seen) and ``sequence`` (the sequence's value, read before).  The
#: next xid is xmax plus ``age(xmax)``: age counts from the next xid (read once per
#: transaction, here after the snapshot, which only makes N larger).
_BOUND = """
WITH horizon AS MATERIALIZED (
    SELECT
        pg_snapshot_xmin(s) AS xmin,
        pg_snapshot_xmax(s)::text::bigint + age(xid(pg_snapshot_xmax(s))) AS next_xid
    FROM pg_current_snapshot() AS s
), bound AS MATERIALIZED (  -- computed once (inlined, it would be again for every row)
    SELECT GREATEST(
        %(known)s::bigint,
        CASE WHEN h.xmin::text::bigint >= h.next_xid THEN %(sequence)s::bigint ELSE 0 END,
        (SELECT e.floor_position FROM events AS e WHERE e.txid < h.xmin ORDER BY e.txid DESC LIMIT 1)
    ) AS upto
    FROM horizon AS h
)
"""

_READ_ALL = (
    _BOUND
    + f"""
SELECT b.upto, e.* FROM bound AS b LEFT JOIN LATERAL (
    SELECT {_COLUMNS} FROM events
    WHERE position > %(after)s AND position <= b.upto ORDER BY position LIMIT %(limit)s
) AS e ON true
ORDER BY e.position
"""
)

_HEAD = (
    _BOUND
    + """
SELECT b.upto, (SELECT COALESCE(MAX(position), 0) FROM events WHERE position <= b.upto) FROM bound AS b
"""
)

_SEQUENCE = "SELECT COALESCE(pg_sequence_last_value('event_positions'), 0)"

#: step (1) of the proof, and in the same statement (all reads: no xid) the stream's
#: version and whether any of the append's ids is stored already.  The ids are looked
#: up one by one through their unique index (a subquery per id): ``id = ANY(ids)``
#: may be planned as a scan of the whole table (the planner's choice on a table it
#: has no statistics for yet, bitmap scans being off), whose cost grows with the store.
_STATE = (
    f"{_SEQUENCE}, pg_current_xact_id_if_assigned(),"
    " (SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = %s),"
    " EXISTS (SELECT FROM unnest(%b::text[]) AS u(id) WHERE (SELECT true FROM events AS e WHERE e.id = u.id))"
)

#: step (3) and the rows: the positions, taken first in the statement (a materialized
#: CTE of ``nextval``) and given out in increasing order to the versions, and every
#: row of an append, in one statement of fixed text, its
#: columns as arrays (a statement with a placeholder per value would be parsed again
#: for every append; ``%b``: the arrays go in binary, their text as it is, not quoted
#: and escaped into array literals).  The xid (step (2)) is taken by the statement before.
_INSERT_ROWS = (
    "WITH taken AS MATERIALIZED (SELECT nextval('event_positions') AS p FROM generate_series(1, %(count)s)),"
    " numbered AS (SELECT p, row_number() OVER (ORDER BY p) AS k FROM taken)"
    " INSERT INTO events (position, stream, version, id, type, data, metadata, recorded_at, txid, floor_position)"
    " SELECT n.p, %(stream)s, %(version)s::bigint + r.k, r.i, r.t, r.d::json, r.m::json,"
    " EXTRACT(EPOCH FROM transaction_timestamp())::float8, pg_current_xact_id(), %(floor)s"
    " FROM unnest(%(ids)b::text[], %(types)b::text[], %(data)b::text[], %(metadata)b::text[])"
    " WITH ORDINALITY AS r(i, t, d, m, k) JOIN numbered AS n ON n.k = r.k"
    " RETURNING position"
)

Connection = psycopg.Connection[tuple[Any, ...]]


class PostgresEventStore(EventStore):
    """The PostgreSQL backend (see the module docstring).  Each thread uses a
    connection of its own, opened on first use (and again after the server dropped
    it) and closed by ``close()``."""

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._appended = threading.Condition()
        self._closed = False
        #: the highest B seen: every position at or below it is decided for ever
        self._decided = 0
        db = self._connection()
        with db.transaction():
            # Only a missing schema is created: the DDL would wait for every append in
            # flight (and every append would queue behind it) even when there is
            # nothing to do.  Concurrent first openings serialize on a lock.
            created = db.execute("SELECT to_regclass('events_txid') IS NOT NULL").fetchone()
            if not (created and created[0]):
                db.execute("SELECT pg_advisory_xact_lock(%s, 0)", (SCHEMA_LOCK,))
                db.execute(_SCHEMA)
            row = db.execute("SELECT seqcache FROM pg_sequence WHERE seqrelid = 'event_positions'::regclass").fetchone()
        if row is None or row[0] != 1:
            self.close()
            # with a cache, sessions hand out values from private ranges: the sequence
            # no longer grows in real time and the proof's lemma fails
            raise EventStoreError(f"the sequence event_positions must have CACHE 1 (has {row and row[0]})")

    def _connection(self) -> Connection:
        if self._closed:
            raise EventStoreError("the event store is closed")
        db: Connection | None = getattr(self._local, "db", None)
        if db is None or db.closed or db.broken:
            if db is not None:
                db.close()
                with self._lock:
                    if db in self._connections:
                        self._connections.remove(db)
            db = psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(1, round(self.connect_timeout)))
            # Whatever the server's or the database's defaults: appends read their
            # stream's version after taking its lock, so each statement needs a fresh
            # snapshot; and a commit is on disk before append returns.
            db.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            db.execute("SET synchronous_commit = on")
            # psycopg prepares a statement after a few runs, and PostgreSQL may then keep
            # a generic plan chosen while the table was empty (a sequential scan for the
            # id lookup, whose cost grows with the table): plan each run for its values.
            db.execute("SET plan_cache_mode = force_custom_plan")
            # Reading the global order is a walk of the primary key in order from a
            # position, LIMIT a batch; without statistics the planner may fetch every row
            # after the position as a bitmap and sort them, which costs more the further
            # behind the reader is (quadratic for a catch-up).
            db.execute("SET enable_bitmapscan = off")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def append_condition(self) -> threading.Condition:
        return self._appended

    def _inserted(self, db: Connection, positions: list[int]) -> None:
        """Called in an append's transaction after its rows are inserted, before the
        commit: a seam for tests that hold a transaction open at the gap."""

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: int = ANY) -> AppendResult:
        check_stream(stream)
        check_expected(expected_version)
        rows = check_events(events)
        for attempt in range(MAX_ATTEMPTS):
            try:
                result = self._append_once(stream, events, expected_version, rows)
                break
            except (errors.UniqueViolation, errors.DeadlockDetected):
                # Another transaction stored one of these ids (a concurrent retry, or
                # a reuse) first; the next attempt sees it and answers accordingly.
                if attempt == MAX_ATTEMPTS - 1:
                    raise
        with self._appended:
            self._appended.notify_all()
        return result

    def _append_once(
        self, stream: str, events: Sequence[NewEvent], expected_version: int, rows: list[tuple[NewEvent, str, str]]
    ) -> AppendResult:
        db = self._connection()
        ids = [event.id for event, _, _ in rows]
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (STREAM_LOCK, stream))
            state = db.execute(_STATE, (stream, ids)).fetchone()  # step (1) of the proof
            assert state is not None
            if state[3]:
                stored = db.execute("SELECT stream, version, position, id FROM events WHERE id = ANY(%s)", (ids,))
                found = {row[3]: (str(row[0]), int(row[1]), int(row[2]), str(row[3])) for row in stored}
                return retry_result(stream, events, [found[i] for i in ids if i in found])
            floor, early_xid, version = int(state[0]), state[1], int(state[2])
            if early_xid is not None:
                raise EventStoreError("an append's transaction already held an xid before reading the sequence")
            if expected_version != ANY and version != expected_version:
                raise WrongExpectedVersion(stream, expected_version, version)
            db.execute("SELECT pg_current_xact_id()")  # step (2): the xid, before any position
            inserted = db.execute(
                _INSERT_ROWS,
                {
                    "count": len(rows),
                    "stream": stream,
                    "version": version,
                    "floor": floor,
                    "ids": ids,
                    "types": [event.type for event, _, _ in rows],
                    "data": [data for _, data, _ in rows],
                    "metadata": [metadata for _, _, metadata in rows],
                },
                binary=True,  # the positions come back in binary
            )
            positions = sorted(int(p) for (p,) in inserted.fetchall())
            self._inserted(db, positions)
        return AppendResult(version + len(rows), positions[-1])

    def read_stream(self, stream: str, after_version: int = 0, upto_version: int | None = None) -> list[RecordedEvent]:
        check_stream(stream)
        rows = self._connection().execute(
            f"SELECT {_COLUMNS} FROM events WHERE stream = %s AND version > %s"
            " AND (%s::bigint IS NULL OR version <= %s::bigint) ORDER BY version",
            (stream, after_version, upto_version, upto_version),
        )
        return [_recorded(row) for row in rows]

    def _bound_parameters(self, db: Connection) -> dict[str, int]:
        # The sequence is read in a statement of its own, before the snapshot of the
        # statement that uses it is taken (autocommit: one snapshot per statement).
        row = db.execute(_SEQUENCE).fetchone()
        assert row is not None
        return {"known": self._decided, "sequence": int(row[0])}

    def _learn(self, bound: int) -> None:
        with self._lock:
            self._decided = max(self._decided, bound)

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        if type(after) is not int or after < 0 or type(limit) is not int or limit < 1:
            raise ValueError(f"read_all takes a position >= 0 and a limit >= 1, got {after!r}, {limit!r}")
        db = self._connection()
        parameters = {**self._bound_parameters(db), "after": after, "limit": limit}
        rows = db.execute(_READ_ALL, parameters).fetchall()
        self._learn(int(rows[0][0]))
        return [_recorded(row[1:]) for row in rows if row[1] is not None]

    def stream_version(self, stream: str) -> int:
        check_stream(stream)
        row = self._connection().execute("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = %s", (stream,))
        (version,) = row.fetchone() or (0,)
        return int(version)

    def head(self) -> int:
        db = self._connection()
        row = db.execute(_HEAD, self._bound_parameters(db)).fetchone()
        assert row is not None
        self._learn(int(row[0]))
        return int(row[1])

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        with self._appended:
            self._appended.notify_all()
