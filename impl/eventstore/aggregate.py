"""Aggregates: objects whose state is the fold of their events, saved with an
expected version, loaded by replay (from a snapshot when there is one), with old
event shapes read as new ones (upcasters), and as of a past position or time.

Where it sits: on ``impl.eventstore.store.EventStore`` (either backend); the
command side of ``impl.eventstore.projection``'s command/query split.

    class Account(Aggregate):
        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.balance = 0

        def deposit(self, amount: int) -> None:         # a command: check, then record
            if amount <= 0:
                raise Rejected("a deposit is positive")
            self.record("Deposited", amount=amount)

        def apply(self, type: str, data: Mapping[str, Any]) -> None:   # how events change state
            if type == "Deposited":
                self.balance += data["amount"]

    accounts = Repository(store, Account, snapshot_every=100)
    account = accounts.load("account-1")      # or Account("account-1") for a new one
    account.deposit(10)
    token = accounts.save(account)            # WrongExpectedVersion if someone saved first

- **Optimistic concurrency.**  ``save`` appends the new events expecting the version
  the aggregate was loaded at: two commands decided on the same state cannot both
  be saved (spec/event_store's ``NoLostUpdate``); the loser loads again and retries
  (``Repository.update`` does that loop).
- **Snapshots.**  Every ``snapshot_every`` versions ``save`` also stores the
  aggregate's state (``snapshot()``, by default its public attributes as JSON) in
  the stream ``<id>.snapshots``; ``load`` starts from the latest snapshot and
  replays only the events after it.  Folding snapshot + tail equals folding every
  event: the tests check it for every upcast version.
- **Upcasters.**  An event's metadata carries its data's shape version (``schema``,
  1 unless given).  ``Upcasters.register(type, schema, fn)`` turns shape ``schema``
  into ``schema + 1``; loading runs the chain, so ``apply`` only ever sees the
  current shape.
- **Point in time.**  ``load(id, at_position=p)`` or ``at_time=t``: the aggregate
  as it was when the store's global position was ``p`` or at time ``t`` (a
  snapshot is used only if it is from before).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from distcheck.impl.eventstore.store import (
    NO_STREAM,
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
)

SNAPSHOT_SUFFIX = ".snapshots"


class Rejected(Exception):
    """A command the aggregate refuses: its business rules say no."""


class Aggregate(ABC):
    """State as the fold of events.  Subclasses define ``apply`` and commands that
    ``record`` events; the state is the instance's attributes."""

    def __init__(self, id: str) -> None:
        self.id = id
        #: the version of the last event applied (0: none)
        self.version = 0
        self._pending: list[NewEvent] = []

    @abstractmethod
    def apply(self, type: str, data: Mapping[str, Any]) -> None:
        """Change the state by one event (the current shape of its data)."""

    def record(self, type: str, **data: Any) -> None:
        """Record a new event: applied now, appended by ``Repository.save``."""
        self.apply(type, data)
        self.version += 1
        self._pending.append(NewEvent(type, data))

    @property
    def pending(self) -> list[NewEvent]:
        return list(self._pending)

    def snapshot(self) -> dict[str, Any]:
        """The state as a JSON object: the public attributes but id and version."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("id", "version")}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Set the state from ``snapshot()``'s output."""
        for k, v in state.items():
            setattr(self, k, v)


A = TypeVar("A", bound=Aggregate)

