"""A Raft server (``RaftNode``): leader election, log replication, a key-value
state machine with client sessions, linearizable reads, as in Ongaro's dissertation.

Where it sits: an actor on ``impl.runtime`` (so the same code runs under the
controlled scheduler and in free mode over TCP); ``impl.raft.log`` holds its
durable state, ``impl.raft.machine`` the seam to the state machine it
replicates (``impl.raft.kv``'s key-value store by default), ``impl.raft.messages`` what it
speaks.  It mirrors the abstraction of Ongaro's raft.tla without importing any
spec: every spec step is recorded with ``ctx.record`` in raft.tla's vocabulary
(``Timeout``, ``RequestVote``, ``BecomeLeader``, ``ClientRequest``,
``AdvanceCommitIndex``, ``AppendEntries``, ``Receive``, ``Restart``, and
``StepDown`` for check-quorum), with the node's state after the step as extra keys.
docs/raft-service.md lists the records.

The protocol, and where it departs from raft.tla on purpose:

- **Terms** start at 1.  Any message with a higher term makes the receiver adopt
  it (follower, no vote) in the same step, durable before anything else.
- **Election.**  A follower that hears from no leader for a randomized election
  timeout (in [t, 2t]) times out: new term, votes for itself (in the trace, as
  raft.tla has it, it sends itself a RequestVote and grants it) and asks the
  others.  A vote is granted once per term, to a candidate whose log is at least
  as up-to-date (last term, then length), and is durable before the answer leaves.
- **Pre-vote** (option): before timing out a node asks whether it could win; a node
  that heard from a leader within the (shortest) election timeout, or has a more
  up-to-date log, says no.  Nothing changes at the receiver, so a partitioned node that comes
  back does not depose a working leader.
- **Replication.**  The leader sends entries from ``next_index``; the follower
  checks ``prev_log_index/term``, truncates only at a real conflict (an entry of
  another term at the same index) and never on a stale or reordered request whose
  entries it already has, appends, syncs, and answers with the index it matches.
  ``commit_index`` in a request is min(leader's commit, index of its last entry);
  a follower's commit index never moves back (raft.tla copies the request's, which
  a reordered request could lower).
- **Commit.**  A leader commits an index a majority has stored, only if the entry
  is of its own term (Figure 8); a new leader appends a no-op of its term at once.
- **Client sessions.**  Commands are ``(client, seq, op)``; the store applies a
  command once and answers a retry with the first result.  The leader does not
  append a command already in its log or already applied.
- **Reads** (ReadIndex): the leader notes its commit index, confirms it is still
  leader by a round of AppendEntries answered by a majority in its term, waits
  until it has applied that index, and answers from its store.  Until its no-op
  is committed it waits.
- **Check-quorum** (option): a leader that heard from no majority during an
  election timeout steps down (same term).
- **Batching and pipelining** (``RaftOptions``): the leader appends all commands
  queued since its last flush in one write and one fsync (group commit, up to
  ``max_batch``) and sends them in one AppendEntries; with ``pipeline`` it sends
  the next batch without waiting for the previous answer (``next_index`` moves
  on when it sends), up to ``max_inflight`` batches per follower.  A follower
  syncs each request's entries once.  The conformance settings
  (``RaftOptions.conformance()``) are one entry per request, no pipelining,
  ``next_index`` backed up by one per refusal, no pre-vote, no check-quorum, and
  ``tla_steps``: every raft.tla step taken and logged on its own, to its letter
  (a ``Receive`` per UpdateTerm, per entry removed, per entry appended).
- **Variants** (``VARIANTS``): deliberately broken servers that the conformance
  checks must catch (``unsafe_commit``, ``volatile_vote``, ``stale_read``).
- **Snapshots** (option ``snapshot_every``): after that many applied entries a
  node snapshots its store (sessions included) and drops the log up to there; a
  follower that needs compacted entries gets ``InstallSnapshot``.
- **Membership changes**, one server at a time (dissertation §4.1): a change is a
  log entry and takes effect when appended; every majority is counted among the
  members of the last configuration in the log.  The leader admits one change at a
  time, and only once it has committed an entry of its term; a server being added
  first catches up as a learner.  ``peers`` are all the servers that may ever take
  part, ``members`` those that vote at first.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from distcheck.impl.raft.kv import KeyValueStore
from distcheck.impl.raft.log import Entry, RaftLog
from distcheck.impl.raft.machine import SessionMachine
from distcheck.impl.raft.messages import (
    CHANGE_OPERATIONS,
    NODE_MESSAGES,
    NOOP_ID,
    RAFT_MESSAGES,
    AppendEntriesRequest,
    AppendEntriesResponse,
    Command,
    ElectionTimer,
    FlushTimer,
    HeartbeatTimer,
    InstallSnapshot,
    PreVoteRequest,
    PreVoteResponse,
    Query,
    QuorumTimer,
    Replies,
    Reply,
    RequestVoteRequest,
    RequestVoteResponse,
    Status,
    StatusReply,
    SyncTimer,
    check_op,
    command_id,
)
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor, MessageError, Rejected, encode
from distcheck.impl.telemetry import count, observe

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"
NOOP: dict[str, Any] = {"id": NOOP_ID}
#: seconds: a timer due sooner than this is taken as due now
TIMER_RESOLUTION = 1e-6
#: heartbeats without an answer from a follower before the leader sends again what it may have lost
SILENT_HEARTBEATS = 3


@attrs.frozen
class Timing(config.Timing):
    """Seconds on the node's clock."""

    heartbeat: float = 0.05
    #: a follower that heard from no leader for a random time in [t, 2t] stands
    election_timeout: float = 0.4


def _positive_int(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"RaftOptions.{attribute.name} must be an integer >= 1, got {value!r}")


def _count(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"RaftOptions.{attribute.name} must be an integer >= 0, got {value!r}")


