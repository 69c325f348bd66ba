"""An event store that records what its writers and its projectors do, in
``spec/event_store.py``'s vocabulary, for ``distcheck validate event_store``.

Where it sits: a wrapper around either backend (``TracedStore(store, trace)``),
used by tests and by anyone who wants to check a run of their own application
against the spec.  ``Repository.update`` announces each command (``begin``), and a
``Projector`` given the same ``TraceLog`` records its steps.  What is recorded:

- ``Read(w, stream)`` when a command starts (``Repository.update`` calls ``begin``):
  each command is a writer of its own, ``w1``, ``w2``, ... (the spec's writer has one
  transaction at a time; a command is one);
- ``Append(w)`` then ``Commit(w)`` when its append commits, or ``Conflict(w)`` when it
  is refused for a wrong expected version;
- the projector's ``Fetch`` and ``Handle`` for each event it applies (``PassHole``
  first for each position nobody used), and ``ProjectorCrash`` when a projector
  starts on a read model that had a checkpoint (a restart: what it held is gone).

Streams are named ``s1``, ``s2``, ... in the order they first appear (the event
carries the real name as ``name``), and the header's parameters are the sizes the
trace needs (``writers``, ``streams``), so the file validates as it is:
``distcheck validate event_store run.jsonl``.

To keep the trace's order the store's order, appends and reads of the global
order go through one lock here: a reader cannot see an event whose commit is not
recorded yet.  That serializes the writers of this process (the SQLite backend is
serialized anyway); it is for checking, not for production throughput.  A traced
append carries one event (the spec appends one at a time); an append not announced
by ``begin`` (a snapshot, an append with ``ANY``) is recorded as a command of its
own, read and appended at once.  Trace a run from an empty store: the spec's
positions start at 1.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from distcheck.impl.eventstore.store import (
    ANY,
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
)
from distcheck.impl.runtime.tracelog import TraceLog

SUBSCRIPTION = "subscription"


class TracedStore(EventStore):
    def __init__(self, inner: EventStore, trace: TraceLog) -> None:
        self.inner = inner
        self.trace = trace
        self._lock = threading.RLock()
        self._local = threading.local()
        self._streams: dict[str, str] = {}
        self._writers = 0
        # A run crashes projectors as often as it likes: no bound for its trace.
        trace.header["params"].update(writers=1, streams=1, appends=1, max_crashes=1_000_000)

    # ------------------------------------------------------------ names

    def stream_name(self, stream: str) -> str:
        """The spec's name for ``stream`` (s1, s2, ...)."""
        with self._lock:
            name = self._streams.get(stream)
            if name is None:
                name = self._streams[stream] = f"s{len(self._streams) + 1}"
                self.trace.header["params"]["streams"] = len(self._streams)
            return name

    def begin(self, stream: str) -> None:
        # The spec's Read is the moment the command reads the stream: recorded by the
        # next read of it from this thread (``read_stream``), under the lock, so that
        # the version the trace says it read is the one it got.
        self._local.reading = stream

    def _read(self, stream: str) -> str:
        """Record a writer's Read of ``stream`` (holding the lock); its name."""
        self._writers += 1
        writer = f"w{self._writers}"
        self.trace.header["params"].update(writers=self._writers, appends=1)
        self.trace.record(writer, {"type": "Read", "w": writer, "stream": self.stream_name(stream)}, name=stream)
        return writer

    # ------------------------------------------------------------ writing

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: int = ANY) -> AppendResult:
        if len(events) != 1:
            raise ValueError(f"a traced append carries one event (the spec appends one at a time), got {len(events)}")
        with self._lock:
            writer: str | None = getattr(self._local, "writer", None)
            self._local.writer = None
            if writer is None:
                # Not announced (a snapshot, a log written with ANY): a writer of its
                # own that reads and appends at once, under the lock.
                writer = self._read(stream)
            try:
                result = self.inner.append(stream, events, expected_version)
            except WrongExpectedVersion:
                self.trace.record(writer, {"type": "Conflict", "w": writer})
                raise
            self.trace.record(writer, {"type": "Append", "w": writer}, position=result.position)
            self.trace.record(writer, {"type": "Commit", "w": writer}, version=result.version)
            return result

    # ------------------------------------------------------------ reading

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        with self._lock:  # no event whose commit is not recorded yet
            return self.inner.read_all(after, limit)

    def read_stream(self, stream: str, after_version: int = 0, upto_version: int | None = None) -> list[RecordedEvent]:
        if getattr(self._local, "reading", None) != stream:
            return self.inner.read_stream(stream, after_version, upto_version)
        self._local.reading = None
        with self._lock:  # the read and its record at once: no commit between them
            events = self.inner.read_stream(stream, after_version, upto_version)
            self._local.writer = self._read(stream)
            return events

    def stream_version(self, stream: str) -> int:
        return self.inner.stream_version(stream)

    def head(self) -> int:
        # Not under the lock: waiters call this holding the store's append condition,
        # which an append notifies holding the lock (the other order would deadlock);
        # a waiter only decides whether to wait, and reads through ``read_all``.
        return self.inner.head()

    def append_condition(self) -> threading.Condition | None:
        return self.inner.append_condition()

    def close(self) -> None:
        self.inner.close()

    # ------------------------------------------------------------ the projector's steps

    def projector_restarted(self) -> None:
        self.trace.record(SUBSCRIPTION, {"type": "ProjectorCrash"})

    def projected(self, checkpoint: int, events: Sequence[RecordedEvent]) -> None:
        with self._lock:
            for event in events:
                for _ in range(checkpoint + 1, event.position):
                    self.trace.record(SUBSCRIPTION, {"type": "PassHole"})
                self.trace.record(SUBSCRIPTION, {"type": "Fetch"}, position=event.position)
                self.trace.record(SUBSCRIPTION, {"type": "Handle"})
                checkpoint = event.position
