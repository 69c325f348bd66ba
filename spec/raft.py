"""Raft: leader election and log replication, in the abstraction of Ongaro's raft.tla.

Servers keep a term, a role (follower, candidate, leader), the candidate they voted
for in their term, a log of entries (term, value) and a commit index.  A follower or
candidate that times out starts an election in the next term; a candidate with the
votes of a quorum becomes leader; a leader appends client values to its log and sends
them to the others one entry at a time; an entry of the leader's own term that a
quorum stores is committed.  Any message with a newer term makes its receiver adopt
that term and become a follower.  Messages travel in a bag: they may be lost,
duplicated and delivered in any order.  A server may restart at any time, keeping
only its term, its vote and its log (the durable state).

Sources: D. Ongaro, "Consensus: Bridging Theory and Practice" (PhD dissertation,
Stanford, 2014), chapter 3 and appendix B (the TLA+ specification raft.tla);
D. Ongaro and J. Ousterhout, "In Search of an Understandable Consensus Algorithm"
(USENIX ATC 2014), Figures 2, 3 and 8.  This module models the same abstraction,
with raft.tla's history variables (``elections``, ``all_logs``, ``voter_log`` and the
``log`` carried by vote responses and append requests), so that its state counts
equal TLC's for the same constants and bounds: with 2 servers, 1 value, terms up
to 2, logs up to 1 entry and at most 1 message in the bag, 1,760 distinct states
(13,797 generated, depth 28); with terms up to 3, 25,164 (198,851, depth 41)
(``benchmarks/raft_vs_tlc.py`` runs both tools side by side).

Bounds are a state constraint, as TLC's CONSTRAINT: a successor whose terms, logs
or bag (the sum of its counts) exceed ``max_term``, ``max_log`` or ``max_msgs`` is
counted as generated but neither kept nor explored.

State (one value per server unless said otherwise): ``current_term``, ``role``
(raft.tla's ``state``), ``voted_for`` (a server or None), ``log`` (a tuple of
``Entry``), ``commit_index``; on candidates ``votes_responded``, ``votes_granted``;
on leaders ``next_index`` and ``match_index`` (per peer); ``messages`` (a bag); and
the history variables, which no implementation has: ``voter_log`` (per candidate,
each voter's log when it voted), ``elections`` (every successful election: term,
leader, its log, its voters and their logs) and ``all_logs`` (every log ever held).

Actions
    Restart(server)            The server restarts, keeping term, vote and log.
    Timeout(server)            A follower or candidate starts an election in the next term.
    RequestVote(server, peer)  A candidate asks peer (itself included) for its vote.
    BecomeLeader(server)       A candidate with the votes of a quorum becomes leader.
    ClientRequest(server, value) A leader appends a value to its log.
    AdvanceCommitIndex(server) A leader commits the newest entry of its term a quorum stores.
    AppendEntries(server, peer) A leader sends peer the entry at next_index (or none).
    Receive(msg)               The message's destination handles it.
    DuplicateMessage(msg)      The network delivers a second copy of msg.
    DropMessage(msg)           The network loses msg.

Invariants
    TypeOK              every variable holds a value of its type.
    ElectionSafety      at most one leader is elected in any term.
    LogMatching         two logs with an entry of the same index and term agree up to it.
    StateMachineSafety  committed entries exist and agree: no two servers commit different entries at one index.
    LeaderCompleteness  a leader's log holds every entry committed in an earlier or its own term.

Step property (checked on every step, like TLA+'s [][P]_vars)
    LeaderAppendOnly    a leader never removes or changes an entry of its log while it leads.

Reachable
    LeaderElected       some server is leader.
    EntryCommitted      some server has committed an entry.
    LaterLeader         leaders were elected in two different terms.

Refinement: with one log slot (``max_log=1``), the value of the first entry that a
quorum stores in the newest term any first entry has maps to ``spec/consensus.py``'s
chosen value: every step chooses it or leaves it unchanged.

Variants: each a real mistake, declared at the end as a subclass overriding one rule
or handler.

    =================  =====================================================  ====================
    variant            mistake                                                caught by
    =================  =====================================================  ====================
    vote_twice         a server grants a second vote in the same term         ElectionSafety
    commit_old_term    a leader commits an older term's entry by counting     LeaderCompleteness
                       replicas (the paper's Figure 8)
    no_log_check       votes are granted without the log-up-to-date check      LeaderCompleteness
    truncate_on_stale  a follower truncates its log on any accepted             StateMachineSafety
                       AppendEntries, conflict or not (stale requests)
    forget_vote        votedFor is volatile and lost on restart                 ElectionSafety
    append_duplicate   a follower appends a retransmitted request's entry again  LogMatching
                       instead of recognising it is already in its log
    discard_old_terms  a leader removes the uncommitted entries of older         LeaderAppendOnly
                       terms it may not commit, instead of keeping them
    =================  =====================================================  ====================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.codec import to_json
from distcheck.spec.consensus import Consensus, ConsensusConfig, ConsensusState
from distcheck.spec.contract import (
    Action,
    Exists,
    Invariant,
    Next,
    Reachable,
    Refinement,
    Spec,
    StepProperty,
    param,
    rule,
    variant,
)
from distcheck.spec.values import Bag, FrozenMap

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"
ROLES = (FOLLOWER, CANDIDATE, LEADER)


def server_names(n: int) -> tuple[str, ...]:
    return tuple(f"s{i}" for i in range(1, n + 1))


def value_names(n: int) -> tuple[str, ...]:
    return tuple(f"v{i}" for i in range(1, n + 1))


# ------------------------------------------------------------------- log entries


@attrs.frozen
class Entry:
    term: int
    value: str

    def __str__(self) -> str:
        return f"{self.value}@{self.term}"


Log = tuple[Entry, ...]


def last_term(log: Log) -> int:
    """The term of the log's last entry, or 0 for an empty log."""
    return log[-1].term if log else 0