@attrs.frozen
class RaftOptions:
    """What a deployment may tune (docs/raft-service.md, "Options")."""

    #: entries per leader log write (group commit) and per AppendEntries
    max_batch: int = attrs.field(default=512, validator=_positive_int)
    #: send the next batch before the previous one is answered
    pipeline: bool = True
    #: batches in flight per follower when pipelining
    max_inflight: int = attrs.field(default=4, validator=_positive_int)
    #: on a refusal, back ``next_index`` up to the follower's last index + 1 at once
    #: (False: by one, as raft.tla)
    fast_backtrack: bool = True
    pre_vote: bool = True
    check_quorum: bool = True
    #: snapshot after this many entries applied since the last one (0: never)
    snapshot_every: int = attrs.field(default=10_000, validator=_count)
    #: client sessions kept (the oldest is evicted past this)
    max_sessions: int = attrs.field(default=100_000, validator=_positive_int)
    #: a leader sends new entries to its followers before its own fsync of them, and
    #: counts itself once that is done (dissertation §10.2.1); False: fsync first, as
    #: raft.tla's model has it (a crash there loses no entry a server appended)
    parallel_sync: bool = True
    #: a follower fsyncs once for the AppendEntries requests read together, then
    #: answers them all (False: an fsync per request)
    group_sync: bool = True
    #: take and log raft.tla's steps one by one, to its letter (docs/raft-service.md,
    #: "Conformance mode"): a message is handled in as many ``Receive`` steps as
    #: raft.tla takes, a follower's commit index is the request's, a leader's
    #: ``match_index``/``next_index`` are the answer's
    tla_steps: bool = False

    @classmethod
    def conformance(cls) -> RaftOptions:
        """raft.tla's steps exactly: one entry per request, no pipelining, back up by
        one, no pre-vote, no check-quorum, no snapshots and no parallel fsync (none
        is in the spec), each step logged as raft.tla takes it."""
        return cls(
            max_batch=1,
            pipeline=False,
            fast_backtrack=False,
            pre_vote=False,
            check_quorum=False,
            snapshot_every=0,
            parallel_sync=False,
            group_sync=False,
            tla_steps=True,
        )


#: the deliberately broken versions of the server (name -> what is wrong), each a real
#: mistake that ``distcheck simulate raft --variant NAME`` must catch
VARIANTS = {
    "unsafe_commit": "a leader counts itself twice, so it commits an entry one replica short of a majority",
    "volatile_vote": "votedFor is kept in memory only: a restarted server may vote again in the same term",
    "stale_read": "reads are answered from the local store of whichever server is asked (no ReadIndex)",
}


Read = tuple[str, str, str, int, str]  # (src, route, client, seq, key)

#: the operations that change the configuration
CHANGES = ("add_server", "remove_server")


def _change(members: tuple[str, ...], op: dict[str, Any]) -> tuple[str, ...]:
    """The members after a membership change (the same tuple when it changes nothing)."""
    name = str(op["key"])
    if op["op"] == "add_server" and name not in members:
        return (*members, name)
    if op["op"] == "remove_server" and name in members:
        return tuple(m for m in members if m != name)
    return members


