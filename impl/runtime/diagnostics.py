"""A bounded ring of diagnostic lines, safe to read while threads write to it.

Where it sits: ``FreeRuntime.diagnostics`` (``impl.runtime.free``) notes rejected
frames, refused connections, failed accepts and lost sends here.  A hostile or
merely busy peer can cause one line per connection or per frame, so the ring
keeps the newest ``kept`` lines and counts the ones it dropped: memory stays
bounded however long a node runs.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator


class Diagnostics:
    """The newest ``kept`` lines, oldest first; ``dropped`` counts the lines pushed out."""

    def __init__(self, kept: int) -> None:
        if kept < 1:
            raise ValueError(f"a diagnostics ring keeps at least one line, not {kept}")
        self._lines: deque[str] = deque(maxlen=kept)
        self._lock = threading.Lock()
        self.kept = kept
        self.dropped = 0

    def append(self, line: str) -> None:
        with self._lock:
            if len(self._lines) == self.kept:
                self.dropped += 1
            self._lines.append(line)

    def lines(self) -> list[str]:
        """A copy of the lines kept now, oldest first."""
        with self._lock:
            return list(self._lines)

    def __iter__(self) -> Iterator[str]:
        # over a copy: a deque raises if another thread appends while it is iterated
        return iter(self.lines())

    def __len__(self) -> int:
        with self._lock:
            return len(self._lines)

    def __repr__(self) -> str:
        return f"Diagnostics(kept={self.kept}, dropped={self.dropped}, lines={self.lines()!r})"
