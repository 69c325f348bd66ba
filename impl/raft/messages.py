"""The Raft service's messages and timers, declared once.

Where it sits: ``impl.raft.node`` (the ``RaftNode`` actor) accepts ``NODE_MESSAGES``;
the clients (``impl.raft.client``) send ``Command``, ``Query`` and ``Status`` and decode
the answers with ``CLIENT_MESSAGES``.  The wire form is ``{"type": <class name>,
<field>: ...}``.

The four Raft messages carry the fields of raft.tla's messages under the names the
trace uses (``term``, ``last_log_term``, ...), plus a few a real implementation needs:
the entries' commands (the spec sees only their ids), ``read_round`` (ReadIndex: a
follower's answer confirms the leader's leadership for that round) and ``last_index``
(a hint for backing up ``next_index`` fast).  ``source`` and ``dest`` are not on the
wire: the envelope says who sent a message, and it reached its destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from distcheck.impl.runtime.actor import MessageError, Messages

NOOP_ID = "noop"

#: the operations that change the configuration, whatever the state machine
#: (``impl.raft.node`` checks and applies them; ``key`` names the server)
CHANGE_OPERATIONS: dict[str, frozenset[str]] = {
    "add_server": frozenset({"op", "key"}),
    "remove_server": frozenset({"op", "key"}),
}

#: the operations of the key-value store, with the fields each takes
OPERATIONS: dict[str, frozenset[str]] = {
    "put": frozenset({"op", "key", "value"}),
    "cas": frozenset({"op", "key", "expected", "value"}),
    "delete": frozenset({"op", "key"}),
    "get": frozenset({"op", "key"}),
    **CHANGE_OPERATIONS,
}


def check_op(op: object, where: str = "op", operations: Mapping[str, frozenset[str]] = OPERATIONS) -> None:
    """MessageError unless ``op`` is one of ``operations`` with exactly its fields and a string ``key``."""
    kind = op.get("op") if isinstance(op, Mapping) else None
    if not isinstance(op, Mapping) or not isinstance(kind, str) or kind not in operations:
        raise MessageError(f"{where} must be one of {', '.join(operations)}, got {op!r}")
    if set(op) != operations[kind]:
        raise MessageError(f"{where}: a {kind} takes the fields {', '.join(sorted(operations[kind]))}")
    if not isinstance(op["key"], str):
        raise MessageError(f"{where}.key must be a string, got {op['key']!r}")


def check_shape(op: object, where: str = "op") -> None:
    """MessageError unless ``op`` looks like an operation of some state machine: an
    object whose ``op`` is a string.  Which operations there are is the machine's
    business (``impl.raft.machine``); the server checks a client's command against
    its machine before it goes in the log."""
    if not isinstance(op, Mapping) or not isinstance(op.get("op"), str):
        raise MessageError(f"{where} must be an object whose op is a string, got {op!r}")


def check_command(cmd: object, where: str = "cmd") -> None:
    """MessageError unless ``cmd`` is a log entry's command: the no-op ``{"id": "noop"}``
    or ``{"id": "client:seq", "client": ..., "seq": ..., "op": {...}}``."""
    if not isinstance(cmd, Mapping) or not isinstance(cmd.get("id"), str):
        raise MessageError(f"{where} must be an object with a string id")
    if cmd["id"] == NOOP_ID:
        if set(cmd) != {"id"}:
            raise MessageError(f"{where}: the no-op has no other field")
        return
    seq = cmd.get("seq")
    if set(cmd) != {"id", "client", "seq", "op"} or not isinstance(cmd.get("client"), str):
        raise MessageError(f"{where} must have the fields id, client, seq, op")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise MessageError(f"{where}.seq must be an integer")
    if cmd["id"] != command_id(cmd["client"], seq):
        raise MessageError(f"{where}.id must be client:seq")
    check_shape(cmd["op"], f"{where}.op")


def command_id(client: str, seq: int) -> str:
    """The value a log entry holds, as the trace names it: ``c1:3`` (or ``noop``)."""
    return f"{client}:{seq}"


# ------------------------------------------------------------------ Raft (node ↔ node)


@attrs.frozen
class RequestVoteRequest:
    term: int
    last_log_term: int
    last_log_index: int


@attrs.frozen
class RequestVoteResponse:
    term: int
    vote_granted: bool


@attrs.frozen
class AppendEntriesRequest:
    term: int
    prev_log_index: int
    prev_log_term: int
    #: [term, command] pairs.  Checked by ``validate``: the generic check of a
    #: nested type costs several times more, on every entry of every request.
    entries: tuple[Any, ...]
    commit_index: int
    read_round: int = 0

    def validate(self) -> None:
        for i, entry in enumerate(self.entries):
            where = f"AppendEntriesRequest.entries[{i}]"
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                raise MessageError(f"{where} must be a [term, command] pair")
            term, cmd = entry
            if isinstance(term, bool) or not isinstance(term, int):
                raise MessageError(f"{where}: the term must be an integer")
            check_command(cmd, where)


@attrs.frozen
class AppendEntriesResponse:
    term: int
    success: bool
    match_index: int
    read_round: int = 0
    last_index: int = 0  # the follower's last log index: where the leader may back up to


@attrs.frozen
class PreVoteRequest:
    """Would you vote for me in ``term`` (my term + 1)?  Changes nothing at the receiver."""

    term: int
    last_log_term: int
    last_log_index: int


@attrs.frozen
class PreVoteResponse:
    term: int  # the request's term, so that answers to an older round are ignored
    granted: bool


@attrs.frozen
class InstallSnapshot:
    """The leader's snapshot, for a follower that needs entries the leader compacted away."""

    term: int
    last_included_index: int
    last_included_term: int
    state: dict[str, Any]


