"""Raft's election (``spec/raft.py``) in z3, and the inductive invariant that proves
ElectionSafety: at most one leader is elected in any term.

Where it sits: the one module in ``checks/`` that knows the Raft spec's state; it
subclasses ``checks.proofs.system.Encoding`` and is registered in
``checks.proofs.registry``, so ``distcheck prove raft`` cross-checks it against the
executable spec and then discharges the obligations.

**An abstraction, not a copy.**  ElectionSafety depends only on the election part of
Raft: terms, roles, votedFor, the votes a candidate tallied, the RequestVote
messages, restarts and the ``elections`` history.  Logs enter only through the
up-to-date check, which can only make a vote rarer.  So the encoding keeps that part
and forgets the rest; its state, for servers s1..sN and terms 1..T (T = max_term):

- ``s.term``, ``s.role``, ``s.voted_for``; ``s.responded[p]``, ``s.granted[p]``
  (p ∈ s's votes_responded, votes_granted);
- one boolean per possible message, "some copy of it is in the bag", with the
  fields an election reads: ``RequestVote[t](i→j)``, ``Vote[t](j→i, granted)``,
  ``Vote[t](j→i, denied)``, ``Append[t](i→j)``, ``Appended[t](j→i)`` (log
  fields, counts and the other history fields forgotten);
- ``elected[t](i)``: some election of the history has term t and leader i, and
  ``election_votes[t](i)[j]``: j is among its votes.

The abstraction α maps a spec state to these values.  Its steps are the spec's
election steps (``Timeout``, ``Restart``, ``RequestVote``, ``BecomeLeader``,
``AppendEntries``) and its own: ``VoteRequestArrives(t, i, j, log_ok)`` (j handles
i's request; ``log_ok`` says whether the up-to-date check passes, either may
happen), ``VoteResponseArrives``, ``AppendRequestArrives(t, i, j, reply)``
(whether a follower of the same term answers depends on logs, so either may
happen), ``AppendResponseArrives`` (only a newer term matters) and
``MessageLost(m)``.  A delivery never removes its message in the abstraction;
``MessageLost`` does.

**Why it is sound: the abstraction over-approximates.**  Every spec step s → t
within the bounds is matched by abstract steps from α(s) to α(t) (``simulate``):
the election steps by themselves; a ``Receive`` by the matching arrival (its flag
read off what the spec did) followed by a ``MessageLost`` for each abstract message
of which no copy is left; ``ClientRequest``, ``AdvanceCommitIndex``,
``DuplicateMessage`` and a ``DropMessage`` that leaves a copy change nothing the
abstraction sees.  The bag's counts and losses only take behaviours away (a message
the abstraction still has may be gone in the spec, never the reverse), and the log
check only turns a grant into a refusal, which the abstraction allows anyway.  So
α of every reachable spec state is reachable in the abstraction, an invariant
inductive for the abstraction holds of α(s) for every reachable s, and since
ElectionSafety is a property of α(s) (the elections' terms and leaders), it holds
in the spec.  The abstract instance depends only on ``servers`` and ``max_term``:
the proof covers every ``values``, ``max_log`` and ``max_msgs``.  The cross-check
checks the simulation on every reachable state of a small instance.

**The inductive invariant ElectionInv.**  Say that *j's vote in term t is
recorded for i* when a granted ``Vote[t](j→i)`` is in the bag, or i is a candidate
or leader in term t with j in its ``granted``, or j is among the votes of an
election of i in term t.  ElectionInv is the conjunction of:

- **ElectionRecords**: ``election_votes[t](i)`` is empty unless i was elected in
  t (true of every abstraction of a spec state; it keeps z3's counterexamples
  printable as spec states);
- **VotesRecorded**: a vote of j in term t recorded for i means j's term is at
  least t, and while j is in term t it has voted for i;
- **OneVotePerTerm**: j's votes in term t are all recorded for the same server;
- **ElectedByQuorum**: an election of i in term t has the votes of a quorum.

Why it is inductive, in one line each: a grant needs votedFor empty or the
candidate, and VotesRecorded says votedFor names every server j's vote in its term
is recorded for; a tally, a ``BecomeLeader`` and the history only copy a record;
a server leaves a term only upwards (``Timeout``, a newer message), where no vote
of it is recorded yet; and a tally records votes only while its owner is a
candidate or leader of that term, which it stops being when its term changes
(``Timeout`` also resets the tally, a newer message makes it a follower).
ElectionSafety follows: two elections in one term have quorums that share a
voter, whose votes in that term go to one server.  Quorum intersection is used only
there (``distcheck prove quorums`` proves it for majorities on its own).

**Variants.**  ``vote_twice`` (a grant ignores votedFor) and ``forget_vote``
(``Restart`` clears votedFor) are encoded, and Consecution fails for each, at
``VoteRequestArrives`` and at ``Restart``.  The three other variants,
``commit_old_term``, ``no_log_check`` and ``truncate_on_stale``, change only the
log part, which the abstraction forgets: their abstraction is the reference one,
and ElectionSafety is proved for them too (their mistakes break LogMatching,
LeaderCompleteness and StateMachineSafety, not elections).

**Where z3 stops.**  ElectionSafety is proved for every instance up to 4 servers
and terms 1..9 (the spec's largest term bound; Consecution about 200 s) and up to 5
servers and terms 1..7 (about 530 s); at the spec's largest parameters, 5 servers
and terms 1..9, z3 gives up on the Consecution query (one satisfiability check
over 2,535 abstract steps and 1,370 fields) with ``--timeout 300``, while
Initiation and Safety(ElectionSafety) are proved in about a second (``docs/proofs.md`` has the
table).  The log properties (LogMatching, LeaderCompleteness, StateMachineSafety)
are not proved: this abstraction forgets logs and cannot state them, and no
encoding of the log part was written.  It would need the logs, the log fields of
every message and raft.tla's history (``all_logs``, ``voter_log``, each
election's log), and an invariant in the style of Ongaro's or Verdi's proofs
quantified over log indices and every message in the bag; since it was not
attempted, which of its obligations z3 would stop at is not known.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import attrs
import z3

from distcheck.checks.proofs.system import Candidate, Encoding, Field, Predicate, SymState, Transition
from distcheck.spec.contract import Action
from distcheck.spec.raft import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    ROLES,
    AdvanceCommitIndex,
    AppendEntries,
    AppendEntriesRequest,
    AppendEntriesResponse,
    BecomeLeader,
    ClientRequest,
    DropMessage,
    DuplicateMessage,
    Election,
    Log,
    Message,
    Raft,
    RaftState,
    Receive,
    RequestVote,
    RequestVoteRequest,
    RequestVoteResponse,
    Restart,
    Timeout,
)
from distcheck.spec.values import Bag, FrozenMap

# ----------------------------------------------------------------- abstract steps


@attrs.frozen
class VoteRequestArrives(Action):
    """j handles a RequestVote of term t from i; ``log_ok``: i's log is up to date."""

    ACTOR = "dest"
    term: int
    source: str
    dest: str
    log_ok: bool