#: turns one event's data from one shape into the next
Upcast = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class Upcasters:
    """How old event shapes become new ones: ``register("Deposited", 1, fn)`` turns a
    shape-1 ``Deposited`` into shape 2; a chain runs 1 → 2 → 3 ...."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcast] = {}

    def register(self, type: str, schema: int, fn: Upcast) -> None:
        if (type, schema) in self._steps:
            raise ValueError(f"an upcaster from {type} shape {schema} is registered already")
        self._steps[(type, schema)] = fn

    def current(self, type: str) -> int:
        """The newest shape of ``type``."""
        schema = 1
        while (type, schema) in self._steps:
            schema += 1
        return schema

    def upcast(self, type: str, schema: int, data: Mapping[str, Any]) -> Mapping[str, Any]:
        while (type, schema) in self._steps:
            data = self._steps[(type, schema)](data)
            schema += 1
        return data


class Repository(Generic[A]):
    """Loads and saves aggregates of one class in an event store (see the module's
    docstring)."""

    def __init__(
        self,
        store: EventStore,
        factory: Callable[[str], A],
        *,
        snapshot_every: int | None = None,
        upcasters: Upcasters | None = None,
    ) -> None:
        if snapshot_every is not None and snapshot_every < 1:
            raise ValueError(f"snapshot_every is at least 1 (or None: no snapshots), got {snapshot_every}")
        self.store = store
        self.factory = factory
        self.snapshot_every = snapshot_every
        self.upcasters = upcasters or Upcasters()

    def load(self, id: str, *, at_position: int | None = None, at_time: float | None = None) -> A:
        """The aggregate from its events (a new one if it has none), as of now, or of
        a global position or a time."""
        aggregate = self.factory(id)
        after = 0
        snapshot = self._latest_snapshot(id, at_position, at_time)
        if snapshot is not None:
            aggregate.restore(snapshot["state"])
            after = aggregate.version = int(snapshot["version"])
        for event in self.store.read_stream(id, after_version=after):
            if (at_position is not None and event.position > at_position) or (
                at_time is not None and event.recorded_at > at_time
            ):
                break
            self._apply(aggregate, event)
        return aggregate

    def _apply(self, aggregate: Aggregate, event: RecordedEvent) -> None:
        schema = int(event.metadata.get("schema", 1))
        aggregate.apply(event.type, self.upcasters.upcast(event.type, schema, event.data))
        aggregate.version = event.version

    def _latest_snapshot(self, id: str, at_position: int | None, at_time: float | None) -> Mapping[str, Any] | None:
        if self.snapshot_every is None:
            return None
        stream = id + SNAPSHOT_SUFFIX
        count = self.store.stream_version(stream)
        # Newest first: the first one from before the point in time asked for.
        for version in range(count, 0, -1):
            (event,) = self.store.read_stream(stream, after_version=version - 1, upto_version=version)
            data = event.data
            if (at_position is None or int(data["position"]) <= at_position) and (
                at_time is None or float(data["recorded_at"]) <= at_time
            ):
                return data
        return None

    def save(self, aggregate: A) -> AppendResult | None:
        """Append the aggregate's new events, expecting the version it was loaded at;
        the result's position is the read-your-writes token.  None if it had none."""
        pending = aggregate._pending
        if not pending:
            return None
        loaded = aggregate.version - len(pending)
        # New events are written in the newest shape their upcasters know.
        shaped = [attrs.evolve(e, metadata={**e.metadata, "schema": self.upcasters.current(e.type)}) for e in pending]
        result = self.store.append(aggregate.id, shaped, expected_version=loaded if loaded else NO_STREAM)
        aggregate._pending = []
        every = self.snapshot_every
        if every is not None and result.version // every > loaded // every:
            self._save_snapshot(aggregate, result)
        return result

    def _save_snapshot(self, aggregate: A, result: AppendResult) -> None:
        # The state is the aggregate's at ``result.version``, just saved: loading
        # replays from there.  Its position and time say when it is from.
        (last,) = self.store.read_stream(aggregate.id, result.version - 1, result.version)
        data = {
            "version": result.version,
            "position": result.position,
            "recorded_at": last.recorded_at,
            "state": aggregate.snapshot(),
        }
        self.store.append(aggregate.id + SNAPSHOT_SUFFIX, [NewEvent("Snapshot", data)])

    def update(self, id: str, command: Callable[[A], None], *, attempts: int = 10) -> AppendResult | None:
        """Load, run ``command`` on the aggregate, save; load again and retry when
        another writer saved first (at most ``attempts`` times)."""
        for attempt in range(attempts):
            self.store.begin(id)
            aggregate = self.load(id)
            command(aggregate)
            try:
                return self.save(aggregate)
            except WrongExpectedVersion:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")
