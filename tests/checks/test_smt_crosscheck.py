"""The cross-check between a z3 encoding and its executable spec: it passes on the
real encodings (variants included) and fails, naming the disagreement, on every
deliberately altered copy of an encoding and on a spec changed under an encoding."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import pytest
import z3

from distcheck.checks.proofs.crosscheck import cross_check, reachable_states
from distcheck.checks.proofs.obligations import FAILED, PROVED, discharge
from distcheck.checks.proofs.registry import PROVABLE, SpecProof
from distcheck.checks.proofs.system import Encoding, Evaluator, Field, Predicate, SymState, Transition, free_variables
from distcheck.checks.proofs.twophase import TwoPhaseEncoding, rm_state
from distcheck.spec.twophase import (
    COMMITTED,
    Config,
    RMRcvAbortMsg,
    TMAbort,
    TMCommit,
    TPAction,
    TPState,
    TwoPhase,
)


@pytest.mark.parametrize("variant", [None, *sorted(TwoPhase.variants())])
@pytest.mark.parametrize("rms", [1, 2, 3])
def test_twophase_encoding_agrees_with_the_spec(rms: int, variant: str | None) -> None:
    spec = TwoPhase(Config(rms=rms, variant=variant))
    report = cross_check(TwoPhaseEncoding(spec))
    assert report.mismatches == ()
    # Every reachable state and every step was compared, none skipped.
    assert report.states == len(reachable_states(spec))
    assert report.steps == sum(len(list(spec.successors(s))) for s in reachable_states(spec))


ENCODED = [name for name, t in PROVABLE.items() if isinstance(t, SpecProof)]


def test_some_spec_has_a_z3_encoding() -> None:
    assert ENCODED


@pytest.mark.parametrize("name", ENCODED)
def test_every_registered_encoding_agrees_with_its_spec_at_default_size(name: str) -> None:
    target = PROVABLE[name]
    assert isinstance(target, SpecProof)
    outcome = discharge(target.plan([]).obligations[0])
    assert outcome.name == "CrossCheck"
    assert outcome.verdict == PROVED, f"{target.name}: {outcome.counterexample}"


# ------------------------------------------------------- altered copies of TwoPhase


class CommitWithoutWaiting(TwoPhaseEncoding):
    """The TM's commit guard forgets "every RM recorded as prepared"."""

    def transition(self, action: TPAction, s: SymState) -> Transition:
        if isinstance(action, TMCommit):
            return Transition(s.is_("tm_state", "init"), {"tm_state": "done", "sent_commit": True})
        return super().transition(action, s)


class AbortMessageCommits(TwoPhaseEncoding):
    """Receiving Abort sets the RM to committed."""

    def transition(self, action: TPAction, s: SymState) -> Transition:
        if isinstance(action, RMRcvAbortMsg):
            return Transition(s["sent_abort"], {rm_state(action.rm): COMMITTED})
        return super().transition(action, s)


class AbortForgetsToSend(TwoPhaseEncoding):
    """TMAbort decides but does not put Abort in the message set."""

    def transition(self, action: TPAction, s: SymState) -> Transition:
        if isinstance(action, TMAbort):
            return Transition(s.is_("tm_state", "init"), {"tm_state": "done"})
        return super().transition(action, s)


class CommitOverflows(TwoPhaseEncoding):
    """TMCommit computes tm_state as a z3 term that leaves the field's domain."""

    def transition(self, action: TPAction, s: SymState) -> Transition:
        step = super().transition(action, s)
        if isinstance(action, TMCommit):
            return Transition(step.guard, {**step.updates, "tm_state": s["tm_state"] + 2})
        return step


class NoTMAbort(TwoPhaseEncoding):
    """The encoding does not list TMAbort at all."""

    def actions(self) -> Sequence[TPAction]:
        return [a for a in super().actions() if not isinstance(a, TMAbort)]


class StartsDecided(TwoPhaseEncoding):
    """Init allows the TM to start either undecided or done."""

    def init(self, s: SymState) -> z3.BoolRef:
        working = [s.is_(rm_state(rm), "working") for rm in self.rms]
        nothing = [z3.Not(s[n]) for n in ("sent_commit", "sent_abort")]
        return z3.And(*working, *nothing, *[z3.Not(s[f"tm_prepared[{r}]"]) for r in self.rms])


class WrongSafety(TwoPhaseEncoding):
    """TCConsistent stated as "no RM has aborted"."""

    def properties(self) -> Sequence[Predicate]:
        return (
            Predicate(
                "TCConsistent",
                "no RM has aborted",
                lambda s: z3.And(*[z3.Not(s.is_(rm_state(rm), "aborted")) for rm in self.rms]),
            ),
        )


class LosesTMRecord(TwoPhaseEncoding):
    """The state mapping drops the TM's record of prepared RMs."""

    def values(self, state: TPState) -> Mapping[str, Hashable]:
        out = dict(super().values(state))
        for rm in self.rms:
            out[f"tm_prepared[{rm}]"] = False
        return out


