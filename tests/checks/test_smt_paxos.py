"""Paxos's and Voting's z3 proofs: PaxosInv (the TLAPS proof's AccInv ∧ MsgInv) and
VotingInv (VotesSafe ∧ OneValuePerBallot) prove Agreement; both encodings agree with
their executable specs, variants included, and the cross-check notices when they do
not; each broken variant makes the proof fail at the step it changes, and only
``non_intersecting_quorums`` gets through the induction to fail at Agreement."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import z3

from distcheck.checks.cli import main
from distcheck.checks.proofs.crosscheck import cross_check, reachable_states
from distcheck.checks.proofs.induction import obligations
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.checks.proofs.paxos import PaxosEncoding, VotingEncoding, max_bal, sent_1b
from distcheck.checks.proofs.system import Candidate, Encoding, Holds, Predicate, SymState, Transition
from distcheck.spec.paxos import AcceptorRestart, Config, Paxos, PaxosAction, Phase1b, Phase2a, Phase2b
from distcheck.spec.voting import VoteFor, Voting, VotingConfig

PAXOS_VARIANTS = tuple(Paxos.variants())
VOTING_VARIANTS = tuple(Voting.variants())

# The smallest instance on which every variant of both specs differs from the
# correct spec (two acceptors: a quorum is both of them, or either one in
# non_intersecting_quorums); its reachable states number in the hundreds.
SMALL = {"acceptors": 2, "values": 2, "max_ballot": 1}


def paxos(variant: str | None = None, /, **params: int) -> PaxosEncoding:
    return PaxosEncoding(Paxos(Config(**{**SMALL, **params}, variant=variant)))


def voting(variant: str | None = None, /, **params: int) -> VotingEncoding:
    return VotingEncoding(Voting(VotingConfig(**{**SMALL, **params}, variant=variant)))


def prove(enc: Encoding[Any, Any], invariant: str | None = None, **options: Any) -> dict[str, Outcome]:
    return {o.name: discharge(o) for o in obligations(enc, enc.candidate(invariant), **options)}


def results(outcomes: dict[str, Outcome]) -> dict[str, str]:
    return {name: o.verdict for name, o in outcomes.items()}


# --------------------------------------------------------------------- the proofs


@pytest.mark.parametrize(
    "params",
    [
        {"acceptors": 3, "values": 2, "max_ballot": 1},  # the default, TLC's parity instance
        SMALL,
        {"acceptors": 3, "values": 2, "max_ballot": 2},
        {"acceptors": 4, "values": 3, "max_ballot": 1},  # quorums of three out of four
    ],
)
def test_paxosinv_proves_agreement(params: dict[str, int]) -> None:
    outcomes = prove(paxos(**params))
    assert list(outcomes) == ["Initiation", "Consecution", "Safety(Agreement)"]
    assert results(outcomes) == dict.fromkeys(outcomes, PROVED)


@pytest.mark.parametrize(
    "params", [{"acceptors": 3, "values": 2, "max_ballot": 1}, {"acceptors": 3, "values": 3, "max_ballot": 2}]
)
def test_votinginv_proves_agreement(params: dict[str, int]) -> None:
    outcomes = prove(voting(**params))
    assert results(outcomes) == {"Initiation": PROVED, "Consecution": PROVED, "Safety(Agreement)": PROVED}


@pytest.mark.slow
def test_paxosinv_proves_agreement_for_five_acceptors_three_values_four_ballots() -> None:
    # About 8 s, nearly all of it Consecution (docs/proofs.md lists the sizes measured).
    outcomes = prove(paxos(acceptors=5, values=3, max_ballot=3))
    assert results(outcomes) == dict.fromkeys(outcomes, PROVED)


@pytest.mark.parametrize("make", [paxos, voting])
def test_agreement_alone_is_not_inductive(make: Any) -> None:
    enc = make()
    reachable = set(reachable_states(enc.spec))
    outcomes = prove(enc, "Agreement", is_reachable=reachable.__contains__)
    assert outcomes["Initiation"].verdict == PROVED and outcomes["Safety(Agreement)"].verdict == PROVED
    consecution = outcomes["Consecution"]
    assert consecution.verdict == FAILED and consecution.counterexample is not None
    cex = consecution.counterexample
    before, action, after = cex.values["state"], cex.values["action"], cex.values["next_state"]
    assert enc.spec.next_state(before, action) == after
    agreement = next(inv for inv in enc.spec.invariants() if inv.name == "Agreement")
    assert agreement.holds(before) and not agreement.holds(after)
    # The correct protocol never gets there: the candidate is too weak.
    assert before not in reachable and cex.data["before_reachable"] is False


@pytest.mark.parametrize("make", [paxos, voting])
def test_every_conjunct_is_needed(make: Any) -> None:
    # Without any one conjunct, what is left is not inductive or does not imply
    # Agreement, and z3 says which with a counterexample.
    enc = make()
    full = enc.candidate(None)
    for dropped in full.conjuncts:
        rest = Candidate(f"without {dropped.name}", "", tuple(c for c in full.conjuncts if c != dropped))
        outcomes = {o.name: discharge(o) for o in obligations(enc, rest)}
        failed = [name for name, o in outcomes.items() if o.verdict == FAILED]
        assert failed, f"{dropped.name} is redundant"
        assert all(outcomes[name].counterexample is not None for name in failed)


# ------------------------------------------- the invariants say what the spec says


def _agree_on_reachable_states(enc: Encoding[Any, Any], formulas: dict[str, Any], seen: dict[str, set[bool]]) -> None:
    """Each z3 formula, evaluated on every reachable state, is the spec's invariant
    of the same name; ``seen`` collects the truth values met."""
    s = enc.symbolic()
    invariants = {inv.name: inv.holds for inv in enc.spec.invariants()}
    evaluators = {name: Holds(formula(s), s) for name, formula in formulas.items()}
    for state in reachable_states(enc.spec):
        values = enc.values(state)
        for name, holds in evaluators.items():
            z3_says = holds(values)
            assert z3_says == invariants[name](state), (name, state)
            seen.setdefault(name, set()).add(z3_says)


def test_paxosinv_states_the_specs_accinv_and_msginv() -> None:
    # On every reachable state of every variant (where they do fail), the z3
    # AccInv and the conjunction of the four MsgInv parts are the spec's own.
    seen: dict[str, set[bool]] = {}
    for variant in [None, *sorted(PAXOS_VARIANTS)]:
        enc = paxos(variant)
        _agree_on_reachable_states(enc, {"AccInv": enc.acc_inv, "MsgInv": enc.msg_inv}, seen)
    assert seen == {"AccInv": {True, False}, "MsgInv": {True, False}}


def test_votinginv_states_the_specs_invariants() -> None:
    seen: dict[str, set[bool]] = {}
    for variant in [None, *sorted(VOTING_VARIANTS)]:
        enc = voting(variant)
        conjuncts = {c.name: c.formula for c in enc.candidate("VotingInv").conjuncts}
        _agree_on_reachable_states(enc, conjuncts, seen)
    assert seen == {"OneValuePerBallot": {True, False}, "VotesSafe": {True, False}}


# ------------------------------------------------------------------ cross-check


@pytest.mark.parametrize("variant", [None, *sorted(PAXOS_VARIANTS)])
def test_paxos_encoding_agrees_with_the_spec(variant: str | None) -> None:
    enc = paxos(variant)
    report = cross_check(enc)
    assert report.ok, "\n".join(m.render() for m in report.mismatches)
    assert report.states == len(reachable_states(enc.spec)) and report.steps > report.states


@pytest.mark.parametrize("variant", [None, *sorted(VOTING_VARIANTS)])
def test_voting_encoding_agrees_with_the_spec(variant: str | None) -> None:
    enc = voting(variant)
    report = cross_check(enc)
    assert report.ok, "\n".join(m.render() for m in report.mismatches)
    assert report.states == len(reachable_states(enc.spec)) and report.steps > report.states


class ProposerIgnoresReports(PaxosEncoding):
    """Altered copy: Phase2a lets a proposer with a quorum of promises propose any
    value, whatever was reported (the spec's ignore_reported_value, in z3 only)."""

    def proposable(self, s: SymState, b: int, v: str) -> z3.BoolRef:
        return z3.Or(
            *[
                z3.And(*[z3.Or(*[s[sent_1b(a, b, mb, mv)] for mb, mv in self.reports]) for a in q])
                for q in self.words.quorums
            ]
        )


class PromiseNotRecorded(PaxosEncoding):
    """Altered copy: Phase1b sends its 1b but forgets to raise max_bal."""

    def transition(self, action: PaxosAction, s: SymState) -> Transition:
        step = super().transition(action, s)
        if isinstance(action, Phase1b):
            updates = {k: v for k, v in step.updates.items() if k != max_bal(action.acceptor)}
            return Transition(step.guard, updates)
        return step


class VoteWithoutPromises(VotingEncoding):
    """Altered copy: ShowsSafeAt forgets that the quorum must have promised b."""

    def shows_safe_at(self, s: SymState, quorum: Sequence[str], b: int, v: str) -> z3.BoolRef:
        shown = super().shows_safe_at(s, quorum, b, v)
        return z3.And(*shown.children()[1:])


class AgreementInBallotZero(PaxosEncoding):
    """Altered copy: Agreement counts only values chosen in ballot 0."""

    def properties(self) -> Sequence[Predicate]:
        w = self.words
        return (
            Predicate(
                "Agreement",
                "at most one value is chosen in ballot 0",
                lambda s: z3.Not(z3.And(w.chosen_at(s, 0, "v1"), w.chosen_at(s, 0, "v2"))),
            ),
        )


@pytest.mark.parametrize(
    ("altered", "variant", "kind", "action_type"),
    [
        (ProposerIgnoresReports, None, "z3 enables an action the spec does not", Phase2a),
        (PromiseNotRecorded, None, "spec step outside the z3 relation", Phase1b),
        (VoteWithoutPromises, None, "z3 enables an action the spec does not", VoteFor),
        # Agreement only fails, and so can only be misstated visibly, where quorums
        # need not intersect.
        (AgreementInBallotZero, "non_intersecting_quorums", "property", None),
    ],
)
def test_an_altered_encoding_fails_the_cross_check(
    altered: type[Encoding[Any, Any]], variant: str | None, kind: str, action_type: type | None
) -> None:
    # (The unaltered encodings pass on these specs: test_*_encoding_agrees_with_the_spec.)
    spec = (paxos if issubclass(altered, PaxosEncoding) else voting)(variant).spec
    report = cross_check(altered(spec))
    assert not report.ok
    first = report.mismatches[0]
    assert first.kind == kind
    if action_type is not None:
        assert isinstance(first.action, action_type)
    verdict = report.verdict()
    assert verdict.verdict == FAILED and verdict.counterexample is not None and kind in verdict.counterexample.text


def test_an_altered_encoding_changes_the_proof() -> None:
    # Why the cross-check matters: the correct spec, misread by the altered
    # encoding, would fail its proof at the misread step.
    consecution = prove(ProposerIgnoresReports(paxos().paxos))["Consecution"]
    assert consecution.verdict == FAILED and consecution.counterexample is not None
    assert isinstance(consecution.counterexample.values["action"], Phase2a)
    assert consecution.counterexample.data["spec_agrees"] is False
    assert "the executable spec does not take this step" in consecution.counterexample.text


# ------------------------------------------------------------------ the variants

#: Each variant that breaks the induction: the action it changes and the conjunct
#: that step breaks.
BROKEN_BY: dict[tuple[str, str], tuple[type, str]] = {
    ("paxos", "broken_promise"): (Phase2b, "MsgInv1b"),
    ("paxos", "ignore_reported_value"): (Phase2a, "MsgInv2aSafe"),
    ("paxos", "shared_ballot"): (Phase2a, "MsgInv2aUnique"),
    ("paxos", "forgotten_vote"): (AcceptorRestart, "AccInv"),
    ("voting", "unsafe_vote"): (VoteFor, "VotesSafe"),
    ("voting", "two_values_per_ballot"): (VoteFor, "OneValuePerBallot"),
}
MAKE: dict[str, Callable[..., Encoding[Any, Any]]] = {"paxos": paxos, "voting": voting}


def test_every_variant_is_covered() -> None:
    covered = {key for key in BROKEN_BY} | {
        ("paxos", "non_intersecting_quorums"),
        ("voting", "non_intersecting_quorums"),
    }
    assert covered == {("paxos", v) for v in PAXOS_VARIANTS} | {("voting", v) for v in VOTING_VARIANTS}


@pytest.mark.parametrize(("spec_name", "variant"), sorted(BROKEN_BY))
def test_variant_breaks_consecution_at_the_step_it_changes(spec_name: str, variant: str) -> None:
    action_type, conjunct = BROKEN_BY[spec_name, variant]
    enc = MAKE[spec_name](variant)
    outcomes = prove(enc)
    assert results(outcomes) == {"Initiation": PROVED, "Consecution": FAILED, "Safety(Agreement)": PROVED}
    cex = outcomes["Consecution"].counterexample
    assert cex is not None
    before, action, after = cex.values["state"], cex.values["action"], cex.values["next_state"]
    assert isinstance(action, action_type), action
    assert cex.data["spec_agrees"] is True and enc.spec.next_state(before, action) == after
    assert conjunct in cex.data["failing"]


@pytest.mark.parametrize(("spec_name", "variant"), sorted(BROKEN_BY))
def test_variant_breaks_the_invariant_from_a_reachable_state(spec_name: str, variant: str) -> None:
    # z3's counterexample is the one nearest the initial state, which need not be
    # reachable; the variant's step also breaks the same conjunct from a state the
    # variant does reach, where the whole invariant held: the bug is the
    # protocol's, not a weak invariant's.
    action_type, conjunct = BROKEN_BY[spec_name, variant]
    enc = MAKE[spec_name](variant)
    s = enc.symbolic()
    candidate = enc.candidate(None)
    inv = Holds(candidate.formula(s), s)
    broken = Holds(next(c for c in candidate.conjuncts if c.name == conjunct).formula(s), s)
    found = [
        (state, action)
        for state in reachable_states(enc.spec)
        if inv(enc.values(state))
        for action, nxt in enc.spec.successors(state)
        if isinstance(action, action_type) and not broken(enc.values(nxt))
    ]
    assert found


@pytest.mark.parametrize("make", [paxos, voting])
def test_non_intersecting_quorums_fail_only_at_agreement(make: Any) -> None:
    # The induction does not use quorum intersection: every message still tells
    # the truth, and the truth no longer implies Agreement.
    enc = make("non_intersecting_quorums")
    outcomes = prove(enc)
    assert results(outcomes) == {"Initiation": PROVED, "Consecution": PROVED, "Safety(Agreement)": FAILED}
    cex = outcomes["Safety(Agreement)"].counterexample
    assert cex is not None
    agreement = next(inv for inv in enc.spec.invariants() if inv.name == "Agreement")
    assert not agreement.holds(cex.values["state"])
    # ... and the variant reaches such a state.
    s = enc.symbolic()
    inv = Holds(enc.candidate(None).formula(s), s)
    assert any(inv(enc.values(st)) and not agreement.holds(st) for st in reachable_states(enc.spec))


# ------------------------------------------------------------------------- CLI


def test_prove_paxos_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prove", "paxos", "-p", "acceptors=2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["spec"] == "paxos" and report["invariant"] == "PaxosInv"
    assert report["params"] == {"acceptors": 2, "values": 2, "max_ballot": 1}
    assert [o["name"] for o in report["obligations"]] == [
        "CrossCheck",
        "Initiation",
        "Consecution",
        "Safety(Agreement)",
    ]
    assert all(o["verdict"] == PROVED for o in report["obligations"])
    assert "145 reachable states" in report["obligations"][0]["detail"]


def test_prove_voting_cli(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prove", "voting", "-p", "acceptors=2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.splitlines()[0] == "voting acceptors=2 values=2 max_ballot=1, invariant VotingInv"
    assert out.splitlines()[-1].startswith("ok: 4 of 4 obligations proved")


def test_prove_paxos_cli_variant_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prove", "paxos", "-p", "acceptors=2", "--variant", "broken_promise", "--no-cross-check"])
    out = capsys.readouterr().out
    assert code == 1
    assert "counterexample to induction" in out and "Phase2b" in out and "MsgInv1b" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["prove", "paxos", "-p", "acceptors=8"], "parameter acceptors of paxos must be between 1 and 7"),
        (["prove", "paxos", "--invariant", "Nope"], "unknown invariant 'Nope'; known: PaxosInv, Agreement"),
        (["prove", "voting", "--variant", "broken_promise"], "unknown variant 'broken_promise' for voting"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err


def test_restart_is_encoded_only_where_the_spec_has_it() -> None:
    assert any(isinstance(a, AcceptorRestart) for a in paxos("forgotten_vote").actions())
    assert not any(isinstance(a, AcceptorRestart) for a in paxos().actions())
    with pytest.raises(ValueError, match="not a Paxos action"):
        paxos().transition(AcceptorRestart("a1"), paxos().symbolic())