# ---------------------------------------------------------------------- messages


@attrs.frozen
class RequestVoteRequest:
    term: int
    last_log_term: int
    last_log_index: int
    source: str
    dest: str

    def __str__(self) -> str:
        return f"RequestVote[{self.term}]({self.source}→{self.dest}, last {self.last_log_index}@{self.last_log_term})"


@attrs.frozen
class RequestVoteResponse:
    term: int
    vote_granted: bool
    log: Log  # history: the voter's log, for ``voter_log``; no implementation sends it
    source: str
    dest: str

    def __str__(self) -> str:
        answer = "granted" if self.vote_granted else "denied"
        return f"Vote[{self.term}]({self.source}→{self.dest}, {answer})"


@attrs.frozen
class AppendEntriesRequest:
    term: int
    prev_log_index: int
    prev_log_term: int
    entries: Log
    log: Log  # history: the leader's log when it sent this; no implementation sends it
    commit_index: int
    source: str
    dest: str

    def __str__(self) -> str:
        entries = ",".join(str(e) for e in self.entries)
        return (
            f"Append[{self.term}]({self.source}→{self.dest}, after {self.prev_log_index}@{self.prev_log_term},"
            f" [{entries}], commit {self.commit_index})"
        )


@attrs.frozen
class AppendEntriesResponse:
    term: int
    success: bool
    match_index: int
    source: str
    dest: str

    def __str__(self) -> str:
        answer = f"ok {self.match_index}" if self.success else "refused"
        return f"Appended[{self.term}]({self.source}→{self.dest}, {answer})"


Message = RequestVoteRequest | RequestVoteResponse | AppendEntriesRequest | AppendEntriesResponse


def log_up_to_date(request: RequestVoteRequest, log: Log) -> bool:
    """The candidate's log is at least as up to date as ``log``: a later last term,
    or the same last term and at least as long."""
    return request.last_log_term > last_term(log) or (
        request.last_log_term == last_term(log) and request.last_log_index >= len(log)
    )


@attrs.frozen
class Election:
    """History: one successful election (raft.tla's ``elections`` records)."""

    term: int
    leader: str
    log: Log
    votes: frozenset[str]
    voter_log: FrozenMap[str, Log]


# -------------------------------------------------------------------------- state


@attrs.frozen
class RaftState:
    current_term: FrozenMap[str, int]
    role: FrozenMap[str, str]
    voted_for: FrozenMap[str, str | None]
    log: FrozenMap[str, Log]
    commit_index: FrozenMap[str, int]
    votes_responded: FrozenMap[str, frozenset[str]]
    votes_granted: FrozenMap[str, frozenset[str]]
    next_index: FrozenMap[str, FrozenMap[str, int]]
    match_index: FrozenMap[str, FrozenMap[str, int]]
    messages: Bag[Message]
    # history variables
    voter_log: FrozenMap[str, FrozenMap[str, Log]]
    elections: frozenset[Election]
    all_logs: frozenset[Log]


# ------------------------------------------------------------------------ actions


class ServerAction(Action):
    __slots__ = ()
    ACTOR = "server"


@attrs.frozen
class Restart(ServerAction):
    server: str


@attrs.frozen
class Timeout(ServerAction):
    server: str


@attrs.frozen
class RequestVote(ServerAction):
    server: str
    peer: str


@attrs.frozen
class BecomeLeader(ServerAction):
    server: str


@attrs.frozen
class ClientRequest(ServerAction):
    server: str
    value: str


@attrs.frozen
class AdvanceCommitIndex(ServerAction):
    server: str


@attrs.frozen
class AppendEntries(ServerAction):
    server: str
    peer: str


@attrs.frozen
class Receive(Action):
    msg: Message

    @property
    def actor(self) -> str:
        return self.msg.dest


@attrs.frozen
class DuplicateMessage(Action):
    ACTOR = "network"
    msg: Message


@attrs.frozen
class DropMessage(Action):
    ACTOR = "network"
    msg: Message


RaftAction = (
    Restart
    | Timeout
    | RequestVote
    | BecomeLeader
    | ClientRequest
    | AdvanceCommitIndex
    | AppendEntries
    | Receive
    | DuplicateMessage
    | DropMessage
)


