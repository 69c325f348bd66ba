"""The saga's z3 proof: AtomicityInv proves SemanticAtomicity, orchestrated and
choreographed, for every loss and crash budget; the abstraction simulates the
executable spec (every variant included) and the cross-check notices when it does
not; each conjunct is needed; the variants that break atomicity fail Consecution at
the step that breaks it, a step the spec itself takes from a reachable state where
every conjunct held; the others are proved."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from typing import Any

import pytest
import z3

from distcheck.checks.cli import main
from distcheck.checks.proofs.crosscheck import bounded_successors, cross_check, reachable_states
from distcheck.checks.proofs.induction import obligations
from distcheck.checks.proofs.obligations import FAILED, PROVED, Outcome, discharge
from distcheck.checks.proofs.saga import ENCODED_VARIANTS, Crash, SagaAtomicityEncoding
from distcheck.checks.proofs.system import Candidate, Evaluator, SymState, Transition
from distcheck.spec.saga import (
    CANCELLED,
    CHOREOGRAPHY,
    ORCHESTRATION,
    Ask,
    CancelSaga,
    Compensate,
    Compensated,
    Config,
    Finish,
    OrchestratorCrash,
    Recover,
    Saga,
    SagaState,
    Start,
    StepCancelled,
    StepCommitted,
    UndoFailed,
)

ORCHESTRATED_PROOF = [
    "HistoryInRecords",
    "AnswersMatchRecords",
    "NothingBeyondAsked",
    "LogShape",
    "NoUndoBeforeCompensating",
    "RunningOnCommitted",
    "UndoneAreSettled",
]
CHOREOGRAPHED_PROOF = [
    "HistoryInRecords",
    "AnswersMatchRecords",
    "CommittedPublished",
    "DoneInOrder",
    "CompensatedAfterNext",
]
OBLIGATIONS = ["Initiation", "Consecution", "Safety(SemanticAtomicity)"]


def encoding(variant: str | None = None, /, **params: Any) -> SagaAtomicityEncoding:
    return SagaAtomicityEncoding(Saga(Config(**params, variant=variant)))


def prove(enc: SagaAtomicityEncoding, invariant: str | None = None) -> dict[str, Outcome]:
    return {o.name: discharge(o) for o in obligations(enc, enc.candidate(invariant))}


def results(outcomes: dict[str, Outcome]) -> dict[str, str]:
    return {name: o.verdict for name, o in outcomes.items()}


@pytest.mark.parametrize(
    ("style", "steps", "conjuncts"),
    [
        (ORCHESTRATION, 1, ORCHESTRATED_PROOF),
        (ORCHESTRATION, 3, ORCHESTRATED_PROOF),
        (ORCHESTRATION, 5, ORCHESTRATED_PROOF),
        (CHOREOGRAPHY, 3, CHOREOGRAPHED_PROOF),
        (CHOREOGRAPHY, 5, CHOREOGRAPHED_PROOF),
    ],
)
def test_atomicity_inv_proves_semantic_atomicity(style: str, steps: int, conjuncts: list[str]) -> None:
    enc = encoding(None, style=style, steps=steps)
    assert [c.name for c in enc.candidate(None).conjuncts] == conjuncts
    assert results(prove(enc)) == dict.fromkeys(OBLIGATIONS, PROVED)


def test_the_abstract_instance_does_not_depend_on_the_budgets() -> None:
    # The proof at losses=0, crashes=0 is the proof at losses=3, crashes=3.
    small, large = encoding(None, losses=0, crashes=0), encoding(None, losses=3, crashes=3)
    assert small.fields() == large.fields() and small.actions() == large.actions()


@pytest.mark.parametrize("style", [ORCHESTRATION, CHOREOGRAPHY])
def test_semantic_atomicity_alone_is_not_inductive(style: str) -> None:
    outcomes = prove(encoding(None, style=style), "SemanticAtomicity")
    assert results(outcomes) == {"Initiation": PROVED, "Consecution": FAILED, "Safety(SemanticAtomicity)": PROVED}


@pytest.mark.parametrize(
    ("style", "dropped"),
    [(ORCHESTRATION, name) for name in ORCHESTRATED_PROOF] + [(CHOREOGRAPHY, name) for name in CHOREOGRAPHED_PROOF],
)
def test_every_conjunct_is_needed(style: str, dropped: str) -> None:
    enc = encoding(None, style=style, steps=2)
    full = enc.candidate(None)
    rest = Candidate(f"without {dropped}", "", tuple(c for c in full.conjuncts if c.name != dropped))
    outcomes = {o.name: discharge(o) for o in obligations(enc, rest)}
    assert FAILED in results(outcomes).values(), f"{dropped} is redundant"


@pytest.mark.parametrize("style", [ORCHESTRATION, CHOREOGRAPHY])
def test_every_conjunct_holds_on_every_reachable_state(style: str) -> None:
    enc = encoding(None, style=style, steps=2)
    s = enc.symbolic()
    conjuncts = [(c.name, Evaluator(c.formula(s), s)) for c in enc.candidate(None).conjuncts]
    states = reachable_states(enc.spec)
    for state in states:
        values = enc.values(state)
        assert [name for name, holds in conjuncts if not holds.holds(values)] == [], state
    # Not vacuous: both outcomes are reached.
    assert any(enc.saga.completed(state) for state in states)
    assert any(enc.saga.compensated_end(state) for state in states)


# ---------------------------------------------------- the abstraction and the spec


def first_states(spec: Saga, limit: int) -> list[SagaState]:
    """The first ``limit`` reachable states, breadth first (some variants' histories
    grow without bound: their state spaces are infinite)."""
    init = list(spec.init_states())
    seen = dict.fromkeys(init)
    queue = deque(init)
    while queue and len(seen) < limit:
        for _, nxt in bounded_successors(spec, queue.popleft()):
            if nxt not in seen:
                seen[nxt] = None
                queue.append(nxt)
    return list(seen)


def test_every_variant_is_encoded() -> None:
    assert ENCODED_VARIANTS == set(Saga.variants())


# The reference at its default size is cross-checked by test_smt_crosscheck (every
# registered encoding) and by test_prove_saga_json; here each variant, in the style
# where its mistake shows and in the other, on its first states.
@pytest.mark.parametrize(
    ("style", "variant"),
    [
        (ORCHESTRATION, None),
        (CHOREOGRAPHY, None),
        *[(ORCHESTRATION, v) for v in sorted(ENCODED_VARIANTS - {"react_before_commit"})],
        *[(CHOREOGRAPHY, v) for v in ("react_before_commit", "blind_compensation", "non_idempotent_participant")],
    ],
)
def test_the_abstraction_simulates_the_spec(style: str, variant: str | None) -> None:
    enc = encoding(variant, style=style, steps=2)
    states = first_states(enc.saga, 400)
    report = cross_check(enc, states)
    assert report.mismatches == ()
    assert report.states == len(states) and report.steps > report.states


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    ["blind_compensation", "compensate_forward_order", "forget_compensation_on_crash", "give_up_compensation"],
)
def test_the_abstraction_simulates_every_reachable_step_of_a_variant(variant: str) -> None:
    report = cross_check(encoding(variant))
    assert report.mismatches == () and report.states > 6_000


class NoTombstoneInZ3(SagaAtomicityEncoding):
    """Models an undo that overtakes its step as leaving no record."""

    def tombstone(self) -> str:
        return "idle"


class CrashForgetsTheLog(SagaAtomicityEncoding):
    """Lets a crash wipe the saga log back to a new saga."""

    def transition(self, action: Any, s: SymState) -> Transition:
        step = super().transition(action, s)
        if isinstance(action, Crash):
            return Transition(step.guard, {**step.updates, "phase": "new", "asked": 0, "todo": ()})
        return step


class CancelOnlyBeforeTheEnd(SagaAtomicityEncoding):
    """Lets the initiator cancel only before the saga finished compensated."""

    def transition(self, action: Any, s: SymState) -> Transition:
        step = super().transition(action, s)
        if isinstance(action, CancelSaga):
            return Transition(z3.And(step.guard, z3.Not(self.compensated_end(s))), step.updates)
        return step


NOT_SIMULATED = "spec step the abstraction does not simulate"


@pytest.mark.parametrize(
    ("altered", "style", "action"),
    [
        (NoTombstoneInZ3, ORCHESTRATION, StepCancelled),
        (CrashForgetsTheLog, ORCHESTRATION, OrchestratorCrash),
        (CancelOnlyBeforeTheEnd, CHOREOGRAPHY, CancelSaga),
    ],
)
def test_an_altered_abstraction_fails_the_cross_check(
    altered: type[SagaAtomicityEncoding], style: str, action: type
) -> None:
    enc = altered(Saga(Config(style=style, steps=2)))
    report = cross_check(enc, first_states(enc.saga, 400), max_mismatches=1)
    [mismatch] = report.mismatches
    assert mismatch.kind == NOT_SIMULATED
    assert isinstance(mismatch.action, action)


def test_a_witness_has_the_abstraction_it_was_built_from() -> None:
    enc = encoding(None, steps=2)
    for state in reachable_states(enc.spec)[::17]:
        values = enc.values(state)
        assert enc.values(enc.state(values)) == values


# ------------------------------------------------------------- broken variants


def replay(spec: Saga, actions: Sequence[Any]) -> list[SagaState]:
    """The states of a path of the spec, each step enabled."""
    states = [next(iter(spec.init_states()))]
    for action in actions:
        nxt = spec.next_state(states[-1], action)
        assert nxt is not None, action
        states.append(nxt)
    return states


TIMEOUT = [Start(), Ask("p1"), StepCommitted("p1"), Compensate("p1", "timeout")]
# The orchestrator gives up on p1's compensation after a "try again".
GIVE_UP_PATH = [*TIMEOUT, UndoFailed("p1"), Finish("compensated")]
# It crashes while compensating and, recovering, logs the saga compensated.
FORGET_PATH = [*TIMEOUT, OrchestratorCrash(), Recover()]
# An undo overtakes its command; p1 answers it without a tombstone.
NO_TOMBSTONE_PATH = [Start(), Ask("p1"), Compensate("p1", "timeout"), StepCancelled("p1")]
# The cancel reaches p1 before the request; p1 answers it without a tombstone.
REACT_PATH = [CancelSaga(), StepCancelled("p1")]


@pytest.mark.parametrize(
    ("variant", "style", "step", "path", "breaks", "then"),
    [
        ("give_up_compensation", ORCHESTRATION, Finish, GIVE_UP_PATH, {"UndoneAreSettled"}, []),
        ("forget_compensation_on_crash", ORCHESTRATION, Recover, FORGET_PATH, {"UndoneAreSettled"}, []),
        (
            "no_tombstone",
            ORCHESTRATION,
            StepCancelled,
            NO_TOMBSTONE_PATH,
            {"AnswersMatchRecords"},
            [Compensated("p1"), Finish("compensated"), StepCommitted("p1")],
        ),
        (
            "react_before_commit",
            CHOREOGRAPHY,
            StepCancelled,
            REACT_PATH,
            {"AnswersMatchRecords"},
            [StepCommitted("p1")],
        ),
    ],
)
def test_a_broken_variant_fails_consecution_at_the_step_that_breaks_it(
    variant: str, style: str, step: type, path: list[Any], breaks: set[str], then: list[Any]
) -> None:
    enc = encoding(variant, style=style, steps=2)
    outcomes = prove(enc)
    assert results(outcomes) == {"Initiation": PROVED, "Consecution": FAILED, "Safety(SemanticAtomicity)": PROVED}
    cex = outcomes["Consecution"].counterexample
    assert cex is not None and "counterexample to induction" in cex.text
    assert isinstance(cex.values["action"], step)
    assert set(cex.data["failing"]) == breaks

    # The spec itself takes such a step from a reachable state where every conjunct
    # of AtomicityInv held, it breaks the same conjuncts, and SemanticAtomicity
    # fails in the spec (at once, or a few steps later).
    s = enc.symbolic()
    conjuncts = {c.name: Evaluator(c.formula(s), s) for c in enc.candidate(None).conjuncts}
    states = replay(enc.saga, path)
    before, after = enc.values(states[-2]), enc.values(states[-1])
    assert all(holds.holds(before) for holds in conjuncts.values())
    assert {name for name, holds in conjuncts.items() if not holds.holds(after)} == breaks
    assert [type(a) for a in enc.simulate(states[-2], path[-1], states[-1])] == [step]
    final = replay(enc.saga, [*path, *then])[-1]
    atomicity = next(inv for inv in enc.saga.invariants() if inv.name == "SemanticAtomicity")
    assert not atomicity.holds(final)


def test_the_tombstone_is_what_no_tombstone_misses() -> None:
    reference = replay(Saga(Config()), NO_TOMBSTONE_PATH)[-1]
    assert reference.status["p1"] == CANCELLED
    assert replay(Saga(Config()), [*NO_TOMBSTONE_PATH, Compensated("p1")])[-1].status["p1"] == CANCELLED
    assert Saga(Config()).next_state(reference, StepCommitted("p1")) is None


@pytest.mark.parametrize(
    ("variant", "style"),
    [
        ("compensate_forward_order", ORCHESTRATION),
        ("non_idempotent_participant", ORCHESTRATION),
        ("no_compensation_retry", ORCHESTRATION),
        ("blind_compensation", ORCHESTRATION),
        ("blind_compensation", CHOREOGRAPHY),
        ("non_idempotent_participant", CHOREOGRAPHY),
    ],
)
def test_the_variants_that_keep_atomicity_are_proved(variant: str, style: str) -> None:
    # They break ReverseOrder, AtMostOnce, SagaFinishes and
    # NothingCompensatedThatDidNotCommit, which this proof is not about.
    assert set(results(prove(encoding(variant, style=style))).values()) == {PROVED}


# ------------------------------------------------------------------------- CLI


def test_prove_saga_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prove", "saga", "-p", "steps=2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["spec"] == "saga" and report["invariant"] == "AtomicityInv" and report["verdict"] == "ok"
    assert [o["name"] for o in report["obligations"]] == ["CrossCheck", *OBLIGATIONS]
    assert all(o["verdict"] == "proved" for o in report["obligations"])
    assert "1,786 reachable states" in report["obligations"][0]["detail"]
    assert "simulates" in report["obligations"][0]["statement"]


def test_prove_saga_give_up_compensation_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prove", "saga", "--variant", "give_up_compensation", "-p", "steps=2", "--no-cross-check"])
    out = capsys.readouterr().out
    assert code == 1
    assert "Consecution               failed" in out
    assert "step: orchestrator  Finish(compensated)" in out and "UndoneAreSettled" in out
