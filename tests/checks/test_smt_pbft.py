"""PBFT's z3 proof: PbftInv proves Agreement, Validity and PreparedConsistent at the
bounded instance; the quorum lemma it rests on is an obligation of ``prove pbft``;
the encoding agrees with the executable spec (variants included) and the
cross-check notices when it does not; every conjunct is needed; each broken variant
fails the proof, at the step or the property it breaks."""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from typing import Any

import pytest
import z3

from distcheck.checks.cli import main
from distcheck.checks.proofs.crosscheck import cross_check, reachable_states
from distcheck.checks.proofs.induction import obligations
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.checks.proofs.pbft import PbftEncoding, at_least, reply, vc
from distcheck.checks.proofs.registry import PROVABLE
from distcheck.checks.proofs.system import Candidate, Holds, SymState, Transition
from distcheck.spec.pbft import Config, Pbft, PbftAction, ViewChange

VARIANTS = tuple(Pbft.variants())
PROPERTIES = ["Safety(Agreement)", "Safety(Validity)", "Safety(PreparedConsistent)"]
OBLIGATIONS = ["Initiation", "Consecution", *PROPERTIES]
CONJUNCTS = ["Views", "PrePrepares", "Prepares", "Commits", "Replies", "ViewChanges", "NewViewSafe"]


def spec(variant: str | None = None, /, **params: Any) -> Pbft:
    cls = Pbft.variants()[variant].cls if variant else Pbft
    params = {**(Pbft.variants()[variant].params if variant else {}), **params}
    made = cls(Config(**params, variant=variant))
    assert isinstance(made, Pbft)
    return made


def encoding(variant: str | None = None, /, **params: Any) -> PbftEncoding:
    return PbftEncoding(spec(variant, **params))


def prove(enc: PbftEncoding, invariant: str | None = None) -> dict[str, Outcome]:
    return {o.name: discharge(o) for o in obligations(enc, enc.candidate(invariant))}


def results(outcomes: dict[str, Outcome]) -> dict[str, str]:
    return {name: o.verdict for name, o in outcomes.items()}


# --------------------------------------------------------------------- the proof


@pytest.mark.parametrize(
    "params",
    [
        {},  # the default: 4 replicas, r1 Byzantine (the primary of view 0), views 0..1
        {"max_view": 2},
        {"requests": 3},
        {"replicas": 5},
        {"replicas": 3, "faulty": 0, "seqs": 2},
    ],
)
def test_pbft_inv_proves_the_safety_properties(params: dict[str, int]) -> None:
    enc = encoding(None, **params)
    assert [c.name for c in enc.candidate(None).conjuncts] == CONJUNCTS
    assert results(prove(enc)) == dict.fromkeys(OBLIGATIONS, PROVED)


def test_the_safety_properties_alone_are_not_inductive() -> None:
    outcomes = prove(encoding(), "Safety")
    assert results(outcomes) == {**dict.fromkeys(OBLIGATIONS, PROVED), "Consecution": FAILED}


@pytest.mark.parametrize("dropped", CONJUNCTS)
def test_every_conjunct_is_needed(dropped: str) -> None:
    enc = encoding()
    full = enc.candidate(None)
    rest = Candidate(f"without {dropped}", "", tuple(c for c in full.conjuncts if c.name != dropped))
    outcomes = {o.name: discharge(o) for o in obligations(enc, rest)}
    assert FAILED in results(outcomes).values(), f"{dropped} is redundant"


def test_every_conjunct_holds_on_every_reachable_state() -> None:
    enc = encoding()
    s = enc.symbolic()
    conjuncts = [(c.name, Holds(c.formula(s), s)) for c in enc.candidate(None).conjuncts]
    states = reachable_states(enc.spec)
    assert len(states) == 12_239
    executed_after_view_change = False
    for state in states:
        values = enc.values(state)
        assert [name for name, holds in conjuncts if not holds(values)] == [], state
        executed_after_view_change |= any(values[reply(r, 1, 1, q)] for r in enc.honest for q in enc.pbft.requests)
    # Not vacuous: a request is executed in the view after a view change.
    assert executed_after_view_change


# ------------------------------------------------------------- the quorum lemma


def test_prove_pbft_runs_the_quorum_lemma_after_the_cross_check() -> None:
    plan = PROVABLE["pbft"].plan([], cross_check=False)
    assert [o.name for o in plan.obligations] == ["CrossCheck", "CorrectInIntersection", *OBLIGATIONS]
    assert "any two quorums of 3 share a correct node" in plan.obligations[1].statement
    assert discharge(plan.obligations[1]).verdict == PROVED

    plan = PROVABLE["pbft"].plan(["replicas=7", "faulty=2"], cross_check=False)
    assert "whichever 2 node(s) are faulty, any two quorums of 5" in plan.obligations[1].statement

    # N = 3f: two quorums of 2 of 3 may meet in the faulty replica only.
    plan = PROVABLE["pbft"].plan([], variant="too_few_replicas", cross_check=False)
    lemma = discharge(plan.obligations[1])
    assert lemma.verdict == FAILED and lemma.counterexample is not None
    assert lemma.counterexample.data["faulty"] == lemma.counterexample.data["common"]


# ------------------------------------------------------- the encoding and the spec


