"""The Raft service's state machine: a key-value store with client sessions.

Where it sits: a ``RaftNode`` applies its committed log, in order, to one state
machine (``impl.raft.machine``); this is the one the key-value service uses, and
the default.  Client sessions (a command re-sent to a new leader is applied once,
its retry gets the first result) come from ``SessionMachine``; this module adds the
operations ``put``, ``get``, ``cas`` and ``delete`` on a dict of JSON values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from distcheck.impl.raft.machine import Session, SessionMachine
from distcheck.impl.raft.messages import check_op
from distcheck.impl.runtime.actor import MessageError

__all__ = ["KeyValueStore", "Session", "apply_op"]


def apply_op(data: dict[str, Any], op: Mapping[str, Any]) -> Any:
    """Run ``op`` on ``data`` (changed in place); its result."""
    kind, key = op["op"], str(op["key"])
    if kind == "get":
        return data.get(key)
    if kind == "put":
        data[key] = op["value"]
        return None
    if kind == "cas":
        if data.get(key) == op["expected"]:
            data[key] = op["value"]
            return True
        return False
    if kind == "delete":
        return data.pop(key, None) is not None
    if kind in ("add_server", "remove_server"):
        return "changed"  # the configuration changed when the entry was appended (impl.raft.node)
    raise ValueError(f"unknown operation {kind!r}; allowed: put, get, cas, delete, add_server, remove_server")


@attrs.define
class KeyValueStore(SessionMachine):
    data: dict[str, Any] = attrs.field(factory=dict)
    sessions: dict[str, Session] = attrs.field(factory=dict)
    max_sessions: int = 100_000

    def check(self, op: Mapping[str, Any]) -> None:
        check_op(op, "Command.op")
        if op["op"] == "get":
            raise MessageError("Command.op: reads are Query messages")

    def execute(self, op: Mapping[str, Any]) -> Any:
        return apply_op(self.data, op)

    def read(self, key: str) -> Any:
        return self.data.get(key)

    def state_json(self) -> dict[str, Any]:
        return {"data": dict(self.data)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.data = dict(state["data"])

    # ------------------------------------------------------------ snapshots (as before the seam)

    def to_json(self) -> dict[str, Any]:
        return self.snapshot()

    @classmethod
    def from_json(cls, state: Mapping[str, Any], max_sessions: int = 100_000) -> KeyValueStore:
        store = cls(max_sessions=max_sessions)
        store.restore(state)
        return store
