"""Paxos: Lamport's single-decree Paxos, the way he specifies it in TLA+.

Acceptors must agree on one value although any of them may be slow and messages
may be lost, duplicated or delayed.  Each ballot belongs to one proposer.  In
phase 1 the proposer of ballot b asks the acceptors (1a); an acceptor that has not
promised a higher ballot promises b and reports the last vote it cast (1b).  Once
a quorum has promised, the proposer picks the value of the highest-ballot vote
among those reports, or any value if none of them ever voted, and asks the
acceptors to vote for it in b (2a).  An acceptor that has not promised a higher
ballot votes for it (2b).  A value is chosen once a quorum has voted for it in one
ballot.  Because any two quorums intersect, a later proposer always hears of a
value that may have been chosen, and proposes it again.

Sources: L. Lamport, "The Paxos Algorithm, or How to Win a Turing Award" (lecture
and its TLA+ module Paxos, 2019); "Paxos Made Simple" (2001); "The Part-Time
Parliament" (TOCS 1998).  The inductive invariants AccInv and MsgInv are those of
the TLAPS proof of that Paxos module (Lamport, Merz, tlaplus/tlapm examples).

This module models the same abstraction as Lamport's module: one message set, no
proposer state, any number of proposals racing.  With 3 acceptors, majority
quorums, 2 values and ballots 0..1, TLC finds 3,921 distinct states (23,563
generated, depth 17); this module finds the same distinct states and depth, and
22,995 generated: TLC generates one successor of Phase2a per quorum that allows
it, and finds exactly 22,995 when "some quorum allows it" is written as a plain
condition.  With ballots 0..2 both find 185,369 distinct states, depth 25.  Under
acceptor symmetry (``canonical``; TLC's ``SYMMETRY Permutations(Acceptor)``) both
find 857 distinct states with ballots 0..1 and 34,113 with ballots 0..2.

State: for each acceptor ``max_bal`` (the highest ballot it promised or voted in,
-1 initially), ``max_vbal`` and ``max_val`` (the ballot and value of its last
vote, -1 and None before it votes); ``msgs``, a TLA+-style message set of 1a, 1b,
2a and 2b messages, sent once and never removed, so that loss, delay, reordering
and duplication are all behaviours of the spec.

Actions
    Phase1a(bal)                 The proposer of bal asks for promises (sends 1a).
    Phase1b(acceptor, bal)       The acceptor, on a 1a for a ballot above its
                                 max_bal, promises it and reports its last vote.
    Phase2a(bal, val)            The proposer of bal, having a quorum's 1b reports
                                 and not having sent a 2a for bal, asks for votes
                                 for val, which must be the value of the highest-
                                 ballot vote reported (any value if none was).
    Phase2b(acceptor, bal, val)  The acceptor, on a 2a for a ballot not below its
                                 max_bal, votes for it (sends 2b).

Invariants
    TypeOK      every variable holds a value of its type.
    Agreement   at most one value is chosen.
    AccInv      each acceptor's (max_vbal, max_val) is its latest vote, and is no
                higher than its promise.
    MsgInv      every message tells the truth: a 1b reports its sender's latest
                vote below the ballot it promised, a 2a proposes a value safe at
                its ballot and is the only 2a of that ballot, a 2b copies a 2a.
    TypeOK ∧ AccInv ∧ MsgInv is the inductive invariant of the TLAPS proof.  It
    implies Voting's OneValuePerBallot and VotesSafe for the mapped state, and so
    Agreement.  Validity (only a value that may be proposed is chosen) and Voting's
    own invariants are checked on the abstract specs, which this one refines.

Reachable
    ValueChosen         some value is chosen.
    ChosenAgain         a value chosen in one ballot is chosen again in a higher
                        one, after phase 1 reported it (needs two ballots).

Refinement: Paxos ⇒ Voting, through votes[a] = the (bal, val) of a's 2b messages
and maxBal = max_bal; Phase1b maps to IncreaseMaxBal, Phase2b to VoteFor, and
Phase1a and Phase2a to stutters.  Voting ⇒ Consensus through ``chosen``.

Variants (deliberately broken; each is a real mistake and each is caught), each a
subclass at the end of this module that overrides the one definition it breaks.
The explorer reports the first invariant a state breaks, which for the inductive
invariant is the very step that went wrong; every variant also breaks Agreement.
``broken_promise`` overrides Phase2b: an acceptor votes in a ballot below one it
has promised (it checks its promise in phase 1 only), so a value is chosen in a
ballot whose proposer had been told "no vote"; caught by MsgInv (the acceptor's 1b
for the higher ballot is now a lie).  ``ignore_reported_value`` overrides
``allowed_by_reports``: the proposer waits for a quorum of 1b messages but
proposes its own value instead of the highest-ballot vote reported, overwriting a
value that may be chosen; caught by MsgInv (the 2a is not safe at its ballot).
``non_intersecting_quorums`` overrides ``voting_config``: Paxos uses the quorums of
the Voting spec it refines, here of "at least n // 2" acceptors, so two quorums can
be disjoint and phase 1 can miss a chosen value; caught by Agreement (every message
still tells the truth, but the truth no longer suffices).  ``shared_ballot``
overrides Phase2a: two proposers use the same ballot number, so one ballot carries
two different 2a messages; caught by MsgInv.  ``forgotten_vote`` adds a rule,
``Restart(acceptor)`` (to each acceptor's steps): an acceptor keeps its promise on
disk but its vote in memory only, so after a restart it reports "no vote" in phase
1b and a later ballot may choose another value; caught by AccInv.
``Paxos.variants()`` lists them with their one-line descriptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.consensus import agreement, value_names
from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Refinement, Spec, param, rule, variant
from distcheck.spec.network import MessageSet
from distcheck.spec.values import FrozenMap, sorted_values
from distcheck.spec.voting import NO_BALLOT, Voting, VotingConfig, VotingState, acceptor_names

# ------------------------------------------------------------------------ messages


@attrs.frozen
class Msg1a:
    """Phase 1a: the proposer of ``bal`` asks for promises."""

    bal: int

    def __str__(self) -> str:
        return f"1a({self.bal})"


@attrs.frozen
class Msg1b:
    """Phase 1b: ``acc`` promises ``bal`` and reports its last vote (``mbal``,
    ``mval``), or (-1, None) if it never voted."""

    acc: str
    bal: int
    mbal: int
    mval: str | None

    def __str__(self) -> str:
        last = "no vote" if self.mval is None else f"voted {self.mval}@{self.mbal}"
        return f"1b({self.acc}, {self.bal}, {last})"


@attrs.frozen
class Msg2a:
    """Phase 2a: the proposer of ``bal`` asks for votes for ``val``."""

    bal: int
    val: str

    def __str__(self) -> str:
        return f"2a({self.bal}, {self.val})"


@attrs.frozen
class Msg2b:
    """Phase 2b: ``acc`` votes for ``val`` in ``bal``."""

    acc: str
    bal: int
    val: str

    def __str__(self) -> str:
        return f"2b({self.acc}, {self.bal}, {self.val})"


Message = Msg1a | Msg1b | Msg2a | Msg2b

# -------------------------------------------------------------------------- state


@attrs.frozen
class PaxosState:
    max_bal: FrozenMap[str, int]
    max_vbal: FrozenMap[str, int]
    max_val: FrozenMap[str, str | None]
    msgs: MessageSet[Message]


# ------------------------------------------------------------------------ actions


class ProposerAction(Action):
    __slots__ = ()

    bal: int

    @property
    def actor(self) -> str:
        # Ballots are partitioned among proposers, so a ballot names its proposer.
        return f"p{self.bal}"


@attrs.frozen
class Phase1a(ProposerAction):
    bal: int


@attrs.frozen
class Phase1b(Action):
    ACTOR = "acceptor"
    acceptor: str
    bal: int


@attrs.frozen
class Phase2a(ProposerAction):
    bal: int
    val: str


@attrs.frozen
class Phase2b(Action):
    ACTOR = "acceptor"
    acceptor: str
    bal: int
    val: str


@attrs.frozen
class AcceptorRestart(Action):
    """The acceptor crashes and restarts (the ``forgotten_vote`` variant only).  It
    reads as ``Restart(a1)``; its field is ``acceptor`` so that Next binds it with the
    acceptor's other steps."""

    ACTOR = "acceptor"
    acceptor: str

    def __str__(self) -> str:
        return f"Restart({self.acceptor})"