@attrs.frozen
class Config:
    # The bounds' maxima are high for trace validation, which applies no bound; an
    # exhaustive check beyond a few terms or entries would not end.
    servers: int = param(2, help="number of servers", minimum=1, maximum=9)
    values: int = param(1, help="number of client values", minimum=1, maximum=100_000)
    max_term: int = param(3, help="bound: no server's term exceeds this", minimum=1, maximum=1_000_000)
    max_log: int = param(1, help="bound: no log is longer than this", minimum=0, maximum=1_000_000)
    max_msgs: int = param(1, help="bound: messages in the bag, counting copies", minimum=0, maximum=1_000_000)
    variant: str | None = None


# ---------------------------------------------------------------------------- Raft


class Raft(Spec[RaftState, RaftAction]):
    name = "raft"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.servers = server_names(config.servers)
        self.values = value_names(config.values)
        self.quorum_size = config.servers // 2 + 1

    def init_states(self) -> Iterable[RaftState]:
        each = self.servers
        yield RaftState(
            current_term=FrozenMap({i: 1 for i in each}),
            role=FrozenMap({i: FOLLOWER for i in each}),
            voted_for=FrozenMap({i: None for i in each}),
            log=FrozenMap({i: () for i in each}),
            commit_index=FrozenMap({i: 0 for i in each}),
            votes_responded=FrozenMap({i: frozenset() for i in each}),
            votes_granted=FrozenMap({i: frozenset() for i in each}),
            next_index=FrozenMap({i: self._all(1) for i in each}),
            match_index=FrozenMap({i: self._all(0) for i in each}),
            messages=Bag(),
            voter_log=FrozenMap({i: FrozenMap() for i in each}),
            elections=frozenset(),
            all_logs=frozenset(),
        )

    def _all(self, n: int) -> FrozenMap[str, int]:
        return FrozenMap({j: n for j in self.servers})

    def next(self) -> Next:
        # raft.tla's Next, in its order.
        return (
            Exists("server", self.servers, self.timeout, self.restart),
            Exists("server", self.servers, Exists("peer", self.servers, self.request_vote)),
            Exists("server", self.servers, self.become_leader),
            Exists("server", self.servers, Exists("value", self.values, self.client_request)),
            Exists("server", self.servers, self.advance_commit_index),
            Exists("server", self.servers, Exists("peer", self.servers, self.append_entries)),
            Exists("msg", self.in_flight, self.receive, self.duplicate_message, self.drop_message),
        )

    def in_flight(self, s: RaftState) -> list[Message]:
        return s.messages.distinct()

    def is_quorum(self, servers: frozenset[str]) -> bool:
        return len(servers) >= self.quorum_size

    def step(self, s: RaftState, **changes: object) -> RaftState:
        """The next state: ``changes`` applied, and every log of ``s`` recorded in the
        history ``all_logs`` (raft.tla does this on every step)."""
        logs = frozenset(s.log.values())
        all_logs = s.all_logs if logs <= s.all_logs else s.all_logs | logs
        return attrs.evolve(s, all_logs=all_logs, **changes)  # type: ignore[arg-type]

    # ------------------------------------------------------------- server steps

    @rule(Restart)
    def restart(self, s: RaftState, server: str) -> RaftState | None:
        """The server restarts from durable storage: it keeps its term, vote and log
        and loses everything else."""
        return self.step(
            s,
            role=s.role.set(server, FOLLOWER),
            votes_responded=s.votes_responded.set(server, frozenset()),
            votes_granted=s.votes_granted.set(server, frozenset()),
            voter_log=s.voter_log.set(server, FrozenMap()),
            next_index=s.next_index.set(server, self._all(1)),
            match_index=s.match_index.set(server, self._all(0)),
            commit_index=s.commit_index.set(server, 0),
        )

    @rule(Timeout)
    def timeout(self, s: RaftState, server: str) -> RaftState | None:
        """A follower or candidate times out and starts an election in the next term
        (it votes for itself by sending itself a RequestVote, as raft.tla does)."""
        if s.role[server] not in (FOLLOWER, CANDIDATE):
            return None
        return self.step(
            s,
            role=s.role.set(server, CANDIDATE),
            current_term=s.current_term.set(server, s.current_term[server] + 1),
            voted_for=s.voted_for.set(server, None),
            votes_responded=s.votes_responded.set(server, frozenset()),
            votes_granted=s.votes_granted.set(server, frozenset()),
            voter_log=s.voter_log.set(server, FrozenMap()),
        )

    @rule(RequestVote)
    def request_vote(self, s: RaftState, server: str, peer: str) -> RaftState | None:
        """A candidate asks a peer that has not answered yet for its vote."""
        if s.role[server] != CANDIDATE or peer in s.votes_responded[server]:
            return None
        log = s.log[server]
        msg = RequestVoteRequest(s.current_term[server], last_term(log), len(log), server, peer)
        return self.step(s, messages=s.messages.add(msg))

    @rule(BecomeLeader)
    def become_leader(self, s: RaftState, server: str) -> RaftState | None:
        """A candidate with the votes of a quorum becomes leader."""
        if s.role[server] != CANDIDATE or not self.is_quorum(s.votes_granted[server]):
            return None
        log = s.log[server]
        election = Election(s.current_term[server], server, log, s.votes_granted[server], s.voter_log[server])
        return self.step(
            s,
            role=s.role.set(server, LEADER),
            next_index=s.next_index.set(server, self._all(len(log) + 1)),
            match_index=s.match_index.set(server, self._all(0)),
            elections=s.elections | {election},
        )

    @rule(ClientRequest)
    def client_request(self, s: RaftState, server: str, value: str) -> RaftState | None:
        """A leader appends a client's value to its log, in its term."""
        if s.role[server] != LEADER:
            return None
        entry = Entry(s.current_term[server], value)
        return self.step(s, log=s.log.set(server, (*s.log[server], entry)))

    @rule(AdvanceCommitIndex)
    def advance_commit_index(self, s: RaftState, server: str) -> RaftState | None:
        """A leader commits up to the highest index a quorum stores, if that entry is
        of its own term (an older term's entry is committed only under a newer one)."""
        if s.role[server] != LEADER:
            return None
        log = s.log[server]
        agreed = self.highest_agreed_index(s, server)
        new = agreed if agreed and self.may_commit(s, server, log[agreed - 1]) else s.commit_index[server]
        return self.step(s, commit_index=s.commit_index.set(server, new))

    def highest_agreed_index(self, s: RaftState, server: str) -> int:
        """The highest index of the leader's log stored by a quorum (0 if none)."""
        match = s.match_index[server]
        for index in range(len(s.log[server]), 0, -1):
            agree = frozenset({server} | {k for k in self.servers if match[k] >= index})
            if self.is_quorum(agree):
                return index
        return 0

    def may_commit(self, s: RaftState, server: str, entry: Entry) -> bool:
        """The Figure 8 rule: a leader counts replicas only of entries of its term."""
        return entry.term == s.current_term[server]

    @rule(AppendEntries)
    def append_entries(self, s: RaftState, server: str, peer: str) -> RaftState | None:
        """A leader sends a peer the entry at the peer's next index (none if its log
        ends before it), with the entry before it for the consistency check."""
        if server == peer or s.role[server] != LEADER:
            return None
        log = s.log[server]
        next_index = s.next_index[server][peer]
        prev_index = next_index - 1
        prev_term = log[prev_index - 1].term if 0 < prev_index <= len(log) else 0
        last_entry = min(len(log), next_index)
        msg = AppendEntriesRequest(
            term=s.current_term[server],
            prev_log_index=prev_index,
            prev_log_term=prev_term,
            entries=log[next_index - 1 : last_entry],
            log=log,
            commit_index=min(s.commit_index[server], last_entry),
            source=server,
            dest=peer,
        )
        return self.step(s, messages=s.messages.add(msg))

    # ------------------------------------------------------------------- receive

    @rule(Receive)
    def receive(self, s: RaftState, msg: Message) -> RaftState | None:
        """The message's destination handles it.  A newer term is adopted first (the
        message stays, to be handled in the new term); stale responses are dropped."""
        i = msg.dest
        if msg.term > s.current_term[i]:
            return self.update_term(s, msg)
        if isinstance(msg, RequestVoteRequest):
            return self.handle_request_vote_request(s, msg)
        if isinstance(msg, AppendEntriesRequest):
            return self.handle_append_entries_request(s, msg)
        if msg.term < s.current_term[i]:
            return self.step(s, messages=s.messages.remove(msg))  # DropStaleResponse
        if isinstance(msg, RequestVoteResponse):
            return self.handle_request_vote_response(s, msg)
        return self.handle_append_entries_response(s, msg)

    def update_term(self, s: RaftState, msg: Message) -> RaftState:
        """UpdateTerm: adopt the newer term as a follower with no vote."""
        i = msg.dest
        return self.step(
            s,
            current_term=s.current_term.set(i, msg.term),
            role=s.role.set(i, FOLLOWER),
            voted_for=s.voted_for.set(i, None),
        )

    def reply(self, s: RaftState, response: Message, request: Message) -> Bag[Message]:
        return s.messages.add(response).remove(request)

    def grants_vote(self, s: RaftState, msg: RequestVoteRequest) -> bool:
        """A vote for a candidate of this term whose log is at least as up to date,
        if the server has not voted for another in this term."""
        i = msg.dest
        return msg.term == s.current_term[i] and log_up_to_date(msg, s.log[i]) and s.voted_for[i] in (None, msg.source)

    def handle_request_vote_request(self, s: RaftState, msg: RequestVoteRequest) -> RaftState:
        i, j = msg.dest, msg.source
        grant = self.grants_vote(s, msg)
        response = RequestVoteResponse(s.current_term[i], grant, s.log[i], i, j)
        voted_for = s.voted_for.set(i, j) if grant else s.voted_for
        return self.step(s, voted_for=voted_for, messages=self.reply(s, response, msg))

    def handle_request_vote_response(self, s: RaftState, msg: RequestVoteResponse) -> RaftState:
        """Tally the answer (raft.tla tallies even when no longer a candidate; such
        tallies are never read)."""
        i, j = msg.dest, msg.source
        changes: dict[str, object] = {"votes_responded": s.votes_responded.set(i, s.votes_responded[i] | {j})}
        if msg.vote_granted:
            changes["votes_granted"] = s.votes_granted.set(i, s.votes_granted[i] | {j})
            changes["voter_log"] = s.voter_log.set(i, s.voter_log[i].set(j, msg.log))
        return self.step(s, messages=s.messages.remove(msg), **changes)

    def handle_append_entries_request(self, s: RaftState, msg: AppendEntriesRequest) -> RaftState | None:
        i, j = msg.dest, msg.source
        log = s.log[i]
        log_ok = msg.prev_log_index == 0 or (
            0 < msg.prev_log_index <= len(log) and msg.prev_log_term == log[msg.prev_log_index - 1].term
        )
        term = s.current_term[i]
        if msg.term < term or (s.role[i] == FOLLOWER and not log_ok):
            refusal = AppendEntriesResponse(term, False, 0, i, j)
            return self.step(s, messages=self.reply(s, refusal, msg))
        if s.role[i] == CANDIDATE:  # a leader of this term exists: return to follower
            return self.step(s, role=s.role.set(i, FOLLOWER))
        if s.role[i] != FOLLOWER:  # a leader never receives a request of its own term
            return None
        return self.accept_append_entries(s, msg)

    def accept_append_entries(self, s: RaftState, msg: AppendEntriesRequest) -> RaftState:
        """A follower whose log matches up to prev_log_index: done already (reply and
        take the commit index), a conflicting entry (remove the last entry), or the
        next entry (append it)."""
        i, j = msg.dest, msg.source
        log = s.log[i]
        index = msg.prev_log_index + 1
        if not msg.entries or (len(log) >= index and log[index - 1].term == msg.entries[0].term):
            done = AppendEntriesResponse(s.current_term[i], True, msg.prev_log_index + len(msg.entries), i, j)
            return self.step(s, commit_index=s.commit_index.set(i, msg.commit_index), messages=self.reply(s, done, msg))
        if len(log) >= index:  # conflict: remove one entry, the request stays
            return self.step(s, log=s.log.set(i, log[:-1]))
        return self.step(s, log=s.log.set(i, (*log, msg.entries[0])))  # len(log) == prev_log_index

    def handle_append_entries_response(self, s: RaftState, msg: AppendEntriesResponse) -> RaftState:
        i, j = msg.dest, msg.source
        if msg.success:
            next_index = s.next_index.set(i, s.next_index[i].set(j, msg.match_index + 1))
            match_index = s.match_index.set(i, s.match_index[i].set(j, msg.match_index))
            return self.step(s, next_index=next_index, match_index=match_index, messages=s.messages.remove(msg))
        next_index = s.next_index.set(i, s.next_index[i].set(j, max(s.next_index[i][j] - 1, 1)))
        return self.step(s, next_index=next_index, messages=s.messages.remove(msg))

    # ------------------------------------------------------------------- network

    @rule(DuplicateMessage)
    def duplicate_message(self, s: RaftState, msg: Message) -> RaftState | None:
        """The network delivers a second copy of a message."""
        return self.step(s, messages=s.messages.add(msg))

    @rule(DropMessage)
    def drop_message(self, s: RaftState, msg: Message) -> RaftState | None:
        """The network loses a message."""
        return self.step(s, messages=s.messages.remove(msg))

    # ---------------------------------------------------------------- validation

    def observe(self, s: RaftState, a: RaftAction) -> dict[str, object] | None:
        """What an implementation logs for a step: every step, the network's included
        (a simulator that duplicates or drops a message knows it did), with messages
        as implementations send them, without the history field ``log``.  A Receive
        that leaves its message in the bag (adopting a newer term, a candidate
        returning to follower, removing or appending one entry) is logged like any
        other: an implementation that handles a message at once logs one Receive per
        such step (docs/raft.md, "Logging a Raft implementation"; docs/raft-service.md,
        "Conformance mode", for this project's implementation)."""
        if isinstance(a, Receive | DuplicateMessage | DropMessage):
            return {"actor": a.actor, "action": {"type": type(a).__name__, "msg": wire_message(a.msg)}}
        return {"actor": a.actor, "action": to_json(a)}

    # ---------------------------------------------------------------- properties

    def within_bounds(self, s: RaftState) -> bool:
        c = self.config
        return (
            all(t <= c.max_term for t in s.current_term.values())
            and all(len(log) <= c.max_log for log in s.log.values())
            and len(s.messages) <= c.max_msgs
        )

    def invariants(self) -> Sequence[Invariant[RaftState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self.type_ok),
            Invariant("ElectionSafety", "at most one leader is elected in any term", election_safety),
            Invariant("LogMatching", "two logs with an entry of the same index and term agree up to it", log_matching),
            Invariant(
                "StateMachineSafety",
                "committed entries exist and agree: no two servers commit different entries at one index",
                state_machine_safety,
            ),
            Invariant(
                "LeaderCompleteness",
                "a leader's log holds every entry committed in an earlier or its own term",
                leader_completeness,
            ),
        )

    def step_properties(self) -> Sequence[StepProperty[RaftState]]:
        return (
            StepProperty(
                "LeaderAppendOnly",
                "a leader never removes or changes an entry of its log while it leads",
                leader_append_only,
            ),
        )

    def type_ok(self, s: RaftState) -> bool:
        servers = set(self.servers)
        return (
            set(s.current_term) == servers
            and all(isinstance(t, int) and t >= 1 for t in s.current_term.values())
            and all(r in ROLES for r in s.role.values())
            and all(v is None or v in servers for v in s.voted_for.values())
            and all(isinstance(e, Entry) and e.value in self.values for log in s.log.values() for e in log)
            and all(0 <= c for c in s.commit_index.values())
            and all(g <= r <= servers for g, r in zip(s.votes_granted.values(), s.votes_responded.values()))
            and all(n >= 1 for peers in s.next_index.values() for n in peers.values())
            and all(m >= 0 for peers in s.match_index.values() for m in peers.values())
            and all(m.source in servers and m.dest in servers for m in s.messages.distinct())
        )

    def reachable(self) -> Sequence[Reachable[RaftState]]:
        return (
            Reachable("LeaderElected", "some server is leader", lambda s: LEADER in s.role.values()),
            Reachable("EntryCommitted", "some server has committed an entry", lambda s: any(s.commit_index.values())),
            Reachable(
                "LaterLeader",
                "leaders were elected in two different terms",
                lambda s: len({e.term for e in s.elections}) > 1,
            ),
        )

    def refinement(self) -> Refinement[RaftState, ConsensusState] | None:
        if self.config.max_log != 1:
            return None
        return Refinement(Consensus(ConsensusConfig(values=self.config.values)), chosen_first_value)