# ------------------------------------------------------------------ client ↔ node


@attrs.frozen
class Command:
    """Apply ``op`` once (``client``, ``seq`` name it: a retried copy is applied once).
    ``route`` is echoed in the reply (for a proxy in front of the servers to find its
    connection; the servers themselves answer on the connection a request came on)."""

    route: str
    client: str
    seq: int
    op: dict[str, Any]

    def validate(self) -> None:
        check_shape(self.op, "Command.op")


@attrs.frozen
class Query:
    """A linearizable read (ReadIndex): not logged, answered by the leader."""

    route: str
    client: str
    seq: int
    key: str


@attrs.frozen
class Status:
    route: str


@attrs.frozen
class Reply:
    """``ok``: ``result`` is the answer; otherwise this node is not the leader
    (``leader`` is its guess of who is, or None)."""

    route: str
    client: str
    seq: int
    ok: bool
    result: Any
    leader: str | None


@attrs.frozen
class StatusReply:
    route: str
    name: str
    role: str
    term: int
    leader: str | None
    last_index: int
    commit_index: int
    last_applied: int
    members: tuple[str, ...]  # the configuration (the last in its log)


@attrs.frozen
class Replies:
    """Several answers to one destination in one message (what one step produced)."""

    items: tuple[dict[str, Any], ...]


RAFT_MESSAGES = (
    RequestVoteRequest,
    RequestVoteResponse,
    AppendEntriesRequest,
    AppendEntriesResponse,
    PreVoteRequest,
    PreVoteResponse,
    InstallSnapshot,
)
CLIENT_REQUESTS = Messages(Command, Query, Status)
NODE_MESSAGES = Messages(*RAFT_MESSAGES, Command, Query, Status)
CLIENT_MESSAGES = Messages(Reply, StatusReply, Replies)


# ------------------------------------------------------------------ timers


@attrs.frozen
class ElectionTimer:
    """The end of a failure detector's period (randomized length)."""


@attrs.frozen
class HeartbeatTimer:
    pass


@attrs.frozen
class FlushTimer:
    """Group commit: append what clients queued since the last flush, in one write."""


@attrs.frozen
class SyncTimer:
    """Group commit at a follower: one fsync for the requests read together, then
    their answers (armed with no delay, it fires after the messages already read)."""


@attrs.frozen
class QuorumTimer:
    """Check-quorum: has this leader heard from a majority in the last period?"""
