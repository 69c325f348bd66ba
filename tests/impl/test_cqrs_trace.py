"""A CQRS run of the library, recorded by ``impl.eventstore.traced_cqrs``, is a
behaviour of spec/cqrs: clients depositing and withdrawing on threads (refusals
included), a projector following the store and restarted in the middle, and queries
that read their own writes; and the same over the broker, with copies of events
pushed into the queue.  ``distcheck validate cqrs`` accepts both; a trace with an
event applied twice, or a query that read a wrong balance, is refused."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from distcheck.checks.cli import main
from distcheck.impl.eventstore.aggregate import Aggregate, Rejected, Repository
from distcheck.impl.eventstore.bus import BusProjector, EventRelay, event_body
from distcheck.impl.eventstore.projection import Projection, Projector
from distcheck.impl.eventstore.store import RecordedEvent, SQLiteEventStore
from distcheck.impl.eventstore.traced_cqrs import CqrsTrace
from distcheck.impl.messaging.client import BrokerClient
from distcheck.impl.runtime import TraceLog
from tests.impl.test_messaging import FAST, broker
from tests.impl.waiting import wait_for

ACCOUNT = "acc"


class Account(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    def deposit(self, amount: int) -> None:
        self.record("Deposited", amount=amount)

    def withdraw(self, amount: int) -> None:
        if amount > self.balance:
            raise Rejected(f"{self.id} holds {self.balance}, cannot withdraw {amount}")
        self.record("Withdrawn", amount=amount)

    def apply(self, type: str, data: Mapping[str, Any]) -> None:
        self.balance += data["amount"] if type == "Deposited" else -data["amount"]


class Balance(Projection):
    name = "balance"

    def setup(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS balance (one INTEGER PRIMARY KEY CHECK (one = 1), amount INTEGER)")
        db.execute("INSERT OR IGNORE INTO balance VALUES (1, 0)")

    def handle(self, db: sqlite3.Connection, event: RecordedEvent) -> None:
        sign = 1 if event.type == "Deposited" else -1
        db.execute("UPDATE balance SET amount = amount + ?", (sign * event.data["amount"],))


def balance(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT amount FROM balance").fetchone()[0])


def command(cqrs: CqrsTrace, name: str, kind: Any, amount: int) -> bool:
    """One command of client ``name`` on the account; whether it was accepted."""
    accounts = Repository(cqrs.store, Account, snapshot_every=None)
    try:
        with cqrs.command(name, kind, amount):
            accounts.update(ACCOUNT, lambda a: a.deposit(amount) if kind == "Deposit" else a.withdraw(amount))
    except Rejected:
        return False
    return True


def clients(cqrs: CqrsTrace, read: Any, n: int, commands: int, seed: int) -> None:
    """``n`` clients on threads, each sending ``commands`` commands (a deposit or a
    withdrawal of 1 to 3, drawn) and a query after each."""

    def client(name: str, rng: random.Random) -> None:
        for _ in range(commands):
            command(cqrs, name, rng.choice(["Deposit", "Withdraw"]), rng.randint(1, 3))
            cqrs.query(name, read(), balance, timeout=30)

    threads = [threading.Thread(target=client, args=(f"client-{i}", random.Random(seed + i))) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def validate(trace: TraceLog, path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    trace.write(path)
    code = main(["validate", "cqrs", str(path)])
    return code, capsys.readouterr().out


def in_process_run(tmp_path: Path) -> TraceLog:
    trace = TraceLog("cqrs", source="impl")
    store = SQLiteEventStore(tmp_path / "events.db", fsync=False)
    cqrs = CqrsTrace(store, trace)
    assert not command(cqrs, "client-3", "Withdraw", 1)  # refused: the account is empty
    projector = Projector(cqrs.store, Balance(), tmp_path / "read.db", batch=2).start()
    clients(cqrs, lambda: projector, 3, 2, seed=1)
    projector.close()  # stopped, and started again on its read model
    projector = Projector(cqrs.store, Balance(), tmp_path / "read.db", batch=2).start()
    clients(cqrs, lambda: projector, 3, 1, seed=7)
    projector.close()
    store.close()
    return trace


def test_an_in_process_run_is_a_behaviour_of_the_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = in_process_run(tmp_path)
    kinds = [e["action"]["type"] for e in trace.events]
    accepted = [e for e in trace.events if e["action"]["type"] in ("Deposit", "Withdraw") and e["position"]]
    assert kinds.count("Project") == len(accepted) > 0
    refused = trace.events[0]
    assert refused["action"] == {"type": "Withdraw", "c": "c1", "amount": 1} and refused["position"] == 0
    assert kinds.count("Query") == 9 and trace.header["params"]["clients"] == 4
    code, out = validate(trace, tmp_path / "run.jsonl", capsys)
    assert code == 0, out
    assert "explained" in out


def rewrite(path: Path, change: Any) -> None:
    header, *steps = [json.loads(line) for line in path.read_text().splitlines()]
    steps = change(steps)
    path.write_text("".join(json.dumps(x) + "\n" for x in [header, *[{**s, "step": n} for n, s in enumerate(steps)]]))


def test_an_event_applied_twice_or_a_wrong_read_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = in_process_run(tmp_path)
    path = tmp_path / "run.jsonl"
    trace.write(path)
    # A projector that takes a copy of event 1 after acknowledging it applies it again.
    triple = [e for e in trace.events if e["action"].get("p") == 1]
    assert [s["action"]["type"] for s in triple] == ["Deliver", "Project", "Acknowledge"]
    rewrite(path, lambda steps: [*steps, triple[0], triple[1]])
    assert main(["validate", "cqrs", str(path)]) == 1
    out = capsys.readouterr().out
    assert "not explained" in out and "Deliver" in out

    trace.write(path)
    last_query = max(i for i, e in enumerate(trace.events) if e["action"]["type"] == "Query")

    def misread(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        wrong = dict(steps[last_query + 1])  # the file's steps start with the initial one
        wrong["read"] = {**wrong["read"], "balance": wrong["read"]["balance"] + 1}
        return [*steps[: last_query + 1], wrong, *steps[last_query + 2 :]]

    rewrite(path, misread)
    assert main(["validate", "cqrs", str(path)]) == 1
    assert "Query" in capsys.readouterr().out


def test_a_run_over_the_broker_with_copies_in_the_queue_is_a_behaviour_of_the_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = TraceLog("cqrs", source="impl")
    with broker(tmp_path / "broker", FAST) as (_, client):
        store = SQLiteEventStore(tmp_path / "events.db", fsync=False)
        cqrs = CqrsTrace(store, trace)
        consumer = BrokerClient(client.address, timeout=5.0, heartbeat=0.2)
        relay = EventRelay(cqrs.store, client, "events", tmp_path / "relay.db").start()
        with BusProjector(consumer, "events", Balance(), tmp_path / "read.db", store=cqrs.store) as bus:
            clients(cqrs, lambda: bus.projector, 3, 2, seed=3)
            # Copies of the first two events, under ids of their own (a relay that lost
            # its checkpoint and a broker that does not deduplicate): dropped, unrecorded.
            first, second = store.read_all(0, 2)
            client.publish("events", {**event_body(first), "after": 0}, id="copy-1")
            client.publish("events", {**event_body(second), "after": first.position}, id="copy-2")
            wait_for(lambda: bus.copies >= 2, "the projector to drop both copies")
            clients(cqrs, lambda: bus.projector, 2, 1, seed=9)
        relay.stop()
        consumer.close()
        store.close()
    assert sum(1 for e in trace.events if e["action"]["type"] == "Project") == store_events(tmp_path)
    code, out = validate(trace, tmp_path / "run.jsonl", capsys)
    assert code == 0, out


def store_events(tmp_path: Path) -> int:
    store = SQLiteEventStore(tmp_path / "events.db", fsync=False)
    try:
        return store.head()
    finally:
        store.close()
