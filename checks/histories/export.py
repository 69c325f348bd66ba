"""Writing a client history in our JSON Lines format (docs/histories.md).

Where it sits: the writing half of ``checks.histories.formats``'s JSON Lines reader.
``distcheck simulate SPEC --history-out FILE`` writes the clients' history of a run
of a key-value implementation with it, so that ``distcheck linearizable FILE
--model kv`` (or any other checker that reads the format) can judge it.

Events are written in the order of their positions (an operation's ``call`` and
``ret``), which is a real-time order; an operation with no return is left open to
the end of the file, which the format reads as "may or may not have taken effect".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from distcheck.checks.histories.linearizability import Operation


def history_lines(operations: Iterable[Operation]) -> list[str]:
    """The file's lines, one event each."""
    ops = sorted(operations, key=lambda o: o.call)
    next_call: dict[int, int] = {}  # index in ops -> the same client's next invocation
    latest: dict[str, int] = {}
    for i in reversed(range(len(ops))):
        if ops[i].client in latest:
            next_call[i] = ops[latest[ops[i].client]].call
        latest[ops[i].client] = i
    events: list[tuple[float, dict[str, Any]]] = []
    for i, op in enumerate(ops):
        events.append((op.call, {"client": op.client, "type": "invoke", "op": dict(op.op)}))
        if op.ret is not None:
            events.append((op.ret, {"client": op.client, "type": "ok", "result": op.result}))
        elif i in next_call:
            # The client gave up and went on: "info" (it may have taken effect), just
            # before its next invocation, as a client that logs its timeouts writes it.
            events.append((next_call[i] - 0.5, {"client": op.client, "type": "info", "error": "no answer"}))
    events.sort(key=lambda e: e[0])
    return [json.dumps(event, sort_keys=True) for _, event in events]


def write_history(operations: Iterable[Operation], path: Path) -> int:
    """Write the history to ``path``; the number of operations written."""
    ops = list(operations)
    path.write_text("".join(line + "\n" for line in history_lines(ops)), encoding="utf-8")
    return len(ops)
