"""Sagas (``spec/saga.py``) in z3: the inductive invariant that proves
SemanticAtomicity (a finished saga has every step committed, or every committed step
compensated), orchestrated and choreographed.

Where it sits: the one module in ``checks/`` that knows the saga spec's state; it
subclasses ``checks.proofs.system.Encoding`` and is registered in
``checks.proofs.registry``, so ``distcheck prove saga`` cross-checks it against the
executable spec and then discharges the obligations.

**An abstraction.**  The spec's ``history`` lists every outcome at the participants
in the order it happened, and SemanticAtomicity reads only two things of it: which
steps are in effect (committed and not compensated since) and whether any
compensation took effect.  So for steps p1..pN the encoding keeps

- ``status[p]``, each participant's record (idle, committed, refused,
  compensated, cancelled);
- ``in_effect[p]``: p's step is in effect, by the history; ``compensation[p]``:
  a compensation of p's step took effect;
- the messages, one boolean each (the spec's network is a message set already):
  orchestration ``Do``, ``Undo``, ``Done``, ``Failed``, ``Undone``, ``TryAgain``
  per step; choreography ``Begin``, ``Cancel`` and ``Done``, ``Failed``,
  ``Undone`` per step;
- orchestration only: the saga log (``phase``, ``asked``, ``todo``, the tuple of
  steps still to undo, whose values are the suffixes of the spec's plans) and
  ``driving``.

It forgets the history's order and repetitions and the fault budgets ``lost`` and
``crashed``.  Its steps are the spec's (the same guards and effects, on these
fields) and two of its own: ``Crash`` (the orchestrator crashes while driving an
unfinished saga, whatever the budget) and ``MessageLost(msg)`` (any message is
lost, whatever the budget).  Every spec step is matched by one of these
(``simulate``): the abstraction over-approximates the spec, so an invariant
inductive for it holds, through the abstraction, in every reachable spec state,
and the proof covers every ``losses`` and ``crashes`` at once (the abstract
instance depends on ``steps`` and ``style`` only).  The cross-check checks the
simulation on every reachable state of the instance.

**The inductive invariant AtomicityInv, orchestrated**, for every step i:

- **HistoryInRecords**: i is in effect iff its record says committed, and a
  compensation of i took effect iff its record says compensated;
- **AnswersMatchRecords**: an answer on the network agrees with i's record:
  ``Done`` ⇒ committed or compensated, ``Failed`` ⇒ refused or cancelled,
  ``Undone`` ⇒ refused, compensated or cancelled, ``TryAgain`` ⇒ committed or
  compensated (the proof does not need this last clause: it makes
  ``give_up_compensation``'s counterexample give up on a committed step);
- **NothingBeyondAsked**: a step after the last one asked has no record and no
  command on the network;
- **LogShape**: a saga not started has asked nothing; while compensating, the
  steps still to undo are steps asked;
- **NoUndoBeforeCompensating**: until the saga decides to compensate (new,
  running, completed) no undo is on the network and no record says compensated or
  cancelled;
- **RunningOnCommitted**: while running, every step before the last asked is
  committed; a completed saga has every step committed;
- **UndoneAreSettled**: while compensating, every step asked that is no longer to
  undo is settled (refused, compensated or cancelled: records that never change
  again); in a saga finished compensated, every step asked is.

Why it is inductive: the orchestrator asks step i+1 only on ``Done(pi)``, which
(AnswersMatchRecords, NoUndoBeforeCompensating) means pi is committed; it logs the
steps to undo before it sends the first undo, so an undo exists only while
compensating, for a step asked; it strikes a step off ``todo`` only on its
``Undone``, which means the step is settled; a settled record never changes (a
participant commits only from idle, and the tombstone makes an undo that overtook
its command leave ``cancelled``, not idle); it finishes compensated only with
nothing left to undo, and a crash changes nothing but ``driving``, recovery
resending the command its log says is in progress.  SemanticAtomicity follows:
completed means every step committed (RunningOnCommitted, HistoryInRecords);
compensated means every step asked is settled and every later one idle
(UndoneAreSettled, NothingBeyondAsked), so none is in effect.

**Choreographed** (the bus loses nothing, so events are evidence), for every step i:

- **HistoryInRecords** and **AnswersMatchRecords**, as above (events for answers);
- **CommittedPublished**: a committed step's ``Done`` is on the bus;
- **DoneInOrder**: ``Done(pi)`` is on the bus only if ``Done(pi-1)`` is;
- **CompensatedAfterNext**: a step that committed (its ``Done`` is out) and is
  compensated has its next step settled; the last step, only once the saga was
  cancelled.

Why it is inductive: step i+1 starts only on ``Done(pi)``; a committed pi
compensates only when the next step reports failed or undone (the last only on the
cancel), and a settled record never changes, so nothing commits above a step
compensated after it committed.  Completed (the last ``Done`` out, no cancel) then
means every step committed, by induction downwards along the ``Done`` events; a
saga finished compensated (``p1`` failed or undone) has no committed step, since a
committed step's ``Done`` chain reaches down to p1, whose record would then say
committed or compensated-with-its-next-step-settled, and so on upwards.

**Variants.**  All are encoded (an unknown variant is refused).
``give_up_compensation`` fails Consecution at ``Finish(compensated)`` and
``forget_compensation_on_crash`` at ``Recover`` (UndoneAreSettled: the saga ends
compensated with a step not settled); ``no_tombstone`` and, in choreography,
``react_before_commit`` fail at ``StepCancelled`` (AnswersMatchRecords: an
``Undone`` with no record behind it, so the late command commits after the saga
counted the step undone).  z3 picks the counterexample nearest the initial state,
which has lost the messages the path to it sent: at the spec's default budget (one
loss) it is usually not reachable, and the output then calls the candidate too
weak; the tests replay the spec to a reachable state where every conjunct holds and
take the same step, which breaks the same conjunct, and then SemanticAtomicity.
``compensate_forward_order``, ``non_idempotent_participant``,
``no_compensation_retry`` and ``blind_compensation`` are proved: they break
ReverseOrder, AtMostOnce, SagaFinishes and NothingCompensatedThatDidNotCommit,
which ``distcheck check`` catches, not SemanticAtomicity.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import attrs
import z3

from distcheck.checks.proofs.system import Candidate, Encoding, Field, Predicate, SymState, Transition
from distcheck.spec.contract import Action
from distcheck.spec.network import MessageSet
from distcheck.spec.saga import (
    CANCELLED,
    CAUSES,
    COMMANDS,
    COMMIT,
    COMMITTED,
    COMPENSATE,
    COMPENSATED,
    COMPENSATING,
    IDLE,
    NETWORK,
    NEW,
    ORCHESTRATOR,
    OUTCOMES,
    PHASES,
    RECORDS,
    REFUSED,
    RUNNING,
    AnswerFromRecord,
    Ask,
    Begin,
    Cancel,
    CancelSaga,
    Compensate,
    Compensated,
    Do,
    Done,
    Effect,
    Failed,
    Finish,
    Lose,
    Message,
    OrchestratorCrash,
    Recover,
    Resend,
    Saga,
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
    steps_in_effect,
)
from distcheck.spec.values import FrozenMap

ENCODED_VARIANTS = frozenset(
    {
        "compensate_forward_order",
        "forget_compensation_on_crash",
        "non_idempotent_participant",
        "give_up_compensation",
        "no_compensation_retry",
        "no_tombstone",
        "blind_compensation",
        "react_before_commit",
    }
)

#: The spec's actions that are steps of the abstraction as they are.
SPEC_STEPS = (
    Start,
    Ask,
    Compensate,
    Compensated,
    Finish,
    Resend,
    Recover,
    StepCommitted,
    StepRefused,
    StepCompensated,
    UndoFailed,
    StepCancelled,
    AnswerFromRecord,
    CancelSaga,
)

#: Records that never change again, in the reference spec.
SETTLED = (REFUSED, COMPENSATED, CANCELLED)


# ------------------------------------------------------------ the abstraction's own steps


@attrs.frozen
class Crash(Action):
    """The orchestrator crashes while driving an unfinished saga (any number of times)."""

    ACTOR = ORCHESTRATOR


@attrs.frozen
class MessageLost(Action):
    """The network loses a message (any number of them)."""

    ACTOR = NETWORK
    msg: Message


def status(p: str) -> str:
    return f"status[{p}]"


def in_effect(p: str) -> str:
    return f"in_effect[{p}]"


def compensation(p: str) -> str:
    return f"compensation[{p}]"


def sent(msg: Message) -> str:
    return f"sent[{msg}]"


Updates = dict[str, Hashable | z3.ExprRef]


class SagaAtomicityEncoding(Encoding[SagaState, Any]):
    abstraction = True

    def __init__(self, spec: Saga) -> None:
        super().__init__(spec)
        variant = spec.config.variant
        if variant is not None and variant not in ENCODED_VARIANTS:
            raise ValueError(f"variant {variant!r} has no z3 encoding; encoded: {', '.join(sorted(ENCODED_VARIANTS))}")
        self.saga = spec
        self.variant = variant
        self.orchestrated = spec.orchestrated
        self.ps = spec.participants
        self.n = spec.last
        self.messages: tuple[Message, ...] = (
            tuple(m for p in self.ps for m in (Do(p), Undo(p), Done(p), Failed(p), Undone(p), TryAgain(p)))
            if self.orchestrated
            else (Begin(), Cancel(), *(m for p in self.ps for m in (Done(p), Failed(p), Undone(p))))
        )
        self.message_fields = tuple((m, sent(m)) for m in self.messages)
        plans = {self.plan(k) for k in range(self.n + 1)}
        self.todos = tuple(
            sorted({plan[i:] for plan in plans for i in range(len(plan) + 1)}, key=lambda t: (len(t), t))
        )

    # ------------------------------------------------ the variants' participants and plan

    def p(self, i: int) -> str:
        return self.ps[i - 1]

    def plan(self, last: int) -> tuple[int, ...]:
        """The steps to undo when steps 1..last may have committed."""
        if self.variant == "compensate_forward_order":
            return tuple(range(1, last + 1))
        return tuple(range(last, 0, -1))

    def runs_step(self) -> tuple[str, ...]:
        """The records from which a participant runs its step."""
        return (IDLE, COMMITTED) if self.variant == "non_idempotent_participant" else (IDLE,)

    def compensates(self) -> tuple[str, ...]:
        """The records from which a participant runs its compensation."""
        return (IDLE, COMMITTED) if self.variant == "blind_compensation" else (COMMITTED,)

    def tombstone(self) -> str:
        """The record an undo leaves for a step that has not run."""
        return IDLE if self.variant in ("no_tombstone", "react_before_commit") else CANCELLED

    # ------------------------------------------------------------------ state

    def state_fields(self) -> Sequence[Field]:
        fields = [Field(status(p), RECORDS) for p in self.ps]
        fields += [Field(in_effect(p)) for p in self.ps]
        fields += [Field(compensation(p)) for p in self.ps]
        if self.orchestrated:
            fields += [
                Field("phase", PHASES),
                Field("asked", tuple(range(self.n + 1))),
                Field("todo", self.todos),
                Field("driving"),
            ]
        fields += [Field(sent(m)) for m in self.messages]
        return fields

    def values(self, state: SagaState) -> Mapping[str, Hashable]:
        effect = steps_in_effect(state.history)
        undone = {e.p for e in state.history if e.kind == COMPENSATE}
        out: dict[str, Hashable] = {}
        for p in self.ps:
            out[status(p)] = state.status[p]
            out[in_effect(p)] = p in effect
            out[compensation(p)] = p in undone
        if self.orchestrated:
            out |= {"phase": state.log.phase, "asked": state.log.asked, "todo": state.log.todo}
            out["driving"] = state.driving
        for m, name in self.message_fields:
            out[name] = m in state.msgs
        return out

    def state(self, values: Mapping[str, Hashable]) -> SagaState:
        """A spec state with the abstraction ``values``: a history that commits (and
        compensates) each step as the flags say, no fault budget spent."""
        history: list[Effect] = []
        for p in self.ps:
            if values[compensation(p)]:
                history += [Effect(COMMIT, p), Effect(COMPENSATE, p)]
            if values[in_effect(p)]:
                history.append(Effect(COMMIT, p))
        init = next(iter(self.saga.init_states()))
        log, driving = init.log, init.driving
        if self.orchestrated:
            todo = values["todo"]
            assert isinstance(todo, tuple)
            log = SagaLog(str(values["phase"]), int(values["asked"]), todo)  # type: ignore[call-overload]
            driving = bool(values["driving"])
        return SagaState(
            status=FrozenMap({p: str(values[status(p)]) for p in self.ps}),
            log=log,
            driving=driving,
            msgs=MessageSet(m for m, name in self.message_fields if values[name]),
            lost=0,
            crashed=0,
            history=tuple(history),
        )

    def init(self, s: SymState) -> z3.BoolRef:
        return s.equals(self.values(next(iter(self.saga.init_states()))))

    # ---------------------------------------------------------------- actions

    def actions(self) -> Sequence[Any]:
        participants: list[Any] = []
        for p in self.ps:
            participants += [StepCommitted(p), StepRefused(p), StepCompensated(p), UndoFailed(p), StepCancelled(p)]
            if self.orchestrated:
                participants += [AnswerFromRecord(p, command) for command in COMMANDS]
        if not self.orchestrated:
            return [CancelSaga(), *participants]
        out: list[Any] = [Start()]
        for p in self.ps:
            out += [Ask(p), *(Compensate(p, cause) for cause in CAUSES), Compensated(p)]
        out += [Finish(outcome) for outcome in OUTCOMES]
        out += [Resend(p) for p in self.ps]
        out += [Crash(), Recover(), *participants]
        out += [MessageLost(m) for m in self.messages]
        return out

    def transition(self, action: Any, s: SymState) -> Transition:
        def has(msg: Message) -> z3.BoolRef:
            return s[sent(msg)]

        def record(p: str, *records: str) -> z3.BoolRef:
            return s.is_in(status(p), records)

        phase = self.phase_is(s)
        match action:
            # ---------------------------------------------------------- orchestrator
            case Start():
                return Transition(phase(NEW), {"phase": RUNNING, "asked": 0, "todo": ()})
            case Ask(p):
                i = self.saga.index[p]
                guard = z3.And(s["driving"], phase(RUNNING), s.is_("asked", i - 1))
                if i > 1:
                    guard = z3.And(guard, has(Done(self.p(i - 1))))
                return Transition(guard, {"asked": i, "todo": (), sent(Do(p)): True})
            case Compensate(p, cause):
                i = self.saga.index[p]
                guard = z3.And(s["driving"], phase(RUNNING), s.is_("asked", i))
                if cause == "refused":
                    guard = z3.And(guard, has(Failed(p)))
                todo = self.plan(i - 1 if cause == "refused" else i)
                updates: Updates = {"phase": COMPENSATING, "todo": todo}
                if todo:
                    updates[sent(Undo(self.p(todo[0])))] = True
                return Transition(guard, updates)
            case Compensated(p):
                i = self.saga.index[p]
                heads = [t for t in self.todos if t[:1] == (i,)]
                guard = z3.And(s["driving"], phase(COMPENSATING), s.is_in("todo", heads), has(Undone(p)))
                updates = {"todo": self.case(s, "todo", [(t, s.term("todo", t[1:])) for t in heads])}
                for j in range(1, self.n + 1):
                    nexts = [t for t in heads if t[1:2] == (j,)]
                    if nexts:
                        updates[sent(Undo(self.p(j)))] = z3.Or(has(Undo(self.p(j))), s.is_in("todo", nexts))
                return Transition(guard, updates)
            case Finish("completed"):
                guard = z3.And(s["driving"], phase(RUNNING), s.is_("asked", self.n), has(Done(self.p(self.n))))
                return Transition(guard, {"phase": "completed", "todo": ()})
            case Finish(_):
                nothing_left = s.is_("todo", ())
                if self.variant == "give_up_compensation":
                    given_up = [z3.And(self.head_is(s, i), has(TryAgain(self.p(i)))) for i in range(1, self.n + 1)]
                    nothing_left = z3.Or(nothing_left, *given_up)
                guard = z3.And(s["driving"], phase(COMPENSATING), nothing_left)
                return Transition(guard, {"phase": "compensated", "todo": ()})
            case Resend(p):
                i = self.saga.index[p]
                redo = z3.And(phase(RUNNING), s.is_("asked", i), z3.Not(has(Do(p))))
                reundo = z3.And(phase(COMPENSATING), self.head_is(s, i), z3.Not(has(Undo(p))))
                if self.variant == "no_compensation_retry":
                    reundo = z3.BoolVal(False)
                return Transition(
                    z3.And(s["driving"], z3.Or(redo, reundo)),
                    {sent(Do(p)): z3.Or(has(Do(p)), redo), sent(Undo(p)): z3.Or(has(Undo(p)), reundo)},
                )
            case Crash():
                return Transition(z3.And(s["driving"], phase(RUNNING, COMPENSATING)), {"driving": False})
            case Recover():
                updates = {"driving": True}
                forgets = z3.BoolVal(False)
                if self.variant == "forget_compensation_on_crash":
                    forgets = phase(COMPENSATING)
                    updates["phase"] = z3.If(forgets, s.term("phase", "compensated"), s["phase"])
                    updates["todo"] = z3.If(forgets, s.term("todo", ()), s["todo"])
                for i, p in enumerate(self.ps, 1):
                    updates[sent(Do(p))] = z3.Or(has(Do(p)), z3.And(phase(RUNNING), s.is_("asked", i)))
                    resumes = z3.And(z3.Not(forgets), phase(COMPENSATING), self.head_is(s, i))
                    updates[sent(Undo(p))] = z3.Or(has(Undo(p)), resumes)
                return Transition(z3.Not(s["driving"]), updates)
            case MessageLost(msg):
                return Transition(has(msg), {sent(msg): False})
            case CancelSaga():
                return Transition(z3.Not(has(Cancel())), {sent(Cancel()): True})
            # ---------------------------------------------------------- participants
            case StepCommitted(p):
                guard = z3.And(self.asked_to_do(s, p), record(p, *self.runs_step()))
                return Transition(guard, {status(p): COMMITTED, sent(Done(p)): True, in_effect(p): True})
            case StepRefused(p):
                return Transition(
                    z3.And(self.asked_to_do(s, p), record(p, IDLE)), {status(p): REFUSED, sent(Failed(p)): True}
                )
            case StepCompensated(p):
                guard = z3.And(self.asked_to_undo(s, p), record(p, *self.compensates()))
                updates = {status(p): COMPENSATED, sent(Undone(p)): True, in_effect(p): False, compensation(p): True}
                return Transition(guard, updates)
            case UndoFailed(p):
                guard = z3.And(self.asked_to_undo(s, p), record(p, COMMITTED))
                return Transition(guard, {sent(TryAgain(p)): True} if self.orchestrated else {})
            case StepCancelled(p):
                guard = z3.And(self.asked_to_undo(s, p), record(p, IDLE))
                return Transition(guard, {status(p): self.tombstone(), sent(Undone(p)): True})
            case AnswerFromRecord(p, "do"):
                done, failed = record(p, COMMITTED, COMPENSATED), record(p, REFUSED, CANCELLED)
                guard = z3.And(
                    has(Do(p)),
                    z3.Or(z3.And(done, z3.Not(has(Done(p)))), z3.And(failed, z3.Not(has(Failed(p))))),
                )
                return Transition(
                    guard, {sent(Done(p)): z3.Or(has(Done(p)), done), sent(Failed(p)): z3.Or(has(Failed(p)), failed)}
                )
            case AnswerFromRecord(p, _):
                guard = z3.And(has(Undo(p)), record(p, REFUSED, COMPENSATED, CANCELLED), z3.Not(has(Undone(p))))
                return Transition(guard, {sent(Undone(p)): True})
        raise ValueError(f"not a step of the saga's abstraction: {action!r}")

    def phase_is(self, s: SymState) -> Callable[..., z3.BoolRef]:
        def phase(*phases: str) -> z3.BoolRef:
            return s.is_in("phase", phases)

        return phase

    def head_is(self, s: SymState, i: int) -> z3.BoolRef:
        """Step i's undo is the one in progress (the first of ``todo``)."""
        return s.is_in("todo", [t for t in self.todos if t[:1] == (i,)])

    def in_todo(self, s: SymState, i: int) -> z3.BoolRef:
        """Step i is still to undo."""
        return s.is_in("todo", [t for t in self.todos if i in t])

    @staticmethod
    def case(s: SymState, name: str, cases: Sequence[tuple[Hashable, z3.ExprRef]]) -> z3.ExprRef:
        """The term that maps field ``name``'s value v to its case's term (else keeps it)."""
        term: z3.ExprRef = s[name]
        for value, result in reversed(cases):
            term = z3.If(s.is_(name, value), result, term)
        return term

    def asked_to_do(self, s: SymState, p: str) -> z3.BoolRef:
        if self.orchestrated:
            return s[sent(Do(p))]
        i = self.saga.index[p]
        return s[sent(Begin() if i == 1 else Done(self.p(i - 1)))]

    def asked_to_undo(self, s: SymState, p: str) -> z3.BoolRef:
        if self.orchestrated:
            return s[sent(Undo(p))]
        i = self.saga.index[p]
        by_next = (
            z3.Or(s[sent(Failed(self.p(i + 1)))], s[sent(Undone(self.p(i + 1)))]) if i < self.n else z3.BoolVal(False)
        )
        cancelled = z3.And(s[sent(Cancel())], z3.BoolVal(True) if i == self.n else z3.Not(s.is_(status(p), COMMITTED)))
        return z3.Or(by_next, cancelled)

    def simulate(self, state: SagaState, action: Any, after: SagaState) -> Sequence[Any]:
        match action:
            case Lose(msg):
                return [MessageLost(msg)]
            case OrchestratorCrash():
                return [Crash()]
        if not isinstance(action, SPEC_STEPS):
            raise ValueError(f"not a saga step: {action!r}")
        return [action]

    # ------------------------------------------------------------- properties

    def completed(self, s: SymState) -> z3.BoolRef:
        if self.orchestrated:
            return s.is_("phase", "completed")
        return z3.And(s[sent(Done(self.p(self.n)))], z3.Not(s[sent(Cancel())]))

    def compensated_end(self, s: SymState) -> z3.BoolRef:
        if self.orchestrated:
            return s.is_("phase", "compensated")
        return z3.Or(s[sent(Failed(self.p(1)))], s[sent(Undone(self.p(1)))])

    def semantic_atomicity(self, s: SymState) -> z3.BoolRef:
        every_step = z3.And(*[z3.And(s[in_effect(p)], z3.Not(s[compensation(p)])) for p in self.ps])
        no_step = z3.And(*[z3.Not(s[in_effect(p)]) for p in self.ps])
        return z3.And(z3.Implies(self.completed(s), every_step), z3.Implies(self.compensated_end(s), no_step))

    def properties(self) -> Sequence[Predicate]:
        return (
            Predicate(
                "SemanticAtomicity",
                "a finished saga has every step committed, or every committed step compensated",
                self.semantic_atomicity,
            ),
        )

    def candidates(self) -> Sequence[Candidate]:
        conjuncts = self.orchestrated_conjuncts() if self.orchestrated else self.choreographed_conjuncts()
        return (
            Candidate("AtomicityInv", "the saga's inductive invariant (see checks/proofs/saga.py)", conjuncts),
            Candidate("SemanticAtomicity", "SemanticAtomicity alone", tuple(self.properties())),
        )

    def each(self, body: Callable[[SymState, int, str], z3.BoolRef]) -> Callable[[SymState], z3.BoolRef]:
        return lambda s: z3.And(*[body(s, i, p) for i, p in enumerate(self.ps, 1)])

    def common_conjuncts(self) -> tuple[Predicate, ...]:
        def history(s: SymState, i: int, p: str) -> z3.BoolRef:
            return z3.And(
                s[in_effect(p)] == s.is_(status(p), COMMITTED), s[compensation(p)] == s.is_(status(p), COMPENSATED)
            )

        def answers(s: SymState, i: int, p: str) -> z3.BoolRef:
            def means(msg: Message, *records: str) -> z3.BoolRef:
                return z3.Implies(s[sent(msg)], s.is_in(status(p), records))

            out = [
                means(Done(p), COMMITTED, COMPENSATED),
                means(Failed(p), REFUSED, CANCELLED),
                means(Undone(p), *SETTLED),
            ]
            if self.orchestrated:
                out.append(means(TryAgain(p), COMMITTED, COMPENSATED))
            return z3.And(*out)

        return (
            Predicate(
                "HistoryInRecords",
                "a step is in effect iff its record says committed, and was compensated iff it says compensated",
                self.each(history),
            ),
            Predicate(
                "AnswersMatchRecords",
                "an answer on the network (an event on the bus) agrees with its participant's record",
                self.each(answers),
            ),
        )

    def orchestrated_conjuncts(self) -> tuple[Predicate, ...]:
        def asked(s: SymState) -> z3.ArithRef:
            return s["asked"]

        def phase(s: SymState, *phases: str) -> z3.BoolRef:
            return s.is_in("phase", phases)

        def beyond_asked(s: SymState, i: int, p: str) -> z3.BoolRef:
            quiet = z3.And(s.is_(status(p), IDLE), z3.Not(s[sent(Do(p))]), z3.Not(s[sent(Undo(p))]))
            return z3.Implies(asked(s) < i, quiet)

        def log_shape(s: SymState) -> z3.BoolRef:
            todo_asked = [z3.Implies(self.in_todo(s, i), i <= asked(s)) for i in range(1, self.n + 1)]
            return z3.And(
                z3.Implies(phase(s, NEW), asked(s) == 0), z3.Implies(phase(s, COMPENSATING), z3.And(*todo_asked))
            )

        def no_undo(s: SymState, i: int, p: str) -> z3.BoolRef:
            return z3.Implies(
                phase(s, NEW, RUNNING, "completed"),
                z3.And(z3.Not(s[sent(Undo(p))]), s.is_in(status(p), (IDLE, COMMITTED, REFUSED))),
            )

        def running(s: SymState, i: int, p: str) -> z3.BoolRef:
            committed = s.is_(status(p), COMMITTED)
            return z3.And(
                z3.Implies(z3.And(phase(s, RUNNING), i < asked(s)), committed),
                z3.Implies(phase(s, "completed"), committed),
            )

        def settled(s: SymState, i: int, p: str) -> z3.BoolRef:
            done_with = z3.Or(z3.And(phase(s, COMPENSATING), z3.Not(self.in_todo(s, i))), phase(s, "compensated"))
            return z3.Implies(z3.And(done_with, i <= asked(s)), s.is_in(status(p), SETTLED))

        return (
            *self.common_conjuncts(),
            Predicate(
                "NothingBeyondAsked",
                "a step after the last one asked has no record and no command on the network",
                self.each(beyond_asked),
            ),
            Predicate(
                "LogShape",
                "a saga not started has asked nothing; while compensating, the steps to undo are steps asked",
                log_shape,
            ),
            Predicate(
                "NoUndoBeforeCompensating",
                "until the saga compensates, no undo is on the network and no record says compensated or cancelled",
                self.each(no_undo),
            ),
            Predicate(
                "RunningOnCommitted",
                "while running, every step before the last asked is committed; completed, every step is",
                self.each(running),
            ),
            Predicate(
                "UndoneAreSettled",
                "compensating, a step asked and no longer to undo is refused, compensated or cancelled; "
                "compensated, every step asked is",
                self.each(settled),
            ),
        )

    def choreographed_conjuncts(self) -> tuple[Predicate, ...]:
        def published(s: SymState, i: int, p: str) -> z3.BoolRef:
            return z3.Implies(s.is_(status(p), COMMITTED), s[sent(Done(p))])

        def done_in_order(s: SymState, i: int, p: str) -> z3.BoolRef:
            return z3.Implies(s[sent(Done(p))], s[sent(Done(self.p(i - 1)))]) if i > 1 else z3.BoolVal(True)

        def compensated_after_next(s: SymState, i: int, p: str) -> z3.BoolRef:
            why = s[sent(Cancel())] if i == self.n else s.is_in(status(self.p(i + 1)), SETTLED)
            return z3.Implies(z3.And(s.is_(status(p), COMPENSATED), s[sent(Done(p))]), why)

        return (
            *self.common_conjuncts(),
            Predicate("CommittedPublished", "a committed step's Done is on the bus", self.each(published)),
            Predicate(
                "DoneInOrder", "a step's Done is on the bus only after the step before's", self.each(done_in_order)
            ),
            Predicate(
                "CompensatedAfterNext",
                "a step committed and compensated since has its next step settled; "
                "the last step, only once the saga was cancelled",
                self.each(compensated_after_next),
            ),
        )