PaxosAction = Phase1a | Phase1b | Phase2a | Phase2b | AcceptorRestart


@attrs.frozen
class Config:
    acceptors: int = param(3, help="number of acceptors", minimum=1, maximum=7)
    values: int = param(2, help="number of values that may be proposed", minimum=1, maximum=5)
    max_ballot: int = param(1, help="ballots are 0..max_ballot", minimum=0, maximum=5)
    variant: str | None = None


# --------------------------------------------------------------------------- Paxos


class Paxos(Spec[PaxosState, PaxosAction]):
    name = "paxos"

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        # The Voting spec this one refines: its quorums are Paxos's, and its
        # vocabulary states the invariants.
        self.voting = Voting(self.voting_config())
        self.acceptors = acceptor_names(config.acceptors)
        self.values = value_names(config.values)
        self.ballots = self.voting.ballots
        self.quorums = self.voting.quorums

    def voting_config(self) -> VotingConfig:
        """The constants of the Voting spec this one refines (the same ones)."""
        return VotingConfig(
            acceptors=self.config.acceptors, values=self.config.values, max_ballot=self.config.max_ballot
        )

    def init_states(self) -> Iterable[PaxosState]:
        yield PaxosState(
            max_bal=FrozenMap({a: NO_BALLOT for a in self.acceptors}),
            max_vbal=FrozenMap({a: NO_BALLOT for a in self.acceptors}),
            max_val=FrozenMap({a: None for a in self.acceptors}),
            msgs=MessageSet(),
        )

    def next(self) -> Next:
        # Every enabled action, stutters included (as TLC counts them), in a fixed
        # order: proposers by ballot, then acceptors, each by ballot.
        return (
            Exists("bal", self.ballots, self.phase1a, Exists("val", self.values, self.phase2a)),
            Exists("acceptor", self.acceptors, *self.acceptor_steps()),
        )

    def acceptor_steps(self) -> Next:
        """What an acceptor does, for each ballot: promise it, vote in it."""
        return (Exists("bal", self.ballots, self.phase1b, Exists("val", self.values, self.phase2b)),)

    @rule(Phase1a)
    def phase1a(self, s: PaxosState, bal: int) -> PaxosState | None:
        """The proposer of ``bal`` asks the acceptors for promises (sends 1a)."""
        return attrs.evolve(s, msgs=s.msgs.send(Msg1a(bal)))

    @rule(Phase1b)
    def phase1b(self, s: PaxosState, acceptor: str, bal: int) -> PaxosState | None:
        """The acceptor, on a 1a for a ballot above its promise, promises that ballot
        and reports its last vote (sends 1b)."""
        if Msg1a(bal) not in s.msgs or bal <= s.max_bal[acceptor]:
            return None
        report = Msg1b(acceptor, bal, s.max_vbal[acceptor], s.max_val[acceptor])
        return attrs.evolve(s, max_bal=s.max_bal.set(acceptor, bal), msgs=s.msgs.send(report))

    @rule(Phase2a)
    def phase2a(self, s: PaxosState, bal: int, val: str) -> PaxosState | None:
        """The proposer of ``bal``, having sent no 2a for ``bal`` and holding a
        quorum's 1b reports for it, asks for votes for ``val``, which those reports
        allow (sends 2a)."""
        if any(isinstance(m, Msg2a) and m.bal == bal for m in s.msgs.sent) or val not in self.proposable(s, bal):
            return None
        return attrs.evolve(s, msgs=s.msgs.send(Msg2a(bal, val)))

    @rule(Phase2b)
    def phase2b(self, s: PaxosState, acceptor: str, bal: int, val: str) -> PaxosState | None:
        """The acceptor, on a 2a for a ballot not below its promise, votes for it
        (sends 2b)."""
        if Msg2a(bal, val) not in s.msgs or bal < s.max_bal[acceptor]:
            return None
        return vote(s, acceptor, bal, val)

    def proposable(self, s: PaxosState, bal: int) -> frozenset[str]:
        """The values that the 1b reports for ``bal`` of some quorum allow."""
        promises = [m for m in s.msgs.sent if isinstance(m, Msg1b) and m.bal == bal]
        promised = {m.acc for m in promises}
        out: set[str] = set()
        for quorum in self.quorums:
            if quorum <= promised:
                out |= self.allowed_by_reports([m for m in promises if m.acc in quorum])
        return frozenset(out)

    def allowed_by_reports(self, reports: Sequence[Msg1b]) -> frozenset[str]:
        """What a quorum's 1b reports allow the proposer to propose: the value of the
        highest-ballot vote they report, or any value if they report none."""
        votes = [m for m in reports if m.mbal != NO_BALLOT]
        if not votes:
            return frozenset(self.values)
        highest = max(m.mbal for m in votes)
        return frozenset(m.mval for m in votes if m.mbal == highest and m.mval is not None)

    # -------------------------------------------------------------- invariants

    def invariants(self) -> Sequence[Invariant[PaxosState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self._type_ok),
            Invariant("Agreement", "at most one value is chosen", lambda s: agreement(self.chosen(s))),
            Invariant(
                "AccInv",
                "each acceptor's last vote is its highest vote and no higher than its promise",
                self._acc_inv,
            ),
            Invariant(
                "MsgInv",
                "1b messages report the sender's latest vote, 2a messages are safe and unique, 2b copy a 2a",
                self._msg_inv,
            ),
        )

    def votes(self, s: PaxosState) -> FrozenMap[str, frozenset[tuple[int, str]]]:
        """Each acceptor's votes: the (ballot, value) of the 2b messages it sent."""
        out: dict[str, set[tuple[int, str]]] = {a: set() for a in self.acceptors}
        for m in s.msgs.sent:
            if isinstance(m, Msg2b):
                out[m.acc].add((m.bal, m.val))
        return FrozenMap({a: frozenset(vs) for a, vs in out.items()})

    def voting_state(self, s: PaxosState) -> VotingState:
        """The refinement mapping to Voting."""
        return VotingState(votes=self.votes(s), max_bal=s.max_bal)

    def chosen(self, s: PaxosState) -> frozenset[str]:
        return self.voting.chosen(self.voting_state(s))

    def _type_ok(self, s: PaxosState) -> bool:
        acceptors = set(self.acceptors)
        ballots = {NO_BALLOT, *self.ballots}
        if not (set(s.max_bal) == set(s.max_vbal) == set(s.max_val) == acceptors):
            return False
        if not all(s.max_bal[a] in ballots and s.max_vbal[a] in ballots for a in self.acceptors):
            return False
        if not all(v is None or v in self.values for v in s.max_val.values()):
            return False
        for m in s.msgs.sent:
            match m:
                case Msg1a(bal):
                    ok = bal in self.ballots
                case Msg1b(acc, bal, mbal, mval):
                    ok = acc in acceptors and bal in self.ballots and mbal in ballots
                    ok = ok and (mval is None or mval in self.values)
                case Msg2a(bal, val):
                    ok = bal in self.ballots and val in self.values
                case Msg2b(acc, bal, val):
                    ok = acc in acceptors and bal in self.ballots and val in self.values
                case _:
                    ok = False
            if not ok:
                return False
        return True

    def _acc_inv(self, s: PaxosState) -> bool:
        votes = self.votes(s)
        for a in self.acceptors:
            vbal, val = s.max_vbal[a], s.max_val[a]
            if (vbal == NO_BALLOT) != (val is None) or vbal > s.max_bal[a]:
                return False
            if val is not None and (vbal, val) not in votes[a]:
                return False
            if any(b > vbal for b, _ in votes[a]):
                return False
        return True

    def _msg_inv(self, s: PaxosState) -> bool:
        vs = self.voting_state(s)
        voting = self.voting
        proposals = [m for m in s.msgs.sent if isinstance(m, Msg2a)]
        for m in s.msgs.sent:
            match m:
                case Msg1b(acc, bal, mbal, mval):
                    if bal > s.max_bal[acc] or (mbal == NO_BALLOT) != (mval is None):
                        return False
                    if mval is not None and not voting.voted_for(vs, acc, mbal, mval):
                        return False
                    # The report is the sender's latest vote below the promised ballot.
                    if any(mbal < b < bal for b, _ in vs.votes[acc]):
                        return False
                case Msg2a(bal, val):
                    if not voting.safe_at(vs, bal, val):
                        return False
                    if any(p.bal == bal and p != m for p in proposals):
                        return False
                case Msg2b(acc, bal, val):
                    if Msg2a(bal, val) not in s.msgs or bal > s.max_vbal[acc]:
                        return False
        return True

    def reachable(self) -> Sequence[Reachable[PaxosState]]:
        out: list[Reachable[PaxosState]] = [
            Reachable("ValueChosen", "some value is chosen", lambda s: bool(self.chosen(s)))
        ]
        if len(self.ballots) > 1:
            out.append(
                Reachable(
                    "ChosenAgain",
                    "a value chosen in one ballot is chosen again in a higher one",
                    lambda s: self.voting.chosen_again(self.voting_state(s)),
                )
            )
        return out

    def canonical(self, s: PaxosState) -> PaxosState:
        """Symmetry over acceptors.  An acceptor's whole role in a state is its
        signature: its three variables, the reports of its 1b messages and the votes
        of its 2b messages; 1a and 2a messages name no acceptor.  Sorting the
        signatures and handing them out to a1, a2, ... in order gives one exact
        representative per orbit (quorums are all the sets of one size, so every
        renaming of acceptors maps quorums to quorums)."""
        reports: dict[str, list[tuple[int, int, str | None]]] = {a: [] for a in self.acceptors}
        votes: dict[str, list[tuple[int, str]]] = {a: [] for a in self.acceptors}
        shared: list[Message] = []
        for m in s.msgs.sent:
            if isinstance(m, Msg1b):
                reports[m.acc].append((m.bal, m.mbal, m.mval))
            elif isinstance(m, Msg2b):
                votes[m.acc].append((m.bal, m.val))
            else:
                shared.append(m)
        signatures = sorted_values(
            (s.max_bal[a], s.max_vbal[a], s.max_val[a], tuple(sorted_values(reports[a])), tuple(sorted(votes[a])))
            for a in self.acceptors
        )
        sent = shared
        for a, (_, _, _, acc_reports, acc_votes) in zip(self.acceptors, signatures):
            sent += [Msg1b(a, bal, mbal, mval) for bal, mbal, mval in acc_reports]
            sent += [Msg2b(a, bal, val) for bal, val in acc_votes]
        return PaxosState(
            max_bal=FrozenMap({a: sig[0] for a, sig in zip(self.acceptors, signatures)}),
            max_vbal=FrozenMap({a: sig[1] for a, sig in zip(self.acceptors, signatures)}),
            max_val=FrozenMap({a: sig[2] for a, sig in zip(self.acceptors, signatures)}),
            msgs=MessageSet(frozenset(sent)),
        )

    def refinement(self) -> Refinement[PaxosState, VotingState]:
        return Refinement(self.voting, self.voting_state)


