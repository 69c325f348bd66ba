"""Sagas: safe and live at several sizes in both styles, the variants' counterexamples
pinned as action lists, and each rule's guard and effect on hand-built states."""

from __future__ import annotations

import attrs
import pytest

from distcheck.checks.search.explore import explore
from distcheck.spec.network import MessageSet
from distcheck.spec.saga import (
    CANCEL,
    CANCELLED,
    CHOREOGRAPHY,
    COMMIT,
    COMMITTED,
    COMPENSATE,
    COMPENSATED,
    IDLE,
    REFUSED,
    AnswerFromRecord,
    Ask,
    Begin,
    Cancel,
    CancelSaga,
    Compensate,
    Compensated,
    Config,
    Do,
    Done,
    Effect,
    Failed,
    Finish,
    Lose,
    OrchestratorCrash,
    Recover,
    Resend,
    Saga,
    SagaAction,
    SagaLog,
    SagaState,
    Start,
    StepCancelled,
    StepCommitted,
    StepCompensated,
    StepRefused,
    TryAgain,
    Undo,
    UndoFailed,
    Undone,
    at_most_once,
    no_step_after_undo,
    nothing_compensated_that_did_not_commit,
    reverse_order,
)
from distcheck.spec.values import FrozenMap
from tests.spec.steps import broken, replay

ORCH = Saga(Config())
CHOR = Saga(Config(style=CHOREOGRAPHY))
STARTED = [Start(), Ask("p1"), StepCommitted("p1")]  # step 1 committed, its "done" in flight
TIMED_OUT = [Start(), Ask("p1"), Compensate("p1", "timeout")]  # step 1 given up on, its undo sent


@pytest.mark.parametrize(
    "config",
    [
        Config(steps=1),
        Config(steps=2, losses=2, crashes=2),
        Config(losses=0, crashes=0),
        Config(style=CHOREOGRAPHY, steps=1),
        Config(style=CHOREOGRAPHY),
        Config(style=CHOREOGRAPHY, steps=5),
    ],
    ids=["orch-one-step", "orch-two-steps-more-faults", "orch-no-faults", "chor-one-step", "chor", "chor-five-steps"],
)
def test_saga_is_safe_and_every_saga_finishes(config: Config) -> None:
    spec = Saga(config)
    result = explore(spec)
    assert result.verdict == "ok", result.violation
    assert set(result.reached) == {p.name for p in spec.reachable()}


# ------------------------------------------------------------------ orchestration


def test_a_saga_runs_its_steps_in_order_and_completes() -> None:
    plan: list[SagaAction] = [Start()]
    for p in ("p1", "p2", "p3"):
        plan += [Ask(p), StepCommitted(p)]
    state = replay(ORCH, [*plan, Finish("completed")])
    assert state.log == SagaLog("completed", 3, ()) and ORCH.completed(state) and ORCH.finished(state)
    assert state.history == tuple(Effect(COMMIT, p) for p in ("p1", "p2", "p3")) and not broken(ORCH, state)


def test_a_refusal_at_the_last_step_compensates_the_others_in_reverse_order() -> None:
    plan = [Start(), Ask("p1"), StepCommitted("p1"), Ask("p2"), StepCommitted("p2"), Ask("p3"), StepRefused("p3")]
    plan += [Compensate("p3", "refused"), StepCompensated("p2"), Compensated("p2"), StepCompensated("p1")]
    plan += [Compensated("p1"), Finish("compensated")]
    state = replay(ORCH, plan)
    assert state.status == FrozenMap({"p1": COMPENSATED, "p2": COMPENSATED, "p3": REFUSED})
    assert [str(e) for e in state.history] == ["commit p1", "commit p2", "compensate p2", "compensate p1"]
    assert ORCH.compensated_end(state) and not broken(ORCH, state)


def test_an_undo_that_overtakes_its_step_leaves_a_tombstone_and_the_late_step_is_refused() -> None:
    state = replay(ORCH, [*TIMED_OUT, StepCancelled("p1")])
    assert state.status["p1"] == CANCELLED and Undone("p1") in state.msgs
    assert ORCH.next_state(state, StepCommitted("p1")) is None  # the tombstone refuses the late command
    assert ORCH.next_state(state, StepRefused("p1")) is None  # ... from the record, not as a business failure
    late = replay(ORCH, [*TIMED_OUT, StepCancelled("p1"), AnswerFromRecord("p1", "do")])
    assert Failed("p1") in late.msgs and late.history == (Effect(CANCEL, "p1"),)
    done = replay(ORCH, [*TIMED_OUT, StepCancelled("p1"), Compensated("p1"), Finish("compensated")])
    assert ORCH.compensated_end(done) and not broken(ORCH, done)


