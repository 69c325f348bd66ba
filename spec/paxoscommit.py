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

Variants

====================  =========================================================
``commit_without_all`` The leader commits once *some* instance has chosen
                      "prepared", instead of every one (2PC's commit_early,
                      in Paxos clothing).
``forget_vote``       An acceptor joining a higher ballot (phase 1b) reports no
                      earlier vote, so a new leader proposes "aborted" for an
                      instance already chosen "prepared".
``minority_quorum``   Phase 2a and the leader accept "quorums" of one acceptor:
                      two quorums need not intersect.
====================  =========================================================
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs

from distcheck.spec.contract import Action, Invariant, Reachable, Refinement, Spec, param
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

VARIANTS = {
    "commit_without_all": "the leader commits when some instance, not every one, has chosen prepared",
    "forget_vote": "an acceptor joining a higher ballot does not report its earlier vote",
    "minority_quorum": "a single acceptor counts as a quorum, so quorums need not intersect",
}
# The smallest sizes that show each mistake (two RMs are needed to disagree; the
# default size has one, to keep `distcheck check all` quick).
VARIANT_PARAMS = {
    "commit_without_all": {"rms": 2, "acceptors": 1, "max_ballot": 0},
    "forget_vote": {"rms": 2, "acceptors": 1, "max_ballot": 1},
    "minority_quorum": {"rms": 2, "acceptors": 2, "max_ballot": 1},
}


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
    actor_name = "leader"


@attrs.frozen
class Phase1a(LeaderAction):
    bal: int
    ins: str


@attrs.frozen
class Phase2a(LeaderAction):
    bal: int
    ins: str
    quorum: frozenset[str] = attrs.field(converter=name_set)


@attrs.frozen
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
    acc: str
    msg: Phase1aMsg

    @property
    def actor(self) -> str:
        return self.acc