@attrs.frozen
class VoteResponseArrives(Action):
    """i handles j's answer of term t."""

    ACTOR = "dest"
    term: int
    source: str
    dest: str
    granted: bool


@attrs.frozen
class AppendRequestArrives(Action):
    """j handles an AppendEntries of term t from i; ``reply``: a follower of term t
    answers it (its log decides whether it does)."""

    ACTOR = "dest"
    term: int
    source: str
    dest: str
    reply: bool


@attrs.frozen
class AppendResponseArrives(Action):
    """i handles j's AppendEntries answer of term t (only a newer term matters)."""

    ACTOR = "dest"
    term: int
    source: str
    dest: str


@attrs.frozen
class MessageLost(Action):
    """The last copy of a message is gone (delivered or dropped)."""

    ACTOR = "network"
    message: str


ElectionAction = (
    Timeout
    | Restart
    | RequestVote
    | BecomeLeader
    | AppendEntries
    | VoteRequestArrives
    | VoteResponseArrives
    | AppendRequestArrives
    | AppendResponseArrives
    | MessageLost
)

# ------------------------------------------------------------------ field names


def term(i: str) -> str:
    return f"{i}.term"


def role(i: str) -> str:
    return f"{i}.role"


def voted_for(i: str) -> str:
    return f"{i}.voted_for"


