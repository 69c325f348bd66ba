"""What a Raft server replicates: the state machine seam.

Where it sits: a ``RaftNode`` (``impl.raft.node``) owns the log, elections and
commit; it hands each committed command, in log order, to one ``StateMachine`` and
answers the client with what ``apply`` returned.  ``impl.raft.kv`` is the key-value
machine the Raft service ships; ``impl.lock.replicated`` puts the lock service's
lease table on the same log.  A machine is deterministic: the same commands in the
same order give every replica the same state and the same results, and that is all
the node relies on.

``SessionMachine`` is the part every machine shares: **client sessions**.  A command
carries its client and a sequence number; the machine remembers each client's last
sequence number and result, so a command that is in the log twice (a client re-sent
it to a new leader) is applied once and its retry gets the first result.  Sessions
are state (and go in a snapshot), so every replica decides duplicates alike.  They
are evicted, deterministically, when there are more than ``max_sessions``: the one
whose last command is oldest in the log goes (a client that comes back after that
many others retries at its own risk: its retry may apply twice).

A subclass says which operations it takes (``check``), runs one (``execute``),
answers a linearizable read (``read``: the node calls it once ReadIndex has
confirmed its leadership), and turns its own state into JSON and back
(``state_json``, ``load_state``).  Membership changes (``add_server``,
``remove_server``) are the node's business: they reach the machine as log entries
like any other, are checked by the node, and apply as ``"changed"``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import attrs

from distcheck.impl.raft.messages import CHANGE_OPERATIONS, NOOP_ID


@attrs.define
class Session:
    seq: int
    result: Any
    index: int  # the log index of the client's last command


class SessionMachine(ABC):
    """A replicated state machine with client sessions (module docstring).  A
    subclass holds ``sessions`` and ``max_sessions`` (attrs fields, usually)."""

    sessions: dict[str, Session]
    max_sessions: int

    # ------------------------------------------------------------ what a subclass writes

    @abstractmethod
    def check(self, op: Mapping[str, Any]) -> None:
        """MessageError unless ``op`` is a client command this machine takes."""

    @abstractmethod
    def execute(self, op: Mapping[str, Any]) -> Any:
        """Run ``op`` (applied once, in log order); its result."""

    @abstractmethod
    def read(self, key: str) -> Any:
        """The answer to a linearizable read of ``key`` (a ``Query``)."""

    @abstractmethod
    def state_json(self) -> dict[str, Any]:
        """This machine's own state as JSON (sessions are added beside it)."""

    @abstractmethod
    def load_state(self, state: Mapping[str, Any]) -> None:
        """Replace this machine's own state with ``state_json``'s."""

    # ------------------------------------------------------------ what the node calls

    def apply(self, index: int, cmd: Mapping[str, Any]) -> Any:
        """Apply the command at log ``index``; its result (a duplicate's: the first one)."""
        if cmd["id"] == NOOP_ID:
            return None
        client, seq = str(cmd["client"]), int(cmd["seq"])
        session = self.sessions.get(client)
        if session is not None and seq <= session.seq:
            return session.result if seq == session.seq else None  # applied already
        op = cmd["op"]
        # the configuration changed when the entry was appended (impl.raft.node)
        result = "changed" if op["op"] in CHANGE_OPERATIONS else self.execute(op)
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

    def snapshot(self) -> dict[str, Any]:
        """The whole state, sessions included, as JSON (a Raft snapshot's ``state``)."""
        return {
            **self.state_json(),
            "sessions": {c: [s.seq, s.result, s.index] for c, s in self.sessions.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Become the machine ``snapshot`` described."""
        self.sessions = {str(c): Session(int(s[0]), s[1], int(s[2])) for c, s in dict(state["sessions"]).items()}
        self.load_state(state)