def test_a_step_that_commits_after_its_timeout_is_compensated() -> None:
    plan = [*TIMED_OUT, StepCommitted("p1"), StepCompensated("p1"), Compensated("p1"), Finish("compensated")]
    state = replay(ORCH, plan)
    assert [str(e) for e in state.history] == ["commit p1", "compensate p1"] and not broken(ORCH, state)


def test_a_transient_compensation_failure_is_retried_until_it_takes_effect() -> None:
    plan = [*STARTED, Compensate("p1", "timeout"), UndoFailed("p1")]
    state = replay(ORCH, plan)
    assert TryAgain("p1") in state.msgs and state.status["p1"] == COMMITTED
    assert ORCH.next_state(state, Finish("compensated")) is None  # the undo is still to do
    state = replay(ORCH, [*plan, UndoFailed("p1"), StepCompensated("p1"), Compensated("p1")])
    assert state.log.todo == () and state.history == (Effect(COMMIT, "p1"), Effect(COMPENSATE, "p1"))


def test_a_lost_command_is_sent_again_and_a_copy_is_answered_from_the_record() -> None:
    lost = replay(ORCH, [Start(), Ask("p1"), Lose(Do("p1"))])
    assert Do("p1") not in lost.msgs and lost.lost == 1
    assert ORCH.next_state(lost, Lose(Do("p1"))) is None  # nothing left to lose
    again = replay(ORCH, [Start(), Ask("p1"), Lose(Do("p1")), Resend("p1")])
    assert Do("p1") in again.msgs
    assert ORCH.next_state(replay(ORCH, [Start(), Ask("p1")]), Resend("p1")) is None  # a copy is in flight
    answered = replay(ORCH, [*STARTED, Lose(Done("p1")), AnswerFromRecord("p1", "do"), Ask("p2")])
    assert answered.history == (Effect(COMMIT, "p1"),)  # the copy took no effect


def test_a_crashed_orchestrator_resumes_the_saga_from_its_log() -> None:
    crashed = replay(ORCH, [*STARTED, OrchestratorCrash()])
    assert not crashed.driving and crashed.log == SagaLog("running", 1, ())
    assert ORCH.next_state(crashed, Ask("p2")) is None  # nobody drives the saga
    assert ORCH.next_state(crashed, StepCommitted("p1")) is None  # the participants go on; p1 is done
    resumed = replay(ORCH, [*STARTED, OrchestratorCrash(), Recover(), Ask("p2")])
    assert resumed.driving and resumed.log.asked == 2
    assert ORCH.next_state(resumed, OrchestratorCrash()) is None  # crashes=1
    undoing = replay(ORCH, [*TIMED_OUT, Lose(Undo("p1")), OrchestratorCrash(), Recover()])
    assert Undo("p1") in undoing.msgs  # recovery sends the command in progress again


# ------------------------------------------------------------------ choreography


def test_choreography_runs_the_chain_on_events_and_completes() -> None:
    state = replay(CHOR, [StepCommitted("p1"), StepCommitted("p2"), StepCommitted("p3")])
    assert CHOR.completed(state) and not broken(CHOR, state)
    # The initiator may not have heard the last step's Done yet: a cancel now undoes it all.
    cancelled = replay(CHOR, [StepCommitted("p1"), StepCommitted("p2"), StepCommitted("p3"), CancelSaga()])
    assert not CHOR.completed(cancelled) and not CHOR.finished(cancelled)
    undone = replay(
        CHOR,
        [
            StepCommitted("p1"),
            StepCommitted("p2"),
            StepCommitted("p3"),
            CancelSaga(),
            StepCompensated("p3"),
            StepCompensated("p2"),
            StepCompensated("p1"),
        ],
    )
    assert CHOR.compensated_end(undone) and not broken(CHOR, undone)
    assert CHOR.next_state(undone, CancelSaga()) is None  # once: the cancel is out


def test_choreography_compensates_back_down_the_chain_after_a_refusal() -> None:
    plan = [StepCommitted("p1"), StepCommitted("p2"), StepRefused("p3"), StepCompensated("p2"), StepCompensated("p1")]
    state = replay(CHOR, plan)
    assert CHOR.compensated_end(state) and not broken(CHOR, state)
    early = replay(CHOR, [StepCommitted("p1"), StepCommitted("p2"), StepRefused("p3")])
    assert CHOR.next_state(early, StepCompensated("p1")) is None  # p2 is not undone yet


def test_a_cancel_that_reaches_a_participant_before_its_start_leaves_a_tombstone() -> None:
    state = replay(CHOR, [StepCommitted("p1"), CancelSaga(), StepCancelled("p2")])
    assert state.status["p2"] == CANCELLED and Done("p1") in state.msgs  # the start event is there, too late
    assert CHOR.next_state(state, StepCommitted("p2")) is None
    assert CHOR.next_state(state, AnswerFromRecord("p2", "do")) is None  # published once: nothing to add
    done = replay(CHOR, [StepCommitted("p1"), CancelSaga(), StepCancelled("p2"), StepCompensated("p1")])
    assert CHOR.compensated_end(done) and not broken(CHOR, done)


