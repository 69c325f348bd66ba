"""TwoPhase's z3 proofs: TPInv proves TCConsistent; TCConsistent alone is not
inductive; each broken variant makes the proof fail; failed obligations decode into
real spec states that the executable spec agrees with."""

from __future__ import annotations

from typing import Any

import pytest
import z3

from distcheck.checks.proofs.crosscheck import cross_check, reachable_states
from distcheck.checks.proofs.induction import obligations
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.checks.proofs.system import Candidate, Evaluator, Predicate
from distcheck.checks.proofs.twophase import TCommitEncoding, TwoPhaseEncoding
from distcheck.checks.traces.render import changes
from distcheck.spec.codec import to_json
from distcheck.spec.twophase import Config, TCConfig, TCommit, TPState, TwoPhase, tc_consistent_tp


def prove(rms: int, variant: str | None = None, invariant: str | None = None, **options: Any) -> dict[str, Outcome]:
    encoding = TwoPhaseEncoding(TwoPhase(Config(rms=rms, variant=variant)))
    return {o.name: discharge(o) for o in obligations(encoding, encoding.candidate(invariant), **options)}


@pytest.mark.parametrize("rms", [1, 2, 3, 5])
def test_tpinv_proves_tcconsistent(rms: int) -> None:
    outcomes = prove(rms)
    assert set(outcomes) == {"Initiation", "Consecution", "Safety(TCConsistent)"}
    assert {name: o.verdict for name, o in outcomes.items()} == dict.fromkeys(outcomes, PROVED)
    assert all(o.counterexample is None for o in outcomes.values())


def test_every_conjunct_of_tpinv_holds_on_every_reachable_state() -> None:
    # An inductive invariant must at least be an invariant: z3 evaluates each
    # conjunct on every encoded reachable state.
    spec = TwoPhase(Config(rms=3))
    encoding = TwoPhaseEncoding(spec)
    s = encoding.symbolic()
    conjuncts = [(c.name, Evaluator(c.formula(s), s)) for c in encoding.candidate("TPInv").conjuncts]
    assert len(conjuncts) == 7
    for state in reachable_states(spec):
        values = encoding.values(state)
        broken = [name for name, holds in conjuncts if not holds.holds(values)]
        assert broken == [], f"{broken} false on a reachable state"
    # ... and the evaluation can say no: SenderLeftWorking fails where a working RM
    # has a Prepared message.
    first = next(iter(spec.init_states()))
    odd = dict(encoding.values(first), **{"sent_prepared[r1]": True})
    assert [name for name, holds in conjuncts if not holds.holds(odd)] == ["SenderLeftWorking"]


def test_every_conjunct_of_tpinv_is_needed() -> None:
    # Without any one conjunct, the rest is not inductive or no longer implies
    # TCConsistent: each failure comes with a counterexample.
    encoding = TwoPhaseEncoding(TwoPhase(Config(rms=3)))
    full = encoding.candidate("TPInv")
    failed_by_kind = {"Consecution": 0, "Safety(TCConsistent)": 0}
    for dropped in full.conjuncts:
        rest = Candidate(f"TPInv - {dropped.name}", "", tuple(c for c in full.conjuncts if c != dropped))
        outcomes = {o.name: discharge(o) for o in obligations(encoding, rest)}
        assert outcomes["Initiation"].verdict == PROVED
        failed = [name for name, o in outcomes.items() if o.verdict == FAILED]
        assert failed, f"{dropped.name} is redundant"
        for name in failed:
            assert outcomes[name].counterexample is not None
            failed_by_kind[name] += 1
    # Both kinds occur: some conjuncts carry the induction, others the safety.
    assert all(count > 0 for count in failed_by_kind.values()), failed_by_kind