def wire_message(m: Message) -> dict[str, object]:
    """A message's JSON as an implementation sends it: without the history field ``log``."""
    data: dict[str, object] = to_json(m)
    data.pop("log", None)
    return data


# ------------------------------------------------------------------- invariants


def election_safety(s: RaftState) -> bool:
    leaders: dict[int, str] = {}
    for e in s.elections:
        if leaders.setdefault(e.term, e.leader) != e.leader:
            return False
    return True


def log_matching(s: RaftState) -> bool:
    logs = list(s.log.values())
    for a, log_a in enumerate(logs):
        for log_b in logs[a + 1 :]:
            for k in range(min(len(log_a), len(log_b)) - 1, -1, -1):
                if log_a[k].term == log_b[k].term:
                    if log_a[: k + 1] != log_b[: k + 1]:
                        return False
                    break
    return True


def leader_completeness(s: RaftState) -> bool:
    """A server's commit index was set in its term or an earlier one, so every leader
    of that term or a later one must hold the entries it covers."""
    for leader, role in s.role.items():
        if role != LEADER:
            continue
        term, log = s.current_term[leader], s.log[leader]
        for i, commit in s.commit_index.items():
            if s.current_term[i] <= term and commit and log[:commit] != s.log[i][:commit]:
                return False
    return True


