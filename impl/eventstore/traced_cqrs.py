"""A CQRS application that records its steps in ``spec/cqrs.py``'s vocabulary, for
``distcheck validate cqrs``: one account's commands, a projector (in-process, or fed
by the broker through ``impl.eventstore.bus``) and the clients' queries.

Where it sits: beside ``traced.TracedStore`` (which records spec/event_store's
vocabulary); used by tests and by anyone who wants to check a run of their own
account-like application against the spec.  The spec's command side is one bank
account, so this records an application that is one: deposits and withdrawals of
whole amounts on one stream.

    trace = TraceLog("cqrs")
    cqrs = CqrsTrace(SQLiteEventStore("events.db"), trace)
    accounts = Repository(cqrs.store, Account)             # the store, recorded
    with Projector(cqrs.store, Balances(), "read.db") as balances:
        with cqrs.command("ada", "Deposit", 5):            # the spec's name for it
            accounts.update("acc", lambda a: a.deposit(5))
        balance = cqrs.query("ada", balances, lambda db: ...)   # waits for ada's token
    trace.write(Path("run.jsonl"))                          # distcheck validate cqrs run.jsonl

What is recorded, and when:

- ``Deposit(c, amount)`` or ``Withdraw(c, amount)`` for each command, under a lock
  held for the whole command (load, decide, append): the spec's command side takes
  one command at a time.  A withdrawal refused by the aggregate (``Rejected``) is
  recorded as the spec's rejected withdrawal, with no event.
- ``Deliver(p)``, ``Project(p)`` and ``Acknowledge(p)`` for each event a projector
  applies, when its transaction commits (under the same lock, so that no query reads
  a checkpoint the trace has not reached).  The read model's checkpoint is the
  acknowledgement that counts: a later copy of the event is dropped by it, and is
  not recorded (the spec's bus need not deliver it), nor is an event a bus projector
  gives back to come again later.  So a projector that applies a copy shows as
  ``Deliver(p)`` after ``Acknowledge(p)``, which the spec refuses.
- ``Query(c)`` with what it read (``read``: the checkpoint and the balance), once the
  read model has reached the position of c's latest accepted command: the token is
  the client's, kept here.

Clients are named ``c1``, ``c2``, ... in the order they first appear, and positions
are the account's events counted in commit order (the spec's log); the header's
parameters are the sizes the trace needs.  The store must hold only the account's
events (no other stream, no snapshots): a projector applying any other event is an
error here.  A projector's crash is not recorded: between events it holds nothing the
spec would lose.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal

from distcheck.impl.eventstore.aggregate import Rejected
from distcheck.impl.eventstore.projection import Projector
from distcheck.impl.eventstore.store import ANY, AppendResult, EventStore, NewEvent, RecordedEvent
from distcheck.impl.runtime.tracelog import TraceLog

BUS, PROJECTOR = "bus", "projector"

Command = Literal["Deposit", "Withdraw"]


class CqrsTrace:
    """Records one account's commands, its projectors and its queries (see the module)."""

    def __init__(self, store: EventStore, trace: TraceLog) -> None:
        self.trace = trace
        self.store: EventStore = _RecordingStore(store, self)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._clients: dict[str, str] = {}
        self._commands: dict[str, int] = {}
        self._tokens: dict[str, int] = {}  # spec client -> position of its latest accepted command
        self._positions: dict[int, int] = {}  # the store's position -> the spec's
        trace.header["params"].update(clients=1, commands=1, max_amount=1)

    def _client(self, name: str) -> str:
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = f"c{len(self._clients) + 1}"
            self.trace.header["params"]["clients"] = len(self._clients)
        return client

    @contextmanager
    def command(self, client: str, kind: Command, amount: int) -> Iterator[None]:
        """Run one command of ``client`` inside this block: a deposit or a withdrawal of
        ``amount``.  It appends one event, or is refused with ``Rejected`` (a withdrawal)."""
        if kind not in ("Deposit", "Withdraw"):
            raise ValueError(f"a command is Deposit or Withdraw (spec/cqrs's), got {kind!r}")
        if amount < 1:
            raise ValueError(f"an amount is at least 1, got {amount}")
        with self._lock:
            self._local.appended = None
            rejected = False
            try:
                yield
            except Rejected:
                rejected = True
                raise
            finally:
                self._commanded(client, kind, amount, rejected)

    def _commanded(self, name: str, kind: Command, amount: int, rejected: bool) -> None:
        appended: AppendResult | None = self._local.appended
        self._local.appended = None
        if appended is None and not (rejected and kind == "Withdraw"):
            return  # failed before it appended (or a refused deposit): no step of the spec
        client = self._client(name)
        params = self.trace.header["params"]
        self._commands[client] = self._commands.get(client, 0) + 1
        params["commands"] = max(params["commands"], self._commands[client])
        params["max_amount"] = max(params["max_amount"], amount)
        action = {"type": kind, "c": client, "amount": amount}
        if appended is None:
            self.trace.record(client, action, position=0)
            return
        position = self._positions[appended.position] = len(self._positions) + 1
        self._tokens[client] = position
        self.trace.record(client, action, position=position)

    def _appended(self, result: AppendResult) -> None:
        if getattr(self._local, "appended", 1) is not None:
            raise RuntimeError("a traced append is made inside `command` and appends one event")
        self._local.appended = result

    def _projected(self, events: Sequence[RecordedEvent]) -> None:
        for event in events:
            p = self._positions.get(event.position)
            if p is None:
                raise RuntimeError(f"event {event.position} ({event.stream}) was not appended by a traced command")
            self.trace.record(BUS, {"type": "Deliver", "p": p})
            self.trace.record(PROJECTOR, {"type": "Project", "p": p})
            self.trace.record(PROJECTOR, {"type": "Acknowledge", "p": p})

    def query(
        self, client: str, projector: Projector, balance: Callable[[sqlite3.Connection], int], timeout: float = 5.0
    ) -> int:
        """``balance(db)`` on the read model once it holds ``client``'s latest accepted
        command (``StaleRead`` after ``timeout`` seconds), recorded with its checkpoint."""
        spec_client = self._client(client)
        token = self._tokens.get(spec_client, 0)
        store_token = next((s for s, p in self._positions.items() if p == token), 0)
        projector.query(lambda db: None, token=store_token, timeout=timeout)  # waits, or StaleRead
        with self._lock:  # no commit of the projector between the two reads
            checkpoint = projector.checkpoint
            read = projector.query(balance)
            spec_checkpoint = self._positions.get(checkpoint, 0)
            self.trace.record(
                spec_client, {"type": "Query", "c": spec_client}, read={"checkpoint": spec_checkpoint, "balance": read}
            )
            return read


