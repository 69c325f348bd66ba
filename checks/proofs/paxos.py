"""Paxos and Voting (``spec/paxos.py``, ``spec/voting.py``) in z3, and the inductive
invariants that prove Agreement for a bounded instance of each.

Where it sits: the one module in ``checks/`` that knows the state of Paxos and of
Voting; both encodings subclass ``checks.proofs.system.Encoding`` and are registered
in ``checks.proofs.registry`` as ``paxos`` and ``voting``.  The cross-check compares
each with its executable spec, variants included.

The bounded instance: acceptors a1..aN, ballots 0..B, values v1..vV, the spec's
quorums (its minimal quorums; the broken ones in ``non_intersecting_quorums``).

**Voting** as fields: ``voted[a,b,v]`` (a voted for v in ballot b) and
``max_bal[a]`` ∈ -1..B.  Actions IncreaseMaxBal(a, b) and VoteFor(a, b, v), the
latter guarded by ShowsSafeAt as in the spec.  **Paxos** as fields:
``max_bal[a]``, ``max_vbal[a]`` ∈ -1..B, ``max_val[a]`` ∈ {None, v1..vV}, and one
Boolean per message that could ever be sent: ``1a[b]``, ``1b[a,b,mbal,mval]``
(every mbal in -1..B and mval in {None, v1..vV}, so that Phase1b is defined in
every typed state, reachable or not), ``2a[b,v]`` and ``2b[a,b,v]``.  Integers
are stored as their index in the field's domain (ballot -1 is index 0), so a
ballot comparison is a comparison of indices.

Both invariants are stated in Voting's vocabulary, read off the state: for Voting
directly, for Paxos through the refinement mapping (a voted for v at b iff the
message 2b(a, b, v) was sent; maxBal is max_bal):

- DidNotVoteAt(a, b): a voted for no value in b;
- CannotVoteAt(a, b): a promised a ballot above b and did not vote in b;
- NoneOtherChoosableAt(b, v): some quorum's acceptors each voted for v in b or
  cannot vote in b, so no value but v is or can ever be chosen in b;
- SafeAt(b, v): NoneOtherChoosableAt(c, v) for every ballot c below b.

**VotingInv** (Lamport's): every vote is for a value safe at its ballot
(VotesSafe), and no two acceptors vote for different values in one ballot
(OneValuePerBallot).  Field domains give TypeOK.

**PaxosInv** (the TLAPS proof's TypeOK ∧ AccInv ∧ MsgInv, with MsgInv split into
its four parts so that a failure names the message kind):

- **AccInv**: an acceptor's (max_vbal, max_val) is (-1, None) or a vote it cast
  (a 2b it sent); it never voted above max_vbal; max_vbal ≤ max_bal;
- **MsgInv1b**: a 1b message's ballot is at most its sender's max_bal, its report
  is (-1, None) or a vote the sender cast, and the sender cast no vote strictly
  between the reported ballot and the promised one;
- **MsgInv2aSafe**: a 2a message proposes a value safe at its ballot;
- **MsgInv2aUnique**: a ballot has at most one 2a message;
- **MsgInv2b**: a 2b message copies a 2a message, at a ballot no higher than its
  sender's max_vbal.

Why these are inductive (and z3 confirms it for each bounded instance): the only
step that creates a new claim of safety is Phase2a, whose guard is the Paxos form
of ShowsSafeAt: a quorum Q promised b, and v is the value of the highest-ballot
vote c they reported.  By MsgInv1b nobody in Q voted between c and b, and those
who did not vote in c cannot any more; whoever in Q voted in c voted for v (the
2a of c is unique); a vote for v in c carries SafeAt(c, v).  So
NoneOtherChoosableAt holds at every ballot below b: SafeAt(b, v).  No quorum
intersection is used: Q itself is the witness.  Intersection is needed only for
PaxosInv ⇒ Agreement (two chosen values meet in an acceptor whose vote, or
promise, rules out one of them), which is where ``non_intersecting_quorums``
fails, while the induction still holds.  The other variants fail consecution at
the step they change: ``broken_promise`` at a Phase2b, ``ignore_reported_value``
and ``shared_ballot`` at a Phase2a, ``forgotten_vote`` at the Restart that loses
the vote; the same holds for Voting's ``unsafe_vote`` and
``two_values_per_ballot`` at a VoteFor.

Where z3 stops.  The encoding is quantifier-free: SafeAt expands into one
disjunction per lower ballot over the quorums, the Paxos state has
A · (B+1) · (B+2) · (V+1) one-bit 1b fields, and Next has (B+1) · (1+V) · (1+A)
actions.  Consecution is one query over all of them, and its time grows with
their product: 0.2 s at the default 3 acceptors, 2 values, ballots 0..1; about a
minute at 7 / 3 / 0..3 and two minutes at 5 / 3 / 0..5 (both proved); at 7
acceptors, 3 values, ballots 0..5 z3 does not finish it in 300 s, nor at the
spec's largest parameters (7 / 5 / 0..5) in 600 s, and reports unknown, while
Initiation and Safety(Agreement) are still proved.  No step of the argument breaks: each single action's query
stays under half a second at 5 / 3 / 0..3, it is their number and the size of
every SafeAt that grow.  Measurements in ``docs/proofs.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import z3

from distcheck.checks.proofs.system import Candidate, Encoding, Field, Predicate, SymState, Transition
from distcheck.spec.network import MessageSet
from distcheck.spec.paxos import (
    AcceptorRestart,
    Message,
    Msg1a,
    Msg1b,
    Msg2a,
    Msg2b,
    Paxos,
    PaxosAction,
    PaxosState,
    Phase1a,
    Phase1b,
    Phase2a,
    Phase2b,
)
from distcheck.spec.values import FrozenMap
from distcheck.spec.voting import NO_BALLOT, IncreaseMaxBal, VoteFor, Voting, VotingAction, VotingState

# ------------------------------------------------------------------- field names


def max_bal(a: str) -> str:
    return f"max_bal[{a}]"


def max_vbal(a: str) -> str:
    return f"max_vbal[{a}]"


def max_val(a: str) -> str:
    return f"max_val[{a}]"


def voted(a: str, b: int, v: str) -> str:
    return f"voted[{a},{b},{v}]"


def sent_1a(b: int) -> str:
    return f"1a[{b}]"


def sent_1b(a: str, b: int, mbal: int, mval: str | None) -> str:
    return f"1b[{a},{b},{mbal},{'None' if mval is None else mval}]"


def sent_2a(b: int, v: str) -> str:
    return f"2a[{b},{v}]"


def sent_2b(a: str, b: int, v: str) -> str:
    return f"2b[{a},{b},{v}]"


# ------------------------------------------------------------ Voting's vocabulary


class Vocabulary:
    """Voting's definitions over any state that has votes and promises: ``vote(s,
    a, b, v)`` is the formula "a voted for v in b" and ``promise(s, a)`` the term
    "a's maxBal" (as a ballot number, -1 before any promise)."""

    def __init__(
        self,
        voting: Voting,
        vote: Callable[[SymState, str, int, str], z3.BoolRef],
        promise: Callable[[SymState, str], z3.ArithRef],
    ) -> None:
        self.acceptors = voting.acceptors
        self.ballots = voting.ballots
        self.vals = voting.values
        self.quorums = [sorted(q) for q in voting.quorums]
        self.vote = vote
        self.promise = promise
        self._choosable: dict[tuple[str, int, str], z3.BoolRef] = {}

    def did_not_vote_at(self, s: SymState, a: str, b: int) -> z3.BoolRef:
        return z3.And(*[z3.Not(self.vote(s, a, b, v)) for v in self.vals])

    def cannot_vote_at(self, s: SymState, a: str, b: int) -> z3.BoolRef:
        return z3.And(self.promise(s, a) > b, self.did_not_vote_at(s, a, b))

    def none_other_choosable_at(self, s: SymState, b: int, v: str) -> z3.BoolRef:
        # Every vote's SafeAt repeats these formulas; z3 shares equal terms, but
        # building them again in Python is what dominates Initiation at 7 acceptors.
        key = (s.tag, b, v)
        if key not in self._choosable:
            self._choosable[key] = z3.Or(
                *[
                    z3.And(*[z3.Or(self.vote(s, a, b, v), self.cannot_vote_at(s, a, b)) for a in q])
                    for q in self.quorums
                ]
            )
        return self._choosable[key]

    def safe_at(self, s: SymState, b: int, v: str) -> z3.BoolRef:
        return z3.And(*[self.none_other_choosable_at(s, c, v) for c in range(b)])

    def chosen_at(self, s: SymState, b: int, v: str) -> z3.BoolRef:
        return z3.Or(*[z3.And(*[self.vote(s, a, b, v) for a in q]) for q in self.quorums])

    def chosen(self, s: SymState, v: str) -> z3.BoolRef:
        return z3.Or(*[self.chosen_at(s, b, v) for b in self.ballots])

    def agreement(self, s: SymState) -> z3.BoolRef:
        """At most one value is chosen."""
        pairs = [(v, w) for i, v in enumerate(self.vals) for w in self.vals[i + 1 :]]
        return z3.And(*[z3.Not(z3.And(self.chosen(s, v), self.chosen(s, w))) for v, w in pairs])

    def votes_safe(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[
                z3.Implies(self.vote(s, a, b, v), self.safe_at(s, b, v))
                for a in self.acceptors
                for b in self.ballots
                for v in self.vals
            ]
        )

    def one_value_per_ballot(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[
                z3.Not(z3.And(self.vote(s, a, b, v), self.vote(s, a2, b, w)))
                for b in self.ballots
                for a in self.acceptors
                for a2 in self.acceptors
                for v in self.vals
                for w in self.vals
                if v != w
            ]
        )


def ballot_domain(max_ballot: int) -> tuple[Hashable, ...]:
    """-1..max_ballot: a ballot's index in it is the ballot plus one."""
    return tuple(range(NO_BALLOT, max_ballot + 1))