def state_machine_safety(s: RaftState) -> bool:
    committed = [s.log[i][:c] for i, c in s.commit_index.items()]
    if any(len(prefix) < c for prefix, c in zip(committed, s.commit_index.values())):
        return False
    for a, prefix_a in enumerate(committed):
        for prefix_b in committed[a + 1 :]:
            k = min(len(prefix_a), len(prefix_b))
            if prefix_a[:k] != prefix_b[:k]:
                return False
    return True


def leader_append_only(s: RaftState, t: RaftState) -> bool:
    for i, role in s.role.items():
        if role == LEADER and t.role[i] == LEADER and t.current_term[i] == s.current_term[i]:
            if t.log[i][: len(s.log[i])] != s.log[i]:
                return False
    return True


def chosen_first_value(s: RaftState) -> ConsensusState:
    """The value at index 1 once it cannot change: stored by a quorum in the newest
    term any first entry has, in logs or in requests in flight."""
    firsts = [log[0] for log in s.log.values() if log]
    firsts += [
        m.entries[0]
        for m in s.messages.distinct()
        if isinstance(m, AppendEntriesRequest) and m.entries and m.prev_log_index == 0
    ]
    if not firsts:
        return ConsensusState(frozenset())
    newest = max(e.term for e in firsts)
    holders: dict[Entry, int] = {}
    for log in s.log.values():
        if log and log[0].term == newest:
            holders[log[0]] = holders.get(log[0], 0) + 1
    quorum = len(s.log) // 2 + 1
    return ConsensusState(frozenset(e.value for e, n in holders.items() if n >= quorum))