class RaftNode(Actor):
    """One server.  ``peers`` names every server of the cluster, this one included.
    Its memory is rebuilt from its ``raft`` log at every start; ``applied`` (kept
    across restarts, for tests; empty with ``trace=False``) lists every (index,
    command id) it applied."""

    LOG = "raft"
    messages = NODE_MESSAGES

    def __init__(
        self,
        name: str,
        peers: Sequence[str],
        timing: Timing = Timing(),
        options: RaftOptions = RaftOptions(),
        *,
        members: Sequence[str] | None = None,
        trace: bool = True,
        variant: str | None = None,
        machine: Callable[[], SessionMachine] = KeyValueStore,
    ) -> None:
        config.check_variant(variant, VARIANTS)
        if name not in peers:
            raise ValueError(f"server {name!r} is not among the cluster's servers {list(peers)}")
        if len(set(peers)) != len(peers):
            raise ValueError(f"a server is named twice in {list(peers)}")
        members = tuple(peers) if members is None else tuple(members)
        if not members or not set(members) <= set(peers) or len(set(members)) != len(members):
            raise ValueError(f"the members {list(members)} must be some of the servers {list(peers)}, each once")
        super().__init__(name, None)
        #: every server this one may talk to; ``members`` (the configuration) are those that vote
        self.servers = tuple(peers)
        self.initial_members = members
        self._set_members(members)
        self.timing = timing
        self.options = options
        #: record the trace and keep ``applied`` (a server that keeps no trace skips
        #: building it, and a list that would grow as long as it runs)
        self.trace = trace
        self.variant = variant
        #: makes the (empty) state machine this server replicates (``impl.raft.machine``)
        self.make_machine = machine
        self.starts = 0
        self.applied: list[tuple[int, str]] = []
        self.role = FOLLOWER  # (before the first start too: tests and checkers look)
        self.own_seq = 0  # the last command of this leader's own session (``propose``)

    @property
    def kv(self) -> KeyValueStore:
        """The key-value store this server replicates (when that is its machine)."""
        if not isinstance(self.machine, KeyValueStore):
            raise TypeError(f"{self.name} replicates a {type(self.machine).__name__}, not a key-value store")
        return self.machine

    def _new_machine(self) -> SessionMachine:
        machine = self.make_machine()
        machine.max_sessions = self.options.max_sessions
        return machine

    def _check_op(self, op: dict[str, Any]) -> None:
        """Refuse (``Rejected``, as a malformed message) a client's operation that
        neither the node (membership changes) nor its machine takes."""
        try:
            if op["op"] in CHANGE_OPERATIONS:
                check_op(op, "Command.op", CHANGE_OPERATIONS)
            else:
                self.machine.check(op)
        except MessageError as exc:
            raise Rejected(str(exc)) from None

    def accepts_sender(self, src: str, msg: Any) -> bool:
        return not isinstance(msg, RAFT_MESSAGES) or src in self.servers

    # ----------------------------------------------------------------- start

    def on_start(self) -> None:
        self.log = RaftLog(self.ctx.storage(self.LOG))
        if self.variant == "volatile_vote":
            self.log.voted_for = None  # the mistake: the vote is not read back
        self.role = FOLLOWER
        self.leader: str | None = None
        self.machine = self._new_machine()
        base_members = self.initial_members
        if self.log.snapshot is not None:
            self.machine.restore(self.log.snapshot)
            base_members = tuple(self.log.snapshot.get("members", base_members))
        #: configurations in the log, oldest first: (index where it took effect, members)
        self.configs: list[tuple[int, tuple[str, ...]]] = [(self.log.base_index, base_members)]
        self._configure_from(self.log.base_index + 1)
        self.commit_index = self.last_applied = self.log.base_index
        #: a leader's batches not yet committed: (last index of the batch, when it was written), for commit latency
        self.appended_at: deque[tuple[int, float]] = deque()
        self.rng = random.Random(f"{self.name}:{self.starts}:{self.ctx.now()}")
        #: when this server last heard from a leader (or granted a vote, or stood)
        self.last_heard = self.ctx.now()
        self.votes: set[str] = set()
        self.prevotes: set[str] = set()
        self.prevote_term = 0
        # leader
        self.next_index: dict[str, int] = {}
        self.match_index: dict[str, int] = {}
        self.outstanding: dict[str, bool] = {}
        #: a follower in probe mode gets one request at a time (as in raft.tla); one that
        #: answered with success is replicated to by pipelining, when that is on
        self.probing: dict[str, bool] = {}
        self.responded: set[str] = set()  # since the last heartbeat
        self.silent: dict[str, int] = {}  # heartbeats in a row without an answer
        self.heard_from: set[str] = set()  # since the last check-quorum
        self.queue: list[dict[str, Any]] = []
        self.queued: set[str] = set()
        self.flush_armed = False
        self.waiters: dict[str, list[tuple[str, str, str, int]]] = {}  # command id -> (src, route, client, seq)
        self.read_round = 0
        self.read_wanted = False
        self.acked_round: dict[str, int] = {}
        self.reads: list[tuple[int, int, Read]] = []  # (round, read index, read)
        self.blocked_reads: list[Read] = []  # until this leader's no-op commits
        self.in_log: dict[str, int] = {}  # command id -> index, for entries not yet applied
        for i in range(self.log.base_index + 1, self.log.last_index + 1):
            self.in_log[str(self.log.entry(i)[1]["id"])] = i
        self.outbox: dict[str, list[Reply]] = {}
        #: a follower's AppendEntries answers waiting for the group fsync (SyncTimer), in order
        self.unsynced_answers: list[tuple[str, AppendEntriesResponse]] = []
        #: servers being added, catching up before their change goes in the log -> the change
        self.learners: dict[str, dict[str, Any]] = {}
        self.snapshot_sent: dict[str, float] = {}  # when this leader last sent each follower its snapshot
        if self.starts > 0 or self.log.recovered:
            self._record({"type": "Restart", "server": self.name})
        self.starts += 1
        self._arm_election()

    # ----------------------------------------------------------------- configuration

    def _set_members(self, members: Sequence[str]) -> None:
        self.members = tuple(members)
        self.others = tuple(p for p in self.members if p != self.name)
        self.quorum = len(self.members) // 2 + 1

    def _configure_from(self, first: int) -> None:
        """Entries from ``first`` on were (re)written: the configuration is the last one
        in the log, committed or not (single-server changes, dissertation §4.1)."""
        while len(self.configs) > 1 and self.configs[-1][0] >= first:
            self.configs.pop()
        for index in range(max(first, self.log.base_index + 1), self.log.last_index + 1):
            op = self.log.entry(index)[1].get("op")
            if op is not None and op["op"] in CHANGES:
                members = self.configs[-1][1]
                changed = _change(members, op)
                if changed != members:
                    self.configs.append((index, changed))
        if self.configs[-1][1] != self.members:
            self._set_members(self.configs[-1][1])
            if getattr(self, "role", None) == LEADER:
                for peer in self.others:
                    if peer not in self.next_index:
                        self._track(peer)

    def _members_at(self, index: int) -> tuple[str, ...]:
        return next(m for i, m in reversed(self.configs) if i <= index)

    def _majority(self, values: dict[str, int], counted_twice: str | None = None) -> int:
        """The highest value a majority of the members has reached (this server: ``values[self]``)."""
        ordered = sorted((values.get(m, 0) for m in self.members), reverse=True)
        if counted_twice is not None:
            ordered = sorted([*ordered, values.get(counted_twice, 0)], reverse=True)
        return ordered[self.quorum - 1]

    def _track(self, peer: str) -> None:
        self.next_index[peer] = self.log.last_index + 1
        self.match_index[peer] = 0
        self.outstanding[peer] = False
        self.probing[peer] = True

    # ----------------------------------------------------------------- helpers

    def _record(self, action: dict[str, Any]) -> None:
        if not self.trace:
            return
        self.ctx.record(
            action,
            term=self.log.term,
            role=self.role,
            voted_for=self.log.voted_for,
            last_index=self.log.last_index,
            commit_index=self.commit_index,
        )

    def _receive_record(self, src: str, msg: Any) -> None:
        """``Receive`` of ``msg`` (in raft.tla's form), after its effect."""
        if not self.trace:
            return
        spec = encode(msg)
        spec.pop("read_round", None)
        spec.pop("last_index", None)
        if isinstance(msg, AppendEntriesRequest):
            spec["entries"] = [{"type": "Entry", "term": t, "value": str(c["id"])} for t, c in msg.entries]
        spec["source"], spec["dest"] = src, self.name
        self._record({"type": "Receive", "msg": spec})

    def _arm_election(self) -> None:
        """A new random election timeout, in [t, 2t], from now."""
        t = self.timing.election_timeout
        self.election_span = t + self.rng.random() * t
        self.set_timer(ElectionTimer(), self.election_span)

    def _log_ok(self, last_log_term: int, last_log_index: int) -> bool:
        """Whether a candidate's log is at least as up-to-date as ours."""
        return last_log_term > self.log.last_term or (
            last_log_term == self.log.last_term and last_log_index >= self.log.last_index
        )

    def _observe_term(self, term: int) -> bool:
        """Adopt a higher term seen in a message (the caller syncs)."""
        if term <= self.log.term:
            return False
        # Follower first: storing the term yields, and nobody may see a leader of the new term meanwhile.
        if self.role != FOLLOWER:
            self._become_follower(None)
        self.leader = None
        self.log.set_hard_state(term, None)
        self.prevote_term = 0
        return True

    def _become_follower(self, leader: str | None) -> None:
        was_leader = self.role == LEADER
        self.role, self.leader = FOLLOWER, leader
        self.votes = set()
        if was_leader:
            self.cancel_timer(HeartbeatTimer())
            self.cancel_timer(QuorumTimer())
            for waiters in self.waiters.values():
                for src, route, client, seq in waiters:
                    self._refuse(src, route, client, seq)
            self.waiters = {}
            for _, _, read in self.reads:
                self._refuse(read[0], read[1], read[2], read[3])
            for read in self.blocked_reads:
                self._refuse(read[0], read[1], read[2], read[3])
            self.reads, self.blocked_reads = [], []
            self.queue, self.queued = [], set()
            self.learners = {}
            self.on_leadership(False)

    def _refuse(self, src: str, route: str, client: str, seq: int) -> None:
        self._reply(src, Reply(route, client, seq, False, None, self.leader))

    def _reply(self, dst: str, reply: Reply) -> None:
        """Answer a client at the end of this step, with the step's other answers to ``dst``."""
        self.outbox.setdefault(dst, []).append(reply)

    def _send_replies(self) -> None:
        for dst, replies in self.outbox.items():
            if len(replies) == 1:
                self.send(dst, replies[0])
            else:
                self.send(dst, Replies(tuple(encode(r) for r in replies)))
        self.outbox = {}

    # ----------------------------------------------------------------- dispatch

    def on_timer(self, timer: Any) -> None:
        self._on_timer(timer)
        self._send_replies()

    def on_message(self, src: str, msg: Any) -> None:
        self._on_message(src, msg)
        self._send_replies()

    def _on_timer(self, timer: Any) -> None:
        if isinstance(timer, ElectionTimer):
            remaining = self.election_span - (self.ctx.now() - self.last_heard)
            # (a remaining time below the clock's resolution would re-arm a timer
            # that fires at once, forever: time does not move by a few ulps)
            if self.role == LEADER or self.name not in self.members or remaining < TIMER_RESOLUTION:
                if self.role != LEADER and self.name in self.members:
                    if self.options.pre_vote and len(self.members) > 1:
                        self._start_prevote()
                    else:
                        self._timeout()
                self._arm_election()
            else:  # heard from a leader meanwhile: the timeout runs from then
                self.set_timer(ElectionTimer(), remaining)
        elif isinstance(timer, HeartbeatTimer) and self.role == LEADER:
            self.set_timer(timer, self.timing.heartbeat)
            for peer in (*self.others, *self.learners):
                self.silent[peer] = 0 if peer in self.responded else self.silent.get(peer, 0) + 1
                if self.silent[peer] >= SILENT_HEARTBEATS:
                    # No answer for a while: what was in flight may be lost (a loss is
                    # noticed sooner when a later request fails its check).  Probe
                    # again, from what the follower is known to have when pipelining.
                    self.silent[peer] = 0
                    self.outstanding[peer] = False
                    if not self.probing[peer]:
                        self.probing[peer] = True
                        self.next_index[peer] = self.match_index[peer] + 1
            self.responded = set()
            self._replicate(force=True)
        elif isinstance(timer, FlushTimer):
            self.flush_armed = False
            self._flush()
        elif isinstance(timer, SyncTimer):
            self._sync_answers()
        elif isinstance(timer, QuorumTimer) and self.role == LEADER:
            heard = len(self.heard_from & set(self.members)) + (self.name in self.members)
            if heard < self.quorum:
                self._become_follower(None)
                self._record({"type": "StepDown", "server": self.name})
                return
            self.heard_from = set()
            self.set_timer(timer, self.timing.election_timeout)
        elif not isinstance(timer, (HeartbeatTimer, QuorumTimer)):
            self.on_other_timer(timer)

    def _on_message(self, src: str, msg: Any) -> None:
        match msg:
            case RequestVoteRequest():
                self._on_request_vote(src, msg)
            case RequestVoteResponse():
                self._on_vote(src, msg)
            case AppendEntriesRequest():
                self._on_append(src, msg)
            case AppendEntriesResponse():
                self._on_append_response(src, msg)
            case PreVoteRequest():
                self._on_prevote_request(src, msg)
            case PreVoteResponse(term, granted):
                if granted and self.role != LEADER and term == self.prevote_term:
                    self.prevotes.add(src)
                    if len(self.prevotes & set(self.members)) >= self.quorum:
                        self._timeout()
            case InstallSnapshot():
                self._on_install_snapshot(src, msg)
            case Command():
                self._on_command(src, msg)
            case Query():
                self._on_query(src, msg)
            case Status(route):
                self.send(
                    src,
                    StatusReply(
                        route,
                        self.name,
                        self.role,
                        self.log.term,
                        self.leader,
                        self.log.last_index,
                        self.commit_index,
                        self.last_applied,
                        self.members,
                    ),
                )

    # ----------------------------------------------------------------- election

    def _start_prevote(self) -> None:
        self.prevote_term = self.log.term + 1
        self.prevotes = {self.name}
        self._record({"type": "PreVote", "server": self.name})
        request = encode(PreVoteRequest(self.prevote_term, self.log.last_term, self.log.last_index))
        for peer in self.others:
            self.ctx.send(peer, request)

    def _on_prevote_request(self, src: str, msg: PreVoteRequest) -> None:
        granted = (
            msg.term > self.log.term
            and self.role != LEADER
            and not (self.leader is not None and self.ctx.now() - self.last_heard < self.timing.election_timeout)
            and self._log_ok(msg.last_log_term, msg.last_log_index)
        )
        self.send(src, PreVoteResponse(msg.term, granted))

    def _timeout(self) -> None:
        """raft.tla's Timeout, then RequestVote to itself and its own grant (one sync)."""
        term = self.log.term + 1
        self.log.set_hard_state(term, self.name)
        self.log.sync()
        self.role, self.leader, self.prevote_term = CANDIDATE, None, 0
        self.votes = set()
        self.last_heard = self.ctx.now()  # give this candidacy a whole period
        count("distcheck.elections", node=self.name)
        # The trace shows raft.tla's steps: votedFor is nil after Timeout, and the
        # candidate's vote is its answer to its own request (durable above).
        self.log.voted_for = None
        self._record({"type": "Timeout", "server": self.name})
        self._record({"type": "RequestVote", "server": self.name, "peer": self.name})
        self.log.voted_for = self.name
        request = RequestVoteRequest(term, self.log.last_term, self.log.last_index)
        self._receive_record(self.name, request)
        self.votes.add(self.name)
        self._receive_record(self.name, RequestVoteResponse(term, True))
        if len(self.votes & set(self.members)) >= self.quorum:
            self._become_leader()
            return
        wire = encode(request)
        for peer in self.others:
            self._record({"type": "RequestVote", "server": self.name, "peer": peer})
            self.ctx.send(peer, wire)

    def _adopt_term(self, src: str, msg: Any) -> bool:
        """Adopt a newer term seen in ``msg``: whether the caller must sync.  Taking
        raft.tla's steps, that is a step of its own (UpdateTerm: durable, then logged
        as a ``Receive`` that leaves the message to be handled in the new term)."""
        changed = self._observe_term(msg.term)
        if changed and self.options.tla_steps:
            self.log.sync()
            self._receive_record(src, msg)
            return False
        return changed

    def _on_request_vote(self, src: str, msg: RequestVoteRequest) -> None:
        changed = self._adopt_term(src, msg)
        grant = (
            msg.term == self.log.term
            and self._log_ok(msg.last_log_term, msg.last_log_index)
            and self.log.voted_for in (None, src)
        )
        if grant and self.log.voted_for != src:
            self.log.set_hard_state(self.log.term, src)
            changed = True
        if changed:
            self.log.sync()
        if grant:
            self.last_heard = self.ctx.now()
        self._receive_record(src, msg)
        self.send(src, RequestVoteResponse(self.log.term, grant))

    def _on_vote(self, src: str, msg: RequestVoteResponse) -> None:
        if self._adopt_term(src, msg):
            self.log.sync()
        if msg.term == self.log.term and msg.vote_granted:
            self.votes.add(src)
        self._receive_record(src, msg)
        if self.role == CANDIDATE and len(self.votes & set(self.members)) >= self.quorum:
            self._become_leader()

    def _become_leader(self) -> None:
        self.role, self.leader = LEADER, self.name
        count("distcheck.leader.changes", node=self.name)
        self.appended_at.clear()
        self.next_index, self.match_index, self.outstanding, self.probing = {}, {}, {}, {}
        self.learners = {}
        for peer in self.others:
            self._track(peer)
        self.responded, self.heard_from, self.acked_round = set(), set(), {}
        self.reads, self.blocked_reads, self.waiters = [], [], {}
        self._record({"type": "BecomeLeader", "server": self.name})
        self.own_seq = 0
        self.on_leadership(True)
        self._append_local([dict(NOOP)])
        self.set_timer(HeartbeatTimer(), self.timing.heartbeat)
        if self.options.check_quorum:
            self.set_timer(QuorumTimer(), self.timing.election_timeout)
        self._replicate(force=True)
        if self.options.parallel_sync:
            self.log.sync()  # (see _append_local)
        self._advance_commit()

    # ----------------------------------------------------------------- replication (leader)

    def _append_local(self, cmds: list[dict[str, Any]]) -> None:
        """Group commit: one write for ``cmds``, then one ClientRequest each.  With
        ``parallel_sync`` the caller syncs it after sending the entries to the
        followers, and before it counts itself among those that store them
        (``_advance_commit``), so that the leader's fsync and the followers' run side
        by side (dissertation §10.2.1): nothing sent depends on the leader having the
        entries on its disk, and a leader that crashes before its sync lost entries
        nobody counted it for; no other server can append a different entry of its
        term at those indexes (only it leads in that term)."""
        start = self.log.last_index + 1
        self.log.write(start, [(self.log.term, cmd) for cmd in cmds])
        self.appended_at.append((start + len(cmds) - 1, self.ctx.now()))
        if not self.options.parallel_sync:
            self.log.sync()
        for i, cmd in enumerate(cmds):
            self.in_log[str(cmd["id"])] = start + i
            self._record({"type": "ClientRequest", "server": self.name, "value": str(cmd["id"])})
        self._configure_from(start)

    def _replicate(self, force: bool = False) -> None:
        """Send each follower (and learner) what it lacks; ``force``: send each one
        something (a heartbeat)."""
        for peer in (*self.others, *self.learners):
            self._replicate_to(peer, force)

    def _replicate_to(self, peer: str, force: bool = False) -> None:
        pending = self.next_index[peer] <= self.log.last_index
        if not self.options.pipeline:
            if force or (pending and not self.outstanding[peer]):
                self._send_append(peer)
        elif self.probing[peer]:
            if not self.outstanding[peer] and (pending or force):
                self._send_append(peer)
            elif force:
                self._send_append(peer, empty=True)  # still waiting: a heartbeat without entries
        else:
            sent = False
            limit = self.options.max_inflight * self.options.max_batch
            while (
                not self.probing[peer]
                and self.next_index[peer] <= self.log.last_index
                and self.next_index[peer] - 1 - self.match_index[peer] < limit
            ):
                self._send_append(peer)
                sent = True
            if force and not sent:
                self._send_append(peer, empty=True)

    def _send_append(self, peer: str, empty: bool = False) -> None:
        nxt = self.next_index[peer]
        prev = nxt - 1
        prev_term = self.log.term_at(prev)
        if prev_term is None:  # compacted away: the follower needs the snapshot
            self.probing[peer] = True
            if self.ctx.now() >= self.snapshot_sent.get(peer, -1.0) + self.timing.election_timeout:
                self._send_snapshot(peer)  # not again before it had time to arrive
            return
        last = prev if empty else min(self.log.last_index, prev + self.options.max_batch)
        entries = tuple(self.log.slice(nxt, last))
        request = AppendEntriesRequest(
            self.log.term, prev, prev_term, entries, min(self.commit_index, last), self.read_round
        )
        self._record({"type": "AppendEntries", "server": self.name, "peer": peer})
        self.outstanding[peer] = True
        if self.options.pipeline and not self.probing[peer]:
            self.next_index[peer] = last + 1
        self.send(peer, request)

    def _send_snapshot(self, peer: str) -> None:
        assert self.log.snapshot is not None
        self.snapshot_sent[peer] = self.ctx.now()
        self._record({"type": "InstallSnapshot", "server": self.name, "peer": peer})
        self.outstanding[peer] = True
        self.send(peer, InstallSnapshot(self.log.term, self.log.base_index, self.log.base_term, self.log.snapshot))

    def _on_append_response(self, src: str, msg: AppendEntriesResponse) -> None:
        if self._adopt_term(src, msg):
            self.log.sync()
        if msg.term != self.log.term or self.role != LEADER or src not in self.next_index:
            self._receive_record(src, msg)  # stale, or from a server no longer a member
            return
        self.responded.add(src)
        self.heard_from.add(src)
        self.outstanding[src] = False
        self.acked_round[src] = max(self.acked_round.get(src, 0), msg.read_round)
        if msg.success and self.options.tla_steps:  # as raft.tla: the answer's, even an old one's
            self.match_index[src] = msg.match_index
            self.next_index[src] = msg.match_index + 1
            self.probing[src] = False
        elif msg.success:
            self.match_index[src] = max(self.match_index[src], msg.match_index)
            self.next_index[src] = max(self.next_index[src], self.match_index[src] + 1)
            self.probing[src] = False
        else:
            if self.options.fast_backtrack:
                back = min(self.next_index[src] - 1, msg.last_index + 1)
                self.next_index[src] = max(self.match_index[src] + 1, back, 1)
            else:
                self.next_index[src] = max(self.next_index[src] - 1, 1)
            self.probing[src] = True
        self._receive_record(src, msg)
        self._advance_commit()
        self._serve_reads()
        cmd = self.learners.get(src)
        if cmd is not None and self.match_index[src] >= self.commit_index:
            del self.learners[src]  # caught up: its change may go in the log now
            if str(cmd["id"]) not in self.queued:  # (unless the client's retry queued it again)
                self.queue.append(cmd)
                self.queued.add(str(cmd["id"]))
            self._arm_flush()
        if self.role == LEADER:
            self._replicate_to(src, force=not msg.success)

    def _advance_commit(self) -> None:
        if self.role != LEADER:
            return
        n = self._majority({**self.match_index, self.name: self.log.last_index})
        if self.variant == "unsafe_commit":  # the mistake: itself counted twice
            n = self._majority({**self.match_index, self.name: self.log.last_index}, counted_twice=self.name)
        if n > self.commit_index and self.log.term_at(n) == self.log.term:
            self.commit_index = n
            now = self.ctx.now()
            while self.appended_at and self.appended_at[0][0] <= n:
                observe("distcheck.commit.latency", now - self.appended_at.popleft()[1], node=self.name)
            self._record({"type": "AdvanceCommitIndex", "server": self.name})
            self._apply()
            if self.name not in self.members and self.configs[-1][0] <= self.commit_index:
                # This leader's removal is committed: it hands over (the others time out).
                self._become_follower(None)
                self._record({"type": "StepDown", "server": self.name})
                return
            if self.blocked_reads:  # this leader's no-op is committed: reads may go on
                for read in self.blocked_reads:
                    self._enqueue_read(read)
                self.blocked_reads = []

    # ----------------------------------------------------------------- replication (follower)

    def _on_append(self, src: str, msg: AppendEntriesRequest) -> None:
        if self.options.tla_steps:
            self._on_append_tla(src, msg)
            return
        changed = self._observe_term(msg.term)
        term = self.log.term
        if msg.term < term:
            self._receive_record(src, msg)
            self._answer_append(
                src, AppendEntriesResponse(term, False, 0, msg.read_round, self.log.last_index), changed
            )
            return
        if self.role == CANDIDATE:
            self._become_follower(src)
        if self.role == LEADER:  # two leaders in one term cannot be: refuse and say so
            self.diagnose(f"AppendEntries from {src} in my own term {term} as leader")
            return
        self.leader = src
        self.last_heard = self.ctx.now()
        prev = msg.prev_log_index
        received: list[Entry] = [(t, c) for t, c in msg.entries]
        if prev < self.log.base_index:  # what precedes our snapshot is committed: skip it
            skip = self.log.base_index - prev
            if skip > len(received):
                self._receive_record(src, msg)
                answer = AppendEntriesResponse(term, True, self.log.base_index, msg.read_round, self.log.last_index)
                self._answer_append(src, answer, changed)
                return
            entries = received[skip:]
            prev, prev_term = self.log.base_index, self.log.base_term
        else:
            entries, prev_term = received, msg.prev_log_term
        if self.log.term_at(prev) != prev_term:
            self._receive_record(src, msg)
            self._answer_append(
                src, AppendEntriesResponse(term, False, 0, msg.read_round, self.log.last_index), changed
            )
            return
        # Find the first entry we do not have; cut our log only there, and only if it conflicts.
        first_new = None
        for k, (t, _) in enumerate(entries):
            if self.log.term_at(prev + 1 + k) != t:
                first_new = k
                break
        if first_new is not None:
            at = prev + 1 + first_new
            for _, cmd in self.log.write(at, entries[first_new:]):
                self.in_log.pop(str(cmd["id"]), None)
            for k, (_, cmd) in enumerate(entries[first_new:]):
                self.in_log[str(cmd["id"])] = at + k
            self._configure_from(at)
            changed = True
        match = prev + len(entries)
        if msg.commit_index > self.commit_index:
            self.commit_index = max(self.commit_index, min(msg.commit_index, match))
        self._receive_record(src, msg)
        # The answer first: the leader waits for it, and nothing in it depends on applying.
        self._answer_append(src, AppendEntriesResponse(term, True, match, msg.read_round, self.log.last_index), changed)
        self._apply()

    def _answer_append(self, dst: str, answer: AppendEntriesResponse, changed: bool) -> None:
        """Send ``answer`` once what it reports is durable.  Group commit: when this
        request changed the log or the term, the fsync waits for the requests read
        with it (``SyncTimer``), and one fsync covers them all; answers keep their
        order (one waiting holds back the next)."""
        if not changed and not self.unsynced_answers:
            self.send(dst, answer)
            return
        if not self.options.group_sync:
            self.log.sync()
            self.send(dst, answer)
            return
        if not self.unsynced_answers:
            self.set_timer(SyncTimer(), 0.0)
        self.unsynced_answers.append((dst, answer))

    def _sync_answers(self) -> None:
        self.log.sync()
        answers, self.unsynced_answers = self.unsynced_answers, []
        for dst, answer in answers:
            self.send(dst, answer)

    def _on_append_tla(self, src: str, msg: AppendEntriesRequest) -> None:
        """AppendEntries as raft.tla takes it, one logged ``Receive`` per step, each
        durable before it is logged: adopt a newer term; refuse a stale request or one
        that does not match the log; a candidate returns to follower; a conflicting
        log loses its last entry (one per step); the entry is appended; then the
        answer, with the request's commit index taken as it is (``last_applied``
        never goes back, so nothing applied is undone)."""
        self._adopt_term(src, msg)
        term = self.log.term
        prev = msg.prev_log_index
        if msg.term == term and self.role == FOLLOWER:  # heard from the leader, even if its log does not match
            self.leader = src
            self.last_heard = self.ctx.now()
        if msg.term < term or (self.role == FOLLOWER and self.log.term_at(prev) != msg.prev_log_term):
            self._receive_record(src, msg)
            self.send(src, AppendEntriesResponse(term, False, 0, msg.read_round, self.log.last_index))
            return
        if self.role == CANDIDATE:
            self._become_follower(src)
            self._receive_record(src, msg)
            if self.log.term_at(prev) != msg.prev_log_term:  # now a follower: the next step refuses
                self._receive_record(src, msg)
                self.send(src, AppendEntriesResponse(term, False, 0, msg.read_round, self.log.last_index))
                return
        if self.role == LEADER:  # two leaders in one term cannot be
            self.diagnose(f"AppendEntries from {src} in my own term {term} as leader")
            return
        self.leader = src
        self.last_heard = self.ctx.now()
        entries: list[Entry] = [(t, c) for t, c in msg.entries]
        index = prev + 1
        while entries and self.log.term_at(index) != entries[0][0]:
            if self.log.last_index >= index:  # a conflict: the last entry goes
                at = self.log.last_index
                for _, cmd in self.log.write(at, []):
                    self.in_log.pop(str(cmd["id"]), None)
            else:  # the log ends at prev: append the entry
                at = index
                self.log.write(at, entries[:1])
                self.in_log[str(entries[0][1]["id"])] = at
            self._configure_from(at)
            self.log.sync()
            self._receive_record(src, msg)
        self.commit_index = msg.commit_index
        self._receive_record(src, msg)
        self._apply()
        self.send(src, AppendEntriesResponse(term, True, prev + len(entries), msg.read_round, self.log.last_index))

    def _on_install_snapshot(self, src: str, msg: InstallSnapshot) -> None:
        changed = self._observe_term(msg.term)
        if msg.term == self.log.term and self.role != LEADER:
            if self.role == CANDIDATE:
                self._become_follower(src)
            self.leader, self.last_heard = src, self.ctx.now()
            if msg.last_included_index > self.commit_index:
                self.log.save_snapshot(msg.last_included_index, msg.last_included_term, msg.state)
                self.machine = self._new_machine()
                self.machine.restore(msg.state)
                self.commit_index = self.last_applied = msg.last_included_index
                self.in_log = {k: v for k, v in self.in_log.items() if v > msg.last_included_index}
                members = tuple(msg.state.get("members", self.initial_members))
                self.configs = [(self.log.base_index, members)]
                self._configure_from(self.log.base_index + 1)
                changed = True
        if changed:
            self.log.sync()
        self._record({"type": "InstallSnapshot", "server": self.name, "peer": src, "index": msg.last_included_index})
        match = self.log.base_index if msg.term == self.log.term else 0
        self.send(src, AppendEntriesResponse(self.log.term, msg.term == self.log.term, match, 0, self.log.last_index))

    # ----------------------------------------------------------------- state machine

    def _apply(self) -> None:
        while self.last_applied < self.commit_index:
            index = self.last_applied + 1
            _, cmd = self.log.entry(index)
            result = self.machine.apply(index, cmd)
            self.last_applied = index
            cid = str(cmd["id"])
            if self.trace:
                self.applied.append((index, cid))
            self.in_log.pop(cid, None)
            for src, route, client, seq in self.waiters.pop(cid, ()):
                self._reply(src, Reply(route, client, seq, True, result, self.name))
            self.on_applied(index, cmd, result)
        self._serve_reads()
        self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        every = self.options.snapshot_every
        if not every or self.last_applied - self.log.base_index < every:
            return
        term = self.log.term_at(self.last_applied)
        assert term is not None
        members = self._members_at(self.last_applied)
        self.log.save_snapshot(self.last_applied, term, {**self.machine.snapshot(), "members": list(members)})
        self.log.sync()
        self.configs = [(self.log.base_index, members)] + [c for c in self.configs if c[0] > self.log.base_index]

    # ----------------------------------------------------------------- clients

    def _on_command(self, src: str, msg: Command) -> None:
        if self.role != LEADER:
            self._refuse(src, msg.route, msg.client, msg.seq)
            return
        self._check_op(msg.op)
        done, result = self.machine.answered(msg.client, msg.seq)
        if done:
            self._reply(src, Reply(msg.route, msg.client, msg.seq, True, result, self.name))
            return
        if self.machine.stale(msg.client, msg.seq):
            self.diagnose(f"ignored {msg.client}'s command {msg.seq}: it has sent later ones")
            return
        cid = command_id(msg.client, msg.seq)
        self.waiters.setdefault(cid, []).append((src, msg.route, msg.client, msg.seq))
        if cid in self.in_log or cid in self.queued:
            return  # in the log (or about to be) already: answered when applied
        self.queue.append({"id": cid, "client": msg.client, "seq": msg.seq, "op": dict(msg.op)})
        self.queued.add(cid)
        self._arm_flush()

    # ----------------------------------------------------------------- for a machine that needs its leader

    # A machine whose commands are not all its clients' (the lock service: the leader
    # grants, and expires leases by its own clock) subclasses the node and uses
    # these.  The default server needs none of them.

    def on_leadership(self, leading: bool) -> None:
        """This server became leader (called before it appends its no-op, so before it
        can apply anything as leader) or stopped being one."""

    def on_applied(self, index: int, cmd: dict[str, Any], result: Any) -> None:
        """The command at ``index`` was applied, with ``result`` (on every server)."""

    def on_other_timer(self, timer: Any) -> None:
        """A timer the node does not know fired (one a subclass armed)."""

    def serve_read(self, src: str, route: str, client: str, seq: int, key: str) -> None:
        """Answer a linearizable read whose ReadIndex is confirmed and applied (a
        machine whose clients wait for a change may hold it, and answer later)."""
        self._reply(src, Reply(route, client, seq, True, self.machine.read(key), self.name))

    def propose(self, op: dict[str, Any]) -> str:
        """Leader only: put an operation of this server's own in the log, as the
        command of a session of its own for this term (so that a retry inside the
        term is applied once and no two leaders' sessions meet); its command id."""
        if self.role != LEADER:
            raise RuntimeError(f"{self.name} is not the leader: it proposes nothing")
        self.own_seq += 1
        client = f"@{self.name}/{self.log.term}"
        cid = command_id(client, self.own_seq)
        self.queue.append({"id": cid, "client": client, "seq": self.own_seq, "op": op})
        self.queued.add(cid)
        self._arm_flush()
        return cid

    def _admit_change(self, cmd: dict[str, Any], another: bool) -> bool:
        """Whether a membership change may go in the log now; if not, its client is
        answered why.  One change at a time: none while another is uncommitted, and
        none before this leader has committed an entry of its term (the dissertation's
        fix: otherwise two leaders' changes in successive terms can overlap)."""
        op, name = cmd["op"], str(cmd["op"]["key"])
        outcome = None
        if name not in self.servers:
            outcome = f"error: {name} is not one of the servers {', '.join(self.servers)}"
        elif _change(self.members, op) == self.members:
            outcome = "unchanged"
        elif op["op"] == "remove_server" and len(self.members) == 1:
            outcome = "error: the last member cannot be removed"
        elif another or self.configs[-1][0] > self.commit_index or self.log.term_at(self.commit_index) != self.log.term:
            outcome = "busy"  # ``another``: a change is in this very batch
        if outcome is None and op["op"] == "add_server" and self.match_index.get(name, 0) < self.commit_index:
            # A new server first catches up as a learner (replicated to, not counted),
            # so that adding it does not stall commits while it copies the log.
            if name not in self.next_index:
                self._track(name)
            self.learners[name] = cmd  # admitted again once it has caught up
            return False
        if outcome is None:
            return True
        for src, route, client, seq in self.waiters.pop(str(cmd["id"]), ()):
            self._reply(src, Reply(route, client, seq, True, outcome, self.name))
        return False

    def _arm_flush(self) -> None:
        if not self.flush_armed:
            self.flush_armed = True
            self.set_timer(FlushTimer(), 0.0)

    def _flush(self) -> None:
        if self.role != LEADER:
            return
        batch = self.queue[: self.options.max_batch]
        del self.queue[: self.options.max_batch]
        for cmd in batch:
            self.queued.discard(str(cmd["id"]))
        admitted, changing = [], False
        for cmd in batch:
            if cmd["op"]["op"] in CHANGES:
                if not self._admit_change(cmd, changing):
                    continue
                changing = True
            admitted.append(cmd)
        batch = admitted
        if batch:
            self._append_local(batch)
        force = self.read_wanted
        if self.read_wanted:
            self.read_round += 1
            self.read_wanted = False
        if batch or force:
            self._replicate(force=force)
        if batch and self.options.parallel_sync:
            self.log.sync()  # (see _append_local)
        self._advance_commit()
        self._serve_reads()
        if self.queue or self.read_wanted:
            self._arm_flush()

    def _on_query(self, src: str, msg: Query) -> None:
        if self.variant == "stale_read":  # the mistake: whoever is asked answers from its store
            self._reply(src, Reply(msg.route, msg.client, msg.seq, True, self.machine.read(msg.key), self.name))
            return
        if self.role != LEADER:
            self._refuse(src, msg.route, msg.client, msg.seq)
            return
        read: Read = (src, msg.route, msg.client, msg.seq, msg.key)
        if self.log.term_at(self.commit_index) != self.log.term:
            self.blocked_reads.append(read)  # no entry of this term committed yet
            return
        self._enqueue_read(read)

    def _enqueue_read(self, read: Read) -> None:
        self.reads.append((self.read_round + 1, self.commit_index, read))
        self.read_wanted = True
        self._arm_flush()

    def _serve_reads(self) -> None:
        if self.role != LEADER or not self.reads:
            return
        confirmed = self._majority({**self.acked_round, self.name: self.read_round})
        waiting = []
        for entry in self.reads:
            round_, index, (src, route, client, seq, key) = entry
            if round_ <= confirmed and index <= self.last_applied:
                self.serve_read(src, route, client, seq, key)
            else:
                waiting.append(entry)
        self.reads = waiting
