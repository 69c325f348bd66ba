"""Recording a node's steps as a distcheck trace (JSON Lines, docs/trace-format.md).

Where it sits: both runtimes own one ``TraceLog`` and append to it whenever a node
calls ``ctx.record``.  It writes the documented format itself, as a program in any
other language would: impl/ does not import checks/ (DESIGN.md, dependency rules),
and the file is checked by the same ``distcheck validate`` that external users run.

An implementation does not know the spec's global state, so its steps carry no
``state``; step 0 is the initial state (actor and action null), then one line per
recorded step.  Extra keys (``txn``, ``node``) are allowed and ignored by validation.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class TraceLog:
    """The steps recorded so far, in the order they took effect.  Appends are
    serialised by a lock, so in free mode the order of lines is a real order of
    events (each node records a step before its messages leave)."""

    def __init__(
        self,
        spec: str,
        params: Mapping[str, Any] | None = None,
        variant: str | None = None,
        source: str = "impl",
    ) -> None:
        self.header: dict[str, Any] = {
            "format": "distcheck-trace",
            "version": 1,
            "spec": spec,
            "params": dict(params or {}),
            "variant": variant,
            "source": source,
            "violation": None,
        }
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, actor: str, action: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        with self._lock:
            event: dict[str, Any] = {"step": len(self.events) + 1, "actor": actor, "action": dict(action)}
            event.update(extra)
            # A copy through JSON: what is recorded is what a file would hold.
            event = json.loads(json.dumps(event))
            self.events.append(event)
            return event

    def lines(self) -> list[str]:
        """The file's lines: the header, the initial step, then every event."""
        with self._lock:
            events = list(self.events)
        out = [json.dumps(self.header, sort_keys=True)]
        out.append(json.dumps({"action": None, "actor": None, "step": 0}, sort_keys=True))
        out += [json.dumps(e, sort_keys=True) for e in events]
        return out

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def write(self, path: Path) -> None:
        path.write_text(self.text())
