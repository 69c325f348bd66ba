"""Aggregates, snapshots, upcasters and projections on the SQLite event store:
folding every event equals folding a snapshot and the tail, for every mix of old
event shapes; a point in time is the state then; concurrent commands lose no
update; a projector applies each event once, none skipped, across a failure in the
middle of a batch; queries with a token read their writes; the example runs."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distcheck.impl.eventstore.aggregate import Aggregate, Rejected, Repository, Upcasters
from distcheck.impl.eventstore.projection import Projection, Projector, StaleRead
from distcheck.impl.eventstore.store import NO_STREAM, NewEvent, RecordedEvent, SQLiteEventStore

ROOT = Path(__file__).resolve().parents[2]


class Account(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0
        self.moves = 0

    def deposit(self, amount: int) -> None:
        if amount <= 0:
            raise Rejected("a deposit is positive")
        self.record("Deposited", amount=amount, currency="EUR")

    def withdraw(self, amount: int) -> None:
        if amount > self.balance:
            raise Rejected("no overdraft")
        self.record("Withdrawn", amount=amount, currency="EUR")

    def apply(self, type: str, data: Mapping[str, Any]) -> None:
        sign = {"Deposited": 1, "Withdrawn": -1}[type]
        assert data["currency"] == "EUR"  # only the newest shape reaches apply
        self.balance += sign * data["amount"]
        self.moves += 1


def upcasters() -> Upcasters:
    """Deposited: shape 1 {"value": n} → 2 {"amount": n} → 3 {"amount": n, "currency": "EUR"}."""
    up = Upcasters()
    up.register("Deposited", 1, lambda d: {"amount": d["value"]})
    up.register("Deposited", 2, lambda d: {**d, "currency": "EUR"})
    up.register("Withdrawn", 1, lambda d: {**d, "currency": "EUR"})
    return up


def shaped(kind: str, amount: int, schema: int) -> NewEvent:
    """A ``kind`` event of ``amount`` written in shape ``schema`` (as an old release wrote it)."""
    shapes: list[dict[str, Any]]
    if kind == "Deposited":
        shapes = [{"value": amount}, {"amount": amount}, {"amount": amount, "currency": "EUR"}]
    else:
        shapes = [{"amount": amount}, {"amount": amount, "currency": "EUR"}]
        schema = min(schema, 2)
    return NewEvent(kind, shapes[schema - 1], {"schema": schema})


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with SQLiteEventStore(tmp_path / "events.db", fsync=False) as s:
        yield s


MOVES = st.lists(
    st.tuples(st.sampled_from(["Deposited", "Withdrawn"]), st.integers(1, 50), st.integers(1, 3)), max_size=25
)


@settings(max_examples=40, deadline=None)
@given(moves=MOVES, every=st.integers(1, 6))
def test_folding_a_snapshot_and_the_tail_equals_folding_every_event(
    tmp_path_factory: pytest.TempPathFactory, moves: list[tuple[str, int, int]], every: int
) -> None:
    with SQLiteEventStore(tmp_path_factory.mktemp("fold") / "events.db", fsync=False) as store:
        plain = Repository(store, Account, upcasters=upcasters())
        snapshots = Repository(store, Account, snapshot_every=every, upcasters=upcasters())
        expected = 0
        for i, (kind, amount, schema) in enumerate(moves):
            # Old events, in the shapes of their day, straight into the store; a new
            # one through the repository now and then (which may take a snapshot).
            if i % 3 == 2:
                account = snapshots.load("a")
                account.deposit(amount)
                snapshots.save(account)
                expected += amount
            else:
                store.append("a", [shaped(kind, amount, schema)])
                expected += amount if kind == "Deposited" else -amount
        whole, from_snapshot = plain.load("a"), snapshots.load("a")
        assert whole.balance == from_snapshot.balance == expected
        assert whole.version == from_snapshot.version == len(moves)
        assert whole.moves == from_snapshot.moves == len(moves)


def test_new_events_are_written_in_the_newest_shape(store: SQLiteEventStore) -> None:
    accounts = Repository(store, Account, upcasters=upcasters())
    account = Account("a")
    account.deposit(5)
    accounts.save(account)
    (event,) = store.read_stream("a")
    assert event.metadata == {"schema": 3} and event.data == {"amount": 5, "currency": "EUR"}


def test_an_aggregate_as_of_a_position_and_a_time(store: SQLiteEventStore) -> None:
    accounts = Repository(store, Account, snapshot_every=2)
    stamps = []
    for amount in (10, 20, 30, 40):

        def deposit(acc: Account, n: int = amount) -> None:
            acc.deposit(n)

        accounts.update("a", deposit)
        stamps.append((store.head(), time.time()))
        time.sleep(0.01)
    for n, (position, moment) in enumerate(stamps, start=1):
        expected = sum((10, 20, 30, 40)[:n])
        assert accounts.load("a", at_position=position).balance == expected
        assert accounts.load("a", at_time=moment).balance == expected
    assert accounts.load("a", at_position=0).balance == 0


def test_concurrent_commands_lose_no_update(store: SQLiteEventStore) -> None:
    """Eight threads deposit on one account at once: every deposit is in the
    balance, once; the losers of each race loaded again and retried."""
    accounts = Repository(store, Account, snapshot_every=5)

    def work(t: int) -> None:
        for _ in range(10):
            accounts.update("a", lambda acc: acc.deposit(1), attempts=1000)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert accounts.load("a").balance == 80
    assert [e.version for e in store.read_stream("a")] == list(range(1, 81))


def test_a_rejected_command_saves_nothing(store: SQLiteEventStore) -> None:
    accounts = Repository(store, Account)
    account = accounts.load("a")
    with pytest.raises(Rejected):
        account.withdraw(1)
    assert accounts.save(account) is None and store.head() == 0
    with pytest.raises(ValueError, match="snapshot_every"):
        Repository(store, Account, snapshot_every=0)


# ------------------------------------------------------------------ projections


class Ledger(Projection):
    """The balance per account, and every position applied (to count applications)."""

    name = "ledger"

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at

    def setup(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS balance (account TEXT PRIMARY KEY, amount INTEGER NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS applied (position INTEGER NOT NULL)")

    def handle(self, db: sqlite3.Connection, event: RecordedEvent) -> None:
        if event.position == self.fail_at:
            raise RuntimeError(f"the projection fails at {event.position}")
        sign = {"Deposited": 1, "Withdrawn": -1}.get(event.type, 0)
        db.execute(
            "INSERT INTO balance VALUES (?, ?) ON CONFLICT (account) DO UPDATE SET amount = amount + excluded.amount",
            (event.stream, sign * int(event.data.get("amount", 0))),
        )
        db.execute("INSERT INTO applied VALUES (?)", (event.position,))


def applied(db: sqlite3.Connection) -> list[int]:
    return [p for (p,) in db.execute("SELECT position FROM applied ORDER BY rowid")]


def test_a_projector_following_concurrent_writers_applies_every_event_once(
    store: SQLiteEventStore, tmp_path: Path
) -> None:
    accounts = Repository(store, Account)
    with Projector(store, Ledger(), tmp_path / "read.db", batch=7) as ledger:

        def work(name: str) -> None:
            for _ in range(25):
                accounts.update(name, lambda acc: acc.deposit(2), attempts=1000)

        threads = [threading.Thread(target=work, args=(f"acc{t % 3}",)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        head = store.head()
        assert ledger.wait_for(head, timeout=30)
        positions = ledger.query(applied)
        balances = dict(ledger.query(lambda db: db.execute("SELECT account, amount FROM balance").fetchall()))
    assert positions == list(range(1, head + 1))  # every event, once, in order
    assert balances == {f"acc{i}": 100 for i in range(3)}


def test_a_failure_mid_batch_applies_nothing_and_the_restart_applies_each_event_once(
    store: SQLiteEventStore, tmp_path: Path
) -> None:
    for n in range(1, 11):
        store.append("a", [NewEvent("Deposited", {"amount": n})])
    failing = Projector(store, Ledger(fail_at=6), tmp_path / "read.db", batch=4)
    assert failing.apply(store.read_all(0, 4)) == 4
    with pytest.raises(RuntimeError, match="fails at 6"):
        failing.apply(store.read_all(4, 4))  # 5..8: the whole batch rolls back
    assert failing.checkpoint == 4
    failing.close()
    again = Projector(store, Ledger(), tmp_path / "read.db", batch=4)
    assert again.catch_up() == 6
    assert again.apply(store.read_all(0, 10)) == 0  # a redelivery changes nothing
    assert again.query(applied) == list(range(1, 11))
    assert again.query(lambda db: db.execute("SELECT amount FROM balance").fetchone()) == (55,)
    again.close()


def test_a_query_with_a_token_reads_the_commands_effect_or_says_it_cannot(
    store: SQLiteEventStore, tmp_path: Path
) -> None:
    accounts = Repository(store, Account)
    ledger = Projector(store, Ledger(), tmp_path / "read.db")
    account = Account("a")
    account.deposit(7)
    result = accounts.save(account)
    assert result is not None
    with pytest.raises(StaleRead, match="not yet at 1"):
        ledger.query(lambda db: None, token=result.position, timeout=0.2)  # not running: stale
    ledger.start()
    amount = ledger.query(lambda db: db.execute("SELECT amount FROM balance").fetchone(), token=result.position)
    assert amount == (7,)
    ledger.close()


def test_the_example_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "bank.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "acc-ada (ada): 50" in done.stdout and "acc-bob: 23" in done.stdout
    assert "refused" in done.stdout


def test_bad_appends_are_refused_and_write_nothing(store: SQLiteEventStore) -> None:
    for stream, events, expected in [
        ("", [NewEvent("X", {})], NO_STREAM),
        ("s", [], NO_STREAM),
        ("s", [NewEvent("X", {"n": float("nan")})], NO_STREAM),
        ("s", [NewEvent("X", {"f": object()})], NO_STREAM),
        ("s", [NewEvent("X", {})], -5),
        ("s", ["not an event"], NO_STREAM),
    ]:
        with pytest.raises(ValueError):
            store.append(stream, events, expected)  # type: ignore[arg-type]
    assert store.head() == 0