def vote(s: PaxosState, acceptor: str, bal: int, val: str) -> PaxosState:
    """Phase2b's effect: the acceptor records its vote as its last and sends 2b."""
    return PaxosState(
        max_bal=s.max_bal.set(acceptor, bal),
        max_vbal=s.max_vbal.set(acceptor, bal),
        max_val=s.max_val.set(acceptor, val),
        msgs=s.msgs.send(Msg2b(acceptor, bal, val)),
    )


# ------------------------------------------------------------------------ variants
# Each a real mistake, as a subclass that overrides the one definition it breaks.


@variant("broken_promise", "an acceptor votes in a ballot below one it has promised")
class BrokenPromise(Paxos):
    @rule(Phase2b)
    def phase2b(self, s: PaxosState, acceptor: str, bal: int, val: str) -> PaxosState | None:
        """The acceptor, on any 2a, votes for it, even below its promise: it checks
        the promise in phase 1 only."""
        if Msg2a(bal, val) not in s.msgs:
            return None
        return vote(s, acceptor, bal, val)


@variant("ignore_reported_value", "the proposer ignores the highest-ballot vote reported in phase 1b")
class IgnoreReportedValue(Paxos):
    def allowed_by_reports(self, reports: Sequence[Msg1b]) -> frozenset[str]:
        """The proposer waits for a quorum's reports but then proposes any value, its
        own, whatever vote they report."""
        return frozenset(self.values)