class _RecordingStore(EventStore):
    """The store as the application and its projectors see it: appends and reads under
    the recorder's lock, so that no reader sees an event whose command is not recorded."""

    def __init__(self, inner: EventStore, recorder: CqrsTrace) -> None:
        self.inner = inner
        self.recorder = recorder

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: int = ANY) -> AppendResult:
        if len(events) != 1:
            raise ValueError(f"a traced command appends one event (spec/cqrs's), got {len(events)}")
        with self.recorder._lock:
            result = self.inner.append(stream, events, expected_version)
            self.recorder._appended(result)
            return result

    def read_stream(self, stream: str, after_version: int = 0, upto_version: int | None = None) -> list[RecordedEvent]:
        with self.recorder._lock:
            return self.inner.read_stream(stream, after_version, upto_version)

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        with self.recorder._lock:
            return self.inner.read_all(after, limit)

    def stream_version(self, stream: str) -> int:
        return self.inner.stream_version(stream)

    def head(self) -> int:
        return self.inner.head()  # not under the lock: see traced.TracedStore.head

    def append_condition(self) -> threading.Condition | None:
        return self.inner.append_condition()

    def close(self) -> None:
        self.inner.close()

    def committing(self) -> AbstractContextManager[Any]:
        return self.recorder._lock

    def projected(self, checkpoint: int, events: Sequence[RecordedEvent]) -> None:
        self.recorder._projected(events)