@pytest.mark.parametrize(
    ("altered", "kind"),
    [
        (CommitWithoutWaiting, "z3 enables an action the spec does not"),
        (AbortMessageCommits, "spec step outside the z3 relation"),
        (AbortForgetsToSend, "spec step outside the z3 relation"),
        (CommitOverflows, "spec step outside the z3 relation"),
        (NoTMAbort, "unknown action"),
        (StartsDecided, "init"),
        (WrongSafety, "property"),
        (LosesTMRecord, "values"),
    ],
)
def test_an_altered_encoding_fails_the_cross_check(altered: type[TwoPhaseEncoding], kind: str) -> None:
    spec = TwoPhase(Config(rms=2))
    assert cross_check(TwoPhaseEncoding(spec)).ok  # the unaltered encoding passes
    report = cross_check(altered(spec))
    assert not report.ok
    assert report.mismatches[0].kind == kind
    verdict = report.verdict()
    assert verdict.verdict == FAILED and verdict.counterexample is not None
    assert kind in verdict.counterexample.text


def test_a_spec_changed_under_its_encoding_fails_the_cross_check() -> None:
    # The spec's TM now commits early; the encoding still waits for every RM.
    spec = TwoPhase(Config(rms=2, variant="commit_early"))
    stale = TwoPhaseEncoding(spec)
    stale.variant = None
    report = cross_check(stale)
    assert [m.kind for m in report.mismatches][:1] == ["spec step outside the z3 relation"]
    first = report.mismatches[0]
    assert isinstance(first.action, TMCommit)
    assert isinstance(first.state, TPState) and first.state.tm_prepared != frozenset(spec.rms)


def test_the_altered_encoding_would_also_change_the_proof() -> None:
    # Why the cross-check matters: with the commit guard weakened, the proof of the
    # correct spec's encoding fails although the spec itself is correct.
    from distcheck.checks.proofs.induction import obligations

    encoding = CommitWithoutWaiting(TwoPhase(Config(rms=2)))
    outcomes = {o.name: discharge(o).verdict for o in obligations(encoding, encoding.candidate(None))}
    assert outcomes["Consecution"] == FAILED


def test_a_step_leaving_a_field_domain_breaks_consecution() -> None:
    # Inv′ includes the field domains, so the proof cannot pass on a step whose
    # successor is not a state of the bounded instance; the cross-check says so too.
    from distcheck.checks.proofs.induction import obligations

    encoding = CommitOverflows(TwoPhase(Config(rms=2)))
    outcome = discharge(obligations(encoding, encoding.candidate(None))[1])
    assert outcome.name == "Consecution" and outcome.verdict == FAILED
    assert outcome.counterexample is not None
    assert outcome.counterexample.data["failing"][0] == "FieldDomains"
    assert outcome.counterexample.values["next_state"] is None
    assert isinstance(outcome.counterexample.values["action"], TMCommit)
    assert "outside its domain" in outcome.counterexample.text
    assert "outside its domain" in cross_check(encoding).mismatches[0].detail


# ------------------------------------------------------------------- framework


def test_evaluator_uses_only_the_fields_a_formula_reads() -> None:
    s = SymState([Field("a"), Field("b"), Field("c", ("x", "y", "z"))])
    formula = z3.And(s["a"], s.is_("c", "z"))
    assert {str(v) for v in free_variables(formula)} == {"a", "c"}
    evaluate = Evaluator(formula, s)
    assert evaluate.holds({"a": True, "b": False, "c": "z"}) is True
    assert evaluate.holds({"a": True, "b": True, "c": "y"}) is False
    # b is not an input, so the two states with a=True, c=z share one memo entry.
    evaluate.holds({"a": True, "b": True, "c": "z"})
    assert len(evaluate.memo) == 2
    update = Evaluator(z3.If(s["a"], s.term("c", "x"), s["c"]), s, "c")
    assert update({"a": True, "b": False, "c": "z"}) == "x"
    assert update({"a": False, "b": False, "c": "y"}) == "y"


def test_field_values_outside_the_domain_are_rejected() -> None:
    field = Field("tm_state", ("init", "done"))
    assert field.index("done") == 1
    with pytest.raises(ValueError, match="not one of 'init', 'done'"):
        field.index("aborted")
    # True is not 1: a Bool value in an Int field is a mistake, not index 1.
    with pytest.raises(ValueError):
        Field("n", (0, 1)).index(True)


def test_relation_adds_the_frame_condition() -> None:
    encoding = TwoPhaseEncoding(TwoPhase(Config(rms=2)))
    s, t = encoding.symbolic(), encoding.symbolic("′")
    solver = z3.Solver()
    # TMCommit from a state where it is enabled: every field but tm_state and
    # sent_commit must keep its value, so changing r1's state is impossible.
    solver.add(s.typed(), encoding.relation(TMCommit(), s, t), s.is_(rm_state("r1"), "prepared"))
    solver.add(z3.Not(t.is_(rm_state("r1"), "prepared")))
    assert solver.check() == z3.unsat


class _UnknownField(TwoPhaseEncoding):
    def transition(self, action: TPAction, s: SymState) -> Transition:
        return Transition(z3.BoolVal(True), {"no_such_field": True})


def test_an_update_of_an_unknown_field_is_refused() -> None:
    encoding: Encoding[TPState, TPAction] = _UnknownField(TwoPhase(Config(rms=1)))
    with pytest.raises(ValueError, match="unknown field"):
        encoding.relation(TMCommit(), encoding.symbolic(), encoding.symbolic("′"))
