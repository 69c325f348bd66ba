"""A bank account, event-sourced: commands, events, a projection, a query.

    .venv/bin/python examples/bank.py [DIRECTORY]

Opens two accounts, deposits and withdraws (one withdrawal is refused: an account
never goes below zero), transfers between them, and shows

- the events in the store, in their global order;
- the read model (a table of balances) that a projector keeps on a thread of its
  own, queried with each command's read-your-writes token;
- an account as it was at an earlier position (point in time);
- two writers deciding on the same version: one is refused and retries.

The store and the read model are SQLite files in DIRECTORY (a fresh temporary
directory unless given; run it again on the same one and the balances grow).
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distcheck.impl.eventstore.aggregate import Aggregate, Rejected, Repository
from distcheck.impl.eventstore.projection import Projection, Projector
from distcheck.impl.eventstore.store import RecordedEvent, SQLiteEventStore, WrongExpectedVersion


class Account(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.balance = 0

    # ---- commands: check the rules, then record what happened
    def open(self, owner: str) -> None:
        if self.version:
            raise Rejected(f"{self.id} is open already")
        self.record("Opened", owner=owner)

    def deposit(self, amount: int) -> None:
        if amount <= 0:
            raise Rejected("a deposit is positive")
        self.record("Deposited", amount=amount)

    def withdraw(self, amount: int) -> None:
        if amount > self.balance:
            raise Rejected(f"{self.id} holds {self.balance}, cannot withdraw {amount}")
        self.record("Withdrawn", amount=amount)

    # ---- how each event changes the state
    def apply(self, type: str, data: Mapping[str, Any]) -> None:
        if type == "Opened":
            self.owner = data["owner"]
        elif type == "Deposited":
            self.balance += data["amount"]
        elif type == "Withdrawn":
            self.balance -= data["amount"]


class Balances(Projection):
    name = "balances"

    def setup(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS balance (account TEXT PRIMARY KEY, owner TEXT, amount INTEGER)")

    def handle(self, db: sqlite3.Connection, event: RecordedEvent) -> None:
        change = {"Deposited": 1, "Withdrawn": -1}.get(event.type)
        if event.type == "Opened":
            db.execute("INSERT INTO balance VALUES (?, ?, 0)", (event.stream, event.data["owner"]))
        elif change is not None:
            db.execute(
                "UPDATE balance SET amount = amount + ? WHERE account = ?",
                (change * event.data["amount"], event.stream),
            )


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: examples/bank.py [DIRECTORY]", file=sys.stderr)
        return 2
    directory = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="bank-"))
    directory.mkdir(parents=True, exist_ok=True)
    store = SQLiteEventStore(directory / "events.db")
    accounts = Repository(store, Account, snapshot_every=3)

    def run(account_id: str, command: str, *args: Any) -> int:
        """One command: load, decide, save; the token of its last event (0: refused)."""
        account = accounts.load(account_id)
        try:
            getattr(account, command)(*args)
        except Rejected as why:
            print(f"  {command}{args} on {account_id}: refused: {why}")
            return 0
        result = accounts.save(account)
        return result.position if result else 0

    with Projector(store, Balances(), directory / "read.db") as balances:
        print("commands:")
        if not store.stream_version("acc-ada"):
            run("acc-ada", "open", "ada")
            run("acc-bob", "open", "bob")
        run("acc-ada", "deposit", 100)
        before = store.head()
        run("acc-ada", "withdraw", 30)
        run("acc-bob", "withdraw", 5)  # refused: bob has nothing
        # a transfer: two commands, each on its own aggregate
        run("acc-ada", "withdraw", 20)
        token = run("acc-bob", "deposit", 20)

        print("\nevents (global order):")
        for event in store.read_all():
            print(f"  {event.position:>3}  {event.stream}@{event.version}  {event.type} {dict(event.data)}")

        rows = balances.query(lambda db: db.execute("SELECT * FROM balance ORDER BY account").fetchall(), token=token)
        print(f"\nread model at position >= {token} (read your writes):")
        for account_id, owner, amount in rows:
            print(f"  {account_id} ({owner}): {amount}")

        then = accounts.load("acc-ada", at_position=before)
        print(f"\nacc-ada as of position {before}: balance {then.balance} (now {accounts.load('acc-ada').balance})")

        print("\ntwo writers decide on the same version of acc-bob:")
        first, second = accounts.load("acc-bob"), accounts.load("acc-bob")
        first.deposit(1)
        second.deposit(2)
        accounts.save(first)
        try:
            accounts.save(second)
        except WrongExpectedVersion as why:
            print(f"  the second is refused ({why}) and retries:")
            accounts.update("acc-bob", lambda account: account.deposit(2))
        print(f"  acc-bob: {accounts.load('acc-bob').balance}")
    store.close()
    print(f"\n(store and read model in {directory})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