# ---------------------------------------------------------------------- variants
# Each a real mistake, as a subclass that overrides the one rule or handler it breaks.
# Three need three servers, where an exhaustive search to their depth takes minutes
# to hours; each has a pinned counterexample (a witness) that the checks replay.

#: shortest (found by exhaustive search, 225,107 states, about 5 minutes)
FORGET_VOTE_WITNESS = (
    "Timeout(s1)",
    "Timeout(s2)",
    "Timeout(s3)",
    "RequestVote(s1, s1)",
    "Receive(RequestVote[2](s1→s1, last 0@0))",
    "Receive(Vote[2](s1→s1, granted))",
    "RequestVote(s1, s2)",
    "Receive(RequestVote[2](s1→s2, last 0@0))",
    "Restart(s2)",
    "Receive(Vote[2](s2→s1, granted))",
    "RequestVote(s3, s2)",
    "BecomeLeader(s1)",
    "Receive(RequestVote[2](s3→s2, last 0@0))",
    "Receive(Vote[2](s2→s3, granted))",
    "RequestVote(s3, s3)",
    "Receive(RequestVote[2](s3→s3, last 0@0))",
    "Receive(Vote[2](s3→s3, granted))",
    "BecomeLeader(s3)",
)

NO_LOG_CHECK_WITNESS = (
    "Timeout(s1)",
    "RequestVote(s1, s1)",
    "Receive(RequestVote[2](s1→s1, last 0@0))",
    "Receive(Vote[2](s1→s1, granted))",
    "RequestVote(s1, s2)",
    "Receive(RequestVote[2](s1→s2, last 0@0))",
    "Receive(RequestVote[2](s1→s2, last 0@0))",
    "Receive(Vote[2](s2→s1, granted))",
    "BecomeLeader(s1)",
    "ClientRequest(s1, v1)",
    "AppendEntries(s1, s2)",
    "Receive(Append[2](s1→s2, after 0@0, [v1@2], commit 0))",
    "Receive(Append[2](s1→s2, after 0@0, [v1@2], commit 0))",
    "Receive(Appended[2](s2→s1, ok 1))",
    "AdvanceCommitIndex(s1)",
    "Timeout(s3)",
    "Timeout(s3)",
    "RequestVote(s3, s3)",
    "Receive(RequestVote[3](s3→s3, last 0@0))",
    "Receive(Vote[3](s3→s3, granted))",
    "RequestVote(s3, s2)",
    "Receive(RequestVote[3](s3→s2, last 0@0))",
    "Receive(RequestVote[3](s3→s2, last 0@0))",
    "Receive(Vote[3](s2→s3, granted))",
    "BecomeLeader(s3)",
)

