"""Hypothesis drives the event store and a projector, on both backends, step for
step beside spec/event_store as the model: writers load a stream's version and
append expecting it (committed, or refused when another writer got there first),
a writer crashes in the middle of an append (its transaction abandoned after the
insert), the projector applies the next event or crashes and starts again on its
read model.  After every step the store must hold what the spec's state holds:
the same committed events in the same global order, per-stream versions gapless,
every event's writer having read the version before it, and a projector that has
applied exactly the committed events up to its checkpoint, each once.  A failing
interleaving shrinks to a short list of steps, as hypothesis prints it.

The spec's own invariants are checked on its state too, so a step the spec cannot
take (a guard the implementation broke) fails the test where it happens."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from distcheck.impl.eventstore.projection import Projection, Projector
from distcheck.impl.eventstore.store import EventStore, NewEvent, RecordedEvent, SQLiteEventStore, WrongExpectedVersion
from distcheck.spec import event_store as spec
from tests.impl.conftest import WHY_NOT_POSTGRES, new_database
from tests.impl.waiting import wait_for

WRITERS = ("w1", "w2", "w3")
STREAMS = ("s1", "s2")
BIG = 1_000_000


class Applied(Projection):
    """Every event applied, in order (the history the spec's ``applied`` is)."""

    name = "applied"

    def setup(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS applied (stream TEXT NOT NULL, version INTEGER NOT NULL)")

    def handle(self, db: sqlite3.Connection, event: RecordedEvent) -> None:
        db.execute("INSERT INTO applied VALUES (?, ?)", (event.stream, event.version))


class Backend:
    """How to open a fresh store, and how a writer crashes in the middle of an append."""

    kind = ""

    def open(self) -> EventStore:
        raise NotImplementedError

    def crash_mid_append(self, stream: str) -> bool:
        """Insert an event the way an append does and abandon the transaction; whether
        the insert took a position (a hole the reader must pass)."""
        raise NotImplementedError


class SQLiteBackend(Backend):
    kind = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "events.db"

    def open(self) -> EventStore:
        return SQLiteEventStore(self.path, fsync=False)

    def crash_mid_append(self, stream: str) -> bool:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO events (stream, version, id, type, data, metadata, recorded_at)"
            " VALUES (?, (SELECT COALESCE(MAX(version), 0) + 1 FROM events WHERE stream = ?),"
            " ?, 'Lost', '{}', '{}', 0)",
            (stream, stream, f"lost-{id(db)}"),
        )
        db.close()  # the process dies: the transaction never commits (AUTOINCREMENT gives the position back)
        return False


class PostgresBackend(Backend):
    kind = "postgres"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def open(self) -> EventStore:
        from distcheck.impl.eventstore.postgres import PostgresEventStore

        return PostgresEventStore(self.dsn)

    def crash_mid_append(self, stream: str) -> bool:
        import psycopg

        with psycopg.connect(self.dsn) as db:
            (floor,) = db.execute("SELECT COALESCE(pg_sequence_last_value('event_positions'), 0)").fetchone()  # type: ignore[misc]
            db.execute(
                "INSERT INTO events (stream, version, id, type, data, metadata, recorded_at, txid, floor_position)"
                " VALUES (%s, 1000000, %s, 'Lost', '{}', '{}', 0, pg_current_xact_id(), %s)",
                (stream, f"lost-{id(db)}", floor),
            )
            db.rollback()  # the sequence's value is gone for good: a hole
        return True


class StoreMachine(RuleBasedStateMachine):
    backend: Backend
    directory: Path

    def __init__(self) -> None:
        super().__init__()
        self.model = spec.EventStore(spec.Config(len(WRITERS), len(STREAMS), appends=BIG, max_crashes=BIG))
        self.state = next(iter(self.model.init_states()))
        self.store = self.backend.open()
        self.reads: dict[str, tuple[str, int]] = {}
        self.projector = Projector(self.store, Applied(), self.directory / f"read-{id(self)}.db", batch=1)

    def step(self, action: Any) -> None:
        nxt = self.model.next_state(self.state, action)
        assert nxt is not None, f"the spec cannot take {action} here: the implementation did what it may not"
        self.state = nxt

    # ------------------------------------------------------------ writers

    @rule(w=st.sampled_from(WRITERS), stream=st.sampled_from(STREAMS))
    def read(self, w: str, stream: str) -> None:
        if w in self.reads:
            return
        self.reads[w] = (stream, self.store.stream_version(stream))
        self.step(spec.Read(w, stream))
        assert self.state.txns[w] is not None and self.state.txns[w].read == self.reads[w][1]  # type: ignore[union-attr]

    @precondition(lambda self: bool(self.reads))
    @rule(data=st.data())
    def append(self, data: st.DataObject) -> None:
        w = data.draw(st.sampled_from(sorted(self.reads)))
        stream, version = self.reads.pop(w)
        try:
            self.store.append(stream, [NewEvent("E", {"w": w, "read": version})], expected_version=version)
        except WrongExpectedVersion:
            self.step(spec.Conflict(w))
            return
        self.step(spec.Append(w))
        self.step(spec.Commit(w))

    @precondition(lambda self: bool(self.reads))
    @rule(data=st.data())
    def crash_mid_append(self, data: st.DataObject) -> None:
        w = data.draw(st.sampled_from(sorted(self.reads)))
        stream, _ = self.reads.pop(w)
        if self.backend.crash_mid_append(stream):
            self.step(spec.Append(w))  # the position it took is a hole
        self.step(spec.WriterCrash(w))

    # ------------------------------------------------------------ the projector

    @rule()
    def project_one(self) -> None:
        checkpoint = self.projector.checkpoint
        events = self.store.read_all(checkpoint, 1)
        if not events:
            return
        for _ in range(checkpoint + 1, events[0].position):
            self.step(spec.PassHole())
        assert self.projector.apply(events) == 1
        self.step(spec.Fetch())
        self.step(spec.Handle())

    @rule()
    def projector_crash(self) -> None:
        self.projector.close()
        self.projector = Projector(self.store, Applied(), self.projector.path, batch=1)
        self.step(spec.ProjectorCrash())

    # ------------------------------------------------------------ agreement

    @invariant()
    def the_store_holds_what_the_spec_holds(self) -> None:
        for inv in self.model.invariants():
            assert inv.holds(self.state), f"{inv.name} violated in the model: {inv.statement}"
        model = [(e.stream, e.version) for _, e in sorted(self.state.events.items())]
        events: list[RecordedEvent] = []

        def caught_up() -> bool:
            # A reader may be late (PostgreSQL withholds positions while any transaction
            # on the server that could hold a lower one is open), never wrong: what it
            # returns is always a prefix of the committed order.
            events[:] = self.store.read_all(0, 10_000)
            real = [(e.stream, e.version) for e in events]
            assert real == model[: len(real)], (real, model)
            return len(real) == len(model)

        wait_for(caught_up, "read_all to return every committed event", timeout=20)
        for e in events:
            assert e.data["read"] == e.version - 1  # no lost update
        applied = self.projector.query(lambda db: db.execute("SELECT stream, version FROM applied").fetchall())
        assert [tuple(a) for a in applied] == [
            (self.state.events[p].stream, self.state.events[p].version) for p in self.state.applied
        ]

    def teardown(self) -> None:
        self.projector.close()
        self.store.close()


SETTINGS = settings(
    max_examples=30, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_sqlite_store_follows_the_spec_step_for_step(tmp_path_factory: pytest.TempPathFactory) -> None:
    class SQLiteMachine(StoreMachine):
        def __init__(self) -> None:
            self.directory = tmp_path_factory.mktemp("stateful")
            self.backend = SQLiteBackend(self.directory)
            super().__init__()

    run_state_machine_as_test(SQLiteMachine, settings=SETTINGS)


@pytest.mark.skipif(WHY_NOT_POSTGRES is not None, reason=str(WHY_NOT_POSTGRES))
def test_postgres_store_follows_the_spec_step_for_step(
    postgres_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    class PostgresMachine(StoreMachine):
        def __init__(self) -> None:
            self.directory = tmp_path_factory.mktemp("stateful")
            self.backend = PostgresBackend(new_database(postgres_server))
            super().__init__()

    run_state_machine_as_test(PostgresMachine, settings=SETTINGS)
