"""A Raft server's durable state: current term, vote, log and snapshot.

Where it sits: ``impl.raft.node`` keeps its persistent state in one ``RaftLog``, on
the runtime's durable storage (``ctx.storage``), and never acts on a change before
``sync()`` made it durable: a vote, a new term or a follower's appended entries are
synced before any message that depends on them leaves, and a leader's new entries
before it counts itself among the servers that store them.  Entries are indexed from 1, as in the
dissertation; index 0 has term 0.

On disk it is one append-only log of records, replayed at start:

- ``{"hs": [term, voted_for]}``: the hard state changed;
- ``{"at": i, "e": [[term, command], ...]}``: entries written from index ``i`` on, after
  cutting the log back to ``i - 1`` (a conflict's truncation and an append are one
  record, so a crash cannot separate them);
- ``{"snap": {"index": i, "term": t, "state": ...}}``: a snapshot of the state machine
  through index ``i`` (taken here, or installed from the leader); entries up to ``i``
  are dropped, and later ones kept only if the log agrees with the snapshot at ``i``.

Compaction drops entries from memory and from what recovery replays; the file
itself only grows (the runtime's logs are append-only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from distcheck.impl.runtime.api import Storage

Entry = tuple[int, dict[str, Any]]  # (term, command)


class RaftLog:
    """Persistent state, as last written (``sync`` makes it durable)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.term = 1  # terms start at 1, as in raft.tla
        self.voted_for: str | None = None
        self.base_index = 0  # the snapshot's last included index (0: none)
        self.base_term = 0
        self.snapshot: dict[str, Any] | None = None
        self.entries: list[Entry] = []
        self.recovered = False  # whether there was anything to read
        for record in storage.records():
            self.recovered = True
            if "hs" in record:
                self.term, self.voted_for = int(record["hs"][0]), record["hs"][1]
            elif "at" in record:
                self._write(int(record["at"]), [(int(t), dict(c)) for t, c in record["e"]])
            elif "snap" in record:
                snap = record["snap"]
                self._snap(int(snap["index"]), int(snap["term"]), dict(snap["state"]))

    # ------------------------------------------------------------ reading

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1][0] if self.entries else self.base_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; 0 at index 0; None when it is past the
        end or compacted away (below the snapshot)."""
        if index == self.base_index:
            return self.base_term
        if index < self.base_index or index > self.last_index:
            return None
        return self.entries[index - self.base_index - 1][0]

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.base_index - 1]

    def slice(self, first: int, last: int) -> list[Entry]:
        """Entries ``first..last`` (inclusive); ``first`` must be above the snapshot."""
        return self.entries[first - self.base_index - 1 : last - self.base_index]

    # ------------------------------------------------------------ writing (then sync)

    def set_hard_state(self, term: int, voted_for: str | None) -> None:
        if (term, voted_for) != (self.term, self.voted_for):
            self.term, self.voted_for = term, voted_for
            self.storage.append({"hs": [term, voted_for]})

    def write(self, at: int, entries: Sequence[Entry]) -> list[Entry]:
        """Cut the log back to ``at - 1`` and append ``entries`` there; the entries cut."""
        if entries or at <= self.last_index:
            self.storage.append({"at": at, "e": [[t, c] for t, c in entries]})
        return self._write(at, entries)

    def _write(self, at: int, entries: Sequence[Entry]) -> list[Entry]:
        if at <= self.base_index:  # the snapshot covers the front: it is committed, hence equal
            entries = entries[self.base_index + 1 - at :]
            at = self.base_index + 1
        cut = self.entries[at - self.base_index - 1 :]
        del self.entries[at - self.base_index - 1 :]
        self.entries.extend(entries)
        return cut

    def save_snapshot(self, index: int, term: int, state: dict[str, Any]) -> None:
        self.storage.append({"snap": {"index": index, "term": term, "state": state}})
        self._snap(index, term, state)

    def _snap(self, index: int, term: int, state: dict[str, Any]) -> None:
        if index <= self.base_index:
            return
        if self.term_at(index) == term:
            self.entries = self.entries[index - self.base_index :]
        else:
            self.entries = []
        self.base_index, self.base_term, self.snapshot = index, term, state

    def sync(self) -> None:
        self.storage.sync()