#: the paper's Figure 8 with three servers and one log slot
COMMIT_OLD_TERM_WITNESS = (
    "Timeout(s1)",
    "RequestVote(s1, s1)",
    "Receive(RequestVote[2](s1→s1, last 0@0))",
    "Receive(Vote[2](s1→s1, granted))",
    "RequestVote(s1, s2)",
    "Receive(RequestVote[2](s1→s2, last 0@0))",
    "Receive(RequestVote[2](s1→s2, last 0@0))",
    "Receive(Vote[2](s2→s1, granted))",
    "BecomeLeader(s1)",
    "ClientRequest(s1, v1)",
    "Timeout(s2)",
    "RequestVote(s2, s2)",
    "Receive(RequestVote[3](s2→s2, last 0@0))",
    "Receive(Vote[3](s2→s2, granted))",
    "RequestVote(s2, s3)",
    "Receive(RequestVote[3](s2→s3, last 0@0))",
    "Receive(RequestVote[3](s2→s3, last 0@0))",
    "Receive(Vote[3](s3→s2, granted))",
    "BecomeLeader(s2)",
    "ClientRequest(s2, v1)",
    "Restart(s1)",
    "Timeout(s1)",
    "Timeout(s1)",
    "RequestVote(s1, s1)",
    "Receive(RequestVote[4](s1→s1, last 1@2))",
    "Receive(Vote[4](s1→s1, granted))",
    "RequestVote(s1, s3)",
    "Receive(RequestVote[4](s1→s3, last 1@2))",
    "Receive(RequestVote[4](s1→s3, last 1@2))",
    "Receive(Vote[4](s3→s1, granted))",
    "BecomeLeader(s1)",
    "AppendEntries(s1, s3)",
    "Receive(Append[4](s1→s3, after 1@2, [], commit 0))",
    "Receive(Appended[4](s3→s1, refused))",
    "AppendEntries(s1, s3)",
    "Receive(Append[4](s1→s3, after 0@0, [v1@2], commit 0))",
    "Receive(Append[4](s1→s3, after 0@0, [v1@2], commit 0))",
    "Receive(Appended[4](s3→s1, ok 1))",
    "AdvanceCommitIndex(s1)",
    "Restart(s2)",
    "Timeout(s2)",
    "Timeout(s2)",
    "RequestVote(s2, s2)",
    "Receive(RequestVote[5](s2→s2, last 1@3))",
    "Receive(Vote[5](s2→s2, granted))",
    "RequestVote(s2, s3)",
    "Receive(RequestVote[5](s2→s3, last 1@3))",
    "Receive(RequestVote[5](s2→s3, last 1@3))",
    "Receive(Vote[5](s3→s2, granted))",
    "BecomeLeader(s2)",
)