@attrs.frozen
class Phase2b(Action):
    acc: str
    msg: Phase2aMsg

    @property
    def actor(self) -> str:
        return self.acc


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

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.variant = config.variant
        self.rms = tuple(f"r{i}" for i in range(1, config.rms + 1))
        self.acceptors = tuple(f"a{i}" for i in range(1, config.acceptors + 1))
        self.ballots = tuple(range(config.max_ballot + 1))
        quorum_size = 1 if self.variant == "minority_quorum" else config.acceptors // 2 + 1
        self.quorum_size = quorum_size
        # The minimal majorities, as in the published model (any larger set of
        # acceptors contains one, so nothing is lost; TLC's generated-state count
        # of 16,959,159 is for these).
        self.quorums = tuple(frozenset(q) for q in itertools.combinations(self.acceptors, quorum_size))
        self._a_keys = frozenset((ins, acc) for ins in self.rms for acc in self.acceptors)
        self._steps: dict[type, Callable[[PCState, Any], PCState | None]] = {
            RMPrepare: self._rm_vote,
            RMChooseToAbort: self._rm_vote,
            RMRcvCommitMsg: self._rm_rcv_commit,
            RMRcvAbortMsg: self._rm_rcv_abort,
            Phase1a: self._phase1a,
            Phase2a: self._phase2a,
            LeaderCommit: self._leader_commit,
            LeaderAbort: self._leader_abort,
            Phase1b: self._phase1b,
            Phase2b: self._phase2b,
        }

    def init_states(self) -> Iterable[PCState]:
        blank = AcceptorState(mbal=0, bal=-1, val=NONE)
        yield PCState(
            rm_state=FrozenMap({rm: WORKING for rm in self.rms}),
            a_state=FrozenMap({(ins, acc): blank for ins in self.rms for acc in self.acceptors}),
            msgs=MessageSet(),
        )

    # ---------------------------------------------------------------- guards

    def _phase2a_value(self, s: PCState, bal: int, ins: str, quorum: frozenset[str]) -> str | None:
        """The value a leader may propose in ballot ``bal`` of ``ins`` on the 1b
        messages of ``quorum``: that of the highest vote reported, or "aborted" if
        none voted.  None when the quorum has not all answered, or a 2a message of
        this ballot exists already (one proposal per ballot)."""
        return _Index.of(s.msgs).phase2a_value(bal, ins, quorum)

    def _chosen_by(self, s: PCState, c: Chosen, value: str) -> bool:
        """``c`` is evidence that its instance chose ``value``."""
        voters = _Index.of(s.msgs).voters.get((c.ins, c.bal, value))
        return voters is not None and c.quorum in self.quorums and c.quorum <= voters

    def _evidence(self, s: PCState, ins: str, value: str) -> list[Chosen]:
        """Every (ballot, quorum) in which ``ins`` chose ``value``."""
        voters = _Index.of(s.msgs).voters
        found = []
        for bal in self.ballots:
            voted = voters.get((ins, bal, value))
            if voted is not None and len(voted) >= self.quorum_size:
                found += [Chosen(ins, bal, q) for q in self.quorums if q <= voted]
        return found

    def _commit_evidence(self, s: PCState) -> Iterator[tuple[Chosen, ...]]:
        """Each way of showing that the transaction may commit: one Chosen
        "prepared" per RM (in the variant, one for some RM)."""
        per_rm = [self._evidence(s, rm, PREPARED) for rm in self.rms]
        if self.variant == "commit_without_all":
            for options in per_rm:
                for c in options:
                    yield (c,)
        else:
            yield from itertools.product(*per_rm)

    def _is_commit_evidence(self, s: PCState, evidence: tuple[Chosen, ...]) -> bool:
        instances = [c.ins for c in evidence]
        covers = len(instances) == 1 if self.variant == "commit_without_all" else instances == list(self.rms)
        return covers and all(self._chosen_by(s, c, PREPARED) for c in evidence)

    # --------------------------------------------------------------- actions

    def actions(self, s: PCState) -> Iterator[PCAction]:
        for rm in self.rms:
            if s.rm_state[rm] == WORKING:
                yield RMPrepare(rm)
                yield RMChooseToAbort(rm)
            if Commit() in s.msgs:
                yield RMRcvCommitMsg(rm)
            if Abort() in s.msgs:
                yield RMRcvAbortMsg(rm)
        for bal in self.ballots[1:]:
            for ins in self.rms:
                yield Phase1a(bal, ins)
                for quorum in self.quorums:
                    if self._phase2a_value(s, bal, ins, quorum) is not None:
                        yield Phase2a(bal, ins, quorum)
        for evidence in self._commit_evidence(s):
            yield LeaderCommit(evidence)
        for ins in self.rms:
            for chosen in self._evidence(s, ins, ABORTED):
                yield LeaderAbort(chosen)
        index = _Index.of(s.msgs)
        for acc in self.acceptors:
            for m in index.ordered_1a_2a:
                if isinstance(m, Phase1aMsg):
                    if s.a_state[(m.ins, acc)].mbal < m.bal:
                        yield Phase1b(acc, m)
                elif s.a_state[(m.ins, acc)].mbal <= m.bal:
                    yield Phase2b(acc, m)

    def next_state(self, s: PCState, a: PCAction) -> PCState | None:
        # One named step per action (dispatching on the action's type is much
        # cheaper than a match over nine classes, on 17 million steps).
        step = self._steps.get(type(a))
        return None if step is None else step(s, a)

    def _rm_vote(self, s: PCState, a: RMPrepare | RMChooseToAbort) -> PCState | None:
        if s.rm_state.get(a.rm) != WORKING:
            return None
        vote = PREPARED if isinstance(a, RMPrepare) else ABORTED
        return PCState(s.rm_state.set(a.rm, vote), s.a_state, s.msgs.send(Phase2aMsg(a.rm, 0, vote)))

    def _rm_rcv_commit(self, s: PCState, a: RMRcvCommitMsg) -> PCState | None:
        if a.rm not in s.rm_state or Commit() not in s.msgs:
            return None
        return PCState(s.rm_state.set(a.rm, COMMITTED), s.a_state, s.msgs)

    def _rm_rcv_abort(self, s: PCState, a: RMRcvAbortMsg) -> PCState | None:
        if a.rm not in s.rm_state or Abort() not in s.msgs:
            return None
        return PCState(s.rm_state.set(a.rm, ABORTED), s.a_state, s.msgs)

    def _phase1a(self, s: PCState, a: Phase1a) -> PCState | None:
        if a.bal not in self.ballots[1:] or a.ins not in self.rms:
            return None
        return PCState(s.rm_state, s.a_state, s.msgs.send(Phase1aMsg(a.ins, a.bal)))

    def _phase2a(self, s: PCState, a: Phase2a) -> PCState | None:
        if a.bal not in self.ballots[1:] or a.ins not in self.rms or a.quorum not in self.quorums:
            return None
        value = self._phase2a_value(s, a.bal, a.ins, a.quorum)
        if value is None:
            return None
        return PCState(s.rm_state, s.a_state, s.msgs.send(Phase2aMsg(a.ins, a.bal, value)))

    def _leader_commit(self, s: PCState, a: LeaderCommit) -> PCState | None:
        if not self._is_commit_evidence(s, a.evidence):
            return None
        return PCState(s.rm_state, s.a_state, s.msgs.send(Commit()))

    def _leader_abort(self, s: PCState, a: LeaderAbort) -> PCState | None:
        if not self._chosen_by(s, a.evidence, ABORTED):
            return None
        return PCState(s.rm_state, s.a_state, s.msgs.send(Abort()))

    def _phase1b(self, s: PCState, a: Phase1b) -> PCState | None:
        m, key = a.msg, (a.msg.ins, a.acc)
        mine = s.a_state.get(key)
        if mine is None or mine.mbal >= m.bal or m not in s.msgs:
            return None
        bal, val = (-1, NONE) if self.variant == "forget_vote" else (mine.bal, mine.val)
        return PCState(
            s.rm_state,
            s.a_state.set(key, AcceptorState(m.bal, mine.bal, mine.val)),
            s.msgs.send(Phase1bMsg(m.ins, m.bal, bal, val, a.acc)),
        )

    def _phase2b(self, s: PCState, a: Phase2b) -> PCState | None:
        m, key = a.msg, (a.msg.ins, a.acc)
        mine = s.a_state.get(key)
        if mine is None or mine.mbal > m.bal or m not in s.msgs:
            return None
        return PCState(
            s.rm_state,
            s.a_state.set(key, AcceptorState(m.bal, m.bal, m.val)),
            s.msgs.send(Phase2bMsg(a.acc, m.ins, m.bal, m.val)),
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
        return any(c.bal > 0 for ins in self.rms for value in VOTE_VALUES for c in self._evidence(s, ins, value))

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
    """What the guards need from a message set, gathered in one pass (the
    guards would otherwise rescan every message once per quorum and ballot).
    Only the last message set's index is kept: ``actions`` and ``next_state``
    ask about the same state many times in a row."""

    __slots__ = ("has_2a", "ordered_1a_2a", "reports", "voters")
    _last: tuple[MessageSet[Message] | None, _Index | None] = (None, None)

    def __init__(self, msgs: MessageSet[Message]) -> None:
        self.reports: dict[tuple[str, int], dict[str, Phase1bMsg]] = {}
        self.has_2a: set[tuple[str, int]] = set()
        self.voters: dict[tuple[str, int, str], set[str]] = {}
        for m in msgs.sent:
            if isinstance(m, Phase1bMsg):
                self.reports.setdefault((m.ins, m.mbal), {})[m.acc] = m
            elif isinstance(m, Phase2aMsg):
                self.has_2a.add((m.ins, m.bal))
            elif isinstance(m, Phase2bMsg):
                self.voters.setdefault((m.ins, m.bal, m.val), set()).add(m.acc)
        # A fixed order that needs no canonical texts: phase, instance, ballot, value.
        ordered: list[tuple[tuple[int, str, int, str], Phase1aMsg | Phase2aMsg]] = []
        for m in msgs.sent:
            if isinstance(m, Phase1aMsg):
                ordered.append(((1, m.ins, m.bal, ""), m))
            elif isinstance(m, Phase2aMsg):
                ordered.append(((2, m.ins, m.bal, m.val), m))
        ordered.sort(key=lambda pair: pair[0])
        self.ordered_1a_2a = [m for _, m in ordered]

    @classmethod
    def of(cls, msgs: MessageSet[Message]) -> _Index:
        last_msgs, last_index = cls._last
        if last_msgs is msgs and last_index is not None:
            return last_index
        index = cls(msgs)
        cls._last = (msgs, index)
        return index

    def phase2a_value(self, bal: int, ins: str, quorum: frozenset[str]) -> str | None:
        if (ins, bal) in self.has_2a:
            return None
        reports = self.reports.get((ins, bal), {})
        if not quorum <= reports.keys():
            return None
        highest = max((reports[acc] for acc in quorum), key=lambda m: m.bal)
        return ABORTED if highest.bal == -1 else highest.val
