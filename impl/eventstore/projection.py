"""Projections: read models built from the global order of events, each update and
its checkpoint in one transaction, and queries that can wait for a command's
effect (read-your-writes).  The query side of the command/query split.

Where it sits: on ``impl.eventstore.store.EventStore`` (either backend), beside
``impl.eventstore.aggregate`` (the command side).  It mirrors the subscription of
``spec/event_store.py`` and the projection of ``spec/cqrs.py``:

- **Never skips, never twice.**  The projector follows ``read_all`` (which returns
  every committed event in position order, none skipped) from its checkpoint; each
  batch of events is applied to the read model and the checkpoint moved past it in
  one SQLite transaction, so a crash loses both or neither (not the checkpoint saved
  before the update, which skips an event, nor after it, which applies one twice:
  spec/event_store's ``checkpoint_before_update`` and ``volatile_checkpoint``).  An
  event at or below the checkpoint (a redelivery) is ignored.
- **Read your writes.**  A command returns the position of its last event (its
  token); ``query(fn, token=t)`` runs ``fn`` on the read model once the checkpoint
  has reached ``t``, waiting up to ``timeout`` seconds, and raises ``StaleRead``
  rather than answer from a read model that does not have the command's effect.

    class Balances(Projection):
        name = "balances"

        def setup(self, db):
            db.execute("CREATE TABLE IF NOT EXISTS balance (account TEXT PRIMARY KEY, amount INTEGER)")

        def handle(self, db, event):
            if event.type == "Deposited":
                db.execute("INSERT INTO balance VALUES (?, ?) ON CONFLICT (account) "
                           "DO UPDATE SET amount = amount + excluded.amount", (event.stream, event.data["amount"]))

    with Projector(store, Balances(), "read.db") as balances:     # follows the store on a thread
        token = accounts.save(account).position
        amount = balances.query(lambda db: db.execute("SELECT amount FROM balance").fetchone(), token=token)

The read model is a SQLite database of its own (the query side's store, which may
live elsewhere than the events); ``checkpoint`` is kept in it, in the table
``projection_checkpoints``, one row per projection name.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from distcheck.impl.eventstore.store import EventStore, EventStoreError, RecordedEvent

T = TypeVar("T")


class StaleRead(EventStoreError):
    """The read model had not caught up with the token in time."""


class Projection(ABC):
    """A read model: its tables (``setup``) and how one event changes them (``handle``).
    ``handle`` runs inside the projector's transaction: it must not commit."""

    name: str = ""

    @abstractmethod
    def setup(self, db: sqlite3.Connection) -> None: ...

    @abstractmethod
    def handle(self, db: sqlite3.Connection, event: RecordedEvent) -> None: ...


class Projector:
    """Keeps one projection's read model up to date with an event store."""

    def __init__(
        self,
        store: EventStore,
        projection: Projection,
        path: str | Path,
        *,
        batch: int = 500,
        fsync: bool = True,
        poll: float = 0.05,
    ) -> None:
        if not projection.name:
            raise ValueError(f"{type(projection).__name__} has no name (set Projection.name)")
        if batch < 1:
            raise ValueError(f"batch is at least 1, got {batch}")
        self.store = store
        self.projection = projection
        self.path = str(path)
        self.batch = batch
        self.fsync = fsync
        self.poll = poll
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None
        db = self._db()
        db.execute(
            "CREATE TABLE IF NOT EXISTS projection_checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL)"
        )
        db.execute("BEGIN IMMEDIATE")
        projection.setup(db)
        restarted = (
            db.execute("INSERT OR IGNORE INTO projection_checkpoints VALUES (?, 0)", (projection.name,)).rowcount == 0
        )
        db.execute("COMMIT")
        if restarted:
            store.projector_restarted()

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'OFF'}")
            self._local.db = db
            with self._opened_lock:
                self._opened.append(db)
        return db

    @property
    def checkpoint(self) -> int:
        """The position up to which every event is in the read model."""
        (position,) = (
            self._db()
            .execute("SELECT position FROM projection_checkpoints WHERE name = ?", (self.projection.name,))
            .fetchone()
        )
        return int(position)

    def apply(self, events: list[RecordedEvent]) -> int:
        """Apply ``events`` (in position order) past the checkpoint, and move the
        checkpoint, in one transaction; those at or below it are ignored.  How many
        were applied."""
        if not events:
            return 0
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            (checkpoint,) = db.execute(
                "SELECT position FROM projection_checkpoints WHERE name = ?", (self.projection.name,)
            ).fetchone()
            fresh = [e for e in events if e.position > checkpoint]
            for event in fresh:
                self.projection.handle(db, event)
            if fresh:
                db.execute(
                    "UPDATE projection_checkpoints SET position = ? WHERE name = ?",
                    (fresh[-1].position, self.projection.name),
                )
            with self.store.committing():
                db.execute("COMMIT")
                self.store.projected(checkpoint, fresh)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if fresh:
            with self._progress:
                self._progress.notify_all()
        return len(fresh)

    def catch_up(self) -> int:
        """Apply every event the store has now; how many."""
        applied = 0
        while True:
            events = self.store.read_all(self.checkpoint, self.batch)
            if not events:
                return applied
            applied += self.apply(events)

    # ------------------------------------------------------------ following

    def start(self) -> Projector:
        """Follow the store on a thread of its own until ``stop``."""
        if self._thread is not None:
            raise RuntimeError("the projector is running already")
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow, name=f"projector-{self.projection.name}", daemon=True)
        self._thread.start()
        return self

    def _follow(self) -> None:
        changed = self.store.append_condition()
        try:
            while not self._stop.is_set():
                if self.apply(self.store.read_all(self.checkpoint, self.batch)):
                    continue
                # Nothing new: wait for an append here (at once) or elsewhere (a poll).
                if changed is None:
                    self._stop.wait(self.poll)
                    continue
                with changed:
                    if self.store.head() <= self.checkpoint and not self._stop.is_set():
                        changed.wait(self.poll)
        except BaseException as exc:  # noted, and the waiting queries are woken to see it
            self.error = exc
            with self._progress:
                self._progress.notify_all()

    def stop(self) -> None:
        self._stop.set()
        changed = self.store.append_condition()
        if changed is not None:
            with changed:
                changed.notify_all()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def close(self) -> None:
        self.stop()
        with self._opened_lock:
            for db in self._opened:
                db.close()
            self._opened.clear()

    def __enter__(self) -> Projector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ queries

    def wait_for(self, token: int, timeout: float = 5.0) -> bool:
        """Whether the checkpoint reached ``token`` within ``timeout`` seconds."""
        with self._progress:
            return self._progress.wait_for(lambda: self.error is not None or self.checkpoint >= token, timeout) and (
                self.checkpoint >= token
            )

    def query(self, fn: Callable[[sqlite3.Connection], T], *, token: int = 0, timeout: float = 5.0) -> T:
        """``fn(db)`` on the read model, once it has every event up to ``token``."""
        if token > 0 and not self.wait_for(token, timeout):
            why = f" (the projector failed: {self.error})" if self.error is not None else ""
            raise StaleRead(
                f"{self.projection.name} is at position {self.checkpoint}, not yet at {token}, after {timeout:g} s{why}"
            )
        return fn(self._db())
