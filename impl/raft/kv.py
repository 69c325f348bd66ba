"""The replicated state machine: a key-value store with client sessions.

Where it sits: every ``RaftNode`` applies its committed log, in order, to one
``KeyValueStore``.  A command carries its client and a sequence number; the store
remembers each client's last sequence number and result (its *session*), so a
command that is in the log twice (a client re-sent it to a new leader) is applied
once and its retry gets the first result.  Sessions are part of the state (and of
a snapshot), so every replica decides duplicates alike.

Sessions are evicted, deterministically, when there are more than ``max_sessions``:
the one whose last command is oldest in the log goes.  A client that comes back
after that many other clients retries at its own risk (its retry may apply twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from distcheck.impl.raft.messages import NOOP_ID


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
class Session:
    seq: int
    result: Any
    index: int  # the log index of the client's last command


@attrs.define
class KeyValueStore:
    data: dict[str, Any] = attrs.field(factory=dict)
    sessions: dict[str, Session] = attrs.field(factory=dict)
    max_sessions: int = 100_000

    def apply(self, index: int, cmd: Mapping[str, Any]) -> Any:
        """Apply the command at log ``index``; its result (a duplicate's: the first one)."""
        if cmd["id"] == NOOP_ID:
            return None
        client, seq = str(cmd["client"]), int(cmd["seq"])
        session = self.sessions.get(client)
        if session is not None and seq <= session.seq:
            return session.result if seq == session.seq else None  # applied already
        result = apply_op(self.data, cmd["op"])
        self.sessions[client] = Session(seq, result, index)
        if session is None and len(self.sessions) > self.max_sessions:
            oldest = min(self.sessions, key=lambda c: self.sessions[c].index)
            del self.sessions[oldest]
        return result

    def answered(self, client: str, seq: int) -> tuple[bool, Any]:
        """(applied?, result) of a client's command, if it is the client's last one."""
        session = self.sessions.get(client)
        if session is not None and session.seq == seq:
            return True, session.result
        return False, None

    def stale(self, client: str, seq: int) -> bool:
        """Whether the client has moved past ``seq`` (a late copy of an old command)."""
        session = self.sessions.get(client)
        return session is not None and seq < session.seq

    # ------------------------------------------------------------ snapshots

    def to_json(self) -> dict[str, Any]:
        return {
            "data": dict(self.data),
            "sessions": {c: [s.seq, s.result, s.index] for c, s in self.sessions.items()},
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any], max_sessions: int = 100_000) -> KeyValueStore:
        sessions = {str(c): Session(int(s[0]), s[1], int(s[2])) for c, s in dict(state["sessions"]).items()}
        return cls(dict(state["data"]), sessions, max_sessions)