@pytest.mark.parametrize(
    ("variant", "params"),
    [
        (None, {"requests": 1}),
        (None, {"replicas": 3, "faulty": 0}),
        (None, {"replicas": 3, "faulty": 0, "requests": 1, "seqs": 2}),
        *[(v, {"requests": 1}) for v in VARIANTS if v != "too_few_replicas"],
        ("too_few_replicas", {}),
    ],
)
def test_the_encoding_agrees_with_the_spec(variant: str | None, params: dict[str, int]) -> None:
    enc = encoding(variant, **params)
    report = cross_check(enc)
    assert report.mismatches == ()
    assert report.states == len(reachable_states(enc.spec)) > 1000


class CommitOnFewerPrepares(PbftEncoding):
    """A replica commits on quorum − 2 backups' prepares."""

    def prepared_by_quorum(self, s: SymState, v: int, n: int, q: str) -> z3.BoolRef:
        backups = [r for r in self.replicas if r != self.pbft.primary(v)]
        return at_least([self.sent_prep(s, b, v, n, q) for b in backups], self.quorum - 2)


class NewViewTrustsClaims(PbftEncoding):
    """The new primary takes every certificate a view-change claims as valid."""

    def certified(self, s: SymState, v: int, n: int, q: str) -> z3.BoolRef:
        return z3.BoolVal(True)


class ViewChangeForgetsCertificates(PbftEncoding):
    """A view-change always reports no certificate."""

    def transition(self, action: PbftAction, s: SymState) -> Transition:
        step = super().transition(action, s)
        if isinstance(action, ViewChange):
            r, v = action.replica, action.view
            updates = {name: False for name in step.updates if name.startswith("vc[")}
            return Transition(step.guard, {**step.updates, **updates, vc(r, v, ()): True})
        return step


@pytest.mark.parametrize("altered", [CommitOnFewerPrepares, NewViewTrustsClaims, ViewChangeForgetsCertificates])
def test_an_altered_encoding_fails_the_cross_check(altered: type[PbftEncoding]) -> None:
    report = cross_check(altered(spec(None, requests=2)))
    assert report.mismatches, altered.__name__


# ------------------------------------------------------------------- the variants

# Where each broken variant fails: the obligation, and for a counterexample to
# induction the conjunct that breaks and the step that breaks it.
EXPECTED: dict[str, tuple[dict[str, str], str, str]] = {
    "too_few_replicas": (
        {"Consecution": FAILED, "Safety(Agreement)": FAILED, "Safety(PreparedConsistent)": FAILED},
        "NewViewSafe",
        "NewView",
    ),
    "commit_quorum_2f": ({"Consecution": FAILED}, "NewViewSafe", "NewView"),
    "new_view_ignores_prepared": ({"Consecution": FAILED}, "NewViewSafe", "NewView"),
    "accept_from_non_primary": ({"Safety(Agreement)": FAILED, "Safety(PreparedConsistent)": FAILED}, "", ""),
    "unsigned_request": ({"Consecution": FAILED, "Safety(Validity)": FAILED}, "PrePrepares", "NewView"),
}


def test_every_variant_is_expected() -> None:
    assert sorted(EXPECTED) == sorted(VARIANTS)


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_a_broken_variant_fails_the_proof(variant: str) -> None:
    enc = encoding(variant)
    outcomes = prove(enc)
    failed, conjunct, step = EXPECTED[variant]
    assert results(outcomes) == {**dict.fromkeys(OBLIGATIONS, PROVED), **failed}
    if conjunct:
        cti = outcomes["Consecution"].counterexample
        assert cti is not None
        assert conjunct in cti.data["failing"]
        assert cti.data["action"]["type"] == step
        # The executable spec takes the same step from the same state.
        assert cti.data["spec_agrees"] is True


def test_new_view_ignores_prepared_breaks_new_view_safe_on_a_reachable_state() -> None:
    enc = encoding("new_view_ignores_prepared")
    reachable = set(reachable_states(enc.spec))
    cti = {o.name: discharge(o) for o in obligations(enc, enc.candidate(None), is_reachable=reachable.__contains__)}
    counterexample = cti["Consecution"].counterexample
    assert counterexample is not None and counterexample.data["before_reachable"] is True
    assert "(reachable: the spec itself breaks the invariant)" in counterexample.text


# ------------------------------------------------------------------------ the CLI


def test_prove_pbft_json(capsys: pytest.CaptureFixture[str]) -> None:
    # The cross-check at the defaults runs in test_smt_crosscheck (every registered
    # encoding); here the obligations that follow it.
    code = main(["prove", "pbft", "--json", "--no-cross-check"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["verdict"] == "ok" and report["invariant"] == "PbftInv"
    assert [o["name"] for o in report["obligations"]] == ["CrossCheck", "CorrectInIntersection", *OBLIGATIONS]
    assert report["obligations"][0]["verdict"] == "skipped"
    assert all(o["verdict"] == PROVED for o in report["obligations"][1:])


def test_prove_pbft_commit_quorum_2f_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prove", "pbft", "--variant", "commit_quorum_2f", "--no-cross-check"])
    out = capsys.readouterr().out
    assert code == 1
    assert "Consecution               failed" in out
    assert "NewViewSafe" in out and "NewView(r2, 1" in out


def _values(enc: PbftEncoding) -> Mapping[str, Hashable]:
    return enc.values(next(iter(enc.spec.init_states())))


def test_the_faulty_replicas_vocabulary_is_not_a_field() -> None:
    enc = encoding()
    values = _values(enc)
    assert not any(name.startswith(("pp[r1,", "prep[r1,", "commit[r1,")) for name in values)
    assert enc.state(values) == next(iter(enc.spec.init_states()))
