"""Voting: Lamport's abstraction of Paxos, with votes but no messages.

Acceptors vote for values in numbered ballots.  A value is chosen when a quorum of
acceptors has voted for it in the same ballot.  Two rules keep the choice unique:
in any one ballot all votes are for the same value (OneValuePerBallot), and an
acceptor votes for v in ballot b only when v is *safe at* b, meaning that no other
value has been or ever can be chosen in a lower ballot (VotesSafe).  An acceptor's
``max_bal`` is its promise never to vote again below that ballot; that promise is
what makes "can never be chosen" a fact a quorum can report.

Paxos (``spec/paxos.py``) implements this spec with messages: its phase 1 gathers
from a quorum exactly the facts that ``ShowsSafeAt`` below states, and its
refinement mapping sends Paxos's 2b messages to ``votes``.  This spec in turn
refines Consensus (``spec/consensus.py``) through ``chosen``.

Sources: L. Lamport, the Voting module of "The Paxos Algorithm, or How to Win a
Turing Award" (lecture and TLA+ specs, 2019); the safety argument is that of
"Paxos Made Simple" (2001), section 2.2.  With 3 acceptors, majority quorums, 2
values and ballots 0..1, TLC finds 599 distinct states (3,124 generated, depth 11);
this module finds the same number of distinct states and the same depth (and
2,080 generated: TLC generates one successor of VoteFor per quorum that shows the
value safe, 2,080 when that is written as a plain condition).  With ballots 0..2
both find 6,752 distinct states, depth 16.

State: ``votes`` (each acceptor's set of (ballot, value) votes), ``max_bal`` (each
acceptor's promise: the highest ballot it has heard of, -1 initially).

Actions
    IncreaseMaxBal(acceptor, bal)   The acceptor promises not to vote below bal.
    VoteFor(acceptor, bal, val)     The acceptor votes for val in bal: it has not
                                    promised a higher ballot, has not voted in bal,
                                    no other acceptor voted for another value in bal,
                                    and some quorum shows val safe at bal.

Invariants
    TypeOK              every variable holds a value of its type.
    OneValuePerBallot   no two acceptors vote for different values in one ballot.
    VotesSafe           every vote is for a value safe at its ballot.
    Agreement           at most one value is chosen.

Reachable
    ValueChosen         some value is chosen.
    ChosenAgain         a value chosen in one ballot is chosen again in a higher
                        one (only when there are at least two ballots).

Refinement: every step maps, through ``chosen``, to a Consensus step or a stutter.

Variants (deliberately broken; each is caught), each the abstract form of a Paxos
variant (``spec/paxos.py``), showing which rule of Voting the Paxos mistake breaks;
each is a subclass at the end of this module that overrides the one definition it
breaks.  ``unsafe_vote`` overrides ``shown_safe``, VoteFor's last conjunct: an
acceptor votes for a value no quorum shows safe (Paxos: the proposer ignores the
reported vote); caught by VotesSafe.  ``two_values_per_ballot`` overrides
``no_other_value_voted_at``, VoteFor's third conjunct: an acceptor votes in a
ballot in which another voted for a different value (Paxos: two proposers share a
ballot); caught by OneValuePerBallot.  ``non_intersecting_quorums`` overrides
``minimal_quorums``: quorums of "at least n // 2" acceptors instead of "more than
n / 2", so a value is chosen by one quorum while another, which never saw the
vote, shows a different value safe; caught by Agreement.  ``Voting.variants()``
lists them with their one-line descriptions.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import attrs

from distcheck.spec.consensus import Consensus, ConsensusConfig, ConsensusState, agreement, value_names
from distcheck.spec.contract import Action, Exists, Invariant, Next, Reachable, Refinement, Spec, param, rule, variant
from distcheck.spec.values import FrozenMap

#: The ballot number of "no ballot": an acceptor's promise before it has made one,
#: and the ballot of its last vote before it has voted.
NO_BALLOT = -1


def acceptor_names(n: int) -> tuple[str, ...]:
    return tuple(f"a{i}" for i in range(1, n + 1))


def quorum_system(acceptors: Sequence[str], intersecting: bool = True) -> tuple[frozenset[str], ...]:
    """The minimal quorums: every set of ``size`` acceptors.

    With ``intersecting`` the size is a strict majority, so any two quorums share an
    acceptor; otherwise it is ``n // 2`` (the off-by-one of "at least half"), and two
    quorums can be disjoint.  Every property that quantifies "there is a quorum Q
    such that every acceptor of Q ..." holds for some quorum iff it holds for some
    minimal one, so the supersets of these sets need not be listed.
    """
    n = len(acceptors)
    size = n // 2 + 1 if intersecting else max(1, n // 2)
    return tuple(frozenset(q) for q in itertools.combinations(acceptors, size))


Vote = tuple[int, str]  # (ballot, value)


@attrs.frozen
class VotingState:
    votes: FrozenMap[str, frozenset[Vote]]
    max_bal: FrozenMap[str, int]


@attrs.frozen
class IncreaseMaxBal(Action):
    ACTOR = "acceptor"
    acceptor: str
    bal: int


@attrs.frozen
class VoteFor(Action):
    ACTOR = "acceptor"
    acceptor: str
    bal: int
    val: str


VotingAction = IncreaseMaxBal | VoteFor


@attrs.frozen
class VotingConfig:
    acceptors: int = param(3, help="number of acceptors", minimum=1, maximum=7)
    values: int = param(2, help="number of values that may be proposed", minimum=1, maximum=5)
    max_ballot: int = param(1, help="ballots are 0..max_ballot", minimum=0, maximum=5)
    variant: str | None = None


class Voting(Spec[VotingState, VotingAction]):
    """The Voting spec, and the vocabulary (VotedFor, ChosenAt, SafeAt, ShowsSafeAt)
    that Paxos's invariants are written in."""

    name = "voting"

    def __init__(self, config: VotingConfig = VotingConfig()) -> None:
        self.config = config
        self.acceptors = acceptor_names(config.acceptors)
        self.values = value_names(config.values)
        self.ballots = tuple(range(config.max_ballot + 1))
        self.quorums = self.minimal_quorums()

    def minimal_quorums(self) -> tuple[frozenset[str], ...]:
        """TLA+'s Quorum, as its minimal sets: the strict majorities of acceptors."""
        return quorum_system(self.acceptors)

    # ------------------------------------------------------------- vocabulary

    def voted_for(self, s: VotingState, acceptor: str, bal: int, val: str) -> bool:
        return (bal, val) in s.votes[acceptor]

    def chosen_at(self, s: VotingState, bal: int, val: str) -> bool:
        """Every acceptor of some quorum voted for ``val`` in ``bal``."""
        return any(all((bal, val) in s.votes[a] for a in q) for q in self.quorums)

    def chosen(self, s: VotingState) -> frozenset[str]:
        return frozenset(v for v in self.values for b in self.ballots if self.chosen_at(s, b, v))

    def did_not_vote_at(self, s: VotingState, acceptor: str, bal: int) -> bool:
        return all(b != bal for b, _ in s.votes[acceptor])

    def cannot_vote_at(self, s: VotingState, acceptor: str, bal: int) -> bool:
        """The acceptor has not voted in ``bal`` and has promised never to."""
        return s.max_bal[acceptor] > bal and self.did_not_vote_at(s, acceptor, bal)

    def none_other_choosable_at(self, s: VotingState, bal: int, val: str) -> bool:
        """No value other than ``val`` is or can ever be chosen in ``bal``: in some
        quorum, every acceptor voted for val there or never can vote there."""
        return any(
            all(self.voted_for(s, a, bal, val) or self.cannot_vote_at(s, a, bal) for a in q) for q in self.quorums
        )

    def safe_at(self, s: VotingState, bal: int, val: str) -> bool:
        """No value other than ``val`` is or can be chosen in any ballot below ``bal``."""
        return all(self.none_other_choosable_at(s, c, val) for c in range(bal))

    def shows_safe_at(self, s: VotingState, quorum: frozenset[str], bal: int, val: str) -> bool:
        """What a quorum's promises prove: all of it promised ``bal``, and the highest
        ballot c below bal in which any of it voted saw a vote for ``val`` (or none
        of it voted below bal).  Implies SafeAt(bal, val) when quorums intersect."""
        if any(s.max_bal[a] < bal for a in quorum):
            return False
        for c in range(bal - 1, NO_BALLOT - 1, -1):
            # c is the highest ballot below bal with a vote from the quorum, or -1.
            if c == NO_BALLOT or not all(self.did_not_vote_at(s, a, c) for a in quorum):
                return c == NO_BALLOT or any(self.voted_for(s, a, c, val) for a in quorum)
        return False  # pragma: no cover - the loop always returns at c == NO_BALLOT

    def shown_safe(self, s: VotingState, bal: int, val: str) -> bool:
        """Some quorum shows ``val`` safe at ``bal``."""
        return any(self.shows_safe_at(s, q, bal, val) for q in self.quorums)

    def no_other_value_voted_at(self, s: VotingState, acceptor: str, bal: int, val: str) -> bool:
        """No acceptor but ``acceptor`` voted in ``bal`` for a value other than ``val``."""
        return all(v == val for other in self.acceptors if other != acceptor for b, v in s.votes[other] if b == bal)

    # ------------------------------------------------------------- the spec

    def init_states(self) -> Iterable[VotingState]:
        yield VotingState(
            votes=FrozenMap({a: frozenset() for a in self.acceptors}),
            max_bal=FrozenMap({a: NO_BALLOT for a in self.acceptors}),
        )

    def next(self) -> Next:
        # Each acceptor in turn, each ballot in turn: its promise, then its votes.
        return (
            Exists(
                "acceptor",
                self.acceptors,
                Exists("bal", self.ballots, self.increase_max_bal, Exists("val", self.values, self.vote_for)),
            ),
        )

    @rule(IncreaseMaxBal)
    def increase_max_bal(self, s: VotingState, acceptor: str, bal: int) -> VotingState | None:
        """The acceptor promises never to vote below ``bal``, a ballot above its
        current promise."""
        if bal <= s.max_bal[acceptor]:
            return None
        return attrs.evolve(s, max_bal=s.max_bal.set(acceptor, bal))

    @rule(VoteFor)
    def vote_for(self, s: VotingState, acceptor: str, bal: int, val: str) -> VotingState | None:
        """The acceptor votes for ``val`` in ``bal``: it has not promised a higher
        ballot, has not voted in ``bal``, no other acceptor voted for another value in
        ``bal``, and some quorum shows ``val`` safe at ``bal``."""
        if not (
            s.max_bal[acceptor] <= bal
            and self.did_not_vote_at(s, acceptor, bal)
            and self.no_other_value_voted_at(s, acceptor, bal, val)
            and self.shown_safe(s, bal, val)
        ):
            return None
        return VotingState(
            votes=s.votes.set(acceptor, s.votes[acceptor] | {(bal, val)}),
            max_bal=s.max_bal.set(acceptor, bal),
        )

    def invariants(self) -> Sequence[Invariant[VotingState]]:
        return (
            Invariant("TypeOK", "every variable holds a value of its type", self._type_ok),
            Invariant(
                "OneValuePerBallot",
                "no two acceptors vote for different values in the same ballot",
                self.one_value_per_ballot,
            ),
            Invariant("VotesSafe", "every vote is for a value safe at its ballot", self.votes_safe),
            Invariant("Agreement", "at most one value is chosen", lambda s: agreement(self.chosen(s))),
        )

    def _type_ok(self, s: VotingState) -> bool:
        acceptors = set(self.acceptors)
        return (
            set(s.votes) == acceptors
            and set(s.max_bal) == acceptors
            and all(b in self.ballots and v in self.values for vs in s.votes.values() for b, v in vs)
            and all(m == NO_BALLOT or m in self.ballots for m in s.max_bal.values())
        )

    def one_value_per_ballot(self, s: VotingState) -> bool:
        value_of: dict[int, str] = {}
        for vs in s.votes.values():
            for b, v in vs:
                if value_of.setdefault(b, v) != v:
                    return False
        return True

    def votes_safe(self, s: VotingState) -> bool:
        return all(self.safe_at(s, b, v) for vs in s.votes.values() for b, v in vs)

    def reachable(self) -> Sequence[Reachable[VotingState]]:
        out: list[Reachable[VotingState]] = [
            Reachable("ValueChosen", "some value is chosen", lambda s: bool(self.chosen(s)))
        ]
        if len(self.ballots) > 1:
            out.append(
                Reachable(
                    "ChosenAgain",
                    "a value chosen in one ballot is chosen again in a higher one",
                    self.chosen_again,
                )
            )
        return out

    def chosen_again(self, s: VotingState) -> bool:
        return any(sum(self.chosen_at(s, b, v) for b in self.ballots) > 1 for v in self.values)

    def refinement(self) -> Refinement[VotingState, ConsensusState]:
        return Refinement(
            Consensus(ConsensusConfig(values=self.config.values)), lambda s: ConsensusState(self.chosen(s))
        )


# ------------------------------------------------------------------------ variants
# Each the abstract form of a Paxos mistake, as a subclass that overrides the one
# definition it breaks.


@variant("unsafe_vote", "an acceptor votes for a value no quorum shows safe")
class UnsafeVote(Voting):
    def shown_safe(self, s: VotingState, bal: int, val: str) -> bool:
        """VoteFor no longer asks a quorum: every value passes as shown safe."""
        return True


@variant("two_values_per_ballot", "an acceptor votes for another value than one already voted for in the ballot")
class TwoValuesPerBallot(Voting):
    def no_other_value_voted_at(self, s: VotingState, acceptor: str, bal: int, val: str) -> bool:
        """VoteFor no longer looks at the other acceptors' votes in the ballot."""
        return True


@variant("non_intersecting_quorums", "quorums of n // 2 acceptors, so two quorums can be disjoint")
class NonIntersectingQuorums(Voting):
    def minimal_quorums(self) -> tuple[frozenset[str], ...]:
        """Every set of "at least half" the acceptors (n // 2) is a quorum, so two
        quorums can be disjoint."""
        return quorum_system(self.acceptors, intersecting=False)