def as_ballot(s: SymState, name: str) -> z3.ArithRef:
    """The ballot number held by a ballot field (its index minus one)."""
    term: z3.ArithRef = s[name] - 1
    return term


# ------------------------------------------------------------------------ Voting


class VotingEncoding(Encoding[VotingState, VotingAction]):
    def __init__(self, spec: Voting) -> None:
        super().__init__(spec)
        self.voting = spec
        self.variant = spec.variant
        self.acceptors, self.ballots, self.vals = spec.acceptors, spec.ballots, spec.values
        self.words = Vocabulary(
            spec,
            lambda s, a, b, v: s[voted(a, b, v)],
            lambda s, a: as_ballot(s, max_bal(a)),
        )

    def state_fields(self) -> Sequence[Field]:
        fields = [Field(max_bal(a), ballot_domain(self.ballots[-1])) for a in self.acceptors]
        fields += [Field(voted(a, b, v)) for a in self.acceptors for b in self.ballots for v in self.vals]
        return fields

    def values(self, state: VotingState) -> Mapping[str, Hashable]:
        out: dict[str, Hashable] = {}
        for a in self.acceptors:
            out[max_bal(a)] = state.max_bal[a]
            unknown = state.votes[a] - {(b, v) for b in self.ballots for v in self.vals}
            if unknown:
                raise ValueError(f"votes outside the encoding: {sorted(unknown)}")
            for b in self.ballots:
                for v in self.vals:
                    out[voted(a, b, v)] = (b, v) in state.votes[a]
        return out

    def state(self, values: Mapping[str, Hashable]) -> VotingState:
        return VotingState(
            votes=FrozenMap(
                {
                    a: frozenset((b, v) for b in self.ballots for v in self.vals if values[voted(a, b, v)])
                    for a in self.acceptors
                }
            ),
            max_bal=FrozenMap({a: _int(values[max_bal(a)]) for a in self.acceptors}),
        )

    def init(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[s.is_(max_bal(a), NO_BALLOT) for a in self.acceptors],
            *[z3.Not(s[voted(a, b, v)]) for a in self.acceptors for b in self.ballots for v in self.vals],
        )

    def actions(self) -> Sequence[VotingAction]:
        out: list[VotingAction] = []
        for a in self.acceptors:
            for b in self.ballots:
                out.append(IncreaseMaxBal(a, b))
                out += [VoteFor(a, b, v) for v in self.vals]
        return out

    def transition(self, action: VotingAction, s: SymState) -> Transition:
        promise = as_ballot(s, max_bal(action.acceptor))
        match action:
            case IncreaseMaxBal(a, b):
                return Transition(promise < b, {max_bal(a): b})
            case VoteFor(a, b, v):
                guard = [promise <= b, self.words.did_not_vote_at(s, a, b)]
                if self.variant != "two_values_per_ballot":
                    guard += [
                        z3.Not(s[voted(other, b, w)])
                        for other in self.acceptors
                        if other != a
                        for w in self.vals
                        if w != v
                    ]
                if self.variant != "unsafe_vote":
                    guard.append(z3.Or(*[self.shows_safe_at(s, q, b, v) for q in self.words.quorums]))
                return Transition(z3.And(*guard), {voted(a, b, v): True, max_bal(a): b})
        raise ValueError(f"not a Voting action: {action!r}")

    def shows_safe_at(self, s: SymState, quorum: Sequence[str], b: int, v: str) -> z3.BoolRef:
        """Every acceptor of the quorum promised b, and the highest ballot c below b
        in which one of them voted saw a vote for v (or none of them voted below b)."""
        w = self.words
        promised = z3.And(*[as_ballot(s, max_bal(a)) >= b for a in quorum])
        highest = []
        for c in range(NO_BALLOT, b):
            silent_above = z3.And(*[w.did_not_vote_at(s, a, d) for a in quorum for d in range(c + 1, b)])
            voted_v = z3.BoolVal(True) if c == NO_BALLOT else z3.Or(*[s[voted(a, c, v)] for a in quorum])
            highest.append(z3.And(silent_above, voted_v))
        return z3.And(promised, z3.Or(*highest))

    def properties(self) -> Sequence[Predicate]:
        return (Predicate("Agreement", "at most one value is chosen", self.words.agreement),)

    def candidates(self) -> Sequence[Candidate]:
        conjuncts = (
            Predicate(
                "OneValuePerBallot",
                "no two acceptors vote for different values in the same ballot",
                self.words.one_value_per_ballot,
            ),
            Predicate("VotesSafe", "every vote is for a value safe at its ballot", self.words.votes_safe),
        )
        return (
            Candidate("VotingInv", "Voting's inductive invariant (see checks/proofs/paxos.py)", conjuncts),
            Candidate("Agreement", "Agreement alone (not inductive)", tuple(self.properties())),
        )


