"""Client histories: what clients invoked and what they were answered, in one
real-time order, for the linearizability checks of the replicated services
(``impl.paxos``, ``impl.raft``).

Where it sits: a runtime helper every service's clients share; it knows no protocol.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import attrs


@attrs.define
class HistoryEntry:
    client: str
    op: dict[str, Any]
    call: int
    ret: int | None = None  # None: no answer (the client gave up)
    result: Any = None


class History:
    """What clients invoked and what they were answered, in one real-time order.

    The order is a shared counter read once per event, between the client's
    invocation and its response, so its numbers respect real time.  It needs no
    lock, and so no yield point that would change the controlled scheduler's runs:
    in controlled mode one thread runs at a time, and in free mode (where the
    clients are threads of one process) ``next`` on an ``itertools.count`` and
    ``list.append`` are each atomic."""

    def __init__(self) -> None:
        self.entries: list[HistoryEntry] = []
        self._clock = itertools.count(1)

    def call(self, client: str, op: Mapping[str, Any]) -> HistoryEntry:
        entry = HistoryEntry(client, dict(op), next(self._clock))
        self.entries.append(entry)
        return entry

    def ret(self, entry: HistoryEntry, result: Any) -> None:
        entry.result = result
        entry.ret = next(self._clock)