def test_after_a_cancel_a_committed_participant_waits_for_the_step_after_it() -> None:
    state = replay(CHOR, [StepCommitted("p1"), CancelSaga()])
    assert CHOR.next_state(state, StepCompensated("p1")) is None  # p2 may still commit
    last = replay(CHOR, [StepCommitted("p1"), StepCommitted("p2"), StepCommitted("p3"), CancelSaga()])
    assert CHOR.next_state(last, StepCompensated("p2")) is None  # p3 first
    assert CHOR.next_state(last, StepCompensated("p3")) is not None
    late = replay(CHOR, [StepCommitted("p1"), StepCommitted("p2"), CancelSaga(), StepCommitted("p3")])
    assert not CHOR.completed(late)  # the cancel came first: the last step is undone
    plan = [StepCommitted("p1"), StepCommitted("p2"), CancelSaga(), StepCommitted("p3")]
    plan += [StepCompensated("p3"), StepCompensated("p2"), StepCompensated("p1")]
    assert not broken(CHOR, replay(CHOR, plan))


def test_a_transient_failure_in_choreography_changes_nothing() -> None:
    plan = [StepCommitted("p1"), StepCommitted("p2"), StepRefused("p3")]
    state = replay(CHOR, plan)
    assert CHOR.next_state(state, UndoFailed("p2")) == state  # the event comes again: try again
    assert TryAgain("p2") not in state.msgs


# ------------------------------------------------------------------ the variants


def test_compensating_forward_undoes_the_first_step_while_the_second_is_in_effect() -> None:
    spec = Saga(Config(variant="compensate_forward_order"))
    plan = [*STARTED, Ask("p2"), StepCommitted("p2"), Compensate("p2", "timeout"), StepCompensated("p1")]
    state = replay(spec, plan)
    assert state.log.todo == (1, 2) and broken(spec, state) == ["ReverseOrder"]


def test_forgetting_a_compensation_on_recovery_ends_the_saga_half_undone() -> None:
    spec = Saga(Config(variant="forget_compensation_on_crash"))
    state = replay(spec, [*STARTED, Compensate("p1", "timeout"), OrchestratorCrash(), Recover()])
    assert state.log.phase == "compensated" and state.status["p1"] == COMMITTED
    assert broken(spec, state) == ["SemanticAtomicity"]


def test_a_non_idempotent_participant_runs_a_redelivered_command_twice() -> None:
    spec = Saga(Config(variant="non_idempotent_participant"))
    state = replay(spec, [*STARTED, StepCommitted("p1")])
    assert state.history == (Effect(COMMIT, "p1"),) * 2 and broken(spec, state) == ["AtMostOnce"]


def test_giving_up_a_compensation_ends_the_saga_with_the_step_in_effect() -> None:
    spec = Saga(Config(variant="give_up_compensation"))
    state = replay(spec, [*STARTED, Compensate("p1", "timeout"), UndoFailed("p1"), Finish("compensated")])
    assert broken(spec, state) == ["SemanticAtomicity"]


def test_an_undo_sent_once_and_lost_leaves_the_saga_compensating_for_ever() -> None:
    spec = Saga(Config(steps=1, variant="no_compensation_retry"))
    plan = [*TIMED_OUT, OrchestratorCrash(), Recover(), Lose(Undo("p1")), StepCommitted("p1")]
    state = replay(spec, plan)
    assert spec.successors(state) == [] and not spec.finished(state) and not broken(spec, state)
    assert ORCH.next_state(replay(ORCH, plan), Resend("p1")) is not None  # the reference sends it again
    result = explore(spec)
    assert result.violation is not None and (result.violation.kind, result.violation.name) == (
        "liveness",
        "SagaFinishes",
    )


def test_without_a_tombstone_the_late_step_commits_after_its_undo() -> None:
    spec = Saga(Config(variant="no_tombstone"))
    state = replay(spec, [*TIMED_OUT, StepCancelled("p1"), StepCommitted("p1")])
    assert broken(spec, state) == ["NoStepAfterUndo"]
    done = replay(spec, [*TIMED_OUT, StepCancelled("p1"), StepCommitted("p1"), Compensated("p1")])
    assert broken(spec, replay(spec, [*TIMED_OUT, StepCancelled("p1"), Compensated("p1"), Finish("compensated")])) == []
    assert "SemanticAtomicity" not in broken(spec, done)  # not finished yet: the end would break it too