def test_tcconsistent_alone_is_not_inductive_and_the_counterexample_is_real() -> None:
    spec = TwoPhase(Config(rms=3))
    reachable = set(reachable_states(spec))
    outcomes = prove(3, invariant="TCConsistent", is_reachable=reachable.__contains__)
    assert outcomes["Initiation"].verdict == PROVED
    consecution = outcomes["Consecution"]
    assert consecution.verdict == FAILED
    cex = consecution.counterexample
    assert cex is not None

    before, action, after = cex.values["state"], cex.values["action"], cex.values["next_state"]
    assert isinstance(before, TPState) and isinstance(after, TPState)
    # The JSON form is the same counterexample.
    assert spec.action_from_json(cex.data["action"]) == action
    assert cex.data["state"] == to_json(before) and cex.data["next_state"] == to_json(after)
    # A counterexample to induction: TCConsistent before, a real spec step, not after.
    assert tc_consistent_tp(before)
    assert spec.next_state(before, action) == after
    assert not tc_consistent_tp(after)
    assert cex.data["failing"] == ["TCConsistent"]
    assert cex.data["spec_agrees"] is True
    # Its first state cannot happen: the candidate is too weak, the protocol is fine.
    assert before not in reachable
    assert cex.data["before_reachable"] is False
    # Readable: the text shows the step and what it changed, as traces do.
    assert "counterexample to induction" in cex.text
    assert str(action) in cex.text
    for line in changes(before, after):
        assert line in cex.text
    assert "not reachable from Init" in cex.text


@pytest.mark.parametrize("variant", sorted(TwoPhase.variants()))
def test_each_variant_breaks_the_proof_with_a_reachable_counterexample(variant: str) -> None:
    spec = TwoPhase(Config(rms=3, variant=variant))
    reachable = set(reachable_states(spec))
    outcomes = prove(3, variant, is_reachable=reachable.__contains__)
    consecution = outcomes["Consecution"]
    assert consecution.verdict == FAILED
    cex = consecution.counterexample
    assert cex is not None
    before, after = cex.values["state"], cex.values["next_state"]
    assert spec.next_state(before, cex.values["action"]) == after
    # The variant's own step breaks a conjunct from a state the variant reaches:
    # this is the protocol's bug, not a weak invariant.
    assert before in reachable
    assert cex.data["failing"], "a failing conjunct is named"
    assert "reachable: the spec itself breaks the invariant" in cex.text


def test_failed_initiation_decodes_an_initial_state() -> None:
    encoding = TwoPhaseEncoding(TwoPhase(Config(rms=2)))
    decided = Predicate("Decided", "the TM is done", lambda s: s.is_("tm_state", "done"))
    outcome = discharge(obligations(encoding, Candidate("Decided", "wrong from the start", (decided,)))[0])
    assert outcome.name == "Initiation" and outcome.verdict == FAILED
    assert outcome.counterexample is not None
    assert outcome.counterexample.values["state"] in set(encoding.spec.init_states())
    assert outcome.counterexample.data["failing"] == ["Decided"]


def test_failed_safety_decodes_a_state_breaking_the_property() -> None:
    encoding = TwoPhaseEncoding(TwoPhase(Config(rms=2)))
    weak = Predicate("OneDecision", "not both decisions", lambda s: z3.Not(z3.And(s["sent_commit"], s["sent_abort"])))
    outcomes = {o.name: discharge(o) for o in obligations(encoding, Candidate("Weak", "too weak", (weak,)))}
    safety = outcomes["Safety(TCConsistent)"]
    assert safety.verdict == FAILED and safety.counterexample is not None
    state = safety.counterexample.values["state"]
    assert not tc_consistent_tp(state)
    # The model closest to the initial state: two RMs, one committed, one aborted.
    assert sorted(state.rm_state.values()) == ["aborted", "committed"]


@pytest.mark.parametrize("rms", [1, 2, 3, 4])
def test_tcommit_needs_no_strengthening(rms: int) -> None:
    encoding = TCommitEncoding(TCommit(TCConfig(rms=rms)))
    assert cross_check(encoding).ok
    outcomes = [discharge(o) for o in obligations(encoding, encoding.candidate(None))]
    assert [o.verdict for o in outcomes] == [PROVED] * 3