def responded(i: str, j: str) -> str:
    return f"{i}.responded[{j}]"


def granted(i: str, j: str) -> str:
    return f"{i}.granted[{j}]"


def vote_request(t: int, i: str, j: str) -> str:
    return f"RequestVote[{t}]({i}→{j})"


def vote_response(t: int, j: str, i: str, grant: bool) -> str:
    return f"Vote[{t}]({j}→{i}, {'granted' if grant else 'denied'})"


def append_request(t: int, i: str, j: str) -> str:
    return f"Append[{t}]({i}→{j})"


def append_response(t: int, j: str, i: str) -> str:
    return f"Appended[{t}]({j}→{i})"


def elected(t: int, i: str) -> str:
    return f"elected[{t}]({i})"


def election_votes(t: int, i: str, j: str) -> str:
    return f"election_votes[{t}]({i})[{j}]"


Updates = dict[str, Hashable | z3.ExprRef]


class RaftElectionEncoding(Encoding[RaftState, ElectionAction]):
    abstraction = True

    def __init__(self, spec: Raft) -> None:
        super().__init__(spec)
        self.raft = spec
        self.variant = spec.variant
        self.servers = spec.servers
        self.terms = tuple(range(1, spec.config.max_term + 1))
        self.quorum = spec.quorum_size
        self._messages = tuple(self._message_fields())
        self._all_false: dict[str, Hashable] = dict.fromkeys(self._messages, False)
        for t in self.terms:
            for i in self.servers:
                self._all_false[elected(t, i)] = False
                self._all_false.update({election_votes(t, i, j): False for j in self.servers})

    # ------------------------------------------------------------------ state

    def message_fields(self) -> tuple[str, ...]:
        """The flags of the possible messages, one per message an election tells apart."""
        return self._messages

    def _message_fields(self) -> list[str]:
        out = []
        for t in self.terms:
            for i, j in itertools.product(self.servers, repeat=2):
                out += [vote_request(t, i, j), vote_response(t, i, j, True), vote_response(t, i, j, False)]
                if i != j:
                    out += [append_request(t, i, j), append_response(t, i, j)]
        return out

    def state_fields(self) -> Sequence[Field]:
        fields = []
        for i in self.servers:
            fields += [Field(term(i), self.terms), Field(role(i), ROLES), Field(voted_for(i), (None, *self.servers))]
            fields += [Field(responded(i, j)) for j in self.servers]
            fields += [Field(granted(i, j)) for j in self.servers]
        fields += [Field(name) for name in self.message_fields()]
        for t in self.terms:
            for i in self.servers:
                fields.append(Field(elected(t, i)))
                fields += [Field(election_votes(t, i, j)) for j in self.servers]
        return fields

    def message_field(self, m: Message) -> str:
        match m:
            case RequestVoteRequest():
                return vote_request(m.term, m.source, m.dest)
            case RequestVoteResponse():
                return vote_response(m.term, m.source, m.dest, m.vote_granted)
            case AppendEntriesRequest():
                return append_request(m.term, m.source, m.dest)
            case AppendEntriesResponse():
                return append_response(m.term, m.source, m.dest)
        raise ValueError(f"not a Raft message: {m!r}")

    def values(self, state: RaftState) -> Mapping[str, Hashable]:
        """The abstraction α: what an election can see of ``state``."""
        out = dict(self._all_false)
        for i in self.servers:
            out[term(i)] = state.current_term[i]
            out[role(i)] = state.role[i]
            out[voted_for(i)] = state.voted_for[i]
            for j in self.servers:
                out[responded(i, j)] = j in state.votes_responded[i]
                out[granted(i, j)] = j in state.votes_granted[i]
        for m in state.messages.distinct():
            name = self.message_field(m)
            if name not in out:
                raise ValueError(f"a message outside the encoding: {m}")
            out[name] = True
        for e in state.elections:
            if e.term not in self.terms:
                raise ValueError(f"an election outside the encoding's terms: {e.term}")
            out[elected(e.term, e.leader)] = True
            for j in e.votes:
                out[election_votes(e.term, e.leader, j)] = True
        return out

    def state(self, values: Mapping[str, Hashable]) -> RaftState:
        """A spec state with the abstraction ``values``: empty logs, one copy of each
        message (with empty log fields), and each election's votes as recorded."""
        each = self.servers

        messages: list[Message] = []
        elections = []
        for t in self.terms:
            for i, j in itertools.product(each, repeat=2):
                if values[vote_request(t, i, j)]:
                    messages.append(RequestVoteRequest(t, 0, 0, i, j))
                for grant in (True, False):
                    if values[vote_response(t, i, j, grant)]:
                        messages.append(RequestVoteResponse(t, grant, (), i, j))
                if i != j and values[append_request(t, i, j)]:
                    messages.append(AppendEntriesRequest(t, 0, 0, (), (), 0, i, j))
                if i != j and values[append_response(t, i, j)]:
                    messages.append(AppendEntriesResponse(t, True, 0, i, j))
            for i in each:
                if values[elected(t, i)]:
                    votes = frozenset(j for j in each if values[election_votes(t, i, j)])
                    elections.append(Election(t, i, (), votes, FrozenMap({j: () for j in sorted(votes)})))
        no_log: Log = ()
        granted_by = {i: frozenset(j for j in each if values[granted(i, j)]) for i in each}
        return RaftState(
            current_term=FrozenMap({i: _int(values[term(i)]) for i in each}),
            role=FrozenMap({i: str(values[role(i)]) for i in each}),
            voted_for=FrozenMap({i: _server(values[voted_for(i)]) for i in each}),
            log=FrozenMap({i: () for i in each}),
            commit_index=FrozenMap({i: 0 for i in each}),
            votes_responded=FrozenMap({i: frozenset(j for j in each if values[responded(i, j)]) for i in each}),
            votes_granted=FrozenMap(granted_by),
            next_index=FrozenMap({i: FrozenMap({j: 1 for j in each}) for i in each}),
            match_index=FrozenMap({i: FrozenMap({j: 0 for j in each}) for i in each}),
            messages=Bag(messages),
            voter_log=FrozenMap({i: FrozenMap({j: no_log for j in sorted(granted_by[i])}) for i in each}),
            elections=frozenset(elections),
            all_logs=frozenset(),
        )

    def init(self, s: SymState) -> z3.BoolRef:
        servers = [z3.And(s.is_(term(i), 1), s.is_(role(i), FOLLOWER), s.is_(voted_for(i), None)) for i in self.servers]
        flags = [z3.Not(s[f.name]) for f in self.fields() if f.is_bool]  # no tallies, no messages, no elections
        return z3.And(*servers, *flags)

    # ---------------------------------------------------------------- actions

    def actions(self) -> Sequence[ElectionAction]:
        out: list[ElectionAction] = []
        pairs = list(itertools.product(self.servers, repeat=2))
        for i in self.servers:
            out += [Timeout(i), Restart(i), BecomeLeader(i)]
        out += [RequestVote(i, j) for i, j in pairs]
        out += [AppendEntries(i, j) for i, j in pairs if i != j]
        for t in self.terms:
            for i, j in pairs:
                out += [VoteRequestArrives(t, i, j, ok) for ok in (True, False)]
                out += [VoteResponseArrives(t, i, j, g) for g in (True, False)]
                if i != j:
                    out += [AppendRequestArrives(t, i, j, r) for r in (True, False)]
                    out.append(AppendResponseArrives(t, i, j))
        out += [MessageLost(name) for name in self.message_fields()]
        return out

    def term_of(self, s: SymState, i: str) -> z3.ArithRef:
        """Server i's term (its field's index plus one)."""
        value: z3.ArithRef = s[term(i)] + 1
        return value

    def transition(self, action: ElectionAction, s: SymState) -> Transition:
        match action:
            case Timeout(i):
                return Transition(
                    z3.And(s.is_in(role(i), (FOLLOWER, CANDIDATE)), self.term_of(s, i) < self.terms[-1]),
                    {term(i): s[term(i)] + 1, role(i): CANDIDATE, voted_for(i): None, **self.no_tally(i)},
                )
            case Restart(i):
                updates: Updates = {role(i): FOLLOWER, **self.no_tally(i)}
                if self.variant == "forget_vote":
                    updates[voted_for(i)] = None
                return Transition(z3.BoolVal(True), updates)
            case RequestVote(i, j):
                return Transition(
                    z3.And(s.is_(role(i), CANDIDATE), z3.Not(s[responded(i, j)])),
                    self.send(s, i, {t: vote_request(t, i, j) for t in self.terms}),
                )
            case BecomeLeader(i):
                tally = z3.Sum(*[z3.If(s[granted(i, j)], 1, 0) for j in self.servers])
                updates = {role(i): LEADER, **self.send(s, i, {t: elected(t, i) for t in self.terms})}
                for j in self.servers:
                    updates.update(self.send(s, i, {t: election_votes(t, i, j) for t in self.terms}, s[granted(i, j)]))
                return Transition(z3.And(s.is_(role(i), CANDIDATE), tally >= self.quorum), updates)
            case AppendEntries(i, j):
                return Transition(
                    s.is_(role(i), LEADER), self.send(s, i, {t: append_request(t, i, j) for t in self.terms})
                )
            case VoteRequestArrives(t, i, j, log_ok):
                return self._vote_request_arrives(s, t, i, j, log_ok)
            case VoteResponseArrives(t, j, i, grant):
                current = self.term_of(s, i) == t
                return Transition(
                    s[vote_response(t, j, i, grant)],
                    self.newer_term(
                        s,
                        i,
                        t,
                        {
                            responded(i, j): z3.Or(s[responded(i, j)], current),
                            granted(i, j): z3.Or(s[granted(i, j)], z3.And(current, grant)),
                        },
                    ),
                )
            case AppendRequestArrives(t, i, j, reply):
                return self._append_request_arrives(s, t, i, j, reply)
            case AppendResponseArrives(t, j, i):
                return Transition(s[append_response(t, j, i)], self.newer_term(s, i, t, {}))
            case MessageLost(name):
                return Transition(s[name], {name: False})
        raise ValueError(f"not an action of the encoding: {action}")

    def _vote_request_arrives(self, s: SymState, t: int, i: str, j: str, log_ok: bool) -> Transition:
        """raft.tla's HandleRequestVoteRequest (after UpdateTerm for a newer term): j
        answers in its own term, and grants a candidate of that term whose log is up to
        date if it has not voted for another."""
        same_term = self.term_of(s, j) == t
        free = s.is_in(voted_for(j), (None, i))
        grant = z3.And(same_term, z3.BoolVal(log_ok), z3.BoolVal(True) if self.variant == "vote_twice" else free)
        answer: Updates = {voted_for(j): z3.If(grant, s.term(voted_for(j), i), s[voted_for(j)])}
        for g in (True, False):
            answer.update(self.send(s, j, {u: vote_response(u, j, i, g) for u in self.terms}, grant == g))
        return Transition(s[vote_request(t, i, j)], self.newer_term(s, j, t, answer))

    def _append_request_arrives(self, s: SymState, t: int, i: str, j: str, reply: bool) -> Transition:
        """raft.tla's HandleAppendEntriesRequest as an election sees it: a stale request
        is refused; in the same term a candidate steps down and a follower answers or
        not, as its log decides."""
        mine = self.term_of(s, j)
        answers = z3.Or(mine > t, z3.And(mine == t, s.is_(role(j), FOLLOWER), z3.BoolVal(reply)))
        steps_down = z3.And(mine == t, s.is_(role(j), CANDIDATE))
        updates: Updates = {role(j): z3.If(steps_down, s.term(role(j), FOLLOWER), s[role(j)])}
        updates.update(self.send(s, j, {u: append_response(u, j, i) for u in self.terms}, answers))
        return Transition(s[append_request(t, i, j)], self.newer_term(s, j, t, updates))

    def no_tally(self, i: str) -> Updates:
        return {name: False for j in self.servers for name in (responded(i, j), granted(i, j))}

    def send(self, s: SymState, i: str, by_term: Mapping[int, str], when: z3.BoolRef | bool = True) -> Updates:
        """Set the flag ``by_term[t]`` for i's current term t (where ``when`` holds)."""
        return {name: z3.Or(s[name], z3.And(self.term_of(s, i) == t, when)) for t, name in by_term.items()}

    def newer_term(self, s: SymState, i: str, t: int, otherwise: Updates) -> Updates:
        """raft.tla's UpdateTerm when t is newer than i's term (the message stays, to be
        handled in the new term), else the updates ``otherwise``."""
        newer = self.term_of(s, i) < t
        adopt: Updates = {term(i): t, role(i): FOLLOWER, voted_for(i): None}
        out: Updates = {}
        for name in set(adopt) | set(otherwise):
            after = _expr(s, name, adopt.get(name, s[name]))
            before = _expr(s, name, otherwise.get(name, s[name]))
            out[name] = z3.If(newer, after, before)
        return out

    # --------------------------------------------------------------- simulation

    def simulate(self, state: RaftState, action: Any, after: RaftState) -> Sequence[ElectionAction]:
        path: list[ElectionAction] = []
        match action:
            case Timeout() | Restart() | RequestVote() | BecomeLeader() | AppendEntries():
                path.append(action)
            case ClientRequest() | AdvanceCommitIndex() | DuplicateMessage() | DropMessage():
                pass  # nothing an election sees, or a message's last copy lost (below)
            case Receive(msg=RequestVoteRequest() as m):
                ok = any(r.vote_granted for r in _added(state, after, RequestVoteResponse))
                path.append(VoteRequestArrives(m.term, m.source, m.dest, ok))
            case Receive(msg=RequestVoteResponse() as m):
                path.append(VoteResponseArrives(m.term, m.source, m.dest, m.vote_granted))
            case Receive(msg=AppendEntriesRequest() as m):
                path.append(
                    AppendRequestArrives(m.term, m.source, m.dest, bool(_added(state, after, AppendEntriesResponse)))
                )
            case Receive(msg=AppendEntriesResponse() as m):
                path.append(AppendResponseArrives(m.term, m.source, m.dest))
            case _:
                raise ValueError(f"a step the abstraction does not know: {action}")
        gone = {self.message_field(m) for m in state.messages.distinct()}
        gone -= {self.message_field(m) for m in after.messages.distinct()}
        return path + [MessageLost(name) for name in sorted(gone)]

    # ------------------------------------------------------------- properties

    def election_safety(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[
                z3.Not(z3.And(s[elected(t, i)], s[elected(t, k)]))
                for t in self.terms
                for i, k in itertools.combinations(self.servers, 2)
            ]
        )

    def properties(self) -> Sequence[Predicate]:
        return [Predicate("ElectionSafety", "at most one leader is elected in any term", self.election_safety)]

    def recorded(self, s: SymState, t: int, j: str, i: str) -> z3.BoolRef:
        """j's vote in term t is recorded for i: in a granted response, a candidate's or
        leader's tally, or an election's votes."""
        return z3.Or(
            s[vote_response(t, j, i, True)],
            z3.And(s[granted(i, j)], s.is_in(role(i), (CANDIDATE, LEADER)), self.term_of(s, i) == t),
            s[election_votes(t, i, j)],
        )

    def candidates(self) -> Sequence[Candidate]:
        def votes_recorded(s: SymState) -> z3.BoolRef:
            return z3.And(
                *[
                    z3.Implies(
                        self.recorded(s, t, j, i),
                        z3.And(
                            self.term_of(s, j) >= t,
                            z3.Implies(self.term_of(s, j) == t, s.is_(voted_for(j), i)),
                        ),
                    )
                    for t in self.terms
                    for j in self.servers
                    for i in self.servers
                ]
            )

        def one_vote_per_term(s: SymState) -> z3.BoolRef:
            return z3.And(
                *[
                    z3.Not(z3.And(self.recorded(s, t, j, i), self.recorded(s, t, j, k)))
                    for t in self.terms
                    for j in self.servers
                    for i, k in itertools.combinations(self.servers, 2)
                ]
            )

        def elected_by_quorum(s: SymState) -> z3.BoolRef:
            return z3.And(
                *[
                    z3.Implies(
                        s[elected(t, i)],
                        z3.Sum(*[z3.If(s[election_votes(t, i, j)], 1, 0) for j in self.servers]) >= self.quorum,
                    )
                    for t in self.terms
                    for i in self.servers
                ]
            )

        def election_records(s: SymState) -> z3.BoolRef:
            return z3.And(
                *[
                    z3.Implies(s[election_votes(t, i, j)], s[elected(t, i)])
                    for t in self.terms
                    for i in self.servers
                    for j in self.servers
                ]
            )

        conjuncts = (
            Predicate(
                "ElectionRecords",
                "election_votes[t](i) names voters only of an election of i in term t (as the history records them)",
                election_records,
            ),
            Predicate(
                "VotesRecorded",
                "a vote of j in term t recorded for i: j's term is at least t, and while it is t, j voted for i",
                votes_recorded,
            ),
            Predicate(
                "OneVotePerTerm",
                "every vote of j in term t that is recorded (response, tally, election) is for the same server",
                one_vote_per_term,
            ),
            Predicate("ElectedByQuorum", "an election of i in term t has the votes of a quorum", elected_by_quorum),
        )
        election_safety = Predicate("ElectionSafety", "at most one leader is elected in any term", self.election_safety)
        return (
            Candidate("ElectionInv", "ElectionRecords ∧ VotesRecorded ∧ OneVotePerTerm ∧ ElectedByQuorum", conjuncts),
            Candidate("ElectionSafety", "ElectionSafety alone (not inductive)", (election_safety,)),
        )


def _added(before: RaftState, after: RaftState, kind: type) -> list[Any]:
    """The messages of type ``kind`` of which the step added a copy."""
    return [
        m
        for m in after.messages.distinct()
        if isinstance(m, kind) and after.messages.count(m) > before.messages.count(m)
    ]


def _expr(s: SymState, name: str, value: Hashable | z3.ExprRef) -> z3.ExprRef:
    return value if isinstance(value, z3.ExprRef) else s.term(name, value)


def _int(value: Any) -> int:
    if not isinstance(value, int):
        raise ValueError(f"not a term: {value!r}")
    return value


def _server(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"not a server: {value!r}")
    return value