@variant("vote_twice", "a server grants a second vote in the same term", params={"max_term": 2})
class VoteTwice(Raft):
    def grants_vote(self, s: RaftState, msg: RequestVoteRequest) -> bool:
        """Forgets to check votedFor: any up-to-date candidate of this term gets a vote."""
        return msg.term == s.current_term[msg.dest] and log_up_to_date(msg, s.log[msg.dest])


@variant(
    "commit_old_term",
    "a leader commits an older term's entry by counting replicas (Figure 8)",
    params={"servers": 3, "max_term": 5, "max_log": 1, "max_msgs": 1},
    witness=COMMIT_OLD_TERM_WITNESS,
)
class CommitOldTerm(Raft):
    def may_commit(self, s: RaftState, server: str, entry: Entry) -> bool:
        """Counts replicas of any entry, so an old entry on a quorum counts as committed
        although a server with a newer last term can still be elected and remove it."""
        return True


@variant(
    "no_log_check",
    "votes are granted without the log-up-to-date check",
    params={"servers": 3, "max_term": 3, "max_log": 1, "max_msgs": 1},
    witness=NO_LOG_CHECK_WITNESS,
)
class NoLogCheck(Raft):
    def grants_vote(self, s: RaftState, msg: RequestVoteRequest) -> bool:
        """Grants any candidate of this term it has not voted against, so a server
        missing committed entries can be elected."""
        i = msg.dest
        return msg.term == s.current_term[i] and s.voted_for[i] in (None, msg.source)


@variant(
    "truncate_on_stale",
    "a follower truncates its log on any accepted AppendEntries, conflict or not",
    params={"servers": 2, "max_term": 2, "max_log": 2, "max_msgs": 2},
)
class TruncateOnStale(Raft):
    def accept_append_entries(self, s: RaftState, msg: AppendEntriesRequest) -> RaftState:
        """Replaces everything after prev_log_index with the request's entries, so a
        stale or reordered request removes entries the follower already acknowledged
        and committed.  (Its commit index, as in implementations, never goes back.)"""
        i, j = msg.dest, msg.source
        log = (*s.log[i][: msg.prev_log_index], *msg.entries)
        done = AppendEntriesResponse(s.current_term[i], True, msg.prev_log_index + len(msg.entries), i, j)
        return self.step(
            s,
            log=s.log.set(i, log),
            commit_index=s.commit_index.set(i, max(s.commit_index[i], msg.commit_index)),
            messages=self.reply(s, done, msg),
        )


@variant(
    "forget_vote",
    "votedFor is volatile and lost on restart",
    params={"servers": 3, "max_term": 2, "max_log": 0, "max_msgs": 1},
    witness=FORGET_VOTE_WITNESS,
)
class ForgetVote(Raft):
    @rule(Restart)
    def restart(self, s: RaftState, server: str) -> RaftState | None:
        """Restarts without its vote, so it may vote again in the same term."""
        restarted = super().restart(s, server)
        assert restarted is not None
        return attrs.evolve(restarted, voted_for=restarted.voted_for.set(server, None))


@variant(
    "append_duplicate",
    "a follower appends a retransmitted request's entry again",
    params={"servers": 2, "values": 2, "max_term": 2, "max_log": 2, "max_msgs": 1},
)
class AppendDuplicate(Raft):
    def accept_append_entries(self, s: RaftState, msg: AppendEntriesRequest) -> RaftState:
        """Appends any entry it is sent at the end of its log, so a duplicated or
        retransmitted request leaves the entry twice and the logs stop matching."""
        if not msg.entries:
            return super().accept_append_entries(s, msg)
        i, j = msg.dest, msg.source
        done = AppendEntriesResponse(s.current_term[i], True, msg.prev_log_index + len(msg.entries), i, j)
        return self.step(
            s,
            log=s.log.set(i, (*s.log[i], *msg.entries)),
            commit_index=s.commit_index.set(i, msg.commit_index),
            messages=self.reply(s, done, msg),
        )


@variant(
    "discard_old_terms",
    "a leader removes the uncommitted entries of older terms it may not commit",
    params={"servers": 2, "max_term": 3, "max_log": 1, "max_msgs": 1},
)
class DiscardOldTerms(Raft):
    @rule(AdvanceCommitIndex)
    def advance_commit_index(self, s: RaftState, server: str) -> RaftState | None:
        """Reads Figure 8 as "entries of older terms must go": after committing what it
        may, the leader drops every later entry of an older term from its own log."""
        advanced = super().advance_commit_index(s, server)
        if advanced is None:
            return None
        term, commit, log = s.current_term[server], advanced.commit_index[server], s.log[server]
        kept = log[:commit] + tuple(e for e in log[commit:] if e.term == term)
        return attrs.evolve(advanced, log=advanced.log.set(server, kept))