@variant("non_intersecting_quorums", "quorums of n // 2 acceptors, so two quorums can be disjoint")
class NonIntersectingQuorums(Paxos):
    def voting_config(self) -> VotingConfig:
        """The Voting spec refined, and so Paxos, counts "at least n // 2" acceptors
        as a quorum."""
        return attrs.evolve(super().voting_config(), variant="non_intersecting_quorums")


@variant("shared_ballot", "two proposers use the same ballot number")
class SharedBallot(Paxos):
    @rule(Phase2a)
    def phase2a(self, s: PaxosState, bal: int, val: str) -> PaxosState | None:
        """A proposer of ``bal`` holding a quorum's 1b reports asks for votes for a
        value they allow, not knowing that another proposer of the same ballot
        number already sent a 2a."""
        if val not in self.proposable(s, bal):
            return None
        return attrs.evolve(s, msgs=s.msgs.send(Msg2a(bal, val)))


@variant("forgotten_vote", "an acceptor loses its last vote in a crash (its promise is on disk, its vote is not)")
class ForgottenVote(Paxos):
    def acceptor_steps(self) -> Next:
        return (*super().acceptor_steps(), self.restart)

    @rule(AcceptorRestart)
    def restart(self, s: PaxosState, acceptor: str) -> PaxosState | None:
        """The acceptor crashes and restarts with its promise but without its last
        vote.  Only a restart that loses a vote changes the state; the others are
        stutters, left out."""
        if s.max_vbal[acceptor] == NO_BALLOT:
            return None
        return attrs.evolve(s, max_vbal=s.max_vbal.set(acceptor, NO_BALLOT), max_val=s.max_val.set(acceptor, None))