# ------------------------------------------------------------------------- Paxos


class PaxosEncoding(Encoding[PaxosState, PaxosAction]):
    def __init__(self, spec: Paxos) -> None:
        super().__init__(spec)
        self.paxos = spec
        self.variant = spec.variant
        self.acceptors, self.ballots, self.vals = spec.acceptors, spec.ballots, spec.values
        self.reports: tuple[tuple[int, str | None], ...] = tuple(
            (mbal, mval) for mbal in (NO_BALLOT, *self.ballots) for mval in (None, *self.vals)
        )
        self.words = Vocabulary(
            spec.voting,
            lambda s, a, b, v: s[sent_2b(a, b, v)],
            lambda s, a: as_ballot(s, max_bal(a)),
        )

    # ------------------------------------------------------------------ state

    def state_fields(self) -> Sequence[Field]:
        ballots = ballot_domain(self.ballots[-1])
        fields = []
        for a in self.acceptors:
            fields += [Field(max_bal(a), ballots), Field(max_vbal(a), ballots), Field(max_val(a), (None, *self.vals))]
        fields += [Field(sent_1a(b)) for b in self.ballots]
        fields += [
            Field(sent_1b(a, b, mb, mv)) for a in self.acceptors for b in self.ballots for mb, mv in self.reports
        ]
        fields += [Field(sent_2a(b, v)) for b in self.ballots for v in self.vals]
        fields += [Field(sent_2b(a, b, v)) for a in self.acceptors for b in self.ballots for v in self.vals]
        return fields

    def _message_fields(self) -> dict[Message, str]:
        out: dict[Message, str] = {Msg1a(b): sent_1a(b) for b in self.ballots}
        for b in self.ballots:
            for v in self.vals:
                out[Msg2a(b, v)] = sent_2a(b, v)
                for a in self.acceptors:
                    out[Msg2b(a, b, v)] = sent_2b(a, b, v)
            for a in self.acceptors:
                for mb, mv in self.reports:
                    out[Msg1b(a, b, mb, mv)] = sent_1b(a, b, mb, mv)
        return out

    def values(self, state: PaxosState) -> Mapping[str, Hashable]:
        fields = self._message_fields()
        unknown = [m for m in state.msgs.sent if m not in fields]
        if unknown:
            raise ValueError(f"messages outside the encoding: {', '.join(str(m) for m in unknown)}")
        out: dict[str, Hashable] = {name: m in state.msgs for m, name in fields.items()}
        for a in self.acceptors:
            out[max_bal(a)] = state.max_bal[a]
            out[max_vbal(a)] = state.max_vbal[a]
            out[max_val(a)] = state.max_val[a]
        return out

    def state(self, values: Mapping[str, Hashable]) -> PaxosState:
        sent = [m for m, name in self._message_fields().items() if values[name]]
        return PaxosState(
            max_bal=FrozenMap({a: _int(values[max_bal(a)]) for a in self.acceptors}),
            max_vbal=FrozenMap({a: _int(values[max_vbal(a)]) for a in self.acceptors}),
            max_val=FrozenMap({a: _value(values[max_val(a)]) for a in self.acceptors}),
            msgs=MessageSet(frozenset(sent)),
        )

    def init(self, s: SymState) -> z3.BoolRef:
        nothing_sent = [z3.Not(s[name]) for name in self._message_fields().values()]
        acceptors = [
            z3.And(s.is_(max_bal(a), NO_BALLOT), s.is_(max_vbal(a), NO_BALLOT), s.is_(max_val(a), None))
            for a in self.acceptors
        ]
        return z3.And(*acceptors, *nothing_sent)

    # ---------------------------------------------------------------- actions

    def actions(self) -> Sequence[PaxosAction]:
        out: list[PaxosAction] = []
        for b in self.ballots:
            out.append(Phase1a(b))
            out += [Phase2a(b, v) for v in self.vals]
        for a in self.acceptors:
            out += [Phase1b(a, b) for b in self.ballots]
            out += [Phase2b(a, b, v) for b in self.ballots for v in self.vals]
            if self.variant == "forgotten_vote":
                out.append(AcceptorRestart(a))
        return out

    def transition(self, action: PaxosAction, s: SymState) -> Transition:
        match action:
            case Phase1a(b):
                return Transition(z3.BoolVal(True), {sent_1a(b): True})
            case Phase1b(a, b):
                report = {
                    sent_1b(a, b, mb, mv): z3.Or(
                        s[sent_1b(a, b, mb, mv)], z3.And(s.is_(max_vbal(a), mb), s.is_(max_val(a), mv))
                    )
                    for mb, mv in self.reports
                }
                return Transition(z3.And(s[sent_1a(b)], as_ballot(s, max_bal(a)) < b), {max_bal(a): b, **report})
            case Phase2a(b, v):
                guard = [self.proposable(s, b, v)]
                if self.variant != "shared_ballot":
                    guard += [z3.Not(s[sent_2a(b, w)]) for w in self.vals]
                return Transition(z3.And(*guard), {sent_2a(b, v): True})
            case Phase2b(a, b, v):
                guard = [s[sent_2a(b, v)]]
                if self.variant != "broken_promise":
                    guard.append(as_ballot(s, max_bal(a)) <= b)
                return Transition(
                    z3.And(*guard), {max_bal(a): b, max_vbal(a): b, max_val(a): v, sent_2b(a, b, v): True}
                )
            case AcceptorRestart(acceptor=a) if self.variant == "forgotten_vote":
                return Transition(z3.Not(s.is_(max_vbal(a), NO_BALLOT)), {max_vbal(a): NO_BALLOT, max_val(a): None})
        raise ValueError(f"not a Paxos action of this encoding: {action!r}")

    def proposable(self, s: SymState, b: int, v: str) -> z3.BoolRef:
        """The proposer of b may propose v: for some quorum, every acceptor of it sent
        a 1b for b, and either none of those 1b messages reports a vote (or the
        variant ignores reports), or one reports a vote for v at the highest ballot
        any of them reports."""
        alternatives = []
        for q in self.words.quorums:
            promised = z3.And(*[z3.Or(*[s[sent_1b(a, b, mb, mv)] for mb, mv in self.reports]) for a in q])
            votes = [(a, mb, mv) for a in q for mb, mv in self.reports if mb != NO_BALLOT]
            no_report = z3.And(*[z3.Not(s[sent_1b(a, b, mb, mv)]) for a, mb, mv in votes])
            if self.variant == "ignore_reported_value":
                alternatives.append(promised)
                continue
            highest_is_v = z3.Or(
                *[
                    z3.And(
                        s[sent_1b(a, b, mb, v)],
                        *[z3.Not(s[sent_1b(a2, b, mb2, mv2)]) for a2, mb2, mv2 in votes if mb2 > mb],
                    )
                    for a in q
                    for mb in self.ballots
                ]
            )
            alternatives.append(z3.And(promised, z3.Or(no_report, highest_is_v)))
        return z3.Or(*alternatives)

    # ------------------------------------------------------------- invariants

    def properties(self) -> Sequence[Predicate]:
        return (Predicate("Agreement", "at most one value is chosen", self.words.agreement),)

    def acc_inv(self, s: SymState) -> z3.BoolRef:
        parts = []
        for a in self.acceptors:
            vbal = as_ballot(s, max_vbal(a))
            parts += [
                s.is_(max_vbal(a), NO_BALLOT) == s.is_(max_val(a), None),
                vbal <= as_ballot(s, max_bal(a)),
                *[
                    z3.Implies(z3.And(s.is_(max_vbal(a), b), s.is_(max_val(a), v)), s[sent_2b(a, b, v)])
                    for b in self.ballots
                    for v in self.vals
                ],
                *[z3.Implies(s[sent_2b(a, b, v)], b <= vbal) for b in self.ballots for v in self.vals],
            ]
        return z3.And(*parts)

    def msg_inv_1b(self, s: SymState) -> z3.BoolRef:
        parts = []
        for a in self.acceptors:
            for b in self.ballots:
                for mb, mv in self.reports:
                    truthful = [b <= as_ballot(s, max_bal(a))]
                    if (mb == NO_BALLOT) != (mv is None):
                        truthful.append(z3.BoolVal(False))
                    if mv is not None and mb != NO_BALLOT:
                        truthful.append(s[sent_2b(a, mb, mv)])
                    truthful += [self.words.did_not_vote_at(s, a, c) for c in range(mb + 1, b)]
                    parts.append(z3.Implies(s[sent_1b(a, b, mb, mv)], z3.And(*truthful)))
        return z3.And(*parts)

    def msg_inv_2a_safe(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[z3.Implies(s[sent_2a(b, v)], self.words.safe_at(s, b, v)) for b in self.ballots for v in self.vals]
        )

    def msg_inv_2a_unique(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[
                z3.Not(z3.And(s[sent_2a(b, v)], s[sent_2a(b, w)]))
                for b in self.ballots
                for v in self.vals
                for w in self.vals
                if v < w
            ]
        )

    def msg_inv_2b(self, s: SymState) -> z3.BoolRef:
        return z3.And(
            *[
                z3.Implies(s[sent_2b(a, b, v)], z3.And(s[sent_2a(b, v)], b <= as_ballot(s, max_vbal(a))))
                for a in self.acceptors
                for b in self.ballots
                for v in self.vals
            ]
        )

    def msg_inv(self, s: SymState) -> z3.BoolRef:
        return z3.And(self.msg_inv_1b(s), self.msg_inv_2a_safe(s), self.msg_inv_2a_unique(s), self.msg_inv_2b(s))

    def candidates(self) -> Sequence[Candidate]:
        conjuncts = (
            Predicate(
                "AccInv",
                "an acceptor's last vote is (-1, None) or a vote it cast, its highest, and no higher than its promise",
                self.acc_inv,
            ),
            Predicate(
                "MsgInv1b",
                "a 1b reports a vote its sender cast (or none), and no vote between that and the promised ballot",
                self.msg_inv_1b,
            ),
            Predicate("MsgInv2aSafe", "a 2a proposes a value safe at its ballot", self.msg_inv_2a_safe),
            Predicate("MsgInv2aUnique", "a ballot has at most one 2a", self.msg_inv_2a_unique),
            Predicate("MsgInv2b", "a 2b copies a 2a, at a ballot at most its sender's max_vbal", self.msg_inv_2b),
        )
        return (
            Candidate("PaxosInv", "TypeOK ∧ AccInv ∧ MsgInv, the TLAPS proof's invariant", conjuncts),
            Candidate("Agreement", "Agreement alone (not inductive)", tuple(self.properties())),
        )


def _int(value: Any) -> int:
    if not isinstance(value, int):
        raise ValueError(f"not a ballot: {value!r}")
    return value


def _value(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"not a value: {value!r}")
    return value