def test_a_blind_compensation_undoes_a_step_that_never_ran() -> None:
    spec = Saga(Config(variant="blind_compensation"))
    state = replay(spec, [*TIMED_OUT, StepCompensated("p1")])
    assert broken(spec, state) == ["NothingCompensatedThatDidNotCommit"]


def test_reacting_to_a_cancel_before_the_start_commits_a_step_of_a_compensated_saga() -> None:
    spec = Saga(Config(style=CHOREOGRAPHY, variant="react_before_commit"))
    state = replay(spec, [CancelSaga(), StepCancelled("p1")])
    assert spec.compensated_end(state) and state.status["p1"] == IDLE  # answered, not recorded
    state = replay(spec, [CancelSaga(), StepCancelled("p1"), StepCommitted("p1")])
    assert broken(spec, state) == ["SemanticAtomicity", "NoStepAfterUndo"]


# ------------------------------------------------------------------ rules and invariants

INIT = next(iter(ORCH.init_states()))


def test_the_orchestrator_asks_only_after_the_previous_step_answered_done() -> None:
    assert ORCH.next_state(INIT, Ask("p1")) is None  # not started
    started = replay(ORCH, [Start(), Ask("p1")])
    assert ORCH.next_state(started, Ask("p2")) is None  # p1 has not answered
    assert ORCH.next_state(started, Compensate("p1", "refused")) is None  # nor refused
    assert ORCH.next_state(started, Finish("completed")) is None
    assert ORCH.next_state(replay(ORCH, STARTED), Ask("p3")) is None  # in order


def test_a_refusal_at_the_first_step_has_nothing_to_undo() -> None:
    state = replay(ORCH, [Start(), Ask("p1"), StepRefused("p1"), Compensate("p1", "refused")])
    assert state.log == SagaLog("compensating", 1, ()) and Undo("p1") not in state.msgs
    assert ORCH.next_state(state, Finish("compensated")) is not None


def test_participants_answer_undos_by_their_record() -> None:
    refused = replay(ORCH, [Start(), Ask("p1"), StepRefused("p1"), Compensate("p1", "timeout")])
    assert ORCH.next_state(refused, StepCancelled("p1")) is None  # the refusal is its record
    assert ORCH.next_state(refused, StepCompensated("p1")) is None
    answered = ORCH.next_state(refused, AnswerFromRecord("p1", "undo"))
    assert answered is not None and Undone("p1") in answered.msgs
    assert ORCH.next_state(replay(ORCH, STARTED), StepCompensated("p1")) is None  # no undo asked


def test_only_the_orchestrator_logs_are_unobserved_where_nobody_can_log() -> None:
    state = replay(ORCH, STARTED)
    assert ORCH.observe(state, Lose(Done("p1"))) is None
    assert ORCH.observe(state, OrchestratorCrash()) is None
    assert ORCH.observe(state, Ask("p2")) == {"action": {"type": "Ask", "p": "p2"}}  # the actor is not compared
    assert ORCH.observe(state, StepCommitted("p1")) == {"action": {"type": "StepCommitted", "p": "p1"}}


def test_invariants_on_hand_built_states() -> None:
    c1, c2, x1 = Effect(COMMIT, "p1"), Effect(COMMIT, "p2"), Effect(CANCEL, "p1")
    u1, u2 = Effect(COMPENSATE, "p1"), Effect(COMPENSATE, "p2")

    def with_history(*history: Effect) -> SagaState:
        return attrs.evolve(INIT, history=history)

    assert reverse_order(with_history(c1, c2, u2, u1))
    assert not reverse_order(with_history(c1, c2, u1, u2))
    assert nothing_compensated_that_did_not_commit(with_history(c1, u1))
    assert not nothing_compensated_that_did_not_commit(with_history(u1))
    assert at_most_once(with_history(c1, u1, x1))
    assert not at_most_once(with_history(c1, c1))
    assert no_step_after_undo(with_history(c1, u1))
    assert not no_step_after_undo(with_history(x1, c1))
    assert not no_step_after_undo(with_history(c1, u1, c1))
    done = attrs.evolve(INIT, log=SagaLog("compensated", 2, ()), history=(c1, c2, u2))
    assert not ORCH.semantic_atomicity(done)
    assert ORCH.semantic_atomicity(attrs.evolve(done, history=(c1, c2, u2, u1)))
    completed = attrs.evolve(INIT, log=SagaLog("completed", 3, ()), history=(c1, c2))
    assert not ORCH.semantic_atomicity(completed)
    bus = attrs.evolve(INIT, msgs=MessageSet([Begin(), Cancel(), Done("p3")]))
    assert not CHOR.completed(bus) and CHOR.completed(attrs.evolve(bus, msgs=MessageSet([Done("p3")])))
