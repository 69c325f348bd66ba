"""Paxos Commit: two-phase commit made non-blocking by deciding each RM's vote with Paxos.

In two-phase commit a single transaction manager records the RMs' votes; if it
fails at the wrong moment, prepared RMs wait forever.  Paxos Commit replaces it by
one Paxos consensus instance per RM, run among 2F+1 acceptors: the instance for
RM ``rm`` decides whether ``rm`` is *prepared* or *aborted*.  An RM starts its own
instance by sending a phase-2a message in ballot 0 (no phase 1 is needed there:
ballot 0 belongs to the RM).  Acceptors vote (phase 2b).  The transaction commits
iff every instance decides *prepared*; any instance deciding *aborted* aborts it.
If an RM is slow or has failed, a leader runs a higher ballot of its instance
(phases 1a, 1b, 2a) and, learning no vote was cast, proposes *aborted*.  So any
F acceptors may fail and the protocol still decides.

Sources: J. Gray and L. Lamport, "Consensus on Transaction Commit" (ACM TODS 31(1),
2006), and its TLA+ spec PaxosCommit.tla.  This module models the same
abstraction: the message set is never emptied, acceptors keep ``mbal`` (the highest
ballot they joined), ``bal``/``val`` (their last vote), and the decision is
broadcast as Commit or Abort.  With 2 RMs, 3 acceptors, majority quorums and
ballots {0, 1} it has 1,321,761 distinct states and depth 28, as TLC reports; under
acceptor symmetry 238,995 (TLC with ``SYMMETRY Permutations(Acceptor)``).
``benchmarks/tla/PaxosCommit.tla`` is the same model for TLC, run side by side by
``benchmarks/paxoscommit_vs_tlc.py``.

State: ``rm_state`` (working | prepared | committed | aborted), ``a_state``
((instance, acceptor) ↦ AcceptorState(mbal, bal, val)), ``msgs`` (message set).

Actions
    RMPrepare(rm)           A working RM prepares: phase 2a "prepared" in ballot 0.
    RMChooseToAbort(rm)     A working RM aborts: phase 2a "aborted" in ballot 0.
    RMRcvCommitMsg(rm)      An RM receives Commit.
    RMRcvAbortMsg(rm)       An RM receives Abort.
    Phase1a(bal, ins)       A leader starts ballot bal > 0 of instance ins.
    Phase1b(acc, msg)       An acceptor joins the ballot of a 1a message it has not
                            outgrown and reports its last vote.
    Phase2a(bal, ins, quorum)  With 1b messages from a quorum, the leader proposes
                            the value of the highest vote reported (or "aborted").
    Phase2b(acc, msg)       An acceptor votes for a 2a message's value.
    LeaderCommit(evidence)  A leader that sees every instance chosen "prepared"
                            broadcasts Commit; the evidence names, per RM, the
                            ballot and quorum that chose it.
    LeaderAbort(evidence)   A leader that sees some instance chosen "aborted"
                            broadcasts Abort.

Invariants
    TypeOK          every variable has a value of the right type.
    TCConsistent    no RM has committed while another has aborted.

Reachable
    AllCommitted, AllAborted, and LeaderTookOver (a ballot > 0 decided an instance).

Refinement: every step maps, through ``rm_state``, to a TCommit step or a stutter.

Variants: deliberately broken versions, each a real mistake caught by
TCConsistent, declared at the end of this module as a subclass that overrides
what it breaks: ``commit_without_all`` (the leader commits once *some* instance
has chosen "prepared", instead of every one: 2PC's commit_early in Paxos clothing)
overrides ``commit_evidence``; ``forget_vote`` (an acceptor joining a higher ballot
reports no earlier vote, so a new leader proposes "aborted" for an instance already
chosen "prepared") overrides the Phase1b rule; ``minority_quorum`` (one acceptor
counts as a quorum, so two quorums need not intersect) overrides ``quorum_size``.
Each shows with two RMs, so each declares the small size at which it is checked.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

import attrs

from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Refinement, Spec, param, rule, variant
from distcheck.spec.network import MessageSet
from distcheck.spec.twophase import (
    ABORTED,
    COMMITTED,
    PREPARED,
    RM_STATES,
    WORKING,
    Abort,
    Commit,
    RMChooseToAbort,
    RMPrepare,
    RMRcvAbortMsg,
    RMRcvCommitMsg,
    TCConfig,
    TCommit,
    TCState,
    all_in,
    tc_consistent,
)
from distcheck.spec.values import FrozenMap, name_set, short_text

NONE = "none"  # an acceptor's value before it has voted
VOTE_VALUES = (PREPARED, ABORTED)
COMMIT, ABORT = Commit(), Abort()


@attrs.frozen
class Config:
    rms: int = param(1, help="number of resource managers", minimum=1, maximum=5)
    acceptors: int = param(3, help="number of acceptors (2F+1 tolerates F failures)", minimum=1, maximum=7)
    max_ballot: int = param(1, help="ballots are 0..max_ballot (0 is the RM's own)", minimum=0, maximum=4)
    variant: str | None = None


# ------------------------------------------------------------------------ messages


@attrs.frozen(cache_hash=True)
class Phase1aMsg:
    ins: str
    bal: int

    def __str__(self) -> str:
        return f"1a({self.ins} b{self.bal})"


@attrs.frozen(cache_hash=True)
class Phase1bMsg:
    ins: str
    mbal: int
    bal: int
    val: str
    acc: str

    def __str__(self) -> str:
        vote = f"voted b{self.bal} {self.val}" if self.bal >= 0 else "no vote"
        return f"1b({self.ins} b{self.mbal} {self.acc}: {vote})"


@attrs.frozen(cache_hash=True)
class Phase2aMsg:
    ins: str
    bal: int
    val: str

    def __str__(self) -> str:
        return f"2a({self.ins} b{self.bal} {self.val})"


@attrs.frozen(cache_hash=True)
class Phase2bMsg:
    acc: str
    ins: str
    bal: int
    val: str

    def __str__(self) -> str:
        return f"2b({self.ins} b{self.bal} {self.val} {self.acc})"


Message = Phase1aMsg | Phase1bMsg | Phase2aMsg | Phase2bMsg | Commit | Abort


# -------------------------------------------------------------------------- state


@attrs.frozen(cache_hash=True)
class AcceptorState:
    mbal: int  # highest ballot joined
    bal: int  # ballot of the last vote, -1 before any
    val: str  # value of the last vote, "none" before any

    def __str__(self) -> str:
        return f"(mbal {self.mbal}, bal {self.bal}, {self.val})"


@attrs.frozen
class PCState:
    rm_state: FrozenMap[str, str]
    a_state: FrozenMap[tuple[str, str], AcceptorState]
    msgs: MessageSet[Message]


# ------------------------------------------------------------------------ actions


class LeaderAction(Action):
    __slots__ = ()
    ACTOR = "leader"


@attrs.frozen
class Phase1a(LeaderAction):
    bal: int
    ins: str


@attrs.frozen
class Phase2a(LeaderAction):
    bal: int
    ins: str
    quorum: frozenset[str] = attrs.field(converter=name_set)


@attrs.frozen(cache_hash=True)
class Chosen:
    """Evidence that instance ``ins`` chose a value: every acceptor of ``quorum``
    voted for it in ballot ``bal``."""

    ins: str
    bal: int
    quorum: frozenset[str] = attrs.field(converter=name_set)

    def __str__(self) -> str:
        return f"{self.ins}@b{self.bal} by {short_text(self.quorum)}"


@attrs.frozen
class LeaderCommit(LeaderAction):
    """Every instance has chosen "prepared" (one ``Chosen`` per RM): broadcast
    Commit.  The evidence is part of the action because TLC enumerates it."""

    evidence: tuple[Chosen, ...]


@attrs.frozen
class LeaderAbort(LeaderAction):
    """Some instance has chosen "aborted": broadcast Abort."""

    evidence: Chosen


@attrs.frozen
class Phase1b(Action):
    ACTOR = "acc"
    acc: str
    msg: Phase1aMsg


@attrs.frozen
class Phase2b(Action):
    ACTOR = "acc"
    acc: str
    msg: Phase2aMsg


PCAction = (
    RMPrepare
    | RMChooseToAbort
    | RMRcvCommitMsg
    | RMRcvAbortMsg
    | Phase1a
    | Phase2a
    | LeaderCommit
    | LeaderAbort
    | Phase1b
    | Phase2b
)


# ---------------------------------------------------------------------- the spec


class PaxosCommit(Spec[PCState, PCAction]):
    name = "paxoscommit"

    config: Config

    def __init__(self, config: Config = Config()) -> None:
        super().__init__(config)
        self.rms = tuple(f"r{i}" for i in range(1, config.rms + 1))
        self.acceptors = tuple(f"a{i}" for i in range(1, config.acceptors + 1))
        self.ballots = tuple(range(config.max_ballot + 1))
        self.quorum_size = self.smallest_quorum()
        # The minimal majorities, as in the published model (any larger set of
        # acceptors contains one, so nothing is lost; TLC's generated-state count
        # of 16,959,159 is for these).
        self.quorums = tuple(frozenset(q) for q in itertools.combinations(self.acceptors, self.quorum_size))
        self._a_keys = frozenset((ins, acc) for ins in self.rms for acc in self.acceptors)
        # Every Chosen record there can be, built once (``chosen`` runs on every state).
        self._chosen_records = {
            (ins, bal, q): Chosen(ins, bal, q) for ins in self.rms for bal in self.ballots for q in self.quorums
        }

    def smallest_quorum(self) -> int:
        """How many acceptors make a quorum: a majority, so that any two quorums share
        an acceptor (and so at most one value is chosen per instance)."""
        return len(self.acceptors) // 2 + 1

    def init_states(self) -> Iterable[PCState]:
        blank = AcceptorState(mbal=0, bal=-1, val=NONE)
        yield PCState(
            rm_state=FrozenMap({rm: WORKING for rm in self.rms}),
            a_state=FrozenMap({(ins, acc): blank for ins in self.rms for acc in self.acceptors}),
            msgs=MessageSet(),
        )

    def next(self) -> Next:
        # PCNext: each RM's steps, the leaders' (phases 1a and 2a of every ballot
        # above 0, then the decisions), then each acceptor's, in this fixed order.
        return (
            Exists(
                "rm", self.rms, self.rm_prepare, self.rm_choose_to_abort, self.rm_rcv_commit_msg, self.rm_rcv_abort_msg
            ),
            Exists(
                "bal",
                self.ballots[1:],
                Exists("ins", self.rms, self.phase1a, Exists("quorum", self.quorums, self.phase2a)),
            ),
            Exists("evidence", self.commit_evidence, self.leader_commit),
            Exists("evidence", self.abort_evidence, self.leader_abort),
            Exists(
                "acc",
                self.acceptors,
                Exists("msg", self.sent_1a, self.phase1b),
                Exists("msg", self.sent_2a, self.phase2b),
            ),
        )

    # ------------------------------------------------- what the message set shows

    def sent_1a(self, s: PCState) -> list[Phase1aMsg]:
        """The phase 1a messages sent, by instance and ballot."""
        return _Index.of(s.msgs).sent_1a

    def sent_2a(self, s: PCState) -> list[Phase2aMsg]:
        """The phase 2a messages sent, by instance, ballot and value."""
        return _Index.of(s.msgs).sent_2a

    def chosen(self, s: PCState, ins: str, value: str) -> list[Chosen]:
        """Every (ballot, quorum) in which instance ``ins`` chose ``value``: each
        acceptor of the quorum sent a 2b message for it in that ballot (TLA+'s
        Decided(rm, v), with its witnesses)."""
        voters = _Index.of(s.msgs).voters
        found = []
        for bal in self.ballots:
            voted = voters.get((ins, bal, value))
            if voted is not None and len(voted) >= self.quorum_size:
                found += [self._chosen_records[ins, bal, q] for q in self.quorums if q <= voted]
        return found

    def commit_evidence(self, s: PCState) -> Iterator[tuple[Chosen, ...]]:
        """Each way the messages show that the transaction may commit: one Chosen
        "prepared" for every RM, in RM order."""
        return itertools.product(*(self.chosen(s, rm, PREPARED) for rm in self.rms))

    def abort_evidence(self, s: PCState) -> list[Chosen]:
        """Each way the messages show that the transaction must abort: a Chosen
        "aborted" for some RM."""
        return [c for rm in self.rms for c in self.chosen(s, rm, ABORTED)]

    # ---------------------------------------------------------------------- rules

    @rule(RMPrepare)
    def rm_prepare(self, s: PCState, rm: str) -> PCState | None:
        """A working RM prepares: it votes "prepared" as phase 2a of ballot 0 of its
        own instance."""
        if s.rm_state[rm] != WORKING:
            return None
        return PCState(s.rm_state.set(rm, PREPARED), s.a_state, s.msgs.send(Phase2aMsg(rm, 0, PREPARED)))

    @rule(RMChooseToAbort)
    def rm_choose_to_abort(self, s: PCState, rm: str) -> PCState | None:
        """A working RM aborts on its own: it votes "aborted" as phase 2a of ballot
        0 of its own instance."""
        if s.rm_state[rm] != WORKING:
            return None
        return PCState(s.rm_state.set(rm, ABORTED), s.a_state, s.msgs.send(Phase2aMsg(rm, 0, ABORTED)))

    @rule(RMRcvCommitMsg)
    def rm_rcv_commit_msg(self, s: PCState, rm: str) -> PCState | None:
        """An RM receives Commit and commits."""
        if COMMIT not in s.msgs:
            return None
        return PCState(s.rm_state.set(rm, COMMITTED), s.a_state, s.msgs)

    @rule(RMRcvAbortMsg)
    def rm_rcv_abort_msg(self, s: PCState, rm: str) -> PCState | None:
        """An RM receives Abort and aborts."""
        if ABORT not in s.msgs:
            return None
        return PCState(s.rm_state.set(rm, ABORTED), s.a_state, s.msgs)

    @rule(Phase1a)
    def phase1a(self, s: PCState, bal: int, ins: str) -> PCState | None:
        """A leader starts ballot ``bal`` (above 0: ballot 0 is the RM's own) of
        instance ``ins``."""
        return PCState(s.rm_state, s.a_state, s.msgs.send(Phase1aMsg(ins, bal)))

    @rule(Phase2a)
    def phase2a(self, s: PCState, bal: int, ins: str, quorum: frozenset[str]) -> PCState | None:
        """With the 1b messages of a quorum, and no proposal yet in this ballot, the
        leader proposes the value of the highest vote reported, or "aborted" if none
        of them voted."""
        value = _Index.of(s.msgs).phase2a_value(bal, ins, quorum)
        if value is None:
            return None
        return PCState(s.rm_state, s.a_state, s.msgs.send(Phase2aMsg(ins, bal, value)))

    @rule(LeaderCommit)
    def leader_commit(self, s: PCState, evidence: tuple[Chosen, ...]) -> PCState | None:
        """A leader that sees every instance chosen "prepared" broadcasts Commit (its
        guard is its quantifier: the evidence ranges over ``commit_evidence``)."""
        return PCState(s.rm_state, s.a_state, s.msgs.send(COMMIT))

    @rule(LeaderAbort)
    def leader_abort(self, s: PCState, evidence: Chosen) -> PCState | None:
        """A leader that sees some instance chosen "aborted" broadcasts Abort (its
        guard is its quantifier: the evidence ranges over ``abort_evidence``)."""
        return PCState(s.rm_state, s.a_state, s.msgs.send(ABORT))

    @rule(Phase1b)
    def phase1b(self, s: PCState, acc: str, msg: Phase1aMsg) -> PCState | None:
        """An acceptor joins the ballot of a 1a message it has not outgrown and
        reports its last vote."""
        key = (msg.ins, acc)
        mine = s.a_state[key]
        if mine.mbal >= msg.bal:
            return None
        return PCState(
            s.rm_state,
            s.a_state.set(key, AcceptorState(msg.bal, mine.bal, mine.val)),
            s.msgs.send(Phase1bMsg(msg.ins, msg.bal, mine.bal, mine.val, acc)),
        )

    @rule(Phase2b)
    def phase2b(self, s: PCState, acc: str, msg: Phase2aMsg) -> PCState | None:
        """An acceptor that has joined no higher ballot votes for a 2a message's
        value."""
        key = (msg.ins, acc)
        if s.a_state[key].mbal > msg.bal:
            return None
        return PCState(
            s.rm_state,
            s.a_state.set(key, AcceptorState(msg.bal, msg.bal, msg.val)),
            s.msgs.send(Phase2bMsg(acc, msg.ins, msg.bal, msg.val)),
        )

    # ------------------------------------------------------------ properties

    def invariants(self) -> Sequence[Invariant[PCState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self._type_ok),
            Invariant(
                "TCConsistent", "no RM has committed while another has aborted", lambda s: tc_consistent(s.rm_state)
            ),
        )

    def _type_ok(self, s: PCState) -> bool:
        return (
            set(s.rm_state) == set(self.rms)
            and all(v in RM_STATES for v in s.rm_state.values())
            and s.a_state.keys() == self._a_keys
            and all(
                x.mbal in self.ballots and (x.bal == -1) == (x.val == NONE) and x.bal <= x.mbal
                for x in s.a_state.values()
            )
        )

    def reachable(self) -> Sequence[Reachable[PCState]]:
        return (
            Reachable("AllCommitted", "every RM has committed", lambda s: all_in(s.rm_state, COMMITTED)),
            Reachable("AllAborted", "every RM has aborted", lambda s: all_in(s.rm_state, ABORTED)),
            Reachable(
                "LeaderTookOver",
                "a ballot above 0 got a quorum of votes for some instance",
                self._leader_decided,
            ),
        )

    def _leader_decided(self, s: PCState) -> bool:
        return any(c.bal > 0 for ins in self.rms for value in VOTE_VALUES for c in self.chosen(s, ins, value))

    def canonical(self, s: PCState) -> PCState:
        """Symmetry over acceptors.  An acceptor's whole part in a state is its
        signature: its state in every instance and the 1b and 2b messages it sent.
        Acceptors are otherwise interchangeable, so handing the sorted signatures
        to a1, a2, ... gives one exact representative per orbit (two acceptors
        with equal signatures can be swapped without changing the state)."""
        sent_by: dict[str, list[tuple[object, ...]]] = {acc: [] for acc in self.acceptors}
        for m in s.msgs.sent:
            if isinstance(m, Phase1bMsg):
                sent_by[m.acc].append((1, m.ins, m.mbal, m.bal, m.val))
            elif isinstance(m, Phase2bMsg):
                sent_by[m.acc].append((2, m.ins, m.bal, 0, m.val))
        signature = {
            acc: (
                tuple((x.mbal, x.bal, x.val) for x in (s.a_state[(ins, acc)] for ins in self.rms)),
                tuple(sorted(sent_by[acc])),
            )
            for acc in self.acceptors
        }
        order = sorted(self.acceptors, key=signature.__getitem__)
        if all(signature[a] == signature[b] for a, b in zip(order, self.acceptors)):
            return s  # already canonical: keep the state (and its fingerprint)
        return self._rename(s, dict(zip(order, self.acceptors)))

    def _rename(self, s: PCState, perm: dict[str, str]) -> PCState:
        def msg(m: Message) -> Message:
            if isinstance(m, Phase1bMsg):
                return Phase1bMsg(m.ins, m.mbal, m.bal, m.val, perm[m.acc])
            if isinstance(m, Phase2bMsg):
                return Phase2bMsg(perm[m.acc], m.ins, m.bal, m.val)
            return m

        return PCState(
            s.rm_state,
            FrozenMap({(ins, perm[acc]): v for (ins, acc), v in s.a_state.items()}),
            MessageSet(frozenset(msg(m) for m in s.msgs.sent)),
        )

    def refinement(self) -> Refinement[PCState, TCState]:
        return Refinement(TCommit(TCConfig(rms=self.config.rms)), lambda s: TCState(s.rm_state))


class _Index:
    """What the rules and their domains need from a message set, gathered in one
    pass (they would otherwise rescan every message once per acceptor, quorum and
    ballot).  Only the last message set's index is kept: enumerating a state's
    successors asks about the same message set many times in a row."""

    __slots__ = ("has_2a", "reports", "sent_1a", "sent_2a", "voters")
    _last: tuple[MessageSet[Message] | None, _Index | None] = (None, None)

    def __init__(self, msgs: MessageSet[Message]) -> None:
        self.reports: dict[tuple[str, int], dict[str, Phase1bMsg]] = {}
        self.has_2a: set[tuple[str, int]] = set()
        self.voters: dict[tuple[str, int, str], set[str]] = {}
        sent_1a: list[Phase1aMsg] = []
        sent_2a: list[Phase2aMsg] = []
        for m in msgs.sent:
            if isinstance(m, Phase1bMsg):
                self.reports.setdefault((m.ins, m.mbal), {})[m.acc] = m
            elif isinstance(m, Phase2aMsg):
                self.has_2a.add((m.ins, m.bal))
                sent_2a.append(m)
            elif isinstance(m, Phase2bMsg):
                self.voters.setdefault((m.ins, m.bal, m.val), set()).add(m.acc)
            elif isinstance(m, Phase1aMsg):
                sent_1a.append(m)
        # A fixed order that needs no canonical texts: instance, ballot, value.
        sent_1a.sort(key=lambda m: (m.ins, m.bal))
        sent_2a.sort(key=lambda m: (m.ins, m.bal, m.val))
        self.sent_1a = sent_1a
        self.sent_2a = sent_2a

    @classmethod
    def of(cls, msgs: MessageSet[Message]) -> _Index:
        last_msgs, last_index = cls._last
        if last_msgs is msgs and last_index is not None:
            return last_index
        index = cls(msgs)
        cls._last = (msgs, index)
        return index

    def phase2a_value(self, bal: int, ins: str, quorum: frozenset[str]) -> str | None:
        """The value a leader may propose in ballot ``bal`` of ``ins`` on the 1b
        messages of ``quorum``: that of the highest vote reported, or "aborted" if
        none voted.  None when the quorum has not all answered, or a 2a message of
        this ballot exists already (one proposal per ballot)."""
        if (ins, bal) in self.has_2a:
            return None
        reports = self.reports.get((ins, bal), {})
        if not quorum <= reports.keys():
            return None
        highest = max((reports[acc] for acc in quorum), key=lambda m: m.bal)
        return ABORTED if highest.bal == -1 else highest.val


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides what it breaks.  Each needs two
# RMs to show (the default size has one, to keep `distcheck check all` quick).


@variant(
    "commit_without_all",
    "the leader commits when some instance, not every one, has chosen prepared",
    params={"rms": 2, "acceptors": 1, "max_ballot": 0},
)
class CommitWithoutAll(PaxosCommit):
    def commit_evidence(self, s: PCState) -> Iterator[tuple[Chosen, ...]]:
        """One Chosen "prepared" for *some* RM is taken as enough to commit, so an
        RM that voted "aborted" is overruled."""
        return ((c,) for rm in self.rms for c in self.chosen(s, rm, PREPARED))


@variant(
    "forget_vote",
    "an acceptor joining a higher ballot does not report its earlier vote",
    params={"rms": 2, "acceptors": 1, "max_ballot": 1},
)
class ForgetVote(PaxosCommit):
    @rule(Phase1b)
    def phase1b(self, s: PCState, acc: str, msg: Phase1aMsg) -> PCState | None:
        """An acceptor joins the ballot of a 1a message it has not outgrown but
        reports no vote, so the new leader may propose "aborted" for an instance
        that already chose "prepared"."""
        key = (msg.ins, acc)
        mine = s.a_state[key]
        if mine.mbal >= msg.bal:
            return None
        return PCState(
            s.rm_state,
            s.a_state.set(key, AcceptorState(msg.bal, mine.bal, mine.val)),
            s.msgs.send(Phase1bMsg(msg.ins, msg.bal, -1, NONE, acc)),
        )


@variant(
    "minority_quorum",
    "a single acceptor counts as a quorum, so quorums need not intersect",
    params={"rms": 2, "acceptors": 2, "max_ballot": 1},
)
class MinorityQuorum(PaxosCommit):
    def smallest_quorum(self) -> int:
        """One acceptor: two such quorums of two acceptors need not share one, so
        an instance can choose both values."""
        return 1
